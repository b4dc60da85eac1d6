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
//! - **A transaction's lease** belongs to its `Transaction` guard. It ends
//!   with the guard's `commit`/`rollback` (requests of [`Kind::EndLease`]),
//!   with the guard's drop (its [`LeaseControl`] is checked before every
//!   message, and the drop wakes the worker), or when every sender of the
//!   lease's queue is gone (a `begin` whose caller left): then it rolls back.
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

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use rusqlite::types::ValueRef;
use rusqlite::{CachedStatement, Statement};
use self_cell::{self_cell, MutBorrow};
use tokio::sync::{mpsc, oneshot};
use tracing::Span;

use crate::error::{Error, Result};
use crate::group::Group;
use crate::options::{ConnectOptions, Role, TransactionBehavior};
use crate::params::Params;
use crate::row::{columns_of, Column, Columns, Row, RowsBuilder};
use crate::row_decoder::RowDecoder;
use crate::sql::{check_nul, check_sql, first_word, is_dml};

/// What a request is, as far as the worker's batching is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Anything: runs alone.
    Plain,
    /// One query that looks like a read: it may share a read transaction with
    /// the reads queued beside it.
    Read,
    /// A transaction's `begin`: on a group-commit writer it may join the
    /// open group.
    Begin,
    /// A transaction guard's `commit` or `rollback`: it ends the lease, and
    /// runs even when the transaction is dead (it reports or accepts that).
    EndLease,
    /// A savepoint's rollback: runs even when the transaction is dead (the
    /// work it would undo is gone already).
    Undo,
}

/// A request: runs on the worker with the worker's state.
pub(crate) type Job = Box<dyn FnOnce(&mut Worker) + Send>;

pub(crate) enum Message {
    Run {
        id: u64,
        span: Span,
        job: Job,
        /// What the worker may do with it beyond running it.
        kind: Kind,
    },
    Close(oneshot::Sender<Result<()>>),
    /// Nothing to do; lets an idle worker notice dropped cursors.
    Wake,
}

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
}

impl LeaseControl {
    pub(crate) fn new(owner: u64) -> LeaseControl {
        LeaseControl {
            ended: AtomicBool::new(false),
            owner: AtomicU64::new(owner),
        }
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
}

/// SQLite's extended code for a commit the commit hook turned into a
/// rollback (`SQLITE_CONSTRAINT_COMMITHOOK`).
const CONSTRAINT_COMMITHOOK: i32 = 531;

/// How often (in SQLite VM instructions) a running statement checks whether its
/// caller is gone. A point query never reaches it; a scan checks every few µs.
pub(crate) const CANCEL_CHECK_OPS: i32 = 1000;

/// State shared by the handles and the worker.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    next_id: AtomicU64,
    running: AtomicU64,
    cancel_pending: AtomicBool,
    cancelled: Mutex<Vec<u64>>,
    pub(crate) closed: AtomicBool,
    /// The worker serves a transaction's lease: requests on the main queue
    /// wait until it ends.
    pub(crate) leased: AtomicBool,
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
    pub(crate) handle: crate::backup::HandleLock,
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
/// of `#[tokio::main]` runs under `block_on`, in no task). Never 0.
pub(crate) fn caller_identity() -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    match tokio::task::try_id() {
        Some(task) => (0u8, task).hash(&mut h),
        None => (1u8, std::thread::current().id()).hash(&mut h),
    }
    h.finish() | 1
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

/// Work left by a `Drop` (which cannot await), done by the worker before its
/// next request, in the order it was left.
#[derive(Debug)]
pub(crate) enum Deferred {
    /// A dropped stream: finalize its parked statement.
    CloseCursor(u64),
    /// A savepoint dropped without release: undo it.
    RollbackTo(String),
    /// A dropped blob handle: close it.
    CloseBlob(u64),
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

    /// The caller holds this connection's lease: a request it sends through
    /// the connection's own queue would wait for that lease forever.
    ///
    /// `leased` is only the cheap first look (it is set before `begin`
    /// answers, so the holder never misses it). The answer comes from the
    /// lease being served alone, its owner and end read together: a guard
    /// dropped a moment ago is over for its caller, though the worker may not
    /// have seen it yet, and the next lease's state is never read with the
    /// last one's owner.
    pub(crate) fn leased_by_caller(&self) -> bool {
        self.leased.load(Ordering::Acquire)
            && lock(&self.serving_lease).as_ref().is_some_and(|(c, _)| {
                !c.is_ended() && c.owner.load(Ordering::Acquire) == caller_identity()
            })
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

struct Parked {
    cursor: Cursor,
    columns: Columns,
    /// Rows in the next chunk (see [`Worker::fetch_cursor`]).
    rows: usize,
    /// The lease it was opened in, if any: it is finalized when that lease
    /// ends (a stream opened in a transaction ends with it).
    lease: Option<u64>,
    /// When its snapshot was taken (its first step).
    opened: Instant,
    /// Logged as old already.
    warned: bool,
}

/// A stream's chunks double from `iter_chunk_size` rows up to this many, while
/// a chunk takes less than [`GROW_BELOW`] bytes. Every chunk is a round trip
/// and a hand-over between two threads; a long scan in chunks of 64 rows pays
/// that every few microseconds.
const MAX_CHUNK_ROWS: usize = 4096;

/// A chunk that takes this much memory stops the growth: memory stays bounded
/// by a few chunks of this size, whatever the rows hold.
const GROW_BELOW: usize = 256 * 1024;

/// A chunk of a stream's items; `cursor` is `None` once the result is exhausted.
pub(crate) struct Chunk<T> {
    pub(crate) rows: Vec<T>,
    pub(crate) cursor: Option<u64>,
}

/// How a stream turns the rows of one chunk into its items, on the worker.
/// The reader travels with each fetch request and back with its chunk, so a
/// decoder keeps its state (resolved column indexes) across chunks without
/// the worker storing anything typed.
pub(crate) trait ReadChunk: Send + 'static {
    type Item: Send + 'static;

    /// Reads up to `max` rows; `true` once the result is exhausted.
    fn read(
        &mut self,
        rows: &mut rusqlite::Rows<'_>,
        max: usize,
        columns: &mut Option<Columns>,
    ) -> Result<(Vec<Self::Item>, bool)>;

    /// About how much memory the last chunk read takes.
    fn footprint(&self) -> usize;
}

/// Owned [`Row`]s, in blocks.
#[derive(Default)]
pub(crate) struct RowBlocks {
    /// Text and blob bytes per row in the last chunk, to size the next.
    payload_per_row: usize,
    footprint: usize,
}

impl ReadChunk for RowBlocks {
    type Item = Row;

