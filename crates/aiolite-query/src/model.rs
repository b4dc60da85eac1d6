//! Tables mapped to structs: `#[derive(Model)]` and the statements behind CRUD.

use aiolite_conn::Result;
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
/// An integer primary key is an `INTEGER PRIMARY KEY` (the rowid): `insert`
/// leaves it to SQLite and returns the key SQLite chose. Other keys (text,
/// UUID, ...) are inserted as given. `upsert` always writes the key it is
/// given.
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

    /// Whether SQLite assigns the key on insert (an integer key).
    const AUTO_KEY: bool;

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

/// `INSERT` of one row: without the key when SQLite assigns it.
pub(crate) fn insert_sql<M: Model>(model: &M) -> Result<(String, SqlValues)> {
    let (columns, values) = split_values(model, M::AUTO_KEY)?;
    let mut insert = Query::insert();
    insert.into_table(M::TABLE);
    if columns.is_empty() {
        insert.or_default_values();
    } else {
        insert.columns(columns);
        insert
            .values(values.into_iter().map(Expr::from))
            .map_err(crate::sea_query_error)?;
    }
    Ok(insert.to_sql())
}

/// The parameters [`insert_sql`] binds for this row, in its order: a batch
/// reuses one row's SQL with every row's values.
pub(crate) fn insert_values<M: Model>(model: &M) -> Result<SqlValues> {
    let (_, values) = split_values(model, M::AUTO_KEY)?;
    Ok(SqlValues::from_values(values))
}

/// `INSERT ... ON CONFLICT (key) DO UPDATE SET` every other column.
pub(crate) fn upsert_sql<M: Model>(model: &M) -> Result<(String, SqlValues)> {
    let (columns, values) = split_values(model, false)?;
    let others: Vec<M::Column> = columns
        .iter()
        .copied()
        .filter(|c| c.as_str() != M::PRIMARY_KEY.as_str())
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

/// `UPDATE` every non-key column `WHERE key = ?`; `None` when there is no
/// column besides the key.
pub(crate) fn update_sql<M: Model>(model: &M) -> Result<Option<(String, SqlValues)>> {
    let (columns, values) = split_values(model, true)?;
    if columns.is_empty() {
        return Ok(None);
    }
    let mut update = Query::update();
    update.table(M::TABLE);
    for (c, v) in columns.into_iter().zip(values) {
        update.value(c, v);
    }
    update.and_where(key_expr::<M>(&model.key())?);
    Ok(Some(update.to_sql()))
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

/// The columns and values to write, without the key if `skip_key`.
fn split_values<M: Model>(model: &M, skip_key: bool) -> Result<(Vec<M::Column>, Vec<Value>)> {
    let values = model.values()?;
    let key = M::PRIMARY_KEY.as_str();
    Ok(M::columns()
        .iter()
        .copied()
        .zip(values)
        .filter(|(c, _)| !(skip_key && c.as_str() == key))
        .unzip())
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
