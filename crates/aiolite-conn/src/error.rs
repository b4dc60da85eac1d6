//! The one error type of the connection layer.

use std::any::Any;
use std::fmt;
use std::path::PathBuf;

use rusqlite::ffi;
pub use rusqlite::ErrorCode;

/// `Result` with [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong talking to SQLite through aiolite.
///
/// SQLite's primary and extended result codes are kept ([`Error::code`],
/// [`Error::extended_code`]), and so is the SQL that failed where it is known
/// ([`Error::sql`]). Branch on the helpers ([`Error::is_busy`],
/// [`Error::is_unique_violation`], ...) or on [`Error::kind`], which sorts errors
/// into the classes Python's `sqlite3` and aiosqlite raise.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// SQLite returned an error code.
    #[error("{message}{}", SqlSuffix(sql.as_deref()))]
    Sqlite {
        /// The primary result code.
        code: ErrorCode,
        /// The extended result code (`SQLITE_CONSTRAINT_UNIQUE`, ...).
        extended_code: i32,
        /// SQLite's own message (`sqlite3_errmsg`).
        message: String,
        /// The statement that failed, where known.
        sql: Option<String>,
    },

    /// The database file could not be opened or configured.
    #[error("cannot open database {}: {message}", path.display())]
    Open {
        /// The path given to `open`.
        path: PathBuf,
        /// The primary result code.
        code: ErrorCode,
        /// The extended result code.
        extended_code: i32,
        /// SQLite's message.
        message: String,
    },

    /// The connection was closed (by [`close`](crate::Connection::close), or its
    /// worker thread is gone). Every call after a close returns this error.
    #[error("the connection is closed")]
    Closed,

    /// The request was stopped before it finished because its caller or
    /// what it depended on went away: a backup whose caller left, the later
    /// parameter sets of an `execute_many` whose earlier set failed.
    #[error("the request was cancelled: {0}")]
    Cancelled(&'static str),

    /// A user closure (`call`, `fetch_map`, `transaction`, the init hook) or
    /// callback (a SQL function, aggregate, collation or hook) panicked on the
    /// worker thread. The worker survives; the statement running was stopped,
    /// and a transaction the request opened was rolled back.
    #[error("a closure panicked on the connection's worker thread: {message}")]
    Panic {
        /// The panic payload, when it was a string.
        message: String,
    },

    /// A column value could not be converted to the requested Rust type.
    #[error(
        "cannot read column {column:?} (index {index}){} as {expected}: found {found}",
        field_note(.field)
    )]
    Decode {
        /// Zero-based column index.
        index: usize,
        /// Column name.
        column: String,
        /// The struct field being decoded (`User.age`, `Post.author.name`),
        /// when the row is decoded into a `FromRow` type.
        field: Option<String>,
        /// The Rust type asked for.
        expected: &'static str,
        /// What SQLite had: `NULL`, `INTEGER`, `REAL`, `TEXT`, `BLOB`, or why the
        /// value did not fit (out of range, invalid UTF-8, ...).
        found: String,
    },

    /// No column of that name in the row.
    #[error("no column named {0:?} in the result")]
    ColumnNotFound(String),

    /// A column index past the end of the row.
    #[error("column index {index} is out of range: the result has {len} columns")]
    ColumnIndexOutOfRange {
        /// The index asked for.
        index: usize,
        /// The number of columns.
        len: usize,
    },

    /// The statement takes a different number of parameters than were given.
    #[error("the statement takes {expected} parameter(s) but {given} were given{}", SqlSuffix(sql.as_deref()))]
    ParameterCount {
        /// Parameters in the SQL text.
        expected: usize,
        /// Parameters supplied.
        given: usize,
        /// The statement.
        sql: Option<String>,
    },

    /// A named parameter is missing from the statement, or the statement has a
    /// named parameter that was not supplied.
    #[error("{0}")]
    ParameterName(String),

    /// More than one statement was given where one is expected.
    #[error("only one statement can be run here, but the SQL holds more (use execute_script for several){}", SqlSuffix(Some(sql)))]
    MultipleStatements {
        /// The SQL text.
        sql: String,
    },

    /// The SQL text holds a NUL byte. SQLite would stop reading at it and run
    /// only the part before it (`UPDATE t SET x = 1 \0 WHERE id = 2` would
    /// update every row), so it is refused before prepare.
    #[error("the SQL text holds a NUL byte at offset {offset}")]
    NulInSql {
        /// Byte offset of the first NUL.
        offset: usize,
    },

    /// `fetch_one` found no row.
    #[error("the query returned no rows{}", SqlSuffix(sql.as_deref()))]
    NoRows {
        /// The statement.
        sql: Option<String>,
    },

    /// Configuration that cannot be honored: connect options, a `sqlite:`
    /// URL, a pragma, a pool's builder, migrations asked for but not given.
    #[error("invalid configuration: {0}")]
    Config(String),

    /// A call that cannot be made now, or with these arguments: what was
    /// asked and why not (a blob range past its end, a function arity SQLite
    /// cannot take, a backup into its own source, `deserialize` inside a
    /// transaction, a handle already closed, ...).
    #[error("{0}")]
    Misuse(String),

    /// Reading or writing a file outside SQLite failed (a migrations folder).
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },

    /// A migration run stopped; the error carries the report of what it
    /// applied before.
    #[error("{0}")]
    Migration(Box<MigrationError>),

    /// SQLite rolled back the transaction a guard ([`Transaction`],
    /// [`Savepoint`], a group-commit member, the closure of
    /// [`Connection::transaction`]) held, on its own: `INSERT OR ROLLBACK` on a
    /// conflict, `RAISE(ROLLBACK, ..)` in a trigger, or an error such as
    /// `SQLITE_FULL`, `SQLITE_IOERR` or `SQLITE_NOMEM`. None of the
    /// transaction's work is kept, and nothing more runs in it (no statement
    /// of it goes on in autocommit): the statement that failed, every later
    /// statement of the guard, and its `commit()` return this error;
    /// `rollback()` succeeds. Retry the whole transaction.
    ///
    /// [`code`](Error::code) and the `is_*` helpers answer for the cause.
    ///
    /// [`Transaction`]: crate::Transaction
    /// [`Savepoint`]: crate::Savepoint
    /// [`Connection::transaction`]: crate::Connection::transaction
    #[error("SQLite rolled the transaction back: {}; {}", RollbackCause(.cause.as_deref(), true), ROLLED_BACK)]
    RolledBack {
        /// The error that made SQLite roll back; `None` when the request in
        /// which it ended did not pass an error on: a closure that went on
        /// past the failing statement, or a `ROLLBACK` or `COMMIT` run
        /// through the guard's own handle (a guard turns a `COMMIT` it did not
        /// ask for into a rollback).
        cause: Option<std::sync::Arc<Error>>,
    },

    /// The `BEGIN` of a transaction guard failed on the worker: `SQLITE_BUSY`
    /// for an `IMMEDIATE` or `EXCLUSIVE` transaction when another connection
    /// kept the write lock past the busy timeout, or "cannot start a
    /// transaction within a transaction" after an `execute("BEGIN")`.
    ///
    /// `begin()` does not wait for its `BEGIN` (the guard's first statement
    /// is sent right behind it, so a transaction costs no round trip more
    /// than the closure form), so this comes from the guard's first request
    /// that waits for an answer, and from every later one and `commit()`:
    /// nothing of the guard ran, in a transaction or outside one.
    /// `rollback()` and dropping the guard succeed. Begin again.
    ///
    /// [`code`](Error::code) and the `is_*` helpers answer for the cause,
    /// so `is_busy()` still tells a retry apart.
    #[error("the transaction did not begin: {cause}; {}", BEGIN_FAILED)]
    BeginFailed {
        /// Why `BEGIN` failed.
        cause: std::sync::Arc<Error>,
    },

    /// The transaction a stream, blob or request belongs to has ended
    /// (committed, rolled back, or its guard dropped): what it opened ended
    /// with it. Read a transaction's streams to the end before committing.
    #[error("the transaction this belongs to has ended (committed, rolled back or dropped); streams and blobs opened in a transaction end with it")]
    TransactionEnded,

    /// A stream kept its read snapshot past
    /// [`ConnectOptions::snapshot_age_limit`](crate::ConnectOptions::snapshot_age_limit):
    /// its statement was finalized so that the WAL can be checkpointed.
    #[error("the stream kept its read snapshot for {age:?}, past the limit of {limit:?} (ConnectOptions::snapshot_age_limit): its statement was finalized so the WAL can be checkpointed; read it faster, page the query, or raise the limit")]
    SnapshotTooOld {
        /// How old the snapshot was when the stream was stopped.
        age: std::time::Duration,
        /// The limit.
        limit: std::time::Duration,
    },

    /// The calling task holds the transaction that leases this connection
    /// (or this pool's writer), and sent a request through the connection or
    /// the pool instead of through the transaction: the request would wait
    /// for that very transaction forever. Send it through the guard
    /// (`tx.execute`, `tx.fetch_all`, ...), or end the transaction first.
    #[error("this task holds the transaction (from begin()) that leases the connection, and sent a request around it: it would wait for that transaction forever; send it through the transaction's handle (tx.execute, tx.fetch_all, ...) or commit first")]
    InsideOwnTransaction,

    /// Transaction control (`BEGIN`, `SAVEPOINT`, `COMMIT`, `ROLLBACK`,
    /// `RELEASE`) sent through a [`Database`](crate::Database) outside a
    /// transaction guard, or a script that left a transaction open: on a pool
    /// each request may run on another connection, and a transaction left
    /// open after a request is rolled back. Use `db.begin()` or
    /// `db.transaction(|tx| ..)`.
    #[error("transaction control through a Database is refused ({0}): a transaction a request leaves open on the pool is rolled back after it, so use db.begin() or db.transaction(|tx| ..) instead")]
    TransactionControl(&'static str),

    /// The SQL text holds no statement: it is empty, blank, or only comments
    /// and semicolons. (`execute_script` accepts an empty script, as
    /// Python's `executescript` does.)
    #[error(
        "the SQL text is empty: it holds no statement, only white space, comments or semicolons"
    )]
    EmptySql,

    /// Any other error reported by rusqlite.
    #[error(transparent)]
    Rusqlite(rusqlite::Error),
}

