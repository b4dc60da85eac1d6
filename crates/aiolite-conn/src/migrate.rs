//! Schema migrations in refinery's format, run on the connection's worker.
//!
//! Files are named as refinery names them (`V{n}__{name}.sql` versioned,
//! `U{n}__{name}.sql` unversioned), checksums are refinery's, and the history
//! lives in refinery's table (`refinery_schema_history`), so refinery's own
//! tools read the same state. The runner is aiolite's own, because refinery's
//! reads what is applied before it takes the write lock (two processes starting
//! at once can both apply a migration) and commits a migration and its history
//! row separately. Here every migration, with its history row, is applied in
//! one `BEGIN IMMEDIATE` transaction that first re-reads the history: each
//! migration is applied exactly once, atomically, whoever else is migrating.
//!
//! Interop with refinery, in both directions:
//! - the set: [`Migrations::from_dir`] and `embed_migrations!` read exactly
//!   the files refinery reads (its own scanner: subfolders included, a name
//!   must match `[UV]{version}__{name}.sql` in full). A file refinery would
//!   skip although it looks like a migration (sqlx's `20240101_name.sql`,
//!   `.up.sql`, `v3__name.sql`, `V2__add-index.sql`, refinery's `.rs`
//!   migrations) is an error, never a silent skip; any other `.sql` file is
//!   skipped with a warning.
//! - the checksum is refinery's, of the file's bytes as they are. A history
//!   row written for the same file with the other line endings (a CRLF
//!   checkout against an LF one) is accepted as that migration.
//!
//! A migration that runs outside a transaction ([`NO_TRANSACTION`]) cannot be
//! applied together with its history row. It is claimed first: a row in
//! `aiolite_migration_claims`, committed under the write lock, and an OS lock
//! on the file `{database}-aiolite-migrate.lock`, held while its SQL runs and
//! until its history row is written. Another run that finds the claim while
//! the OS lock is held waits for it; one that finds the claim with the lock
//! free knows the claimant stopped in the middle, and reports
//! [`MigrationErrorKind::Interrupted`] instead of running it again or
//! skipping it.

use std::fmt;
use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, Result};
pub use crate::error::{MigrationError, MigrationErrorKind, MigrationReport};

const HISTORY: &str = "refinery_schema_history";
/// Migrations outside a transaction that were started and have no history row
/// yet (see the module doc).
const CLAIMS: &str = "aiolite_migration_claims";

/// The first line that makes a migration run outside a transaction, for
/// statements that do nothing inside one (`PRAGMA foreign_keys`, `VACUUM`).
/// Such a migration is not atomic. It is applied once across racing
/// processes, but a run that fails or dies in its middle leaves a claim that
/// the next run reports ([`MigrationErrorKind::Interrupted`]) rather than
/// guess: write it so that running it twice is harmless.
pub const NO_TRANSACTION: &str = "-- aiolite:no-transaction";

/// Whether a migration has a place in the version order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MigrationKind {
    /// `V{n}__`: applied in version order; a new one below the highest applied
    /// version is refused.
    Versioned,
    /// `U{n}__`: applied whenever it is not yet applied.
    Unversioned,
}

/// One migration of a [`Migrations`] set.
#[derive(Debug, Clone)]
pub struct Migration {
    version: i32,
    name: String,
    kind: MigrationKind,
    sql: String,
    checksum: u64,
    /// refinery's checksums of the same SQL with LF and with CRLF line
    /// endings: a history row holding either is this migration, applied from
    /// a checkout with the other line endings.
    line_ending_checksums: [u64; 2],
    no_transaction: bool,
}

