#![doc = include_str!("../README.md")]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]
#![deny(rustdoc::broken_intra_doc_links)]

pub use aiolite_conn::{
    named_params, Column, ConnectOptions, Connection, Database, DatabaseBuilder, Error, ErrorCode,
    ErrorKind, JournalMode, NamedParams, Params, Result, Row, RowIndex, RowStream, Savepoint,
    Synchronous, Transaction, TransactionBehavior, Value,
};

/// rusqlite, the synchronous SQLite binding aiolite runs on the worker thread
/// (for [`Connection::call`] closures and `FromSql`/`ToSql` impls).
pub use aiolite_conn::rusqlite;
