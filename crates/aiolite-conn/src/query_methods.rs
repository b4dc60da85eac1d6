//! The statement methods shared by [`Connection`](crate::Connection) and
//! [`Transaction`](crate::Transaction), written once. Each type provides
//! `fn channel(&self) -> &Channel`: the connection's queue, or the
//! transaction's lease.

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
                self.channel().run(move |w| w.execute(&sql, &params)).await
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
                self.channel()
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
                let channel = self.channel();
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
                self.channel().run(move |w| w.execute_script(&sql)).await
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
                self.channel()
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
                self.channel()
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
                self.channel()
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
            pub async fn query_map<P, T, F>(
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
                self.channel()
                    .run_query($crate::sql::looks_like_read(&sql), move |w| {
                        w.query_map(&sql, &params, f)
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
                self.channel()
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
                self.channel()
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
                self.channel()
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
                self.channel().run(move |w| w.describe(&sql)).await
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
                $crate::RowStream::new(
                    self.channel().clone(),
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
                $crate::RowStream::new(
                    self.channel().clone(),
                    $crate::IntoSql::into_sql(sql),
                    Box::new(params),
                    Box::new($crate::worker::Decoded::new(decoder)),
                )
            }

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

pub(crate) use impl_query_methods;
