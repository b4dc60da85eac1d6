//! The async connection handle.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::oneshot;

use crate::channel::Channel;
use crate::error::{Error, Result};
use crate::migrate::{MigrationReport, Migrations};
use crate::options::ConnectOptions;
use crate::worker::{self, Message, Shared, WorkerThread};

struct Inner {
    channel: Channel,
    interrupt: rusqlite::InterruptHandle,
    path: PathBuf,
    queue_bound: usize,
    thread: Mutex<Option<WorkerThread>>,
    migrations: Option<Migrations>,
}

/// An async SQLite connection: a cheap, cloneable handle to one worker thread
/// that owns the `rusqlite::Connection`.
///
/// Every method sends one request to the worker's queue and awaits its answer;
/// requests run one at a time, in the order they were queued. Clones share the
/// worker. The worker finishes the queued work and closes the database when
/// [`close`](Connection::close) is called or the last handle is dropped.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> aiolite_conn::Result<()> {
/// use aiolite_conn::Connection;
///
/// let conn = Connection::open_in_memory().await?;
/// conn.execute_script("CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT, age INTEGER)").await?;
/// let id = conn.execute_insert("INSERT INTO users(name, age) VALUES (?, ?)", ("Alice", 30)).await?;
/// let row = conn.fetch_one("SELECT name, age FROM users WHERE id = ?", (id,)).await?;
/// assert_eq!(row.get::<_, String>("name")?, "Alice");
/// conn.close().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Connection {
    inner: Arc<Inner>,
}

static NEXT_THREAD: AtomicU64 = AtomicU64::new(1);

impl Connection {
    /// Opens (creating if needed) the database file at `path` with the default
    /// [`ConnectOptions`]; `":memory:"` opens a private in-memory database.
    ///
    /// # Errors
    /// [`Error::Open`] naming the path when it cannot be opened or configured.
    ///
    /// # Cancel safety
    /// Dropping the future closes the half-opened connection.
    pub async fn open(path: impl AsRef<Path>) -> Result<Connection> {
        Self::open_with(ConnectOptions::new(path)).await
    }

    /// Opens a private in-memory database.
    ///
    /// # Errors
    /// Only if SQLite cannot allocate the database.
    ///
    /// # Cancel safety
    /// Dropping the future closes the half-opened connection.
    pub async fn open_in_memory() -> Result<Connection> {
        Self::open_with(ConnectOptions::in_memory()).await
    }

    pub(crate) async fn open_with(opts: ConnectOptions) -> Result<Connection> {
        let shared = Arc::new(Shared::default());
        let name = opts.thread_name.clone().unwrap_or_else(|| {
            format!(
                "aiolite-conn-{}",
                NEXT_THREAD.fetch_add(1, Ordering::Relaxed)
            )
        });
        let path = opts.display_path();
        let queue_bound = opts.queue_bound;
        let migrations = opts.migrations.clone();
        let (sender, interrupt, thread) = worker::spawn(opts, Arc::clone(&shared), name).await?;
        Ok(Connection {
            inner: Arc::new(Inner {
                channel: Channel {
                    sender,
                    shared,
                    lease: None,
                    main: None,
                },
                interrupt,
                path,
                queue_bound,
                thread: Mutex::new(Some(thread)),
                migrations,
            }),
        })
    }

    pub(crate) fn channel(&self) -> &Channel {
        &self.inner.channel
    }

    /// Whether a transaction holds the worker (requests from other handles
    /// wait until it ends).
    pub(crate) fn is_leased(&self) -> bool {
        self.channel().shared.is_leased()
    }

    /// Whether a statement here could read an old snapshot: a transaction
    /// holds the worker, or a stream is open (its parked statement keeps
    /// the connection's read transaction).
    pub(crate) fn is_held(&self) -> bool {
        self.is_leased() || self.channel().shared.open_streams.load(Ordering::Acquire) > 0
    }

