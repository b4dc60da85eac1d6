//! User-defined SQL functions, aggregates, window functions and collations.
//!
//! Each callback is registered through the worker and runs on it. A panic
//! inside one fails the statement calling it with [`Error::Panic`] (naming the
//! function) instead of unwinding into SQLite; the connection keeps working.

use std::cmp::Ordering;
use std::panic::{catch_unwind, AssertUnwindSafe, RefUnwindSafe, UnwindSafe};
use std::sync::Arc;

pub use rusqlite::functions::{Aggregate, Context, FunctionFlags, SqlFnOutput, WindowAggregate};

use crate::connection::Connection;
use crate::error::{panic_text, Error, Result};
use crate::pool::Database;
use crate::worker::guarded;
use crate::worker::Shared;

/// The error SQLite reports for a callback that panicked; the request's
/// [`Error::Panic`] carries the same text.
#[derive(Debug)]
struct CallbackPanicked(String);

impl std::fmt::Display for CallbackPanicked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CallbackPanicked {}

/// Runs one call of a function's callback: a panic becomes an error for the
/// statement (so SQLite stops it) and the request's fault.
fn call<R>(
    shared: &Shared,
    name: &str,
    f: impl FnOnce() -> rusqlite::Result<R>,
) -> rusqlite::Result<R> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(payload) => {
            let message = format!("function {name:?} panicked: {}", panic_text(&*payload));
            shared.fault(message.clone());
            Err(rusqlite::Error::UserFunctionError(Box::new(
                CallbackPanicked(message),
            )))
        }
    }
}

/// SQLite needs a text encoding among the flags; UTF-8 unless one is given.
fn with_encoding(flags: FunctionFlags) -> FunctionFlags {
    let encodings = FunctionFlags::SQLITE_UTF8
        | FunctionFlags::SQLITE_UTF16LE
        | FunctionFlags::SQLITE_UTF16BE
        | FunctionFlags::SQLITE_UTF16;
    if flags.intersects(encodings) {
        flags
    } else {
        flags | FunctionFlags::SQLITE_UTF8
    }
}

fn check_arity(n_args: i32) -> Result<()> {
    if (-1..=127).contains(&n_args) {
        Ok(())
    } else {
        Err(Error::Misuse(format!(
            "a SQL function takes -1 (any number) to 127 arguments, not {n_args}"
        )))
    }
}

/// An aggregate or window function whose every callback is guarded.
struct Guarded<D> {
    inner: D,
    name: String,
    shared: Arc<Shared>,
}

impl<A, T, D> Aggregate<A, T> for Guarded<D>
where
    A: RefUnwindSafe + UnwindSafe,
    T: SqlFnOutput,
    D: Aggregate<A, T>,
{
    fn init(&self, ctx: &mut Context<'_>) -> rusqlite::Result<A> {
        call(&self.shared, &self.name, || self.inner.init(ctx))
    }

    fn step(&self, ctx: &mut Context<'_>, acc: &mut A) -> rusqlite::Result<()> {
        call(&self.shared, &self.name, || self.inner.step(ctx, acc))
    }

    fn finalize(&self, ctx: &mut Context<'_>, acc: Option<A>) -> rusqlite::Result<T> {
        call(&self.shared, &self.name, || self.inner.finalize(ctx, acc))
    }
}

impl<A, T, W> WindowAggregate<A, T> for Guarded<W>
where
    A: RefUnwindSafe + UnwindSafe,
    T: SqlFnOutput,
    W: WindowAggregate<A, T>,
{
    fn value(&self, acc: Option<&mut A>) -> rusqlite::Result<T> {
        call(&self.shared, &self.name, || self.inner.value(acc))
    }

    fn inverse(&self, ctx: &mut Context<'_>, acc: &mut A) -> rusqlite::Result<()> {
        call(&self.shared, &self.name, || self.inner.inverse(ctx, acc))
    }
}

/// One implementation shared by every connection of a pool.
pub(crate) struct Shareable<D>(pub(crate) Arc<D>);

impl<A, T, D> Aggregate<A, T> for Shareable<D>
where
    A: RefUnwindSafe + UnwindSafe,
    T: SqlFnOutput,
    D: Aggregate<A, T>,
{
    fn init(&self, ctx: &mut Context<'_>) -> rusqlite::Result<A> {
        self.0.init(ctx)
    }

    fn step(&self, ctx: &mut Context<'_>, acc: &mut A) -> rusqlite::Result<()> {
        self.0.step(ctx, acc)
    }

    fn finalize(&self, ctx: &mut Context<'_>, acc: Option<A>) -> rusqlite::Result<T> {
        self.0.finalize(ctx, acc)
    }
}

