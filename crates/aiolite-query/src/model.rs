//! Tables mapped to structs: `#[derive(Model)]` and the statements behind CRUD.

use aiolite_conn::{Params, Result};
use sea_query::{Expr, ExprTrait, IdenStatic, OnConflict, Query, SelectStatement, Value};

use crate::decode::Decode;
use crate::encode::Encode;
use crate::from_row::FromRow;
use crate::statement::{SqlValues, Statement};

/// A struct stored as the rows of one table, keyed by its primary key.
/// Derive it with [`FromRow`] (the facade's `#[derive(FromRow, Model)]`):
///
/// ```text
/// #[derive(aiolite::FromRow, aiolite::Model)]
/// #[aiolite(table = "users")]
/// struct User {
///     #[aiolite(primary_key)]
///     id: i64,
///     name: String,
///     age: Option<u8>,
/// }
/// // UserColumn::{Id, Name, Age}, User::select(), User::all_columns(),
/// // and db.insert(&user), db.find::<User>(id), db.update(&user), ...
/// ```
///
/// (The derive generates `::aiolite::` paths, so the compiled example is in
/// the `aiolite` README.)
///
/// Keys: an integer primary key that is the table's rowid (declared
/// `INTEGER PRIMARY KEY`, in a rowid table) is assigned by SQLite on
/// `insert`, which returns it. Every other key is written as the model holds
/// it: text, UUID, and integer keys whose column is not the rowid
/// (`BIGINT PRIMARY KEY`, `INT PRIMARY KEY`, a `WITHOUT ROWID` table), where
/// SQLite would otherwise store a NULL key. Which case a table is in is read
/// from its schema at insert time. `upsert` always writes the key it is given.
///
/// Columns the database fills: `#[aiolite(db_default)]` (a SQL `DEFAULT`) and
/// `#[aiolite(generated)]` (`GENERATED ALWAYS AS`) are left out of `INSERT`
/// (and generated ones out of `UPDATE`); `insert_returning` reads them back.
/// To write only some columns (and not revert what another request changed
/// meanwhile), use `update_columns` or `update_changed`.
pub trait Model: FromRow {
    /// The table's columns: an enum with one variant per stored field
    /// (`UserColumn::Age`), usable wherever sea-query takes a column, so a
    /// misspelt column is a compile error.
    type Column: IdenStatic;

    /// The primary key's type.
    type Key: Encode + Decode + Clone + Send + Sync + 'static;

    /// The table's name.
    const TABLE: &'static str;

    /// The primary key column.
    const PRIMARY_KEY: Self::Column;

    /// Whether the key is an integer, which SQLite assigns on insert when
    /// its column is the table's rowid (see the trait's doc).
    const AUTO_KEY: bool;

    /// Columns left out of `INSERT`, for the database to fill
    /// (`#[aiolite(db_default)]` and `#[aiolite(generated)]`).
    const FILLED_BY_DATABASE: &'static [Self::Column] = &[];

    /// Generated columns (`#[aiolite(generated)]`): never written.
    const GENERATED: &'static [Self::Column] = &[];

    /// Every column, in field order (the key included).
    fn columns() -> &'static [Self::Column];

    /// This row's key.
    fn key(&self) -> Self::Key;

    /// This row's values, in [`columns`](Self::columns) order.
    ///
    /// # Errors
    /// A field that cannot be encoded (see [`Encode`]).
    fn values(&self) -> Result<Vec<Value>>;

    /// `SELECT` every column `FROM` the table: add filters, order and limits,
    /// then run it with [`Executor::query_all`](crate::Executor::query_all).
    fn select() -> SelectStatement {
        let mut select = Query::select();
        select
            .columns(Self::columns().iter().copied())
            .from(Self::TABLE);
        select
    }
}

fn key_expr<M: Model>(key: &M::Key) -> Result<Expr> {
    Ok(Expr::col(M::PRIMARY_KEY).eq(key.encode()?))
}

fn is_key<M: Model>(c: &M::Column) -> bool {
    c.as_str() == M::PRIMARY_KEY.as_str()
}

fn is_in<M: Model>(c: &M::Column, list: &[M::Column]) -> bool {
    list.iter().any(|l| l.as_str() == c.as_str())
}