impl Migration {
    /// Parses a refinery file stem (`V1__create_users`, with or without
    /// `.sql`) and takes the SQL as it is: the checksum is refinery's, of these
    /// exact bytes. (The same file with other line endings is still
    /// recognised as applied; see the [module doc](self).)
    ///
    /// # Errors
    /// [`Error::Migration`] ([`MigrationErrorKind::Invalid`]) for a name that is not `V{n}__{name}` or
    /// `U{n}__{name}` in full (the name letters, digits and `_`).
    pub fn new(file_name: &str, sql: &str) -> Result<Migration> {
        let stem = file_name.strip_suffix(".sql").unwrap_or(file_name);
        let invalid = |why: &dyn fmt::Display| {
            invalid_set(format!(
                "{file_name:?} is not a migration name (V{{n}}__{{name}}.sql or U{{n}}__{{name}}.sql, the name letters, digits and _): {why}"
            ))
        };
        // refinery's prefix class `[U|V]` also matches `|`, on which its
        // parser panics.
        if !stem.starts_with(['V', 'U']) {
            return Err(invalid(&"it must start with V or U"));
        }
        let parsed = refinery_core::Migration::unapplied(stem, sql).map_err(|e| invalid(&e))?;
        // refinery's name pattern is not anchored at its end: it would read
        // `V2__add-index` as migration "add", where its file scanner skips
        // `V2__add-index.sql`. Only a name that is all of the rest is one.
        if stem.split_once("__").map(|(_, rest)| rest) != Some(parsed.name()) {
            return Err(invalid(&"the name must be letters, digits and _ only"));
        }
        let refinery_checksum =
            |text: &str| refinery_core::Migration::unapplied(stem, text).map(|m| m.checksum());
        let lf = sql.replace("\r\n", "\n");
        let line_ending_checksums = [
            refinery_checksum(&lf).map_err(|e| invalid(&e))?,
            refinery_checksum(&lf.replace('\n', "\r\n")).map_err(|e| invalid(&e))?,
        ];
        let sql = sql.to_owned();
        // refinery does not export its prefix type; its Display is "V" or "U".
        let kind = if parsed.prefix().to_string() == "U" {
            MigrationKind::Unversioned
        } else {
            MigrationKind::Versioned
        };
        Ok(Migration {
            version: parsed.version(),
            name: parsed.name().to_owned(),
            kind,
            no_transaction: sql.lines().next().map(str::trim) == Some(NO_TRANSACTION),
            checksum: parsed.checksum(),
            line_ending_checksums,
            sql,
        })
    }

    /// Whether a history row's checksum is this migration's, whatever line
    /// endings the checkout that applied it had.
    fn matches_checksum(&self, applied: &str) -> bool {
        std::iter::once(self.checksum)
            .chain(self.line_ending_checksums)
            .any(|c| c.to_string() == applied)
    }

    /// The version number.
    pub fn version(&self) -> i32 {
        self.version
    }

    /// The name (the part after `__`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Versioned or unversioned.
    pub fn kind(&self) -> MigrationKind {
        self.kind
    }

    /// refinery's checksum of name, version and SQL (the bytes as given), the
    /// one written to the history.
    pub fn checksum(&self) -> u64 {
        self.checksum
    }

    fn label(&self) -> String {
        let prefix = match self.kind {
            MigrationKind::Versioned => 'V',
            MigrationKind::Unversioned => 'U',
        };
        format!("{prefix}{}__{}", self.version, self.name)
    }
}

/// A set of migrations, ordered by version. Build it with
/// `aiolite::embed_migrations!("migrations")` (compiled into the binary),
/// [`Migrations::from_dir`] (read at run time) or [`Migrations::new`].
#[derive(Debug, Clone, Default)]
pub struct Migrations {
    list: Arc<[Migration]>,
    /// A problem found while building an embedded set; reported by `migrate`.
    invalid: Option<Arc<str>>,
}

