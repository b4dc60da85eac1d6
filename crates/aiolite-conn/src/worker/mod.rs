//! The worker thread: it owns the `rusqlite::Connection` and serves the request
//! queue, one request at a time, in order.
//!
//! Requests are boxed closures. Each one carries its caller's tracing span and a
//! per-connection id: the id scopes cancellation, so a request whose caller went
//! away is skipped if it has not started and interrupted (through the progress
//! handler, which compares ids) if it is running, and an interrupt meant for one
//! request can never stop the next.
//!
//! # Who owns what the worker holds for callers
//!
//! Each resource has exactly one owner at a time, and every way that owner
//! can go releases it:
//!
//! - **A transaction's lease** belongs to its `Transaction` guard, from the
//!   `begin` call on (before its BEGIN has run: `begin` does not wait for
//!   it, and registers the guard in [`Shared`] so that a request its task
//!   sends around it is refused). It ends with the guard's
//!   `commit`/`rollback` (requests of [`Kind::EndLease`]), with the guard's
//!   drop (its [`LeaseControl`] is checked by the `Begin` request and before
//!   every message, and the drop wakes the worker), or when every sender of
//!   the lease's queue is gone: then it rolls back. A failed BEGIN leaves the
//!   lease dead from the start ([`Error::BeginFailed`]).
//!   Requests still queued on the lease are dropped unrun
//!   ([`Error::TransactionEnded`] for their callers), and what was parked
//!   during the lease is finalized: nothing keeps a lease past its guard.
//! - **The guard's transaction** can end only through the guard. While a
//!   guard owns it ([`GuardState`]) the commit hook turns every other commit
//!   into a rollback. If SQLite rolls it back on its own, the request that saw
//!   it happen turns its error into [`Error::RolledBack`], the lease is dead
//!   ([`Worker::admit`] refuses everything but its end), and a group's members
//!   all fail with that cause.
//! - **A savepoint** belongs to its `Savepoint` guard: released or rolled
//!   back by it, or rolled back before the next request when dropped
//!   ([`Deferred::RollbackTo`]).
//! - **A parked statement** (a stream between chunks) and **a blob handle**
//!   belong to one `Held` value: the stream or `Blob`, the request carrying it
//!   to the worker, or the answer carrying it back (made on the worker before
//!   the answer is sent). Dropped anywhere, a `Held` leaves the release to
//!   the worker ([`Deferred`]) and wakes it, also inside a lease. While a
//!   request reads from a statement, the statement is out of the map, owned
//!   by that request's frame, so a panicking decoder finalizes it as it
//!   unwinds.
//! - **A group of members** owns the writer's transaction from the first
//!   member's `BEGIN` to the group's `COMMIT`, which runs as soon as the queue
//!   holds no further `begin`: checked after every message, wake-ups
//!   included.
//! - **Closing** waits for a lease to end, then drops every parked statement
//!   and blob before the connection.

mod cursor;
mod establish;
pub(crate) mod events;
mod execute;
mod group;
pub(crate) mod handle;
mod read_batch;
mod request;
mod timer;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use rusqlite::types::ValueRef;
use rusqlite::{CachedStatement, Statement, StatementStatus};
use self_cell::{self_cell, MutBorrow};
use tokio::sync::{mpsc, oneshot};
use tracing::Span;

use crate::error::{Error, Result};
use crate::options::{ConnectOptions, Role, TransactionBehavior};
use crate::params::Params;
use crate::row::{columns_of, Column, Columns, Row, RowsBuilder};
use crate::row_decoder::RowDecoder;
use cursor::Parked;
pub(crate) use cursor::{Chunk, Decoded, OpenBlob, ReadChunk, RowBlocks};
use execute::StepMarks;
use group::Group;
pub(crate) use request::{
    guarded, install_commit_hook, install_progress_handler, CommitFn, Deferred, Job, Kind, Message,
    ProgressFn,
};

use crate::spin::next_message;
use crate::sql::{check_nul, check_sql, first_word, is_dml};

/// Marks the open transaction as a guard's for as long as it lives (see
/// [`GuardState`]); dropped on every way out of the guarded code, unwinding
/// included.
pub(crate) struct OwnedTransaction<'a>(&'a Shared);

impl<'a> OwnedTransaction<'a> {
    pub(crate) fn new(shared: &'a Shared) -> OwnedTransaction<'a> {
        shared.own_transaction();
        OwnedTransaction(shared)
    }
}

impl Drop for OwnedTransaction<'_> {
    fn drop(&mut self) {
        self.0.free_transaction();
    }
}

/// The guard's side of a lease: a `Transaction` sets `ended` when it is
/// dropped (and wakes the worker), so the lease ends with the guard whatever
/// else still holds a sender of the lease's channel (a stream opened in the
/// transaction, a savepoint's clone).
#[derive(Debug, Default)]
pub(crate) struct LeaseControl {
    ended: AtomicBool,
    /// Who holds the guard ([`caller_identity`]): the caller of `begin`,
    /// then whoever sent the lease's last request (the guard may move to
    /// another task). Kept with the lease it belongs to, so that a check
    /// never mixes one lease's owner with another lease's state.
    owner: AtomicU64,
    /// Whether the worker serves this lease, or will next: set by `begin`
    /// when its BEGIN went to an empty queue with no other guard alive (a
    /// lease being served leaves the main queue empty), and by the worker
    /// as it starts serving the lease. Until then the guard's requests wait
    /// behind other work (another guard's whole transaction), so the caller
    /// parks instead of polling a runtime thread away for an answer that
    /// is far off. That poll was most of a contended transaction's CPU, and
    /// it held the runtime thread the served lease's holder needed.
    near: AtomicBool,
    /// The task of a caller that parked on a request of this lease while
    /// the lease was not near: woken when the worker starts serving the
    /// lease, so that the task's wake-up overlaps the BEGIN and the first
    /// statement instead of following them (and it is awake to poll for the
    /// answer, which then needs no wake-up from the worker's thread).
    parked: futures_util::task::AtomicWaker,
}

