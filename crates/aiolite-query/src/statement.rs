//! sea-query statements, built for SQLite and bound as parameters.

use aiolite_conn::{Error, Params, Result};
use rusqlite::Statement as RawStatement;
use sea_query::{
    DeleteStatement, InsertStatement, SelectStatement, SqliteQueryBuilder, UpdateStatement, Values,
    WithQuery,
};

use crate::bind::Bound;

/// A sea-query statement that aiolite can run: `SELECT`, `INSERT`, `UPDATE`,
/// `DELETE` and `WITH`, by value or by reference (builder chains hand out
/// `&mut SelectStatement`, which works as is).
///
/// Every value in the statement is bound as a parameter, and identifiers are
/// quoted by sea-query: nothing a user typed reaches the SQL text.
///
/// ```
/// use aiolite_query::Statement;
/// use aiolite_query::sea_query::{Expr, ExprTrait, Query};
///
/// let (sql, values) = Query::select()
///     .column("name")
///     .from("users")
///     .and_where(Expr::col("name").eq("' OR 1=1 --"))
///     .to_sql();
/// assert_eq!(sql, r#"SELECT "name" FROM "users" WHERE "name" = ?"#);
/// assert_eq!(values.len(), 1);
/// ```
pub trait Statement {
    /// The SQL text for SQLite and its parameters.
    fn to_sql(&self) -> (String, SqlValues);
}

macro_rules! statement {
    ($($t:ty),*) => {$(
        impl Statement for $t {
            fn to_sql(&self) -> (String, SqlValues) {
                let (sql, values) = self.build(SqliteQueryBuilder);
                (sql, SqlValues(values.0))
            }
        }
    )*};
}

statement!(
    SelectStatement,
    InsertStatement,
    UpdateStatement,
    DeleteStatement,
    WithQuery
);

impl<T: Statement + ?Sized> Statement for &T {
    fn to_sql(&self) -> (String, SqlValues) {
        (**self).to_sql()
    }
}

impl<T: Statement + ?Sized> Statement for &mut T {
    fn to_sql(&self) -> (String, SqlValues) {
        (**self).to_sql()
    }
}

/// The parameters of a built statement, in order: usable wherever
/// [`Params`] are (`conn.fetch_all(sql, values)`).
///
/// Each sea-query value is stored as:
///
/// | sea-query value | stored as |
/// |---|---|
/// | `Bool` | INTEGER 0 or 1 |
/// | the signed integers, `u8`, `u16`, `u32` | INTEGER |
/// | `BigUnsigned` (u64) | INTEGER; above `i64::MAX` an error, never a wrapped negative |
/// | `Float`, `Double` | REAL |
/// | `String`, `Char`, `Enum` | TEXT |
/// | `Bytes` | BLOB |
/// | `Uuid` (`uuid` feature) | BLOB of its 16 bytes |
/// | `ChronoDate` (`chrono` feature) | TEXT `YYYY-MM-DD` |
/// | `ChronoTime` | TEXT `HH:MM:SS[.fff]` |
/// | `ChronoDateTime` | TEXT `YYYY-MM-DD HH:MM:SS[.fff]` |
/// | `ChronoDateTime{Utc,Local,WithTimeZone}` | TEXT `YYYY-MM-DD HH:MM:SS[.fff]+HH:MM` |
/// | `Json` (`serde_json` feature) | JSON `null` as NULL, an integer as INTEGER, a float as REAL, anything else as its JSON text |
/// | any `None` | NULL |
///
/// Value kinds that only other crates' sea-query features bring (time, jiff,
/// decimals) have no form here and fail when bound, with an error that says
/// to convert them first.
///
/// ```
/// use aiolite_query::SqlValues;
/// use aiolite_query::sea_query::{Expr, ExprTrait, Query, SqliteQueryBuilder};
///
/// let (sql, values) = Query::select()
///     .column("name")
///     .from("users")
///     .and_where(Expr::col("id").eq(7))
///     .build(SqliteQueryBuilder);
/// let values = SqlValues::new(values);
/// assert_eq!(values.len(), 1);
/// # let _ = sql;
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct SqlValues(pub(crate) Vec<sea_query::Value>);

impl SqlValues {
    /// Wraps the values of a statement built with sea-query's own
    /// `build(SqliteQueryBuilder)`.
    pub fn new(values: Values) -> SqlValues {
        SqlValues(values.0)
    }

    pub(crate) fn from_values(values: Vec<sea_query::Value>) -> SqlValues {
        SqlValues(values)
    }

    /// How many values.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Params for SqlValues {
    fn bind(&self, stmt: &mut RawStatement<'_>) -> Result<()> {
        let expected = stmt.parameter_count();
        let given = self.len();
        if expected != given {
            return Err(Error::ParameterCount {
                expected,
                given,
                sql: None,
            });
        }
        self.bind_at(stmt, 0)
    }

    fn positional_len(&self) -> Option<usize> {
        Some(self.len())
    }

    fn bind_at(&self, stmt: &mut RawStatement<'_>, offset: usize) -> Result<()> {
        for (i, v) in self.0.iter().enumerate() {
            stmt.raw_bind_parameter(offset + i + 1, Bound(v))?;
        }
        Ok(())
    }
}
