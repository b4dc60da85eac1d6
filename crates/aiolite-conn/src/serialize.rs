//! The database as one image in memory: `sqlite3_serialize` and
//! `sqlite3_deserialize` (Python's `serialize` and `deserialize`).

use crate::connection::Connection;
use crate::error::{Error, Result};

impl Connection {
    /// A copy of the `main` database as bytes (`sqlite3_serialize`,
    /// Python's `serialize`): what the database file would contain.
    ///
    /// # Errors
    /// SQLite's error (out of memory).
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn serialize(&self) -> Result<Vec<u8>> {
        self.channel()
            .run(|w| Ok(w.conn.serialize(c"main")?.to_vec()))
            .await
    }

    /// Replaces the `main` database with the image in `bytes` (from
    /// [`serialize`](Connection::serialize) or a database file), held in
    /// memory from then on (`sqlite3_deserialize`, Python's `deserialize`).
    ///
    /// # Errors
    /// SQLite's error: `SQLITE_BUSY` inside a transaction or with an open
    /// stream or blob handle. Bytes that are not a database are accepted here
    /// and fail at the first query with "file is not a database".
    ///
    /// # Cancel safety
    /// If dropped after the request was queued, the replacement may or may
    /// not happen.
    pub async fn deserialize(&self, bytes: Vec<u8>) -> Result<()> {
        self.channel()
            .run(move |w| {
                if !w.conn.is_autocommit() {
                    return Err(Error::Misuse(
                        "cannot replace the database inside a transaction".to_owned(),
                    ));
                }
                if bytes.is_empty() {
                    // SQLite cannot take a zero-byte image (its allocation
                    // of nothing fails); an empty file is an empty database.
                    return Err(Error::Misuse(
                        "an empty image: serialize() of an empty database gives its header pages, not zero bytes".to_owned(),
                    ));
                }
                w.conn.flush_prepared_statement_cache();
                let len = bytes.len();
                w.conn
                    .deserialize_read_exact(c"main", &bytes[..], len, false)?;
                Ok(())
            })
            .await
    }
}