impl LeaseControl {
    pub(crate) fn new(owner: u64) -> LeaseControl {
        LeaseControl {
            ended: AtomicBool::new(false),
            owner: AtomicU64::new(owner),
            near: AtomicBool::new(false),
            parked: futures_util::task::AtomicWaker::new(),
        }
    }

    /// Whether the worker serves this lease now or will next (and after its
    /// end, when requests are answered at once with an error).
    pub(crate) fn is_near(&self) -> bool {
        self.near.load(Ordering::Acquire)
    }

    pub(crate) fn draw_near(&self) {
        self.near.store(true, Ordering::Release);
    }

    /// Parks the caller's task until the lease is near (or its answer
    /// comes, through the answer's own wake-up); `true` if it is near
    /// already. Registered before the second look, so a `begin_lease` in
    /// between still wakes it.
    pub(crate) fn wait_until_near(&self, waker: &std::task::Waker) -> bool {
        if self.is_near() {
            return true;
        }
        self.parked.register(waker);
        self.is_near()
    }

    /// A request went through the lease: its sender holds the guard now.
    pub(crate) fn used_by(&self, caller: u64) {
        self.owner.store(caller, Ordering::Release);
    }

    pub(crate) fn end(&self) {
        self.ended.store(true, Ordering::Release);
    }

    pub(crate) fn is_ended(&self) -> bool {
        self.ended.load(Ordering::Acquire)
    }
}

/// A transaction's lease, handed to the worker by its `begin` request.
pub(crate) struct Lease {
    pub(crate) rx: mpsc::Receiver<Message>,
    pub(crate) control: Arc<LeaseControl>,
    /// A weak sender of `rx`'s channel, for `Shared::lease_waker`.
    pub(crate) wake: mpsc::WeakSender<Message>,
}

/// The lease the worker is serving.
struct Serving {
    /// Tags what was opened during this lease (parked statements), so that
    /// it ends with the lease.
    generation: u64,
    /// Set once the transaction ended without the guard ending it (SQLite
    /// rolled it back): the guard is dead, with this cause.
    ended: Option<Option<Arc<Error>>>,
    /// The lease's `BEGIN` failed: the guard is dead from the start, and the
    /// transaction open now (if any) is not its own.
    begin_failed: Option<Arc<Error>>,
}

/// SQLite's extended code for a commit the commit hook turned into a
/// rollback (`SQLITE_CONSTRAINT_COMMITHOOK`).
const CONSTRAINT_COMMITHOOK: i32 = 531;

/// State shared by the handles and the worker.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    next_id: AtomicU64,
    running: AtomicU64,
    cancel_pending: AtomicBool,
    cancelled: Mutex<Vec<u64>>,
    pub(crate) closed: AtomicBool,
    /// The controls of the transaction guards alive on this connection,
    /// from `begin` (before its `BEGIN` is even queued) until the guard is
    /// gone: the one being served and those whose `begin` waits in the main
    /// queue. A request sent around any of them by its owner would wait
    /// for it forever. `live_guards` counts them, the cheap first look.
    guards: Mutex<Vec<Arc<LeaseControl>>>,
    live_guards: AtomicUsize,
    deferred_pending: AtomicBool,
    deferred: Mutex<Vec<Deferred>>,
    next_savepoint: AtomicU64,
    /// A user callback that cannot report an error itself (a collation, a
    /// hook) panicked during the running request: the message, for that
    /// request's error.
    fault: Mutex<Option<String>>,
    fault_pending: AtomicBool,
    /// Who may touch the `sqlite3*` handle right now: the worker while it runs a
    /// request, or a backup stepping on another connection's worker.
    pub(crate) handle: handle::HandleLock,
    /// Parked statements and open blobs, as the worker last published them
    /// (after every request): read by [`Connection::resources`].
    ///
    /// [`Connection::resources`]: crate::Connection::resources
    pub(crate) parked_statements: AtomicUsize,
    pub(crate) open_blobs: AtomicUsize,
    /// Whether a guard owns the open transaction (see [`GuardState`]).
    guard: AtomicU8,
    /// The lease being served, as callers need it: its control (a dropped
    /// guard ends it at once, before the worker notices; its owner), and a
    /// weak sender of its queue, to wake the worker there when a caller
    /// releases something (`Channel::release`); weak, so it never keeps the
    /// lease's channel open.
    serving_lease: Mutex<Option<(Arc<LeaseControl>, mpsc::WeakSender<Message>)>>,
    /// Streams open on this connection, counted on the caller's side from the
    /// moment a stream is bound to it until it ends or is dropped: a
    /// statement they park pins this connection's read snapshot, so a pool
    /// sends no fresh read here while any is open.
    pub(crate) open_streams: AtomicUsize,
    /// A pool's writer has TEMP objects or attached databases, which its
    /// readers cannot see: the pool then sends every statement to the writer.
    pub(crate) private_schema: AtomicBool,
    /// Bumped whenever a statement on the writer may have changed the schema,
    /// so that routes a pool remembered per SQL text are learned again.
    pub(crate) schema_epoch: AtomicU64,
    /// A group-commit writer: single writes through `execute` join groups
    /// too (`Channel::execute`).
    pub(crate) groups_writes: AtomicBool,
    /// What the worker has done (see `metrics`).
    pub(crate) stats: Arc<crate::metrics::Stats>,
    /// When the oldest parked statement took its snapshot, in milliseconds
    /// since [`process_epoch`] plus one (0: none), for `Resources`.
    pub(crate) oldest_snapshot: AtomicU64,
}

