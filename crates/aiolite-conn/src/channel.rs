//! The caller's half of a request: the queue a request goes into (a
//! worker's main queue or a transaction's lease), the wait for its answer
//! (which cancels the request when dropped), and `Held`, the single owner of
//! what a caller keeps on the worker between requests. The worker's half is
//! `worker/`.

use std::fmt;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::sync::{mpsc, oneshot};
use tracing::Span;

use crate::error::{Error, Result};
use crate::params::Params;
use crate::sql::Sql;
use crate::worker::{self, Deferred, Job, Kind, Message, Shared, Worker};

/// The sending side of a worker's queue (the main one, or a transaction's lease).
#[derive(Clone)]
pub(crate) struct Channel {
    pub(crate) sender: mpsc::Sender<Message>,
    pub(crate) shared: Arc<Shared>,
    /// A transaction's lease (its guard's end is visible here): it keeps
    /// working after `close()` is called, since the close waits in the main
    /// queue until the transaction ends.
    pub(crate) lease: Option<Arc<worker::LeaseControl>>,
    /// A lease's way to wake the worker once the lease is over: the main
    /// queue (weak, so it never keeps the worker alive).
    pub(crate) main: Option<mpsc::WeakSender<Message>>,
}

/// What a caller holds on the worker (a parked statement, a blob handle),
/// owned by exactly one value at a time: the stream or `Blob` while it holds
/// it, the request that carries it to the worker, the answer that carries it
/// back. Dropped anywhere without being taken back (the holder dropped, a
/// request skipped because its caller left, an answer nobody read, a
/// request dropped with its lease), it leaves the release to the worker and
/// wakes it.
pub(crate) struct Held {
    channel: Option<Channel>,
    work: Option<Deferred>,
}

impl Held {
    pub(crate) fn new(channel: &Channel, work: Deferred) -> Held {
        Held {
            channel: Some(channel.clone()),
            work: Some(work),
        }
    }

    /// The request running on the worker takes the resource back: it owns
    /// it from here on (see `Worker::fetch_cursor`).
    pub(crate) fn take_back(mut self) {
        self.channel = None;
        self.work = None;
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if let (Some(channel), Some(work)) = (self.channel.take(), self.work.take()) {
            channel.release(work);
        }
    }
}

impl fmt::Debug for Held {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Held").field("work", &self.work).finish()
    }
}

impl Channel {
    /// Leaves `work` for the worker's next request and wakes the worker if it
    /// is idle: through this channel (or, once a lease is over, through the
    /// main queue), and through the lease it serves, if it serves one, where
    /// a wake-up on the main queue would wait for the lease to end. A wake-up
    /// too many costs one empty turn of the worker's loop.
    pub(crate) fn release(&self, work: Deferred) {
        self.shared.defer(work);
        if let Err(mpsc::error::TrySendError::Closed(_)) = self.sender.try_send(Message::Wake) {
            if let Some(main) = self.main.as_ref().and_then(mpsc::WeakSender::upgrade) {
                let _ = main.try_send(Message::Wake);
            }
        }
        if let Some(lease) = self.shared.lease_waker() {
            if !lease.same_channel(&self.sender) {
                let _ = lease.try_send(Message::Wake);
            }
        }
    }

    pub(crate) fn is_lease(&self) -> bool {
        self.lease.is_some()
    }

    /// Whether the message just queued has nothing queued ahead of it.
    fn queued_alone(&self) -> bool {
        self.sender.max_capacity() - self.sender.capacity() <= 1
    }

    /// Whether this is a lease the worker serves now or will next.
    fn lease_near(&self) -> bool {
        self.lease.as_ref().is_some_and(|l| l.is_near())
    }

    /// Whether this is a lease whose guard is gone (committed, rolled back or
    /// dropped).
    pub(crate) fn lease_ended(&self) -> bool {
        self.lease.as_ref().is_some_and(|l| l.is_ended())
    }

    fn gone(&self) -> Error {
        gone(self.is_lease())
    }

    /// Runs `f` on the worker and waits for its result.
    ///
    /// Whatever the request does, if it opened a transaction and then either
    /// panicked or found its caller gone, the transaction is rolled back: a
    /// `BEGIN` nobody saw succeed must not stay open. A value it returns to a
    /// caller who left is dropped; what it holds on the worker is released
    /// by its own `Drop` (see [`Held`]).
    pub(crate) async fn run<R, F>(&self, f: F) -> Result<R>
    where
        F: FnOnce(&mut Worker) -> Result<R> + Send + 'static,
        R: Send + 'static,
    {
        self.send(f, Kind::Plain, Spin::FirstPoll).await
    }

