//! Hooks and callbacks: progress handler, trace callback, authorizer, and the
//! update, commit and rollback hooks.
//!
//! Every user callback runs on the connection's worker thread, inside
//! `catch_unwind`: a panic stops the statement that triggered it and becomes
//! that request's [`Error::Panic`](crate::Error::Panic), and the connection keeps working.

use std::sync::Arc;

pub use rusqlite::hooks::{Action, AuthAction, AuthContext, Authorization};
use rusqlite::trace::{TraceEvent, TraceEventCodes};

use crate::connection::Connection;
use crate::error::Result;
use crate::pool::Database;
use crate::worker::{
    guarded, install_commit_hook, install_progress_handler, CommitFn, ProgressFn, Shared,
};

/// Hands SQLite's statement events to the user's callback, with the SQL
/// expanded as Python's sqlite3 passes it.
fn route_trace(
    shared: Arc<Shared>,
    mut f: impl FnMut(&str) + Send + 'static,
) -> impl FnMut(TraceEvent<'_>) + Send + 'static {
    move |event| {
        let TraceEvent::Stmt(stmt, sql) = event else {
            return;
        };
        let text = stmt.expanded_sql();
        let text = text.as_deref().unwrap_or(sql);
        guarded(&shared, "the trace callback", (), || f(text));
    }
}

impl Connection {
    /// Calls `f` every `n` SQLite virtual-machine instructions while a statement
    /// runs; when it returns `true`, the statement is interrupted (Python's
    /// `set_progress_handler`). `None` (or `n <= 0`) removes it. Chained with
    /// aiolite's own handler, which stops requests whose caller went away.
    ///
    /// ```
    /// # async fn demo(conn: aiolite_conn::Connection) -> aiolite_conn::Result<()> {
    /// conn.set_progress_handler(100, Some(|| false)).await?;
    /// conn.set_progress_handler(0, None::<fn() -> bool>).await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::Closed`](crate::Error::Closed).
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn set_progress_handler<F>(&self, n: i32, f: Option<F>) -> Result<()>
    where
        F: FnMut() -> bool + Send + 'static,
    {
        let user = match f {
            Some(f) if n > 0 => Some((n, Box::new(f) as ProgressFn)),
            _ => None,
        };
        self.channel()
            .run(move |w| Ok(install_progress_handler(&mut w.conn, &w.shared, user)?))
            .await
    }

    /// Calls `f` with the SQL text of every statement as it starts running,
    /// parameters expanded (Python's `set_trace_callback`), including
    /// statements run by triggers and by aiolite itself (`BEGIN`, `COMMIT`).
    /// `None` removes it. The callback belongs to this connection only.
    ///
    /// # Errors
    /// [`Error::Closed`](crate::Error::Closed).
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn set_trace_callback<F>(&self, f: Option<F>) -> Result<()>
    where
        F: FnMut(&str) + Send + 'static,
    {
        self.channel()
            .run(move |w| {
                match f {
                    Some(f) => w.conn.trace_v2(
                        TraceEventCodes::SQLITE_TRACE_STMT,
                        Some(route_trace(Arc::clone(&w.shared), f)),
                    )?,
                    None => w
                        .conn
                        .trace_v2(TraceEventCodes::empty(), None::<fn(TraceEvent<'_>)>)?,
                }
                Ok(())
            })
            .await
    }

    /// Asks `f` whether each action of a statement being prepared is allowed
    /// (Python's `set_authorizer`). [`Authorization::Deny`] fails the statement
    /// with `SQLITE_AUTH` ("not authorized"); `Ignore` reads a column as NULL or
    /// skips the action. `None` removes the authorizer. Setting it re-prepares
    /// cached statements, so it applies to every statement from now on.
    ///
    /// ```
    /// # async fn demo(conn: aiolite_conn::Connection) -> aiolite_conn::Result<()> {
    /// use aiolite_conn::hooks::{AuthAction, AuthContext, Authorization};
    ///
    /// conn.set_authorizer(Some(|ctx: AuthContext<'_>| match ctx.action {
    ///     AuthAction::DropTable { .. } => Authorization::Deny,
    ///     _ => Authorization::Allow,
    /// }))
    /// .await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::Closed`](crate::Error::Closed).
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn set_authorizer<F>(&self, f: Option<F>) -> Result<()>
    where
        F: for<'r> FnMut(AuthContext<'r>) -> Authorization + Send + 'static,
    {
        self.channel()
            .run(move |w| {
                match f {
                    Some(mut f) => {
                        let shared = Arc::clone(&w.shared);
                        w.conn.authorizer(Some(move |ctx: AuthContext<'_>| {
                            guarded(&shared, "the authorizer", Authorization::Deny, || f(ctx))
                        }))?;
                    }
                    None => w
                        .conn
                        .authorizer(None::<fn(AuthContext<'_>) -> Authorization>)?,
                }
                Ok(())
            })
            .await
    }

    /// Calls `f(action, database, table, rowid)` for each row a statement
    /// inserts, updates or deletes in a rowid table (`sqlite3_update_hook`).
    /// `None` removes it. `f` must not use the connection.
    ///
    /// # Errors
    /// [`Error::Closed`](crate::Error::Closed).
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn update_hook<F>(&self, f: Option<F>) -> Result<()>
    where
        F: FnMut(Action, &str, &str, i64) + Send + 'static,
    {
        self.channel()
            .run(move |w| {
                match f {
                    Some(mut f) => {
                        let shared = Arc::clone(&w.shared);
                        w.conn.update_hook(Some(
                            move |action: Action, db: &str, table: &str, rowid: i64| {
                                guarded(&shared, "the update hook", (), || {
                                    f(action, db, table, rowid);
                                });
                            },
                        ))?;
                    }
                    None => w.conn.update_hook(None::<fn(Action, &str, &str, i64)>)?,
                }
                Ok(())
            })
            .await
    }

    /// Calls `f` before each commit; when it returns `true` the commit becomes
    /// a rollback and the statement fails with `SQLITE_CONSTRAINT_COMMITHOOK`
    /// (`sqlite3_commit_hook`). `None` removes it.
    ///
    /// # Errors
    /// [`Error::Closed`](crate::Error::Closed).
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn commit_hook<F>(&self, f: Option<F>) -> Result<()>
    where
        F: FnMut() -> bool + Send + 'static,
    {
        let user = f.map(|f| Box::new(f) as CommitFn);
        self.channel()
            .run(move |w| Ok(install_commit_hook(&mut w.conn, &w.shared, user)?))
            .await
    }

    /// Calls `f` after each rollback (`sqlite3_rollback_hook`), including
    /// the implicit rollback of a failed autocommit statement. `None` removes
    /// it.
    ///
    /// # Errors
    /// [`Error::Closed`](crate::Error::Closed).
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn rollback_hook<F>(&self, f: Option<F>) -> Result<()>
    where
        F: FnMut() + Send + 'static,
    {
        self.channel()
            .run(move |w| {
                match f {
                    Some(mut f) => {
                        let shared = Arc::clone(&w.shared);
                        w.conn.rollback_hook(Some(move || {
                            guarded(&shared, "the rollback hook", (), &mut f);
                        }))?;
                    }
                    None => w.conn.rollback_hook(None::<fn()>)?,
                }
                Ok(())
            })
            .await
    }
}

/// On a pool, the progress handler, trace callback and authorizer apply to
/// every connection (a statement may run on any of them); the update, commit
/// and rollback hooks to the writer, the only connection that writes.
impl Database {
    /// [`Connection::set_progress_handler`] on every connection of the pool.
    ///
    /// # Errors
    /// [`Error::Closed`](crate::Error::Closed).
    ///
    /// # Cancel safety
    /// Dropping the future may leave the handler on some connections only.
    pub async fn set_progress_handler<F>(&self, n: i32, f: Option<F>) -> Result<()>
    where
        F: Fn() -> bool + Send + Sync + 'static,
    {
        let f = f.map(Arc::new);
        for conn in self.connections() {
            let each = f.clone().map(|f| move || f());
            conn.set_progress_handler(n, each).await?;
        }
        Ok(())
    }

    /// [`Connection::set_trace_callback`] on every connection of the pool.
    ///
    /// # Errors
    /// [`Error::Closed`](crate::Error::Closed).
    ///
    /// # Cancel safety
    /// As [`set_progress_handler`](Database::set_progress_handler).
    pub async fn set_trace_callback<F>(&self, f: Option<F>) -> Result<()>
    where
        F: Fn(&str) + Send + Sync + 'static,
    {
        let f = f.map(Arc::new);
        for conn in self.connections() {
            let each = f.clone().map(|f| move |sql: &str| f(sql));
            conn.set_trace_callback(each).await?;
        }
        Ok(())
    }

    /// [`Connection::set_authorizer`] on every connection of the pool.
    ///
    /// # Errors
    /// [`Error::Closed`](crate::Error::Closed).
    ///
    /// # Cancel safety
    /// As [`set_progress_handler`](Database::set_progress_handler).
    pub async fn set_authorizer<F>(&self, f: Option<F>) -> Result<()>
    where
        F: for<'r> Fn(AuthContext<'r>) -> Authorization + Send + Sync + 'static,
    {
        let f = f.map(Arc::new);
        for conn in self.connections() {
            let each = f.clone().map(|f| move |ctx: AuthContext<'_>| f(ctx));
            conn.set_authorizer(each).await?;
        }
        Ok(())
    }

    /// [`Connection::update_hook`] on the writer.
    ///
    /// # Errors
    /// [`Error::Closed`](crate::Error::Closed).
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn update_hook<F>(&self, f: Option<F>) -> Result<()>
    where
        F: FnMut(Action, &str, &str, i64) + Send + 'static,
    {
        self.writer().update_hook(f).await
    }

    /// [`Connection::commit_hook`] on the writer.
    ///
    /// # Errors
    /// [`Error::Closed`](crate::Error::Closed).
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn commit_hook<F>(&self, f: Option<F>) -> Result<()>
    where
        F: FnMut() -> bool + Send + 'static,
    {
        self.writer().commit_hook(f).await
    }

    /// [`Connection::rollback_hook`] on the writer.
    ///
    /// # Errors
    /// [`Error::Closed`](crate::Error::Closed).
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn rollback_hook<F>(&self, f: Option<F>) -> Result<()>
    where
        F: FnMut() + Send + 'static,
    {
        self.writer().rollback_hook(f).await
    }
}

/// Removing a callback without naming a closure type
/// (`set_authorizer(None::<fn(..)>)`), on a connection and on a pool.
macro_rules! clear_callbacks {
    ($ty:ty) => {
        impl $ty {
            /// Removes the progress handler ([`set_progress_handler`](Self::set_progress_handler)
            /// with `None`); aiolite's own cancellation check stays.
            ///
            /// # Errors
            /// [`Error::Closed`](crate::Error::Closed).
            ///
            /// # Cancel safety
            /// Cancel safe.
            pub async fn clear_progress_handler(&self) -> Result<()> {
                self.set_progress_handler(0, None::<fn() -> bool>).await
            }

            /// Removes the trace callback.
            ///
            /// # Errors
            /// [`Error::Closed`](crate::Error::Closed).
            ///
            /// # Cancel safety
            /// Cancel safe.
            pub async fn clear_trace_callback(&self) -> Result<()> {
                self.set_trace_callback(None::<fn(&str)>).await
            }

            /// Removes the authorizer: every action is allowed again.
            ///
            /// # Errors
            /// [`Error::Closed`](crate::Error::Closed).
            ///
            /// # Cancel safety
            /// Cancel safe.
            pub async fn clear_authorizer(&self) -> Result<()> {
                self.set_authorizer(None::<fn(AuthContext<'_>) -> Authorization>)
                    .await
            }

            /// Removes the update hook.
            ///
            /// # Errors
            /// [`Error::Closed`](crate::Error::Closed).
            ///
            /// # Cancel safety
            /// Cancel safe.
            pub async fn clear_update_hook(&self) -> Result<()> {
                self.update_hook(None::<fn(Action, &str, &str, i64)>).await
            }

            /// Removes the commit hook (aiolite's own guard stays).
            ///
            /// # Errors
            /// [`Error::Closed`](crate::Error::Closed).
            ///
            /// # Cancel safety
            /// Cancel safe.
            pub async fn clear_commit_hook(&self) -> Result<()> {
                self.commit_hook(None::<fn() -> bool>).await
            }

            /// Removes the rollback hook.
            ///
            /// # Errors
            /// [`Error::Closed`](crate::Error::Closed).
            ///
            /// # Cancel safety
            /// Cancel safe.
            pub async fn clear_rollback_hook(&self) -> Result<()> {
                self.rollback_hook(None::<fn()>).await
            }
        }
    };
}

clear_callbacks!(Connection);
clear_callbacks!(Database);