impl Migrations {
    /// A set from migrations.
    ///
    /// # Errors
    /// [`Error::Migration`] ([`MigrationErrorKind::Invalid`]) when two migrations share a version.
    pub fn new(migrations: impl IntoIterator<Item = Migration>) -> Result<Migrations> {
        let mut list: Vec<Migration> = migrations.into_iter().collect();
        list.sort_by_key(|m| m.version);
        if let Some(w) = list.windows(2).find(|w| w[0].version == w[1].version) {
            return Err(invalid_set(format!(
                "two migrations have version {}: {} and {}",
                w[0].version,
                w[0].label(),
                w[1].label()
            )));
        }
        Ok(Migrations {
            list: list.into(),
            invalid: None,
        })
    }

    /// Reads the migrations of a directory and its subfolders: exactly the
    /// files refinery's runner reads from it (refinery's own scanner decides).
    ///
    /// A file that refinery would skip but that looks like a migration meant
    /// to run is an error, so that `migrate()` never applies less than the
    /// folder holds without a word: another tool's name
    /// (`20240101120000_name.sql`, `name.up.sql`), a lower-case `v3__name.sql`,
    /// `V2__add-index.sql` (refinery reads only letters, digits and `_` in a
    /// name), a refinery Rust migration (`V4__name.rs`). Any other `.sql`
    /// file is skipped with a `warn` event.
    ///
    /// # Errors
    /// [`Error::Io`] when the directory or a file in it cannot be read;
    /// [`Error::Migration`] ([`MigrationErrorKind::Invalid`]) when a file is
    /// misnamed as above or two files share a version.
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Migrations> {
        let dir = dir.as_ref();
        let unreadable = |what: &Path, e: &dyn fmt::Display| Error::Io {
            path: what.to_owned(),
            source: std::io::Error::other(e.to_string()),
        };
        let found: Vec<PathBuf> =
            refinery_core::find_migration_files(dir, refinery_core::MigrationType::Sql)
                .map_err(|e| unreadable(dir, &e))?
                .collect();
        // refinery's scanner drops entries it cannot read and skips every
        // other file with a `log` line few services see: walk again to say so.
        let root = dir.canonicalize().map_err(|e| unreadable(dir, &e))?;
        for entry in walkdir::WalkDir::new(&root).sort_by_file_name() {
            let entry = entry.map_err(|e| unreadable(e.path().unwrap_or(&root), &e))?;
            let path = entry.path();
            if path.is_dir() || found.iter().any(|f| f == path) {
                continue;
            }
            let file = entry.file_name().to_string_lossy();
            if let Some(why) = misnamed(&file) {
                return Err(invalid_set(format!(
                    "{} is not read as a migration: {why}",
                    path.display()
                )));
            }
            if file.ends_with(".sql") {
                tracing::warn!(
                    file = %path.display(),
                    "not a migration name (V{{n}}__{{name}}.sql): skipped, as refinery skips it"
                );
            }
        }
        let mut list = Vec::with_capacity(found.len());
        for path in &found {
            let sql = std::fs::read_to_string(path).map_err(|source| Error::Io {
                path: path.clone(),
                source,
            })?;
            let file = path
                .file_name()
                .map(|f| f.to_string_lossy())
                .unwrap_or_default();
            list.push(Migration::new(&file, &sql)?);
        }
        Self::new(list)
    }

    /// Used by `embed_migrations!`: the file names were checked at compile
    /// time; a failure here is kept and reported by `migrate`.
    #[doc(hidden)]
    pub fn __embedded(files: &[(&str, &str)]) -> Migrations {
        let built = files
            .iter()
            .map(|(name, sql)| Migration::new(name, sql))
            .collect::<Result<Vec<_>>>()
            .and_then(Migrations::new);
        built.unwrap_or_else(|e| Migrations {
            list: Arc::from(Vec::new()),
            invalid: Some(e.to_string().into()),
        })
    }

    /// The migrations, by version.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &Migration> {
        self.list.iter()
    }

    /// Number of migrations.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// `true` for an empty set.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
}

