//! The async transaction guard.

use std::fmt;

use crate::connection::{Channel, Connection};
use crate::error::Result;

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
        self.channel
            .run(|w| {
                w.end_lease = true;
                let r = w.conn.execute_batch("COMMIT");
                if r.is_err() {
                    w.rollback_if_open("the commit failed");
                }
                Ok(r?)
            })
            .await
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
                w.rollback()
            })
            .await
    }
}

crate::query_methods::impl_query_methods!(Transaction);

impl fmt::Debug for Transaction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transaction")
            .field("connection", &self.conn)
            .finish()
    }
}
