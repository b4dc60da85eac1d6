//! The statement methods, written once for every handle: [`Connection`],
//! [`Transaction`], [`Savepoint`] and [`Database`].
//!
//! Each handle provides three hooks, the only place they differ: `target`
//! (the queue a statement goes to: the connection's, a transaction's lease,
//! or for a pool the connection the statement routes to), `stream_of` (a
//! stream on that queue; a pool's picks its connection at the first poll),
//! and `scripts_must_close` (a pool's writer is shared, so a script may not
//! leave a transaction open on it). The macros below write the methods
//! against the hooks, and [`Handle`] (sealed, extended by aiolite-query's
//! typed `Executor`) offers the same methods to generic code.
//!
//! [`Connection`]: crate::Connection
//! [`Transaction`]: crate::Transaction
//! [`Savepoint`]: crate::Savepoint
//! [`Database`]: crate::Database

use std::future::Future;

use crate::error::Result;
use crate::params::Params;
use crate::row::{Column, Row};
use crate::row_decoder::RowDecoder;
use crate::sql::IntoSql;
use crate::stream::RowStream;

/// Where a statement goes on a pool (a single connection has one queue).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    /// Where SQLite and the pool's rules route this SQL text.
    BySql,
    /// The writer; transaction control is refused there.
    Writer,
    /// The writer, for a script or a `describe`.
    WriterAsIs,
}

mod sealed {
    pub trait Sealed {}
}

/// The statement methods of every handle, for generic code: implemented by
/// [`Connection`](crate::Connection), [`Transaction`](crate::Transaction),
/// [`Savepoint`](crate::Savepoint) and [`Database`](crate::Database) (whose
/// own methods of the same names are what plain code calls), and extended by
/// aiolite's typed `Executor`. Sealed: aiolite's handles are the only
/// implementations.
///
/// ```
/// use aiolite_conn::{Handle, Result};
///
/// /// Works on a connection, a transaction, a savepoint or a pool alike.
/// async fn count(h: &impl Handle, table: &str) -> Result<i64> {
///     h.fetch_one(format!("SELECT count(*) FROM {table}"), ()).await?.get(0)
/// }
/// ```
///
/// Each method is the handle's method of the same name: see
/// [`Connection::execute`](crate::Connection::execute) and its neighbours
/// for errors and cancel safety, which are the same here.
pub trait Handle: sealed::Sealed + Sync {
    /// [`Connection::execute`](crate::Connection::execute).
    fn execute<P: Params>(
        &self,
        sql: impl IntoSql,
        params: P,
    ) -> impl Future<Output = Result<usize>> + Send;

    /// [`Connection::execute_insert`](crate::Connection::execute_insert).
    fn execute_insert<P: Params>(
        &self,
        sql: impl IntoSql,
        params: P,
    ) -> impl Future<Output = Result<i64>> + Send;

    /// [`Connection::execute_many`](crate::Connection::execute_many).
    fn execute_many<I>(
        &self,
        sql: impl IntoSql,
        params: I,
    ) -> impl Future<Output = Result<usize>> + Send
    where
        I: IntoIterator + Send + 'static,
        I::IntoIter: Send,
        I::Item: Params;

    /// [`Connection::execute_script`](crate::Connection::execute_script).
    fn execute_script(&self, sql: impl IntoSql) -> impl Future<Output = Result<()>> + Send;

    /// [`Connection::fetch_all`](crate::Connection::fetch_all).
    fn fetch_all<P: Params>(
        &self,
        sql: impl IntoSql,
        params: P,
    ) -> impl Future<Output = Result<Vec<Row>>> + Send;

    /// [`Connection::fetch_one`](crate::Connection::fetch_one).
    fn fetch_one<P: Params>(
        &self,
        sql: impl IntoSql,
        params: P,
    ) -> impl Future<Output = Result<Row>> + Send;

    /// [`Connection::fetch_optional`](crate::Connection::fetch_optional).
    fn fetch_optional<P: Params>(
        &self,
        sql: impl IntoSql,
        params: P,
    ) -> impl Future<Output = Result<Option<Row>>> + Send;

