//! The async connection behind [aiolite](https://docs.rs/aiolite): one worker
//! thread per connection, fed by a request queue. Not for direct use; depend on
//! `aiolite`, which re-exports everything here.
//!
//! A [`Connection`] is a cheap `Clone + Send + Sync` handle. Opening it spawns
//! one named OS thread (`aiolite-conn-N`) that owns the `rusqlite::Connection`;
//! every async method becomes one request on that thread's queue.
//! A [`Database`] is a pool of them on one WAL file: one writer
//! (`aiolite-writer`) and N `query_only` readers (`aiolite-reader-N`), with
//! statements routed by what SQLite says of them.

#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]
#![deny(rustdoc::broken_intra_doc_links)]

mod backup;
mod blob;
mod busy;
mod channel;
mod connection;
mod dump;
mod error;
pub mod functions;
pub mod hooks;
mod limits;
#[cfg(feature = "load_extension")]
mod load_extension;
mod metrics;
pub mod migrate;
mod options;
mod params;
mod pool;
mod query_methods;
mod row;
mod row_decoder;
mod serialize;
mod spin;
mod sql;
mod sqlite;
mod stream;
mod transaction;
mod worker;

/// For aiolite's own crates: not part of the API.
#[doc(hidden)]
pub mod __private {
    pub use crate::metrics::prepare_cached;
}

pub use backup::{Backup, BackupProgress};
pub use blob::Blob;
pub use connection::{Connection, Resources};
pub use dump::Dump;
pub use error::{Error, ErrorCode, ErrorKind, Result};
pub use metrics::{Bucket, ConnectionMetrics, DatabaseMetrics, Histogram};
pub use options::{ConnectOptions, JournalMode, Synchronous, TransactionBehavior};
pub use params::{NamedParams, Params};
pub use pool::{Database, DatabaseBuilder};
pub use query_methods::Handle;
pub use row::{Column, Row, RowIndex};
pub use row_decoder::RowDecoder;
pub use rusqlite;
pub use rusqlite::limits::Limit;
pub use rusqlite::types::Value;
pub use sql::IntoSql;
pub use stream::RowStream;
pub use transaction::{Savepoint, Transaction};