    fn read(
        &mut self,
        rows: &mut rusqlite::Rows<'_>,
        max: usize,
        columns: &mut Option<Columns>,
    ) -> Result<(Vec<Row>, bool)> {
        let (block, done) = read_block(rows, max, columns, columns_of, self.payload_per_row)?;
        let Some(block) = block else {
            self.footprint = 0;
            return Ok((Vec::new(), done));
        };
        self.payload_per_row = block.payload() / block.len().max(1);
        self.footprint = block.footprint();
        Ok((block.finish(), done))
    }

    fn footprint(&self) -> usize {
        self.footprint
    }
}

/// Values from a [`RowDecoder`].
pub(crate) struct Decoded<D> {
    decoder: D,
    footprint: usize,
}

impl<D> Decoded<D> {
    pub(crate) fn new(decoder: D) -> Decoded<D> {
        Decoded {
            decoder,
            footprint: 0,
        }
    }
}

impl<D: RowDecoder> ReadChunk for Decoded<D> {
    type Item = D::Output;

    fn read(
        &mut self,
        rows: &mut rusqlite::Rows<'_>,
        max: usize,
        _: &mut Option<Columns>,
    ) -> Result<(Vec<D::Output>, bool)> {
        let mut out = Vec::with_capacity(max.min(MAX_CHUNK_ROWS));
        // What the decoded values hold on the heap is out of sight; the
        // first row's text and blob bytes stand in for every row's.
        let mut per_row = std::mem::size_of::<D::Output>();
        let mut done = false;
        while out.len() < max {
            match rows.next()? {
                Some(row) => {
                    if out.is_empty() {
                        per_row += payload_of(row);
                    }
                    out.push(self.decoder.decode(row)?);
                }
                None => {
                    done = true;
                    break;
                }
            }
        }
        self.footprint = per_row * out.len();
        Ok((out, done))
    }