    /// [`run`](Self::run) for a request of a given [`Kind`].
    pub(crate) async fn run_as<R, F>(&self, kind: Kind, f: F) -> Result<R>
    where
        F: FnOnce(&mut Worker) -> Result<R> + Send + 'static,
        R: Send + 'static,
    {
        self.send(f, kind, Spin::FirstPoll).await
    }

    /// `execute`: on a group-commit writer, a single write (INSERT, UPDATE,
    /// DELETE, REPLACE) joins the group of transactions queued with it and
    /// answers after the group's COMMIT (see `Worker::execute_in_group`).
    pub(crate) async fn execute<P: Params>(&self, sql: Sql, params: P) -> Result<usize> {
        if !self.is_lease()
            && self.shared.groups_writes.load(Ordering::Relaxed)
            && crate::sql::is_dml(&sql)
        {
            let (n, outcome) = self
                .run_as(Kind::GroupWrite, move |w| w.execute_in_group(&sql, &params))
                .await?;
            if let Some(outcome) = outcome {
                // Dropped while waiting here: the write is committed with
                // the group all the same; only this answer is lost.
                outcome.await.unwrap_or(Err(Error::Closed))?;
            }
            return Ok(n);
        }
        self.run(move |w| w.execute(&sql, &params)).await
    }

    /// Like [`run`](Self::run) for a request that runs one query; `read`
    /// (from [`worker::looks_like_read`]) lets the worker answer it inside a
    /// read batch (see `Worker::run_read_batch`).
    pub(crate) async fn run_query<R, F>(&self, read: bool, f: F) -> Result<R>
    where
        F: FnOnce(&mut Worker) -> Result<R> + Send + 'static,
        R: Send + 'static,
    {
        let kind = if read { Kind::Read } else { Kind::Plain };
        self.send(f, kind, Spin::FirstPoll).await
    }

    /// Like [`run`](Self::run) for a request sent ahead of need (a stream's
    /// next chunk): its first poll queues it and returns, so the caller goes
    /// on with what it holds while the worker runs it. Waiting on the spot
    /// there would serialize the two threads the request is meant to overlap.
    pub(crate) async fn prefetch<R, F>(&self, f: F) -> Result<R>
    where
        F: FnOnce(&mut Worker) -> Result<R> + Send + 'static,
        R: Send + 'static,
    {
        self.send(f, Kind::Plain, Spin::LaterPoll).await
    }

    /// `execute_many` on a lease: the caller draws the parameter sets and
    /// sends them in chunks, keeping one chunk queued behind the one running,
    /// so it builds the next chunk while the worker runs the last. The lease
    /// lets nobody else in between chunks; a failed chunk makes the worker
    /// skip the ones queued behind it, so nothing after the first error runs.
    /// Each chunk comes back to be dropped here, on the thread that built it:
    /// freed on the worker, every value would take the allocator's lock of
    /// the caller's arena, against the caller building the next chunk.
    pub(crate) async fn execute_many_in_chunks<I>(&self, sql: Sql, params: I) -> Result<usize>
    where
        I: IntoIterator,
        I::Item: Params,
    {
        let sql: Arc<str> = Arc::from(sql);
        let failed = Arc::new(AtomicBool::new(false));
        let mut items = params.into_iter();
        let mut total = 0;
        let mut running: Option<Reply<'_, (usize, Vec<I::Item>)>> = None;
        let mut size = FIRST_PARAMS_CHUNK;
        loop {
            let chunk: Vec<I::Item> = items.by_ref().take(size).collect();
            let last = chunk.len() < size;
            size = (size * 2).min(MAX_PARAMS_CHUNK);
            if chunk.is_empty() && running.is_some() {
                break;
            }
            let (sql, failed) = (Arc::clone(&sql), Arc::clone(&failed));
            // Queued before the answer to the chunk ahead of it is awaited,
            // and in order: each waits here for room in the queue.
            let next = self
                .enqueue(
                    move |w| {
                        if failed.load(Ordering::Acquire) {
                            return Err(Error::Cancelled("an earlier parameter set failed"));
                        }
                        match w.execute_many::<_, I::Item>(&sql, &chunk) {
                            Ok(n) => Ok((n, chunk)),
                            Err(e) => {
                                failed.store(true, Ordering::Release);
                                Err(e)
                            }
                        }
                    },
                    Kind::Plain,
                    Spin::FirstPoll,
                )
                .await?;
            if let Some(before) = running.replace(next) {
                total += before.await?.0;
            }
            if last {
                break;
            }
        }
        if let Some(before) = running {
            total += before.await?.0;
        }
        Ok(total)
    }

