//! Typed queries on every handle: `Connection`, `Transaction`, `Savepoint`
//! and `Database`.

use std::borrow::Cow;
use std::future::Future;

use aiolite_conn::{
    Connection, Database, Error, Params, Result, RowDecoder, RowStream, Savepoint, Transaction,
};

use crate::from_row::{FromRow, FromRowDecoder};
use crate::model::{self, Model};
use crate::statement::Statement;

type Sql = Cow<'static, str>;

/// Typed fetches, sea-query statements and model CRUD, for every handle
/// (`Connection`, `Transaction`, `Savepoint`, `Database`). Bring it into
/// scope with `use aiolite::prelude::*;`.
///
/// Rows are decoded **on the worker thread**; only the finished values cross
/// to the caller. On a `Database`, reads go to a reader and writes to the
/// writer, as with the untyped methods.
///
/// Three ways in:
/// - SQL text: [`fetch_all_as`](Self::fetch_all_as) and friends, with
///   [`Params`] as everywhere in aiolite;
/// - a sea-query statement: [`query_all`](Self::query_all) and friends,
///   [`exec`](Self::exec), [`exec_insert`](Self::exec_insert); the
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
pub trait Executor: Sync {
    #[doc(hidden)]
    fn __fetch_all_with<P: Params, D: RowDecoder>(
        &self,
        sql: Sql,
        params: P,
        decoder: D,
    ) -> impl Future<Output = Result<Vec<D::Output>>> + Send;

    #[doc(hidden)]
    fn __fetch_one_with<P: Params, D: RowDecoder>(
        &self,
        sql: Sql,
        params: P,
        decoder: D,
    ) -> impl Future<Output = Result<D::Output>> + Send;

    #[doc(hidden)]
    fn __fetch_optional_with<P: Params, D: RowDecoder>(
        &self,
        sql: Sql,
        params: P,
        decoder: D,
    ) -> impl Future<Output = Result<Option<D::Output>>> + Send;

    #[doc(hidden)]
    fn __stream_with<P: Params, D: RowDecoder>(
        &self,
        sql: Sql,
        params: P,
        decoder: D,
    ) -> RowStream<D::Output>;

    #[doc(hidden)]
    fn __execute<P: Params>(
        &self,
        sql: Sql,
        params: P,
    ) -> impl Future<Output = Result<usize>> + Send;

    #[doc(hidden)]
    fn __execute_insert<P: Params>(
        &self,
        sql: Sql,
        params: P,
    ) -> impl Future<Output = Result<i64>> + Send;

