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
        .map(|c| Column {
            name: c.name().to_owned(),
            decl_type: c.decl_type().map(str::to_owned),
        })
        .collect()
}

/// Where one value of a [`Block`] lives. Text and blob bytes are in the
/// block's shared byte buffer. Text is checked for UTF-8 when it is read
/// (see [`Row::get`]), on the caller's thread rather than on the worker, which
/// is the busier of the two in a scan.
#[derive(Clone, Copy, PartialEq)]
enum Cell {
    Null,
    Integer(i64),
    Real(f64),
    Text { start: usize, len: usize },
    Blob { start: usize, len: usize },
}

impl Cell {
    fn type_name(&self) -> &'static str {
        match self {
            Cell::Null => "NULL",
            Cell::Integer(_) => "INTEGER",
            Cell::Real(_) => "REAL",
            Cell::Text { .. } => "TEXT",
            Cell::Blob { .. } => "BLOB",
        }
    }
}

/// The values of a run of rows (a stream chunk, or a whole `fetch_all`)
/// stored in two allocations: rows cross from the worker with no allocation
/// per row or per value, and are freed in one go.
struct Block {
    columns: Columns,
    cells: Vec<Cell>,
    bytes: Vec<u8>,
}

impl Block {
    /// Bytes a block without a size hint starts with, at its first text or
    /// blob: a typical row's text fits, where growing from nothing took three
    /// reallocations for W1's row of three short strings.
    const FIRST_BYTES: usize = 256;

    /// Appends `b` to the byte buffer: where it starts.
    fn put(&mut self, b: &[u8]) -> usize {
        let start = self.bytes.len();
        if self.bytes.capacity() == 0 {
            self.bytes.reserve(b.len().max(Block::FIRST_BYTES));
        }
        self.bytes.extend_from_slice(b);
        start
    }

    fn value(&self, cell: usize) -> ValueRef<'_> {
        match self.cells[cell] {
            Cell::Null => ValueRef::Null,
            Cell::Integer(i) => ValueRef::Integer(i),
            Cell::Real(r) => ValueRef::Real(r),
            Cell::Text { start, len, .. } => ValueRef::Text(&self.bytes[start..start + len]),
            Cell::Blob { start, len } => ValueRef::Blob(&self.bytes[start..start + len]),
        }
    }
}

/// Collects rows on the worker into one [`Block`].
pub(crate) struct RowsBuilder {
    block: Block,
    rows: usize,
}

impl RowsBuilder {
    pub(crate) fn new(columns: Columns) -> RowsBuilder {
        RowsBuilder::with_capacity(columns, 0, 0)
    }

    /// Room for `rows` rows and `bytes` bytes of text and blobs up front: a
    /// stream's chunks are alike, and growing the buffers row by row would
    /// copy them over and over.
    pub(crate) fn with_capacity(columns: Columns, rows: usize, bytes: usize) -> RowsBuilder {
        RowsBuilder {
            block: Block {
                cells: Vec::with_capacity(rows * columns.len()),
                bytes: Vec::with_capacity(bytes),
                columns,
            },
            rows: 0,
        }
    }

    /// The bytes of text and blobs collected so far.
    pub(crate) fn payload(&self) -> usize {
        self.block.bytes.len()
    }

    /// The memory the rows collected so far take.
    pub(crate) fn footprint(&self) -> usize {
        self.block.bytes.len() + self.block.cells.len() * std::mem::size_of::<Cell>()
    }

    pub(crate) fn push(&mut self, row: &rusqlite::Row<'_>) -> rusqlite::Result<()> {
        let block = &mut self.block;
        for i in 0..block.columns.len() {
            let cell = match row.get_ref(i)? {
                ValueRef::Null => Cell::Null,
                ValueRef::Integer(v) => Cell::Integer(v),
                ValueRef::Real(v) => Cell::Real(v),
                ValueRef::Text(t) => Cell::Text {
                    start: block.put(t),
                    len: t.len(),
                },
                ValueRef::Blob(b) => Cell::Blob {
                    start: block.put(b),
                    len: b.len(),
                },
            };
            block.cells.push(cell);
        }
        self.rows += 1;
        Ok(())
    }