impl<A, T, W> WindowAggregate<A, T> for Shareable<W>
where
    A: RefUnwindSafe + UnwindSafe,
    T: SqlFnOutput,
    W: WindowAggregate<A, T>,
{
    fn value(&self, acc: Option<&mut A>) -> rusqlite::Result<T> {
        self.0.value(acc)
    }

    fn inverse(&self, ctx: &mut Context<'_>, acc: &mut A) -> rusqlite::Result<()> {
        self.0.inverse(ctx, acc)
    }
}

impl Connection {
    /// Registers a scalar SQL function (Python's `create_function`): `n_args`
    /// is the argument count, `-1` for any; `flags` may carry
    /// `SQLITE_DETERMINISTIC` (required to use it in an index or a generated
    /// column), `SQLITE_INNOCUOUS` and `SQLITE_DIRECTONLY` (UTF-8 is added when
    /// no encoding is given). aiolite opens connections with
    /// `trusted_schema` off, so a function called from the schema (an index,
    /// a view, a trigger, a CHECK) must also be `SQLITE_INNOCUOUS`. A function of the same name and arity is
    /// replaced. `f` returns any `ToSql` value, or an error that fails the
    /// statement.
    ///
    /// ```
    /// # async fn demo(conn: aiolite_conn::Connection) -> aiolite_conn::Result<()> {
    /// use aiolite_conn::functions::FunctionFlags;
    ///
    /// conn.create_function("halve", 1, FunctionFlags::SQLITE_DETERMINISTIC, |ctx| {
    ///     Ok(ctx.get::<f64>(0)? / 2.0)
    /// })
    /// .await?;
    /// let v: f64 = conn.fetch_one("SELECT halve(7)", ()).await?.get(0)?;
    /// assert_eq!(v, 3.5);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// SQLite's error (e.g. the name is too long, or the function is in use
    /// by a running statement); [`Error::Misuse`](crate::Error::Misuse) for an arity outside -1..=127.
    ///
    /// # Cancel safety
    /// Cancel safe: once queued, the registration happens.
    pub async fn create_function<F, T>(
        &self,
        name: &str,
        n_args: i32,
        flags: FunctionFlags,
        f: F,
    ) -> Result<()>
    where
        F: Fn(&Context<'_>) -> rusqlite::Result<T> + Send + 'static,
        T: SqlFnOutput,
    {
        check_arity(n_args)?;
        let name = name.to_owned();
        self.channel()
            .run(move |w| {
                let shared = Arc::clone(&w.shared);
                let label = name.clone();
                w.conn.create_scalar_function(
                    name.as_str(),
                    n_args,
                    with_encoding(flags),
                    move |ctx| call(&shared, &label, || f(ctx)),
                )?;
                Ok(())
            })
            .await
    }

    /// Registers an aggregate SQL function (Python's `create_aggregate`),
    /// implemented with rusqlite's [`Aggregate`]: `init` makes the state,
    /// `step` takes each row, `finalize` gives the result.
    ///
    /// ```
    /// # async fn demo(conn: aiolite_conn::Connection) -> aiolite_conn::Result<()> {
    /// use aiolite_conn::functions::{Aggregate, Context, FunctionFlags};
    ///
    /// struct Product;
    /// impl Aggregate<i64, i64> for Product {
    ///     fn init(&self, _: &mut Context<'_>) -> aiolite_conn::rusqlite::Result<i64> { Ok(1) }
    ///     fn step(&self, ctx: &mut Context<'_>, acc: &mut i64) -> aiolite_conn::rusqlite::Result<()> {
    ///         *acc *= ctx.get::<i64>(0)?;
    ///         Ok(())
    ///     }
    ///     fn finalize(&self, _: &mut Context<'_>, acc: Option<i64>) -> aiolite_conn::rusqlite::Result<i64> {
    ///         Ok(acc.unwrap_or(1))
    ///     }
    /// }
    /// conn.create_aggregate("product", 1, FunctionFlags::SQLITE_DETERMINISTIC, Product).await?;
    /// let v: i64 = conn
    ///     .fetch_one("SELECT product(column1) FROM (VALUES (1), (2), (3), (4), (5))", ())
    ///     .await?
    ///     .get(0)?;
    /// assert_eq!(v, 120);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`create_function`](Connection::create_function).
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn create_aggregate<A, T, D>(
        &self,
        name: &str,
        n_args: i32,
        flags: FunctionFlags,
        aggregate: D,
    ) -> Result<()>
    where
        A: RefUnwindSafe + UnwindSafe + Send,
        T: SqlFnOutput,
        D: Aggregate<A, T> + Send + 'static,
    {
        self.register_guarded(name, n_args, aggregate, move |conn, name, guarded| {
            conn.create_aggregate_function(name, n_args, with_encoding(flags), guarded)
        })
        .await
    }

    /// Registers an aggregate that also works as a window function
    /// (`OVER (...)`), implemented with rusqlite's [`WindowAggregate`]:
    /// `value` gives the current result, `inverse` removes the row leaving
    /// the window.
    ///
    /// # Errors
    /// As [`create_function`](Connection::create_function).
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn create_window_function<A, T, W>(
        &self,
        name: &str,
        n_args: i32,
        flags: FunctionFlags,
        window: W,
    ) -> Result<()>
    where
        A: RefUnwindSafe + UnwindSafe + Send,
        T: SqlFnOutput,
        W: WindowAggregate<A, T> + Send + 'static,
    {
        self.register_guarded(name, n_args, window, move |conn, name, guarded| {
            conn.create_window_function(name, n_args, with_encoding(flags), guarded)
        })
        .await
    }

    /// Registers `inner` wrapped so its every callback is guarded.
    async fn register_guarded<D, R>(
        &self,
        name: &str,
        n_args: i32,
        inner: D,
        register: R,
    ) -> Result<()>
    where
        D: Send + 'static,
        R: FnOnce(&mut rusqlite::Connection, &str, Guarded<D>) -> rusqlite::Result<()>
            + Send
            + 'static,
    {
        check_arity(n_args)?;
        let name = name.to_owned();
        self.channel()
            .run(move |w| {
                let guarded = Guarded {
                    inner,
                    name: name.clone(),
                    shared: Arc::clone(&w.shared),
                };
                register(&mut w.conn, &name, guarded)?;
                Ok(())
            })
            .await
    }

    /// Removes the function registered under `name` with `n_args` arguments.
    ///
    /// # Errors
    /// SQLite's error (e.g. the function is in use by a running statement).
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn remove_function(&self, name: &str, n_args: i32) -> Result<()> {
        check_arity(n_args)?;
        let name = name.to_owned();
        self.channel()
            .run(move |w| Ok(w.conn.remove_function(name.as_str(), n_args)?))
            .await
    }

    /// Registers a collation (Python's `create_collation`), used as
    /// `ORDER BY x COLLATE name` or in a column definition. A collation
    /// cannot report an error to SQLite: if `compare` panics, the statement
    /// is stopped and fails with [`Error::Panic`].
    ///
    /// ```
    /// # async fn demo(conn: aiolite_conn::Connection) -> aiolite_conn::Result<()> {
    /// conn.create_collation("reverse", |a, b| b.cmp(a)).await?;
    /// let first: String = conn
    ///     .fetch_one("SELECT column1 FROM (VALUES ('a'), ('b')) ORDER BY 1 COLLATE reverse", ())
    ///     .await?
    ///     .get(0)?;
    /// assert_eq!(first, "b");
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// SQLite's error.
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn create_collation<C>(&self, name: &str, compare: C) -> Result<()>
    where
        C: Fn(&str, &str) -> Ordering + Send + 'static,
    {
        let name = name.to_owned();
        self.channel()
            .run(move |w| {
                let shared = Arc::clone(&w.shared);
                let what = format!("collation {name:?}");
                w.conn.create_collation(name.as_str(), move |a, b| {
                    guarded(&shared, &what, Ordering::Equal, || compare(a, b))
                })?;
                Ok(())
            })
            .await
    }

    /// Removes a collation (Python's `create_collation(name, None)`).
    ///
    /// # Errors
    /// SQLite's error.
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn remove_collation(&self, name: &str) -> Result<()> {
        let name = name.to_owned();
        self.channel()
            .run(move |w| Ok(w.conn.remove_collation(name.as_str())?))
            .await
    }
}

/// On a pool, each registration goes to every connection (writer and
/// readers), so a statement finds the function wherever it is routed. The
/// callbacks are shared, hence `Sync`. To have them from the moment each
/// connection opens (before migrations run, say), register them in
/// [`ConnectOptions::on_open`](crate::ConnectOptions::on_open) and pass the
/// options to [`DatabaseBuilder::options`](crate::DatabaseBuilder::options).
impl Database {
    /// A scalar SQL function with effects a reader must not have: it writes
    /// (through an extension or the connection it runs on), or reads the
    /// state of one connection. Registered on the writer only, and a
    /// statement that calls it is sent to the writer, where a reader would
    /// fail with "attempt to write a readonly database" or "no such
    /// function". Otherwise as [`Connection::create_function`].
    ///
    /// ```
    /// # async fn demo(db: aiolite_conn::Database) -> aiolite_conn::Result<()> {
    /// use aiolite_conn::functions::FunctionFlags;
    ///
    /// db.create_function_on_writer("next_ticket", 0, FunctionFlags::empty(), |_| Ok(42))
    ///     .await?;
    /// // Routed to the writer, as a write would be.
    /// let t: i64 = db.fetch_one("SELECT next_ticket()", ()).await?.get(0)?;
    /// # let _ = t; Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`Connection::create_function`].
    ///
    /// # Cancel safety
    /// Cancel safe: once queued, the registration happens.
    pub async fn create_function_on_writer<F, T>(
        &self,
        name: &str,
        n_args: i32,
        flags: FunctionFlags,
        f: F,
    ) -> Result<()>
    where
        F: Fn(&Context<'_>) -> rusqlite::Result<T> + Send + 'static,
        T: SqlFnOutput,
    {
        self.writer()
            .create_function(name, n_args, flags, f)
            .await?;
        self.route_to_writer(name);
        Ok(())
    }

    /// [`Connection::create_function`] on every connection of the pool.
    ///
    /// # Errors
    /// The first connection's error; connections before it keep the function.
    ///
    /// # Cancel safety
    /// Dropping the future may leave the function on some connections only.
    pub async fn create_function<F, T>(
        &self,
        name: &str,
        n_args: i32,
        flags: FunctionFlags,
        f: F,
    ) -> Result<()>
    where
        F: Fn(&Context<'_>) -> rusqlite::Result<T> + Send + Sync + 'static,
        T: SqlFnOutput,
    {
        let f = Arc::new(f);
        for conn in self.connections() {
            let f = Arc::clone(&f);
            conn.create_function(name, n_args, flags, move |ctx| f(ctx))
                .await?;
        }
        Ok(())
    }

    /// [`Connection::create_aggregate`] on every connection of the pool.
    ///
    /// # Errors
    /// As [`create_function`](Database::create_function).
    ///
    /// # Cancel safety
    /// As [`create_function`](Database::create_function).
    pub async fn create_aggregate<A, T, D>(
        &self,
        name: &str,
        n_args: i32,
        flags: FunctionFlags,
        aggregate: D,
    ) -> Result<()>
    where
        A: RefUnwindSafe + UnwindSafe + Send,
        T: SqlFnOutput,
        D: Aggregate<A, T> + Send + Sync + 'static,
    {
        let aggregate = Arc::new(aggregate);
        for conn in self.connections() {
            conn.create_aggregate(name, n_args, flags, Shareable(Arc::clone(&aggregate)))
                .await?;
        }
        Ok(())
    }

    /// [`Connection::create_window_function`] on every connection of the pool.
    ///
    /// # Errors
    /// As [`create_function`](Database::create_function).
    ///
    /// # Cancel safety
    /// As [`create_function`](Database::create_function).
    pub async fn create_window_function<A, T, W>(
        &self,
        name: &str,
        n_args: i32,
        flags: FunctionFlags,
        window: W,
    ) -> Result<()>
    where
        A: RefUnwindSafe + UnwindSafe + Send,
        T: SqlFnOutput,
        W: WindowAggregate<A, T> + Send + Sync + 'static,
    {
        let window = Arc::new(window);
        for conn in self.connections() {
            conn.create_window_function(name, n_args, flags, Shareable(Arc::clone(&window)))
                .await?;
        }
        Ok(())
    }

    /// [`Connection::remove_function`] on every connection of the pool.
    ///
    /// # Errors
    /// As [`create_function`](Database::create_function).
    ///
    /// # Cancel safety
    /// As [`create_function`](Database::create_function).
    pub async fn remove_function(&self, name: &str, n_args: i32) -> Result<()> {
        for conn in self.connections() {
            conn.remove_function(name, n_args).await?;
        }
        Ok(())
    }

    /// [`Connection::create_collation`] on every connection of the pool.
    ///
    /// # Errors
    /// As [`create_function`](Database::create_function).
    ///
    /// # Cancel safety
    /// As [`create_function`](Database::create_function).
    pub async fn create_collation<C>(&self, name: &str, compare: C) -> Result<()>
    where
        C: Fn(&str, &str) -> Ordering + Send + Sync + 'static,
    {
        let compare = Arc::new(compare);
        for conn in self.connections() {
            let compare = Arc::clone(&compare);
            conn.create_collation(name, move |a, b| compare(a, b))
                .await?;
        }
        Ok(())
    }

    /// [`Connection::remove_collation`] on every connection of the pool.
    ///
    /// # Errors
    /// As [`create_function`](Database::create_function).
    ///
    /// # Cancel safety
    /// As [`create_function`](Database::create_function).
    pub async fn remove_collation(&self, name: &str) -> Result<()> {
        for conn in self.connections() {
            conn.remove_collation(name).await?;
        }
        Ok(())
    }
}
