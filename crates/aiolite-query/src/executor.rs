//! Typed queries on every handle: `Connection`, `Transaction`, `Savepoint`
//! and `Database`.

use std::future::Future;

use aiolite_conn::{Error, Handle, IntoSql, Params, Result, RowDecoder, RowStream};

use crate::from_row::{FromRow, FromRowDecoder};
use crate::model::{self, Model};
use crate::statement::Statement;

/// Typed fetches, sea-query statements and model CRUD, for every handle
/// (`Connection`, `Transaction`, `Savepoint`, `Database`): it extends the
/// statement methods of [`Handle`], and every handle has it (sealed, as
/// `Handle` is). Bring it into scope with `use aiolite::prelude::*;`.
///
/// Rows are decoded **on the worker thread**; only the finished values cross
/// to the caller. On a `Database`, reads go to a reader and writes to the
/// writer, as with the untyped methods.
///
/// Three ways in:
/// - SQL text: [`fetch_all_as`](Self::fetch_all_as) and friends, with
///   [`Params`] as everywhere in aiolite;
/// - a sea-query statement: [`query_all`](Self::query_all) and friends,
///   [`query_execute`](Self::query_execute), [`query_execute_insert`](Self::query_execute_insert); the
///   statement's values are bound for you;
/// - a [`Model`]: [`insert`](Self::insert), [`find`](Self::find),
///   [`update`](Self::update), [`delete`](Self::delete),
///   [`upsert`](Self::upsert), [`insert_many`](Self::insert_many).
///
/// ```
/// # async fn demo(conn: aiolite_conn::Connection) -> aiolite_conn::Result<()> {
/// use aiolite_query::Executor;
/// use aiolite_query::sea_query::{Expr, ExprTrait, Order, Query};
///
/// let adults: Vec<(String, i64)> = conn
///     .query_all(
///         Query::select()
///             .columns(["name", "age"])
///             .from("users")
///             .and_where(Expr::col("age").gte(18))
///             .order_by("name", Order::Asc),
///     )
///     .await?;
/// # Ok(()) }
/// ```
pub trait Executor: Handle {
    /// Every row of a query, decoded as `T` on the worker.
    ///
    /// ```
    /// # async fn demo(db: aiolite_conn::Database) -> aiolite_conn::Result<()> {
    /// use aiolite_query::Executor;
    /// let names: Vec<(i64, String)> = db
    ///     .fetch_all_as("SELECT id, name FROM users WHERE age > ?", (30,))
    ///     .await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As `fetch_all`; [`Error::ColumnNotFound`] for a column `T` needs and
    /// the query lacks; [`Error::Decode`] naming the field, the column, the
    /// Rust type and what SQLite had.
    ///
    /// # Cancel safety
    /// As `fetch_all`: dropping the future cancels the query.
    fn fetch_all_as<T: FromRow, P: Params>(
        &self,
        sql: impl IntoSql,
        params: P,
    ) -> impl Future<Output = Result<Vec<T>>> + Send {
        Handle::fetch_all_with(self, sql.into_sql(), params, FromRowDecoder::<T>::new())
    }

    /// The first row decoded as `T`; [`Error::NoRows`] if there is none.
    ///
    /// # Errors
    /// As [`fetch_all_as`](Self::fetch_all_as).
    ///
    /// # Cancel safety
    /// As `fetch_one`: dropping the future cancels the query.
    fn fetch_one_as<T: FromRow, P: Params>(
        &self,
        sql: impl IntoSql,
        params: P,
    ) -> impl Future<Output = Result<T>> + Send {
        Handle::fetch_one_with(self, sql.into_sql(), params, FromRowDecoder::<T>::new())
    }

    /// The first row decoded as `T`, if any.
    ///
    /// # Errors
    /// As [`fetch_all_as`](Self::fetch_all_as).
    ///
    /// # Cancel safety
    /// As `fetch_optional`: dropping the future cancels the query.
    fn fetch_optional_as<T: FromRow, P: Params>(
        &self,
        sql: impl IntoSql,
        params: P,
    ) -> impl Future<Output = Result<Option<T>>> + Send {
        Handle::fetch_optional_with(self, sql.into_sql(), params, FromRowDecoder::<T>::new())
    }