const ROLLED_BACK: &str = "none of its work is kept and nothing more runs in it: roll it back (or drop it) and retry the whole transaction";
const BEGIN_FAILED: &str = "nothing of it ran: drop the guard (or roll it back) and begin again";

/// The cause of a [`Error::RolledBack`], for its message; with the SQL it
/// quotes, or without (`Error::message`).
struct RollbackCause<'a>(Option<&'a Error>, bool);

impl fmt::Display for RollbackCause<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(cause) if self.1 => write!(f, "{cause}"),
            Some(cause) => write!(f, "{}", WithoutSql(cause)),
            None => f.write_str(
                "it ended inside one of its own requests, which went on (a statement that made SQLite roll back, its error not passed on; or a COMMIT or ROLLBACK run through its own handle, where commit() and rollback() belong)",
            ),
        }
    }
}

/// An error's text with no SQL in it (see [`Error::message`]): the variants
/// that quote their statement, written without it; every other one as its
/// `Display`, which quotes none.
struct WithoutSql<'a>(&'a Error);

impl fmt::Display for WithoutSql<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Error::Sqlite { message, .. } => f.write_str(message),
            Error::ParameterCount {
                expected, given, ..
            } => write!(
                f,
                "the statement takes {expected} parameter(s) but {given} were given"
            ),
            Error::MultipleStatements { .. } => f.write_str(
                "only one statement can be run here, but the SQL holds more (use execute_script for several)",
            ),
            Error::NoRows { .. } => f.write_str("the query returned no rows"),
            Error::RolledBack { cause } => write!(
                f,
                "SQLite rolled the transaction back: {}; {}",
                RollbackCause(cause.as_deref(), false),
                ROLLED_BACK
            ),
            Error::BeginFailed { cause } => write!(
                f,
                "the transaction did not begin: {}; {}",
                WithoutSql(cause),
                BEGIN_FAILED
            ),
            Error::Rusqlite(rusqlite::Error::SqlInputError { msg, offset, .. }) => {
                write!(f, "{msg} at offset {offset}")
            }
            other => write!(f, "{other}"),
        }
    }
}

