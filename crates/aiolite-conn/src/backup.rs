//! Online backup (`sqlite3_backup_*`), restore and `VACUUM INTO`.
//!
//! A backup step reads the source connection's handle and writes the target's.
//! It runs on the **target's** worker, so the target's handle never leaves its
//! thread. The source's handle is borrowed step by step through its
//! handle lock (`worker/handle.rs`), which its own worker holds while it runs
//! a request: between two steps the source serves its queue as usual.

use std::ffi::CString;
use std::fmt;
use std::future::{Future, IntoFuture};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rusqlite::ffi;

use crate::connection::Connection;
use crate::error::{Error, Result};
use crate::options::ConnectOptions;
use crate::pool::Database;
use crate::worker::handle::with_both;
use crate::worker::{Shared, Worker};

/// Where a backup is at, reported after each step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct BackupProgress {
    /// Pages still to copy.
    pub remaining: u64,
    /// Pages in the source database.
    pub total: u64,
}

type ProgressFn = Box<dyn FnMut(BackupProgress) + Send>;

enum Destination<'a> {
    Connection(&'a Connection),
    Path(PathBuf),
}

/// An online backup of a connection's database, configured by chaining and
/// run by `.await`: from [`Connection::backup_to`] and
/// [`Connection::backup_to_path`].
///
/// It copies `pages_per_step` pages per `sqlite3_backup_step` on the target's
/// worker; between two steps the source serves its other requests, so a backup
/// of a large database does not stall the service using it. A write to the
/// source through the same connection is carried into the copy; a write from
/// another connection restarts the copy (SQLite's rule).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> aiolite_conn::Result<()> {
/// use aiolite_conn::Connection;
///
/// let src = Connection::open_in_memory().await?;
/// src.execute_script("CREATE TABLE t(x); INSERT INTO t VALUES (1), (2);").await?;
/// let copy = Connection::open_in_memory().await?;
/// src.backup_to(&copy)
///     .pages_per_step(1)
///     .progress(|p| println!("{} of {} pages left", p.remaining, p.total))
///     .await?;
/// assert_eq!(copy.fetch_one("SELECT count(*) FROM t", ()).await?.get::<_, i64>(0)?, 2);
/// # Ok(()) }
/// ```
#[must_use = "a backup does nothing until awaited"]
pub struct Backup<'a> {
    source: &'a Connection,
    destination: Destination<'a>,
    pages: i32,
    pause: Duration,
    schema: String,
    progress: Option<ProgressFn>,
}

impl fmt::Debug for Backup<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Backup")
            .field("pages", &self.pages)
            .field("pause", &self.pause)
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

impl<'a> Backup<'a> {
    fn new(source: &'a Connection, destination: Destination<'a>) -> Backup<'a> {
        Backup {
            source,
            destination,
            pages: -1,
            pause: Duration::ZERO,
            schema: "main".to_owned(),
            progress: None,
        }
    }

    /// Pages copied per step; `0` or a negative number copies everything in
    /// one step (the default, as Python's `pages=-1`).
    pub fn pages_per_step(mut self, pages: i32) -> Self {
        self.pages = if pages <= 0 { -1 } else { pages };
        self
    }

    /// Sleep between two steps (default: none). When a step finds the
    /// database busy or locked, the pause before retrying is at least 250 ms,
    /// Python's `sleep` default.
    pub fn pause(mut self, pause: Duration) -> Self {
        self.pause = pause;
        self
    }

    /// The source database to copy: `"main"` (default), `"temp"` or an
    /// attached schema's name. The copy always goes to the target's `main`.
    pub fn schema(mut self, name: impl Into<String>) -> Self {
        self.schema = name.into();
        self
    }

    /// Called on the target's worker after each step with the pages left and
    /// the total (Python's `progress(status, remaining, total)`). A panic in it
    /// stops the backup with [`Error::Panic`].
    pub fn progress<F>(mut self, f: F) -> Self
    where
        F: FnMut(BackupProgress) + Send + 'static,
    {
        self.progress = Some(Box::new(f));
        self
    }

    async fn run(self) -> Result<()> {
        let Backup {
            source,
            destination,
            pages,
            pause,
            schema,
            progress,
        } = self;
        let schema = CString::new(schema)
            .map_err(|_| Error::Misuse("a schema name cannot contain NUL".to_owned()))?;
        let job = Job {
            source: Arc::clone(&source.channel().shared),
            pages,
            pause,
            schema,
            progress,
        };
        match destination {
            Destination::Connection(target) => target.channel().run(move |w| job.run(w)).await,
            Destination::Path(path) => {
                let target = ConnectOptions::new(&path).open().await?;
                let copied = target.channel().run(move |w| job.run(w)).await;
                let closed = target.close().await;
                copied.and(closed)
            }
        }
    }
}

impl<'a> IntoFuture for Backup<'a> {
    type Output = Result<()>;
    type IntoFuture = Pin<Box<dyn Future<Output = Result<()>> + Send + 'a>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.run())
    }
}

