//! Value-level decoding: one SQLite value into one Rust value.

use std::fmt;

use rusqlite::types::ValueRef;

/// What a value was, when it did not fit: `NULL`, `TEXT`,
/// `INTEGER 300, out of range for u8`, `TEXT (invalid JSON: ...)`.
///
/// The typed layer turns it into [`Error::Decode`](crate::Error::Decode),
/// adding the column, the struct field and the Rust type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    found: String,
}

impl DecodeError {
    /// A value of the wrong storage class: reports its class.
    pub fn mismatch(value: ValueRef<'_>) -> DecodeError {
        DecodeError {
            found: storage_class(value).to_owned(),
        }
    }

    /// A value of the right class that still does not fit, with why.
    pub fn invalid(value: ValueRef<'_>, why: impl fmt::Display) -> DecodeError {
        DecodeError {
            found: format!("{} ({why})", storage_class(value)),
        }
    }

    /// What was found, as the error message shows it.
    pub fn found(&self) -> &str {
        &self.found
    }

    pub(crate) fn into_found(self) -> String {
        self.found
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "found {}", self.found)
    }
}

impl std::error::Error for DecodeError {}

/// SQLite's name for the storage class of a value.
pub(crate) fn storage_class(value: ValueRef<'_>) -> &'static str {
    match value {
        ValueRef::Null => "NULL",
        ValueRef::Integer(_) => "INTEGER",
        ValueRef::Real(_) => "REAL",
        ValueRef::Text(_) => "TEXT",
        ValueRef::Blob(_) => "BLOB",
    }
}

/// A Rust type one SQLite value decodes into: the field types of
/// [`FromRow`](crate::FromRow) structs.
///
/// Decoding is strict where a silent conversion would lose data: an integer
/// out of the target's range is an error (never a wrap), `NULL` decodes only
/// into `Option<T>`, text must be valid UTF-8. Implement it for your own types
/// to use them as fields.
///
/// ```
/// use aiolite_query::{Decode, DecodeError};
/// use aiolite_query::rusqlite::types::ValueRef;
///
/// struct Cents(i64);
///
/// impl Decode for Cents {
///     fn decode(value: ValueRef<'_>) -> Result<Self, DecodeError> {
///         i64::decode(value).map(Cents)
///     }
/// }
/// ```
pub trait Decode: Sized {
    /// Decodes one value.
    ///
    /// # Errors
    /// What was found, when it does not fit `Self`.
    fn decode(value: ValueRef<'_>) -> Result<Self, DecodeError>;
}

impl<T: Decode> Decode for Option<T> {
    fn decode(value: ValueRef<'_>) -> Result<Self, DecodeError> {
        match value {
            ValueRef::Null => Ok(None),
            v => T::decode(v).map(Some),
        }
    }
}

impl Decode for i64 {
    fn decode(value: ValueRef<'_>) -> Result<Self, DecodeError> {
        match value {
            ValueRef::Integer(i) => Ok(i),
            v => Err(DecodeError::mismatch(v)),
        }
    }
}

macro_rules! narrow_int {
    ($($t:ty),*) => {$(
        impl Decode for $t {
            fn decode(value: ValueRef<'_>) -> Result<Self, DecodeError> {
                match value {
                    ValueRef::Integer(i) => <$t>::try_from(i).map_err(|_| DecodeError {
                        found: format!("INTEGER {i}, out of range for {}", stringify!($t)),
                    }),
                    v => Err(DecodeError::mismatch(v)),
                }
            }
        }
    )*};
}

narrow_int!(i8, i16, i32, u8, u16, u32, u64);

impl Decode for f64 {
    /// `REAL`, or an `INTEGER` (SQLite stores integral reals as integers in
    /// some columns). SQLite stores NaN as `NULL`: it decodes into
    /// `Option<f64>` as `None`, and into `f64` as an error.
    fn decode(value: ValueRef<'_>) -> Result<Self, DecodeError> {
        match value {
            ValueRef::Real(f) => Ok(f),
            #[allow(clippy::cast_precision_loss)] // as SQLite itself converts
            ValueRef::Integer(i) => Ok(i as f64),
            v => Err(DecodeError::mismatch(v)),
        }
    }
}

impl Decode for f32 {
    fn decode(value: ValueRef<'_>) -> Result<Self, DecodeError> {
        #[allow(clippy::cast_possible_truncation)] // f32 columns hold f32 values
        f64::decode(value).map(|f| f as f32)
    }
}

impl Decode for bool {
    /// An `INTEGER`: 0 is false, anything else true (SQLite's own rule).
    fn decode(value: ValueRef<'_>) -> Result<Self, DecodeError> {
        match value {
            ValueRef::Integer(i) => Ok(i != 0),
            v => Err(DecodeError::mismatch(v)),
        }
    }
}

impl Decode for String {
    fn decode(value: ValueRef<'_>) -> Result<Self, DecodeError> {
        match value {
            ValueRef::Text(t) => match std::str::from_utf8(t) {
                Ok(s) => Ok(s.to_owned()),
                Err(e) => Err(DecodeError::invalid(value, format_args!("not UTF-8: {e}"))),
            },
            v => Err(DecodeError::mismatch(v)),
        }
    }
}

impl Decode for Vec<u8> {
    fn decode(value: ValueRef<'_>) -> Result<Self, DecodeError> {
        match value {
            ValueRef::Blob(b) => Ok(b.to_vec()),
            v => Err(DecodeError::mismatch(v)),
        }
    }
}

impl Decode for rusqlite::types::Value {
    /// Any value, as it is stored (invalid UTF-8 text is an error, not a
    /// panic).
    fn decode(value: ValueRef<'_>) -> Result<Self, DecodeError> {
        use rusqlite::types::Value;
        Ok(match value {
            ValueRef::Null => Value::Null,
            ValueRef::Integer(i) => Value::Integer(i),
            ValueRef::Real(f) => Value::Real(f),
            ValueRef::Text(_) => Value::Text(String::decode(value)?),
            ValueRef::Blob(b) => Value::Blob(b.to_vec()),
        })
    }
}

/// Through rusqlite's own `FromSql`, so what its `ToSql` writes (and the
/// sea-query binder, which uses it) reads back.
#[cfg(any(feature = "chrono", feature = "uuid"))]
pub(crate) fn via_from_sql<T: rusqlite::types::FromSql>(
    value: ValueRef<'_>,
) -> Result<T, DecodeError> {
    use rusqlite::types::FromSqlError;
    T::column_result(value).map_err(|e| match e {
        FromSqlError::InvalidType => DecodeError::mismatch(value),
        other => DecodeError::invalid(value, other),
    })
}