    /// Runs `f` on the worker that writes (the writer of a `Database`).
    #[doc(hidden)]
    fn __write<F, T>(&self, f: F) -> impl Future<Output = Result<T>> + Send
    where
        F: FnOnce(&mut rusqlite::Connection) -> Result<T> + Send + 'static,
        T: Send + 'static;

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
        sql: impl Into<Sql>,
        params: P,
    ) -> impl Future<Output = Result<Vec<T>>> + Send {
        self.__fetch_all_with(sql.into(), params, FromRowDecoder::<T>::new())
    }

    /// The first row decoded as `T`; [`Error::NoRows`] if there is none.
    ///
    /// # Errors
    /// As [`fetch_all_as`](Self::fetch_all_as).
    fn fetch_one_as<T: FromRow, P: Params>(
        &self,
        sql: impl Into<Sql>,
        params: P,
    ) -> impl Future<Output = Result<T>> + Send {
        self.__fetch_one_with(sql.into(), params, FromRowDecoder::<T>::new())
    }

    /// The first row decoded as `T`, if any.
    ///
    /// # Errors
    /// As [`fetch_all_as`](Self::fetch_all_as).
    fn fetch_optional_as<T: FromRow, P: Params>(
        &self,
        sql: impl Into<Sql>,
        params: P,
    ) -> impl Future<Output = Result<Option<T>>> + Send {
        self.__fetch_optional_with(sql.into(), params, FromRowDecoder::<T>::new())
    }

    /// Streams a query's rows decoded as `T` on the worker, chunk by chunk:
    /// memory stays bounded whatever the size of the result. Nothing is sent
    /// until the stream is first polled.
    fn stream_as<T: FromRow, P: Params>(&self, sql: impl Into<Sql>, params: P) -> RowStream<T> {
        self.__stream_with(sql.into(), params, FromRowDecoder::<T>::new())
    }

    /// Every row of a sea-query statement (a `SELECT`, or a write with
    /// `RETURNING`), decoded as `T`.
    ///
    /// # Errors
    /// As [`fetch_all_as`](Self::fetch_all_as).
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
    fn query_optional<T: FromRow>(
        &self,
        statement: impl Statement,
    ) -> impl Future<Output = Result<Option<T>>> + Send {
        let (sql, values) = statement.to_sql();
        self.fetch_optional_as(sql, values)
    }

    /// Streams the rows of a sea-query statement, decoded as `T`.
    fn query_stream<T: FromRow>(&self, statement: impl Statement) -> RowStream<T> {
        let (sql, values) = statement.to_sql();
        self.stream_as(sql, values)
    }

    /// Runs a sea-query statement (`INSERT`, `UPDATE`, `DELETE`) and returns
    /// the number of rows it changed.
    ///
    /// # Errors
    /// As `execute`.
    fn exec(&self, statement: impl Statement) -> impl Future<Output = Result<usize>> + Send {
        let (sql, values) = statement.to_sql();
        self.__execute(sql.into(), values)
    }

    /// Runs a sea-query `INSERT` and returns the new row's rowid.
    ///
    /// # Errors
    /// As `execute_insert`.
    fn exec_insert(&self, statement: impl Statement) -> impl Future<Output = Result<i64>> + Send {
        let (sql, values) = statement.to_sql();
        self.__execute_insert(sql.into(), values)
    }

    /// Inserts a model's row and returns its key: the one SQLite assigned for
    /// an integer key, the model's own otherwise.
    ///
    /// # Errors
    /// SQLite's (a `UNIQUE` or `NOT NULL` violation, ...); a field that
    /// cannot be encoded.
    fn insert<M: Model>(&self, model: &M) -> impl Future<Output = Result<M::Key>> + Send {
        let built = model::insert_sql(model).map(|q| (q, model.key()));
        async move {
            let ((sql, values), key) = built?;
            let rowid = self.__execute_insert(sql.into(), values).await?;
            if M::AUTO_KEY {
                model::assigned_key::<M>(rowid)
            } else {
                Ok(key)
            }
        }
    }

    /// Inserts many rows with one prepared statement, all or none (inside a
    /// savepoint), and returns their keys in order.
    ///
    /// # Errors
    /// As [`insert`](Self::insert); on error no row is inserted.
    fn insert_many<M: Model>(
        &self,
        models: &[M],
    ) -> impl Future<Output = Result<Vec<M::Key>>> + Send {
        // One statement for the batch: every row inserts the same columns, so
        // only the values are built per row.
        let built = (|| -> Result<_> {
            let Some(first) = models.first() else {
                return Ok(None);
            };
            let (sql, _) = model::insert_sql(first)?;
            let values = models
                .iter()
                .map(model::insert_values)
                .collect::<Result<Vec<_>>>()?;
            Ok(Some((sql, values)))
        })();
        let keys: Vec<M::Key> = if M::AUTO_KEY {
            Vec::new()
        } else {
            models.iter().map(Model::key).collect()
        };
        async move {
            let Some((sql, values)) = built? else {
                return Ok(Vec::new());
            };
            let rowids = self
                .__write(move |conn| {
                    let sp = conn.savepoint()?;
                    let mut rowids = Vec::with_capacity(values.len());
                    {
                        let mut stmt = sp
                            .prepare_cached(&sql)
                            .map_err(|e| Error::from(e).attach_sql(&sql))?;
                        for row in &values {
                            Params::bind(row, &mut stmt).map_err(|e| e.attach_sql(&sql))?;
                            stmt.raw_execute()
                                .map_err(|e| Error::from(e).attach_sql(&sql))?;
                            rowids.push(sp.last_insert_rowid());
                        }
                    }
                    sp.commit()?;
                    Ok(rowids)
                })
                .await?;
            if M::AUTO_KEY {
                rowids.into_iter().map(model::assigned_key::<M>).collect()
            } else {
                Ok(keys)
            }
        }
    }

    /// The row with this key, if any.
    ///
    /// # Errors
    /// As [`fetch_optional_as`](Self::fetch_optional_as).
    fn find<M: Model>(&self, key: M::Key) -> impl Future<Output = Result<Option<M>>> + Send {
        let built = model::find_sql::<M>(&key);
        async move {
            let (sql, values) = built?;
            self.fetch_optional_as(sql, values).await
        }
    }

    /// Writes every column of a model's row, found by its key; `false` when
    /// no row has that key.
    ///
    /// # Errors
    /// As [`insert`](Self::insert).
    fn update<M: Model>(&self, model: &M) -> impl Future<Output = Result<bool>> + Send {
        let built = model::update_sql(model);
        // Only a model with nothing but its key needs the existence check.
        let exists = matches!(built, Ok(None)).then(|| model::exists_sql::<M>(&model.key()));
        async move {
            match (built?, exists) {
                (Some((sql, values)), _) => Ok(self.__execute(sql.into(), values).await? > 0),
                // Nothing but the key: the row is "updated" if it exists.
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

    /// Deletes the row with this key; `false` when there was none.
    ///
    /// # Errors
    /// As `execute`.
    fn delete<M: Model>(&self, key: M::Key) -> impl Future<Output = Result<bool>> + Send {
        let built = model::delete_sql::<M>(&key);
        async move {
            let (sql, values) = built?;
            Ok(self.__execute(sql.into(), values).await? > 0)
        }
    }

    /// Inserts the row, or updates every other column of the row with its
    /// key (`INSERT ... ON CONFLICT (key) DO UPDATE`). Writes the key as
    /// given, integer keys included; returns it.
    ///
    /// # Errors
    /// As [`insert`](Self::insert).
    fn upsert<M: Model>(&self, model: &M) -> impl Future<Output = Result<M::Key>> + Send {
        let built = model::upsert_sql(model).map(|q| (q, model.key()));
        async move {
            let ((sql, values), key) = built?;
            self.__execute(sql.into(), values).await?;
            Ok(key)
        }
    }
}

macro_rules! forward {
    () => {
        fn __fetch_all_with<P: Params, D: RowDecoder>(
            &self,
            sql: Sql,
            params: P,
            decoder: D,
        ) -> impl Future<Output = Result<Vec<D::Output>>> + Send {
            self.fetch_all_with(sql, params, decoder)
        }

        fn __fetch_one_with<P: Params, D: RowDecoder>(
            &self,
            sql: Sql,
            params: P,
            decoder: D,
        ) -> impl Future<Output = Result<D::Output>> + Send {
            self.fetch_one_with(sql, params, decoder)
        }

        fn __fetch_optional_with<P: Params, D: RowDecoder>(
            &self,
            sql: Sql,
            params: P,
            decoder: D,
        ) -> impl Future<Output = Result<Option<D::Output>>> + Send {
            self.fetch_optional_with(sql, params, decoder)
        }

        fn __stream_with<P: Params, D: RowDecoder>(
            &self,
            sql: Sql,
            params: P,
            decoder: D,
        ) -> RowStream<D::Output> {
            self.stream_with(sql, params, decoder)
        }

        fn __execute<P: Params>(
            &self,
            sql: Sql,
            params: P,
        ) -> impl Future<Output = Result<usize>> + Send {
            self.execute(sql, params)
        }

        fn __execute_insert<P: Params>(
            &self,
            sql: Sql,
            params: P,
        ) -> impl Future<Output = Result<i64>> + Send {
            self.execute_insert(sql, params)
        }
    };
}

/// `$write` is the inherent method that runs a closure on the worker that
/// writes: `call` on a connection or transaction, `write` on a pool.
macro_rules! executor {
    ($ty:ty, $write:ident) => {
        impl Executor for $ty {
            forward!();

            fn __write<F, T>(&self, f: F) -> impl Future<Output = Result<T>> + Send
            where
                F: FnOnce(&mut rusqlite::Connection) -> Result<T> + Send + 'static,
                T: Send + 'static,
            {
                self.$write(f)
            }
        }
    };
}

executor!(Connection, call);
executor!(Transaction, call);
executor!(Savepoint<'_>, call);
executor!(Database, write);