/// The instant `oldest_snapshot` counts from.
pub(crate) fn process_epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// A stream whose snapshot is older than this (or than half its limit) is
/// logged once at `warn`.
const SNAPSHOT_WARN: Duration = Duration::from_secs(10);

/// Who is calling: the tokio task, or the thread outside a task (the body
/// of `#[tokio::main]` runs under `block_on`, in no task). Never 0, and
/// exact: a task is `2 * its id`, a thread `2 * its number + 1`, so two
/// callers never share one (a hash of them could). Every request through a
/// transaction asks, so it is cheap: SipHash and `thread::current()` were
/// about 1,600 instructions of W8's transaction.
pub(crate) fn caller_identity() -> u64 {
    match tokio::task::try_id() {
        Some(task) => task_number(task) << 1,
        None => {
            static NEXT: AtomicU64 = AtomicU64::new(1);
            thread_local! {
                static THREAD: u64 = NEXT.fetch_add(1, Ordering::Relaxed);
            }
            THREAD.with(|n| (n << 1) | 1)
        }
    }
}

/// A task id's number. tokio shows it only through `Hash` (and `Display`),
/// which writes the id's `NonZeroU64` with `write_u64`: this hasher keeps
/// that value. Any other shape of write is folded in, so a change in tokio
/// still tells ids apart, if no longer exactly.
fn task_number(task: tokio::task::Id) -> u64 {
    use std::hash::{Hash, Hasher};
    struct Keep(u64);
    impl Hasher for Keep {
        fn write(&mut self, bytes: &[u8]) {
            for b in bytes {
                self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
            }
        }
        fn write_u64(&mut self, n: u64) {
            self.0 = n;
        }
        fn finish(&self) -> u64 {
            self.0
        }
    }
    let mut keep = Keep(0);
    task.hash(&mut keep);
    // Never 0 after the shift (ids start at 1); the top bit is never set
    // by a counter of tasks.
    keep.finish().max(1)
}

/// Who may end the open transaction, as the commit hook sees it.
///
/// While a guard (a `Transaction` lease, a group of members, the closure of
/// `Connection::transaction`) owns the transaction, the only commit that may
/// happen is the guard's own. Every other commit is one the guard never asked
/// for: a `COMMIT` sent through the guard's handle, or, after SQLite rolled
/// the transaction back on its own, the implicit commit of a statement that
/// would otherwise run in autocommit inside the same request (a `call`
/// closure that goes on past the error). The commit hook turns each such
/// commit into a rollback, so no write of a guarded transaction is ever made
/// durable outside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum GuardState {
    /// No guard: commits are the connection's own business (aiosqlite's
    /// `execute("BEGIN")` ... `commit()`).
    Free = 0,
    /// A guard owns the transaction: commits are refused.
    Owned = 1,
    /// The guard is committing: its COMMIT passes.
    Committing = 2,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    pub(crate) fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Called when the future waiting for request `id` is dropped, after its
    /// reply receiver is gone: if the request is running, the progress handler
    /// stops it; if it has not started, the worker skips it anyway.
    pub(crate) fn cancel(&self, id: u64) {
        lock(&self.cancelled).push(id);
        self.cancel_pending.store(true, Ordering::Release);
    }

    pub(crate) fn should_interrupt(&self) -> bool {
        (self.cancel_pending.load(Ordering::Acquire)
            && lock(&self.cancelled).contains(&self.running.load(Ordering::Relaxed)))
            || self.fault_pending()
    }

    /// The progress handler's answer: stop the running statement (its caller
    /// went away, or a callback panicked), counted when it is a cancellation.
    pub(crate) fn interrupt_now(&self) -> bool {
        let stop = self.should_interrupt();
        if stop && self.caller_gone() {
            self.stats.interrupted();
        }
        stop
    }

    /// Whether the caller of the running request went away.
    pub(crate) fn caller_gone(&self) -> bool {
        self.cancel_pending.load(Ordering::Acquire)
            && lock(&self.cancelled).contains(&self.running.load(Ordering::Relaxed))
    }

    /// Records a callback's panic (the first one wins): the running statement
    /// is stopped at the next progress check, an autocommit transaction it
    /// opened is rolled back by the commit hook, and the request fails with
    /// [`Error::Panic`].
    pub(crate) fn fault(&self, message: String) {
        let mut slot = lock(&self.fault);
        if slot.is_none() {
            *slot = Some(message);
        }
        self.fault_pending.store(true, Ordering::Release);
    }

    pub(crate) fn fault_pending(&self) -> bool {
        self.fault_pending.load(Ordering::Acquire)
    }

    /// The caller holds a transaction guard of this connection: a request
    /// it sends through the connection's own queue would wait for that
    /// guard's lease forever, whether the worker serves it already or its
    /// `BEGIN` still waits in the queue (`begin` does not wait for it).
    ///
    /// `live_guards` is only the cheap first look (a guard is registered
    /// before `begin` returns, so its holder never misses it). The answer
    /// reads each guard's owner and end together: a guard dropped a moment
    /// ago is over for its caller, though the worker may not have seen it
    /// yet.
    pub(crate) fn leased_by_caller(&self) -> bool {
        if self.live_guards.load(Ordering::Acquire) == 0 {
            return false;
        }
        let caller = caller_identity();
        lock(&self.guards)
            .iter()
            .any(|c| !c.is_ended() && c.owner.load(Ordering::Acquire) == caller)
    }

    /// Whether a transaction holds the worker or is about to (a guard whose
    /// `BEGIN` is queued): requests from other handles wait until it ends.
    /// The guards are the one record of it: a lease lives no longer than its
    /// guard but for the rollback the guard's drop leaves to the worker.
    pub(crate) fn is_leased(&self) -> bool {
        self.live_guards.load(Ordering::Acquire) > 0
    }

    /// Whether the caller's guard, just registered, is the only one alive:
    /// no other transaction holds the worker or waits for it.
    pub(crate) fn is_only_guard(&self) -> bool {
        self.live_guards.load(Ordering::Acquire) == 1
    }

    /// A guard is alive from now on (see `guards`).
    pub(crate) fn register_guard(&self, control: &Arc<LeaseControl>) {
        lock(&self.guards).push(Arc::clone(control));
        self.live_guards.fetch_add(1, Ordering::AcqRel);
    }

    /// The guard is gone (its `Drop`, or a `begin` that queued nothing).
    pub(crate) fn unregister_guard(&self, control: &Arc<LeaseControl>) {
        let mut guards = lock(&self.guards);
        if let Some(i) = guards.iter().position(|c| Arc::ptr_eq(c, control)) {
            guards.swap_remove(i);
            self.live_guards.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// The queue of the lease being served, if any.
    pub(crate) fn lease_waker(&self) -> Option<mpsc::Sender<Message>> {
        lock(&self.serving_lease)
            .as_ref()
            .and_then(|(_, wake)| wake.upgrade())
    }

    /// Marks the open transaction as a guard's (see [`GuardState`]).
    pub(crate) fn own_transaction(&self) {
        self.guard.store(GuardState::Owned as u8, Ordering::Release);
    }

    /// The guard's transaction is over (committed, rolled back, dropped).
    pub(crate) fn free_transaction(&self) {
        self.guard.store(GuardState::Free as u8, Ordering::Release);
    }

    pub(crate) fn transaction_is_owned(&self) -> bool {
        self.guard.load(Ordering::Acquire) != GuardState::Free as u8
    }

    /// Runs the guard's own commit: the commit hook lets it pass.
    pub(crate) fn guard_commit<R>(&self, commit: impl FnOnce() -> R) -> R {
        let before = self
            .guard
            .swap(GuardState::Committing as u8, Ordering::AcqRel);
        let r = commit();
        self.guard.store(before, Ordering::Release);
        r
    }

    /// For the commit hook: a commit that no guard asked for, while a guard
    /// owns the transaction.
    pub(crate) fn refuses_commit(&self) -> bool {
        self.guard.load(Ordering::Acquire) == GuardState::Owned as u8
    }

    pub(crate) fn take_fault(&self) -> Option<Error> {
        if !self.fault_pending.swap(false, Ordering::AcqRel) {
            return None;
        }
        lock(&self.fault)
            .take()
            .map(|message| Error::Panic { message })
    }

    /// Leaves work for the worker's next request (see [`Deferred`]).
    pub(crate) fn defer(&self, work: Deferred) {
        lock(&self.deferred).push(work);
        self.deferred_pending.store(true, Ordering::Release);
    }

    /// A savepoint name never used before on this connection, so deferred
    /// work for an old savepoint can never touch a newer one.
    pub(crate) fn savepoint_name(&self) -> String {
        format!(
            "aiolite_sp_{}",
            self.next_savepoint.fetch_add(1, Ordering::Relaxed)
        )
    }
}

type RowsOf<'stmt> = rusqlite::Rows<'stmt>;

self_cell!(
    struct StatementRows<'conn> {
        owner: MutBorrow<Statement<'conn>>,
        #[covariant]
        dependent: RowsOf,
    }
);

