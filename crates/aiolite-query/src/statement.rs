//! sea-query statements, built for SQLite and bound as parameters.

use aiolite_conn::{Error, Params, Result};
use rusqlite::Statement as RawStatement;
use sea_query::{
    DeleteStatement, InsertStatement, SelectStatement, SqliteQueryBuilder, UpdateStatement,
    WithQuery,
};
use sea_query_rusqlite::{RusqliteBinder, RusqliteValues};

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
                let (sql, values) = self.build_rusqlite(SqliteQueryBuilder);
                (sql, SqlValues(values))
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
#[derive(Debug, Clone, PartialEq)]
pub struct SqlValues(pub(crate) RusqliteValues);

impl SqlValues {
    /// Wraps values built with sea-query's rusqlite binder.
    pub fn new(values: RusqliteValues) -> SqlValues {
        SqlValues(values)
    }

    pub(crate) fn from_values(values: Vec<sea_query::Value>) -> SqlValues {
        SqlValues(RusqliteValues(
            values
                .into_iter()
                .map(sea_query_rusqlite::RusqliteValue)
                .collect(),
        ))
    }

    /// How many values.
    pub fn len(&self) -> usize {
        self.0 .0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0 .0.is_empty()
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
        for (i, v) in self.0 .0.iter().enumerate() {
            stmt.raw_bind_parameter(i + 1, v)?;
        }
        Ok(())
    }
}
