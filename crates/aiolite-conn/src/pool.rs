//! `Database`: one writer and N readers on one WAL file, with routing.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use crate::channel::Channel;
use crate::connection::{Connection, Resources};
use crate::error::{Error, Result};
use crate::options::{ConnectOptions, Role, Target, TransactionBehavior};
use crate::params::Params;
use crate::query_methods::Route;
use crate::sql::Sql;
use crate::sql::{refuse_transaction_control, writer_only};
use crate::stream::RowStream;
use crate::transaction::Transaction;
use crate::worker::ReadChunk;

/// A pool on one SQLite file: one writer connection and N reader connections,
/// each with its own worker thread. A cheap `Clone + Send + Sync` handle: put
/// it in your axum `State`, clone it into tasks.
///
/// Statements are routed by what SQLite says of them: read-only statements
/// (`sqlite3_stmt_readonly`, learned once per SQL text) go to the least busy
/// reader, everything else to the writer. Transaction control, `ATTACH` and
/// `DETACH`, `PRAGMA`, and statements calling `last_insert_rowid()`,
/// `changes()` or `total_changes()` always go to the writer, and so does
/// everything inside a transaction from [`begin`](Database::begin) (which
/// leases the writer: no other task's statement lands inside it).
/// [`writer`](Database::writer) and [`reader`](Database::reader)
/// pick a connection explicitly.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> aiolite_conn::Result<()> {
/// # let dir = tempfile::tempdir().map_err(|e| aiolite_conn::Error::Config(e.to_string()))?;
/// use aiolite_conn::Database;
///
/// let db = Database::builder(dir.path().join("app.db")).readers(4).open().await?;
/// db.execute("CREATE TABLE kv(k TEXT PRIMARY KEY, v TEXT)", ()).await?; // writer
/// db.execute("INSERT INTO kv VALUES ('a', '1')", ()).await?;            // writer
/// let v: String = db.fetch_one("SELECT v FROM kv WHERE k = ?", ("a",)).await?.get(0)?; // a reader
///
/// let tx = db.begin().await?; // BEGIN IMMEDIATE on the writer, leased to this task
/// tx.execute("UPDATE kv SET v = '2' WHERE k = 'a'", ()).await?;
/// tx.commit().await?;
/// db.close().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Database {
    inner: Arc<Pool>,
}

struct Pool {
    writer: Connection,
    readers: Box<[Connection]>,
    next_reader: AtomicUsize,
    /// Per SQL text, `true` when a reader may run it; with the writer's
    /// schema epoch they were learned at.
    routes: Mutex<(u64, HashMap<Box<str>, bool>)>,
    /// Functions registered on the writer only (lower case): a reader's
    /// "no such function" for one of them is a verdict, not a passing
    /// failure.
    writer_functions: Mutex<std::collections::HashSet<String>>,
}

/// Builds a [`Database`]: `Database::builder(path).readers(4).options(..).open()`.
#[derive(Debug, Clone)]
pub struct DatabaseBuilder {
    options: ConnectOptions,
    readers: usize,
    group_commit: bool,
    /// The database named by options given to `options()`, when it is not
    /// the builder's: reported by `open`.
    conflict: Option<std::path::PathBuf>,
}