    /// Streams a query's rows decoded as `T` on the worker, chunk by chunk:
    /// memory stays bounded whatever the size of the result. Nothing is sent
    /// until the stream is first polled.
    ///
    /// # Cancel safety
    /// Dropping the stream finalizes its statement (as `stream`).
    fn stream_as<T: FromRow, P: Params>(&self, sql: impl IntoSql, params: P) -> RowStream<T> {
        Handle::stream_with(self, sql.into_sql(), params, FromRowDecoder::<T>::new())
    }

    /// Every row of a sea-query statement (a `SELECT`, or a write with
    /// `RETURNING`), decoded as `T`.
    ///
    /// # Errors
    /// As [`fetch_all_as`](Self::fetch_all_as).
    ///
    /// # Cancel safety
    /// As `fetch_all`: dropping the future cancels the query.
    fn query_all<T: FromRow>(
        &self,
        statement: impl Statement,
    ) -> impl Future<Output = Result<Vec<T>>> + Send {
        let (sql, values) = statement.to_sql();
        self.fetch_all_as(sql, values)
    }

    /// The first row of a sea-query statement; [`Error::NoRows`] if none.
    ///
    /// # Errors
    /// As [`fetch_one_as`](Self::fetch_one_as).
    ///
    /// # Cancel safety
    /// As `fetch_one`: dropping the future cancels the query.
    fn query_one<T: FromRow>(
        &self,
        statement: impl Statement,
    ) -> impl Future<Output = Result<T>> + Send {
        let (sql, values) = statement.to_sql();
        self.fetch_one_as(sql, values)
    }

    /// The first row of a sea-query statement, if any.
    ///
    /// # Errors
    /// As [`fetch_all_as`](Self::fetch_all_as).
    ///
    /// # Cancel safety
    /// As `fetch_optional`: dropping the future cancels the query.
    fn query_optional<T: FromRow>(
        &self,
        statement: impl Statement,
    ) -> impl Future<Output = Result<Option<T>>> + Send {
        let (sql, values) = statement.to_sql();
        self.fetch_optional_as(sql, values)
    }

    /// Streams the rows of a sea-query statement, decoded as `T`.
    ///
    /// # Cancel safety
    /// Dropping the stream finalizes its statement (as `stream`).
    fn query_stream<T: FromRow>(&self, statement: impl Statement) -> RowStream<T> {
        let (sql, values) = statement.to_sql();
        self.stream_as(sql, values)
    }

    /// Runs a sea-query statement (`INSERT`, `UPDATE`, `DELETE`) and returns
    /// the number of rows it changed.
    ///
    /// # Errors
    /// As `execute`.
    ///
    /// # Cancel safety
    /// As `execute`: dropped before the worker starts it, the statement never runs; once started, it completes or fails whole.
    fn query_execute(
        &self,
        statement: impl Statement,
    ) -> impl Future<Output = Result<usize>> + Send {
        let (sql, values) = statement.to_sql();
        Handle::execute(self, sql, values)
    }

    /// Runs a sea-query `INSERT` and returns the new row's rowid.
    ///
    /// # Errors
    /// As `execute_insert`.
    ///
    /// # Cancel safety
    /// As `execute_insert`.
    fn query_execute_insert(
        &self,
        statement: impl Statement,
    ) -> impl Future<Output = Result<i64>> + Send {
        let (sql, values) = statement.to_sql();
        Handle::execute_insert(self, sql, values)
    }

    /// Inserts a model's row and returns its key: the one SQLite assigned
    /// when the key column is the table's rowid (`INTEGER PRIMARY KEY`), the
    /// model's own otherwise (see [`Model`] for the rule). Columns marked
    /// `db_default` or `generated` are left to the database.
    ///
    /// # Errors
    /// SQLite's (a `UNIQUE` or `NOT NULL` violation, ...); a field that
    /// cannot be encoded.
    ///
    /// # Cancel safety
    /// As `execute`: dropped before the worker starts it, nothing is
    /// inserted; once started, the insert completes or fails whole.
    fn insert<M: Model>(&self, model: &M) -> impl Future<Output = Result<M::Key>> + Send {
        let built = model::insert_values(model)
            .and_then(|values| Ok((model::InsertPlan::new::<M>(&values, false)?, values)));
        let key = model.key();
        async move {
            let (plan, values) = built?;
            let assigned = Handle::__write(self, move |conn| {
                let (sql, skip) = plan.choose::<M>(conn)?;
                let mut stmt = aiolite_conn::__private::prepare_cached(conn, sql)
                    .map_err(|e| Error::from(e).attach_sql(sql))?;
                model::bind_row(&mut stmt, &values, skip).map_err(|e| e.attach_sql(sql))?;
                stmt.raw_execute()
                    .map_err(|e| Error::from(e).attach_sql(sql))?;
                Ok(skip.map(|_| conn.last_insert_rowid()))
            })
            .await?;
            match assigned {
                Some(rowid) => model::assigned_key::<M>(rowid),
                None => Ok(key),
            }
        }
    }