    pub(crate) fn len(&self) -> usize {
        self.rows
    }

    /// The first row alone, without the list `finish` allocates.
    pub(crate) fn finish_first(self) -> Option<Row> {
        (self.rows > 0).then(|| Row {
            block: Arc::new(self.block),
            start: 0,
        })
    }

    pub(crate) fn finish(self) -> Vec<Row> {
        let width = self.block.columns.len();
        let block = Arc::new(self.block);
        (0..self.rows)
            .map(|r| Row {
                block: Arc::clone(&block),
                start: r * width,
            })
            .collect()
    }
}

/// An owned result row: its values and the (shared) column names.
///
/// Read a value by index or by name with [`Row::get`]; any
/// [`FromSql`] type works (`i64`, `String`, `Option<T>`, `Vec<u8>`,
/// [`Value`](rusqlite::types::Value), ...). Rows fetched together share one
/// buffer: a `Row` is a reference-counted pointer into it, cheap to clone.
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
    block: Arc<Block>,
    start: usize,
}

impl Row {
    /// The columns of a statement, for [`Row::__copy_of`]. For the typed
    /// layer's `FromRow for Row`.
    #[doc(hidden)]
    pub fn __columns_of(stmt: &rusqlite::Statement<'_>) -> Arc<[Column]> {
        columns_of(stmt)
    }

    /// Copies the current row of a running statement into an owned `Row`.
    #[doc(hidden)]
    pub fn __copy_of(row: &rusqlite::Row<'_>, columns: &Arc<[Column]>) -> Result<Row> {
        let mut builder = RowsBuilder::new(Arc::clone(columns));
        builder.push(row)?;
        builder
            .finish()
            .pop()
            .ok_or(Error::ColumnIndexOutOfRange { index: 0, len: 0 })
    }

    /// The room its block's buffers hold: cells, and text and blob bytes.
    #[cfg(test)]
    pub(crate) fn block_capacity(&self) -> (usize, usize) {
        (self.block.cells.capacity(), self.block.bytes.capacity())
    }

    fn cell(&self, i: usize) -> &Cell {
        &self.block.cells[self.start + i]
    }

    /// The value of a column, converted to `T`. The type parameters are in
    /// rusqlite's order, so a turbofish reads the same on both rows:
    /// `row.get::<_, i64>(0)`.
    ///
    /// # Errors
    /// [`Error::ColumnNotFound`] / [`Error::ColumnIndexOutOfRange`] for a bad
    /// index; [`Error::Decode`] naming the column, the Rust type and the SQLite
    /// type found when the value does not convert (a NULL into `i64`, an
    /// integer out of `u8`'s range, invalid UTF-8 into `String`, ...).
    pub fn get<I: RowIndex, T: FromSql>(&self, index: I) -> Result<T> {
        let i = index.index(self)?;
        let cell = self.cell(i);
        let value = self.block.value(self.start + i);
        // The text's UTF-8 is checked once, by the conversion itself: every
        // rusqlite 0.41 conversion of text (`String`, `Value`, chrono's, ...)
        // validates it and answers `Utf8Error`, none panics. A check here as
        // well doubled the cost of reading a string.
        T::column_result(value).map_err(|e| {
            let found = match e {
                FromSqlError::InvalidType => cell.type_name().to_owned(),
                FromSqlError::Utf8Error(_) => "TEXT that is not valid UTF-8".to_owned(),
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
            column: self.block.columns[index].name.clone(),
            field: None,
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
        Ok(self.block.value(self.start + i))
    }

    /// The result's columns: names and declared types.
    pub fn columns(&self) -> &[Column] {
        &self.block.columns
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        self.block.columns.len()
    }

    /// `true` for a row of no columns.
    pub fn is_empty(&self) -> bool {
        self.block.columns.is_empty()
    }

    /// The values in column order.
    pub fn values(&self) -> impl ExactSizeIterator<Item = ValueRef<'_>> + '_ {
        (self.start..self.start + self.len()).map(|c| self.block.value(c))
    }
}

impl fmt::Debug for Row {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut m = f.debug_map();
        for (c, v) in self.columns().iter().zip(self.values()) {
            m.entry(&c.name, &DebugValue(v));
        }
        m.finish()
    }
}

/// Shows text as text, not as the bytes `ValueRef`'s own `Debug` prints.
struct DebugValue<'a>(ValueRef<'a>);

impl fmt::Debug for DebugValue<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            ValueRef::Text(t) => match std::str::from_utf8(t) {
                Ok(s) => f.debug_tuple("Text").field(&s).finish(),
                Err(_) => f.debug_tuple("InvalidText").field(&t).finish(),
            },
            other => other.fmt(f),
        }
    }
}