impl DatabaseBuilder {
    /// A builder from one URL: every parameter a [`ConnectOptions`] URL
    /// takes (`mode`, `journal_mode`, `synchronous`, `foreign_keys`,
    /// `busy_timeout`, `cache_capacity`), and the pool's own: `readers=N`
    /// and `group_commit=true|false`.
    ///
    /// ```
    /// let b = aiolite_conn::DatabaseBuilder::from_url(
    ///     "sqlite://app.db?mode=rwc&synchronous=normal&readers=8&group_commit=true",
    /// )?;
    /// assert_eq!(b.get_readers(), 8);
    /// assert!(b.get_group_commit());
    /// assert_eq!(b.get_options().get_path(), Some(std::path::Path::new("app.db")));
    /// # Ok::<(), aiolite_conn::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Config`] naming the parameter that is unknown or malformed.
    pub fn from_url(url: &str) -> Result<DatabaseBuilder> {
        let (base, query) = match url.split_once('?') {
            Some((base, query)) => (base, query),
            None => (url, ""),
        };
        let (mut readers, mut group_commit) = (4, false);
        let mut rest = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match key {
                "readers" => {
                    readers = value.parse().map_err(|_| {
                        Error::Config(format!("readers={value:?}: expected a count"))
                    })?;
                }
                "group_commit" => {
                    group_commit = match value.to_ascii_lowercase().as_str() {
                        "1" | "true" | "on" | "yes" => true,
                        "0" | "false" | "off" | "no" => false,
                        _ => {
                            return Err(Error::Config(format!(
                                "group_commit={value:?}: expected true or false"
                            )))
                        }
                    };
                }
                _ => rest.push(pair),
            }
        }
        let options: ConnectOptions = if rest.is_empty() {
            base.parse()?
        } else {
            format!("{base}?{}", rest.join("&")).parse()?
        };
        Ok(DatabaseBuilder {
            options,
            readers,
            group_commit,
            conflict: None,
        })
    }

    /// The number of readers the pool will open.
    pub fn get_readers(&self) -> usize {
        self.readers
    }

    /// Whether group commit is on.
    pub fn get_group_commit(&self) -> bool {
        self.group_commit
    }

    /// The options every connection of the pool opens with.
    pub fn get_options(&self) -> &ConnectOptions {
        &self.options
    }

    /// Number of reader connections. Default: 4. With 0, the writer serves
    /// reads too. Ignored for `:memory:` (one connection).
    pub fn readers(mut self, readers: usize) -> Self {
        self.readers = readers;
        self
    }

    /// The options every connection of the pool opens with. Readers add
    /// `PRAGMA query_only = 1`.
    ///
    /// The pool's database is the builder's: options that name another
    /// one make [`open`](DatabaseBuilder::open) fail rather than open either
    /// silently. Migrations given with [`migrations`](DatabaseBuilder::migrations)
    /// and [`migrate_on_open`](DatabaseBuilder::migrate_on_open) stay,
    /// whichever is called first (the options' own migrations, if they have
    /// some, win).
    pub fn options(mut self, options: ConnectOptions) -> Self {
        let migrations = options
            .migrations
            .clone()
            .or(self.options.migrations.take());
        let migrate_on_open = options.migrate_on_open || self.options.migrate_on_open;
        if options.target != self.options.target {
            self.conflict = Some(options.display_path());
        }
        let target = self.options.target.clone();
        self.options = ConnectOptions {
            target,
            migrations,
            migrate_on_open,
            ..options
        };
        self
    }

    /// Group commit: transactions from [`Database::begin`] that wait for the
    /// writer together share one SQLite transaction and one COMMIT, so one
    /// fsync (at `synchronous=FULL`) makes many of them durable. Default:
    /// `false`.
    ///
    /// Each transaction runs in its own savepoint, and what callers see does
    /// not change:
    /// - `commit()` returns only after the shared COMMIT is durable, with its
    ///   error if it fails (then every transaction of the group fails, and
    ///   none of their work is kept);
    /// - a transaction that fails or rolls back undoes only its own work;
    /// - other requests never see a group's work before its COMMIT: the
    ///   group commits before the writer runs anything else.
    ///
    /// A group grows while further `begin`s wait in the writer's queue. Under
    /// light load a group has one member and costs what a plain transaction
    /// does. A single write through [`execute`](Database::execute) (INSERT,
    /// UPDATE, DELETE, REPLACE) joins a group as a member of its own, and
    /// returns once the group's COMMIT is durable; if its future is dropped
    /// after the statement ran, the write is committed with the group all
    /// the same. Not grouped: [`Database::transaction`] (its closure gets a
    /// `rusqlite::Transaction`), `execute_insert`, `execute_many` and
    /// scripts. Inside a member, end it
    /// with `commit()`/`rollback()`: a `COMMIT` or `ROLLBACK` of its own
    /// ends the whole group, and its other members get an error. A deferred
    /// foreign-key violation surfaces at the shared COMMIT, so it fails the
    /// whole group.
    ///
    /// ```
    /// # async fn demo() -> aiolite_conn::Result<()> {
    /// let db = aiolite_conn::Database::builder("app.db").group_commit(true).open().await?;
    /// let tx = db.begin().await?;
    /// tx.execute("INSERT INTO events(kind) VALUES ('signup')", ()).await?;
    /// tx.commit().await?; // durable when this returns
    /// # Ok(()) }
    /// ```
    pub fn group_commit(mut self, on: bool) -> Self {
        self.group_commit = on;
        self
    }

    /// The migrations [`Database::migrate`] applies on the writer.
    pub fn migrations(mut self, migrations: crate::migrate::Migrations) -> Self {
        self.options = self.options.migrations(migrations);
        self
    }

    /// Apply the migrations when the pool opens, on the writer, before the
    /// readers open. Default: `false`.
    pub fn migrate_on_open(mut self, on: bool) -> Self {
        self.options = self.options.migrate_on_open(on);
        self
    }

    /// Opens the writer (which sets the journal mode, WAL by default, and
    /// checks it took, then applies the migrations if asked), then the readers.
    ///
    /// # Errors
    /// The first connection's error; connections already open are closed.
    /// [`Error::Config`] for options a pool cannot honor: an
    /// `isolation_level` (its implicit transactions would be rolled back after
    /// every request, since only [`Database::begin`] may keep the writer in a
    /// transaction).
    ///
    /// # Cancel safety
    /// Dropping the future closes what was opened.
    pub async fn open(self) -> Result<Database> {
        if let Some(other) = &self.conflict {
            return Err(Error::Config(format!(
                "DatabaseBuilder::options names {} but the builder {}: give the database once, to Database::builder",
                other.display(),
                self.options.display_path().display()
            )));
        }
        if self.options.isolation_level.is_some() {
            return Err(Error::Config(
                "isolation_level is for a single Connection; a Database keeps transactions to begin() and transaction()".to_owned(),
            ));
        }
        let writer = Connection::open_with(ConnectOptions {
            role: Role::Writer,
            thread_name: Some("aiolite-writer".to_owned()),
            group_commit: self.group_commit,
            ..self.options.clone()
        })
        .await?;
        let readers = match self.options.target {
            Target::Memory => 0,
            Target::File(_) => self.readers,
        };
        let mut opened = Vec::with_capacity(readers);
        for i in 0..readers {
            let reader = Connection::open_with(ConnectOptions {
                role: Role::Reader,
                thread_name: Some(format!("aiolite-reader-{i}")),
                create: false,
                migrate_on_open: false,
                ..self.options.clone()
            })
            .await;
            match reader {
                Ok(r) => opened.push(r),
                Err(e) => {
                    for r in &opened {
                        let _ = r.close().await;
                    }
                    let _ = writer.close().await;
                    return Err(e);
                }
            }
        }
        Ok(Database {
            inner: Arc::new(Pool {
                writer,
                readers: opened.into_boxed_slice(),
                next_reader: AtomicUsize::new(0),
                routes: Mutex::new((0, HashMap::new())),
                writer_functions: Mutex::new(std::collections::HashSet::new()),
            }),
        })
    }
}