    /// [`Connection::fetch_map`](crate::Connection::fetch_map).
    fn fetch_map<P, T, F>(
        &self,
        sql: impl IntoSql,
        params: P,
        f: F,
    ) -> impl Future<Output = Result<Vec<T>>> + Send
    where
        P: Params,
        T: Send + 'static,
        F: FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T> + Send + 'static;

    /// [`Connection::fetch_all_with`](crate::Connection::fetch_all_with).
    fn fetch_all_with<P: Params, D: RowDecoder>(
        &self,
        sql: impl IntoSql,
        params: P,
        decoder: D,
    ) -> impl Future<Output = Result<Vec<D::Output>>> + Send;

    /// [`Connection::fetch_optional_with`](crate::Connection::fetch_optional_with).
    fn fetch_optional_with<P: Params, D: RowDecoder>(
        &self,
        sql: impl IntoSql,
        params: P,
        decoder: D,
    ) -> impl Future<Output = Result<Option<D::Output>>> + Send;

    /// [`Connection::fetch_one_with`](crate::Connection::fetch_one_with).
    fn fetch_one_with<P: Params, D: RowDecoder>(
        &self,
        sql: impl IntoSql,
        params: P,
        decoder: D,
    ) -> impl Future<Output = Result<D::Output>> + Send;

    /// [`Connection::describe`](crate::Connection::describe).
    fn describe(&self, sql: impl IntoSql) -> impl Future<Output = Result<Vec<Column>>> + Send;

    /// [`Connection::stream`](crate::Connection::stream).
    fn stream<P: Params>(&self, sql: impl IntoSql, params: P) -> RowStream;

    /// [`Connection::stream_with`](crate::Connection::stream_with).
    fn stream_with<P: Params, D: RowDecoder>(
        &self,
        sql: impl IntoSql,
        params: P,
        decoder: D,
    ) -> RowStream<D::Output>;

    /// Runs `f` on the worker that writes: [`Connection::call`]
    /// (crate::Connection::call) on a connection or transaction,
    /// [`Database::write`](crate::Database::write) on a pool.
    #[doc(hidden)]
    fn __write<F, T>(&self, f: F) -> impl Future<Output = Result<T>> + Send
    where
        F: FnOnce(&mut rusqlite::Connection) -> Result<T> + Send + 'static,
        T: Send + 'static;
}

