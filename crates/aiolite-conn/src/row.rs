//! Owned rows: what crosses from the worker thread to the caller.

use std::fmt;
use std::sync::Arc;

use rusqlite::types::{FromSql, FromSqlError, ValueRef};

use crate::error::{Error, Result};

/// A result column: its name and declared type (Python's `cursor.description`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    name: String,
    decl_type: Option<String>,
}

impl Column {
    /// The column's name (`AS` alias or expression text).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The declared type of a table column (`"INTEGER"`, `"TEXT"`, ...);
    /// `None` for an expression.
    pub fn decl_type(&self) -> Option<&str> {
        self.decl_type.as_deref()
    }
}

/// The columns of one statement, shared by all its rows.
pub(crate) type Columns = Arc<[Column]>;

pub(crate) fn columns_of(stmt: &rusqlite::Statement<'_>) -> Columns {
    stmt.columns()
        .into_iter()
        .map(|c| Column {
            name: c.name().to_owned(),
            decl_type: c.decl_type().map(str::to_owned),
        })
        .collect()
}

/// One value as SQLite returned it. Text is kept as bytes that were checked to
/// be UTF-8 or not, so a bad text value is an error on read, never a panic at
/// fetch (rusqlite's `Value::from(ValueRef)` panics on invalid UTF-8).
#[derive(Clone, PartialEq)]
enum Cell {
    Null,
    Integer(i64),
    Real(f64),
    Text(Box<str>),
    InvalidText(Box<[u8]>),
    Blob(Box<[u8]>),
}

impl Cell {
    fn from_ref(v: ValueRef<'_>) -> Cell {
        match v {
            ValueRef::Null => Cell::Null,
            ValueRef::Integer(i) => Cell::Integer(i),
            ValueRef::Real(r) => Cell::Real(r),
            ValueRef::Text(t) => match std::str::from_utf8(t) {
                Ok(s) => Cell::Text(s.into()),
                Err(_) => Cell::InvalidText(t.into()),
            },
            ValueRef::Blob(b) => Cell::Blob(b.into()),
        }
    }

    fn as_ref(&self) -> ValueRef<'_> {
        match self {
            Cell::Null => ValueRef::Null,
            Cell::Integer(i) => ValueRef::Integer(*i),
            Cell::Real(r) => ValueRef::Real(*r),
            Cell::Text(s) => ValueRef::Text(s.as_bytes()),
            Cell::InvalidText(b) => ValueRef::Text(b),
            Cell::Blob(b) => ValueRef::Blob(b),
        }
    }

    fn type_name(&self) -> &'static str {
        match self {
            Cell::Null => "NULL",
            Cell::Integer(_) => "INTEGER",
            Cell::Real(_) => "REAL",
            Cell::Text(_) | Cell::InvalidText(_) => "TEXT",
            Cell::Blob(_) => "BLOB",
        }
    }
}

/// An owned result row: its values and the (shared) column names.
///
/// Read a value by index or by name with [`Row::get`]; any
/// [`FromSql`] type works (`i64`, `String`, `Option<T>`, `Vec<u8>`,
/// [`Value`](rusqlite::types::Value), ...).
///
/// ```
/// # async fn demo(conn: aiolite_conn::Connection) -> aiolite_conn::Result<()> {
/// let row = conn.fetch_one("SELECT 1 AS id, 'Alice' AS name", ()).await?;
/// let id: i64 = row.get(0)?;
/// let name: String = row.get("name")?;
/// assert_eq!(row.columns()[1].name(), "name");
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Row {
    columns: Columns,
    cells: Box<[Cell]>,
}

impl Row {
    pub(crate) fn from_rusqlite(row: &rusqlite::Row<'_>, columns: &Columns) -> Result<Row> {
        let cells = (0..columns.len())
            .map(|i| row.get_ref(i).map(Cell::from_ref))
            .collect::<rusqlite::Result<Box<[Cell]>>>()?;
        Ok(Row {
            columns: Arc::clone(columns),
            cells,
        })
    }

    /// The value of a column, converted to `T`.
    ///
    /// # Errors
    /// [`Error::ColumnNotFound`] / [`Error::ColumnIndexOutOfRange`] for a bad
    /// index; [`Error::Decode`] naming the column, the Rust type and the SQLite
    /// type found when the value does not convert (a NULL into `i64`, an
    /// integer out of `u8`'s range, invalid UTF-8 into `String`, ...).
    pub fn get<T: FromSql, I: RowIndex>(&self, index: I) -> Result<T> {
        let i = index.index(self)?;
        let cell = &self.cells[i];
        if let Cell::InvalidText(_) = cell {
            return Err(self.decode_error::<T>(i, "TEXT that is not valid UTF-8".to_owned()));
        }
        T::column_result(cell.as_ref()).map_err(|e| {
            let found = match e {
                FromSqlError::InvalidType => cell.type_name().to_owned(),
                FromSqlError::OutOfRange(v) => format!("INTEGER {v}, out of range"),
                FromSqlError::InvalidBlobSize {
                    expected_size,
                    blob_size,
                } => format!("BLOB of {blob_size} bytes, {expected_size} expected"),
                other => format!("{} ({other})", cell.type_name()),
            };
            self.decode_error::<T>(i, found)
        })
    }