    /// Queues a request whose answer nobody waits for (a guard's `begin`,
    /// whose outcome its lease carries): returns once it is queued, with
    /// whether it went to an empty queue (nothing ahead of it). Dropped
    /// while it waits for room in a full queue, the request is never queued
    /// and `f` is dropped here.
    pub(crate) async fn post<F>(&self, f: F, kind: Kind) -> Result<bool>
    where
        F: FnOnce(&mut Worker) + Send + 'static,
    {
        if self.shared.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        let (in_flight, _) = crate::spin::InFlight::start();
        let queued_at = std::time::Instant::now();
        let job: Job = Box::new(move |w: &mut Worker| {
            w.started_request(queued_at);
            if let Err(payload) = catch_unwind(AssertUnwindSafe(|| f(w))) {
                tracing::error!(error = %Error::panic(payload), "an engine request panicked");
            }
            w.finished_request();
            drop(in_flight);
        });
        let msg = Message::Run {
            id: self.shared.next_id(),
            span: Span::current(),
            job,
            kind,
        };
        match self.sender.try_send(msg) {
            Ok(()) => Ok(self.queued_alone()),
            Err(mpsc::error::TrySendError::Full(msg)) => {
                self.sender.send(msg).await.map_err(|_| self.gone())?;
                Ok(false)
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(self.gone()),
        }
    }

    pub(crate) async fn send<R, F>(&self, f: F, kind: Kind, spin: Spin) -> Result<R>
    where
        F: FnOnce(&mut Worker) -> Result<R> + Send + 'static,
        R: Send + 'static,
    {
        self.enqueue(f, kind, spin).await?.await
    }

    /// Queues a request (waiting for room in a full queue) and returns the
    /// wait for its answer.
    ///
    /// Where the request can be dropped, and what happens then:
    /// - before it is queued (this future dropped while the queue is full):
    ///   it never runs; `f` and what it holds are dropped here;
    /// - queued, before it starts (its `Reply` dropped): the worker skips it
    ///   (`tx.is_closed()`); `f` is dropped on the worker;
    /// - queued on a lease that ends first: dropped with the lease's queue,
    ///   unrun; the caller gets [`Error::TransactionEnded`];
    /// - running: the progress handler stops its statement (the `Reply`'s
    ///   drop flags the id); a transaction it began is rolled back;
    /// - answered, before the caller reads the answer: the answer is dropped
    ///   with the reply; a transaction it began is rolled back, and what it
    ///   holds (a parked statement, a blob) is released by its own `Drop`.
    async fn enqueue<R, F>(&self, f: F, kind: Kind, spin: Spin) -> Result<Reply<'_, R>>
    where
        F: FnOnce(&mut Worker) -> Result<R> + Send + 'static,
        R: Send + 'static,
    {
        if let Some(lease) = &self.lease {
            lease.used_by(worker::caller_identity());
        } else {
            if self.shared.closed.load(Ordering::Acquire) {
                return Err(Error::Closed);
            }
            if self.shared.leased_by_caller() {
                // It would queue behind the caller's own transaction.
                return Err(Error::InsideOwnTransaction);
            }
        }
        let (tx, rx) = oneshot::channel();
        let (in_flight, in_flight_now) = crate::spin::InFlight::start();
        let queued_at = std::time::Instant::now();
        let job: Job = Box::new(move |w: &mut Worker| {
            if tx.is_closed() {
                // Cancelled before it started.
                w.shared.stats.cancelled();
                return;
            }
            w.started_request(queued_at);
            if let Err(refused) = w.admit(kind) {
                // The lease is dead: nothing runs in autocommit for it.
                drop(in_flight);
                let _ = tx.send(Err(refused));
                return;
            }
            let was_autocommit = w.conn.is_autocommit();
            let mut result = match catch_unwind(AssertUnwindSafe(|| f(w))) {
                Ok(r) => r,
                Err(payload) => {
                    if was_autocommit {
                        w.rollback_if_open("a closure panicked");
                    }
                    Err(Error::panic(payload))
                }
            };
            if let Some(fault) = w.shared.take_fault() {
                // A callback (collation, hook) panicked while this request ran.
                if was_autocommit {
                    w.rollback_if_open("a callback panicked");
                }
                result = Err(fault);
            }
            if !was_autocommit
                && kind != Kind::EndLease
                && w.conn.is_autocommit()
                && w.shared.transaction_is_owned()
            {
                // A guard's transaction ended inside this request, and not
                // by the guard's own commit or rollback.
                w.guarded_transaction_ended(&mut result);
            }
            if matches!(&result, Err(e) if e.is_busy()) {
                w.shared.stats.busy_error();
            }
            w.finished_request();
            drop(in_flight);
            if tx.send(result).is_err() && was_autocommit {
                w.rollback_if_open("the caller went away");
            }
        });
        let id = self.shared.next_id();
        let msg = Message::Run {
            id,
            span: Span::current(),
            job,
            kind,
        };
        // try_send first: no future to drive in the common case, and it does
        // not spend tokio's cooperative budget, which would otherwise leave a
        // request unqueued (and overtaken by a later close) after ~128 sends
        // from one task.
        let mut queued_alone = false;
        let alone = match self.sender.try_send(msg) {
            // Nothing else queued: the answer is microseconds away. Worth
            // waiting for on the spot when nothing else is in flight anywhere
            // and no other task needs this runtime thread; or inside a
            // transaction the worker serves now or next, where every other
            // user of the worker waits for this one to finish. (A guard
            // whose BEGIN waits behind other transactions parks: its answer
            // is a whole transaction or more away.)
            Ok(()) => {
                queued_alone = self.queued_alone();
                queued_alone
                    && (self.lease_near()
                        || (in_flight_now == 1 && crate::spin::runtime_has_room()))
            }
            Err(mpsc::error::TrySendError::Full(msg)) => {
                self.sender.send(msg).await.map_err(|_| self.gone())?;
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => return Err(self.gone()),
        };
        // A guard's request to its own empty queue, with the lease not near
        // yet: it may poll once the worker starts serving the lease.
        let when_near = self.is_lease() && !alone && spin == Spin::FirstPoll && queued_alone;
        Ok(Reply {
            rx,
            id,
            shared: &self.shared,
            lease: self.lease.as_deref(),
            done: false,
            spin: if alone { spin } else { Spin::Never },
            when_near,
        })
    }
}

/// Parameter sets in the first chunk of a chunked `execute_many`; each next
/// chunk doubles, up to [`MAX_PARAMS_CHUNK`]. A short call is one request;
/// a bulk load pays one round trip per thousand rows.
const FIRST_PARAMS_CHUNK: usize = 64;
const MAX_PARAMS_CHUNK: usize = 1024;

/// Which poll of a [`Reply`] may wait for the answer on the spot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Spin {
    Never,
    FirstPoll,
    /// The first poll only registers; the next one may spin.
    LaterPoll,
}

/// Waits for a request's result; dropped early, it cancels the request.
struct Reply<'a, R> {
    rx: oneshot::Receiver<Result<R>>,
    id: u64,
    shared: &'a Shared,
    /// Sent on a lease: an unanswered request means the lease ended.
    lease: Option<&'a worker::LeaseControl>,
    done: bool,
    /// Whether this poll may wait for the answer on the spot.
    spin: Spin,
    /// Sent to a lease that was not near yet: parked until it is (see
    /// `LeaseControl::wait_until_near`), then polls once for the answer.
    when_near: bool,
}