type StatementRowsOf<'conn> = StatementRows<'conn>;

self_cell!(
    /// A statement parked between two chunks of a stream, with the connection
    /// alias it was prepared on.
    struct Cursor {
        owner: Rc<rusqlite::Connection>,
        #[not_covariant]
        dependent: StatementRowsOf,
    }
);

/// What a request sees: the connection and the worker's bookkeeping.
pub(crate) struct Worker {
    // Field order is drop order: parked statements and open blobs go before
    // the alias they were prepared on, and all before the connection.
    cursors: HashMap<u64, Parked>,
    blobs: HashMap<u64, OpenBlob>,
    alias: Rc<rusqlite::Connection>,
    pub(crate) conn: rusqlite::Connection,
    pub(crate) shared: Arc<Shared>,
    chunk_size: usize,
    isolation_level: Option<TransactionBehavior>,
    slow_statement: Duration,
    next_parked_id: u64,
    /// Set by a `begin` request: serve this channel alone until the lease ends.
    lease: Option<Lease>,
    /// Set by a `begin` request whose BEGIN failed, for the lease it starts.
    begin_failed: Option<Arc<Error>>,
    /// How long the running request waited in the queue (see
    /// [`Worker::started_request`]), for its statement's event.
    queue_wait: Cell<Duration>,
    /// When the running request started, for its execution time (taken by
    /// `finished_request`).
    request_started: Cell<Option<Instant>>,
    /// The lease being served.
    serving: Option<Serving>,
    leases: u64,
    /// Set by the request that ends the lease (commit or rollback).
    end_lease: bool,
    /// A pool writer: roll back what a request without the lease left open.
    rollback_stray: bool,
    /// A pool writer: tell the pool about schema changes (`note_schema`).
    tracks_schema: bool,
    /// `ConnectOptions::snapshot_age_limit`.
    snapshot_limit: Option<Duration>,
    /// Streams stopped for their snapshot's age, with that age, until their
    /// owner learns it (next fetch) or goes (its release).
    expired: HashMap<u64, Duration>,
    /// This worker's own queue, for the timer that enforces the limit on an
    /// idle connection.
    wake_self: mpsc::WeakSender<Message>,
    /// Column names per SQL text, so a point query does not allocate them on
    /// every run. Checked against the statement before use: a schema change
    /// that renames or retypes a column is seen.
    columns: RefCell<foldhash::HashMap<String, Columns>>,
    /// The running query's statement counters before its first step, for
    /// [`Worker::columns_of`].
    step_marks: Cell<Option<StepMarks>>,
    /// The running query's columns were checked against `columns`, at this
    /// re-prepare count of its statement.
    columns_checked: Cell<Option<i32>>,
    /// A read batch's transaction is open (see [`Worker::run_read_batch`]).
    read_batch: Cell<bool>,
    /// Group commit (the pool's writer, when asked for).
    group: Group,
}

