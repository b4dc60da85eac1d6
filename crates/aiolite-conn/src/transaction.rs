//! The async transaction guard.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use crate::connection::{Channel, Connection};
use crate::error::Result;
use crate::worker::{Deferred, Kind, LeaseControl, Message};

/// An open transaction, from [`Connection::begin`].
///
/// It has the same statement methods as [`Connection`] (`execute`,
/// `fetch_all`, `stream`, `call`, ...), and they run inside the transaction.
/// While the guard lives it owns the connection: requests from other handles
/// wait until it ends. It ends with [`commit`](Transaction::commit),
/// [`rollback`](Transaction::rollback), or by being dropped, which rolls back
/// (the rollback is queued; `drop` never blocks).
///
/// What the transaction opens ends with it: a [`RowStream`](crate::RowStream)
/// from [`stream`](Transaction::stream) reads inside the transaction and
/// stops there, so read it to the end before committing; polled after the
/// transaction ended, it yields [`Error::TransactionEnded`]. A stream never
/// keeps the transaction, or the connection, from being released.
///
/// If SQLite rolls the transaction back on its own (`INSERT OR ROLLBACK`,
/// `RAISE(ROLLBACK, ..)`, `SQLITE_FULL`, ...), the guard is dead: the failing
/// statement, every later one, and `commit()` return
/// [`Error::RolledBack`] with the cause; `rollback()` succeeds. Nothing runs
/// in autocommit in its name.
///
/// [`Error::TransactionEnded`]: crate::Error::TransactionEnded
/// [`Error::RolledBack`]: crate::Error::RolledBack
#[must_use = "a transaction is rolled back when dropped; call commit()"]
pub struct Transaction {
    conn: Connection,
    channel: Channel,
    control: Arc<LeaseControl>,
}

impl Transaction {
    pub(crate) fn new(
        conn: Connection,
        channel: Channel,
        control: Arc<LeaseControl>,
    ) -> Transaction {
        Transaction {
            conn,
            channel,
            control,
        }
    }

    pub(crate) fn channel(&self) -> &Channel {
        &self.channel
    }

    /// Opens a savepoint: a transaction nested in this one. While it lives,
    /// statements go through it; it ends with [`Savepoint::release`] (its work
    /// joins this transaction), [`Savepoint::rollback`], or by being dropped
    /// (rolled back). Savepoints nest.
    ///
    /// ```
    /// # async fn demo(tx: &mut aiolite_conn::Transaction) -> aiolite_conn::Result<()> {
    /// tx.execute("INSERT INTO log(msg) VALUES ('kept')", ()).await?;
    /// let sp = tx.savepoint().await?;
    /// sp.execute("INSERT INTO log(msg) VALUES ('undone')", ()).await?;
    /// sp.rollback().await?; // 'kept' stays, 'undone' is gone
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// SQLite's error.
    ///
    /// # Cancel safety
    /// If dropped after the SAVEPOINT ran, the savepoint stays open, empty,
    /// and ends with the transaction.
    pub async fn savepoint(&mut self) -> Result<Savepoint<'_>> {
        Savepoint::open(&self.channel).await
    }

    /// Commits and releases the connection. If the COMMIT fails, the
    /// transaction is rolled back and the error returned.
    ///
    /// # Errors
    /// SQLite's error (a deferred foreign-key violation, `SQLITE_BUSY`, I/O);
    /// [`Error::RolledBack`](crate::Error::RolledBack) when SQLite had
    /// rolled the transaction back already.
    ///
    /// # Cancel safety
    /// If the future is dropped before the worker starts the COMMIT, the
    /// transaction is rolled back; once started, the commit completes and is not
    /// followed by a rollback.
    pub async fn commit(self) -> Result<()> {
        let grouped = self
            .channel
            .run_as(Kind::EndLease, |w| {
                w.end_lease = true;
                if let Some(dead) = w.dead_lease() {
                    return Err(dead);
                }
                if w.group.in_member() {
                    return w.group_release().map(Some);
                }
                let shared = Arc::clone(&w.shared);
                let r = shared.guard_commit(|| w.conn.execute_batch("COMMIT"));
                if r.is_err() {
                    w.rollback_if_open("the commit failed");
                }
                r?;
                Ok(None)
            })
            .await?;
        match grouped {
            // Answered once the group's COMMIT ran (or failed).
            Some(outcome) => outcome.await.unwrap_or(Err(crate::Error::Closed)),
            None => Ok(()),
        }
    }

    /// Rolls back and releases the connection. A transaction SQLite already
    /// rolled back rolls back without error.
    ///
    /// # Errors
    /// SQLite's error.
    ///
    /// # Cancel safety
    /// The transaction is rolled back whether or not the future completes.
    pub async fn rollback(self) -> Result<()> {
        self.channel
            .run_as(Kind::EndLease, |w| {
                w.end_lease = true;
                if w.dead_lease().is_some() {
                    return Ok(());
                }
                if w.group.in_member() {
                    w.group_rollback_member();
                    return Ok(());
                }
                w.rollback()
            })
            .await
    }
}