impl<R> Reply<'_, R> {
    fn unanswered(&self) -> Error {
        gone(self.lease.is_some())
    }
}

/// What a request gets when its channel is gone, or it was dropped unanswered:
/// on a lease, the transaction ended (the worker drops what was queued on
/// it); otherwise the connection closed.
fn gone(lease: bool) -> Error {
    if lease {
        Error::TransactionEnded
    } else {
        Error::Closed
    }
}

impl<R> Future for Reply<'_, R> {
    type Output = Result<R>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<R>> {
        let next = match self.spin {
            Spin::LaterPoll => Spin::FirstPoll,
            _ => Spin::Never,
        };
        let mut spin = std::mem::replace(&mut self.spin, next);
        if self.when_near {
            if let Some(lease) = self.lease {
                if lease.wait_until_near(cx.waker()) {
                    self.when_near = false;
                    spin = Spin::FirstPoll;
                }
            }
        }
        if spin == Spin::FirstPoll {
            if let Some(r) = crate::spin::spin_for(|| match self.rx.try_recv() {
                Ok(r) => Some(r),
                Err(oneshot::error::TryRecvError::Empty) => None,
                Err(oneshot::error::TryRecvError::Closed) => Some(Err(self.unanswered())),
            }) {
                self.done = true;
                return Poll::Ready(r);
            }
        }
        let r = std::task::ready!(Pin::new(&mut self.rx).poll(cx));
        self.done = true;
        // The worker dropped the request without answering: it shut down,
        // or the lease it was queued on ended.
        Poll::Ready(r.unwrap_or_else(|_| Err(self.unanswered())))
    }
}

