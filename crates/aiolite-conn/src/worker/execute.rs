//! Running statements for a request: prepare (through the statement cache,
//! after the SQL checks), execute, fetch, describe, commit and rollback;
//! Python's implicit BEGIN and the slow-statement log.

use super::cursor::{read_first_row, read_rows};
use super::*;
use crate::sql::packable_insert;

impl Worker {
    pub(crate) fn rollback_if_open(&self, why: &str) {
        if !self.conn.is_autocommit() {
            tracing::debug!(why, "rolling back");
            if let Err(e) = self.conn.execute_batch("ROLLBACK") {
                tracing::warn!(error = %e, why, "rollback failed");
            }
        }
    }

    pub(super) fn prepare(&self, sql: &str) -> Result<CachedStatement<'_>> {
        check_sql(sql)?;
        let stmt = self
            .conn
            .prepare_cached(sql)
            .map_err(|e| Error::with_sql(e, sql))?;
        self.shared
            .stats
            .statement_prepared(crate::metrics::from_cache(&stmt));
        if self.read_batch.get() && !stmt.readonly() {
            // It writes: it must run in autocommit as it would alone.
            self.end_read_batch();
        }
        Ok(stmt)
    }

    /// Python's legacy transaction control: BEGIN before DML outside a transaction.
    pub(super) fn implicit_begin(&self, sql: &str) -> Result<()> {
        if let Some(level) = self.isolation_level {
            if self.conn.is_autocommit() && is_dml(sql) {
                self.conn.execute_batch(level.begin_sql())?;
            }
        }
        Ok(())
    }

    pub(super) fn log(&self, sql: &str, started: Instant) {
        super::events::statement(
            sql,
            self.queue_wait(),
            started.elapsed(),
            self.slow_statement,
        );
    }

    /// Prepares, binds and starts `sql`, hands the rows to `f`, then resets the
    /// statement (which completes a DML statement's implicit transaction).
    pub(super) fn query<P: Params + ?Sized, R>(
        &self,
        sql: &str,
        params: &P,
        f: impl FnOnce(&mut rusqlite::Rows<'_>) -> Result<R>,
    ) -> Result<R> {
        self.run_query(sql, params, false, f)
    }

    /// [`query`](Worker::query) for an `f` that takes its rows' columns
    /// through [`columns_of`](Worker::columns_of): the statement's counters
    /// are read before its first step, and it is marked as checked after.
    fn query_columns<P: Params + ?Sized, R>(
        &self,
        sql: &str,
        params: &P,
        f: impl FnOnce(&mut rusqlite::Rows<'_>) -> Result<R>,
    ) -> Result<R> {
        self.run_query(sql, params, true, f)
    }

    fn run_query<P: Params + ?Sized, R>(
        &self,
        sql: &str,
        params: &P,
        takes_columns: bool,
        f: impl FnOnce(&mut rusqlite::Rows<'_>) -> Result<R>,
    ) -> Result<R> {
        let started = Instant::now();
        let mut stmt = self.prepare(sql)?;
        params.bind(&mut stmt).map_err(|e| e.attach_sql(sql))?;
        self.implicit_begin(sql)?;
        self.columns_checked.set(None);
        self.step_marks
            .set(takes_columns.then(|| StepMarks::of(&stmt)));
        let mut rows = stmt.raw_query();
        let result = f(&mut rows).map_err(|e| e.attach_sql(sql));
        drop(rows);
        self.step_marks.set(None);
        if let Some(reprepared) = self.columns_checked.take() {
            // Marks the statement as checked by this worker (see
            // `columns_of`), unless something re-prepared it after the check.
            if stmt.get_status(StatementStatus::RePrepare) == reprepared {
                stmt.reset_status(StatementStatus::VmStep);
            }
        }
        drop(stmt);
        self.note_schema(Some(sql));
        self.log(sql, started);
        result
    }

    pub(crate) fn execute<P: Params + ?Sized>(&self, sql: &str, params: &P) -> Result<usize> {
        let before = self.conn.total_changes();
        self.query(sql, params, |rows| {
            // Step to the end: `INSERT ... RETURNING` and friends run fully.
            while rows.next()?.is_some() {}
            Ok(())
        })?;
        // sqlite3_changes keeps the count of the last DML statement, so it would
        // be stale after DDL or a SELECT; total_changes tells whether this
        // statement changed anything at all.
        Ok(if self.conn.total_changes() == before {
            0
        } else {
            self.conn.changes() as usize
        })
    }

    pub(crate) fn execute_insert<P: Params + ?Sized>(&self, sql: &str, params: &P) -> Result<i64> {
        self.execute(sql, params)?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Runs `sql` once per parameter set. A plain single-row INSERT
    /// ([`packable_insert`]) runs [`PACK_ROWS`] sets at a time as one
    /// multi-row INSERT, which spends the statement's per-execution cost
    /// once per pack; the outcome is the rows-alone outcome, row for row:
    /// a pack that fails is replayed one row at a time (a failing statement
    /// leaves nothing of itself), so the same rows are kept and the same
    /// set reports the same error. The count is the rows changed, as alone.
    pub(crate) fn execute_many<I, P>(&self, sql: &str, params: I) -> Result<usize>
    where
        I: IntoIterator,
        I::Item: std::borrow::Borrow<P>,
        P: Params + ?Sized,
    {
        use std::borrow::Borrow;
        let started = Instant::now();
        let mut stmt = self.prepare(sql)?;
        let mut total = 0;
        match Pack::of(sql, &stmt) {
            None => {
                for p in params {
                    total += self.execute_one(&mut stmt, sql, p.borrow())?;
                }
            }
            Some(pack) => {
                let mut rows: Vec<I::Item> = Vec::with_capacity(pack.rows);
                for p in params {
                    rows.push(p);
                    if rows.len() == pack.rows {
                        total += self.execute_pack::<I::Item, P>(&pack, &mut stmt, sql, &rows)?;
                        rows.clear();
                    }
                }
                for p in &rows {
                    total += self.execute_one(&mut stmt, sql, p.borrow())?;
                }
            }
        }
        self.log(sql, started);
        Ok(total)
    }

    /// One parameter set through the single-row statement: the rows it
    /// changed.
    fn execute_one<P: Params + ?Sized>(
        &self,
        stmt: &mut Statement<'_>,
        sql: &str,
        params: &P,
    ) -> Result<usize> {
        params.bind(stmt).map_err(|e| e.attach_sql(sql))?;
        self.implicit_begin(sql)?;
        let before = self.conn.total_changes();
        let mut rows = stmt.raw_query();
        while rows.next().map_err(|e| Error::with_sql(e, sql))?.is_some() {}
        drop(rows);
        Ok(self.changes_since(before))
    }

    fn changes_since(&self, before: u64) -> usize {
        if self.conn.total_changes() != before {
            self.conn.changes() as usize
        } else {
            0
        }
    }

    /// A full pack of parameter sets as one multi-row INSERT, or replayed
    /// row by row when it cannot be (a set of another width, a value that
    /// does not bind) or failed for one of its rows.
    fn execute_pack<T, P>(
        &self,
        pack: &Pack,
        stmt: &mut Statement<'_>,
        sql: &str,
        rows: &[T],
    ) -> Result<usize>
    where
        T: std::borrow::Borrow<P>,
        P: Params + ?Sized,
    {
        let replay = |stmt: &mut Statement<'_>| -> Result<usize> {
            let mut n = 0;
            for p in rows {
                n += self.execute_one(stmt, sql, p.borrow())?;
            }
            Ok(n)
        };
        if rows
            .iter()
            .any(|p| p.borrow().positional_len() != Some(pack.width))
        {
            return replay(stmt);
        }
        let Ok(mut packed) = crate::metrics::prepare_cached(&self.conn, &pack.sql) else {
            // A lowered variable limit, say: the rows alone still work.
            return replay(stmt);
        };
        for (i, p) in rows.iter().enumerate() {
            if p.borrow().bind_at(&mut packed, i * pack.width).is_err() {
                drop(packed);
                return replay(stmt);
            }
        }
        self.implicit_begin(sql)?;
        let in_transaction = !self.conn.is_autocommit();
        let before = self.conn.total_changes();
        let mut q = packed.raw_query();
        let ran = loop {
            match q.next() {
                Ok(Some(_)) => {}
                Ok(None) => break Ok(()),
                Err(e) => break Err(Error::with_sql(e, sql)),
            }
        };
        drop(q);
        drop(packed);
        let still_in_transaction = !self.conn.is_autocommit();
        match ran {
            Ok(()) => Ok(self.changes_since(before)),
            // A row's own fault: the statement left nothing of itself (ABORT),
            // and the transaction goes on, so the rows alone replay exactly.
            Err(e)
                if matches!(
                    e.code(),
                    Some(
                        rusqlite::ErrorCode::ConstraintViolation
                            | rusqlite::ErrorCode::TypeMismatch
                            | rusqlite::ErrorCode::TooBig
                    )
                ) && in_transaction == still_in_transaction =>
            {
                replay(stmt)
            }
            Err(e) => Err(e),
        }
    }

    pub(crate) fn execute_script(&self, sql: &str) -> Result<()> {
        check_nul(sql)?;
        let started = Instant::now();
        if self.isolation_level.is_some() && !self.conn.is_autocommit() {
            // Python's executescript commits a pending transaction first.
            self.conn.execute_batch("COMMIT")?;
        }
        let result = self
            .conn
            .execute_batch(sql)
            .map_err(|e| Error::with_sql(e, sql));
        self.note_schema(None);
        result?;
        self.log(sql, started);
        Ok(())
    }

    /// The columns of a statement, from the cache when unchanged. Call it
    /// after the first step: a cached statement whose schema changed is
    /// re-prepared by that step and reports its old columns before it.
    ///
    /// Asking the statement for its columns to compare them costs more than
    /// the rest of a point query's bookkeeping (rusqlite checks each name's
    /// and type's UTF-8), so a statement this worker checked before, and
    /// nobody stepped since, is not asked again. Why its counters tell:
    /// - Only a re-prepare changes a statement's columns, and SQLite
    ///   re-prepares only inside a step, which then runs VM instructions:
    ///   `OP_Init` at least, which also counts the run (`RUN`). Re-preparing
    ///   carries the counters over.
    /// - After a query checked its statement's columns against the cache,
    ///   it resets the statement's `VM_STEP` counter (in [`Worker::query_columns`]).
    /// - So a statement that comes back with `RUN > 0` (not fresh) and
    ///   `VM_STEP == 0` was checked by this worker, and nobody has stepped
    ///   it since: not a `call` closure, not a second object for the same
    ///   text prepared after the cache evicted this one (that one is fresh,
    ///   or was stepped). If this query's own first step re-prepared it,
    ///   its `RE_PREPARE` count moved, and the columns are compared.
    /// - If it did not move, the statement's compiled schema is current: no
    ///   schema change since it was compiled, which was before its check.
    ///   The cached entry, last written by a check at or after that one,
    ///   describes that same schema.
    ///
    /// What could defeat it: code that resets `VM_STEP` on a cached
    /// statement itself (`reset_status` in a closure), or other steps
    /// adding up to exactly 2^32 instructions, where the counter wraps.
    pub(super) fn columns_of(&self, sql: &str, stmt: &Statement<'_>) -> Columns {
        const MAX_CACHED: usize = 512;
        let marks = self.step_marks.take();
        let reprepared = stmt.get_status(StatementStatus::RePrepare);
        if marks.is_some() {
            self.columns_checked.set(Some(reprepared));
        }
        let mut cache = self.columns.borrow_mut();
        if let Some(known) = cache.get(sql) {
            let unstepped =
                marks.is_some_and(|m| m.runs > 0 && m.vm_steps == 0 && m.reprepared == reprepared);
            if unstepped || same_columns(known, stmt) {
                return Arc::clone(known);
            }
        }
        let fresh = columns_of(stmt);
        if cache.len() >= MAX_CACHED {
            cache.clear();
        }
        cache.insert(sql.to_owned(), Arc::clone(&fresh));
        fresh
    }

    pub(crate) fn fetch_all<P: Params + ?Sized>(&self, sql: &str, params: &P) -> Result<Vec<Row>> {
        self.query_columns(sql, params, |rows| {
            let (rows, _) = read_rows(rows, usize::MAX, &mut None, |s| self.columns_of(sql, s))?;
            Ok(rows)
        })
    }

    pub(crate) fn fetch_optional<P: Params + ?Sized>(
        &self,
        sql: &str,
        params: &P,
    ) -> Result<Option<Row>> {
        self.query_columns(sql, params, |rows| {
            read_first_row(rows, |s| self.columns_of(sql, s))
        })
    }

    /// Decodes up to `max` rows with `decoder`, on this thread.
    pub(crate) fn decode_rows<P, D>(
        &self,
        sql: &str,
        params: &P,
        decoder: &mut D,
        max: usize,
    ) -> Result<Vec<D::Output>>
    where
        P: Params + ?Sized,
        D: RowDecoder,
    {
        self.query(sql, params, |rows| {
            let mut out = Vec::new();
            while out.len() < max {
                match rows.next()? {
                    Some(row) => out.push(decoder.decode(row)?),
                    None => break,
                }
            }
            Ok(out)
        })
    }

    pub(crate) fn fetch_map<P, T, F>(&self, sql: &str, params: &P, mut f: F) -> Result<Vec<T>>
    where
        P: Params + ?Sized,
        T: Send + 'static,
        F: FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T> + Send + 'static,
    {
        let mut decoder = move |row: &rusqlite::Row<'_>| Ok(f(row)?);
        self.decode_rows(sql, params, &mut decoder, usize::MAX)
    }

    /// Whether SQLite calls the statement read-only (`sqlite3_stmt_readonly`).
    pub(crate) fn is_read_only(&self, sql: &str) -> Result<bool> {
        Ok(self.prepare(sql)?.readonly())
    }

    pub(crate) fn describe(&self, sql: &str) -> Result<Vec<Column>> {
        check_sql(sql)?;
        // A statement is compiled against this connection's copy of the
        // schema, which is stale after another connection changed it until a
        // statement here reads it again; describe runs nothing else, so it
        // reads each database's schema table first (the cookie check reloads
        // a stale copy). Inside a transaction that has read nothing yet this
        // starts its snapshot, as its first read would.
        self.refresh_schema()?;
        // Not from the statement cache: a cached statement reports the columns
        // of the schema it was prepared against until it is next stepped.
        let stmt = self
            .conn
            .prepare(sql)
            .map_err(|e| Error::with_sql(e, sql))?;
        Ok(columns_of(&stmt).to_vec())
    }

    /// Brings this connection's copy of every attached database's schema up
    /// to date (see `describe`). TEMP is the connection's own, never stale.
    fn refresh_schema(&self) -> rusqlite::Result<()> {
        let names: Vec<String> = self
            .conn
            .prepare_cached("SELECT name FROM pragma_database_list WHERE name <> 'temp'")?
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        for name in names {
            let quoted = name.replace('"', "\"\"");
            self.conn
                .prepare(&format!("SELECT 1 FROM \"{quoted}\".sqlite_schema LIMIT 1"))?
                .raw_query()
                .next()?;
        }
        Ok(())
    }

    /// The connection alias that statements and blobs kept open between
    /// requests borrow (see `Worker::open`).
    pub(crate) fn alias(&self) -> Rc<rusqlite::Connection> {
        Rc::clone(&self.alias)
    }

    pub(crate) fn commit(&self) -> Result<()> {
        if !self.conn.is_autocommit() {
            self.conn.execute_batch("COMMIT")?;
        }
        Ok(())
    }

    pub(crate) fn rollback(&self) -> Result<()> {
        if !self.conn.is_autocommit() {
            self.conn.execute_batch("ROLLBACK")?;
        }
        Ok(())
    }
}

/// Parameter sets a packed INSERT carries. Measured with callgrind on W4
/// (4 bound columns; the whole process, the caller building the rows
/// included): 6,273 instructions per row alone, 5,409 at 16,
/// 5,245 at 32, 5,668 at 64 and 6,706 at 256 (a longer VALUES list costs
/// SQLite more per row than the statements it saves).
const PACK_ROWS: usize = 32;

/// SQLite's default `SQLITE_MAX_VARIABLE_NUMBER`: a pack binds no more.
const MAX_VARIABLES: usize = 32_766;

/// How `execute_many` packs a single-row INSERT: `rows` copies of its
/// `(?, ..)` tuple of `width` placeholders after its `VALUES`.
pub(super) struct Pack {
    sql: String,
    rows: usize,
    width: usize,
}

impl Pack {
    fn of(sql: &str, stmt: &Statement<'_>) -> Option<Pack> {
        let (head, width) = packable_insert(sql)?;
        // Every parameter is one of the tuple's: none hides in the head.
        if width == 0 || stmt.parameter_count() != width {
            return None;
        }
        let rows = PACK_ROWS.min(MAX_VARIABLES / width);
        if rows < 2 {
            return None;
        }
        let tuple = format!("({})", vec!["?"; width].join(","));
        let mut packed = String::with_capacity(head.len() + rows * (tuple.len() + 1) + 1);
        packed.push_str(head);
        packed.push(' ');
        for i in 0..rows {
            if i > 0 {
                packed.push(',');
            }
            packed.push_str(&tuple);
        }
        Some(Pack {
            sql: packed,
            rows,
            width,
        })
    }
}

/// A statement's counters before a query's first step (see
/// [`Worker::columns_of`]).
#[derive(Clone, Copy, Debug)]
pub(super) struct StepMarks {
    runs: i32,
    vm_steps: i32,
    reprepared: i32,
}

impl StepMarks {
    fn of(stmt: &Statement<'_>) -> StepMarks {
        StepMarks {
            runs: stmt.get_status(StatementStatus::Run),
            vm_steps: stmt.get_status(StatementStatus::VmStep),
            reprepared: stmt.get_status(StatementStatus::RePrepare),
        }
    }
}

/// Whether `known` are the statement's columns, names and declared types.
fn same_columns(known: &[Column], stmt: &Statement<'_>) -> bool {
    known.len() == stmt.column_count()
        && known
            .iter()
            .zip(stmt.columns())
            .all(|(k, c)| k.name() == c.name() && k.decl_type() == c.decl_type())
}