impl Database {
    /// Opens a pool on `path` with 4 readers and the default
    /// [`ConnectOptions`] (WAL, foreign keys on, 5 s busy timeout).
    ///
    /// # Errors
    /// [`Error::Open`] naming the path.
    ///
    /// # Cancel safety
    /// Dropping the future closes what was opened.
    pub async fn open(path: impl AsRef<Path>) -> Result<Database> {
        Self::builder(path).open().await
    }

    /// Opens a pool from one URL (see [`DatabaseBuilder::from_url`]):
    /// `Database::connect("sqlite://app.db?mode=rwc&readers=8")`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> aiolite_conn::Result<()> {
    /// # let dir = tempfile::tempdir().map_err(|e| aiolite_conn::Error::Misuse(e.to_string()))?;
    /// # let url = format!("sqlite://{}?mode=rwc&readers=2", dir.path().join("app.db").display());
    /// let db = aiolite_conn::Database::connect(&url).await?;
    /// assert_eq!(db.readers().len(), 2);
    /// # db.close().await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::Config`] for a URL it cannot read; as
    /// [`DatabaseBuilder::open`] otherwise.
    ///
    /// # Cancel safety
    /// Dropping the future closes what was opened.
    pub async fn connect(url: &str) -> Result<Database> {
        DatabaseBuilder::from_url(url)?.open().await
    }

