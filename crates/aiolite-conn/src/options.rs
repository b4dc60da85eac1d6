//! How a connection is opened: [`ConnectOptions`].

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::migrate::Migrations;

/// The hook run on the worker thread right after a connection opens.
pub(crate) type InitHook =
    Arc<dyn Fn(&mut rusqlite::Connection) -> rusqlite::Result<()> + Send + Sync + 'static>;

/// How a transaction takes its locks (`BEGIN DEFERRED | IMMEDIATE | EXCLUSIVE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum TransactionBehavior {
    /// Locks are taken when first needed (SQLite's default).
    #[default]
    Deferred,
    /// The write lock is taken at `BEGIN`: a read never has to be upgraded,
    /// so the transaction cannot fail later with `SQLITE_BUSY_SNAPSHOT`.
    Immediate,
    /// Like `Immediate`; in rollback-journal mode other readers are kept out too.
    Exclusive,
}

impl TransactionBehavior {
    pub(crate) fn begin_sql(self) -> &'static str {
        match self {
            TransactionBehavior::Deferred => "BEGIN DEFERRED",
            TransactionBehavior::Immediate => "BEGIN IMMEDIATE",
            TransactionBehavior::Exclusive => "BEGIN EXCLUSIVE",
        }
    }
}

/// `PRAGMA journal_mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub enum JournalMode {
    Delete,
    Truncate,
    Persist,
    Memory,
    Wal,
    Off,
}

impl JournalMode {
    fn as_str(self) -> &'static str {
        match self {
            JournalMode::Delete => "delete",
            JournalMode::Truncate => "truncate",
            JournalMode::Persist => "persist",
            JournalMode::Memory => "memory",
            JournalMode::Wal => "wal",
            JournalMode::Off => "off",
        }
    }
}

impl FromStr for JournalMode {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "delete" => JournalMode::Delete,
            "truncate" => JournalMode::Truncate,
            "persist" => JournalMode::Persist,
            "memory" => JournalMode::Memory,
            "wal" => JournalMode::Wal,
            "off" => JournalMode::Off,
            _ => return Err(Error::Config(format!("unknown journal_mode {s:?}"))),
        })
    }
}

/// `PRAGMA synchronous`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub enum Synchronous {
    Off,
    Normal,
    Full,
    Extra,
}

impl Synchronous {
    fn as_str(self) -> &'static str {
        match self {
            Synchronous::Off => "off",
            Synchronous::Normal => "normal",
            Synchronous::Full => "full",
            Synchronous::Extra => "extra",
        }
    }
}

impl FromStr for Synchronous {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "off" | "0" => Synchronous::Off,
            "normal" | "1" => Synchronous::Normal,
            "full" | "2" => Synchronous::Full,
            "extra" | "3" => Synchronous::Extra,
            _ => return Err(Error::Config(format!("unknown synchronous {s:?}"))),
        })
    }
}

/// What a connection is for; a pool's writer and readers differ from a plain
/// connection in a few settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Standalone,
    /// The pool's writer: transactions take the write lock at BEGIN, and a
    /// transaction left open by a request that holds no lease is rolled back.
    Writer,
    /// A pool reader: `query_only`, and it leaves the journal mode to the writer.
    Reader,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    File(PathBuf),
    Memory,
}

/// Options for opening a [`Connection`](crate::Connection): a builder taking and returning `self`.
///
/// ```
/// # async fn demo() -> aiolite_conn::Result<()> {
/// use std::time::Duration;
/// use aiolite_conn::{ConnectOptions, Synchronous};
///
/// let conn = ConnectOptions::new("app.db")
///     .synchronous(Synchronous::Normal)
///     .busy_timeout(Duration::from_secs(10))
///     .open()
///     .await?;
/// // The same from a URL:
/// let opts: ConnectOptions = "sqlite://app.db?mode=rwc&synchronous=normal".parse()?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct ConnectOptions {
    pub(crate) target: Target,
    pub(crate) read_only: bool,
    pub(crate) create: bool,
    pub(crate) journal_mode: Option<JournalMode>,
    pub(crate) synchronous: Synchronous,
    pub(crate) busy_timeout: Duration,
    pub(crate) foreign_keys: bool,
    pub(crate) statement_cache_capacity: usize,
    pub(crate) iter_chunk_size: usize,
    pub(crate) queue_bound: usize,
    pub(crate) pragmas: Vec<(String, String)>,
    pub(crate) isolation_level: Option<TransactionBehavior>,
    pub(crate) slow_statement: Duration,
    pub(crate) snapshot_age_limit: Option<Duration>,
    pub(crate) init: Option<InitHook>,
    pub(crate) role: Role,
    pub(crate) thread_name: Option<String>,
    pub(crate) migrations: Option<Migrations>,
    pub(crate) migrate_on_open: bool,
    /// Set by [`DatabaseBuilder::group_commit`](crate::DatabaseBuilder::group_commit), on the writer only.
    pub(crate) group_commit: bool,
}