    fn footprint(&self) -> usize {
        self.footprint
    }
}

/// The bytes of text and blobs in a row.
fn payload_of(row: &rusqlite::Row<'_>) -> usize {
    (0..row.as_ref().column_count())
        .map(|i| match row.get_ref(i) {
            Ok(ValueRef::Text(b) | ValueRef::Blob(b)) => b.len(),
            _ => 0,
        })
        .sum()
}

/// What a request sees: the connection and the worker's bookkeeping.
pub(crate) struct Worker {
    // Field order is drop order: parked statements and open blobs go before
    // the alias they were prepared on, and all before the connection.
    cursors: HashMap<u64, Parked>,
    pub(crate) blobs: HashMap<u64, crate::blob::OpenBlob>,
    alias: Rc<rusqlite::Connection>,
    pub(crate) conn: rusqlite::Connection,
    pub(crate) shared: Arc<Shared>,
    chunk_size: usize,
    isolation_level: Option<TransactionBehavior>,
    slow_statement: Duration,
    pub(crate) next_cursor: u64,
    /// Set by a `begin` request: serve this channel alone until the lease ends.
    lease: Option<Lease>,
    /// The lease being served.
    serving: Option<Serving>,
    leases: u64,
    /// Set by the request that ends the lease (commit or rollback).
    pub(crate) end_lease: bool,
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
    columns: RefCell<HashMap<String, Columns>>,
    /// A read batch's transaction is open (see [`Worker::run_read_batch`]).
    read_batch: Cell<bool>,
    /// Group commit (the pool's writer, when asked for).
    pub(crate) group: Group,
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
        .map_err(|e| Error::Open {
            path,
            code: rusqlite::ErrorCode::Unknown,
            extended_code: 0,
            message: format!("cannot spawn the worker thread: {e}"),
        })?;
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
    fn open(
        opts: &ConnectOptions,
        shared: Arc<Shared>,
        wake_self: mpsc::WeakSender<Message>,
    ) -> Result<Worker> {
        crate::sqlite::check_linked_version();
        let path = opts.display_path();
        let open_error = |e: rusqlite::Error| match e {
            rusqlite::Error::SqliteFailure(f, msg) => Error::Open {
                path: path.clone(),
                code: f.code,
                extended_code: f.extended_code,
                message: msg.unwrap_or_else(|| f.to_string()),
            },
            other => Error::Open {
                path: path.clone(),
                code: rusqlite::ErrorCode::Unknown,
                extended_code: 0,
                message: other.to_string(),
            },
        };
        let mut conn = {
            let _guard = crate::sqlite::open_close_guard();
            let conn = rusqlite::Connection::open_with_flags(&path, opts.open_flags())
                .map_err(open_error)?;
            // The first pragmas touch the file; keep them under the lock too
            // (where there is one: only an SQLite older than 3.51.2 needs it).
            if let Err(e) = configure(&conn, opts) {
                let _ = conn.close();
                return Err(match e {
                    Error::Sqlite {
                        code,
                        extended_code,
                        message,
                        ..
                    } => Error::Open {
                        path,
                        code,
                        extended_code,
                        message,
                    },
                    other => other,
                });
            }
            conn
        };
        if let Some(init) = &opts.init {
            let r = catch_unwind(AssertUnwindSafe(|| init(&mut conn)));
            let r = match r {
                Ok(r) => r.map_err(Error::from),
                Err(p) => Err(Error::panic(p)),
            };
            if let Err(e) = r {
                let _guard = crate::sqlite::open_close_guard();
                let _ = conn.close();
                return Err(e);
            }
        }
        if let (true, Some(set), false) = (
            opts.migrate_on_open,
            &opts.migrations,
            opts.role == Role::Reader,
        ) {
            if let Err(e) = crate::migrate::run(&mut conn, set, None) {
                let _guard = crate::sqlite::open_close_guard();
                let _ = conn.close();
                return Err(Error::Migration(e));
            }
        }
        if opts.role == Role::Writer {
            // Applies to rusqlite's own `transaction()` too (in `call`, in
            // migrations): the write lock is taken at BEGIN, so a read that
            // later writes cannot fail with SQLITE_BUSY_SNAPSHOT.
            conn.set_transaction_behavior(rusqlite::TransactionBehavior::Immediate);
        }
        crate::hooks::install_progress_handler(&mut conn, &shared, None)?;
        crate::hooks::install_commit_hook(&mut conn, &shared, None)?;
        // SAFETY: the alias is a second, non-owning `rusqlite::Connection` over
        // the same `sqlite3*`. It is used only on this thread, only to prepare
        // the statements parked by streams, so that `call` can still hand out
        // `&mut rusqlite::Connection` while a stream is open. It never closes
        // the handle, and `Worker`'s field order drops the parked statements and
        // the alias before `conn`, which owns and closes the handle.
        #[allow(unsafe_code)]
        let alias = unsafe { rusqlite::Connection::from_handle(conn.handle())? };
        shared.handle.set(&conn);
        Ok(Worker {
            cursors: HashMap::new(),
            blobs: HashMap::new(),
            alias: Rc::new(alias),
            conn,
            shared,
            chunk_size: opts.iter_chunk_size,
            isolation_level: opts.isolation_level,
            slow_statement: opts.slow_statement,
            next_cursor: 0,
            lease: None,
            serving: None,
            leases: 0,
            end_lease: false,
            rollback_stray: opts.role == Role::Writer,
            tracks_schema: opts.role == Role::Writer,
            snapshot_limit: opts.snapshot_age_limit,
            expired: HashMap::new(),
            wake_self,
            columns: RefCell::new(HashMap::new()),
            read_batch: Cell::new(false),
            group: Group::new(opts.group_commit),
        })
    }

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
                    if kind != Kind::Begin && self.group.is_open() {
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
        self.serving = Some(Serving {
            generation: self.leases,
            ended: None,
        });
        if !self.conn.is_autocommit() {
            self.shared.own_transaction();
        }
        self.publish_resources();
        let dropped = self.serve_lease_until_end(&mut lease);
        *lock(&self.shared.serving_lease) = None;
        // Dropping the receiver drops the requests still queued on it: their
        // callers learn that the transaction ended.
        drop(lease);
        self.holding_handle(|w| w.end_of_lease(dropped));
        self.shared.leased.store(false, Ordering::Release);
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
                    let _ = reply.send(Err(Error::Cancelled(
                        "close is not available inside a transaction",
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
        self.cursors
            .retain(|_, p| p.lease.is_none() || p.lease != generation);
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

    /// Called by the `begin` request, before its answer is sent: from the
    /// moment the caller holds the guard, the connection counts as leased to
    /// it (a request the caller then sends around the guard is refused, not
    /// queued behind it). The serve loop serves the lease next.
    pub(crate) fn start_lease(&mut self, lease: Lease) {
        *lock(&self.shared.serving_lease) = Some((Arc::clone(&lease.control), lease.wake.clone()));
        self.shared.leased.store(true, Ordering::Release);
        self.lease = Some(lease);
    }

    /// Whether the worker is serving a transaction's lease.
    pub(crate) fn in_lease(&self) -> bool {
        self.serving.is_some()
    }

    /// The error a dead lease's `commit` returns, if the lease is dead.
    pub(crate) fn dead_lease(&self) -> Option<Error> {
        match &self.serving {
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

    /// Whether a read batch may open a transaction now: none is open, and
    /// no parked cursor or open blob could be hurt by the batch's COMMIT (or
    /// the ROLLBACK that follows a failed one).
    fn may_batch_reads(&self) -> bool {
        self.conn.is_autocommit() && self.cursors.is_empty() && self.blobs.is_empty()
    }

    /// Runs `job` and then the reads queued behind it inside one read
    /// transaction: one lock of the WAL snapshot, one check of the file, and a
    /// warm page cache for all of them, instead of one each.
    ///
    /// Each answer is still one a lone request could have got: every request
    /// in the batch was queued before the batch's snapshot was taken (the
    /// batch takes at most the requests queued when it begins, and the
    /// snapshot is taken by its first read), and is answered after, so the
    /// snapshot's moment lies within each one's wait. A request that turns
    /// out to write ends the batch before its statement runs (see
    /// [`Worker::prepare`]). Returns the first message that is not a read,
    /// for the caller to serve next.
    fn run_read_batch(
        &mut self,
        id: u64,
        span: Span,
        job: Job,
        rx: &mut mpsc::Receiver<Message>,
    ) -> Option<Message> {
        let queued = rx.len().min(MAX_READ_BATCH);
        let began = self.holding_handle(|w| w.conn.execute_batch("BEGIN DEFERRED").is_ok());
        if !began {
            // An authorizer that refuses transactions, say: no batch.
            self.run(id, span, job);
            return None;
        }
        self.read_batch.set(true);
        self.run(id, span, job);
        let mut next = None;
        for _ in 0..queued {
            if !self.read_batch.get() || self.lease.is_some() {
                break;
            }
            match rx.try_recv() {
                Ok(Message::Run {
                    id,
                    span,
                    job,
                    kind: Kind::Read,
                }) => self.run(id, span, job),
                Ok(other) => {
                    next = Some(other);
                    break;
                }
                Err(_) => break,
            }
        }
        self.holding_handle(|w| w.end_read_batch());
        next
    }

    /// Ends a read batch: COMMIT of what only read, or ROLLBACK if that fails.
    fn end_read_batch(&self) {
        if self.read_batch.replace(false) && !self.conn.is_autocommit() {
            if let Err(e) = self.conn.execute_batch("COMMIT") {
                tracing::debug!(error = %e, "ending a read batch");
                self.rollback_if_open("a read batch could not commit");
            }
        }
    }

    fn do_deferred(&mut self) {
        if self.shared.deferred_pending.swap(false, Ordering::AcqRel) {
            for work in std::mem::take(&mut *lock(&self.shared.deferred)) {
                match work {
                    Deferred::CloseCursor(id) => {
                        self.cursors.remove(&id);
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

    pub(crate) fn rollback_if_open(&self, why: &str) {
        if !self.conn.is_autocommit() {
            tracing::debug!(why, "rolling back");
            if let Err(e) = self.conn.execute_batch("ROLLBACK") {
                tracing::warn!(error = %e, why, "rollback failed");
            }
        }
    }

    // ----- statement helpers used by requests -----

    fn prepare(&self, sql: &str) -> Result<CachedStatement<'_>> {
        check_sql(sql)?;
        let stmt = self
            .conn
            .prepare_cached(sql)
            .map_err(|e| Error::with_sql(e, sql))?;
        if self.read_batch.get() && !stmt.readonly() {
            // It writes: it must run in autocommit as it would alone.
            self.end_read_batch();
        }
        Ok(stmt)
    }

    /// Python's legacy transaction control: BEGIN before DML outside a transaction.
    fn implicit_begin(&self, sql: &str) -> Result<()> {
        if let Some(level) = self.isolation_level {
            if self.conn.is_autocommit() && is_dml(sql) {
                self.conn.execute_batch(level.begin_sql())?;
            }
        }
        Ok(())
    }

    fn log(&self, sql: &str, started: Instant) {
        let elapsed = started.elapsed();
        if elapsed >= self.slow_statement {
            tracing::warn!(sql, ?elapsed, "slow statement");
        } else {
            tracing::debug!(sql, ?elapsed, "statement");
        }
    }

    /// Prepares, binds and starts `sql`, hands the rows to `f`, then resets the
    /// statement (which completes a DML statement's implicit transaction).
    fn query<P: Params + ?Sized, R>(
        &self,
        sql: &str,
        params: &P,
        f: impl FnOnce(&mut rusqlite::Rows<'_>) -> Result<R>,
    ) -> Result<R> {
        let started = Instant::now();
        let mut stmt = self.prepare(sql)?;
        params.bind(&mut stmt).map_err(|e| e.attach_sql(sql))?;
        self.implicit_begin(sql)?;
        let mut rows = stmt.raw_query();
        let result = f(&mut rows).map_err(|e| e.attach_sql(sql));
        drop(rows);
        drop(stmt);
        self.note_schema(Some(sql));
        self.log(sql, started);
        result
    }

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
        let private = self
            .conn
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM temp.sqlite_schema) \
                 OR (SELECT count(*) FROM pragma_database_list) > 2",
            )
            .and_then(|mut s| s.query_row([], |r| r.get::<_, bool>(0)))
            // Unknown: the safe answer is that the readers cannot see it all.
            .unwrap_or(true);
        self.shared.private_schema.store(private, Ordering::Release);
    }

    pub(crate) fn execute<P: Params + ?Sized>(&self, sql: &str, params: &P) -> Result<usize> {
        let before = self.conn.total_changes();
        self.query(sql, params, |rows| {
            // Step to the end: `INSERT ... RETURNING` and friends run fully.
            while rows.next()?.is_some() {}
            Ok(())
        })?;
        // sqlite3_changes keeps the count of the last DML statement, so it would
        // be stale after DDL or a SELECT; total_changes tells whether this
        // statement changed anything at all.
        Ok(if self.conn.total_changes() == before {
            0
        } else {
            self.conn.changes() as usize
        })
    }

    pub(crate) fn execute_insert<P: Params + ?Sized>(&self, sql: &str, params: &P) -> Result<i64> {
        self.execute(sql, params)?;
        Ok(self.conn.last_insert_rowid())
    }

    pub(crate) fn execute_many<I, P>(&self, sql: &str, params: I) -> Result<usize>
    where
        I: IntoIterator,
        I::Item: std::borrow::Borrow<P>,
        P: Params + ?Sized,
    {
        let started = Instant::now();
        let mut stmt = self.prepare(sql)?;
        let mut total = 0;
        for p in params {
            std::borrow::Borrow::<P>::borrow(&p)
                .bind(&mut stmt)
                .map_err(|e| e.attach_sql(sql))?;
            self.implicit_begin(sql)?;
            let before = self.conn.total_changes();
            let mut rows = stmt.raw_query();
            while rows.next().map_err(|e| Error::with_sql(e, sql))?.is_some() {}
            drop(rows);
            if self.conn.total_changes() != before {
                total += self.conn.changes() as usize;
            }
        }
        self.log(sql, started);
        Ok(total)
    }

    pub(crate) fn execute_script(&self, sql: &str) -> Result<()> {
        check_nul(sql)?;
        let started = Instant::now();
        if self.isolation_level.is_some() && !self.conn.is_autocommit() {
            // Python's executescript commits a pending transaction first.
            self.conn.execute_batch("COMMIT")?;
        }
        let result = self
            .conn
            .execute_batch(sql)
            .map_err(|e| Error::with_sql(e, sql));
        self.note_schema(None);
        result?;
        self.log(sql, started);
        Ok(())
    }

    /// The columns of a statement, from the cache when unchanged. Call it
    /// after the first step: a cached statement whose schema changed is
    /// re-prepared by that step and reports its old columns before it.
    fn columns_of(&self, sql: &str, stmt: &Statement<'_>) -> Columns {
        const MAX_CACHED: usize = 512;
        let current = stmt.columns();
        let mut cache = self.columns.borrow_mut();
        if let Some(known) = cache.get(sql) {
            let same = known.len() == current.len()
                && known
                    .iter()
                    .zip(current)
                    .all(|(k, c)| k.name() == c.name() && k.decl_type() == c.decl_type());
            if same {
                return Arc::clone(known);
            }
        }
        let fresh = columns_of(stmt);
        if cache.len() >= MAX_CACHED {
            cache.clear();
        }
        cache.insert(sql.to_owned(), Arc::clone(&fresh));
        fresh
    }

    pub(crate) fn fetch_all<P: Params + ?Sized>(&self, sql: &str, params: &P) -> Result<Vec<Row>> {
        self.query(sql, params, |rows| {
            let (rows, _) = read_rows(rows, usize::MAX, &mut None, |s| self.columns_of(sql, s))?;
            Ok(rows)
        })
    }

    pub(crate) fn fetch_optional<P: Params + ?Sized>(
        &self,
        sql: &str,
        params: &P,
    ) -> Result<Option<Row>> {
        self.query(sql, params, |rows| {
            let (mut rows, _) = read_rows(rows, 1, &mut None, |s| self.columns_of(sql, s))?;
            Ok(rows.pop())
        })
    }

    /// Decodes up to `max` rows with `decoder`, on this thread.
    pub(crate) fn decode_rows<P, D>(
        &self,
        sql: &str,
        params: &P,
        decoder: &mut D,
        max: usize,
    ) -> Result<Vec<D::Output>>
    where
        P: Params + ?Sized,
        D: RowDecoder,
    {
        self.query(sql, params, |rows| {
            let mut out = Vec::new();
            while out.len() < max {
                match rows.next()? {
                    Some(row) => out.push(decoder.decode(row)?),
                    None => break,
                }
            }
            Ok(out)
        })
    }

    pub(crate) fn query_map<P, T, F>(&self, sql: &str, params: &P, mut f: F) -> Result<Vec<T>>
    where
        P: Params + ?Sized,
        T: Send + 'static,
        F: FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T> + Send + 'static,
    {
        let mut decoder = move |row: &rusqlite::Row<'_>| Ok(f(row)?);
        self.decode_rows(sql, params, &mut decoder, usize::MAX)
    }

    /// Whether SQLite calls the statement read-only (`sqlite3_stmt_readonly`).
    pub(crate) fn is_read_only(&self, sql: &str) -> Result<bool> {
        Ok(self.prepare(sql)?.readonly())
    }

    pub(crate) fn describe(&self, sql: &str) -> Result<Vec<Column>> {
        check_sql(sql)?;
        // Not from the statement cache: a cached statement reports the columns
        // of the schema it was prepared against until it is next stepped.
        let stmt = self
            .conn
            .prepare(sql)
            .map_err(|e| Error::with_sql(e, sql))?;
        Ok(columns_of(&stmt).to_vec())
    }

    /// Starts a stream: the first chunk, and the statement parked for the rest.
    pub(crate) fn open_cursor<R: ReadChunk + ?Sized>(
        &mut self,
        sql: &str,
        params: &dyn Params,
        reader: &mut R,
    ) -> Result<Chunk<R::Item>> {
        check_sql(sql)?;
        let mut columns = None;
        let mut readonly = true;
        let cursor = Cursor::try_new(Rc::clone(&self.alias), |conn| {
            let mut stmt = conn.prepare(sql).map_err(|e| Error::with_sql(e, sql))?;
            readonly = stmt.readonly();
            params.bind(&mut stmt).map_err(|e| e.attach_sql(sql))?;
            // A fresh statement: its columns are current before any step.
            columns = Some(self.columns_of(sql, &stmt));
            StatementRows::try_new(MutBorrow::new(stmt), |s| {
                Ok::<_, Error>(s.borrow_mut().raw_query())
            })
        })?;
        if !readonly {
            // A writing statement (INSERT ... RETURNING) runs to the end now, on
            // the main connection, so it is committed before the caller sees a
            // row, and no write is left parked half-done.
            drop(cursor);
            let (rows, _) = self.query(sql, params, |rows| {
                reader.read(rows, usize::MAX, &mut columns)
            })?;
            return Ok(Chunk { rows, cursor: None });
        }
        let columns = columns.unwrap_or_else(|| Arc::from(Vec::new()));
        self.next_cursor += 1;
        let id = self.next_cursor;
        self.cursors.insert(
            id,
            Parked {
                cursor,
                columns,
                rows: self.chunk_size,
                lease: self.serving.as_ref().map(|s| s.generation),
                opened: Instant::now(),
                warned: false,
            },
        );
        if let Some(limit) = self.snapshot_limit {
            // An idle worker must still stop it on time.
            crate::timer::wake_at(Instant::now() + limit, self.wake_self.clone());
        }
        self.fetch_cursor(id, reader)
    }

    /// The next chunk of a parked stream.
    ///
    /// Ownership: between requests the map holds the statement, for the one
    /// handle the caller's side holds (`Held`); while this request reads
    /// from it, the statement is out of the map, owned by this frame, so a
    /// reader that panics (a decoder) or fails finalizes it as the frame
    /// unwinds or returns. It goes back only when rows remain, for the new
    /// handle the answer carries.
    pub(crate) fn fetch_cursor<R: ReadChunk + ?Sized>(
        &mut self,
        id: u64,
        reader: &mut R,
    ) -> Result<Chunk<R::Item>> {
        if let (Some(age), Some(limit)) = (self.expired.remove(&id), self.snapshot_limit) {
            return Err(Error::SnapshotTooOld { age, limit });
        }
        let mut parked = self.cursors.remove(&id).ok_or(Error::Cancelled(
            "the stream's statement was already finalized",
        ))?;
        if let Some(limit) = self.snapshot_limit {
            let age = parked.opened.elapsed();
            if age > limit {
                return Err(Error::SnapshotTooOld { age, limit });
            }
        }
        let max = parked.rows;
        let mut columns = Some(Arc::clone(&parked.columns));
        let result = parked.cursor.with_dependent_mut(|_, rows| {
            rows.with_dependent_mut(|_, rows| reader.read(rows, max, &mut columns))
        });
        if reader.footprint() < GROW_BELOW {
            parked.rows = (max * 2).min(MAX_CHUNK_ROWS).max(self.chunk_size);
        }
        let (rows, exhausted) = result?;
        if exhausted {
            return Ok(Chunk { rows, cursor: None });
        }
        self.cursors.insert(id, parked);
        Ok(Chunk {
            rows,
            cursor: Some(id),
        })
    }

    /// The connection alias that statements and blobs kept open between
    /// requests borrow (see `Worker::open`).
    pub(crate) fn alias(&self) -> Rc<rusqlite::Connection> {
        Rc::clone(&self.alias)
    }

    pub(crate) fn commit(&self) -> Result<()> {
        if !self.conn.is_autocommit() {
            self.conn.execute_batch("COMMIT")?;
        }
        Ok(())
    }

    pub(crate) fn rollback(&self) -> Result<()> {
        if !self.conn.is_autocommit() {
            self.conn.execute_batch("ROLLBACK")?;
        }
        Ok(())
    }
}

/// How long an idle worker polls its queue before it parks. A caller that
/// awaits one request after another sends the next within microseconds of
/// being answered; catching it here saves a futex wake-up of the worker on
/// every request (and on every chunk of a stream).
const SPIN: Duration = Duration::from_micros(50);

/// Workers spinning right now, process-wide. Spinning burns a core: with many
/// workers (a pool) on few cores, spinners would steal the CPU the busy
/// workers need, so at most half the cores (at least one) spin at a time and
/// the other idle workers park at once.
static SPINNING: AtomicUsize = AtomicUsize::new(0);

/// How long a caller whose request went to an empty queue polls for the
/// answer before it parks its task. A point query takes a few microseconds on
/// the worker; parking instead costs a futex wake-up of a runtime thread
/// (tens of microseconds) on every request.
const CALLER_SPIN: Duration = Duration::from_micros(25);

/// Requests sent to any worker and not yet finished, process-wide: spinning
/// pays only while the program waits on nothing but one request. When other
/// requests are in flight, the core a spinner would burn is the one their
/// workers and callers need.
static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);

/// One request in flight; counted from [`InFlight::start`] until dropped:
/// just before its answer is sent, or with its message when it is skipped or
/// discarded. Dropped before the answer, so a caller that sends its next
/// request the moment it is answered finds itself alone in flight.
#[derive(Debug)]
pub(crate) struct InFlight(());

impl InFlight {
    /// Counts a new request; also returns how many are in flight with it.
    pub(crate) fn start() -> (InFlight, usize) {
        let n = IN_FLIGHT.fetch_add(1, Ordering::AcqRel) + 1;
        (InFlight(()), n)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        IN_FLIGHT.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Whether a caller may spin on the runtime thread it is polled on: when
/// the runtime has fewer tasks than threads, no task waits for this one's
/// thread (a current-thread runtime spins only under `block_on`).
pub(crate) fn runtime_has_room() -> bool {
    tokio::runtime::Handle::try_current().map_or(true, |h| {
        let m = h.metrics();
        m.num_alive_tasks() < m.num_workers()
    })
}

/// Callers spinning right now, process-wide: one at a time, so a runtime
/// thread that spins never stands in for more than one core's worth of
/// waiting, and a busy program (many requests in flight, deep queues) does
/// not spin at all.
static CALLERS_SPINNING: AtomicUsize = AtomicUsize::new(0);

/// Polls `ready` for up to [`CALLER_SPIN`], when no other caller spins.
pub(crate) fn spin_for<T>(mut ready: impl FnMut() -> Option<T>) -> Option<T> {
    if CALLERS_SPINNING
        .compare_exchange(0, 1, Ordering::AcqRel, Ordering::Relaxed)
        .is_err()
    {
        return None;
    }
    let found = poll_for(CALLER_SPIN, &mut ready);
    CALLERS_SPINNING.store(0, Ordering::Release);
    found
}

/// Calls `ready` until it answers or `limit` has passed, pausing the core
/// briefly between calls.
fn poll_for<T>(limit: Duration, mut ready: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = ready() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        for _ in 0..16 {
            std::hint::spin_loop();
        }
    }
}

fn spin_slots() -> usize {
    static SLOTS: OnceLock<usize> = OnceLock::new();
    *SLOTS.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1)))
}

/// The next message: at once if queued, else after a short spin (when a
/// spin slot is free and, unless `eager`, no other request is in flight),
/// else parked. `None` once every sender is gone and the queue is drained.
fn next_message(rx: &mut mpsc::Receiver<Message>, eager: bool) -> Option<Message> {
    use mpsc::error::TryRecvError;
    match rx.try_recv() {
        Ok(m) => return Some(m),
        Err(TryRecvError::Disconnected) => return None,
        Err(TryRecvError::Empty) => {}
    }
    if eager || IN_FLIGHT.load(Ordering::Acquire) == 0 {
        let spinning = SPINNING.fetch_add(1, Ordering::AcqRel) < spin_slots();
        let found = if spinning { spin_on(rx) } else { None };
        SPINNING.fetch_sub(1, Ordering::AcqRel);
        if found.is_some() {
            return found;
        }
    }
    rx.blocking_recv()
}

/// Polls the queue for up to [`SPIN`]; `None` if nothing came (or every
/// sender is gone, which the blocking receive that follows reports).
fn spin_on(rx: &mut mpsc::Receiver<Message>) -> Option<Message> {
    poll_for(SPIN, || match rx.try_recv() {
        Ok(m) => Some(Some(m)),
        Err(mpsc::error::TryRecvError::Disconnected) => Some(None),
        Err(mpsc::error::TryRecvError::Empty) => None,
    })
    .flatten()
}

/// Runs the open-time configuration: safe defaults, then the pragmas.
fn configure(conn: &rusqlite::Connection, opts: &ConnectOptions) -> Result<()> {
    use rusqlite::config::DbConfig;
    // A misspelt "column" must be an error, not a string literal.
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_DQS_DML, false)?;
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_DQS_DDL, false)?;
    // Functions with side effects are not callable from schema objects
    // (views, triggers, CHECK) of a file someone else may have written.
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_TRUSTED_SCHEMA, false)?;
    // No way to corrupt the file through SQL (writable_schema and friends).
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_DEFENSIVE, true)?;
    // The bundled SQLite is built with SQLITE_ENABLE_LOAD_EXTENSION, which
    // leaves the C API's extension loading on for every connection. It is
    // off until `enable_load_extension(true)`, as in Python.
    // SAFETY: `sqlite3_db_config` with this verb reads an int and writes
    // through an int pointer (null: not wanted), on the handle `conn` owns.
    #[allow(unsafe_code)]
    let rc = unsafe {
        rusqlite::ffi::sqlite3_db_config(
            conn.handle(),
            rusqlite::ffi::SQLITE_DBCONFIG_ENABLE_LOAD_EXTENSION,
            0 as std::ffi::c_int,
            std::ptr::null_mut::<std::ffi::c_int>(),
        )
    };
    if rc != rusqlite::ffi::SQLITE_OK {
        return Err(Error::from(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rc),
            Some("cannot turn off extension loading".to_owned()),
        )));
    }
    conn.busy_timeout(opts.busy_timeout)?;
    conn.set_prepared_statement_cache_capacity(opts.statement_cache_capacity);
    for (name, value) in opts.startup_pragmas() {
        if !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
        {
            return Err(Error::Options(format!("{name:?} is not a pragma name")));
        }
        retry_busy(opts.busy_timeout, || {
            if name == "journal_mode" {
                let got: String =
                    conn.pragma_update_and_check(None, "journal_mode", &value, |r| r.get(0))?;
                if !got.eq_ignore_ascii_case(&value) {
                    return Err(Error::Options(format!(
                        "journal_mode={value} was asked for, but SQLite kept {got}"
                    )));
                }
                Ok(())
            } else {
                let sql = format!("PRAGMA {name} = {value}");
                conn.execute_batch(&sql)
                    .map_err(|e| Error::with_sql(e, &sql))
            }
        })?;
    }
    Ok(())
}

/// Retries `f` while it fails with SQLITE_BUSY or SQLITE_LOCKED, for up to
/// `timeout`. Some paths return BUSY without calling the busy handler:
/// switching a fresh file to WAL, or WAL recovery, while another process
/// holds the lock. Several processes opening one new file at once hit them.
pub(crate) fn retry_busy<T>(timeout: Duration, mut f: impl FnMut() -> Result<T>) -> Result<T> {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(1);
    loop {
        match f() {
            Err(e) if e.is_busy() && Instant::now() < deadline => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            other => return other,
        }
    }
}

/// Reads up to `max` rows into one block; `true` once the result is exhausted.
/// The columns are taken (unless given) from the statement after its first
/// step, when a statement prepared against an older schema has been re-prepared.
fn read_rows(
    rows: &mut rusqlite::Rows<'_>,
    max: usize,
    columns: &mut Option<Columns>,
    columns_for: impl FnMut(&Statement<'_>) -> Columns,
) -> Result<(Vec<Row>, bool)> {
    let (block, done) = read_block(rows, max, columns, columns_for, 0)?;
    Ok((block.map_or_else(Vec::new, RowsBuilder::finish), done))
}

/// Up to `max` rows into one block (`None` when there were none), sized for
/// `payload_per_row` bytes of text and blobs per row; `true` once the result
/// is exhausted.
fn read_block(
    rows: &mut rusqlite::Rows<'_>,
    max: usize,
    columns: &mut Option<Columns>,
    mut columns_for: impl FnMut(&Statement<'_>) -> Columns,
    payload_per_row: usize,
) -> Result<(Option<RowsBuilder>, bool)> {
    let mut out: Option<RowsBuilder> = None;
    while out.as_ref().map_or(0, RowsBuilder::len) < max {
        let Some(row) = rows.next()? else {
            return Ok((out, true));
        };
        let builder = out.get_or_insert_with(|| {
            let rows = max.min(MAX_CHUNK_ROWS);
            RowsBuilder::with_capacity(
                Arc::clone(columns.get_or_insert_with(|| columns_for(row.as_ref()))),
                rows,
                rows * payload_per_row,
            )
        });
        builder.push(row)?;
    }
    Ok((out, false))
}

/// The most requests one read batch answers: the snapshot they share stays
/// young, and a checkpoint waits on it for at most this many point reads.
const MAX_READ_BATCH: usize = 64;

#[cfg(test)]
mod tests {
    use super::*;

    /// The lengths of a stream's chunks over `sql`, read through `reader`.
    fn chunk_lengths<R: ReadChunk>(w: &mut Worker, sql: &str, mut reader: R) -> Vec<usize> {
        let mut chunk = w.open_cursor(sql, &(), &mut reader).expect("open");
        let mut lengths = vec![chunk.rows.len()];
        while let Some(id) = chunk.cursor {
            chunk = w.fetch_cursor(id, &mut reader).expect("fetch");
            lengths.push(chunk.rows.len());
        }
        lengths
    }

    #[test]
    fn chunks_grow_until_they_are_big() {
        let opts = ConnectOptions::in_memory().iter_chunk_size(4);
        let mut w = Worker::open(
            &opts,
            Arc::new(Shared::default()),
            mpsc::channel(1).0.downgrade(),
        )
        .expect("open");
        w.conn
            .execute_batch(
                "CREATE TABLE small(x); CREATE TABLE big(b);
                 WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20000)
                 INSERT INTO small SELECT i FROM n;
                 WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 42)
                 INSERT INTO big SELECT zeroblob(100000) FROM n;",
            )
            .expect("fill");

        // Small rows: doubling from 4 up to the cap, then the rest.
        let mut expected: Vec<usize> = (2..=12).map(|p| 1 << p).collect();
        let mut left = 20000 - expected.iter().sum::<usize>();
        while left > 0 {
            expected.push(left.min(MAX_CHUNK_ROWS));
            left -= left.min(MAX_CHUNK_ROWS);
        }
        assert_eq!(
            chunk_lengths(&mut w, "SELECT x FROM small", RowBlocks::default()),
            expected
        );

        // 100 kB rows: a chunk of 4 passes GROW_BELOW, so it grows no more.
        let expected = [4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 2];
        assert_eq!(
            chunk_lengths(&mut w, "SELECT b FROM big", RowBlocks::default()),
            expected
        );
        let blob_len = |row: &rusqlite::Row<'_>| Ok(row.get::<_, Vec<u8>>(0)?.len());
        assert_eq!(
            chunk_lengths(&mut w, "SELECT b FROM big", Decoded::new(blob_len)),
            expected
        );
        let opts = ConnectOptions::in_memory().iter_chunk_size(1);
        let mut w1 = Worker::open(
            &opts,
            Arc::new(Shared::default()),
            mpsc::channel(1).0.downgrade(),
        )
        .expect("open");
        w1.conn
            .execute_batch(
                "CREATE TABLE big(b);
                 WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 12)
                 INSERT INTO big SELECT zeroblob(100000) FROM n;",
            )
            .expect("fill");
        assert_eq!(
            chunk_lengths(&mut w1, "SELECT b FROM big", RowBlocks::default()),
            [1, 2, 4, 4, 1]
        );
    }
}