/// The classes of error Python's `sqlite3` module (and so aiosqlite) raises,
/// for code ported from it.
///
/// | aiosqlite / sqlite3 | `ErrorKind` | typical cause |
/// |---|---|---|
/// | `IntegrityError` | `Integrity` | UNIQUE, NOT NULL, CHECK, FOREIGN KEY constraint |
/// | `OperationalError` | `Operational` | locked/busy, I/O, disk full, read-only, interrupted, cannot open, syntax error, no such table |
/// | `ProgrammingError` | `Programming` | wrong parameter count or name, several statements, NUL in SQL, closed connection |
/// | `DataError` | `Data` | value too big, a column that cannot become the requested type |
/// | `InterfaceError` | `Interface` | misuse of the SQLite API |
/// | `InternalError` | `Internal` | SQLite internal error, a panic in a user closure |
/// | `MemoryError` (Python's own) | `Memory` | SQLite ran out of memory |
/// | `DatabaseError` | `Database` | corruption, not a database, an authorizer's denial (`SQLITE_AUTH`), anything else |
///
/// SQLite's result codes map exactly as in CPython's `Modules/_sqlite/util.c`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// `sqlite3.IntegrityError`.
    Integrity,
    /// `sqlite3.OperationalError`.
    Operational,
    /// `sqlite3.ProgrammingError`.
    Programming,
    /// `sqlite3.DataError`.
    Data,
    /// `sqlite3.InterfaceError`.
    Interface,
    /// `sqlite3.InternalError`.
    Internal,
    /// `sqlite3.DatabaseError`.
    Database,
    /// Python's `MemoryError`, which CPython raises for `SQLITE_NOMEM`.
    Memory,
}