    /// One in-memory database, served by a single connection.
    ///
    /// # Errors
    /// Only if SQLite cannot allocate it.
    ///
    /// # Cancel safety
    /// Dropping the future closes what was opened.
    pub async fn open_in_memory() -> Result<Database> {
        Self::builder(":memory:").open().await
    }

    /// A builder for a pool on `path`.
    pub fn builder(path: impl AsRef<Path>) -> DatabaseBuilder {
        DatabaseBuilder {
            options: ConnectOptions::new(path),
            readers: 4,
            group_commit: false,
            conflict: None,
        }
    }

    /// The writer connection: everything sent to it runs on the writer.
    /// A transaction it leaves open outside [`begin`](Database::begin) is rolled
    /// back after the request.
    pub fn writer(&self) -> &Connection {
        &self.inner.writer
    }

    /// The pool's metrics: the writer's and each reader's (see
    /// [`Connection::metrics`]), and the WAL file's size.
    pub fn metrics(&self) -> crate::DatabaseMetrics {
        let path = self.inner.writer.path();
        let wal_bytes = (path != std::path::Path::new(":memory:"))
            .then(|| {
                let mut wal = path.as_os_str().to_owned();
                wal.push("-wal");
                std::fs::metadata(wal).ok()
            })
            .flatten()
            .map(|m| m.len());
        crate::DatabaseMetrics {
            writer: self.inner.writer.metrics(),
            readers: self.inner.readers.iter().map(Connection::metrics).collect(),
            wal_bytes,
        }
    }

    /// The reader connections (none for `:memory:` or `readers(0)`), for
    /// health checks and metrics; statements pick one with
    /// [`reader`](Database::reader).
    pub fn readers(&self) -> &[Connection] {
        &self.inner.readers
    }

    /// Every connection of the pool: the writer, then the readers.
    pub(crate) fn connections(&self) -> impl Iterator<Item = &Connection> {
        std::iter::once(&self.inner.writer).chain(self.inner.readers.iter())
    }

    /// The least busy reader that holds no read snapshot (`PRAGMA
    /// query_only`: a write sent to it fails with "attempt to write a
    /// readonly database"). A reader with an open stream or a transaction (a
    /// [`dump`](Database::dump)) is skipped: a statement there would read the
    /// snapshot that stream or transaction pinned, older than writes already
    /// acknowledged. The writer when the pool has no readers, or when every
    /// reader is held so.
    pub fn reader(&self) -> &Connection {
        let readers = &self.inner.readers;
        if readers.is_empty() {
            return &self.inner.writer;
        }
        // Start from the reader chosen last: a lone caller keeps one warm
        // reader (its worker spinning, its page cache hot) instead of waking
        // a parked one per request; under load the idle ones are found.
        // A reader a transaction holds (a dump's snapshot) is the last
        // choice: its queue waits for the transaction, which may belong to
        // the very task asking.
        let load = |r: &Connection| (r.is_held(), r.queued_requests());
        let start = self.inner.next_reader.load(Ordering::Relaxed);
        let mut best = start % readers.len();
        for i in 0..readers.len() {
            let at = (start + i) % readers.len();
            let here = load(&readers[at]);
            if here == (false, 0) {
                best = at;
                break;
            }
            if here < load(&readers[best]) {
                best = at;
            }
        }
        if readers[best].is_held() {
            // Every reader is held by a stream or a transaction, whose
            // snapshot a fresh read would share: the writer serves it. The
            // writer is the pool's only writer, so its snapshot is always
            // the latest.
            return &self.inner.writer;
        }
        self.inner.next_reader.store(best, Ordering::Relaxed);
        &readers[best]
    }

