//! Streams of rows, fetched from the worker chunk by chunk.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_core::Stream;

use crate::channel::{Channel, Held};
use crate::error::Result;
use crate::params::Params;
use crate::row::Row;
use crate::sql::Sql;
use crate::worker::{Chunk, Deferred, ReadChunk, Worker};

/// The stream's reader, lent to each fetch and given back with its chunk.
type Reader<T> = Box<dyn ReadChunk<Item = T>>;
type ChunkFuture<T> = Pin<Box<dyn Future<Output = Result<Fetched<T>>> + Send>>;

/// Counts a stream as open on its connection (`Shared::open_streams`) from
/// the moment it is bound to it until it ends or is dropped: a pool routes
/// no fresh read to a connection with an open stream, whose parked statement
/// pins the connection's snapshot. Counted here, on the caller's side,
/// before the stream's first request is sent, so that no read can slip in
/// between a stream's open and the worker's count of it.
struct OpenStream(std::sync::Arc<crate::worker::Shared>);

impl OpenStream {
    fn new(channel: &Channel) -> OpenStream {
        channel
            .shared
            .open_streams
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        OpenStream(std::sync::Arc::clone(&channel.shared))
    }
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.0
            .open_streams
            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

/// The parked statement's id and the one value that owns it (see [`Held`]).
type Cursor = (u64, Held);

/// A chunk as it reaches the stream: its rows, the reader, and the owner of
/// the statement parked for the rest, made on the worker before the answer
/// is sent, so that an answer nobody reads still releases it.
struct Fetched<T> {
    rows: Vec<T>,
    reader: Reader<T>,
    cursor: Option<Cursor>,
}

impl<T> Fetched<T> {
    fn new(chunk: Chunk<T>, reader: Reader<T>, channel: &Channel) -> Fetched<T> {
        Fetched {
            rows: chunk.rows,
            reader,
            cursor: chunk
                .cursor
                .map(|id| (id, Held::new(channel, Deferred::CloseCursor(id)))),
        }
    }
}
pub(crate) type RouteFuture = Pin<Box<dyn Future<Output = Result<Channel>> + Send>>;

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
/// The statement parked between chunks has exactly one owner at a time (this
/// stream, the request fetching the next chunk, or the answer bringing it),
/// so it is finalized however the stream ends: read to the end, dropped, a
/// decoder that fails or panics, a `next()` dropped by a timeout after the
/// worker answered. A stream from a transaction ends with the transaction.
///
/// ```
/// # async fn demo(conn: aiolite_conn::Connection) -> aiolite_conn::Result<()> {
/// use futures_util::StreamExt;
/// let mut rows = conn.stream("SELECT age FROM users", ());
/// let mut total = 0i64;
/// while let Some(row) = rows.next().await {
///     total += row?.get::<_, i64>(0)?;
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
    /// While the stream may hold a statement on its connection.
    pin: Option<OpenStream>,
}

impl<T: Send + 'static> RowStream<T> {
    pub(crate) fn new(
        channel: Channel,
        sql: Sql,
        params: Box<dyn Params>,
        reader: Reader<T>,
    ) -> RowStream<T> {
        RowStream {
            pin: Some(OpenStream::new(&channel)),
            channel: Some(channel),
            state: State::NotStarted(sql, params),
            reader: Some(reader),
            buffer: Vec::new().into_iter(),
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
            pin: None,
        }
    }

    /// Asks for the next chunk. The request carries the statement's owner:
    /// if it never runs, dropping it releases the statement.
    fn fetch(channel: Channel, (id, held): Cursor, mut reader: Reader<T>) -> ChunkFuture<T> {
        Box::pin(async move {
            let owner = channel.clone();
            channel
                .prefetch(move |w: &mut Worker| {
                    held.take_back();
                    let chunk = w.fetch_cursor(id, &mut *reader)?;
                    Ok(Fetched::new(chunk, reader, &owner))
                })
                .await
        })
    }
}

impl<T: Send + 'static> Stream for RowStream<T> {
    type Item = Result<T>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<T>>> {
        let this = &mut *self;
        if this.channel.as_ref().is_some_and(Channel::lease_ended)
            && !(matches!(this.state, State::Done) && this.buffer.len() == 0)
        {
            // The stream ends with its transaction: rows it read there (maybe
            // rolled back since) are not handed out after it.
            this.buffer = Vec::new().into_iter();
            this.state = State::Done;
            this.pin = None;
            return Poll::Ready(Some(Err(crate::Error::TransactionEnded)));
        }
        loop {
            if let Some(row) = this.buffer.next() {
                return Poll::Ready(Some(Ok(row)));
            }
            match &mut this.state {
                State::Done => {
                    this.pin = None;
                    return Poll::Ready(None);
                }
                State::Routing(route, ..) => {
                    let channel = match std::task::ready!(route.as_mut().poll(cx)) {
                        Ok(channel) => channel,
                        Err(e) => {
                            this.state = State::Done;
                            return Poll::Ready(Some(Err(e)));
                        }
                    };
                    if let State::Routing(_, sql, params) =
                        std::mem::replace(&mut this.state, State::Done)
                    {
                        this.state = State::NotStarted(sql, params);
                    }
                    this.pin = Some(OpenStream::new(&channel));
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
                        let owner = channel.clone();
                        channel
                            .run(move |w: &mut Worker| {
                                let chunk = w.open_cursor(&sql, &*params, &mut *reader)?;
                                Ok(Fetched::new(chunk, reader, &owner))
                            })
                            .await
                    }));
                }
                State::Fetching(fut) => {
                    let result = std::task::ready!(fut.as_mut().poll(cx));
                    match result {
                        Err(e) => {
                            // The worker finalized the statement (or it
                            // ended with its transaction).
                            this.state = State::Done;
                            this.pin = None;
                            return Poll::Ready(Some(Err(e)));
                        }
                        Ok(Fetched {
                            rows,
                            reader,
                            cursor,
                        }) => {
                            this.buffer = rows.into_iter();
                            this.state = match cursor {
                                Some(cursor) => {
                                    // Ask for the next chunk now, so the worker
                                    // reads while the caller consumes this one.
                                    let Some(channel) = this.channel.clone() else {
                                        return Poll::Ready(None);
                                    };
                                    let mut next = Self::fetch(channel, cursor, reader);
                                    match next.as_mut().poll(cx) {
                                        Poll::Pending => State::Fetching(next),
                                        Poll::Ready(r) => {
                                            State::Fetching(Box::pin(async move { r }))
                                        }
                                    }
                                }
                                None => {
                                    // Exhausted: the worker finalized it.
                                    this.pin = None;
                                    State::Done
                                }
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

impl<T> fmt::Debug for RowStream<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RowStream")
            .field("buffered", &self.buffer.len())
            .field("done", &matches!(self.state, State::Done))
            .finish()
    }
}