/// The backup as it runs on the target's worker.
struct Job {
    source: Arc<Shared>,
    pages: i32,
    pause: Duration,
    schema: CString,
    progress: Option<ProgressFn>,
}

/// SQLite's result code for `rc`, with the target's message.
fn backup_error(w: &Worker, rc: i32) -> Error {
    // SAFETY: the target's handle, on its own worker thread, inside a request.
    #[allow(unsafe_code)]
    let message = unsafe {
        let msg = ffi::sqlite3_errmsg(w.conn.handle());
        if msg.is_null() {
            None
        } else {
            Some(std::ffi::CStr::from_ptr(msg).to_string_lossy().into_owned())
        }
    };
    let message = message.filter(|m| m != "not an error");
    Error::from(rusqlite::Error::SqliteFailure(ffi::Error::new(rc), message))
}

impl Job {
    fn run(mut self, w: &mut Worker) -> Result<()> {
        if Arc::ptr_eq(&self.source, &w.shared) {
            return Err(Error::Misuse(
                "a connection cannot be backed up into itself".to_owned(),
            ));
        }
        let source = Arc::clone(&self.source);
        let target = Arc::clone(&w.shared);
        let (_pin, _filling) = {
            // Checked and taken together, so two backups starting at once in
            // opposite directions cannot both pass.
            static START: Mutex<()> = Mutex::new(());
            let _start = START.lock().unwrap_or_else(PoisonError::into_inner);
            // A database that is both copied from and written into by
            // backups makes SQLite report it locked at every step of one of
            // them: refuse clearly instead of retrying forever.
            if target.handle.pinned() {
                return Err(Error::Misuse(
                    "the target is the source of a backup in progress".to_owned(),
                ));
            }
            if source.handle.filling() {
                return Err(Error::Misuse(
                    "the source is the target of a backup in progress".to_owned(),
                ));
            }
            let pin = source.handle.pin().ok_or(Error::Closed)?;
            (pin, target.handle.fill())
        };
        let main = c"main";
        // SAFETY: the target's handle is used on its own thread; the source's
        // only inside `with_both`, holding its lock, and it stays open while
        // pinned. The backup object is finished below on every path.
        #[allow(unsafe_code)]
        let backup = with_both(&w.shared.handle, &source.handle, || unsafe {
            let src = source.handle.db.load(Ordering::Acquire);
            ffi::sqlite3_backup_init(w.conn.handle(), main.as_ptr(), src, self.schema.as_ptr())
        });
        if backup.is_null() {
            // SAFETY: as above; the error is left on the target's handle.
            #[allow(unsafe_code)]
            let rc = unsafe { ffi::sqlite3_errcode(w.conn.handle()) };
            return Err(backup_error(w, rc));
        }
        let outcome = self.steps(w, backup);
        // SAFETY: `backup` came from `sqlite3_backup_init` and is finished once.
        #[allow(unsafe_code)]
        let rc = with_both(&w.shared.handle, &source.handle, || unsafe {
            ffi::sqlite3_backup_finish(backup)
        });
        outcome?;
        if rc == ffi::SQLITE_OK {
            // Cached statements were prepared against the old schema.
            w.conn.flush_prepared_statement_cache();
            Ok(())
        } else {
            Err(backup_error(w, rc))
        }
    }

    fn steps(&mut self, w: &mut Worker, backup: *mut ffi::sqlite3_backup) -> Result<()> {
        let source = Arc::clone(&self.source);
        loop {
            if source.closed.load(Ordering::Acquire) {
                return Err(Error::Closed);
            }
            if w.shared.caller_gone() {
                return Err(Error::Cancelled("the backup's caller went away"));
            }
            // SAFETY: as in `run`: both handles held, `backup` alive.
            #[allow(unsafe_code)]
            let (rc, remaining, total) = with_both(&w.shared.handle, &source.handle, || unsafe {
                let rc = ffi::sqlite3_backup_step(backup, self.pages);
                (
                    rc,
                    ffi::sqlite3_backup_remaining(backup),
                    ffi::sqlite3_backup_pagecount(backup),
                )
            });
            if let Some(report) = self.progress.as_mut() {
                let p = BackupProgress {
                    remaining: u64::try_from(remaining).unwrap_or(0),
                    total: u64::try_from(total).unwrap_or(0),
                };
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| report(p)))
                    .map_err(Error::panic)?;
            }
            let pause = match rc {
                ffi::SQLITE_DONE => return Ok(()),
                ffi::SQLITE_OK => self.pause,
                ffi::SQLITE_BUSY | ffi::SQLITE_LOCKED => self.pause.max(Duration::from_millis(250)),
                _ => return Err(backup_error(w, rc)),
            };
            self.sleep(w, pause)?;
        }
    }

    /// Sleeps in slices, so a dropped caller or a closing source stops the
    /// backup promptly.
    fn sleep(&self, w: &Worker, pause: Duration) -> Result<()> {
        let until = Instant::now() + pause;
        loop {
            let now = Instant::now();
            if now >= until {
                return Ok(());
            }
            if w.shared.caller_gone() {
                return Err(Error::Cancelled("the backup's caller went away"));
            }
            std::thread::sleep((until - now).min(Duration::from_millis(20)));
        }
    }
}