impl ConnectOptions {
    /// Runs the migrations set with `migrate_on_open` on a connection being
    /// opened (never on a pool's reader): the worker calls it before the
    /// connection serves anything.
    pub(crate) fn migrate_at_open(&self, conn: &mut rusqlite::Connection) -> Result<()> {
        match (&self.migrations, self.migrate_on_open, self.role) {
            (Some(set), true, role) if role != Role::Reader => {
                crate::migrate::run(conn, set, None).map_err(Error::Migration)?;
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

/// What the options say, for a service to log or check its configuration.
/// Named as sqlx names them (`get_*`): the plain names are the setters.
impl ConnectOptions {
    /// The database file; `None` for `:memory:`.
    pub fn get_path(&self) -> Option<&Path> {
        match &self.target {
            Target::File(path) => Some(path),
            Target::Memory => None,
        }
    }

    /// Whether the connection opens read-only.
    pub fn get_read_only(&self) -> bool {
        self.read_only
    }

    /// Whether a missing file is created.
    pub fn get_create_if_missing(&self) -> bool {
        self.create
    }

    /// The journal mode asked for; `None`: the default (WAL for files).
    pub fn get_journal_mode(&self) -> Option<JournalMode> {
        self.journal_mode
    }

    /// `PRAGMA synchronous`.
    pub fn get_synchronous(&self) -> Synchronous {
        self.synchronous
    }

    /// How long a statement waits for another connection's lock.
    pub fn get_busy_timeout(&self) -> Duration {
        self.busy_timeout
    }

    /// `PRAGMA foreign_keys`.
    pub fn get_foreign_keys(&self) -> bool {
        self.foreign_keys
    }

    /// Capacity of the prepared-statement cache.
    pub fn get_statement_cache_capacity(&self) -> usize {
        self.statement_cache_capacity
    }

    /// Rows in a stream's first chunk.
    pub fn get_iter_chunk_size(&self) -> usize {
        self.iter_chunk_size
    }

    /// Requests that may wait in the queue before callers wait for room.
    pub fn get_queue_bound(&self) -> usize {
        self.queue_bound
    }

    /// The `PRAGMA name = value` pairs run after aiolite's own, in order.
    pub fn get_pragmas(&self) -> &[(String, String)] {
        &self.pragmas
    }

    /// Python's `isolation_level`; `None`: autocommit.
    pub fn get_isolation_level(&self) -> Option<TransactionBehavior> {
        self.isolation_level
    }

    /// Statements slower than this are logged at `warn`.
    pub fn get_slow_statement_threshold(&self) -> Duration {
        self.slow_statement
    }

    /// The longest a stream may keep its read snapshot; `None`: no limit.
    pub fn get_snapshot_age_limit(&self) -> Option<Duration> {
        self.snapshot_age_limit
    }

    /// Whether the migrations run when the connection opens.
    pub fn get_migrate_on_open(&self) -> bool {
        self.migrate_on_open
    }
}

impl ConnectOptions {
    /// Options for the database file at `path`, with every default below.
    pub fn new(path: impl AsRef<Path>) -> Self {
        let path = path.as_ref();
        let target = if path == Path::new(":memory:") {
            Target::Memory
        } else {
            Target::File(path.to_path_buf())
        };
        ConnectOptions {
            target,
            read_only: false,
            create: true,
            journal_mode: None,
            synchronous: Synchronous::Full,
            busy_timeout: Duration::from_secs(5),
            foreign_keys: true,
            statement_cache_capacity: 100,
            iter_chunk_size: 64,
            queue_bound: 1024,
            pragmas: Vec::new(),
            isolation_level: None,
            slow_statement: Duration::from_secs(1),
            snapshot_age_limit: None,
            init: None,
            role: Role::Standalone,
            thread_name: None,
            migrations: None,
            migrate_on_open: false,
            group_commit: false,
        }
    }

    /// Options for a private in-memory database.
    pub fn in_memory() -> Self {
        Self::new(":memory:")
    }

    /// Open read-only (`SQLITE_OPEN_READONLY`). Default: `false`.
    pub fn read_only(mut self, read_only: bool) -> Self {
        self.read_only = read_only;
        self
    }

    /// Create the file if it is missing. Default: `true`. Ignored when read-only.
    pub fn create_if_missing(mut self, create: bool) -> Self {
        self.create = create;
        self
    }

    /// `PRAGMA journal_mode`. Default: `Wal` for files (checked: opening fails if
    /// SQLite keeps another mode), left alone for `:memory:` and read-only opens.
    pub fn journal_mode(mut self, mode: JournalMode) -> Self {
        self.journal_mode = Some(mode);
        self
    }

    /// `PRAGMA synchronous`. Default: `Full` (no acknowledged commit is lost on
    /// power failure). `Normal` is the usual choice with WAL when losing the last
    /// commits on power loss is acceptable.
    pub fn synchronous(mut self, synchronous: Synchronous) -> Self {
        self.synchronous = synchronous;
        self
    }

    /// How long a statement waits for another connection's lock before failing
    /// with `SQLITE_BUSY`. Default: 5 seconds.
    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout;
        self
    }

    /// `PRAGMA foreign_keys`. Default: `true`.
    pub fn foreign_keys(mut self, on: bool) -> Self {
        self.foreign_keys = on;
        self
    }

    /// Capacity of the prepared-statement cache. Default: 100.
    pub fn statement_cache_capacity(mut self, capacity: usize) -> Self {
        self.statement_cache_capacity = capacity;
        self
    }

    /// Rows in the first chunk a [`Connection::stream`](crate::Connection::stream) fetches. Default: 64.
    /// A value of 0 is taken as 1.
    ///
    /// While the stream is read, each next chunk doubles, up to 4096 rows or
    /// until a chunk takes 256 KiB, whichever comes first (never below this
    /// size): a short result answers after a small chunk, and a long scan
    /// pays one round trip per few thousand rows rather than per 64.
    pub fn iter_chunk_size(mut self, rows: usize) -> Self {
        self.iter_chunk_size = rows.max(1);
        self
    }

    /// How many requests may wait in the connection's queue before callers
    /// wait for room (async backpressure). Default: 1024. 0 is taken as 1.
    pub fn queue_bound(mut self, bound: usize) -> Self {
        self.queue_bound = bound.max(1);
        self
    }

    /// Run `PRAGMA name = value` when the connection opens, after aiolite's own.
    pub fn pragma(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.pragmas.push((name.into(), value.into()));
        self
    }

    /// Python's `isolation_level`, for code ported from `sqlite3` or aiosqlite.
    ///
    /// `None` (the default) is autocommit: each statement commits unless you
    /// open a transaction. `Some(behavior)` makes every INSERT, UPDATE, DELETE or
    /// REPLACE run outside a transaction open one first (`BEGIN <behavior>`), to be
    /// ended by [`Connection::commit`](crate::Connection::commit) or [`Connection::rollback`](crate::Connection::rollback), as Python's
    /// legacy transaction control does.
    pub fn isolation_level(mut self, level: Option<TransactionBehavior>) -> Self {
        self.isolation_level = level;
        self
    }

    /// Statements slower than this are logged at `warn` (others at `debug`).
    /// Default: 1 second.
    pub fn log_slow_statements(mut self, threshold: Duration) -> Self {
        self.slow_statement = threshold;
        self
    }

    /// The longest a stream may keep its read snapshot: past it, the worker
    /// finalizes the stream's statement (whether or not the stream is being
    /// read) and the stream fails with
    /// [`Error::SnapshotTooOld`](crate::Error::SnapshotTooOld). Default: no
    /// limit.
    ///
    /// A stream's statement pins the WAL snapshot it started in, and the WAL
    /// cannot be checkpointed past the oldest pinned snapshot: one slow export
    /// (a client reading at 100 KiB/s for 8 s) while writes ran grew the WAL
    /// to 221 MB, against 19.5 MB without it. A stream whose snapshot is
    /// older than 10 s (or half the limit, if that is shorter) is logged at
    /// `warn` once, and [`Connection::resources`](crate::Connection::resources)
    /// reports the oldest snapshot's age.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let opts = aiolite_conn::ConnectOptions::new("app.db")
    ///     .snapshot_age_limit(Duration::from_secs(30));
    /// # let _ = opts;
    /// ```
    pub fn snapshot_age_limit(mut self, limit: Duration) -> Self {
        self.snapshot_age_limit = Some(limit);
        self
    }

    /// A hook run on the worker thread when the connection opens, after every
    /// pragma: register functions and collations, attach databases. An error
    /// (or a panic) fails the open.
    pub fn on_open<F>(mut self, f: F) -> Self
    where
        F: Fn(&mut rusqlite::Connection) -> rusqlite::Result<()> + Send + Sync + 'static,
    {
        self.init = Some(Arc::new(f));
        self
    }

    /// The migrations [`Connection::migrate`](crate::Connection::migrate) applies. Default: none.
    pub fn migrations(mut self, migrations: Migrations) -> Self {
        self.migrations = Some(migrations);
        self
    }

    /// Apply the [`migrations`](ConnectOptions::migrations) when the
    /// connection opens, on its worker, before anything else can run; a
    /// failure fails the open. Default: `false`.
    pub fn migrate_on_open(mut self, on: bool) -> Self {
        self.migrate_on_open = on;
        self
    }

    pub(crate) fn display_path(&self) -> PathBuf {
        match &self.target {
            Target::File(p) => p.clone(),
            Target::Memory => PathBuf::from(":memory:"),
        }
    }

    pub(crate) fn open_flags(&self) -> rusqlite::OpenFlags {
        use rusqlite::OpenFlags as F;
        let mut flags = F::SQLITE_OPEN_NO_MUTEX | F::SQLITE_OPEN_URI;
        if self.read_only {
            flags |= F::SQLITE_OPEN_READ_ONLY;
        } else {
            flags |= F::SQLITE_OPEN_READ_WRITE;
            if self.create {
                flags |= F::SQLITE_OPEN_CREATE;
            }
        }
        flags
    }

    /// The pragmas run at open, in order, with the value SQLite must report
    /// back for the ones whose failure is silent otherwise.
    pub(crate) fn startup_pragmas(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let journal = match (&self.target, self.journal_mode) {
            (_, Some(mode)) => Some(mode),
            (Target::File(_), None) => Some(JournalMode::Wal),
            (Target::Memory, None) => None,
        };
        if let (Some(mode), false, false) = (journal, self.read_only, self.role == Role::Reader) {
            out.push(("journal_mode".to_owned(), mode.as_str().to_owned()));
        }
        if self.role == Role::Reader {
            out.push(("query_only".to_owned(), "1".to_owned()));
        }
        out.push((
            "synchronous".to_owned(),
            self.synchronous.as_str().to_owned(),
        ));
        out.push((
            "foreign_keys".to_owned(),
            if self.foreign_keys { "on" } else { "off" }.to_owned(),
        ));
        // Memory-mapped I/O turns an I/O error into a SIGBUS; keep plain reads.
        out.push(("mmap_size".to_owned(), "0".to_owned()));
        out.extend(self.pragmas.iter().cloned());
        out
    }
}

impl fmt::Debug for ConnectOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectOptions")
            .field("target", &self.target)
            .field("read_only", &self.read_only)
            .field("create", &self.create)
            .field("journal_mode", &self.journal_mode)
            .field("synchronous", &self.synchronous)
            .field("busy_timeout", &self.busy_timeout)
            .field("foreign_keys", &self.foreign_keys)
            .field("statement_cache_capacity", &self.statement_cache_capacity)
            .field("iter_chunk_size", &self.iter_chunk_size)
            .field("queue_bound", &self.queue_bound)
            .field("pragmas", &self.pragmas)
            .field("isolation_level", &self.isolation_level)
            .field("init", &self.init.as_ref().map(|_| "<hook>"))
            .field("role", &self.role)
            .field("migrations", &self.migrations.as_ref().map(Migrations::len))
            .field("migrate_on_open", &self.migrate_on_open)
            .finish()
    }
}

/// Parses `sqlite:` URLs: `sqlite::memory:`, `sqlite:data.db`,
/// `sqlite://data.db`, `sqlite:///abs/path.db`, with query parameters
/// `mode=ro|rw|rwc|memory`, `journal_mode`, `synchronous`, `foreign_keys`,
/// `busy_timeout` (milliseconds), `cache_capacity`.
impl FromStr for ConnectOptions {
    type Err = Error;