impl Error {
    /// SQLite's primary result code, if SQLite produced this error.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Error::RolledBack { cause: Some(cause) } | Error::BeginFailed { cause } => cause.code(),
            Error::Sqlite { code, .. } | Error::Open { code, .. } => Some(*code),
            Error::Rusqlite(rusqlite::Error::SqliteFailure(e, _)) => Some(e.code),
            _ => None,
        }
    }

    /// SQLite's extended result code (`SQLITE_CONSTRAINT_UNIQUE` = 2067, ...).
    pub fn extended_code(&self) -> Option<i32> {
        match self {
            Error::RolledBack { cause: Some(cause) } | Error::BeginFailed { cause } => {
                cause.extended_code()
            }
            Error::Sqlite { extended_code, .. } | Error::Open { extended_code, .. } => {
                Some(*extended_code)
            }
            Error::Rusqlite(rusqlite::Error::SqliteFailure(e, _)) => Some(e.extended_code),
            _ => None,
        }
    }

    /// The SQL text that failed, when known.
    pub fn sql(&self) -> Option<&str> {
        match self {
            Error::Sqlite { sql, .. }
            | Error::ParameterCount { sql, .. }
            | Error::NoRows { sql } => sql.as_deref(),
            Error::MultipleStatements { sql } => Some(sql),
            Error::RolledBack { cause: Some(cause) } | Error::BeginFailed { cause } => cause.sql(),
            _ => None,
        }
    }

    /// `SQLITE_BUSY` or `SQLITE_LOCKED`: another connection holds a lock and the
    /// busy timeout ran out ("database is locked").
    pub fn is_busy(&self) -> bool {
        matches!(
            self.code(),
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
        )
    }

    /// Any constraint violation (`SQLITE_CONSTRAINT`).
    pub fn is_constraint(&self) -> bool {
        self.code() == Some(ErrorCode::ConstraintViolation)
    }

    /// A UNIQUE or PRIMARY KEY constraint failed.
    pub fn is_unique_violation(&self) -> bool {
        matches!(
            self.extended_code(),
            Some(ffi::SQLITE_CONSTRAINT_UNIQUE | ffi::SQLITE_CONSTRAINT_PRIMARYKEY)
        )
    }

    /// A FOREIGN KEY constraint failed.
    pub fn is_foreign_key_violation(&self) -> bool {
        self.extended_code() == Some(ffi::SQLITE_CONSTRAINT_FOREIGNKEY)
    }

    /// A CHECK constraint failed.
    pub fn is_check_violation(&self) -> bool {
        self.extended_code() == Some(ffi::SQLITE_CONSTRAINT_CHECK)
    }

    /// A NOT NULL constraint failed.
    pub fn is_not_null_violation(&self) -> bool {
        self.extended_code() == Some(ffi::SQLITE_CONSTRAINT_NOTNULL)
    }

    /// The error's text without the SQL it quotes, for a service's clients
    /// (as sqlx's `DatabaseError::message`): `Display` adds the failing
    /// statement (` (in: ...)`), which belongs in logs, not in a response.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> aiolite_conn::Result<()> {
    /// let conn = aiolite_conn::Connection::open_in_memory().await?;
    /// conn.execute("CREATE TABLE t(age INTEGER CHECK (age >= 0))", ()).await?;
    /// let e = conn.execute("INSERT INTO t VALUES (-1)", ()).await.unwrap_err();
    /// assert!(e.is_check_violation());
    /// assert!(e.to_string().contains("INSERT INTO t")); // for the log
    /// assert_eq!(e.message(), "CHECK constraint failed: age >= 0"); // for the client
    /// # Ok(()) }
    /// ```
    pub fn message(&self) -> String {
        WithoutSql(self).to_string()
    }

    /// The statement was interrupted (`interrupt()`, or its caller went away).
    pub fn is_interrupted(&self) -> bool {
        self.code() == Some(ErrorCode::OperationInterrupted)
    }

    /// The connection is closed.
    pub fn is_closed(&self) -> bool {
        matches!(self, Error::Closed)
    }

    /// The class Python's `sqlite3` would raise for this error.
    pub fn kind(&self) -> ErrorKind {
        match self.extended_code() {
            // Code 0 (SQLITE_OK) is never SQLite's: an open that failed
            // before SQLite ran (the worker thread could not be spawned).
            Some(0) => return ErrorKind::Operational,
            Some(extended) => return kind_of_code(extended & 0xff),
            None => {}
        }
        match self {
            Error::BeginFailed { cause } => cause.kind(),
            Error::Decode { .. } => ErrorKind::Data,
            Error::Panic { .. } => ErrorKind::Internal,
            Error::Rusqlite(rusqlite::Error::ToSqlConversionFailure(_)) => ErrorKind::Interface,
            Error::Rusqlite(_) => ErrorKind::Database,
            Error::Config(_)
            | Error::Io { .. }
            | Error::Cancelled(_)
            | Error::Migration(_)
            | Error::RolledBack { .. }
            | Error::TransactionEnded => ErrorKind::Operational,
            Error::InsideOwnTransaction | Error::TransactionControl(_) => ErrorKind::Programming,
            Error::SnapshotTooOld { .. } => ErrorKind::Operational,
            _ => ErrorKind::Programming,
        }
    }

    /// The same error again, for each of several callers it answers (a
    /// group commit's members): the same variant with the same fields. Only
    /// what cannot be copied is carried as text: a rusqlite error without
    /// an SQLite code and a migration error become [`Error::Misuse`] with
    /// their message, an I/O error keeps its kind and message.
    pub(crate) fn duplicate(&self) -> Error {
        match self {
            Error::Open {
                path,
                code,
                extended_code,
                message,
            } => Error::Open {
                path: path.clone(),
                code: *code,
                extended_code: *extended_code,
                message: message.clone(),
            },
            Error::Panic { message } => Error::Panic {
                message: message.clone(),
            },
            Error::Decode {
                index,
                column,
                field,
                expected,
                found,
            } => Error::Decode {
                index: *index,
                column: column.clone(),
                field: field.clone(),
                expected,
                found: found.clone(),
            },
            Error::ColumnNotFound(name) => Error::ColumnNotFound(name.clone()),
            Error::ColumnIndexOutOfRange { index, len } => Error::ColumnIndexOutOfRange {
                index: *index,
                len: *len,
            },
            Error::ParameterCount {
                expected,
                given,
                sql,
            } => Error::ParameterCount {
                expected: *expected,
                given: *given,
                sql: sql.clone(),
            },
            Error::ParameterName(why) => Error::ParameterName(why.clone()),
            Error::MultipleStatements { sql } => Error::MultipleStatements { sql: sql.clone() },
            Error::NulInSql { offset } => Error::NulInSql { offset: *offset },
            Error::NoRows { sql } => Error::NoRows { sql: sql.clone() },
            Error::Config(why) => Error::Config(why.clone()),
            Error::Misuse(why) => Error::Misuse(why.clone()),
            Error::Io { path, source } => Error::Io {
                path: path.clone(),
                source: std::io::Error::new(source.kind(), source.to_string()),
            },
            Error::Rusqlite(rusqlite::Error::SqliteFailure(e, message)) => Error::Sqlite {
                code: e.code,
                extended_code: e.extended_code,
                message: message.clone().unwrap_or_else(|| e.to_string()),
                sql: None,
            },
            Error::Rusqlite(other) => Error::Misuse(other.to_string()),
            Error::Migration(m) => Error::Misuse(m.to_string()),
            Error::Sqlite {
                code,
                extended_code,
                message,
                sql,
            } => Error::Sqlite {
                code: *code,
                extended_code: *extended_code,
                message: message.clone(),
                sql: sql.clone(),
            },
            Error::Cancelled(why) => Error::Cancelled(why),
            Error::Closed => Error::Closed,
            Error::RolledBack { cause } => Error::RolledBack {
                cause: cause.clone(),
            },
            Error::BeginFailed { cause } => Error::BeginFailed {
                cause: cause.clone(),
            },
            Error::TransactionEnded => Error::TransactionEnded,
            Error::EmptySql => Error::EmptySql,
            Error::InsideOwnTransaction => Error::InsideOwnTransaction,
            Error::SnapshotTooOld { age, limit } => Error::SnapshotTooOld {
                age: *age,
                limit: *limit,
            },
            Error::TransactionControl(what) => Error::TransactionControl(what),
        }
    }

    pub(crate) fn panic(payload: Box<dyn Any + Send>) -> Error {
        Error::Panic {
            message: panic_text(&*payload),
        }
    }

    /// Fills in the failing SQL where the error has room for it and lacks it.
    #[doc(hidden)]
    pub fn attach_sql(mut self, text: &str) -> Error {
        match &mut self {
            Error::Sqlite { sql, .. }
            | Error::ParameterCount { sql, .. }
            | Error::NoRows { sql }
                if sql.is_none() =>
            {
                *sql = Some(text.to_owned());
            }
            Error::MultipleStatements { sql } if sql.is_empty() => *sql = text.to_owned(),
            _ => {}
        }
        self
    }

    /// The one way an open fails: SQLite's error while opening or
    /// configuring `path` becomes [`Error::Open`] naming it; any other error
    /// (a pragma option refused, the init hook's) is passed on as it is.
    pub(crate) fn opening(path: &std::path::Path, e: Error) -> Error {
        match e {
            Error::Sqlite {
                code,
                extended_code,
                message,
                ..
            } => Error::Open {
                path: path.to_owned(),
                code,
                extended_code,
                message,
            },
            Error::Rusqlite(other) => Error::open_failed(path, other.to_string()),
            other => other,
        }
    }

    /// [`Error::Open`] for a failure SQLite did not report (no result code).
    pub(crate) fn open_failed(path: &std::path::Path, message: String) -> Error {
        Error::Open {
            path: path.to_owned(),
            code: ErrorCode::Unknown,
            extended_code: 0,
            message,
        }
    }

    /// Converts a rusqlite error, attaching the SQL that produced it: the
    /// one mapping (`From<rusqlite::Error>`), then the SQL where the error
    /// has room for it.
    pub(crate) fn with_sql(err: rusqlite::Error, sql: &str) -> Error {
        Error::from(err).attach_sql(sql)
    }
}

