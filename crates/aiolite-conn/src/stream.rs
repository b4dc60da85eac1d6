//! Streams of rows, fetched from the worker chunk by chunk.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_core::Stream;

use crate::connection::{Channel, Sql};
use crate::error::Result;
use crate::params::Params;
use crate::row::Row;
use crate::worker::{Chunk, Deferred, Message, ReadChunk};

/// The stream's reader, lent to each fetch and given back with its chunk.
type Reader<T> = Box<dyn ReadChunk<Item = T>>;
type ChunkFuture<T> = Pin<Box<dyn Future<Output = Result<(Chunk<T>, Reader<T>)>> + Send>>;
pub(crate) type RouteFuture = Pin<Box<dyn Future<Output = Channel> + Send>>;

enum State<T> {
    /// A pool stream: which connection runs it is decided on first poll.
    Routing(RouteFuture, Sql, Box<dyn Params>),
    NotStarted(Sql, Box<dyn Params>),
    Fetching(ChunkFuture<T>),
    Done,
}

/// A stream of [`Row`]s from [`Connection::stream`](crate::Connection::stream),
/// or of decoded values (`RowStream<T>`) from
/// [`Connection::stream_with`](crate::Connection::stream_with), decoded on the
/// worker.
///
/// Rows arrive in chunks: `iter_chunk_size` rows first, each next chunk twice
/// as many up to 4096 rows or 256 KiB. The next chunk is requested as soon as
/// one arrives, so the worker fetches while you process. Memory holds at most
/// two chunks. Dropping the stream finalizes its statement.
///
/// ```
/// # async fn demo(conn: aiolite_conn::Connection) -> aiolite_conn::Result<()> {
/// use futures_util::StreamExt;
/// let mut rows = conn.stream("SELECT age FROM users", ());
/// let mut total = 0i64;
/// while let Some(row) = rows.next().await {
///     total += row?.get::<i64, _>(0)?;
/// }
/// # Ok(()) }
/// ```
#[must_use = "streams do nothing unless polled"]
pub struct RowStream<T = Row> {
    channel: Option<Channel>,
    state: State<T>,
    /// Here between fetches; away on the worker while one is in flight.
    reader: Option<Reader<T>>,
    buffer: std::vec::IntoIter<T>,
    /// The parked statement on the worker, while the result is not exhausted.
    cursor: Option<u64>,
}

impl<T: Send + 'static> RowStream<T> {
    pub(crate) fn new(
        channel: Channel,
        sql: Sql,
        params: Box<dyn Params>,
        reader: Reader<T>,
    ) -> RowStream<T> {
        RowStream {
            channel: Some(channel),
            state: State::NotStarted(sql, params),
            reader: Some(reader),
            buffer: Vec::new().into_iter(),
            cursor: None,
        }
    }

    pub(crate) fn routed(
        route: RouteFuture,
        sql: Sql,
        params: Box<dyn Params>,
        reader: Reader<T>,
    ) -> RowStream<T> {
        RowStream {
            channel: None,
            state: State::Routing(route, sql, params),
            reader: Some(reader),
            buffer: Vec::new().into_iter(),
            cursor: None,
        }
    }

    fn fetch(channel: Channel, id: u64, mut reader: Reader<T>) -> ChunkFuture<T> {
        Box::pin(async move {
            channel
                .prefetch(
                    move |w| Ok((w.fetch_cursor(id, &mut *reader)?, reader)),
                    close_unread,
                )
                .await
        })
    }
}

/// The stream was dropped while its chunk was on the way: finalize.
fn close_unread<T>(w: &mut crate::worker::Worker, (chunk, _): (Chunk<T>, Reader<T>)) {
    if let Some(id) = chunk.cursor {
        w.close_cursor(id);
    }
}

impl<T: Send + 'static> Stream for RowStream<T> {
    type Item = Result<T>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<T>>> {
        let this = &mut *self;
        loop {
            if let Some(row) = this.buffer.next() {
                return Poll::Ready(Some(Ok(row)));
            }
            match &mut this.state {
                State::Done => return Poll::Ready(None),
                State::Routing(route, ..) => {
                    let channel = std::task::ready!(route.as_mut().poll(cx));
                    if let State::Routing(_, sql, params) =
                        std::mem::replace(&mut this.state, State::Done)
                    {
                        this.state = State::NotStarted(sql, params);
                    }
                    this.channel = Some(channel);
                }
                State::NotStarted(..) => {
                    let (State::NotStarted(sql, params), Some(channel), Some(mut reader)) = (
                        std::mem::replace(&mut this.state, State::Done),
                        this.channel.clone(),
                        this.reader.take(),
                    ) else {
                        return Poll::Ready(None);
                    };
                    this.state = State::Fetching(Box::pin(async move {
                        channel
                            .run_or_undo(
                                move |w| Ok((w.open_cursor(&sql, &*params, &mut *reader)?, reader)),
                                close_unread,
                            )
                            .await
                    }));
                }
                State::Fetching(fut) => {
                    let result = std::task::ready!(fut.as_mut().poll(cx));
                    match result {
                        Err(e) => {
                            this.state = State::Done;
                            this.cursor = None;
                            return Poll::Ready(Some(Err(e)));
                        }
                        Ok((chunk, reader)) => {
                            this.buffer = chunk.rows.into_iter();
                            this.cursor = chunk.cursor;
                            this.state = match chunk.cursor {
                                Some(id) => {
                                    // Ask for the next chunk now, so the worker
                                    // reads while the caller consumes this one.
                                    let Some(channel) = this.channel.clone() else {
                                        return Poll::Ready(None);
                                    };
                                    let mut next = Self::fetch(channel, id, reader);
                                    match next.as_mut().poll(cx) {
                                        Poll::Pending => State::Fetching(next),
                                        Poll::Ready(r) => {
                                            State::Fetching(Box::pin(async move { r }))
                                        }
                                    }
                                }
                                None => State::Done,
                            };
                        }
                    }
                }
            }
        }
    }
}

// Nothing in the stream is ever pinned in place: items are moved out of a
// `Vec`, and the futures are boxed.
impl<T> Unpin for RowStream<T> {}

impl<T> Drop for RowStream<T> {
    fn drop(&mut self) {
        if let (Some(id), Some(channel)) = (self.cursor.take(), &self.channel) {
            // A fetch in flight is cancelled when `state` drops; the parked
            // statement is finalized by the worker at its next request, and
            // this wakes an idle worker so that is now.
            channel.shared.defer(Deferred::CloseCursor(id));
            let _ = channel.sender.try_send(Message::Wake);
        }
    }
}

impl<T> fmt::Debug for RowStream<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RowStream")
            .field("buffered", &self.buffer.len())
            .field("cursor", &self.cursor)
            .finish()
    }
}