/// Why a file that refinery's scanner skips looks like a migration meant to
/// run (`None`: it does not). `embed_migrations!` applies the same rules at
/// compile time (aiolite-derive cannot depend on this crate).
fn misnamed(file: &str) -> Option<&'static str> {
    let mut chars = file.chars();
    let (first, second) = (chars.next(), chars.next());
    let versioned = |prefixes: &[char]| {
        first.is_some_and(|c| prefixes.contains(&c)) && second.is_some_and(|c| c.is_ascii_digit())
    };
    let lower = file.to_ascii_lowercase();
    let why = if lower.ends_with(".rs") && versioned(&['V', 'U']) {
        "refinery's Rust migrations are not run by aiolite; write it as SQL (V{n}__{name}.sql)"
    } else if !lower.ends_with(".sql") {
        return None;
    } else if lower.ends_with(".up.sql") || lower.ends_with(".down.sql") {
        "a reversible migration of another tool (sqlx, diesel); refinery and aiolite read V{n}__{name}.sql, applied once; rename it, or move it out of the folder"
    } else if first.is_some_and(|c| c.is_ascii_digit()) {
        "named the way sqlx names migrations ({version}_{name}.sql); refinery and aiolite read V{version}__{name}.sql; rename it, or move it out of the folder"
    } else if versioned(&['v', 'u']) {
        "the V or U prefix must be upper case (refinery skips this file); rename it, or move it out of the folder"
    } else if versioned(&['V', 'U']) {
        "a migration is named V{n}__{name}.sql, two underscores after the version and the name letters, digits and _ only (refinery skips this file); rename it, or move it out of the folder"
    } else {
        return None;
    };
    Some(why)
}

/// A set that cannot be built: a bad name, two files with one version, a
/// misnamed file in the folder.
fn invalid_set(why: String) -> Error {
    Error::Migration(Box::new(MigrationError {
        kind: MigrationErrorKind::Invalid(why),
        report: MigrationReport::default(),
    }))
}

/// What the history holds for one version.
struct Applied {
    version: i32,
    name: String,
    checksum: String,
}

