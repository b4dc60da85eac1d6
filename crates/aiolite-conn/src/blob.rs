//! Incremental blob I/O, serialize/deserialize, limits and extension loading.

use std::fmt;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};

use rusqlite::blob::Blob as RawBlob;
use rusqlite::limits::Limit;
use self_cell::self_cell;

use crate::connection::{Channel, Connection, Held};
use crate::error::{Error, Result};
use crate::worker::{Deferred, Worker};

self_cell!(
    /// A blob handle kept open between requests, with the connection alias
    /// it was opened on.
    pub(crate) struct OpenBlob {
        owner: Rc<rusqlite::Connection>,
        #[covariant]
        dependent: RawBlob,
    }
);

static NEXT_BLOB: AtomicU64 = AtomicU64::new(1);

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
        .blobs
        .get_mut(&id)
        .ok_or(Error::Cancelled("the blob handle was already closed"))?;
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
            _ => Err(Error::Options(format!(
                "bytes {offset}..{offset}+{len} are outside the blob's {} bytes",
                self.len
            ))),
        }
    }

    /// Reads `len` bytes from `offset`.
    ///
    /// # Errors
    /// [`Error::Options`] for a range past the end; `SQLITE_ABORT` when the
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
    /// [`Error::Options`] for a range past the end (a blob does not grow);
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
        let id = NEXT_BLOB.fetch_add(1, Ordering::Relaxed);
        let channel = self.channel().clone();
        self.channel()
            .run(move |w| {
                let open = OpenBlob::try_new(w.alias(), |conn| {
                    conn.blob_open(c"main", table.as_str(), column.as_str(), rowid, read_only)
                })?;
                let len = open.borrow_dependent().len();
                w.blobs.insert(id, open);
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
                    return Err(Error::Options(
                        "cannot replace the database inside a transaction".to_owned(),
                    ));
                }
                if bytes.is_empty() {
                    // SQLite cannot take a zero-byte image (its allocation
                    // of nothing fails); an empty file is an empty database.
                    return Err(Error::Options(
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

    /// The current value of a run-time limit (`sqlite3_limit`).
    ///
    /// # Errors
    /// [`Error::Closed`].
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
    /// [`Error::Closed`].
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn set_limit(&self, limit: Limit, value: i32) -> Result<i32> {
        self.channel()
            .run(move |w| Ok(w.conn.set_limit(limit, value)?))
            .await
    }

    /// Allows (or forbids again) loading SQLite extensions on this connection,
    /// through [`load_extension`](Connection::load_extension) and SQL's
    /// `load_extension()` function (Python's `enable_load_extension`). Off by
    /// default. Only with the `load_extension` cargo feature.
    ///
    /// # Safety
    /// While enabled, any SQL run on this connection can load and run native
    /// code from any file the process can read: enable it only for SQL you
    /// trust, and disable it again after loading.
    ///
    /// # Errors
    /// SQLite's error.
    ///
    /// # Cancel safety
    /// Cancel safe.
    #[cfg(feature = "load_extension")]
    #[allow(unsafe_code)]
    pub async unsafe fn enable_load_extension(&self, enabled: bool) -> Result<()> {
        self.channel()
            .run(move |w| {
                if enabled {
                    // SAFETY: the caller took on the function's contract.
                    unsafe { w.conn.load_extension_enable()? };
                } else {
                    w.conn.load_extension_disable()?;
                }
                Ok(())
            })
            .await
    }

    /// Loads the SQLite extension in the shared library at `path`, calling
    /// `entry_point` (or the name SQLite derives from the file name) on this
    /// connection (Python's `load_extension`). Extension loading must be
    /// enabled first. Only with the `load_extension` cargo feature.
    ///
    /// # Safety
    /// The library's initialisation code runs in this process with no
    /// checks: it must be a well-behaved SQLite extension.
    ///
    /// # Errors
    /// "not authorized" while loading is not enabled; SQLite's message when
    /// the library or its entry point cannot be found.
    ///
    /// # Cancel safety
    /// Once queued, the library is loaded.
    #[cfg(feature = "load_extension")]
    #[allow(unsafe_code)]
    pub async unsafe fn load_extension(
        &self,
        path: impl AsRef<std::path::Path>,
        entry_point: Option<&str>,
    ) -> Result<()> {
        let path = path.as_ref().to_path_buf();
        let entry_point = entry_point.map(str::to_owned);
        self.channel()
            .run(move |w| {
                // SAFETY: the caller vouches for the library.
                unsafe { w.conn.load_extension(&path, entry_point.as_deref())? };
                Ok(())
            })
            .await
    }
}