    fn from_str(url: &str) -> Result<Self> {
        let rest = url
            .strip_prefix("sqlite:")
            .ok_or_else(|| Error::Config(format!("{url:?} does not start with `sqlite:`")))?;
        let rest = rest.strip_prefix("//").unwrap_or(rest);
        let (path, query) = match rest.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (rest, None),
        };
        let path = percent_decode(path)?;
        if path.is_empty() {
            return Err(Error::Config(format!("{url:?} names no database")));
        }
        let mut opts = ConnectOptions::new(&path);
        for pair in query
            .into_iter()
            .flat_map(|q| q.split('&'))
            .filter(|p| !p.is_empty())
        {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = percent_decode(value)?;
            match key {
                "mode" => match value.as_str() {
                    "ro" => opts = opts.read_only(true),
                    "rw" => opts = opts.read_only(false).create_if_missing(false),
                    "rwc" => opts = opts.read_only(false).create_if_missing(true),
                    "memory" => opts.target = Target::Memory,
                    other => {
                        return Err(Error::Config(format!(
                            "mode={other:?}: expected ro, rw, rwc or memory"
                        )))
                    }
                },
                "journal_mode" => opts = opts.journal_mode(value.parse()?),
                "synchronous" => opts = opts.synchronous(value.parse()?),
                "foreign_keys" => opts = opts.foreign_keys(parse_bool(key, &value)?),
                "busy_timeout" => {
                    let ms = value.parse::<u64>().map_err(|_| {
                        Error::Config(format!("busy_timeout={value:?}: expected milliseconds"))
                    })?;
                    opts = opts.busy_timeout(Duration::from_millis(ms));
                }
                "cache_capacity" => {
                    let n = value.parse::<usize>().map_err(|_| {
                        Error::Config(format!("cache_capacity={value:?}: expected a count"))
                    })?;
                    opts = opts.statement_cache_capacity(n);
                }
                "readers" | "group_commit" => {
                    return Err(Error::Config(format!(
                        "{key} is a pool parameter: open the URL with Database::connect (or DatabaseBuilder::from_url)"
                    )))
                }
                other => return Err(Error::Config(format!("unknown URL parameter {other:?}"))),
            }
        }
        Ok(opts)
    }
}