/// Spawns the worker thread, which opens and configures the connection.
/// Returns once the connection is open (or failed to).
pub(crate) async fn spawn(
    opts: ConnectOptions,
    shared: Arc<Shared>,
    thread_name: String,
) -> Result<(
    mpsc::Sender<Message>,
    rusqlite::InterruptHandle,
    WorkerThread,
)> {
    let (tx, rx) = mpsc::channel(opts.queue_bound);
    let wake_self = tx.downgrade();
    let (ready_tx, ready_rx) = oneshot::channel();
    let (exited_tx, exited) = oneshot::channel::<()>();
    let path = opts.display_path();
    let handle = std::thread::Builder::new()
        .name(thread_name)
        .spawn(move || {
            // Dropped last, even on unwind: tells `close` the thread is done.
            let _exited = exited_tx;
            let worker = match Worker::open(&opts, shared, wake_self) {
                Ok(w) => w,
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            let interrupt = worker.conn.get_interrupt_handle();
            if ready_tx.send(Ok(interrupt)).is_err() {
                // The opener went away: nobody can use this connection.
                let _ = worker.finish();
                return;
            }
            worker.serve(rx);
        })
        .map_err(|e| Error::open_failed(&path, format!("cannot spawn the worker thread: {e}")))?;
    let interrupt = ready_rx.await.map_err(|_| Error::Closed)??;
    Ok((tx, interrupt, WorkerThread { handle, exited }))
}

/// The worker's thread, to be joined by `close`.
#[derive(Debug)]
pub(crate) struct WorkerThread {
    handle: std::thread::JoinHandle<()>,
    exited: oneshot::Receiver<()>,
}

impl WorkerThread {
    /// Waits (without blocking the runtime) until the thread has finished,
    /// then joins it.
    pub(crate) async fn join(self) {
        let _ = self.exited.await;
        let _ = self.handle.join();
    }
}

impl Worker {
    fn serve(mut self, mut rx: mpsc::Receiver<Message>) {
        let mut next = None;
        let close_reply = loop {
            let Some(msg) = next.take().or_else(|| next_message(&mut rx, false)) else {
                break None;
            };
            match msg {
                Message::Run {
                    id,
                    span,
                    job,
                    kind,
                } => {
                    if !matches!(kind, Kind::Begin | Kind::GroupWrite) && self.group.is_open() {
                        // Nothing but members may see the group's work
                        // before it is durable.
                        self.holding_handle(Worker::group_commit_now);
                    }
                    if kind == Kind::Read && !rx.is_empty() && self.may_batch_reads() {
                        next = self.run_read_batch(id, span, job, &mut rx);
                    } else {
                        self.run(id, span, job);
                    }
                    if let Some(lease) = self.lease.take() {
                        self.serve_lease(lease);
                    }
                }
                Message::Close(reply) => break Some(reply),
                Message::Wake => self.holding_handle(|w| {
                    w.do_deferred();
                    w.publish_resources();
                }),
            }
            // After a wake-up too: a group whose last member committed while a
            // wake-up (a dropped stream) waited in the queue commits now, not
            // at the next request, which on an idle pool may never come.
            self.after_request(rx.is_empty() && next.is_none());
        };
        if self.group.is_open() {
            self.holding_handle(Worker::group_commit_now);
        }
        self.shared.closed.store(true, Ordering::Release);
        rx.close();
        let mut other_closers = Vec::new();
        while let Ok(msg) = rx.try_recv() {
            // Requests queued after the close are dropped: their callers get
            // `Error::Closed`. Concurrent closes succeed.
            if let Message::Close(reply) = msg {
                other_closers.push(reply);
            }
        }
        let result = self.finish();
        if let Err(e) = &result {
            tracing::warn!(error = %e, "closing the connection failed");
        }
        if let Some(reply) = close_reply {
            let _ = reply.send(result);
        }
        for reply in other_closers {
            let _ = reply.send(Ok(()));
        }
    }

    /// What the writer does between two messages of its main queue.
    fn after_request(&mut self, queue_empty: bool) {
        if self.group.is_open() {
            self.holding_handle(|w| {
                w.group_check();
                if queue_empty || w.group.is_full() {
                    w.group_commit_now();
                }
            });
        } else if self.rollback_stray && !self.conn.is_autocommit() {
            // The pool's writer is shared: a transaction nobody leased must
            // not swallow the next task's writes.
            self.holding_handle(|w| {
                w.rollback_if_open("a request left a transaction open on the pool's writer");
            });
        }
    }

    /// Serves a transaction's lease channel until the lease ends: the guard
    /// commits or rolls back (its request sets `end_lease`), or the guard is
    /// dropped (its `LeaseControl` says so, or every sender of the channel is
    /// gone), which rolls back.
    ///
    /// Ownership while it runs: the lease's transaction belongs to the guard
    /// (`Shared::own_transaction`, so no commit but the guard's passes the
    /// commit hook); statements parked during the lease belong to it and are
    /// finalized when it ends; requests still queued on the lease when it
    /// ends are dropped unrun, and their callers get
    /// [`Error::TransactionEnded`].
    fn serve_lease(&mut self, mut lease: Lease) {
        self.leases += 1;
        let held_since = Instant::now();
        self.shared.stats.lease_started();
        let begin_failed = self.begin_failed.take();
        // A transaction open after a failed BEGIN is not the guard's (one
        // from `execute("BEGIN")`): the guard neither owns nor ends it.
        if !self.conn.is_autocommit() && begin_failed.is_none() {
            self.shared.own_transaction();
        }
        let began = begin_failed.is_none();
        self.serving = Some(Serving {
            generation: self.leases,
            ended: None,
            begin_failed,
        });
        self.publish_resources();
        let dropped = self.serve_lease_until_end(&mut lease);
        *lock(&self.shared.serving_lease) = None;
        // A waker left registered would keep its task's allocation alive
        // for as long as anything holds the control (a stream opened in the
        // transaction can outlive it).
        drop(lease.control.parked.take());
        // Dropping the receiver drops the requests still queued on it: their
        // callers learn that the transaction ended.
        drop(lease);
        self.holding_handle(|w| w.end_of_lease(dropped && began));
        self.shared.stats.lease_ended(held_since.elapsed());
    }

    /// Serves the lease's requests; `true` when the guard went away without
    /// ending the transaction.
    fn serve_lease_until_end(&mut self, lease: &mut Lease) -> bool {
        self.end_lease = false;
        loop {
            // Checked before each message: after the guard is dropped,
            // nothing queued behind it (a stream's prefetch) may run.
            if lease.control.is_ended() {
                return true;
            }
            // The lease holder's next request is on its way, and nothing
            // else may run here meanwhile: worth waiting for on the spot.
            match next_message(&mut lease.rx, true) {
                Some(Message::Run { id, span, job, .. }) => {
                    self.run(id, span, job);
                    if self.group.in_member() {
                        self.holding_handle(Worker::group_check);
                    }
                    if self.end_lease {
                        self.end_lease = false;
                        return false;
                    }
                }
                Some(Message::Wake) => self.holding_handle(|w| {
                    w.do_deferred();
                    w.publish_resources();
                }),
                Some(Message::Close(reply)) => {
                    let _ = reply.send(Err(Error::Misuse(
                        "close is not available inside a transaction: commit or roll it back first"
                            .to_owned(),
                    )));
                }
                None => return true,
            }
        }
    }

    /// Releases everything the lease owned, on every way it can end.
    fn end_of_lease(&mut self, dropped: bool) {
        if dropped {
            if self.group.in_member() {
                self.group_rollback_member();
            } else {
                self.rollback_if_open("the transaction guard was dropped");
            }
        }
        let generation = self.serving.take().map(|s| s.generation);
        let before = self.cursors.len();
        self.cursors.retain(|_, p| {
            let keep = p.lease.is_none() || p.lease != generation;
            if !keep {
                events::stream_closed(
                    &p.sql,
                    p.delivered,
                    p.opened.elapsed(),
                    "its transaction ended",
                );
            }
            keep
        });
        if self.cursors.len() != before {
            tracing::debug!(
                streams = before - self.cursors.len(),
                "streams opened in the transaction end with it"
            );
        }
        self.do_deferred();
        if !self.group.is_open() {
            self.shared.free_transaction();
        }
        self.publish_resources();
    }

    /// Whether a request of `kind` may run now. Inside a dead lease (SQLite
    /// ended the transaction on its own) nothing runs but the guard's own end
    /// (`commit` reports the rollback, `rollback` accepts it) and a
    /// savepoint's rollback: no statement of the guard runs in autocommit.
    pub(crate) fn admit(&self, kind: Kind) -> Result<()> {
        if matches!(kind, Kind::EndLease | Kind::Undo) {
            return Ok(());
        }
        self.dead_lease().map_or(Ok(()), Err)
    }

    /// Called by the `begin` request: the serve loop serves the lease next.
    /// (The caller counts as the lease's holder from its `begin` on, through
    /// `Shared::register_guard`.)
    pub(crate) fn start_lease(&mut self, lease: Lease) {
        *lock(&self.shared.serving_lease) = Some((Arc::clone(&lease.control), lease.wake.clone()));
        self.lease = Some(lease);
    }

    /// A guard's `begin`: opens the transaction (or joins the open group on
    /// a group-commit writer) and starts the lease the guard owns. Nobody
    /// waits for its answer: the guard's requests are queued on the lease
    /// behind it. If the BEGIN fails, the lease is served all the same, dead
    /// from the start ([`Error::BeginFailed`] for each of its requests but
    /// `rollback`), so nothing the guard sends runs outside a transaction.
    /// A guard dropped before this ran begins nothing.
    pub(crate) fn begin_lease(&mut self, behavior: TransactionBehavior, lease: Lease) {
        if lease.control.is_ended() {
            return;
        }
        // The lease is served from here on: its holder's task, parked while
        // the BEGIN waited, is woken now, so that its wake-up overlaps the
        // BEGIN and the first statement.
        lease.control.draw_near();
        lease.control.parked.wake();
        let started = Instant::now();
        let mut begun = if self.group.enabled {
            self.group_begin()
        } else {
            self.conn
                .execute_batch(behavior.begin_sql())
                .map_err(Error::from)
        };
        let sql = if self.group.enabled {
            "SAVEPOINT (a group commit member)"
        } else {
            behavior.begin_sql()
        };
        events::statement(
            sql,
            self.queue_wait(),
            started.elapsed(),
            self.slow_statement,
        );
        if let Some(fault) = self.shared.take_fault() {
            // A user callback (the authorizer) panicked during BEGIN.
            if begun.is_ok() && !self.group.enabled {
                self.rollback_if_open("a callback panicked during BEGIN");
            }
            begun = Err(fault);
        }
        if let Err(e) = begun {
            tracing::debug!(error = %e, "a transaction guard's BEGIN failed");
            self.begin_failed = Some(Arc::new(e));
        }
        self.start_lease(lease);
    }

    /// A guard's `commit`: ends the lease after this request. `Some` for a
    /// group member, answered once the group's COMMIT ran; a failed COMMIT
    /// rolls the transaction back.
    pub(crate) fn commit_lease(&mut self) -> Result<Option<oneshot::Receiver<Result<()>>>> {
        self.end_lease = true;
        if let Some(dead) = self.dead_lease() {
            return Err(dead);
        }
        if self.group.in_member() {
            return self.group_release().map(Some);
        }
        let shared = Arc::clone(&self.shared);
        let started = Instant::now();
        let r = shared.guard_commit(|| self.conn.execute_batch("COMMIT"));
        events::statement(
            "COMMIT",
            self.queue_wait(),
            started.elapsed(),
            self.slow_statement,
        );
        if r.is_err() {
            self.rollback_if_open("the commit failed");
        }
        r?;
        Ok(None)
    }

    /// A guard's `rollback`: ends the lease after this request; a
    /// transaction SQLite rolled back already is not an error.
    pub(crate) fn rollback_lease(&mut self) -> Result<()> {
        self.end_lease = true;
        if self.dead_lease().is_some() {
            return Ok(());
        }
        if self.group.in_member() {
            self.group_rollback_member();
            return Ok(());
        }
        let started = Instant::now();
        let r = self.rollback();
        events::statement(
            "ROLLBACK",
            self.queue_wait(),
            started.elapsed(),
            self.slow_statement,
        );
        r
    }

    /// A request starts: it was queued at `queued_at`.
    pub(crate) fn started_request(&self, queued_at: Instant) {
        let now = Instant::now();
        let wait = now.saturating_duration_since(queued_at);
        self.queue_wait.set(wait);
        self.request_started.set(Some(now));
        self.shared.stats.request_started(wait);
    }

    /// A request is done, just before its answer goes: its execution time is
    /// counted (so a caller that has the answer sees it counted).
    pub(crate) fn finished_request(&self) {
        if let Some(started) = self.request_started.take() {
            self.shared.stats.request_ran(started.elapsed());
        }
    }

    /// `ConnectOptions::log_slow_statements`.
    pub(crate) fn slow_statement(&self) -> Duration {
        self.slow_statement
    }

    /// How long the running request waited in the queue.
    pub(crate) fn queue_wait(&self) -> Duration {
        self.queue_wait.get()
    }

    /// Whether the worker is serving a transaction's lease.
    pub(crate) fn in_lease(&self) -> bool {
        self.serving.is_some()
    }

    /// The error a dead lease's `commit` returns, if the lease is dead.
    pub(crate) fn dead_lease(&self) -> Option<Error> {
        match &self.serving {
            Some(Serving {
                begin_failed: Some(cause),
                ..
            }) => Some(Error::BeginFailed {
                cause: Arc::clone(cause),
            }),
            Some(Serving {
                ended: Some(cause), ..
            }) => Some(Error::RolledBack {
                cause: cause.clone(),
            }),
            _ => None,
        }
    }

    /// Called after a request found a guarded transaction open and left it
    /// ended, without being the guard's own end: SQLite rolled it back (the
    /// request's error says why), or a statement of the request ended it.
    /// The request's error becomes [`Error::RolledBack`]; the lease is dead
    /// from now on; a group's members learn it from the group's outcome.
    pub(crate) fn guarded_transaction_ended<R>(&mut self, result: &mut Result<R>) {
        let cause = match std::mem::replace(result, Err(Error::TransactionEnded)) {
            Err(e) if e.extended_code() != Some(CONSTRAINT_COMMITHOOK) => {
                let cause = Arc::new(e);
                *result = Err(Error::RolledBack {
                    cause: Some(Arc::clone(&cause)),
                });
                Some(cause)
            }
            other => {
                // A COMMIT through the guard's handle, turned into a
                // rollback by the commit hook, or a ROLLBACK that succeeded.
                *result = match other {
                    Ok(v) => Ok(v),
                    Err(_) => Err(Error::RolledBack { cause: None }),
                };
                None
            }
        };
        tracing::warn!(
            cause = cause.as_deref().map(tracing::field::display),
            "the transaction a guard holds was rolled back inside it; its later statements fail"
        );
        if let Some(serving) = self.serving.as_mut() {
            if serving.ended.is_none() {
                serving.ended = Some(cause.clone());
            }
        }
        self.group.ended_by(cause);
    }

    /// Runs `f` holding this connection's handle lock, which keeps a backup
    /// reading from this connection out while the worker uses the handle.
    fn holding_handle<R>(&mut self, f: impl FnOnce(&mut Worker) -> R) -> R {
        let shared = Arc::clone(&self.shared);
        let _handle = shared.handle.acquire();
        f(self)
    }

    /// Publishes what the worker holds for [`Connection::resources`].
    ///
    /// [`Connection::resources`]: crate::Connection::resources
    fn publish_resources(&mut self) {
        self.sweep_snapshots();
        let shared = &self.shared;
        shared
            .parked_statements
            .store(self.cursors.len(), Ordering::Relaxed);
        shared.open_blobs.store(self.blobs.len(), Ordering::Relaxed);
        let oldest = self
            .cursors
            .values()
            .map(|p| p.opened)
            .min()
            .map_or(0, |at| {
                at.saturating_duration_since(process_epoch()).as_millis() as u64 + 1
            });
        shared.oldest_snapshot.store(oldest, Ordering::Relaxed);
    }

    /// Finalizes the parked statements whose snapshot passed the limit (their
    /// stream's next fetch reports it), and logs the old ones once. Runs after
    /// every request and wake-up; a timer wakes an idle worker at a limit.
    fn sweep_snapshots(&mut self) {
        if self.cursors.is_empty() {
            return;
        }
        let now = Instant::now();
        let warn_after = self
            .snapshot_limit
            .map_or(SNAPSHOT_WARN, |l| (l / 2).min(SNAPSHOT_WARN));
        let mut expired = Vec::new();
        for (&id, parked) in &mut self.cursors {
            let age = now.saturating_duration_since(parked.opened);
            if self.snapshot_limit.is_some_and(|limit| age > limit) {
                expired.push((id, age));
            } else if age > warn_after && !parked.warned {
                parked.warned = true;
                tracing::warn!(
                    ?age,
                    "a stream has kept its read snapshot for {age:?}: the WAL cannot be checkpointed past it (see ConnectOptions::snapshot_age_limit)"
                );
            }
        }
        for (id, age) in expired {
            self.cursors.remove(&id);
            self.expired.insert(id, age);
            tracing::warn!(
                ?age,
                "a stream passed its snapshot age limit and was stopped"
            );
        }
    }

    fn run(&mut self, id: u64, span: Span, job: Job) {
        self.holding_handle(|w| {
            w.do_deferred();
            let _entered = span.enter();
            w.shared.running.store(id, Ordering::Relaxed);
            job(w);
            w.publish_resources();
        });
        if self.shared.cancel_pending.swap(false, Ordering::AcqRel) {
            // Every id listed is finished or will be skipped (its caller is
            // gone, which the request checks before it starts).
            lock(&self.shared.cancelled).clear();
        }
    }

    fn do_deferred(&mut self) {
        if self.shared.deferred_pending.swap(false, Ordering::AcqRel) {
            for work in std::mem::take(&mut *lock(&self.shared.deferred)) {
                match work {
                    Deferred::CloseCursor(id) => {
                        if let Some(p) = self.cursors.remove(&id) {
                            events::stream_closed(
                                &p.sql,
                                p.delivered,
                                p.opened.elapsed(),
                                "dropped",
                            );
                        }
                        self.expired.remove(&id);
                    }
                    Deferred::RollbackTo(name) => {
                        // Fails harmlessly if the transaction already ended.
                        let sql = format!("ROLLBACK TO {name}; RELEASE {name}");
                        if let Err(e) = self.conn.execute_batch(&sql) {
                            tracing::debug!(error = %e, savepoint = %name, "deferred savepoint rollback");
                        }
                    }
                    Deferred::CloseBlob(id) => {
                        self.blobs.remove(&id);
                    }
                }
            }
            if let Some(e) = self.shared.take_fault() {
                // Nobody is waiting for this work; the panic is only logged.
                tracing::warn!(error = %e, "a callback panicked during deferred cleanup");
            }
        }
    }

    /// Finalizes parked statements and closes the connection.
    fn finish(self) -> Result<()> {
        let Worker {
            cursors,
            blobs,
            alias,
            conn,
            shared,
            ..
        } = self;
        // A backup reading from this connection holds a pin until it has
        // finished its `sqlite3_backup` object; closing before that would
        // fail (SQLITE_BUSY) and leave the handle open forever.
        let _handle = shared.handle.acquire_for_close();
        drop(blobs);
        drop(cursors);
        // The alias owns nothing (rusqlite keeps hook closures as the
        // handle's client data, freed by `conn`'s close below); it goes first
        // only because statements were prepared on it.
        drop(alias);
        let _guard = crate::sqlite::open_close_guard();
        conn.close().map_err(|(_, e)| Error::from(e))
    }

    // ----- statement helpers used by requests -----

    /// On a pool's writer, after a statement that may change the schema
    /// (`sql` is `None` for a script or a `call`, whose statements are not
    /// known): drops the pool's remembered routes, and tells it whether the
    /// writer now has TEMP objects or attached databases, which only it can
    /// see (so every statement goes to it while they exist).
    pub(crate) fn note_schema(&self, sql: Option<&str>) {
        if !self.tracks_schema {
            return;
        }
        if let Some(sql) = sql {
            let word = first_word(sql);
            if !["CREATE", "DROP", "ALTER", "ATTACH", "DETACH"]
                .iter()
                .any(|k| word.eq_ignore_ascii_case(k))
            {
                return;
            }
        }
        self.shared.schema_epoch.fetch_add(1, Ordering::AcqRel);
        let private = crate::metrics::prepare_cached(
            &self.conn,
            "SELECT EXISTS (SELECT 1 FROM temp.sqlite_schema) \
                 OR (SELECT count(*) FROM pragma_database_list) > 2",
        )
        .and_then(|mut s| s.query_row([], |r| r.get::<_, bool>(0)))
        // Unknown: the safe answer is that the readers cannot see it all.
        .unwrap_or(true);
        self.shared.private_schema.store(private, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The identity is the task's own id (as tokio prints it), doubled; a
    /// thread outside any task gets an odd one of its own.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn callers_are_told_apart_exactly() {
        let in_task = || async {
            let id: u64 = tokio::task::id().to_string().parse().expect("a number");
            (caller_identity(), caller_identity(), id)
        };
        let (a, again, a_id) = tokio::spawn(in_task()).await.expect("task");
        assert_eq!(a, 2 * a_id);
        assert_eq!(again, a, "stable within a task");
        let (b, _, b_id) = tokio::spawn(in_task()).await.expect("task");
        assert_eq!(b, 2 * b_id);
        assert_ne!(a, b);
        // The test's body runs under `block_on`, in no task.
        let here = caller_identity();
        assert_eq!(here % 2, 1);
        assert_eq!(caller_identity(), here);
        let there = std::thread::spawn(caller_identity).join().expect("thread");
        assert_eq!(there % 2, 1);
        assert_ne!(there, here);
    }
}