impl PartialEq for Row {
    fn eq(&self, other: &Row) -> bool {
        self.columns() == other.columns() && self.values().eq(other.values())
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
        if *self < row.len() {
            Ok(*self)
        } else {
            Err(Error::ColumnIndexOutOfRange {
                index: *self,
                len: row.len(),
            })
        }
    }
}

impl RowIndex for &str {
    fn index(&self, row: &Row) -> Result<usize> {
        row.columns()
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
        let mut builder = RowsBuilder::new(columns_of(&stmt));
        let mut rows = stmt.query([]).expect("query");
        builder
            .push(rows.next().expect("step").expect("a row"))
            .expect("decode");
        builder.finish().pop().expect("one row")
    }

    #[test]
    fn get_by_index_and_name() {
        let r = row("SELECT 1 AS id, 'x' AS Name, NULL AS n, x'00ff' AS b, 2.5 AS f");
        assert_eq!(r.get::<_, i64>(0).expect("id"), 1);
        assert_eq!(r.get::<_, String>("name").expect("name"), "x");
        assert_eq!(r.get::<_, Option<i64>>("n").expect("n"), None);
        assert_eq!(r.get::<_, Vec<u8>>("b").expect("b"), vec![0, 255]);
        assert_eq!(r.get::<_, f64>(4).expect("f"), 2.5);
        assert_eq!(r.len(), 5);
    }

    #[test]
    fn decode_errors_name_column_and_types() {
        let r = row("SELECT NULL AS age, 300 AS small, CAST(x'ff' AS TEXT) AS bad");
        let e = r.get::<_, i64>("age").expect_err("null into i64");
        match &e {
            Error::Decode {
                index,
                column,
                field,
                expected,
                found,
            } => {
                assert_eq!(*field, None, "a Row has no struct fields");
                assert_eq!((*index, column.as_str(), *expected), (0, "age", "i64"));
                assert_eq!(found, "NULL");
            }
            other => panic!("unexpected {other:?}"),
        }
        let e = r.get::<_, u8>("small").expect_err("300 into u8");
        assert!(e.to_string().contains("out of range"), "{e}");
        let e = r.get::<_, String>("bad").expect_err("bad utf8");
        assert!(e.to_string().contains("UTF-8"), "{e}");
        // Older rusqlite panicked here; this must stay an error.
        let e = r
            .get::<_, rusqlite::types::Value>("bad")
            .expect_err("bad utf8");
        assert!(matches!(e, Error::Decode { .. }));
        assert!(matches!(
            r.get::<_, i64>("nope"),
            Err(Error::ColumnNotFound(_))
        ));
        assert!(matches!(
            r.get::<_, i64>(9),
            Err(Error::ColumnIndexOutOfRange { index: 9, len: 3 })
        ));
    }
}