fn parse_bool(key: &str, value: &str) -> Result<bool> {
    match value.to_ascii_lowercase().as_str() {
        "1" | "true" | "on" | "yes" => Ok(true),
        "0" | "false" | "off" | "no" => Ok(false),
        _ => Err(Error::Config(format!(
            "{key}={value:?}: expected true or false"
        ))),
    }
}

fn percent_decode(s: &str) -> Result<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| Error::Config(format!("bad percent escape in {s:?}")))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| Error::Config(format!("{s:?} decodes to invalid UTF-8")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_forms() {
        let o: ConnectOptions = "sqlite::memory:".parse().expect("memory");
        assert_eq!(o.target, Target::Memory);
        let o: ConnectOptions = "sqlite://data.db?mode=ro".parse().expect("ro");
        assert_eq!(o.target, Target::File("data.db".into()));
        assert!(o.read_only);
        let o: ConnectOptions =
            "sqlite:///tmp/a%20b.db?mode=rw&synchronous=normal&busy_timeout=250"
                .parse()
                .expect("abs");
        assert_eq!(o.target, Target::File("/tmp/a b.db".into()));
        assert!(!o.create);
        assert_eq!(o.synchronous, Synchronous::Normal);
        assert_eq!(o.busy_timeout, Duration::from_millis(250));
        let o: ConnectOptions = "sqlite:x.db?mode=memory".parse().expect("mode memory");
        assert_eq!(o.target, Target::Memory);
    }

    #[test]
    fn bad_urls_are_errors() {
        for bad in [
            "postgres://x",
            "sqlite:",
            "sqlite:x.db?mode=rx",
            "sqlite:x.db?journal_mode=fast",
            "sqlite:x.db?nope=1",
            "sqlite:x%zz.db",
            "sqlite:x.db?busy_timeout=soon",
        ] {
            let err = bad.parse::<ConnectOptions>().expect_err(bad);
            assert!(matches!(err, Error::Config(_)), "{bad}: {err}");
        }
    }

    #[test]
    fn defaults() {
        let o = ConnectOptions::new("f.db");
        assert_eq!(o.busy_timeout, Duration::from_secs(5));
        assert!(o.foreign_keys);
        assert_eq!(o.statement_cache_capacity, 100);
        assert_eq!(o.iter_chunk_size, 64);
        let pragmas = o.startup_pragmas();
        assert_eq!(pragmas[0], ("journal_mode".to_owned(), "wal".to_owned()));
        let mem = ConnectOptions::in_memory().startup_pragmas();
        assert!(mem.iter().all(|(k, _)| k != "journal_mode"));
        let ro = ConnectOptions::new("f.db")
            .read_only(true)
            .startup_pragmas();
        assert!(ro.iter().all(|(k, _)| k != "journal_mode"));
    }
}