impl<R> Drop for Reply<'_, R> {
    fn drop(&mut self) {
        if !self.done {
            // Close first, so a request that has not started sees it and is
            // skipped; then flag the id, so a running one is interrupted.
            self.rx.close();
            self.shared.cancel(self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Connection;

    /// Whether the next request sent on `channel` (to an empty queue) would
    /// poll for its answer on the spot.
    async fn would_spin(channel: &Channel) -> Spin {
        let reply = channel
            .enqueue(|_| Ok(()), Kind::Plain, Spin::FirstPoll)
            .await
            .expect("queued");
        let spin = reply.spin;
        // Not awaited: dropped, the request is skipped or its answer dropped.
        drop(reply);
        spin
    }

    /// A guard whose BEGIN waits behind another guard's transaction is a
    /// whole transaction away from its first answer: its caller parks. It
    /// used to poll a runtime thread away for it, in every waiting task.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_guard_waiting_behind_another_transaction_parks() {
        let conn = Connection::open_in_memory().await.expect("open");
        let first = conn.begin().await.expect("begin");
        // On an idle connection the BEGIN is next: worth waiting for.
        assert_eq!(would_spin(first.channel()).await, Spin::FirstPoll);
        first
            .execute("CREATE TABLE t(x)", ())
            .await
            .expect("the first guard's lease is served");
        assert_eq!(would_spin(first.channel()).await, Spin::FirstPoll);

        let other = conn.clone();
        let (decided, decision) = oneshot::channel();
        let waiting = tokio::spawn(async move {
            let second = other.begin().await.expect("begin");
            let _ = decided.send(would_spin(second.channel()).await);
            // Served once the first guard commits.
            second.rollback().await.expect("rollback");
        });
        // The first guard commits only after the second decided, so the
        // decision was taken while the second's BEGIN waited behind it.
        let spin = tokio::time::timeout(std::time::Duration::from_secs(30), decision)
            .await
            .expect("the second guard decides")
            .expect("decided");
        first.commit().await.expect("commit");
        tokio::time::timeout(std::time::Duration::from_secs(30), waiting)
            .await
            .expect("the second guard ends")
            .expect("task");
        assert_eq!(spin, Spin::Never);
    }

    /// A guard that parked on its first request while its BEGIN waited is
    /// woken when the worker starts serving its lease, before the answer:
    /// the task's wake-up overlaps the BEGIN and the statement.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_parked_guard_is_woken_when_its_lease_starts() {
        use std::sync::atomic::AtomicUsize;
        use std::time::{Duration, Instant};

        struct Count(AtomicUsize);
        impl futures_util::task::ArcWake for Count {
            fn wake_by_ref(arc_self: &Arc<Self>) {
                arc_self.0.fetch_add(1, Ordering::SeqCst);
            }
        }

        let conn = Connection::open_in_memory().await.expect("open");
        let first = conn.begin().await.expect("begin");
        first.execute("SELECT 1", ()).await.expect("served");
        let other = conn.clone();
        let second = tokio::spawn(async move { other.begin().await.expect("begin") })
            .await
            .expect("task");
        // The request holds the worker until released, so a wake-up seen
        // before the release is not the answer's.
        let (release, hold) = std::sync::mpsc::channel::<()>();
        let mut reply = Box::pin(
            second
                .channel()
                .enqueue(
                    move |_| {
                        let _ = hold.recv_timeout(Duration::from_secs(30));
                        Ok(())
                    },
                    Kind::Plain,
                    Spin::FirstPoll,
                )
                .await
                .expect("queued"),
        );
        assert!(reply.when_near, "queued behind another lease");
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = futures_util::task::waker(Arc::clone(&count));
        let mut cx = Context::from_waker(&waker);
        assert!(reply.as_mut().poll(&mut cx).is_pending());
        assert_eq!(count.0.load(Ordering::SeqCst), 0);

        first.commit().await.expect("commit");
        let deadline = Instant::now() + Duration::from_secs(30);
        while count.0.load(Ordering::SeqCst) == 0 {
            assert!(
                Instant::now() < deadline,
                "the lease started without waking its guard"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        release.send(()).expect("the request is waiting");
        tokio::time::timeout(Duration::from_secs(30), reply)
            .await
            .expect("answered")
            .expect("ok");
        second.rollback().await.expect("rollback");
    }
}
