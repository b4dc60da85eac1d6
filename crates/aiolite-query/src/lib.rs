//! The typed layer of [aiolite](https://docs.rs/aiolite): [`FromRow`],
//! [`Model`], and sea-query statements run through the worker. Use it
//! through the `aiolite` facade, whose derives generate code against
//! `::aiolite::...` paths.
//!
//! Nothing here assumes SQLite beyond what sea-query does: statements are
//! built with sea-query's SQLite builder and bound as parameters in the forms [`SqlValues`] lists.

mod bind;
mod column;
mod decode;
mod encode;
mod executor;
mod from_row;
mod model;
mod statement;
mod types;

pub use aiolite_conn::{Error, ErrorKind, Result};
pub use column::ColumnExpr;
pub use decode::{Decode, DecodeError};
pub use encode::Encode;
pub use executor::{Executor, Page};
pub use from_row::{FromRow, FromRowDecoder};
pub use model::Model;
pub use statement::{SqlValues, Statement};
#[cfg(feature = "serde_json")]
pub use types::json::Json;

pub use rusqlite;
pub use sea_query;

#[doc(hidden)]
pub use from_row::__private;

/// A statement sea-query could not build (columns and values that do not
/// pair up): a bug in the caller's statement, reported, never a panic.
pub(crate) fn sea_query_error(e: sea_query::error::Error) -> Error {
    Error::Rusqlite(rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
}