/// The statement methods of a handle, written against its hooks.
macro_rules! impl_query_methods {
    ($ty:ty) => {
        impl $ty {
            /// Runs one statement and returns the number of rows it changed
            /// (0 for statements that change none, such as DDL or SELECT).
            /// A statement that returns rows (`INSERT ... RETURNING`) is run to
            /// the end, its rows discarded.
            ///
            /// # Errors
            /// SQLite's error (with the SQL); [`Error::MultipleStatements`] for
            /// more than one statement (use `execute_script`);
            /// [`Error::ParameterCount`]; [`Error::NulInSql`];
            /// [`Error::Closed`](crate::Error::Closed).
            ///
            /// # Cancel safety
            /// Dropping the future cancels the request: skipped if it has not
            /// started, interrupted if it is running. A transaction it opened
            /// is rolled back.
            ///
            /// [`Error::MultipleStatements`]: crate::Error::MultipleStatements
            /// [`Error::ParameterCount`]: crate::Error::ParameterCount
            /// [`Error::NulInSql`]: crate::Error::NulInSql
            pub async fn execute<P: $crate::Params>(
                &self,
                sql: impl $crate::IntoSql,
                params: P,
            ) -> $crate::Result<usize> {
                let sql = $crate::IntoSql::into_sql(sql);
                let channel = self
                    .target(&sql, $crate::query_methods::Route::BySql)
                    .await?;
                channel.execute(sql, params).await
            }

            /// Runs one INSERT and returns the rowid of the inserted row
            /// (Python's `cursor.lastrowid`).
            ///
            /// # Errors
            /// As [`execute`](Self::execute).
            ///
            /// # Cancel safety
            /// As [`execute`](Self::execute).
            pub async fn execute_insert<P: $crate::Params>(
                &self,
                sql: impl $crate::IntoSql,
                params: P,
            ) -> $crate::Result<i64> {
                let sql = $crate::IntoSql::into_sql(sql);
                self.target(&sql, $crate::query_methods::Route::Writer)
                    .await?
                    .run(move |w| w.execute_insert(&sql, &params))
                    .await
            }

            /// Runs one statement once per parameter set (prepared once) and
            /// returns the total of rows changed. It opens no transaction of its
            /// own: wrap it in one for speed and atomicity.
            ///
            /// Inside a transaction, the parameter sets are drawn here, on
            /// the caller's thread, and sent in chunks while the worker
            /// inserts the chunk before: building the values and SQLite's work
            /// run side by side. Elsewhere, the iterator runs on the worker in
            /// one request, so other users of the connection cannot slip
            /// statements between its rows.
            ///
            /// A plain `INSERT INTO t(a, b) VALUES (?, ?)` (or `INSERT OR
            /// IGNORE`/`OR REPLACE`, `REPLACE INTO`; no upsert, `RETURNING`
            /// or comment) runs 32 sets at a time as one multi-row INSERT,
            /// with the outcome of the sets run alone: the same count, the
            /// same rows and triggers, and a failing set fails with the same
            /// error and the sets before it applied (a pack that fails is
            /// replayed one set at a time).
            ///
            /// # Errors
            /// As [`execute`](Self::execute); the sets before a failing one stay
            /// applied unless a transaction is rolled back.
            ///
            /// # Cancel safety
            /// As [`execute`](Self::execute).
            pub async fn execute_many<I>(
                &self,
                sql: impl $crate::IntoSql,
                params: I,
            ) -> $crate::Result<usize>
            where
                I: IntoIterator + Send + 'static,
                I::Item: $crate::Params,
            {
                let sql = $crate::IntoSql::into_sql(sql);
                let channel = self
                    .target(&sql, $crate::query_methods::Route::Writer)
                    .await?;
                if channel.is_lease() {
                    return channel.execute_many_in_chunks(sql, params).await;
                }
                channel
                    .run(move |w| w.execute_many::<_, I::Item>(&sql, params))
                    .await
            }

            /// Runs several `;`-separated statements (no parameters, no rows).
            ///
            /// # Errors
            /// The first statement's error; the ones before it stay applied
            /// unless inside a transaction.
            ///
            /// # Cancel safety
            /// As [`execute`](Self::execute).
            pub async fn execute_script(&self, sql: impl $crate::IntoSql) -> $crate::Result<()> {
                let sql = $crate::IntoSql::into_sql(sql);
                let shared_writer = self.scripts_must_close();
                self.target(&sql, $crate::query_methods::Route::WriterAsIs)
                    .await?
                    .run(move |w| {
                        w.execute_script(&sql)?;
                        if shared_writer && !w.conn.is_autocommit() {
                            // `BEGIN; ...; COMMIT;` scripts (a dump's) are
                            // fine; one that leaves its transaction open on a
                            // pool's writer would be rolled back after this
                            // request, silently.
                            w.rollback_if_open(
                                "a script left a transaction open on the pool's writer",
                            );
                            return Err($crate::Error::TransactionControl(
                                "the script left a transaction open; it was rolled back",
                            ));
                        }
                        Ok(())
                    })
                    .await
            }

            /// Runs a query and returns all its rows.
            ///
            /// # Errors
            /// As [`execute`](Self::execute).
            ///
            /// # Cancel safety
            /// As [`execute`](Self::execute).
            pub async fn fetch_all<P: $crate::Params>(
                &self,
                sql: impl $crate::IntoSql,
                params: P,
            ) -> $crate::Result<Vec<$crate::Row>> {
                let sql = $crate::IntoSql::into_sql(sql);
                self.target(&sql, $crate::query_methods::Route::BySql)
                    .await?
                    .run_query($crate::sql::looks_like_read(&sql), move |w| {
                        w.fetch_all(&sql, &params)
                    })
                    .await
            }

            /// Runs a query and returns its first row.
            ///
            /// # Errors
            /// [`Error::NoRows`](crate::Error::NoRows) when there is none;
            /// otherwise as [`execute`](Self::execute).
            ///
            /// # Cancel safety
            /// As [`execute`](Self::execute).
            pub async fn fetch_one<P: $crate::Params>(
                &self,
                sql: impl $crate::IntoSql,
                params: P,
            ) -> $crate::Result<$crate::Row> {
                let sql = $crate::IntoSql::into_sql(sql);
                self.target(&sql, $crate::query_methods::Route::BySql)
                    .await?
                    .run_query($crate::sql::looks_like_read(&sql), move |w| {
                        w.fetch_optional(&sql, &params)?
                            .ok_or_else(|| $crate::Error::NoRows {
                                sql: Some(sql.to_string()),
                            })
                    })
                    .await
            }

            /// Runs a query and returns its first row, if any.
            ///
            /// # Errors
            /// As [`execute`](Self::execute).
            ///
            /// # Cancel safety
            /// As [`execute`](Self::execute).
            pub async fn fetch_optional<P: $crate::Params>(
                &self,
                sql: impl $crate::IntoSql,
                params: P,
            ) -> $crate::Result<Option<$crate::Row>> {
                let sql = $crate::IntoSql::into_sql(sql);
                self.target(&sql, $crate::query_methods::Route::BySql)
                    .await?
                    .run_query($crate::sql::looks_like_read(&sql), move |w| {
                        w.fetch_optional(&sql, &params)
                    })
                    .await
            }

            /// Runs a query and maps each row with `f` **on the worker thread**,
            /// so only the finished values cross threads.
            ///
            /// # Errors
            /// `f`'s error; [`Error::Panic`](crate::Error::Panic) if it panics;
            /// otherwise as [`execute`](Self::execute).
            ///
            /// # Cancel safety
            /// As [`execute`](Self::execute).
            pub async fn fetch_map<P, T, F>(
                &self,
                sql: impl $crate::IntoSql,
                params: P,
                f: F,
            ) -> $crate::Result<Vec<T>>
            where
                P: $crate::Params,
                T: Send + 'static,
                F: FnMut(&$crate::rusqlite::Row<'_>) -> $crate::rusqlite::Result<T>
                    + Send
                    + 'static,
            {
                let sql = $crate::IntoSql::into_sql(sql);
                self.target(&sql, $crate::query_methods::Route::BySql)
                    .await?
                    .run_query($crate::sql::looks_like_read(&sql), move |w| {
                        w.fetch_map(&sql, &params, f)
                    })
                    .await
            }

            /// Runs a query and decodes every row with `decoder` **on the worker
            /// thread** (see [`RowDecoder`](crate::RowDecoder)).
            ///
            /// # Errors
            /// The decoder's error; otherwise as [`execute`](Self::execute).
            ///
            /// # Cancel safety
            /// As [`execute`](Self::execute).
            pub async fn fetch_all_with<P, D>(
                &self,
                sql: impl $crate::IntoSql,
                params: P,
                mut decoder: D,
            ) -> $crate::Result<Vec<D::Output>>
            where
                P: $crate::Params,
                D: $crate::RowDecoder,
            {
                let sql = $crate::IntoSql::into_sql(sql);
                self.target(&sql, $crate::query_methods::Route::BySql)
                    .await?
                    .run_query($crate::sql::looks_like_read(&sql), move |w| {
                        w.decode_rows(&sql, &params, &mut decoder, usize::MAX)
                    })
                    .await
            }

            /// The first row decoded with `decoder` on the worker, if any.
            ///
            /// # Errors
            /// As [`fetch_all_with`](Self::fetch_all_with).
            ///
            /// # Cancel safety
            /// As [`execute`](Self::execute).
            pub async fn fetch_optional_with<P, D>(
                &self,
                sql: impl $crate::IntoSql,
                params: P,
                mut decoder: D,
            ) -> $crate::Result<Option<D::Output>>
            where
                P: $crate::Params,
                D: $crate::RowDecoder,
            {
                let sql = $crate::IntoSql::into_sql(sql);
                self.target(&sql, $crate::query_methods::Route::BySql)
                    .await?
                    .run_query($crate::sql::looks_like_read(&sql), move |w| {
                        Ok(w.decode_rows(&sql, &params, &mut decoder, 1)?.pop())
                    })
                    .await
            }

            /// The first row decoded with `decoder` on the worker;
            /// [`Error::NoRows`](crate::Error::NoRows) if there is none.
            ///
            /// # Errors
            /// As [`fetch_all_with`](Self::fetch_all_with).
            ///
            /// # Cancel safety
            /// As [`execute`](Self::execute).
            pub async fn fetch_one_with<P, D>(
                &self,
                sql: impl $crate::IntoSql,
                params: P,
                mut decoder: D,
            ) -> $crate::Result<D::Output>
            where
                P: $crate::Params,
                D: $crate::RowDecoder,
            {
                let sql = $crate::IntoSql::into_sql(sql);
                self.target(&sql, $crate::query_methods::Route::BySql)
                    .await?
                    .run_query($crate::sql::looks_like_read(&sql), move |w| {
                        w.decode_rows(&sql, &params, &mut decoder, 1)?
                            .pop()
                            .ok_or_else(|| $crate::Error::NoRows {
                                sql: Some(sql.to_string()),
                            })
                    })
                    .await
            }

            /// The columns a statement would return (names and declared types,
            /// Python's `cursor.description`), without running it.
            ///
            /// # Errors
            /// As [`execute`](Self::execute).
            ///
            /// # Cancel safety
            /// Cancel safe.
            pub async fn describe(
                &self,
                sql: impl $crate::IntoSql,
            ) -> $crate::Result<Vec<$crate::Column>> {
                let sql = $crate::IntoSql::into_sql(sql);
                self.target(&sql, $crate::query_methods::Route::WriterAsIs)
                    .await?
                    .run(move |w| w.describe(&sql))
                    .await
            }

            /// Streams a query's rows, fetched from the worker in chunks
            /// (`iter_chunk_size` rows first, growing to a few hundred KiB)
            /// with one chunk fetched ahead: memory stays
            /// bounded whatever the size of the result, and other requests on
            /// the connection are served between chunks. Dropping the stream
            /// finalizes its statement. A statement that writes
            /// (`INSERT ... RETURNING`) runs to completion before its first row
            /// is yielded.
            ///
            /// Nothing is sent until the stream is first polled.
            pub fn stream<P: $crate::Params>(
                &self,
                sql: impl $crate::IntoSql,
                params: P,
            ) -> $crate::RowStream {
                self.stream_of(
                    $crate::IntoSql::into_sql(sql),
                    Box::new(params),
                    Box::new($crate::worker::RowBlocks::default()),
                )
            }

            /// Streams a query's rows decoded with `decoder` **on the worker
            /// thread** (see [`RowDecoder`](crate::RowDecoder)): only the
            /// finished values cross threads, chunk by chunk, as in
            /// [`stream`](Self::stream). The decoder keeps its state from one
            /// chunk to the next.
            ///
            /// Nothing is sent until the stream is first polled.
            pub fn stream_with<P, D>(
                &self,
                sql: impl $crate::IntoSql,
                params: P,
                decoder: D,
            ) -> $crate::RowStream<D::Output>
            where
                P: $crate::Params,
                D: $crate::RowDecoder,
            {
                self.stream_of(
                    $crate::IntoSql::into_sql(sql),
                    Box::new(params),
                    Box::new($crate::worker::Decoded::new(decoder)),
                )
            }
        }
    };
}

/// The hooks of a handle that is one queue (a connection, a transaction's
/// lease): every statement goes to `self.channel()`.
macro_rules! one_queue_hooks {
    ($ty:ty) => {
        impl $ty {
            /// The queue every statement goes to (see `query_methods`).
            pub(crate) async fn target(
                &self,
                _sql: &str,
                _to: $crate::query_methods::Route,
            ) -> $crate::Result<&$crate::channel::Channel> {
                Ok(self.channel())
            }

            pub(crate) fn stream_of<T: Send + 'static>(
                &self,
                sql: $crate::sql::Sql,
                params: Box<dyn $crate::Params>,
                reader: Box<dyn $crate::worker::ReadChunk<Item = T>>,
            ) -> $crate::RowStream<T> {
                $crate::RowStream::new(self.channel().clone(), sql, params, reader)
            }

            pub(crate) fn scripts_must_close(&self) -> bool {
                false
            }
        }
    };
}

