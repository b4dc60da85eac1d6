//! Opening the connection on the worker thread: the handle, the safe
//! defaults and pragmas, the user's init hook, migrations on open, and the
//! engine's own callbacks.

use super::*;
use crate::busy::retry_busy;

impl Worker {
    pub(super) fn open(
        opts: &ConnectOptions,
        shared: Arc<Shared>,
        wake_self: mpsc::WeakSender<Message>,
    ) -> Result<Worker> {
        crate::sqlite::check_linked_version();
        shared
            .groups_writes
            .store(opts.group_commit, Ordering::Relaxed);
        let role = match opts.role {
            Role::Standalone => "connection",
            Role::Writer => "writer",
            Role::Reader => "reader",
        };
        shared
            .stats
            .label(&opts.display_path().to_string_lossy(), role);
        crate::metrics::serve_on_this_thread(&shared.stats);
        let path = opts.display_path();
        let mut conn = {
            let _guard = crate::sqlite::open_close_guard();
            let conn = rusqlite::Connection::open_with_flags(&path, opts.open_flags())
                .map_err(|e| Error::opening(&path, Error::from(e)))?;
            // The first pragmas touch the file; keep them under the lock too
            // (where there is one: only an SQLite older than 3.51.2 needs it).
            if let Err(e) = configure(&conn, opts) {
                let _ = conn.close();
                return Err(Error::opening(&path, e));
            }
            conn
        };
        if let Some(init) = &opts.init {
            let r = catch_unwind(AssertUnwindSafe(|| init(&mut conn)));
            let r = match r {
                Ok(r) => r.map_err(Error::from),
                Err(p) => Err(Error::panic(p)),
            };
            if let Err(e) = r {
                let _guard = crate::sqlite::open_close_guard();
                let _ = conn.close();
                return Err(e);
            }
        }
        if let Err(e) = opts.migrate_at_open(&mut conn) {
            let _guard = crate::sqlite::open_close_guard();
            let _ = conn.close();
            return Err(e);
        }
        if opts.role == Role::Writer {
            // Applies to rusqlite's own `transaction()` too (in `call`, in
            // migrations): the write lock is taken at BEGIN, so a read that
            // later writes cannot fail with SQLITE_BUSY_SNAPSHOT.
            conn.set_transaction_behavior(rusqlite::TransactionBehavior::Immediate);
        }
        install_progress_handler(&mut conn, &shared, None)?;
        install_commit_hook(&mut conn, &shared, None)?;
        install_checkpoint_hook(&mut conn, &shared, opts.slow_statement)?;
        // SAFETY: the alias is a second, non-owning `rusqlite::Connection` over
        // the same `sqlite3*`. It is used only on this thread, only to prepare
        // the statements parked by streams, so that `call` can still hand out
        // `&mut rusqlite::Connection` while a stream is open. It never closes
        // the handle, and `Worker`'s field order drops the parked statements and
        // the alias before `conn`, which owns and closes the handle.
        #[allow(unsafe_code)]
        let alias = unsafe { rusqlite::Connection::from_handle(conn.handle())? };
        shared.handle.set(&conn);
        Ok(Worker {
            cursors: HashMap::new(),
            blobs: HashMap::new(),
            alias: Rc::new(alias),
            conn,
            shared,
            chunk_size: opts.iter_chunk_size,
            isolation_level: opts.isolation_level,
            slow_statement: opts.slow_statement,
            next_parked_id: 0,
            lease: None,
            begin_failed: None,
            queue_wait: Cell::new(Duration::ZERO),
            request_started: Cell::new(None),
            serving: None,
            leases: 0,
            end_lease: false,
            rollback_stray: opts.role == Role::Writer,
            tracks_schema: opts.role == Role::Writer,
            snapshot_limit: opts.snapshot_age_limit,
            expired: HashMap::new(),
            wake_self,
            columns: RefCell::default(),
            step_marks: Cell::new(None),
            columns_checked: Cell::new(None),
            read_batch: Cell::new(false),
            group: Group::new(opts.group_commit),
        })
    }
}