/// An `INSERT` of a model's rows, in two forms when SQLite may assign the
/// key: the caller picks one on the worker ([`key_is_rowid`]) and binds each
/// row's values, written with the key, without it for the second form.
pub(crate) struct InsertPlan {
    with_key: String,
    /// `Some` for an integer key: the SQL without the key column, and the
    /// key's place among the values.
    without_key: Option<(String, usize)>,
}

impl InsertPlan {
    /// The plan for rows like `values` (one row's [`insert_values`]): the
    /// SQL depends only on the columns, so the row is encoded once.
    pub(crate) fn new<M: Model>(values: &[Value], returning: bool) -> Result<InsertPlan> {
        let with_key = insert_statement::<M>(values, None, returning)?;
        let without_key = if M::AUTO_KEY {
            let index = insert_columns::<M>(true)
                .position(|c| is_key::<M>(&c))
                .unwrap_or_default();
            Some((
                insert_statement::<M>(values, Some(index), returning)?,
                index,
            ))
        } else {
            None
        };
        Ok(InsertPlan {
            with_key,
            without_key,
        })
    }

    /// The SQL to run, and the place of the key value to leave out, if any.
    pub(crate) fn choose<M: Model>(
        &self,
        conn: &rusqlite::Connection,
    ) -> Result<(&str, Option<usize>)> {
        match &self.without_key {
            Some((sql, index)) if key_is_rowid::<M>(conn)? => Ok((sql, Some(*index))),
            _ => Ok((&self.with_key, None)),
        }
    }
}

/// The columns an `INSERT` writes, in [`Model::columns`] order.
fn insert_columns<M: Model>(with_key: bool) -> impl Iterator<Item = M::Column> {
    M::columns()
        .iter()
        .copied()
        .filter(move |c| !is_in::<M>(c, M::FILLED_BY_DATABASE) && (with_key || !is_key::<M>(c)))
}

/// The `INSERT` of a row's `values` (with the key), leaving out the one at
/// `skip_key`.
fn insert_statement<M: Model>(
    values: &[Value],
    skip_key: Option<usize>,
    returning: bool,
) -> Result<String> {
    let columns: Vec<M::Column> = insert_columns::<M>(skip_key.is_none()).collect();
    let mut insert = Query::insert();
    insert.into_table(M::TABLE);
    if columns.is_empty() {
        insert.or_default_values();
    } else {
        insert.columns(columns);
        let row = values
            .iter()
            .enumerate()
            .filter(|(i, _)| Some(*i) != skip_key)
            .map(|(_, v)| Expr::from(v.clone()));
        insert.values(row).map_err(crate::sea_query_error)?;
    }
    if returning {
        insert.returning(Query::returning().columns(M::columns().iter().copied()));
    }
    Ok(insert.to_sql().0)
}

/// The values [`InsertPlan`] binds for a row, the key included.
pub(crate) fn insert_values<M: Model>(model: &M) -> Result<Vec<Value>> {
    let columns: Vec<M::Column> = insert_columns::<M>(true).collect();
    row_values(model, &columns)
}

/// Binds a row's insert values, without the one at `skip`, and runs it.
pub(crate) fn bind_row(
    stmt: &mut rusqlite::Statement<'_>,
    values: &[Value],
    skip: Option<usize>,
) -> Result<()> {
    let row: Vec<Value> = values
        .iter()
        .enumerate()
        .filter(|(i, _)| Some(*i) != skip)
        .map(|(_, v)| v.clone())
        .collect();
    Params::bind(&SqlValues::from_values(row), stmt)
}

/// Whether the model's key column is the table's rowid: the one primary
/// key column of a rowid table, declared `INTEGER` (SQLite's rule; `INT`,
/// `BIGINT` or `INTEGER PRIMARY KEY DESC` are not, and get a separate index).
pub(crate) fn key_is_rowid<M: Model>(conn: &rusqlite::Connection) -> Result<bool> {
    let mut stmt = aiolite_conn::__private::prepare_cached(
        conn,
        "SELECT (SELECT count(*) FROM pragma_table_info(?1) WHERE pk > 0) = 1
            AND EXISTS (SELECT 1 FROM pragma_table_info(?1)
                        WHERE pk > 0 AND name = ?2 COLLATE NOCASE AND upper(type) = 'INTEGER')
            AND NOT EXISTS (SELECT 1 FROM pragma_index_list(?1) WHERE origin = 'pk')",
    )?;
    Ok(stmt.query_row((M::TABLE, M::PRIMARY_KEY.as_str()), |r| r.get(0))?)
}

