//! Run-time limits (`sqlite3_limit`; Python's `getlimit` and `setlimit`).

use rusqlite::limits::Limit;

use crate::connection::Connection;
use crate::error::Result;

impl Connection {
    /// The current value of a run-time limit (`sqlite3_limit`).
    ///
    /// # Errors
    /// [`Error::Closed`](crate::Error::Closed).
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn limit(&self, limit: Limit) -> Result<i32> {
        self.channel().run(move |w| Ok(w.conn.limit(limit)?)).await
    }

    /// Sets a run-time limit, returning the previous value. SQLite silently
    /// caps a value above its compile-time maximum; a negative value leaves
    /// the limit unchanged.
    ///
    /// # Errors
    /// [`Error::Closed`](crate::Error::Closed).
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn set_limit(&self, limit: Limit, value: i32) -> Result<i32> {
        self.channel()
            .run(move |w| Ok(w.conn.set_limit(limit, value)?))
            .await
    }
}