    /// What the worker holds for callers right now: statements parked by
    /// open streams, open blob handles, and whether a transaction leases the
    /// worker. Cheap (counters the worker publishes after every request), for
    /// tests, health checks and metrics: a count that stays above zero with no
    /// stream or blob alive is a leak.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> aiolite_conn::Result<()> {
    /// let conn = aiolite_conn::Connection::open_in_memory().await?;
    /// assert_eq!(conn.resources().parked_statements, 0);
    /// # Ok(()) }
    /// ```
    pub fn resources(&self) -> Resources {
        let shared = &self.channel().shared;
        let oldest = shared.oldest_snapshot.load(Ordering::Relaxed);
        Resources {
            parked_statements: shared.parked_statements.load(Ordering::Relaxed),
            open_blobs: shared.open_blobs.load(Ordering::Relaxed),
            leased: shared.is_leased(),
            oldest_snapshot: (oldest > 0).then(|| {
                let taken = worker::process_epoch() + std::time::Duration::from_millis(oldest - 1);
                taken.elapsed()
            }),
        }
    }

    /// What this connection has done since it opened (requests, their queue
    /// wait and execution, cancellations, leases, read batches, ...) and
    /// holds now: a plain snapshot, serializable with serde, for a
    /// service's metrics or health endpoint. Cheap: atomics the worker
    /// bumps as it goes.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> aiolite_conn::Result<()> {
    /// let conn = aiolite_conn::Connection::open_in_memory().await?;
    /// conn.execute("CREATE TABLE t(x)", ()).await?;
    /// let m = conn.metrics();
    /// assert!(m.requests >= 1);
    /// println!("p99 wait {:?} us", m.queue_wait.quantile_us(0.99));
    /// # Ok(()) }
    /// ```
    pub fn metrics(&self) -> crate::ConnectionMetrics {
        let held = self.resources();
        crate::ConnectionMetrics::new(
            &self.channel().shared.stats,
            self.queued_requests(),
            (
                held.parked_statements,
                held.open_blobs,
                held.oldest_snapshot,
            ),
        )
    }

    /// Requests waiting in this connection's queue (not counting the one
    /// running).
    pub fn queued_requests(&self) -> usize {
        let sender = &self.channel().sender;
        sender.max_capacity() - sender.capacity()
    }

    /// The path this connection was opened with (`":memory:"` for memory).
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Commits the current transaction; does nothing outside a transaction
    /// (as `sqlite3.Connection.commit`).
    ///
    /// # Errors
    /// SQLite's error, e.g. a deferred foreign-key violation or `SQLITE_BUSY`.
    ///
    /// # Cancel safety
    /// If dropped after the request was queued, the commit may or may not
    /// happen.
    pub async fn commit(&self) -> Result<()> {
        self.channel().run(|w| w.commit()).await
    }

    /// Rolls back the current transaction; does nothing outside a transaction.
    ///
    /// # Errors
    /// SQLite's error.
    ///
    /// # Cancel safety
    /// If dropped after the request was queued, the rollback may or may not
    /// happen.
    pub async fn rollback(&self) -> Result<()> {
        self.channel().run(|w| w.rollback()).await
    }

    /// Whether a transaction is open (`!sqlite3_get_autocommit`).
    ///
    /// # Errors
    /// [`Error::Closed`].
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn in_transaction(&self) -> Result<bool> {
        self.channel().run(|w| Ok(!w.conn.is_autocommit())).await
    }

    /// Rows changed by INSERT, UPDATE and DELETE since the connection opened.
    ///
    /// # Errors
    /// [`Error::Closed`].
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn total_changes(&self) -> Result<u64> {
        self.channel().run(|w| Ok(w.conn.total_changes())).await
    }

    /// The rowid of the last successful INSERT on this connection.
    /// Prefer [`execute_insert`](Connection::execute_insert), which returns the
    /// rowid of its own insert even when other tasks share the connection.
    ///
    /// # Errors
    /// [`Error::Closed`].
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn last_insert_rowid(&self) -> Result<i64> {
        self.channel().run(|w| Ok(w.conn.last_insert_rowid())).await
    }

    /// Interrupts whatever statement is running now (`sqlite3_interrupt`); it
    /// fails with an error for which [`Error::is_interrupted`] is true. Does not
    /// go through the queue.
    ///
    /// To stop one request of yours, drop its future instead: that is scoped to
    /// the request and cannot hit the next one.
    pub fn interrupt(&self) {
        self.inner.interrupt.interrupt();
    }

    /// The bound of this connection's queues (a lease's queue has the same).
    pub(crate) fn queue_bound(&self) -> usize {
        self.inner.queue_bound
    }