impl Connection {
    /// Copies this connection's database into `target`'s, online
    /// (`sqlite3_backup`, Python's `Connection.backup`). Chain
    /// [`pages_per_step`](Backup::pages_per_step),
    /// [`pause`](Backup::pause), [`schema`](Backup::schema) and
    /// [`progress`](Backup::progress), then `.await`.
    ///
    /// # Errors
    /// SQLite's error (e.g. the target is in a transaction: "destination
    /// database is in use"); [`Error::Closed`] if either connection closes
    /// during the backup; [`Error::Misuse`] when `target` is this connection.
    ///
    /// # Cancel safety
    /// Dropping the future stops the backup after the current step; the
    /// target is left with a partial copy.
    pub fn backup_to<'a>(&'a self, target: &'a Connection) -> Backup<'a> {
        Backup::new(self, Destination::Connection(target))
    }

    /// Like [`backup_to`](Connection::backup_to), into the database file at
    /// `path` (created if missing, replaced if present), through a connection
    /// opened for the backup and closed after it.
    ///
    /// # Errors
    /// As [`backup_to`](Connection::backup_to); [`Error::Open`] for the path.
    ///
    /// # Cancel safety
    /// As [`backup_to`](Connection::backup_to).
    pub fn backup_to_path(&self, path: impl AsRef<Path>) -> Backup<'_> {
        Backup::new(self, Destination::Path(path.as_ref().to_path_buf()))
    }

    /// Replaces this connection's `main` database with the one in the file at
    /// `path`, in one request: no other request on this connection sees a
    /// partial restore.
    ///
    /// # Errors
    /// [`Error::Open`] when `path` cannot be opened; SQLite's error, e.g. when
    /// this connection is inside a transaction.
    ///
    /// # Cancel safety
    /// Dropping the future stops the restore after the current step, leaving
    /// a partial copy; run it again.
    pub async fn restore_from(&self, path: impl AsRef<Path>) -> Result<()> {
        let mut opts = ConnectOptions::new(path.as_ref()).read_only(true);
        opts.create = false;
        let source = opts.open().await?;
        let restored = source.backup_to(self).await;
        let closed = source.close().await;
        restored.and(closed)
    }

    /// Writes a vacuumed copy of the database to a new file (`VACUUM INTO`).
    ///
    /// # Errors
    /// SQLite's error, e.g. when the file already exists and is not empty.
    ///
    /// # Cancel safety
    /// Once queued, the copy runs to the end.
    pub async fn vacuum_into(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path
            .as_ref()
            .to_str()
            .ok_or_else(|| Error::Misuse("VACUUM INTO needs a UTF-8 path".to_owned()))?
            .to_owned();
        self.channel()
            .run(move |w| {
                w.conn
                    .execute("VACUUM INTO ?1", [&path])
                    .map_err(|e| Error::with_sql(e, "VACUUM INTO ?1"))?;
                Ok(())
            })
            .await
    }
}

/// A pool backs up from, and restores into, its writer: a write made through
/// the pool during a backup is carried into the copy instead of restarting it.
impl Database {
    /// [`Connection::backup_to`] from the writer.
    pub fn backup_to<'a>(&'a self, target: &'a Connection) -> Backup<'a> {
        self.writer().backup_to(target)
    }

    /// [`Connection::backup_to_path`] from the writer.
    pub fn backup_to_path(&self, path: impl AsRef<Path>) -> Backup<'_> {
        self.writer().backup_to_path(path)
    }

    /// [`Connection::restore_from`] into the writer; the readers see the
    /// restored database once it is complete.
    ///
    /// # Errors
    /// As [`Connection::restore_from`].
    ///
    /// # Cancel safety
    /// As [`Connection::restore_from`].
    pub async fn restore_from(&self, path: impl AsRef<Path>) -> Result<()> {
        self.writer().restore_from(path).await
    }

    /// [`Connection::vacuum_into`] on the writer.
    ///
    /// # Errors
    /// As [`Connection::vacuum_into`].
    ///
    /// # Cancel safety
    /// As [`Connection::vacuum_into`].
    pub async fn vacuum_into(&self, path: impl AsRef<Path>) -> Result<()> {
        self.writer().vacuum_into(path).await
    }

    /// [`Connection::dump`] on a reader: one snapshot, while writes go on.
    pub fn dump(&self) -> crate::Dump {
        self.reader().dump()
    }

    /// [`Connection::restore_dump`] on the writer; readers see the restored
    /// database once it commits.
    ///
    /// # Errors
    /// As [`Connection::restore_dump`].
    ///
    /// # Cancel safety
    /// As [`Connection::restore_dump`].
    pub async fn restore_dump(&self, script: impl Into<String>) -> Result<()> {
        self.writer().restore_dump(script).await
    }
}