/// CPython's table (`_pysqlite_seterror` in Modules/_sqlite/util.c), case for
/// case, on the primary result code; its `default` is `DatabaseError`.
/// `SQLITE_ERROR` (a syntax error, no such table) is `OperationalError`;
/// `SQLITE_AUTH`, `SQLITE_RANGE`, `SQLITE_NOTADB`, `SQLITE_NOLFS`,
/// `SQLITE_FORMAT` and codes SQLite may add later fall to the default.
fn kind_of_code(primary: i32) -> ErrorKind {
    match primary {
        ffi::SQLITE_INTERNAL | ffi::SQLITE_NOTFOUND => ErrorKind::Internal,
        ffi::SQLITE_NOMEM => ErrorKind::Memory,
        ffi::SQLITE_ERROR
        | ffi::SQLITE_PERM
        | ffi::SQLITE_ABORT
        | ffi::SQLITE_BUSY
        | ffi::SQLITE_LOCKED
        | ffi::SQLITE_READONLY
        | ffi::SQLITE_INTERRUPT
        | ffi::SQLITE_IOERR
        | ffi::SQLITE_FULL
        | ffi::SQLITE_CANTOPEN
        | ffi::SQLITE_PROTOCOL
        | ffi::SQLITE_EMPTY
        | ffi::SQLITE_SCHEMA => ErrorKind::Operational,
        ffi::SQLITE_CORRUPT => ErrorKind::Database,
        ffi::SQLITE_TOOBIG => ErrorKind::Data,
        ffi::SQLITE_CONSTRAINT | ffi::SQLITE_MISMATCH => ErrorKind::Integrity,
        ffi::SQLITE_MISUSE => ErrorKind::Interface,
        _ => ErrorKind::Database,
    }
}