/// `call` for the handles that are one connection (a pool has `read` and
/// `write` instead).
macro_rules! impl_call {
    ($ty:ty) => {
        impl $ty {
            /// Runs `f` with the `rusqlite::Connection` on the worker thread: the
            /// escape hatch for anything rusqlite can do. `f`'s own error type
            /// is kept; it only has to accept aiolite's errors through `From`
            /// ([`Error`](crate::Error) itself converts from `rusqlite::Error`).
            ///
            /// ```
            /// # async fn demo(conn: aiolite_conn::Connection) -> aiolite_conn::Result<()> {
            /// let version: String = conn
            ///     .call(|c| Ok::<_, aiolite_conn::Error>(c.query_row("SELECT sqlite_version()", [], |r| r.get(0))?))
            ///     .await?;
            /// # Ok(()) }
            /// ```
            ///
            /// # Errors
            /// `f`'s error; [`Error::Panic`](crate::Error::Panic) or
            /// [`Error::Closed`](crate::Error::Closed) converted into `E`.
            ///
            /// # Cancel safety
            /// A closure that has not started is skipped; one that runs is not
            /// stopped (statements inside it are interrupted), and a transaction
            /// it opened without the caller seeing the result is rolled back.
            pub async fn call<F, T, E>(&self, f: F) -> Result<T, E>
            where
                F: FnOnce(&mut $crate::rusqlite::Connection) -> Result<T, E> + Send + 'static,
                T: Send + 'static,
                E: From<$crate::Error> + Send + 'static,
            {
                let r = self.channel().run(move |w| {
                    let r = f(&mut w.conn);
                    w.note_schema(None);
                    Ok(r)
                });
                match r.await {
                    Ok(r) => r,
                    Err(e) => Err(E::from(e)),
                }
            }
        }
    };
}