/// `INSERT ... ON CONFLICT (key) DO UPDATE SET` every other written column.
pub(crate) fn upsert_sql<M: Model>(model: &M) -> Result<(String, SqlValues)> {
    let columns: Vec<M::Column> = insert_columns::<M>(true).collect();
    let values = row_values(model, &columns)?;
    let others: Vec<M::Column> = columns
        .iter()
        .copied()
        .filter(|c| !is_key::<M>(c) && !is_in::<M>(c, M::GENERATED))
        .collect();
    let mut on_conflict = OnConflict::column(M::PRIMARY_KEY);
    if others.is_empty() {
        on_conflict.do_nothing();
    } else {
        on_conflict.update_columns(others);
    }
    let mut insert = Query::insert();
    insert
        .into_table(M::TABLE)
        .columns(columns)
        .values(values.into_iter().map(Expr::from))
        .map_err(crate::sea_query_error)?;
    insert.on_conflict(on_conflict);
    Ok(insert.to_sql())
}

/// `UPDATE` the chosen columns (every stored one but the key and generated
/// ones when `None`) `WHERE key = ?` (the row's own key, or `key`); `None`
/// when no column is left to write.
pub(crate) fn update_sql<M: Model>(
    model: &M,
    only: Option<&[M::Column]>,
    key: Option<&M::Key>,
) -> Result<Option<(String, SqlValues)>> {
    let columns: Vec<M::Column> = M::columns()
        .iter()
        .copied()
        .filter(|c| match only {
            Some(only) => is_in::<M>(c, only),
            None => !is_key::<M>(c),
        })
        .filter(|c| !is_in::<M>(c, M::GENERATED))
        .collect();
    if columns.is_empty() {
        return Ok(None);
    }
    let values = row_values(model, &columns)?;
    let mut update = Query::update();
    update.table(M::TABLE);
    for (c, v) in columns.into_iter().zip(values) {
        update.value(c, v);
    }
    let own_key;
    let key = match key {
        Some(k) => k,
        None => {
            own_key = model.key();
            &own_key
        }
    };
    update.and_where(key_expr::<M>(key)?);
    Ok(Some(update.to_sql()))
}

/// The stored columns whose values differ between two states of a row.
pub(crate) fn changed_columns<M: Model>(before: &M, after: &M) -> Result<Vec<M::Column>> {
    let (old, new) = (before.values()?, after.values()?);
    Ok(M::columns()
        .iter()
        .copied()
        .zip(old.iter().zip(&new))
        .filter(|(_, (a, b))| a != b)
        .map(|(c, _)| c)
        .collect())
}

pub(crate) fn find_sql<M: Model>(key: &M::Key) -> Result<(String, SqlValues)> {
    let mut select = M::select();
    select.and_where(key_expr::<M>(key)?);
    Ok(select.to_sql())
}

pub(crate) fn exists_sql<M: Model>(key: &M::Key) -> Result<(String, SqlValues)> {
    let mut select = Query::select();
    select
        .expr(Expr::val(1))
        .from(M::TABLE)
        .and_where(key_expr::<M>(key)?);
    Ok(select.to_sql())
}

pub(crate) fn delete_sql<M: Model>(key: &M::Key) -> Result<(String, SqlValues)> {
    let mut delete = Query::delete();
    delete.from_table(M::TABLE).and_where(key_expr::<M>(key)?);
    Ok(delete.to_sql())
}

/// The model's values for `columns`, in their order.
fn row_values<M: Model>(model: &M, columns: &[M::Column]) -> Result<Vec<Value>> {
    let values = model.values()?;
    Ok(M::columns()
        .iter()
        .zip(values)
        .filter(|(c, _)| is_in::<M>(c, columns))
        .map(|(_, v)| v)
        .collect())
}

/// The key SQLite assigned, as the model's key type.
pub(crate) fn assigned_key<M: Model>(rowid: i64) -> Result<M::Key> {
    M::Key::decode(rusqlite::types::ValueRef::Integer(rowid)).map_err(|e| {
        aiolite_conn::Error::Decode {
            index: 0,
            column: M::PRIMARY_KEY.as_str().to_owned(),
            field: Some(format!("{}.{}", M::TABLE, M::PRIMARY_KEY.as_str())),
            expected: std::any::type_name::<M::Key>(),
            found: e.found().to_owned(),
        }
    })
}