    fn decode_error<T>(&self, index: usize, found: String) -> Error {
        Error::Decode {
            index,
            column: self.columns[index].name.clone(),
            expected: std::any::type_name::<T>(),
            found,
        }
    }

    /// The raw value of a column, borrowed.
    ///
    /// # Errors
    /// A bad index.
    pub fn get_ref<I: RowIndex>(&self, index: I) -> Result<ValueRef<'_>> {
        let i = index.index(self)?;
        Ok(self.cells[i].as_ref())
    }

    /// The result's columns: names and declared types.
    pub fn columns(&self) -> &[Column] {
        &self.columns
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        self.cells.len()
    }

    /// `true` for a row of no columns.
    pub fn is_empty(&self) -> bool {
        self.cells.is_empty()
    }

    /// The values in column order.
    pub fn values(&self) -> impl ExactSizeIterator<Item = ValueRef<'_>> + '_ {
        self.cells.iter().map(Cell::as_ref)
    }
}

impl fmt::Debug for Row {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut m = f.debug_map();
        for (c, v) in self.columns.iter().zip(self.cells.iter()) {
            m.entry(&c.name, &v.as_ref());
        }
        m.finish()
    }
}

impl PartialEq for Row {
    fn eq(&self, other: &Row) -> bool {
        self.cells == other.cells
            && (Arc::ptr_eq(&self.columns, &other.columns) || self.columns == other.columns)
    }
}

/// A way to name a column of a [`Row`]: its index (`usize`) or its name (`&str`,
/// matched ASCII-case-insensitively, as SQLite does).
pub trait RowIndex: sealed::Sealed {
    #[doc(hidden)]
    fn index(&self, row: &Row) -> Result<usize>;
}

impl RowIndex for usize {
    fn index(&self, row: &Row) -> Result<usize> {
        if *self < row.cells.len() {
            Ok(*self)
        } else {
            Err(Error::ColumnIndexOutOfRange {
                index: *self,
                len: row.cells.len(),
            })
        }
    }
}

impl RowIndex for &str {
    fn index(&self, row: &Row) -> Result<usize> {
        row.columns
            .iter()
            .position(|c| c.name.eq_ignore_ascii_case(self))
            .ok_or_else(|| Error::ColumnNotFound((*self).to_owned()))
    }
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for usize {}
    impl Sealed for &str {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(sql: &str) -> Row {
        let conn = rusqlite::Connection::open_in_memory().expect("open");
        let mut stmt = conn.prepare(sql).expect("prepare");
        let columns = columns_of(&stmt);
        let mut rows = stmt.query([]).expect("query");
        let r = rows.next().expect("step").expect("a row");
        Row::from_rusqlite(r, &columns).expect("decode")
    }

    #[test]
    fn get_by_index_and_name() {
        let r = row("SELECT 1 AS id, 'x' AS Name, NULL AS n, x'00ff' AS b, 2.5 AS f");
        assert_eq!(r.get::<i64, _>(0).expect("id"), 1);
        assert_eq!(r.get::<String, _>("name").expect("name"), "x");
        assert_eq!(r.get::<Option<i64>, _>("n").expect("n"), None);
        assert_eq!(r.get::<Vec<u8>, _>("b").expect("b"), vec![0, 255]);
        assert_eq!(r.get::<f64, _>(4).expect("f"), 2.5);
        assert_eq!(r.len(), 5);
    }

    #[test]
    fn decode_errors_name_column_and_types() {
        let r = row("SELECT NULL AS age, 300 AS small, CAST(x'ff' AS TEXT) AS bad");
        let e = r.get::<i64, _>("age").expect_err("null into i64");
        match &e {
            Error::Decode {
                index,
                column,
                expected,
                found,
            } => {
                assert_eq!((*index, column.as_str(), *expected), (0, "age", "i64"));
                assert_eq!(found, "NULL");
            }
            other => panic!("unexpected {other:?}"),
        }
        let e = r.get::<u8, _>("small").expect_err("300 into u8");
        assert!(e.to_string().contains("out of range"), "{e}");
        let e = r.get::<String, _>("bad").expect_err("bad utf8");
        assert!(e.to_string().contains("UTF-8"), "{e}");
        // rusqlite's Value conversion would panic here; ours is an error.
        let e = r
            .get::<rusqlite::types::Value, _>("bad")
            .expect_err("bad utf8");
        assert!(matches!(e, Error::Decode { .. }));
        assert!(matches!(
            r.get::<i64, _>("nope"),
            Err(Error::ColumnNotFound(_))
        ));
        assert!(matches!(
            r.get::<i64, _>(9),
            Err(Error::ColumnIndexOutOfRange { index: 9, len: 3 })
        ));
    }
}