impl Drop for Transaction {
    fn drop(&mut self) {
        // The lease ends with the guard, not with the last sender of its
        // channel (a stream may hold one): the worker sees this before its
        // next message and rolls back unless commit or rollback ended the
        // lease already.
        self.control.end();
        let _ = self.channel.sender.try_send(Message::Wake);
    }
}

crate::query_methods::impl_query_methods!(Transaction);

/// A savepoint inside a [`Transaction`] (or inside another savepoint), from
/// [`Transaction::savepoint`]. It borrows its parent, so the parent cannot be
/// used until it ends. Dropped without [`release`](Savepoint::release), it is
/// rolled back before the parent's next statement.
#[must_use = "a savepoint is rolled back when dropped; call release()"]
pub struct Savepoint<'a> {
    channel: Channel,
    name: String,
    done: bool,
    _parent: PhantomData<&'a mut ()>,
}

impl Savepoint<'_> {
    async fn open<'b>(channel: &Channel) -> Result<Savepoint<'b>> {
        let name = channel.shared.savepoint_name();
        let sql = format!("SAVEPOINT {name}");
        channel
            .run(move |w| Ok(w.conn.execute_batch(&sql)?))
            .await?;
        Ok(Savepoint {
            channel: channel.clone(),
            name,
            done: false,
            _parent: PhantomData,
        })
    }

    pub(crate) fn channel(&self) -> &Channel {
        &self.channel
    }

    /// Opens a savepoint nested in this one.
    ///
    /// # Errors
    /// SQLite's error.
    ///
    /// # Cancel safety
    /// As [`Transaction::savepoint`].
    pub async fn savepoint(&mut self) -> Result<Savepoint<'_>> {
        Savepoint::open(&self.channel).await
    }

    /// Keeps the savepoint's work as part of the enclosing transaction.
    ///
    /// # Errors
    /// SQLite's error.
    ///
    /// # Cancel safety
    /// If dropped before the RELEASE ran, the savepoint is rolled back.
    pub async fn release(self) -> Result<()> {
        let sql = format!("RELEASE {}", self.name);
        self.finish(Kind::Plain, sql).await
    }

    /// Undoes the savepoint's work; the enclosing transaction goes on. In a
    /// transaction SQLite already rolled back, there is nothing left to undo:
    /// it succeeds.
    ///
    /// # Errors
    /// SQLite's error.
    ///
    /// # Cancel safety
    /// The savepoint is rolled back whether or not the future completes.
    pub async fn rollback(self) -> Result<()> {
        let sql = format!("ROLLBACK TO {0}; RELEASE {0}", self.name);
        self.finish(Kind::Undo, sql).await
    }

    /// Runs the statement that ends the savepoint. If it fails, or the future
    /// is dropped before it answers, `Drop` still rolls the savepoint back.
    async fn finish(mut self, kind: Kind, sql: String) -> Result<()> {
        self.done = true;
        let r = self
            .channel
            .run_as(kind, move |w| {
                if w.dead_lease().is_some() {
                    // Only an Undo gets here in a dead lease.
                    return Ok(());
                }
                Ok(w.conn.execute_batch(&sql)?)
            })
            .await;
        if r.is_err() {
            self.done = false;
        }
        r
    }
}

impl Drop for Savepoint<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.channel
                .release(Deferred::RollbackTo(std::mem::take(&mut self.name)));
        }
    }
}

crate::query_methods::impl_query_methods!(Savepoint<'_>);

impl fmt::Debug for Savepoint<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Savepoint")
            .field("name", &self.name)
            .finish()
    }
}

impl fmt::Debug for Transaction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transaction")
            .field("connection", &self.conn)
            .finish()
    }
}
