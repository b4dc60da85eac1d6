#![doc = include_str!("../README.md")]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]
#![deny(rustdoc::broken_intra_doc_links)]

pub use aiolite_conn::{
    functions, hooks, named_params, Backup, BackupProgress, Blob, Bucket, Column, ConnectOptions,
    Connection, ConnectionMetrics, Database, DatabaseBuilder, DatabaseMetrics, Dump, Error,
    ErrorCode, ErrorKind, Handle, Histogram, IntoSql, JournalMode, Limit, NamedParams, Params,
    Resources, Result, Row, RowDecoder, RowIndex, RowStream, Savepoint, Synchronous, Transaction,
    TransactionBehavior, Value,
};

/// Schema migrations: sets, reports, errors. Build a set with
/// [`embed_migrations!`]; run it with [`Database::migrate`] or
/// [`Connection::migrate`].
pub mod migrate {
    pub use aiolite_conn::migrate::{
        Migration, MigrationError, MigrationErrorKind, MigrationKind, MigrationReport, Migrations,
        NO_TRANSACTION,
    };
}

/// Embeds a directory of SQL migrations (refinery's naming: `V1__create_users.sql`,
/// `U2__seed.sql`), relative to your crate's `Cargo.toml`, into the binary.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> aiolite::Result<()> {
/// let db = aiolite::Database::builder(":memory:")
///     .migrations(aiolite::embed_migrations!("migrations"))
///     .open()
///     .await?;
/// let report = db.migrate().await?;
/// assert!(!report.applied.is_empty());
/// # Ok(()) }
/// ```
///
/// Cargo rebuilds when an embedded file changes, but it does not notice a
/// *new* file by itself: add a `build.rs` with
///
/// ```text
/// fn main() {
///     println!("cargo:rerun-if-changed=migrations");
/// }
/// ```
///
/// The files are those refinery's own scanner finds (subfolders included). A
/// file that looks like a misnamed migration (another tool's name, a
/// lower-case prefix, a name with characters refinery does not read) and two
/// files with one version are compile errors; any other `.sql` file is a
/// compile-time warning (a `deprecated` lint: `#[allow(deprecated)]` at the
/// call silences it).
pub use aiolite_derive::embed_migrations;

/// rusqlite, the synchronous SQLite binding aiolite runs on the worker thread
/// (for [`Connection::call`] closures and `FromSql`/`ToSql` impls).
pub use aiolite_conn::rusqlite;

/// The typed layer: rows decoded into structs on the worker, tables mapped to
/// models, sea-query statements run through any handle.
pub use aiolite_query::{
    ColumnExpr, Decode, DecodeError, Encode, Executor, FromRow, FromRowDecoder, Model, Page,
    SqlValues, Statement,
};

/// A value stored as JSON text (`serde_json` feature).
#[cfg(feature = "serde_json")]
pub use aiolite_query::Json;

pub use aiolite_derive::{FromRow, Model};

/// sea-query, to build statements for [`Executor::query_all`] and friends
/// (built with its `thread-safe` feature, so statements cross to the worker).
pub use aiolite_query::sea_query;

/// Everything typed queries need in scope: `use aiolite::prelude::*;`.
///
/// It does not bring sea-query's `ExprTrait`, which is implemented for every
/// value (`i64`, `String`, dates) and would make `a.max(b)` ambiguous (E0034)
/// in any module that globs the prelude: conditions on a model's columns come
/// from [`ColumnExpr`] (`UserColumn::Age.gte(18)`), implemented for column
/// identifiers only. Import `sea_query::ExprTrait` by name where you need
/// the rest of sea-query's operators.
pub mod prelude {
    pub use crate::sea_query::{Condition, Expr, Order, Query};
    pub use crate::{ColumnExpr, Executor, FromRow, Model, Statement};
}

#[doc(hidden)]
pub use aiolite_query::__private;
