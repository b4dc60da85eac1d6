//! `dump()`: the database as SQL text, line for line what Python 3.11's
//! `sqlite3.Connection.iterdump()` writes (Lib/sqlite3/dump.py), streamed.

use std::collections::VecDeque;
use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_core::Stream;
use futures_util::stream::{self, BoxStream, StreamExt};
use rusqlite::types::Value;

use crate::channel::Channel;
use crate::connection::Connection;
use crate::error::{Error, Result};
use crate::stream::RowStream;
use crate::transaction::Transaction;
use crate::worker::Decoded;

/// The lines of [`Connection::dump`]: `BEGIN TRANSACTION;`, each table's
/// `CREATE` statement followed by one `INSERT` per row, the indexes, triggers
/// and views, the `sqlite_sequence` counters, and `COMMIT;`.
#[must_use = "streams do nothing unless polled"]
pub struct Dump {
    inner: BoxStream<'static, Result<String>>,
}

impl fmt::Debug for Dump {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dump").finish_non_exhaustive()
    }
}

impl Stream for Dump {
    type Item = Result<String>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<String>>> {
        self.inner.poll_next_unpin(cx)
    }
}

/// Where the dump stands between two lines.
struct State {
    conn: Connection,
    /// The read transaction that gives the dump one snapshot, once begun.
    tx: Option<Transaction>,
    pending: VecDeque<String>,
    /// Tables still to dump: (name, CREATE statement).
    tables: VecDeque<(String, String)>,
    rows: Option<RowStream<String>>,
    sequence: Vec<String>,
    writable_schema: bool,
    phase: Phase,
}

#[derive(PartialEq, Eq)]
enum Phase {
    Start,
    Tables,
    Done,
}

/// An identifier inside `"..."`.
fn ident(name: &str) -> String {
    name.replace('"', "\"\"")
}

/// Cell `i` of a dumped row: `quote()`'s text, or a REAL zero, written with
/// its sign so that `-0.0` restores as `-0.0` (Python writes `0.0`).
fn cell<'r>(row: &'r rusqlite::Row<'_>, i: usize) -> rusqlite::Result<&'r str> {
    use rusqlite::types::{Type, ValueRef};
    match row.get_ref(i)? {
        ValueRef::Text(t) => std::str::from_utf8(t)
            .map_err(|e| rusqlite::Error::FromSqlConversionFailure(i, Type::Text, Box::new(e))),
        ValueRef::Real(z) if z.is_sign_negative() => Ok("-0.0"),
        ValueRef::Real(_) => Ok("0.0"),
        other => Err(rusqlite::Error::InvalidColumnType(
            i,
            "a dumped value".to_owned(),
            other.data_type(),
        )),
    }
}

/// A `sqlite_sequence` counter as Python writes it (its `str()`), where that
/// is SQL: an integer, or a REAL in Python's float repr (`5.0`, `1e+16`).
/// Counters Python would write as broken SQL (`None`, text, bytes) are
/// written as SQL literals instead.
fn sequence_value(v: &Value) -> String {
    match v {
        Value::Null => "NULL".to_owned(),
        Value::Integer(i) => i.to_string(),
        // Python writes `inf`, which SQL reads as a name.
        Value::Real(f) if f.is_infinite() => if *f > 0.0 { "9e999" } else { "-9e999" }.to_owned(),
        Value::Real(f) => python_float(*f),
        Value::Text(s) => format!("'{}'", s.replace('\'', "''")),
        Value::Blob(b) => {
            let hex: String = b.iter().map(|byte| format!("{byte:02X}")).collect();
            format!("X'{hex}'")
        }
    }
}