impl From<rusqlite::Error> for Error {
    fn from(err: rusqlite::Error) -> Error {
        match err {
            rusqlite::Error::SqliteFailure(e, message) => Error::Sqlite {
                code: e.code,
                extended_code: e.extended_code,
                message: message.unwrap_or_else(|| e.to_string()),
                sql: None,
            },
            // Only rusqlite's `modern_sqlite` (turned on by `bundled`) reports it.
            #[cfg(feature = "bundled")]
            rusqlite::Error::SqlInputError {
                error,
                msg,
                sql,
                offset,
            } => Error::Sqlite {
                code: error.code,
                extended_code: error.extended_code,
                message: format!("{msg} (at offset {offset})"),
                sql: Some(sql),
            },
            rusqlite::Error::InvalidParameterCount(given, expected) => Error::ParameterCount {
                expected,
                given,
                sql: None,
            },
            rusqlite::Error::QueryReturnedNoRows => Error::NoRows { sql: None },
            rusqlite::Error::InvalidColumnName(name) => Error::ColumnNotFound(name),
            rusqlite::Error::InvalidParameterName(name) => {
                Error::ParameterName(format!("the statement has no parameter named {name:?}"))
            }
            rusqlite::Error::InvalidColumnType(index, column, ty) => Error::Decode {
                index,
                column,
                field: None,
                expected: "the requested type",
                found: sql_type_name(ty).to_owned(),
            },
            rusqlite::Error::IntegralValueOutOfRange(index, value) => Error::Decode {
                index,
                column: String::new(),
                field: None,
                expected: "a narrower integer",
                found: format!("INTEGER {value} (out of range)"),
            },
            rusqlite::Error::MultipleStatement => Error::MultipleStatements { sql: String::new() },
            rusqlite::Error::UnwindingPanic => Error::Panic {
                message: "a callback panicked inside SQLite".to_owned(),
            },
            other => Error::Rusqlite(other),
        }
    }
}

fn field_note(field: &Option<String>) -> String {
    match field {
        Some(f) => format!(" into field `{f}`"),
        None => String::new(),
    }
}

pub(crate) fn sql_type_name(ty: rusqlite::types::Type) -> &'static str {
    use rusqlite::types::Type;
    match ty {
        Type::Null => "NULL",
        Type::Integer => "INTEGER",
        Type::Real => "REAL",
        Type::Text => "TEXT",
        Type::Blob => "BLOB",
    }
}

/// Appends ` (in: <sql>)` to a message when the SQL is known.
struct SqlSuffix<'a>(Option<&'a str>);

impl fmt::Display for SqlSuffix<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(sql) if !sql.is_empty() => {
                const MAX: usize = 200;
                if sql.len() > MAX {
                    let cut = (0..=MAX)
                        .rev()
                        .find(|&i| sql.is_char_boundary(i))
                        .unwrap_or(0);
                    write!(f, " (in: {}...)", &sql[..cut])
                } else {
                    write!(f, " (in: {sql})")
                }
            }
            _ => Ok(()),
        }
    }
}

/// The message of a panic payload, when it is a string.
pub(crate) fn panic_text(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

// The migration runner's errors live here, with the others, so that the
// runner depends on this file and not the other way round.

/// What a migration run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MigrationReport {
    /// Applied by this run, in order: (version, name).
    pub applied: Vec<(i32, String)>,
    /// Found already applied (by an earlier run or another process).
    pub already_applied: Vec<(i32, String)>,
}

/// Why a migration run stopped. It carries the report of what the run applied
/// before it stopped.
#[derive(Debug)]
pub struct MigrationError {
    /// What went wrong.
    pub kind: MigrationErrorKind,
    /// What was applied before the failure.
    pub report: MigrationReport,
}