/// aiolite runs SQLite's automatic checkpoint itself, to time and count it.
/// A WAL hook replaces SQLite's default one (`sqlite3WalDefaultHook`), so
/// this one does what that did: after a commit that leaves the WAL at
/// `wal_autocheckpoint` pages or more, a PASSIVE checkpoint, whose outcome
/// does not touch the commit (which has happened). Left to SQLite where
/// there is no WAL, or automatic checkpoints are off.
fn install_checkpoint_hook(
    conn: &mut rusqlite::Connection,
    shared: &Arc<Shared>,
    slow: Duration,
) -> Result<()> {
    let mode: String = conn.pragma_query_value(None, "journal_mode", |r| r.get(0))?;
    let pages: i64 = conn.pragma_query_value(None, "wal_autocheckpoint", |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") || pages <= 0 {
        return Ok(());
    }
    let threshold = std::ffi::c_int::try_from(pages).unwrap_or(std::ffi::c_int::MAX);
    let shared = Arc::clone(shared);
    conn.wal_hook(Some(
        move |wal: &mut rusqlite::hooks::Wal, frames: std::ffi::c_int| {
            if frames >= threshold {
                let started = Instant::now();
                let outcome = wal.checkpoint_v2(rusqlite::wal::CheckpointMode::PASSIVE);
                let took = started.elapsed();
                shared.stats.checkpointed(took);
                super::events::checkpoint(frames, outcome.as_ref().ok(), took, slow);
                if let Err(e) = outcome {
                    // SQLite's own hook ignores it too: a reader in the way
                    // (BUSY) is the common case, and the next commit retries.
                    tracing::debug!(error = %e, "automatic checkpoint did not run");
                }
            }
            Ok(())
        },
    ))?;
    Ok(())
}

/// Runs the open-time configuration: safe defaults, then the pragmas.
pub(super) fn configure(conn: &rusqlite::Connection, opts: &ConnectOptions) -> Result<()> {
    use rusqlite::config::DbConfig;
    // A misspelt "column" must be an error, not a string literal.
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_DQS_DML, false)?;
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_DQS_DDL, false)?;
    // Functions with side effects are not callable from schema objects
    // (views, triggers, CHECK) of a file someone else may have written.
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_TRUSTED_SCHEMA, false)?;
    // No way to corrupt the file through SQL (writable_schema and friends).
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_DEFENSIVE, true)?;
    // The bundled SQLite is built with SQLITE_ENABLE_LOAD_EXTENSION, which
    // leaves the C API's extension loading on for every connection. It is
    // off until `enable_load_extension(true)`, as in Python.
    // SAFETY: `sqlite3_db_config` with this verb reads an int and writes
    // through an int pointer (null: not wanted), on the handle `conn` owns.
    #[allow(unsafe_code)]
    let rc = unsafe {
        rusqlite::ffi::sqlite3_db_config(
            conn.handle(),
            rusqlite::ffi::SQLITE_DBCONFIG_ENABLE_LOAD_EXTENSION,
            0 as std::ffi::c_int,
            std::ptr::null_mut::<std::ffi::c_int>(),
        )
    };
    if rc != rusqlite::ffi::SQLITE_OK {
        return Err(Error::from(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rc),
            Some("cannot turn off extension loading".to_owned()),
        )));
    }
    conn.busy_timeout(opts.busy_timeout)?;
    conn.set_prepared_statement_cache_capacity(opts.statement_cache_capacity);
    for (name, value) in opts.startup_pragmas() {
        if !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
        {
            return Err(Error::Config(format!("{name:?} is not a pragma name")));
        }
        retry_busy(opts.busy_timeout, || {
            if name == "journal_mode" {
                let got: String =
                    conn.pragma_update_and_check(None, "journal_mode", &value, |r| r.get(0))?;
                if !got.eq_ignore_ascii_case(&value) {
                    return Err(Error::Config(format!(
                        "journal_mode={value} was asked for, but SQLite kept {got}"
                    )));
                }
                Ok(())
            } else {
                let sql = format!("PRAGMA {name} = {value}");
                conn.execute_batch(&sql)
                    .map_err(|e| Error::with_sql(e, &sql))
            }
        })?;
    }
    Ok(())
}