/// Python's `repr()` of a float: the shortest digits that round-trip, in
/// positional form for exponents from -4 to 15 (`5.0`, `0.0001`), else
/// scientific with a signed, two-digit exponent (`1e+16`, `1.5e-07`).
fn python_float(f: f64) -> String {
    if f.is_nan() {
        return "nan".to_owned();
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf" } else { "-inf" }.to_owned();
    }
    // `{:e}` gives the shortest round-trip digits: `-1.2345e-7`.
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    if (-4..16).contains(&exp) {
        // Digits before the decimal point (none or negative: leading zeros).
        let point = exp + 1;
        let text = if point <= 0 {
            format!("0.{}{digits}", "0".repeat(point.unsigned_abs() as usize))
        } else if point.unsigned_abs() as usize >= digits.len() {
            let zeros = point.unsigned_abs() as usize - digits.len();
            format!("{digits}{}.0", "0".repeat(zeros))
        } else {
            let (int, frac) = digits.split_at(point.unsigned_abs() as usize);
            format!("{int}.{frac}")
        };
        format!("{sign}{text}")
    } else {
        let (first, rest) = digits.split_at(1.min(digits.len()));
        let mantissa = if rest.is_empty() {
            first.to_owned()
        } else {
            format!("{first}.{rest}")
        };
        let exp_sign = if exp < 0 { '-' } else { '+' };
        format!("{sign}{mantissa}e{exp_sign}{:02}", exp.unsigned_abs())
    }
}

impl State {
    fn channel(&self) -> &Channel {
        match &self.tx {
            Some(tx) => tx.channel(),
            None => self.conn.channel(),
        }
    }

    async fn texts(&mut self, sql: &'static str) -> Result<Vec<Vec<Value>>> {
        self.channel()
            .clone()
            .run(move |w| {
                w.fetch_map(sql, &(), |row| {
                    (0..row.as_ref().column_count())
                        .map(|i| row.get::<_, Value>(i))
                        .collect::<rusqlite::Result<Vec<_>>>()
                })
            })
            .await
    }

    async fn start(&mut self) -> Result<()> {
        // One read transaction for the whole dump, so it is one snapshot, as
        // long as the connection is not inside a transaction already.
        if !self.conn.in_transaction().await? {
            self.tx = Some(self.conn.begin().await?);
        }
        self.pending.push_back("BEGIN TRANSACTION;".to_owned());
        let tables = self
            .texts(
                r#"SELECT "name", "sql" FROM "sqlite_master" WHERE "sql" NOT NULL AND "type" == 'table' ORDER BY "name""#,
            )
            .await?;
        for row in tables {
            if let [Value::Text(name), Value::Text(sql)] = &row[..] {
                self.tables.push_back((name.clone(), sql.clone()));
            }
        }
        self.phase = Phase::Tables;
        Ok(())
    }