    /// Inserts a model's row and returns it as stored (`INSERT ... RETURNING`):
    /// with the key SQLite assigned, and the columns the database filled
    /// (`db_default`, `generated`), decoded on the worker.
    ///
    /// # Errors
    /// As [`insert`](Self::insert); [`Error::Decode`] for a stored value the
    /// model cannot hold.
    ///
    /// # Cancel safety
    /// As [`insert`](Self::insert).
    fn insert_returning<M: Model + Send + 'static>(
        &self,
        model: &M,
    ) -> impl Future<Output = Result<M>> + Send {
        let built = model::insert_values(model)
            .and_then(|values| Ok((model::InsertPlan::new::<M>(&values, true)?, values)));
        async move {
            let (plan, values) = built?;
            Handle::__write(self, move |conn| {
                let (sql, skip) = plan.choose::<M>(conn)?;
                let mut stmt = aiolite_conn::__private::prepare_cached(conn, sql)
                    .map_err(|e| Error::from(e).attach_sql(sql))?;
                model::bind_row(&mut stmt, &values, skip).map_err(|e| e.attach_sql(sql))?;
                let mut rows = stmt.raw_query();
                let row = rows
                    .next()
                    .map_err(|e| Error::from(e).attach_sql(sql))?
                    .ok_or_else(|| Error::NoRows {
                        sql: Some(sql.to_owned()),
                    })?;
                let plan = M::plan(row.as_ref(), "")?;
                let stored = M::from_row(row, &plan)?;
                // RETURNING's row is produced as the insert runs: step to the
                // end so that the statement completes.
                while rows
                    .next()
                    .map_err(|e| Error::from(e).attach_sql(sql))?
                    .is_some()
                {}
                Ok(stored)
            })
            .await
        }
    }

    /// Inserts many rows with one prepared statement, all or none (inside a
    /// savepoint), and returns their keys in order.
    ///
    /// # Errors
    /// As [`insert`](Self::insert); on error no row is inserted.
    ///
    /// # Cancel safety
    /// As [`insert`](Self::insert): all of the rows or none.
    fn insert_many<M: Model>(
        &self,
        models: &[M],
    ) -> impl Future<Output = Result<Vec<M::Key>>> + Send {
        // One statement for the batch: every row inserts the same columns, so
        // only the values are built per row.
        let built = (|| -> Result<_> {
            let values = models
                .iter()
                .map(model::insert_values)
                .collect::<Result<Vec<_>>>()?;
            let Some(first) = values.first() else {
                return Ok(None);
            };
            Ok(Some((model::InsertPlan::new::<M>(first, false)?, values)))
        })();
        let keys: Vec<M::Key> = models.iter().map(Model::key).collect();
        async move {
            let Some((plan, values)) = built? else {
                return Ok(Vec::new());
            };
            let rowids = Handle::__write(self, move |conn| {
                let sp = conn.savepoint()?;
                let (sql, skip) = plan.choose::<M>(&sp)?;
                let mut rowids = Vec::with_capacity(values.len());
                {
                    let mut stmt = aiolite_conn::__private::prepare_cached(&sp, sql)
                        .map_err(|e| Error::from(e).attach_sql(sql))?;
                    for row in &values {
                        model::bind_row(&mut stmt, row, skip).map_err(|e| e.attach_sql(sql))?;
                        stmt.raw_execute()
                            .map_err(|e| Error::from(e).attach_sql(sql))?;
                        rowids.push(sp.last_insert_rowid());
                    }
                }
                sp.commit()?;
                Ok(skip.map(|_| rowids))
            })
            .await?;
            match rowids {
                Some(rowids) => rowids.into_iter().map(model::assigned_key::<M>).collect(),
                None => Ok(keys),
            }
        }
    }

    /// The row with this key, if any.
    ///
    /// # Errors
    /// As [`fetch_optional_as`](Self::fetch_optional_as).
    ///
    /// # Cancel safety
    /// As `fetch_optional`: dropping the future cancels the query.
    fn find<M: Model>(&self, key: M::Key) -> impl Future<Output = Result<Option<M>>> + Send {
        let built = model::find_sql::<M>(&key);
        async move {
            let (sql, values) = built?;
            self.fetch_optional_as(sql, values).await
        }
    }

    /// Writes every column of a model's row (but generated ones), found by
    /// its key; `false` when no row has that key.
    ///
    /// Every column: a value another request changed since this model was
    /// read is overwritten with the model's. To write only what this request
    /// changed, use [`update_changed`](Self::update_changed) or
    /// [`update_columns`](Self::update_columns).
    ///
    /// # Errors
    /// As [`insert`](Self::insert).
    ///
    /// # Cancel safety
    /// As `execute`.
    fn update<M: Model>(&self, model: &M) -> impl Future<Output = Result<bool>> + Send {
        let built = model::update_sql(model, None, None);
        self.__update::<M>(built, model.key())
    }

    /// Writes only `columns` of a model's row (the key and generated columns
    /// are never written), found by its key; `false` when no row has that key.
    ///
    /// ```
    /// # async fn demo<M: aiolite_query::Model>(db: aiolite_conn::Database, user: M, name: M::Column) -> aiolite_conn::Result<()> {
    /// use aiolite_query::Executor;
    /// // A concurrent `balance = balance - 40` stays: only the name is written.
    /// db.update_columns(&user, &[name]).await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`update`](Self::update).
    ///
    /// # Cancel safety
    /// As `execute`.
    fn update_columns<M: Model>(
        &self,
        model: &M,
        columns: &[M::Column],
    ) -> impl Future<Output = Result<bool>> + Send {
        let built = model::update_sql(model, Some(columns), None);
        self.__update::<M>(built, model.key())
    }

    /// Writes the columns whose values differ between `before` (the row as
    /// read) and `after` (as changed), in the row with `before`'s key:
    /// sea-orm's "only the changed columns", on plain structs. `false` when
    /// no row has that key; with nothing changed, nothing is written.
    ///
    /// # Errors
    /// As [`update`](Self::update).
    ///
    /// # Cancel safety
    /// As `execute`.
    fn update_changed<M: Model>(
        &self,
        before: &M,
        after: &M,
    ) -> impl Future<Output = Result<bool>> + Send {
        let key = before.key();
        let built = model::changed_columns(before, after)
            .and_then(|changed| model::update_sql(after, Some(&changed), Some(&key)));
        self.__update::<M>(built, key)
    }

    #[doc(hidden)]
    fn __update<M: Model>(
        &self,
        built: Result<Option<(String, crate::SqlValues)>>,
        key: M::Key,
    ) -> impl Future<Output = Result<bool>> + Send {
        // Nothing to write: the row is "updated" if it exists.
        let exists = matches!(built, Ok(None)).then(|| model::exists_sql::<M>(&key));
        async move {
            match (built?, exists) {
                (Some((sql, values)), _) => Ok(Handle::execute(self, sql, values).await? > 0),
                (None, Some(exists)) => {
                    let (sql, values) = exists?;
                    Ok(self
                        .fetch_optional_as::<i64, _>(sql, values)
                        .await?
                        .is_some())
                }
                (None, None) => Ok(false),
            }
        }
    }

    /// One page of a `SELECT` (`page` counts from 0) and the number of rows
    /// of the whole result, read in one statement and so from one snapshot
    /// (`count(*) OVER ()` beside the page's rows). The statement's own
    /// `LIMIT` and `OFFSET` are replaced.
    ///
    /// ```
    /// # async fn demo(db: aiolite_conn::Database) -> aiolite_conn::Result<()> {
    /// use aiolite_query::Executor;
    /// use aiolite_query::sea_query::{Order, Query};
    /// let mut select = Query::select();
    /// select.columns(["id", "name"]).from("users").order_by("id", Order::Asc);
    /// let page = db.query_page::<(i64, String)>(&select, 2, 20).await?;
    /// println!("rows {}-{} of {}", 40, 40 + page.items.len(), page.total);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`query_all`](Self::query_all).
    ///
    /// # Cancel safety
    /// As `fetch_all`: dropping the future cancels the query.
    fn query_page<T: FromRow>(
        &self,
        select: &sea_query::SelectStatement,
        page: u64,
        per_page: u64,
    ) -> impl Future<Output = Result<Page<T>>> + Send {
        let (sql, values, whole) = page_sql(select, page, per_page);
        async move {
            let mut decoder = FromRowDecoder::<T>::new();
            let rows: Vec<(T, i64)> =
                Handle::fetch_all_with(self, sql, values, move |row: &rusqlite::Row<'_>| {
                    let total_at = row.as_ref().column_count() - 1;
                    Ok((decoder.decode(row)?, row.get::<_, i64>(total_at)?))
                })
                .await?;
            let total = match rows.first() {
                Some((_, total)) => u64::try_from(*total).unwrap_or_default(),
                None if page == 0 => 0,
                // Past the last page: no row carries the total.
                None => {
                    let (sql, values) = count_sql(whole);
                    let n: i64 = self.fetch_one_as(sql, values).await?;
                    u64::try_from(n).unwrap_or_default()
                }
            };
            Ok(Page {
                items: rows.into_iter().map(|(item, _)| item).collect(),
                total,
                page,
                per_page,
            })
        }
    }
    /// Deletes the row with this key; `false` when there was none.
    ///
    /// # Errors
    /// As `execute`.
    ///
    /// # Cancel safety
    /// As `execute`.
    fn delete<M: Model>(&self, key: M::Key) -> impl Future<Output = Result<bool>> + Send {
        let built = model::delete_sql::<M>(&key);
        async move {
            let (sql, values) = built?;
            Ok(Handle::execute(self, sql, values).await? > 0)
        }
    }

    /// Inserts the row, or updates every other column of the row with its
    /// key (`INSERT ... ON CONFLICT (key) DO UPDATE`). Writes the key as
    /// given, integer keys included; returns it.
    ///
    /// # Errors
    /// As [`insert`](Self::insert).
    ///
    /// # Cancel safety
    /// As `execute`.
    fn upsert<M: Model>(&self, model: &M) -> impl Future<Output = Result<M::Key>> + Send {
        let built = model::upsert_sql(model).map(|q| (q, model.key()));
        async move {
            let ((sql, values), key) = built?;
            Handle::execute(self, sql, values).await?;
            Ok(key)
        }
    }
}

