//! Row-level decoding: a whole row into a struct, tuple or value.

use std::marker::PhantomData;
use std::sync::Arc;

use aiolite_conn::{Column, Error, Result, Row, RowDecoder};
use rusqlite::types::ValueRef;
use rusqlite::Statement;

use crate::decode::Decode;

/// A type a result row decodes into, **on the worker thread**: usually
/// `#[derive(FromRow)]` on a struct; also tuples of up to 16 [`Decode`]
/// values (by position), single values (the first column), [`Row`], and
/// `Option<T>` (`None` when every column `T` reads is `NULL`: the LEFT JOIN
/// case).
///
/// Column names are resolved to indexes once per statement (the *plan*),
/// not once per row.
///
/// ```
/// # async fn demo(conn: aiolite_conn::Connection) -> aiolite_conn::Result<()> {
/// use aiolite_query::Executor;
///
/// let pairs: Vec<(i64, String)> = conn.fetch_all_as("SELECT id, name FROM users", ()).await?;
/// let count: i64 = conn.fetch_one_as("SELECT count(*) FROM users", ()).await?;
/// # Ok(()) }
/// ```
pub trait FromRow: Sized + Send + 'static {
    /// Column indexes resolved from a statement's column names.
    #[doc(hidden)]
    type Plan: Send + 'static;

    /// Resolves the columns this type reads, named with `prefix` in front.
    ///
    /// # Errors
    /// [`Error::ColumnNotFound`] for a column the statement lacks (unless the
    /// field has a default).
    #[doc(hidden)]
    fn plan(stmt: &Statement<'_>, prefix: &str) -> Result<Self::Plan>;

    /// Decodes one row with a plan made for its statement.
    ///
    /// # Errors
    /// [`Error::Decode`] naming the field, column, Rust type and what SQLite had.
    #[doc(hidden)]
    fn from_row(row: &rusqlite::Row<'_>, plan: &Self::Plan) -> Result<Self>;

    /// Whether every column the plan reads is `NULL`.
    #[doc(hidden)]
    fn is_null(row: &rusqlite::Row<'_>, plan: &Self::Plan) -> bool;
}

/// The [`RowDecoder`] for a [`FromRow`] type: plans on the first row, then
/// decodes every row with that plan.
pub struct FromRowDecoder<T: FromRow> {
    plan: Option<T::Plan>,
    _marker: PhantomData<fn() -> T>,
}

impl<T: FromRow> FromRowDecoder<T> {
    /// A decoder with no plan yet.
    pub fn new() -> Self {
        FromRowDecoder {
            plan: None,
            _marker: PhantomData,
        }
    }
}

impl<T: FromRow> Default for FromRowDecoder<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: FromRow> std::fmt::Debug for FromRowDecoder<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FromRowDecoder")
            .field("type", &std::any::type_name::<T>())
            .field("planned", &self.plan.is_some())
            .finish()
    }
}

impl<T: FromRow> RowDecoder for FromRowDecoder<T> {
    type Output = T;

    #[inline]
    fn decode(&mut self, row: &rusqlite::Row<'_>) -> Result<T> {
        let plan = match &mut self.plan {
            Some(plan) => plan,
            // After the first step: a re-prepared statement reports its
            // current columns only from then on.
            empty => empty.insert(T::plan(row.as_ref(), "")?),
        };
        T::from_row(row, plan)
    }
}

/// Reads column `index` as `T`; a failure names the column, the field (if
/// any), the Rust type and what SQLite had.
#[inline]
pub(crate) fn get<T: Decode>(
    row: &rusqlite::Row<'_>,
    index: usize,
    field: Option<&str>,
) -> Result<T> {
    let value = row.get_ref(index)?;
    T::decode(value).map_err(|e| decode_error::<T>(row, index, field, e.into_found()))
}

pub(crate) fn decode_error<T>(
    row: &rusqlite::Row<'_>,
    index: usize,
    field: Option<&str>,
    found: String,
) -> Error {
    Error::Decode {
        index,
        column: row
            .as_ref()
            .column_name(index)
            .map(str::to_owned)
            .unwrap_or_default(),
        field: field.map(str::to_owned),
        expected: std::any::type_name::<T>(),
        found,
    }
}

pub(crate) fn check_width(stmt: &Statement<'_>, needed: usize) -> Result<()> {
    let len = stmt.column_count();
    if len < needed {
        return Err(Error::ColumnIndexOutOfRange {
            index: needed - 1,
            len,
        });
    }
    Ok(())
}

pub(crate) fn is_null_at(row: &rusqlite::Row<'_>, index: usize) -> bool {
    matches!(row.get_ref(index), Ok(ValueRef::Null))
}