    /// Queues the next table's lines; `false` when none is left.
    async fn next_table(&mut self) -> Result<bool> {
        let Some((name, sql)) = self.tables.pop_front() else {
            return Ok(false);
        };
        if name == "sqlite_sequence" {
            let rows = self.texts(r#"SELECT * FROM "sqlite_sequence";"#).await?;
            self.sequence
                .push(r#"DELETE FROM "sqlite_sequence";"#.to_owned());
            for row in rows {
                let cells: Vec<String> = row.iter().map(sequence_value).collect();
                let (table, seq) = match (&row[..], &cells[..]) {
                    ([Value::Text(t), ..], [_, s, ..]) => (t.as_str(), s.as_str()),
                    _ => continue,
                };
                // As below, a `'` in the name is doubled where Python breaks.
                let table = table.replace('\'', "''");
                self.sequence.push(format!(
                    r#"INSERT INTO "sqlite_sequence" VALUES('{table}',{seq});"#
                ));
            }
            return Ok(true);
        } else if name == "sqlite_stat1" {
            self.pending
                .push_back(r#"ANALYZE "sqlite_master";"#.to_owned());
        } else if name.starts_with("sqlite_") {
            return Ok(true);
        } else if sql.starts_with("CREATE VIRTUAL TABLE") {
            if !self.writable_schema {
                self.writable_schema = true;
                self.pending
                    .push_back("PRAGMA writable_schema=ON;".to_owned());
            }
            self.pending.push_back(format!(
                "INSERT INTO sqlite_master(type,name,tbl_name,rootpage,sql)VALUES('table','{0}','{0}',0,'{1}');",
                name.replace('\'', "''"),
                sql.replace('\'', "''"),
            ));
        } else {
            self.pending.push_back(format!("{sql};"));
        }
        let table = ident(&name);
        let pragma = format!(r#"PRAGMA table_info("{table}")"#);
        let columns: Vec<String> = self
            .channel()
            .clone()
            .run(move |w| w.fetch_map(&pragma, &(), |row| row.get::<_, String>(1)))
            .await?;
        // Python builds each line in SQL from `quote()` of every column.
        // aiolite asks SQLite for the same `quote()` texts and joins them
        // here, except for the two values `quote()` writes lossily: a REAL
        // zero comes back raw (`quote()` drops the sign of -0.0), and a text
        // holding a NUL is written `CAST(X'..' AS TEXT)` (`quote()` stops at
        // the NUL).
        let cells = columns
            .iter()
            .map(|c| {
                let c = ident(c);
                format!(
                    r#"CASE WHEN typeof("{c}") = 'real' AND "{c}" = 0 THEN "{c}" WHEN typeof("{c}") = 'text' AND instr("{c}", char(0)) > 0 THEN 'CAST(X''' || hex("{c}") || ''' AS TEXT)' ELSE quote("{c}") END"#
                )
            })
            .collect::<Vec<_>>()
            .join(",");
        let query = format!(r#"SELECT {cells} FROM "{table}";"#);
        let prefix = format!(r#"INSERT INTO "{table}" VALUES("#);
        let decoder = move |row: &rusqlite::Row<'_>| -> Result<String> {
            let mut line = String::with_capacity(prefix.len() + 64);
            line.push_str(&prefix);
            for i in 0..row.as_ref().column_count() {
                if i > 0 {
                    line.push(',');
                }
                line.push_str(cell(row, i)?);
            }
            line.push_str(");");
            Ok(line)
        };
        self.rows = Some(RowStream::new(
            self.channel().clone(),
            query.into(),
            Box::new(()),
            Box::new(Decoded::new(decoder)),
        ));
        Ok(true)
    }

    async fn finish_tables(&mut self) -> Result<()> {
        let others = self
            .texts(
                r#"SELECT "sql" FROM "sqlite_master" WHERE "sql" NOT NULL AND "type" IN ('index', 'trigger', 'view')"#,
            )
            .await?;
        for row in others {
            if let [Value::Text(sql)] = &row[..] {
                self.pending.push_back(format!("{sql};"));
            }
        }
        if self.writable_schema {
            self.pending
                .push_back("PRAGMA writable_schema=OFF;".to_owned());
        }
        self.pending.extend(self.sequence.drain(..));
        self.pending.push_back("COMMIT;".to_owned());
        if let Some(tx) = self.tx.take() {
            tx.rollback().await?;
        }
        self.phase = Phase::Done;
        Ok(())
    }

    /// The next line, or `None` at the end.
    async fn next_line(&mut self) -> Result<Option<String>> {
        loop {
            if let Some(line) = self.pending.pop_front() {
                return Ok(Some(line));
            }
            if let Some(rows) = self.rows.as_mut() {
                match rows.next().await {
                    Some(line) => return line.map(Some),
                    None => self.rows = None,
                }
                continue;
            }
            match self.phase {
                Phase::Start => self.start().await?,
                Phase::Tables => {
                    if !self.next_table().await? {
                        self.finish_tables().await?;
                    }
                }
                Phase::Done => return Ok(None),
            }
        }
    }
}

/// Runs a dump (`BEGIN TRANSACTION; ... COMMIT;`, from [`Connection::dump`]
/// or Python's `iterdump()`) in one transaction of its own, with the two
/// settings aiolite turns on that a dump does not survive relaxed for the
/// script only:
/// - foreign keys: a dump creates tables in name order, so a child can come
///   before its parent. They are off while the script runs and checked with
///   `PRAGMA foreign_key_check` before COMMIT (when the connection enforces
///   them): a violation rolls the whole restore back.
/// - double-quoted string literals (SQLite's legacy `"..."` strings, off on
///   aiolite connections): a schema written with them (`CHECK (s <> "")`)
///   is accepted again, as the database that held it accepted it.
pub(crate) fn restore(conn: &rusqlite::Connection, script: &str) -> Result<()> {
    use rusqlite::config::DbConfig;
    if !conn.is_autocommit() {
        return Err(Error::TransactionControl(
            "restore_dump runs its own transaction: commit or roll back the open one first",
        ));
    }
    let trimmed = script.trim();
    let body = trimmed
        .strip_prefix("BEGIN TRANSACTION;")
        .and_then(|rest| rest.strip_suffix("COMMIT;"))
        .unwrap_or(trimmed);
    let enforced: bool = conn.query_row("PRAGMA foreign_keys", [], |r| r.get(0))?;
    let ddl = conn.db_config(DbConfig::SQLITE_DBCONFIG_DQS_DDL)?;
    let dml = conn.db_config(DbConfig::SQLITE_DBCONFIG_DQS_DML)?;
    conn.execute_batch("PRAGMA foreign_keys = OFF")?;
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_DQS_DDL, true)?;
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_DQS_DML, true)?;
    let restored = (|| {
        conn.execute_batch("BEGIN IMMEDIATE")?;
        conn.execute_batch(body)
            .map_err(|e| Error::with_sql(e, body))?;
        if enforced {
            check_foreign_keys(conn)?;
        }
        conn.execute_batch("COMMIT")?;
        Ok(())
    })();
    if restored.is_err() && !conn.is_autocommit() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    // The connection's own settings come back whatever happened.
    let put_back = (|| -> Result<()> {
        conn.set_db_config(DbConfig::SQLITE_DBCONFIG_DQS_DDL, ddl)?;
        conn.set_db_config(DbConfig::SQLITE_DBCONFIG_DQS_DML, dml)?;
        if enforced {
            conn.execute_batch("PRAGMA foreign_keys = ON")?;
        }
        Ok(())
    })();
    restored.and(put_back)
}

/// `PRAGMA foreign_key_check`, as an error naming the first violation.
fn check_foreign_keys(conn: &rusqlite::Connection) -> Result<()> {
    let mut stmt = conn.prepare("PRAGMA foreign_key_check")?;
    let violations: Vec<(String, Option<i64>, String)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let Some((table, rowid, parent)) = violations.first() else {
        return Ok(());
    };
    let row = rowid.map_or_else(|| "a row".to_owned(), |r| format!("rowid {r}"));
    Err(Error::Sqlite {
        code: rusqlite::ErrorCode::ConstraintViolation,
        extended_code: rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY,
        message: format!(
            "the dump breaks {} foreign key reference(s), first {row} of {table:?} to {parent:?}; nothing was restored (restore it on a connection with foreign_keys(false) to keep the rows as they are)",
            violations.len()
        ),
        sql: None,
    })
}

impl Connection {
    /// Rebuilds a database from a dump ([`dump`](Connection::dump)'s lines
    /// joined with newlines, or Python's `iterdump()`) on this connection,
    /// in one transaction: all of it or none. Unlike `execute_script`, it
    /// restores every dump under aiolite's defaults: foreign keys are
    /// checked once, at the end, rather than row by row (a dump creates
    /// tables in name order, children before parents), and a schema written
    /// with SQLite's legacy double-quoted strings is accepted. Both
    /// settings are back as they were when it returns.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> aiolite_conn::Result<()> {
    /// use futures_util::TryStreamExt;
    ///
    /// let source = aiolite_conn::Connection::open_in_memory().await?;
    /// source.execute_script(
    ///     "CREATE TABLE posts(id INTEGER PRIMARY KEY, author INTEGER REFERENCES authors(id));
    ///      CREATE TABLE authors(id INTEGER PRIMARY KEY);
    ///      INSERT INTO authors VALUES (1); INSERT INTO posts VALUES (10, 1);",
    /// ).await?;
    /// let script = source.dump().try_collect::<Vec<String>>().await?.join("\n");
    /// let copy = aiolite_conn::Connection::open_in_memory().await?;
    /// copy.restore_dump(script).await?; // "posts" sorts before "authors"
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// SQLite's error for a statement of the script, or a foreign key
    /// violation the restored rows hold (then nothing is restored);
    /// [`Error::TransactionControl`] inside a transaction.
    ///
    /// # Cancel safety
    /// Once the worker starts it, the restore completes or rolls back whole.
    pub async fn restore_dump(&self, script: impl Into<String>) -> Result<()> {
        let script = script.into();
        self.channel()
            .run(move |w| {
                crate::sql::check_nul(&script)?;
                let restored = restore(&w.conn, &script);
                w.note_schema(None);
                restored
            })
            .await
    }

    /// The database as SQL text, one statement per item: line for line what
    /// Python 3.11's `Connection.iterdump()` gives (aiosqlite's `iterdump`)
    /// wherever Python's text restores the same value. Restore it with
    /// [`restore_dump`](Connection::restore_dump), which works under
    /// aiolite's defaults (foreign keys on, legacy quoting off) where
    /// `execute_script` of the lines does not always.
    ///
    /// Where Python's text would not restore the same value, the dump
    /// writes one that does:
    ///
    /// | value | Python 3.11 | aiolite |
    /// |---|---|---|
    /// | REAL `-0.0` | `0.0` | `-0.0` |
    /// | TEXT holding a NUL (`'a' \|\| char(0) \|\| 'b'`) | `'a'` (cut at the NUL) | `CAST(X'610062' AS TEXT)` |
    /// | a table name with `'` | a broken query | the name, its `'` doubled |
    /// | a `sqlite_sequence` counter that is not a number (`NULL`, text, a blob, ±inf) | `None`, the bare text, `b'..'`, `inf` | `NULL`, `'text'`, `X'..'`, `9e999` |
    ///
    /// A REAL counter is written as Python writes it (`5.0`, `1e+16`).
    ///
    /// Table rows are streamed chunk by chunk, so memory stays flat on a large
    /// table. The dump reads one snapshot inside a read transaction, which
    /// holds this connection (other requests on it wait) until the stream
    /// ends or is dropped; called inside a transaction, it reads that one.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> aiolite_conn::Result<()> {
    /// use futures_util::TryStreamExt;
    ///
    /// let conn = aiolite_conn::Connection::open_in_memory().await?;
    /// conn.execute_script("CREATE TABLE t(x); INSERT INTO t VALUES ('it''s');").await?;
    /// let lines: Vec<String> = conn.dump().try_collect().await?;
    /// assert_eq!(lines, [
    ///     "BEGIN TRANSACTION;",
    ///     "CREATE TABLE t(x);",
    ///     r#"INSERT INTO "t" VALUES('it''s');"#,
    ///     "COMMIT;",
    /// ]);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// Each item is a `Result`: SQLite's error, or [`Error::Closed`].
    ///
    /// # Cancel safety
    /// Dropping the stream ends the read transaction.
    pub fn dump(&self) -> Dump {
        let state = State {
            conn: self.clone(),
            tx: None,
            pending: VecDeque::new(),
            tables: VecDeque::new(),
            rows: None,
            sequence: Vec::new(),
            writable_schema: false,
            phase: Phase::Start,
        };
        let lines = stream::unfold(Some(state), |state| async move {
            let mut state = state?;
            match state.next_line().await {
                Ok(Some(line)) => Some((Ok(line), Some(state))),
                Ok(None) => None,
                // An error ends the dump.
                Err(e) => Some((Err::<String, Error>(e), None)),
            }
        });
        Dump {
            inner: lines.boxed(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::python_float;

    /// Python 3.11's `repr()` of each value, as printed by python3.
    #[test]
    fn floats_as_python_writes_them() {
        for (value, python) in [
            (5.0, "5.0"),
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (1.5, "1.5"),
            (0.1, "0.1"),
            (1e16, "1e+16"),
            (1e15, "1000000000000000.0"),
            (123_456_789_012_345.6, "123456789012345.6"),
            (1e-4, "0.0001"),
            (1e-5, "1e-05"),
            (1.5e-7, "1.5e-07"),
            (-2.5e300, "-2.5e+300"),
            (5e-324, "5e-324"),
            (1.797_693_134_862_315_7e308, "1.7976931348623157e+308"),
            (9_007_199_254_740_993.0, "9007199254740992.0"),
            (0.300_000_000_000_000_04, "0.30000000000000004"),
            (100.0, "100.0"),
            (1e22, "1e+22"),
            (12345.678, "12345.678"),
            (f64::INFINITY, "inf"),
            (f64::NEG_INFINITY, "-inf"),
            (9.223_372_036_854_776e18, "9.223372036854776e+18"),
        ] {
            assert_eq!(python_float(value), python, "{value:e}");
        }
    }
}