/// One page of a query's rows, and the size of the whole result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    /// The page's rows.
    pub items: Vec<T>,
    /// Rows in the whole result.
    pub total: u64,
    /// This page's number, from 0.
    pub page: u64,
    /// The page size asked for.
    pub per_page: u64,
}

impl<T> Page<T> {
    /// How many pages the whole result makes.
    pub fn pages(&self) -> u64 {
        if self.per_page == 0 {
            0
        } else {
            self.total.div_ceil(self.per_page)
        }
    }
}

/// The page query (the statement with `count(*) OVER ()` as its last column,
/// and the page's LIMIT/OFFSET), and the statement without them, counted
/// only for a page past the end. `DISTINCT` is counted over a subquery, since a window
/// function would count the rows before DISTINCT removes any.
fn page_sql(
    select: &sea_query::SelectStatement,
    page: u64,
    per_page: u64,
) -> (String, crate::SqlValues, sea_query::SelectStatement) {
    use sea_query::{Alias, Expr, Query};
    let mut unpaged = select.clone();
    unpaged.reset_limit().reset_offset();
    let whole = unpaged.clone();
    // sea-query has no accessor for DISTINCT: its text says.
    let (text, _) = unpaged.to_sql();
    let mut paged = if text.starts_with("SELECT DISTINCT") {
        let mut outer = Query::select();
        outer
            .column((Alias::new("aiolite_page"), sea_query::Asterisk))
            .from_subquery(unpaged, Alias::new("aiolite_page"));
        outer
    } else {
        unpaged
    };
    paged
        .expr_as(Expr::cust("count(*) OVER ()"), Alias::new("aiolite_total"))
        .limit(per_page)
        .offset(page.saturating_mul(per_page));
    let (sql, values) = paged.to_sql();
    (sql, values, whole)
}

/// `SELECT count(*)` of a statement's whole result, for a page past its end.
fn count_sql(whole: sea_query::SelectStatement) -> (String, crate::SqlValues) {
    use sea_query::{Alias, Expr, Query};
    let mut count = Query::select();
    count
        .expr(Expr::cust("count(*)"))
        .from_subquery(whole, Alias::new("aiolite_page"));
    count.to_sql()
}

// Every handle is an Executor: the typed methods are written once, over
// the statement methods of `Handle` (sealed, so Executor is too).
impl<H: Handle + ?Sized> Executor for H {}
