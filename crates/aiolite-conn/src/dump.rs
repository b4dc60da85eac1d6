//! `dump()`: the database as SQL text, line for line what Python 3.11's
//! `sqlite3.Connection.iterdump()` writes (Lib/sqlite3/dump.py), streamed.

use std::collections::VecDeque;
use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_core::Stream;
use futures_util::stream::{self, BoxStream, StreamExt};
use rusqlite::types::Value;

use crate::connection::{Channel, Connection};
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

/// Python's `str()` of a value, for the `sqlite_sequence` lines.
fn python_str(v: &Value) -> String {
    match v {
        Value::Null => "None".to_owned(),
        Value::Integer(i) => i.to_string(),
        Value::Real(f) => f.to_string(),
        Value::Text(s) => s.clone(),
        Value::Blob(b) => format!("{b:?}"),
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
                w.query_map(sql, &(), |row| {
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
                let cells: Vec<String> = row.iter().map(python_str).collect();
                let (table, seq) = match &cells[..] {
                    [t, s, ..] => (t.as_str(), s.as_str()),
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
            .run(move |w| w.query_map(&pragma, &(), |row| row.get::<_, String>(1)))
            .await?;
        // Python builds each line in SQL from `quote()` of every column.
        // aiolite asks SQLite for the same `quote()` texts and joins them
        // here, so that the one value `quote()` cannot write comes back raw:
        // a REAL zero, whose sign `quote()` drops (-0.0 is written `0.0`).
        let cells = columns
            .iter()
            .map(|c| {
                let c = ident(c);
                format!(
                    r#"CASE WHEN typeof("{c}") = 'real' AND "{c}" = 0 THEN "{c}" ELSE quote("{c}") END"#
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

impl Connection {
    /// The database as SQL text, one statement per item: line for line what
    /// Python 3.11's `Connection.iterdump()` gives (aiosqlite's `iterdump`),
    /// so `execute_script` of the lines joined with newlines rebuilds it.
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
