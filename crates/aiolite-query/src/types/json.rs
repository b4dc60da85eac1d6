//! JSON values stored as TEXT.

use rusqlite::types::ValueRef;
use sea_query::Value;
use serde::de::DeserializeOwned;
use serde::Serialize;

use rusqlite::Statement;

use crate::decode::{Decode, DecodeError};
use crate::encode::Encode;
use crate::from_row::{check_width, get, is_null_at, single_value, FromRow};
use crate::{Error, Result};

/// A value stored as JSON text: any `T` that serde can write and read.
/// As a struct field, `#[aiolite(json)]` does the same without the wrapper.
///
/// ```
/// use aiolite_query::Json;
///
/// #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
/// struct Settings { theme: String }
///
/// let stored = Json(Settings { theme: "dark".into() });
/// # let _ = stored;
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Json<T>(pub T);

impl<T: DeserializeOwned> Decode for Json<T> {
    /// JSON `TEXT` (or a `BLOB` of JSON text). `NULL` is an error: use
    /// `Option<Json<T>>` for a nullable column.
    fn decode(value: ValueRef<'_>) -> Result<Self, DecodeError> {
        match value {
            ValueRef::Text(b) | ValueRef::Blob(b) => serde_json::from_slice(b)
                .map(Json)
                .map_err(|e| DecodeError::invalid(value, format_args!("invalid JSON: {e}"))),
            v => Err(DecodeError::mismatch(v)),
        }
    }
}

impl<T: Serialize> Encode for Json<T> {
    fn encode(&self) -> Result<Value> {
        serde_json::to_string(&self.0)
            .map(|s| Value::String(Some(s)))
            .map_err(|e| Error::Rusqlite(rusqlite::Error::ToSqlConversionFailure(Box::new(e))))
    }

    fn null() -> Value {
        Value::String(None)
    }
}

impl Decode for serde_json::Value {
    /// JSON `TEXT`; an `INTEGER` or `REAL` is a JSON number. `NULL` is an
    /// error: use `Option<serde_json::Value>` for a nullable column.
    fn decode(value: ValueRef<'_>) -> Result<Self, DecodeError> {
        match value {
            ValueRef::Integer(i) => Ok(serde_json::Value::from(i)),
            ValueRef::Real(f) => serde_json::Number::from_f64(f)
                .map(serde_json::Value::Number)
                .ok_or_else(|| DecodeError::invalid(value, "not a finite number")),
            v => Json::<serde_json::Value>::decode(v).map(|j| j.0),
        }
    }
}

impl Encode for serde_json::Value {
    /// Always JSON text, so every value (`null` and strings included) reads
    /// back as itself.
    fn encode(&self) -> Result<Value> {
        Json(self).encode()
    }

    fn null() -> Value {
        Value::String(None)
    }
}

impl<T: serde::de::DeserializeOwned + Send + 'static> FromRow for crate::Json<T> {
    type Plan = ();

    fn plan(stmt: &Statement<'_>, _: &str) -> Result<()> {
        check_width(stmt, 1)
    }

    fn from_row(row: &rusqlite::Row<'_>, _: &()) -> Result<Self> {
        get(row, 0, None)
    }

    fn is_null(row: &rusqlite::Row<'_>, _: &()) -> bool {
        is_null_at(row, 0)
    }
}

single_value!(serde_json::Value);
