//! The async transaction guard.

use std::fmt;
use std::marker::PhantomData;

use crate::connection::{Channel, Connection};
use crate::error::Result;
use crate::worker::{Deferred, Message};

/// An open transaction, from [`Connection::begin`].
///
/// It has the same statement methods as [`Connection`] (`execute`,
/// `fetch_all`, `stream`, `call`, ...), and they run inside the transaction.
/// While the guard lives it owns the connection: requests from other handles
/// wait until it ends. It ends with [`commit`](Transaction::commit),
/// [`rollback`](Transaction::rollback), or by being dropped, which rolls back
/// (the rollback is queued; `drop` never blocks).
#[must_use = "a transaction is rolled back when dropped; call commit()"]
pub struct Transaction {
    conn: Connection,
    channel: Channel,
}

impl Transaction {
    pub(crate) fn new(conn: Connection, channel: Channel) -> Transaction {
        Transaction { conn, channel }
    }

    pub(crate) fn channel(&self) -> &Channel {
        &self.channel
    }

    /// The connection this transaction runs on.
    pub fn connection(&self) -> &Connection {
        &self.conn
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
    /// SQLite's error (a deferred foreign-key violation, `SQLITE_BUSY`, I/O).
    ///
    /// # Cancel safety
    /// If the future is dropped before the worker starts the COMMIT, the
    /// transaction is rolled back; once started, the commit completes and is not
    /// followed by a rollback.
    pub async fn commit(self) -> Result<()> {
        let grouped = self
            .channel
            .run(|w| {
                w.end_lease = true;
                if w.group.in_member() {
                    return w.group_release().map(Some);
                }
                let r = w.conn.execute_batch("COMMIT");
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

    /// Rolls back and releases the connection.
    ///
    /// # Errors
    /// SQLite's error.
    ///
    /// # Cancel safety
    /// The transaction is rolled back whether or not the future completes.
    pub async fn rollback(self) -> Result<()> {
        self.channel
            .run(|w| {
                w.end_lease = true;
                if w.group.in_member() {
                    w.group_rollback_member();
                    return Ok(());
                }
                w.rollback()
            })
            .await
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
        self.finish(sql).await
    }

    /// Undoes the savepoint's work; the enclosing transaction goes on.
    ///
    /// # Errors
    /// SQLite's error.
    ///
    /// # Cancel safety
    /// The savepoint is rolled back whether or not the future completes.
    pub async fn rollback(self) -> Result<()> {
        let sql = format!("ROLLBACK TO {0}; RELEASE {0}", self.name);
        self.finish(sql).await
    }

    /// Runs the statement that ends the savepoint. If it fails, or the future
    /// is dropped before it answers, `Drop` still rolls the savepoint back.
    async fn finish(mut self, sql: String) -> Result<()> {
        self.done = true;
        let r = self
            .channel
            .run(move |w| Ok(w.conn.execute_batch(&sql)?))
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
                .shared
                .defer(Deferred::RollbackTo(std::mem::take(&mut self.name)));
            let _ = self.channel.sender.try_send(Message::Wake);
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