/// The ways a migration run can fail.
#[derive(Debug)]
#[non_exhaustive]
pub enum MigrationErrorKind {
    /// An applied migration's name or SQL changed since it was applied.
    Divergent {
        /// Its version.
        version: i32,
        /// Its name in the database.
        applied_name: String,
        /// Its name in the set.
        name: String,
    },
    /// A migration applied in the database is not in the set any more.
    Missing {
        /// Its version.
        version: i32,
        /// Its name in the database.
        name: String,
    },
    /// A new versioned migration is below the highest version applied.
    OutOfOrder {
        /// The new migration's version.
        version: i32,
        /// Its name.
        name: String,
        /// The highest version applied.
        applied: i32,
    },
    /// A migration's SQL failed; nothing of it was kept.
    Failed {
        /// Its version.
        version: i32,
        /// Its file name (`V3__add_index`).
        file: String,
        /// SQLite's error.
        error: Error,
    },
    /// A migration that runs outside a transaction ([`NO_TRANSACTION`](crate::migrate::NO_TRANSACTION)) was
    /// started by an earlier run that stopped before writing its history row
    /// (the process died, or its last step failed): its statements may be
    /// partly applied. Nothing was run again. Check the schema, make running
    /// the migration again harmless (or finish it by hand), then delete its
    /// claim, `DELETE FROM aiolite_migration_claims WHERE version = {version}`,
    /// and migrate again.
    Interrupted {
        /// Its version.
        version: i32,
        /// Its name.
        name: String,
        /// When the interrupted run started it (UTC, RFC 3339).
        started_on: String,
        /// The process that started it.
        pid: i64,
    },
    /// The lock file that orders migrations outside a transaction across
    /// processes could not be opened or locked.
    Lock {
        /// `{database}-aiolite-migrate.lock`.
        path: PathBuf,
        /// The I/O error.
        error: std::io::Error,
    },
    /// Reading or writing the history failed.
    History(Error),
    /// The set could not be built (duplicate versions, bad names).
    Invalid(String),
}

impl fmt::Display for MigrationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            MigrationErrorKind::Divergent {
                version,
                applied_name,
                name,
            } => write!(
                f,
                "migration {version} ({name}) differs from the one applied as {applied_name}: applied migrations must not change"
            ),
            MigrationErrorKind::Missing { version, name } => write!(
                f,
                "migration {version} ({name}) is applied in the database but missing from the set"
            ),
            MigrationErrorKind::OutOfOrder {
                version,
                name,
                applied,
            } => write!(
                f,
                "migration {version} ({name}) is new but version {applied} is already applied; give it a higher version"
            ),
            MigrationErrorKind::Failed {
                version,
                file,
                error,
            } => write!(f, "migration {version} ({file}.sql) failed: {error}"),
            MigrationErrorKind::Interrupted {
                version,
                name,
                started_on,
                pid,
            } => write!(
                f,
                "migration {version} ({name}) runs outside a transaction and did not finish: process {pid} started it at {started_on} and stopped before recording it, so its statements may be partly applied; nothing was run again. Check the schema, make running it again harmless (or finish it by hand), then run `DELETE FROM aiolite_migration_claims WHERE version = {version}` and migrate again"
            ),
            MigrationErrorKind::Lock { path, error } => write!(
                f,
                "cannot take the migration lock {}: {error}",
                path.display()
            ),
            MigrationErrorKind::History(e) => write!(f, "reading the migration history failed: {e}"),
            MigrationErrorKind::Invalid(why) => write!(f, "invalid migration set: {why}"),
        }?;
        if !self.report.applied.is_empty() {
            let versions: Vec<String> = self
                .report
                .applied
                .iter()
                .map(|(v, _)| v.to_string())
                .collect();
            write!(f, " (applied before it: {})", versions.join(", "))?;
        }
        Ok(())
    }
}

impl std::error::Error for MigrationError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constraint_errors_are_integrity_errors() {
        let conn = rusqlite::Connection::open_in_memory().expect("open");
        conn.execute_batch("CREATE TABLE t(id INTEGER PRIMARY KEY, r INTEGER REFERENCES t(id)); PRAGMA foreign_keys=ON; INSERT INTO t VALUES (1, NULL)")
            .expect("schema");
        let dup = Error::with_sql(
            conn.execute("INSERT INTO t VALUES (1, NULL)", [])
                .expect_err("must fail"),
            "INSERT",
        );
        assert!(dup.is_unique_violation());
        assert!(dup.is_constraint());
        assert!(!dup.is_foreign_key_violation());
        assert_eq!(dup.kind(), ErrorKind::Integrity);
        assert_eq!(dup.sql(), Some("INSERT"));