macro_rules! single_value {
    ($($t:ty),* $(,)?) => {$(
        /// The first column.
        impl $crate::FromRow for $t {
            type Plan = ();

            fn plan(stmt: &::rusqlite::Statement<'_>, _: &str) -> $crate::Result<()> {
                $crate::from_row::check_width(stmt, 1)
            }

            #[inline]
            fn from_row(row: &::rusqlite::Row<'_>, _: &()) -> $crate::Result<Self> {
                $crate::from_row::get(row, 0, None)
            }

            fn is_null(row: &::rusqlite::Row<'_>, _: &()) -> bool {
                $crate::from_row::is_null_at(row, 0)
            }
        }
    )*};
}

#[cfg(any(feature = "chrono", feature = "uuid", feature = "serde_json"))]
pub(crate) use single_value;

single_value!(
    i8,
    i16,
    i32,
    i64,
    u8,
    u16,
    u32,
    u64,
    f32,
    f64,
    bool,
    String,
    Vec<u8>,
    rusqlite::types::Value,
);

/// `None` when every column `T` reads is `NULL`.
impl<T: FromRow> FromRow for Option<T> {
    type Plan = T::Plan;

    fn plan(stmt: &Statement<'_>, prefix: &str) -> Result<T::Plan> {
        T::plan(stmt, prefix)
    }

    #[inline]
    fn from_row(row: &rusqlite::Row<'_>, plan: &T::Plan) -> Result<Self> {
        if T::is_null(row, plan) {
            Ok(None)
        } else {
            T::from_row(row, plan).map(Some)
        }
    }

    fn is_null(row: &rusqlite::Row<'_>, plan: &T::Plan) -> bool {
        T::is_null(row, plan)
    }
}

/// The whole row, owned.
impl FromRow for Row {
    type Plan = Arc<[Column]>;

    fn plan(stmt: &Statement<'_>, _: &str) -> Result<Arc<[Column]>> {
        Ok(Row::__columns_of(stmt))
    }

    fn from_row(row: &rusqlite::Row<'_>, columns: &Arc<[Column]>) -> Result<Self> {
        Row::__copy_of(row, columns)
    }

    fn is_null(row: &rusqlite::Row<'_>, columns: &Arc<[Column]>) -> bool {
        (0..columns.len()).all(|i| is_null_at(row, i))
    }
}

macro_rules! tuple_from_row {
    ($count:literal: $($name:ident $idx:tt),+) => {
        /// The first columns, by position.
        impl<$($name: Decode + Send + 'static),+> FromRow for ($($name,)+) {
            type Plan = ();

            fn plan(stmt: &Statement<'_>, _: &str) -> Result<()> {
                check_width(stmt, $count)
            }

            #[inline]
            fn from_row(row: &rusqlite::Row<'_>, _: &()) -> Result<Self> {
                Ok(($(get::<$name>(row, $idx, None)?,)+))
            }

            fn is_null(row: &rusqlite::Row<'_>, _: &()) -> bool {
                $(is_null_at(row, $idx))&&+
            }
        }
    };
}

tuple_from_row!(1: A 0);
tuple_from_row!(2: A 0, B 1);
tuple_from_row!(3: A 0, B 1, C 2);
tuple_from_row!(4: A 0, B 1, C 2, D 3);
tuple_from_row!(5: A 0, B 1, C 2, D 3, E 4);
tuple_from_row!(6: A 0, B 1, C 2, D 3, E 4, F 5);
tuple_from_row!(7: A 0, B 1, C 2, D 3, E 4, F 5, G 6);
tuple_from_row!(8: A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7);
tuple_from_row!(9: A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8);
tuple_from_row!(10: A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9);
tuple_from_row!(11: A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9, K 10);
tuple_from_row!(12: A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9, K 10, L 11);
tuple_from_row!(13: A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9, K 10, L 11, M 12);
tuple_from_row!(14: A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9, K 10, L 11, M 12, N 13);
tuple_from_row!(15: A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9, K 10, L 11, M 12, N 13, O 14);
tuple_from_row!(16: A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9, K 10, L 11, M 12, N 13, O 14, P 15);

/// What `#[derive(FromRow)]` and `#[derive(Model)]` expand to. Not public API.
#[doc(hidden)]
pub mod __private {
    use std::borrow::Cow;
    use std::fmt::Display;

    use aiolite_conn::{Error, Result};
    use rusqlite::Statement;

    use crate::decode::Decode;

    pub use sea_query::{Iden, IdenStatic};

    /// The index of column `prefix + name`: exact match first, then ASCII
    /// case-insensitive (as SQLite compares names). `None` only when
    /// `optional` (a field with a default).
    pub fn column(
        stmt: &Statement<'_>,
        prefix: &str,
        name: &str,
        optional: bool,
    ) -> Result<Option<usize>> {
        let matches = |c: &str, eq: fn(&str, &str) -> bool| {
            c.len() == prefix.len() + name.len()
                && c.is_char_boundary(prefix.len())
                && eq(&c[..prefix.len()], prefix)
                && eq(&c[prefix.len()..], name)
        };
        let found = stmt
            .column_names()
            .position(|c| matches(c, |a, b| a == b))
            .or_else(|| {
                stmt.column_names()
                    .position(|c| matches(c, |a, b| a.eq_ignore_ascii_case(b)))
            });
        match found {
            Some(i) => Ok(Some(i)),
            None if optional => Ok(None),
            None => Err(Error::ColumnNotFound(format!("{prefix}{name}"))),
        }
    }