fn history(conn: &rusqlite::Connection) -> Result<Vec<Applied>> {
    let mut stmt = crate::metrics::prepare_cached(
        conn,
        &format!("SELECT version, name, checksum FROM {HISTORY} ORDER BY version"),
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(Applied {
            version: r.get(0)?,
            name: r.get(1)?,
            checksum: r.get(2)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Applies the set up to `target` (every migration when `None`).
pub(crate) fn run(
    conn: &mut rusqlite::Connection,
    set: &Migrations,
    target: Option<i32>,
) -> std::result::Result<MigrationReport, Box<MigrationError>> {
    let mut report = MigrationReport::default();
    macro_rules! fail {
        ($kind:expr) => {
            return Err(Box::new(MigrationError {
                kind: $kind,
                report,
            }))
        };
    }
    // The connection's own busy timeout bounds the retries below.
    let busy_ms: i64 = conn
        .query_row("PRAGMA busy_timeout", [], |r| r.get(0))
        .unwrap_or(5000);
    let busy_timeout = Duration::from_millis(busy_ms.max(0).unsigned_abs());
    if let Some(why) = &set.invalid {
        fail!(MigrationErrorKind::Invalid(why.to_string()));
    }
    let create = crate::busy::retry_busy(busy_timeout, || {
        Ok(conn.execute_batch(&format!(
            "CREATE TABLE IF NOT EXISTS {HISTORY}(
                 version INT4 PRIMARY KEY,
                 name VARCHAR(255),
                 applied_on VARCHAR(255),
                 checksum VARCHAR(255))"
        ))?)
    });
    if let Err(e) = create {
        fail!(MigrationErrorKind::History(e));
    }
    let lock = MigrationLock::for_database(conn);
    for m in set
        .list
        .iter()
        .filter(|m| target.is_none_or(|t| m.version <= t))
    {
        loop {
            // The write lock is taken before the history is read: whoever
            // else is migrating, this decision and this migration are one step.
            let begin =
                crate::busy::retry_busy(
                    busy_timeout,
                    || Ok(conn.execute_batch("BEGIN IMMEDIATE")?),
                );
            if let Err(e) = begin {
                fail!(MigrationErrorKind::History(e));
            }
            let step = check_and_apply(conn, set, m, &lock, busy_timeout);
            match step {
                Ok(Step::AlreadyApplied) => {
                    let _ = conn.execute_batch("COMMIT");
                    report.already_applied.push((m.version, m.name.clone()));
                }
                Ok(Step::Applied) => match conn.execute_batch("COMMIT") {
                    Ok(()) => report.applied.push((m.version, m.name.clone())),
                    Err(e) => {
                        let _ = conn.execute_batch("ROLLBACK");
                        fail!(MigrationErrorKind::Failed {
                            version: m.version,
                            file: m.label(),
                            error: e.into(),
                        });
                    }
                },
                Ok(Step::OtherRunHasIt) => {
                    // Never wait for the OS lock while holding SQLite's: the
                    // holder needs the write lock to record its migration.
                    let _ = conn.execute_batch("ROLLBACK");
                    tracing::info!(
                        version = m.version,
                        "another run is applying a migration outside a transaction; waiting for it"
                    );
                    match lock.wait() {
                        Ok(()) => continue,
                        Err(kind) => fail!(kind),
                    }
                }
                Err(kind) => {
                    if !conn.is_autocommit() {
                        let _ = conn.execute_batch("ROLLBACK");
                    }
                    fail!(kind);
                }
            }
            break;
        }
    }
    Ok(report)
}

enum Step {
    Applied,
    AlreadyApplied,
    /// Another run holds the claim on a migration outside a transaction and is
    /// alive: wait for it (outside the write transaction), then look again.
    OtherRunHasIt,
}

/// The OS lock that says a run is applying a migration outside a transaction
/// (see the module doc). `None` inside for a database without a file (in
/// memory, temporary): no other process can open it.
struct MigrationLock(Option<PathBuf>);

impl MigrationLock {
    fn for_database(conn: &rusqlite::Connection) -> MigrationLock {
        MigrationLock(
            conn.path()
                .filter(|p| !p.is_empty())
                .map(|p| PathBuf::from(format!("{p}-aiolite-migrate.lock"))),
        )
    }

    fn open(&self) -> std::result::Result<Option<(File, &Path)>, MigrationErrorKind> {
        let Some(path) = &self.0 else {
            return Ok(None);
        };
        // The file stays: removing it would race with a run about to lock it.
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(|error| MigrationErrorKind::Lock {
                path: path.clone(),
                error,
            })?;
        Ok(Some((file, path)))
    }

    /// Takes the lock if no one holds it: `Ok(None)` when another run does.
    /// The lock is released when the returned file is dropped, or when the
    /// process dies, which is what tells an interrupted claim from a live one.
    fn try_take(&self) -> std::result::Result<Option<Option<File>>, MigrationErrorKind> {
        let Some((file, path)) = self.open()? else {
            return Ok(Some(None));
        };
        match file.try_lock() {
            Ok(()) => Ok(Some(Some(file))),
            Err(TryLockError::WouldBlock) => Ok(None),
            Err(TryLockError::Error(error)) => Err(MigrationErrorKind::Lock {
                path: path.to_owned(),
                error,
            }),
        }
    }

    /// Blocks until the run holding the lock releases it (or dies).
    fn wait(&self) -> std::result::Result<(), MigrationErrorKind> {
        let Some((file, path)) = self.open()? else {
            return Ok(());
        };
        file.lock().map_err(|error| MigrationErrorKind::Lock {
            path: path.to_owned(),
            error,
        })
    }
}

/// The claim an earlier run left on `version`: (started_on, pid).
fn claim(conn: &rusqlite::Connection, version: i32) -> rusqlite::Result<Option<(String, i64)>> {
    use rusqlite::OptionalExtension;
    let exists: bool = conn.query_row(
        "SELECT count(*) > 0 FROM sqlite_schema WHERE type = 'table' AND name = ?1",
        [CLAIMS],
        |r| r.get(0),
    )?;
    if !exists {
        return Ok(None);
    }
    conn.query_row(
        &format!("SELECT started_on, pid FROM {CLAIMS} WHERE version = ?1"),
        [version],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .optional()
}

/// Inside the write transaction: verify the history against the set, then
/// apply `m` with its history row unless it is there already.
fn check_and_apply(
    conn: &mut rusqlite::Connection,
    set: &Migrations,
    m: &Migration,
    lock: &MigrationLock,
    busy_timeout: Duration,
) -> std::result::Result<Step, MigrationErrorKind> {
    let applied = history(conn).map_err(MigrationErrorKind::History)?;
    for a in &applied {
        match set.list.iter().find(|s| s.version == a.version) {
            None => {
                return Err(MigrationErrorKind::Missing {
                    version: a.version,
                    name: a.name.clone(),
                })
            }
            Some(s) if s.name != a.name || !s.matches_checksum(&a.checksum) => {
                return Err(MigrationErrorKind::Divergent {
                    version: a.version,
                    applied_name: a.name.clone(),
                    name: s.name.clone(),
                })
            }
            Some(_) => {}
        }
    }
    if applied.iter().any(|a| a.version == m.version) {
        return Ok(Step::AlreadyApplied);
    }
    let highest = applied
        .iter()
        .filter(|a| {
            set.list
                .iter()
                .any(|s| s.version == a.version && s.kind == MigrationKind::Versioned)
        })
        .map(|a| a.version)
        .max();
    if let (MigrationKind::Versioned, Some(h)) = (m.kind, highest) {
        if h > m.version {
            return Err(MigrationErrorKind::OutOfOrder {
                version: m.version,
                name: m.name.clone(),
                applied: h,
            });
        }
    }
    // Checked for every migration, not only for one outside a transaction:
    // the file may have lost its first line since the claimant stopped.
    let claimed = claim(conn, m.version).map_err(|e| MigrationErrorKind::History(e.into()))?;
    let held = if claimed.is_some() || m.no_transaction {
        match lock.try_take()? {
            None => return Ok(Step::OtherRunHasIt),
            Some(held) => Some(held),
        }
    } else {
        None
    };
    if let Some((started_on, pid)) = claimed {
        // The claim is there and no live run holds the lock: its run stopped.
        return Err(MigrationErrorKind::Interrupted {
            version: m.version,
            name: m.name.clone(),
            started_on,
            pid,
        });
    }
    let failed = |error: Error| MigrationErrorKind::Failed {
        version: m.version,
        file: m.label(),
        error,
    };
    if m.no_transaction {
        apply_outside_transaction(conn, m, busy_timeout)?;
    } else {
        conn.execute_batch(&m.sql)
            .map_err(|e| failed(Error::with_sql(e, &m.sql)))?;
    }
    conn.execute(
        &format!(
            "INSERT INTO {HISTORY}(version, name, applied_on, checksum)
             VALUES (?1, ?2, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), ?3)"
        ),
        (m.version, &m.name, m.checksum.to_string()),
    )
    .map_err(|e| failed(e.into()))?;
    // The OS lock (`held`) may go before the COMMIT: a run that looks at the
    // claim does so in its own write transaction, so after this one's COMMIT,
    // when the history row is there.
    drop(held);
    Ok(Step::Applied)
}

/// Claims the migration and leaves the write transaction, runs its SQL on its
/// own, then takes the write lock again and removes the claim (the caller
/// writes the history row in the same transaction). The caller holds the OS
/// lock throughout. `PRAGMA foreign_keys` is put back as it was, so the
/// connection the pool keeps using is not left changed.
///
/// Every way out between the claim's COMMIT and the history row's (an error,
/// a crash) leaves the claim, which the next run reports as
/// [`MigrationErrorKind::Interrupted`].
fn apply_outside_transaction(
    conn: &mut rusqlite::Connection,
    m: &Migration,
    busy_timeout: Duration,
) -> std::result::Result<(), MigrationErrorKind> {
    let history = |e: rusqlite::Error| MigrationErrorKind::History(e.into());
    conn.execute_batch(&format!(
        "CREATE TABLE IF NOT EXISTS {CLAIMS}(
             version INTEGER PRIMARY KEY,
             name TEXT NOT NULL,
             started_on TEXT NOT NULL,
             pid INTEGER NOT NULL)"
    ))
    .map_err(history)?;
    conn.execute(
        &format!(
            "INSERT INTO {CLAIMS}(version, name, started_on, pid)
             VALUES (?1, ?2, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), ?3)"
        ),
        (m.version, &m.name, i64::from(std::process::id())),
    )
    .map_err(history)?;
    conn.execute_batch("COMMIT").map_err(history)?;
    let failed = |error: Error| MigrationErrorKind::Failed {
        version: m.version,
        file: m.label(),
        error,
    };
    let fk: i64 = conn
        .query_row("PRAGMA foreign_keys", [], |r| r.get(0))
        .map_err(history)?;
    let result = conn
        .execute_batch(&m.sql)
        .map_err(|e| failed(Error::with_sql(e, &m.sql)));
    let restored = conn.execute_batch(&format!("PRAGMA foreign_keys = {fk}"));
    result?;
    restored.map_err(history)?;
    crate::busy::retry_busy(busy_timeout, || Ok(conn.execute_batch("BEGIN IMMEDIATE")?))
        .map_err(MigrationErrorKind::History)?;
    conn.execute(
        &format!("DELETE FROM {CLAIMS} WHERE version = ?1"),
        [m.version],
    )
    .map_err(history)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_checksums_follow_refinery() {
        let m = Migration::new("V3__add_index.sql", "CREATE INDEX i ON t(x);\n").expect("parse");
        assert_eq!(
            (m.version(), m.name(), m.kind()),
            (3, "add_index", MigrationKind::Versioned)
        );
        let crlf = Migration::new("V3__add_index", "CREATE INDEX i ON t(x);\r\n").expect("parse");
        for (ours, text) in [
            (&m, "CREATE INDEX i ON t(x);\n"),
            (&crlf, "CREATE INDEX i ON t(x);\r\n"),
        ] {
            let refinery =
                refinery_core::Migration::unapplied("V3__add_index", text).expect("refinery");
            assert_eq!(
                ours.checksum(),
                refinery.checksum(),
                "refinery's, of the bytes"
            );
        }
        assert!(m.matches_checksum(&crlf.checksum().to_string()));
        assert!(crlf.matches_checksum(&m.checksum().to_string()));
        assert!(!m.matches_checksum("12345"));
        assert!(
            Migration::new("V2__add-index.sql", "").is_err(),
            "refinery skips the file"
        );
        assert!(
            Migration::new("|2__pipe.sql", "").is_err(),
            "refinery's parser panics"
        );
        let u = Migration::new("U7__seed", "SELECT 1").expect("parse");
        assert_eq!(u.kind(), MigrationKind::Unversioned);
        assert!(Migration::new("create_users.sql", "").is_err());
        assert!(Migration::new("V1_create_users.sql", "").is_err());
        assert!(Migrations::new([
            Migration::new("V1__a", "").expect("a"),
            Migration::new("V1__b", "").expect("b"),
        ])
        .is_err());
        let nt = Migration::new(
            "V2__fk",
            "-- aiolite:no-transaction\r\nPRAGMA foreign_keys = OFF;",
        )
        .expect("parse");
        assert!(nt.no_transaction);
    }
}
