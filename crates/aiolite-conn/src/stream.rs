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
use crate::worker::{Chunk, Deferred, Message};

type ChunkFuture = Pin<Box<dyn Future<Output = Result<Chunk>> + Send>>;
pub(crate) type RouteFuture = Pin<Box<dyn Future<Output = Channel> + Send>>;

enum State {
    /// A pool stream: which connection runs it is decided on first poll.
    Routing(RouteFuture, Sql, Box<dyn Params>),
    NotStarted(Sql, Box<dyn Params>),
    Fetching(ChunkFuture),
    Done,
}

/// A stream of [`Row`]s from [`Connection::stream`](crate::Connection::stream).
///
/// Rows arrive in chunks of `iter_chunk_size`; the next chunk is requested as
/// soon as one arrives, so the worker fetches while you process. Memory holds
/// at most two chunks. Dropping the stream finalizes its statement.
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
pub struct RowStream {
    channel: Option<Channel>,
    state: State,
    buffer: std::vec::IntoIter<Row>,
    /// The parked statement on the worker, while the result is not exhausted.
    cursor: Option<u64>,
}

impl RowStream {
    pub(crate) fn new(channel: Channel, sql: Sql, params: Box<dyn Params>) -> RowStream {
        RowStream {
            channel: Some(channel),
            state: State::NotStarted(sql, params),
            buffer: Vec::new().into_iter(),
            cursor: None,
        }
    }

    pub(crate) fn routed(route: RouteFuture, sql: Sql, params: Box<dyn Params>) -> RowStream {
        RowStream {
            channel: None,
            state: State::Routing(route, sql, params),
            buffer: Vec::new().into_iter(),
            cursor: None,
        }
    }

    fn fetch(channel: Channel, id: u64) -> ChunkFuture {
        Box::pin(async move {
            channel
                .run_or_undo(move |w| w.fetch_cursor(id), close_unread)
                .await
        })
    }
}

/// The stream was dropped while its chunk was on the way: finalize.
fn close_unread(w: &mut crate::worker::Worker, chunk: Chunk) {
    if let Some(id) = chunk.cursor {
        w.close_cursor(id);
    }
}

impl Stream for RowStream {
    type Item = Result<Row>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Row>>> {
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
                    let (State::NotStarted(sql, params), Some(channel)) = (
                        std::mem::replace(&mut this.state, State::Done),
                        this.channel.clone(),
                    ) else {
                        return Poll::Ready(None);
                    };
                    this.state = State::Fetching(Box::pin(async move {
                        channel
                            .run_or_undo(move |w| w.open_cursor(&sql, &*params), close_unread)
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
                        Ok(chunk) => {
                            this.buffer = chunk.rows.into_iter();
                            this.cursor = chunk.cursor;
                            this.state = match chunk.cursor {
                                Some(id) => {
                                    // Ask for the next chunk now, so the worker
                                    // reads while the caller consumes this one.
                                    let Some(channel) = this.channel.clone() else {
                                        return Poll::Ready(None);
                                    };
                                    let mut next = Self::fetch(channel, id);
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

impl Drop for RowStream {
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

impl fmt::Debug for RowStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RowStream")
            .field("buffered", &self.buffer.len())
            .field("cursor", &self.cursor)
            .finish()
    }
}