    /// `prefix + more`, for a flattened field's own prefix.
    pub fn join(prefix: &str, more: &str) -> String {
        let mut s = String::with_capacity(prefix.len() + more.len());
        s.push_str(prefix);
        s.push_str(more);
        s
    }

    /// Reads a planned column into a field.
    #[inline]
    pub fn get<T: Decode>(
        row: &rusqlite::Row<'_>,
        index: Option<usize>,
        field: &'static str,
    ) -> Result<T> {
        match index {
            Some(i) => super::get(row, i, Some(field)),
            // The plan only leaves out fields with a default.
            None => Err(Error::ColumnNotFound(field.to_owned())),
        }
    }

    /// Reads a column as `S`, then converts it with `TryFrom`; a failed
    /// conversion is a decode error of the field that shows the value
    /// (`INTEGER 300 (out of range ...)`).
    #[inline]
    pub fn try_get<S: Decode, T: TryFrom<S>>(
        row: &rusqlite::Row<'_>,
        index: Option<usize>,
        field: &'static str,
    ) -> Result<T>
    where
        T::Error: Display,
    {
        let source: S = get(row, index, field)?;
        T::try_from(source).map_err(|e| {
            let i = index.unwrap_or_default();
            let found = match row.get_ref(i) {
                Ok(v) => format!("{} ({e})", shown(v)),
                Err(_) => e.to_string(),
            };
            super::decode_error::<T>(row, i, Some(field), found)
        })
    }

    /// A stored value as an error shows it: its class and the value, long
    /// text and blobs shortened.
    fn shown(value: rusqlite::types::ValueRef<'_>) -> String {
        use rusqlite::types::ValueRef;
        match value {
            ValueRef::Null => "NULL".to_owned(),
            ValueRef::Integer(i) => format!("INTEGER {i}"),
            ValueRef::Real(f) => format!("REAL {f:?}"),
            ValueRef::Text(t) => {
                let text = String::from_utf8_lossy(t);
                match text.char_indices().nth(40) {
                    Some((cut, _)) => format!("TEXT {:?}...", &text[..cut]),
                    None => format!("TEXT {text:?}"),
                }
            }
            ValueRef::Blob(b) => format!("BLOB of {} bytes", b.len()),
        }
    }

    /// Converts a value read for a field (a flattened struct, JSON) with
    /// `TryFrom`; a failure is a decode error of the field.
    #[inline]
    pub fn convert<S, T: TryFrom<S>>(source: S, field: &'static str) -> Result<T>
    where
        T::Error: Display,
    {
        T::try_from(source).map_err(|e| Error::Decode {
            index: 0,
            column: "(the field's columns)".to_owned(),
            field: Some(field.to_owned()),
            expected: std::any::type_name::<T>(),
            found: e.to_string(),
        })
    }

    /// A nested type's error, with the field path from the outer struct:
    /// `Author.name` read for `Post.author` becomes `Post.author.name`.
    pub fn nested(e: Error, outer: &'static str) -> Error {
        match e {
            Error::Decode {
                index,
                column,
                field,
                expected,
                found,
            } => {
                let path = match field.as_deref().and_then(|f| f.split_once('.')) {
                    Some((_, rest)) => format!("{outer}.{rest}"),
                    None => outer.to_owned(),
                };
                Error::Decode {
                    index,
                    column,
                    field: Some(path),
                    expected,
                    found,
                }
            }
            other => other,
        }
    }

    /// A flattened type's plan, or `None` when its columns are missing (the
    /// field then takes its default, as sqlx falls back on ColumnNotFound).
    pub fn optional_plan<P>(plan: Result<P>) -> Result<Option<P>> {
        match plan {
            Ok(p) => Ok(Some(p)),
            Err(Error::ColumnNotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// A tuple struct's check that the row has its columns.
    pub fn width(stmt: &Statement<'_>, needed: usize) -> Result<()> {
        super::check_width(stmt, needed)
    }

    /// Whether a planned column is NULL (a missing one counts as NULL).
    #[inline]
    pub fn is_null(row: &rusqlite::Row<'_>, index: Option<usize>) -> bool {
        index.is_none_or(|i| super::is_null_at(row, i))
    }

    /// How sea-query should print an identifier: as is when it needs no
    /// quoting, escaped (`"` doubled) otherwise.
    pub fn quoted(name: &'static str) -> Cow<'static, str> {
        if sea_query::is_static_iden(name) {
            Cow::Borrowed(name)
        } else {
            Cow::Owned(name.to_owned())
        }
    }
}