        let fk = Error::from(
            conn.execute("INSERT INTO t VALUES (2, 99)", [])
                .expect_err("must fail"),
        );
        assert!(fk.is_foreign_key_violation());
        assert!(!fk.is_unique_violation());
    }

    /// Every primary result code against CPython's table, written out from
    /// Modules/_sqlite/util.c (3.11) as data, the default branch included.
    #[test]
    fn every_result_code_has_cpythons_class() {
        use ErrorKind::*;
        let cpython = [
            (1, Operational),  // SQLITE_ERROR
            (2, Internal),     // SQLITE_INTERNAL
            (3, Operational),  // SQLITE_PERM
            (4, Operational),  // SQLITE_ABORT
            (5, Operational),  // SQLITE_BUSY
            (6, Operational),  // SQLITE_LOCKED
            (7, Memory),       // SQLITE_NOMEM: PyErr_NoMemory()
            (8, Operational),  // SQLITE_READONLY
            (9, Operational),  // SQLITE_INTERRUPT
            (10, Operational), // SQLITE_IOERR
            (11, Database),    // SQLITE_CORRUPT
            (12, Internal),    // SQLITE_NOTFOUND
            (13, Operational), // SQLITE_FULL
            (14, Operational), // SQLITE_CANTOPEN
            (15, Operational), // SQLITE_PROTOCOL
            (16, Operational), // SQLITE_EMPTY
            (17, Operational), // SQLITE_SCHEMA
            (18, Data),        // SQLITE_TOOBIG
            (19, Integrity),   // SQLITE_CONSTRAINT
            (20, Integrity),   // SQLITE_MISMATCH
            (21, Interface),   // SQLITE_MISUSE
            (22, Database),    // SQLITE_NOLFS: default
            (23, Database),    // SQLITE_AUTH: default
            (24, Database),    // SQLITE_FORMAT: default
            (25, Database),    // SQLITE_RANGE: default
            (26, Database),    // SQLITE_NOTADB: default
            (27, Database),    // SQLITE_NOTICE: default
            (28, Database),    // SQLITE_WARNING: default
            (99, Database),    // a code SQLite may add: default
        ];
        for (primary, kind) in cpython {
            // Extended codes carry the primary one in their low byte.
            for extended in [primary, primary | (3 << 8)] {
                let err = Error::Sqlite {
                    code: ffi::Error::new(extended).code,
                    extended_code: extended,
                    message: String::new(),
                    sql: None,
                };
                assert_eq!(err.kind(), kind, "result code {extended}");
                let through_rusqlite = Error::Rusqlite(rusqlite::Error::SqliteFailure(
                    ffi::Error::new(extended),
                    None,
                ));
                assert_eq!(through_rusqlite.kind(), kind, "result code {extended}");
            }
        }
    }

    #[test]
    fn an_authorizer_denial_is_a_database_error_as_in_cpython() {
        let mut conn = rusqlite::Connection::open_in_memory().expect("open");
        conn.authorizer(Some(|_: rusqlite::hooks::AuthContext<'_>| {
            rusqlite::hooks::Authorization::Deny
        }))
        .expect("authorizer");
        let err = Error::from(conn.prepare("SELECT 1").expect_err("denied"));
        assert_eq!(err.code(), Some(ErrorCode::AuthorizationForStatementDenied));
        assert_eq!(err.kind(), ErrorKind::Database);
    }

    /// Reported: `duplicate()` turned every variant but a few into an
    /// `Error::Sqlite` with code Unknown, so a group member saw another kind.
    #[test]
    fn duplicate_keeps_the_variant() {
        let cases = [
            Error::Config("c".into()),
            Error::Misuse("m".into()),
            Error::Io {
                path: "p".into(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "gone"),
            },
            Error::Decode {
                index: 1,
                column: "c".into(),
                field: Some("T.f".into()),
                expected: "i64",
                found: "TEXT".into(),
            },
            Error::ColumnNotFound("x".into()),
            Error::NoRows {
                sql: Some("SELECT 1".into()),
            },
            Error::Panic {
                message: "boom".into(),
            },
            Error::NulInSql { offset: 3 },
            Error::Closed,
            Error::EmptySql,
        ];
        for e in cases {
            let copy = e.duplicate();
            assert_eq!(
                std::mem::discriminant(&copy),
                std::mem::discriminant(&e),
                "{e:?}"
            );
            assert_eq!(copy.to_string(), e.to_string());
            assert_eq!(copy.kind(), e.kind());
        }
    }

    /// One rusqlite-to-Error mapping: with the SQL or without, the same
    /// variant and message (it used to differ for a syntax error's offset).
    #[test]
    fn with_sql_is_the_one_mapping_plus_the_sql() {
        let conn = rusqlite::Connection::open_in_memory().expect("open");
        let fresh = || conn.prepare("SELECT * FROM").expect_err("syntax");
        let plain = Error::from(fresh());
        let with = Error::with_sql(fresh(), "SELECT * FROM");
        match (&plain, &with) {
            (
                Error::Sqlite { message: a, .. },
                Error::Sqlite {
                    message: b, sql, ..
                },
            ) => {
                assert_eq!(a, b);
                assert_eq!(sql.as_deref(), Some("SELECT * FROM"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn syntax_errors_are_operational_and_carry_sql() {
        let conn = rusqlite::Connection::open_in_memory().expect("open");
        let err = Error::with_sql(conn.prepare("SELEC 1").expect_err("must fail"), "SELEC 1");
        assert_eq!(err.kind(), ErrorKind::Operational);
        assert_eq!(err.code(), Some(ErrorCode::Unknown));
        assert!(err.to_string().contains("syntax error"), "{err}");
        assert!(err.to_string().contains("SELEC 1"), "{err}");
    }

    #[test]
    fn programming_errors() {
        assert_eq!(Error::Closed.kind(), ErrorKind::Programming);
        assert_eq!(Error::NulInSql { offset: 3 }.kind(), ErrorKind::Programming);
        assert_eq!(
            Error::Panic {
                message: "x".into()
            }
            .kind(),
            ErrorKind::Internal
        );
    }

    #[test]
    fn long_sql_is_shortened_in_messages() {
        let sql = "é".repeat(300);
        let msg = Error::MultipleStatements { sql }.to_string();
        assert!(msg.ends_with("...)"), "{msg}");
        assert!(msg.len() < 400, "{} bytes", msg.len());
    }
}