    /// The connection for `sql`: see the routing rules on [`Database`]. The
    /// verdict is remembered per SQL text, so the rules and the classifying
    /// prepare cost once per distinct statement, not once per request.
    async fn route(&self, sql: &str) -> Result<&Connection> {
        self.refuse_own_lease()?;
        let writer = &self.inner.writer.channel().shared;
        if self.inner.readers.is_empty() || writer.private_schema.load(Ordering::Acquire) {
            refuse_transaction_control(sql)?;
            // TEMP objects and attached databases exist on the writer only:
            // while there are any, every statement could see them.
            return Ok(&self.inner.writer);
        }
        let known = {
            let mut routes = self
                .inner
                .routes
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let epoch = writer.schema_epoch.load(Ordering::Acquire);
            if routes.0 != epoch {
                // The schema changed since these were learned.
                routes.0 = epoch;
                routes.1.clear();
            }
            routes.1.get(sql).copied()
        };
        let read_only = match known {
            // Transaction control is never remembered: it is refused below.
            Some(r) => r,
            None => {
                refuse_transaction_control(sql)?;
                let verdict = if writer_only(sql) {
                    Some(false)
                } else {
                    let text = sql.to_owned();
                    match self
                        .reader()
                        .channel()
                        .run(move |w| w.is_read_only(&text))
                        .await
                    {
                        Ok(read_only) => Some(read_only),
                        // It calls a function registered on the writer only:
                        // the writer's, for good.
                        Err(e) if self.calls_writer_function(&e) => Some(false),
                        // A reader cannot prepare it (a table not created
                        // yet, a function only the writer has): the writer
                        // runs it or reports the real error. Not remembered:
                        // the reason may go away.
                        Err(_) => None,
                    }
                };
                if let Some(r) = verdict {
                    let mut routes = self
                        .inner
                        .routes
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner);
                    if routes.1.len() >= 1024 {
                        routes.1.clear();
                    }
                    routes.1.insert(sql.into(), r);
                }
                verdict.unwrap_or(false)
            }
        };
        Ok(if read_only {
            self.reader()
        } else {
            &self.inner.writer
        })
    }

    /// Statements calling `name` go to the writer
    /// ([`create_function_on_writer`](Database::create_function_on_writer)).
    pub(crate) fn route_to_writer(&self, name: &str) {
        self.inner
            .writer_functions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(name.to_ascii_lowercase());
        // Routes learned before may have sent it to a reader.
        self.inner
            .routes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .1
            .clear();
    }

    /// Whether a reader failed to prepare a statement because it calls a
    /// function registered on the writer only.
    fn calls_writer_function(&self, e: &Error) -> bool {
        let message = e.to_string();
        let Some(rest) = message.strip_prefix("no such function: ") else {
            return false;
        };
        let name = rest
            .split(|c: char| !(c.is_alphanumeric() || c == '_'))
            .next()
            .unwrap_or("");
        self.inner
            .writer_functions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(&name.to_ascii_lowercase())
    }

    /// A request through the pool from the task that holds the writer's
    /// transaction would wait for that transaction (or, on a reader, not see
    /// its writes, while a `:memory:` pool, whose one connection is the
    /// writer, would wait): refused alike everywhere.
    /// The connection a statement goes to (see `query_methods`).
    pub(crate) async fn target(&self, sql: &str, to: Route) -> Result<&Channel> {
        match to {
            Route::BySql => Ok(self.route(sql).await?.channel()),
            Route::Writer => {
                refuse_transaction_control(sql)?;
                Ok(self.inner.writer.channel())
            }
            Route::WriterAsIs => Ok(self.inner.writer.channel()),
        }
    }

    /// A stream whose connection is chosen at its first poll: a reader,
    /// the writer if it writes (`INSERT ... RETURNING`). An open read on
    /// the writer would pin a WAL snapshot and hold back checkpoints.
    pub(crate) fn stream_of<T: Send + 'static>(
        &self,
        sql: Sql,
        params: Box<dyn Params>,
        reader: Box<dyn ReadChunk<Item = T>>,
    ) -> RowStream<T> {
        let db = self.clone();
        let text = sql.clone();
        let route = Box::pin(async move { Ok(db.route(&text).await?.channel().clone()) });
        RowStream::routed(route, sql, params, reader)
    }

    /// The writer is shared: a script may not leave a transaction open on it.
    pub(crate) fn scripts_must_close(&self) -> bool {
        true
    }

    fn refuse_own_lease(&self) -> Result<()> {
        if self.inner.writer.channel().shared.leased_by_caller() {
            return Err(Error::InsideOwnTransaction);
        }
        Ok(())
    }

    /// Runs `f` on a reader's worker (a `query_only` connection).
    ///
    /// # Errors
    /// As [`Connection::call`].
    ///
    /// # Cancel safety
    /// As [`Connection::call`].
    pub async fn read<F, T, E>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut rusqlite::Connection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<Error> + Send + 'static,
    {
        self.refuse_own_lease()?;
        self.reader().call(f).await
    }

    /// Runs `f` on the writer's worker. A transaction `f` leaves open is
    /// rolled back after it; use [`transaction`](Database::transaction) or
    /// [`begin`](Database::begin).
    ///
    /// # Errors
    /// As [`Connection::call`].
    ///
    /// # Cancel safety
    /// As [`Connection::call`].
    pub async fn write<F, T, E>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut rusqlite::Connection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<Error> + Send + 'static,
    {
        self.inner.writer.call(f).await
    }

    /// Begins a write transaction (`BEGIN IMMEDIATE`) on the writer and leases
    /// it to the returned guard: until it commits, rolls back or is dropped,
    /// other tasks' writes wait in order and none lands inside it. Reads from
    /// other tasks keep going on the readers.
    ///
    /// Inside the transaction, send everything through the guard: a request
    /// through this `Database` from the task holding the guard fails at once
    /// with [`Error::InsideOwnTransaction`] (it would wait for the guard, or
    /// read around it).
    ///
    /// As [`Connection::begin`], `begin` does not wait for its `BEGIN`: the
    /// guard's first request follows it to the writer.
    ///
    /// # Errors
    /// [`Error::InsideOwnTransaction`] when this task holds a guard already;
    /// [`Error::Closed`]. `SQLITE_BUSY` (another process holds the write lock
    /// past the busy timeout) comes as [`Error::BeginFailed`] from the
    /// guard's first request, with `is_busy()` true.
    ///
    /// # Cancel safety
    /// As [`Connection::begin`].
    pub async fn begin(&self) -> Result<Transaction> {
        self.inner
            .writer
            .begin_with(TransactionBehavior::Immediate)
            .await
    }

    /// [`begin`](Database::begin) with a chosen locking behavior.
    ///
    /// # Errors
    /// As [`begin`](Database::begin).
    ///
    /// # Cancel safety
    /// As [`begin`](Database::begin).
    pub async fn begin_with(&self, behavior: TransactionBehavior) -> Result<Transaction> {
        self.inner.writer.begin_with(behavior).await
    }

    /// Runs `f` in an IMMEDIATE transaction on the writer's worker: commit on
    /// `Ok`, rollback on `Err` or panic.
    ///
    /// # Errors
    /// As [`Connection::transaction`].
    ///
    /// # Cancel safety
    /// As [`Connection::transaction`].
    pub async fn transaction<F, T, E>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut rusqlite::Transaction<'_>) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<Error> + Send + 'static,
    {
        self.inner
            .writer
            .transaction_with(TransactionBehavior::Immediate, f)
            .await
    }

    /// Applies the migrations given to the builder, on the writer's worker;
    /// see [`Connection::migrate`].
    ///
    /// ```
    /// # async fn demo(db: aiolite_conn::Database) -> aiolite_conn::Result<()> {
    /// let report = db.migrate().await?;
    /// for (version, name) in &report.applied {
    ///     println!("applied V{version}__{name}");
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`Connection::migrate`].
    ///
    /// # Cancel safety
    /// As [`Connection::migrate`].
    pub async fn migrate(&self) -> Result<crate::migrate::MigrationReport> {
        self.inner.writer.migrate().await
    }

    /// Like [`migrate`](Database::migrate), stopping after `version`.
    ///
    /// # Errors
    /// As [`Connection::migrate`].
    ///
    /// # Cancel safety
    /// As [`Connection::migrate`].
    pub async fn migrate_to(&self, version: i32) -> Result<crate::migrate::MigrationReport> {
        self.inner.writer.migrate_to(version).await
    }

    /// Closes every connection (readers first, then the writer, so the last
    /// close checkpoints the WAL) and joins their threads. Afterwards every
    /// call fails with [`Error::Closed`].
    ///
    /// # Errors
    /// The first close error; every connection is closed regardless.
    /// [`Error::InsideOwnTransaction`] (and nothing closed) from the task
    /// holding the pool's write transaction.
    ///
    /// # Cancel safety
    /// Closing continues on the workers if the future is dropped.
    pub async fn close(&self) -> Result<()> {
        // Before any connection closes: the writer's close would wait for
        // the caller's own transaction.
        self.refuse_own_lease()?;
        let mut first_error = Ok(());
        for conn in self.inner.readers.iter().chain([&self.inner.writer]) {
            let r = conn.close().await;
            if first_error.is_ok() {
                first_error = r;
            }
        }
        first_error
    }

    /// Whether the pool was closed.
    pub fn is_closed(&self) -> bool {
        self.inner.writer.is_closed()
    }

    /// [`Connection::resources`] summed over the pool's connections;
    /// `leased` says whether a transaction holds the writer, and
    /// `oldest_snapshot` is the oldest of all.
    pub fn resources(&self) -> Resources {
        let mut sum = self.inner.writer.resources();
        for r in self.inner.readers.iter().map(Connection::resources) {
            sum.parked_statements += r.parked_statements;
            sum.open_blobs += r.open_blobs;
            sum.oldest_snapshot = sum.oldest_snapshot.max(r.oldest_snapshot);
        }
        sum
    }
}

impl fmt::Debug for Database {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Database")
            .field("path", &self.inner.writer.path())
            .field("readers", &self.inner.readers.len())
            .field("closed", &self.is_closed())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::writer_only;

    #[test]
    fn guard_rails() {
        for sql in [
            "BEGIN",
            "begin immediate",
            "  COMMIT",
            "END TRANSACTION",
            "ROLLBACK",
            "SAVEPOINT a",
            "RELEASE a",
            "ATTACH 'x.db' AS x",
            "DETACH x",
            "PRAGMA journal_mode",
            "/* c */ pragma user_version",
            "SELECT last_insert_rowid()",
            "SELECT changes()",
            "select TOTAL_CHANGES()",
        ] {
            assert!(writer_only(sql), "{sql}");
        }
        for sql in [
            "SELECT 1",
            "WITH x AS (SELECT 1) SELECT * FROM x",
            "SELECT * FROM t",
        ] {
            assert!(!writer_only(sql), "{sql}");
        }
    }
}

crate::query_methods::impl_query_methods!(Database);
crate::query_methods::impl_handle!(Database, write);