/// [`Handle`] for a handle, forwarding to its own methods; `$write` runs a
/// closure on the worker that writes (`call`, or a pool's `write`).
macro_rules! impl_handle {
    ($ty:ty, $write:ident) => {
        impl $crate::query_methods::Sealed for $ty {}

        impl $crate::Handle for $ty {
            fn execute<P: $crate::Params>(
                &self,
                sql: impl $crate::IntoSql,
                params: P,
            ) -> impl ::std::future::Future<Output = $crate::Result<usize>> + Send {
                <$ty>::execute(self, $crate::IntoSql::into_sql(sql), params)
            }

            fn execute_insert<P: $crate::Params>(
                &self,
                sql: impl $crate::IntoSql,
                params: P,
            ) -> impl ::std::future::Future<Output = $crate::Result<i64>> + Send {
                <$ty>::execute_insert(self, $crate::IntoSql::into_sql(sql), params)
            }

            fn execute_many<I>(
                &self,
                sql: impl $crate::IntoSql,
                params: I,
            ) -> impl ::std::future::Future<Output = $crate::Result<usize>> + Send
            where
                I: IntoIterator + Send + 'static,
                I::IntoIter: Send,
                I::Item: $crate::Params,
            {
                <$ty>::execute_many(self, $crate::IntoSql::into_sql(sql), params)
            }

            fn execute_script(
                &self,
                sql: impl $crate::IntoSql,
            ) -> impl ::std::future::Future<Output = $crate::Result<()>> + Send {
                <$ty>::execute_script(self, $crate::IntoSql::into_sql(sql))
            }

            fn fetch_all<P: $crate::Params>(
                &self,
                sql: impl $crate::IntoSql,
                params: P,
            ) -> impl ::std::future::Future<Output = $crate::Result<Vec<$crate::Row>>> + Send {
                <$ty>::fetch_all(self, $crate::IntoSql::into_sql(sql), params)
            }

            fn fetch_one<P: $crate::Params>(
                &self,
                sql: impl $crate::IntoSql,
                params: P,
            ) -> impl ::std::future::Future<Output = $crate::Result<$crate::Row>> + Send {
                <$ty>::fetch_one(self, $crate::IntoSql::into_sql(sql), params)
            }

            fn fetch_optional<P: $crate::Params>(
                &self,
                sql: impl $crate::IntoSql,
                params: P,
            ) -> impl ::std::future::Future<Output = $crate::Result<Option<$crate::Row>>> + Send
            {
                <$ty>::fetch_optional(self, $crate::IntoSql::into_sql(sql), params)
            }

            fn fetch_map<P, T, F>(
                &self,
                sql: impl $crate::IntoSql,
                params: P,
                f: F,
            ) -> impl ::std::future::Future<Output = $crate::Result<Vec<T>>> + Send
            where
                P: $crate::Params,
                T: Send + 'static,
                F: FnMut(&$crate::rusqlite::Row<'_>) -> $crate::rusqlite::Result<T>
                    + Send
                    + 'static,
            {
                <$ty>::fetch_map(self, $crate::IntoSql::into_sql(sql), params, f)
            }

            fn fetch_all_with<P: $crate::Params, D: $crate::RowDecoder>(
                &self,
                sql: impl $crate::IntoSql,
                params: P,
                decoder: D,
            ) -> impl ::std::future::Future<Output = $crate::Result<Vec<D::Output>>> + Send {
                <$ty>::fetch_all_with(self, $crate::IntoSql::into_sql(sql), params, decoder)
            }

            fn fetch_optional_with<P: $crate::Params, D: $crate::RowDecoder>(
                &self,
                sql: impl $crate::IntoSql,
                params: P,
                decoder: D,
            ) -> impl ::std::future::Future<Output = $crate::Result<Option<D::Output>>> + Send {
                <$ty>::fetch_optional_with(self, $crate::IntoSql::into_sql(sql), params, decoder)
            }

            fn fetch_one_with<P: $crate::Params, D: $crate::RowDecoder>(
                &self,
                sql: impl $crate::IntoSql,
                params: P,
                decoder: D,
            ) -> impl ::std::future::Future<Output = $crate::Result<D::Output>> + Send {
                <$ty>::fetch_one_with(self, $crate::IntoSql::into_sql(sql), params, decoder)
            }

            fn describe(
                &self,
                sql: impl $crate::IntoSql,
            ) -> impl ::std::future::Future<Output = $crate::Result<Vec<$crate::Column>>> + Send
            {
                <$ty>::describe(self, $crate::IntoSql::into_sql(sql))
            }

            fn stream<P: $crate::Params>(
                &self,
                sql: impl $crate::IntoSql,
                params: P,
            ) -> $crate::RowStream {
                <$ty>::stream(self, sql, params)
            }

            fn stream_with<P: $crate::Params, D: $crate::RowDecoder>(
                &self,
                sql: impl $crate::IntoSql,
                params: P,
                decoder: D,
            ) -> $crate::RowStream<D::Output> {
                <$ty>::stream_with(self, sql, params, decoder)
            }

            fn __write<F, T>(
                &self,
                f: F,
            ) -> impl ::std::future::Future<Output = $crate::Result<T>> + Send
            where
                F: FnOnce(&mut $crate::rusqlite::Connection) -> $crate::Result<T> + Send + 'static,
                T: Send + 'static,
            {
                <$ty>::$write(self, f)
            }
        }
    };
}

pub(crate) use sealed::Sealed;
pub(crate) use {impl_call, impl_handle, impl_query_methods, one_queue_hooks};
