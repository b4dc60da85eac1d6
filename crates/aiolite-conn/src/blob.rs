//! Incremental blob I/O: a handle on one BLOB value, kept open between requests
//! (Python's `blobopen`).

use std::fmt;

use rusqlite::blob::Blob as RawBlob;

use crate::channel::{Channel, Held};
use crate::connection::Connection;
use crate::error::{Error, Result};
use crate::worker::{Deferred, OpenBlob, Worker};

/// An open handle on one BLOB value (`sqlite3_blob`, Python's `blobopen`):
/// read and write byte ranges without loading the whole value. From
/// [`Connection::blob_open`].
///
/// The value's size is fixed: writes cannot grow it (make room first with
/// `zeroblob(n)`). The handle expires when its row is changed or deleted by
/// anything else than the handle; then reads and writes fail with
/// `SQLITE_ABORT` and [`reopen`](Blob::reopen) moves it to a row again.
/// Dropping it closes it.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> aiolite_conn::Result<()> {
/// let conn = aiolite_conn::Connection::open_in_memory().await?;
/// conn.execute_script("CREATE TABLE files(id INTEGER PRIMARY KEY, data BLOB);
///                      INSERT INTO files VALUES (1, zeroblob(10));").await?;
/// let blob = conn.blob_open("files", "data", 1, false).await?;
/// blob.write_at(4, b"abc".to_vec()).await?;
/// assert_eq!(blob.read_at(3, 5).await?, b"\0abc\0");
/// blob.close().await?;
/// # Ok(()) }
/// ```
pub struct Blob {
    channel: Channel,
    id: u64,
    len: usize,
    /// Closes the handle on the worker when the `Blob` goes, wherever it
    /// goes: made on the worker with the handle, so a `Blob` whose
    /// `blob_open` caller left before reading the answer closes it too.
    _held: Held,
}

impl fmt::Debug for Blob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Blob")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

fn with_blob<R>(
    w: &mut Worker,
    id: u64,
    f: impl FnOnce(&mut RawBlob<'_>) -> rusqlite::Result<R>,
) -> Result<R> {
    let open = w
        .parked_blob(id)
        .ok_or_else(|| Error::Misuse("the blob handle was already closed".to_owned()))?;
    Ok(open.with_dependent_mut(|_, blob| f(blob))?)
}

impl Blob {
    /// The value's size in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the value is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn range(&self, offset: usize, len: usize) -> Result<()> {
        match offset.checked_add(len) {
            Some(end) if end <= self.len => Ok(()),
            _ => Err(Error::Misuse(format!(
                "bytes {offset}..{offset}+{len} are outside the blob's {} bytes",
                self.len
            ))),
        }
    }

    /// Reads `len` bytes from `offset`.
    ///
    /// # Errors
    /// [`Error::Misuse`] for a range past the end; `SQLITE_ABORT` when the
    /// row changed since the handle was opened.
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn read_at(&self, offset: usize, len: usize) -> Result<Vec<u8>> {
        self.range(offset, len)?;
        let id = self.id;
        self.channel
            .run(move |w| {
                with_blob(w, id, |blob| {
                    let mut buf = vec![0; len];
                    blob.read_at_exact(&mut buf, offset)?;
                    Ok(buf)
                })
            })
            .await
    }

    /// Writes `data` at `offset` (in the current transaction, or its own).
    ///
    /// # Errors
    /// [`Error::Misuse`] for a range past the end (a blob does not grow);
    /// `SQLITE_READONLY` for a handle opened read-only; `SQLITE_ABORT` when
    /// the row changed since the handle was opened.
    ///
    /// # Cancel safety
    /// If dropped after the request was queued, the write may or may not
    /// happen.
    pub async fn write_at(&self, offset: usize, data: impl Into<Vec<u8>>) -> Result<()> {
        let data = data.into();
        self.range(offset, data.len())?;
        let id = self.id;
        self.channel
            .run(move |w| with_blob(w, id, |blob| blob.write_all_at(&data, offset)))
            .await
    }

    /// Points the handle at the same column of another row.
    ///
    /// # Errors
    /// SQLite's error when the row does not exist or its value is not a
    /// BLOB or TEXT; the handle is then unusable until a successful reopen.
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn reopen(&mut self, rowid: i64) -> Result<()> {
        let id = self.id;
        self.len = self
            .channel
            .run(move |w| {
                with_blob(w, id, |blob| {
                    blob.reopen(rowid)?;
                    Ok(blob.len())
                })
            })
            .await?;
        Ok(())
    }

    /// Closes the handle. Writes were applied as they were made, so there is
    /// nothing left to fail; dropping the handle does the same, later.
    ///
    /// # Errors
    /// [`Error::Closed`] when the connection is gone (and the handle with it).
    ///
    /// # Cancel safety
    /// The handle is closed even if the future is dropped.
    pub async fn close(self) -> Result<()> {
        let channel = self.channel.clone();
        // The drop leaves the close to the worker, which does it before the
        // next request: this one.
        drop(self);
        channel.run(|_| Ok(())).await
    }
}

impl Connection {
    /// Opens a handle on the BLOB (or TEXT) value in `table.column` of the
    /// row with `rowid`, in the `main` database (Python's `blobopen`).
    ///
    /// # Errors
    /// SQLite's error: no such table, column or row, a value of another
    /// type, a column in an index.
    ///
    /// # Cancel safety
    /// Cancel safe: a handle opened for a caller that went away is closed.
    pub async fn blob_open(
        &self,
        table: &str,
        column: &str,
        rowid: i64,
        read_only: bool,
    ) -> Result<Blob> {
        let table = table.to_owned();
        let column = column.to_owned();
        let channel = self.channel().clone();
        self.channel()
            .run(move |w| {
                let open = OpenBlob::try_new(w.alias(), |conn| {
                    conn.blob_open(c"main", table.as_str(), column.as_str(), rowid, read_only)
                })?;
                let len = open.borrow_dependent().len();
                let id = w.park_blob(open);
                // From here the `Blob` owns the handle, before it is sent.
                Ok(Blob {
                    _held: Held::new(&channel, Deferred::CloseBlob(id)),
                    channel,
                    id,
                    len,
                })
            })
            .await
    }
}