    /// Applies the migrations given with [`ConnectOptions::migrations`] that
    /// are not applied yet, each with its history row in one `BEGIN IMMEDIATE`
    /// transaction, on the worker thread. Several processes may migrate the
    /// same file at once: each migration is applied exactly once.
    ///
    /// # Errors
    /// [`Error::Migration`], carrying what was applied before the failure:
    /// an applied migration changed (divergent) or gone (missing), a new
    /// versioned migration below the applied ones, a failing migration (rolled
    /// back whole). [`Error::Config`] when no migrations were given.
    ///
    /// # Cancel safety
    /// A migration the run had started completes or rolls back whole; the
    /// next run picks up where this one stopped.
    pub async fn migrate(&self) -> Result<MigrationReport> {
        self.migrate_up_to(None).await
    }

    /// Like [`migrate`](Connection::migrate), stopping after `version`.
    ///
    /// # Errors
    /// As [`migrate`](Connection::migrate).
    ///
    /// # Cancel safety
    /// As [`migrate`](Connection::migrate).
    pub async fn migrate_to(&self, version: i32) -> Result<MigrationReport> {
        self.migrate_up_to(Some(version)).await
    }

    async fn migrate_up_to(&self, target: Option<i32>) -> Result<MigrationReport> {
        let set = self.inner.migrations.clone().ok_or_else(|| {
            Error::Config("no migrations were given: use ConnectOptions::migrations or DatabaseBuilder::migrations".to_owned())
        })?;
        self.channel()
            .run(move |w| {
                let report =
                    crate::migrate::run(&mut w.conn, &set, target).map_err(Error::Migration);
                w.note_schema(None);
                report
            })
            .await
    }

    /// Closes the connection: the requests queued before this call still run,
    /// and a [`Transaction`](crate::Transaction) alive at the time can still finish (the close waits
    /// for it); then the database is closed and the worker thread exits.
    /// Calling it again is a no-op; every other call afterwards fails with
    /// [`Error::Closed`].
    ///
    /// # Errors
    /// The error SQLite reports when closing;
    /// [`Error::InsideOwnTransaction`] from the task holding a transaction
    /// of this connection (the close would wait for it forever).
    ///
    /// # Cancel safety
    /// The close happens even if the future is dropped.
    pub async fn close(&self) -> Result<()> {
        if self.channel().shared.leased_by_caller() {
            // The close would wait for the caller's own transaction.
            return Err(Error::InsideOwnTransaction);
        }
        self.channel().shared.closed.store(true, Ordering::Release);
        let (tx, rx) = oneshot::channel();
        let sent = self.channel().sender.send(Message::Close(tx)).await;
        // A failed send means another close got there first.
        let result = match sent {
            Ok(()) => rx.await.unwrap_or(Ok(())),
            Err(_) => Ok(()),
        };
        let thread = self
            .inner
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(thread) = thread {
            thread.join().await;
        }
        result
    }

    /// Whether [`close`](Connection::close) was called or the worker is gone.
    pub fn is_closed(&self) -> bool {
        self.channel().shared.closed.load(Ordering::Acquire) || self.channel().sender.is_closed()
    }
}

crate::query_methods::one_queue_hooks!(Connection);
crate::query_methods::impl_query_methods!(Connection);
crate::query_methods::impl_call!(Connection);
crate::query_methods::impl_handle!(Connection, call);

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("path", &self.inner.path)
            .field("closed", &self.is_closed())
            .finish()
    }
}

/// What a connection's worker holds for its callers, from
/// [`Connection::resources`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Resources {
    /// Statements parked between the chunks of open streams.
    pub parked_statements: usize,
    /// Open [`Blob`](crate::Blob) handles.
    pub open_blobs: usize,
    /// A [`Transaction`](crate::Transaction) guard is alive (its lease served, or its
    /// `BEGIN` queued): other handles' requests wait for it.
    pub leased: bool,
    /// The age of the oldest read snapshot a parked statement keeps (the WAL
    /// cannot be checkpointed past it); see
    /// [`ConnectOptions::snapshot_age_limit`](crate::ConnectOptions::snapshot_age_limit).
    pub oldest_snapshot: Option<std::time::Duration>,
}

impl ConnectOptions {
    /// Opens the connection: spawns its worker thread and configures it.
    ///
    /// # Errors
    /// [`Error::Open`] naming the path when SQLite cannot open or configure the
    /// file; the init hook's error.
    ///
    /// # Cancel safety
    /// Dropping the future before it completes closes the half-opened connection.
    pub async fn open(&self) -> Result<Connection> {
        Connection::open_with(self.clone()).await
    }
}
