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

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, Result};

const HISTORY: &str = "refinery_schema_history";

/// The first line that makes a migration run outside a transaction, for
/// statements that do nothing inside one (`PRAGMA foreign_keys`, `VACUUM`).
/// Such a migration is not atomic: write it so that running it twice is
/// harmless.
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
    no_transaction: bool,
}

impl Migration {
    /// Parses a refinery file stem (`V1__create_users`, with or without
    /// `.sql`) and takes the SQL, line endings normalised to `\n` so that a
    /// CRLF checkout has the same checksum.
    ///
    /// # Errors
    /// [`Error::Options`] for a name that is not `V{n}__{name}` or `U{n}__{name}`.
    pub fn new(file_name: &str, sql: &str) -> Result<Migration> {
        let stem = file_name.strip_suffix(".sql").unwrap_or(file_name);
        let sql = sql.replace("\r\n", "\n");
        let parsed = refinery_core::Migration::unapplied(stem, &sql).map_err(|e| {
            Error::Options(format!(
                "{file_name:?} is not a migration name (V{{n}}__{{name}}.sql or U{{n}}__{{name}}.sql): {e}"
            ))
        })?;
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
            sql,
        })
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

    /// refinery's checksum of name, version and SQL.
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
    /// [`Error::Options`] when two migrations share a version.
    pub fn new(migrations: impl IntoIterator<Item = Migration>) -> Result<Migrations> {
        let mut list: Vec<Migration> = migrations.into_iter().collect();
        list.sort_by_key(|m| m.version);
        if let Some(w) = list.windows(2).find(|w| w[0].version == w[1].version) {
            return Err(Error::Options(format!(
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

    /// Reads every `V*__*.sql` and `U*__*.sql` file of a directory.
    ///
    /// # Errors
    /// [`Error::Options`] when the directory cannot be read, a file name does
    /// not parse, or two files share a version.
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Migrations> {
        let dir = dir.as_ref();
        let unreadable =
            |e: std::io::Error| Error::Options(format!("cannot read {}: {e}", dir.display()));
        let mut list = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(unreadable)? {
            let path = entry.map_err(unreadable)?.path();
            let Some(file) = path.file_name().and_then(|f| f.to_str()) else {
                continue;
            };
            if !file.ends_with(".sql") || !(file.starts_with('V') || file.starts_with('U')) {
                continue;
            }
            let sql = std::fs::read_to_string(&path).map_err(unreadable)?;
            list.push(Migration::new(file, &sql)?);
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

/// What a migration run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MigrationReport {
    /// Applied by this run, in order: (version, name).
    pub applied: Vec<(i32, String)>,
    /// Found already applied (by an earlier run or another process).
    pub already_applied: Vec<(i32, String)>,
}

/// Why a migration run stopped. It carries the report of what the run applied
/// before it stopped.
#[derive(Debug)]
pub struct MigrationError {
    /// What went wrong.
    pub kind: MigrationErrorKind,
    /// What was applied before the failure.
    pub report: MigrationReport,
}

/// The ways a migration run can fail.
#[derive(Debug)]
#[non_exhaustive]
pub enum MigrationErrorKind {
    /// An applied migration's name or SQL changed since it was applied.
    Divergent {
        /// Its version.
        version: i32,
        /// Its name in the database.
        applied_name: String,
        /// Its name in the set.
        name: String,
    },
    /// A migration applied in the database is not in the set any more.
    Missing {
        /// Its version.
        version: i32,
        /// Its name in the database.
        name: String,
    },
    /// A new versioned migration is below the highest version applied.
    OutOfOrder {
        /// The new migration's version.
        version: i32,
        /// Its name.
        name: String,
        /// The highest version applied.
        applied: i32,
    },
    /// A migration's SQL failed; nothing of it was kept.
    Failed {
        /// Its version.
        version: i32,
        /// Its file name (`V3__add_index`).
        file: String,
        /// SQLite's error.
        error: Error,
    },
    /// Reading or writing the history failed.
    History(Error),
    /// The set could not be built (duplicate versions, bad names).
    Invalid(String),
}

impl fmt::Display for MigrationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            MigrationErrorKind::Divergent {
                version,
                applied_name,
                name,
            } => write!(
                f,
                "migration {version} ({name}) differs from the one applied as {applied_name}: applied migrations must not change"
            ),
            MigrationErrorKind::Missing { version, name } => write!(
                f,
                "migration {version} ({name}) is applied in the database but missing from the set"
            ),
            MigrationErrorKind::OutOfOrder {
                version,
                name,
                applied,
            } => write!(
                f,
                "migration {version} ({name}) is new but version {applied} is already applied; give it a higher version"
            ),
            MigrationErrorKind::Failed {
                version,
                file,
                error,
            } => write!(f, "migration {version} ({file}.sql) failed: {error}"),
            MigrationErrorKind::History(e) => write!(f, "reading the migration history failed: {e}"),
            MigrationErrorKind::Invalid(why) => write!(f, "invalid migration set: {why}"),
        }?;
        if !self.report.applied.is_empty() {
            let versions: Vec<String> = self
                .report
                .applied
                .iter()
                .map(|(v, _)| v.to_string())
                .collect();
            write!(f, " (applied before it: {})", versions.join(", "))?;
        }
        Ok(())
    }
}

impl std::error::Error for MigrationError {}

/// What the history holds for one version.
struct Applied {
    version: i32,
    name: String,
    checksum: String,
}

fn history(conn: &rusqlite::Connection) -> Result<Vec<Applied>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT version, name, checksum FROM {HISTORY} ORDER BY version"
    ))?;
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
    let create = crate::worker::retry_busy(busy_timeout, || {
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
    for m in set
        .list
        .iter()
        .filter(|m| target.is_none_or(|t| m.version <= t))
    {
        // The write lock is taken before the history is read: whoever else is
        // migrating, this decision and this migration are one step.
        let begin =
            crate::worker::retry_busy(busy_timeout, || Ok(conn.execute_batch("BEGIN IMMEDIATE")?));
        if let Err(e) = begin {
            fail!(MigrationErrorKind::History(e));
        }
        let step = check_and_apply(conn, set, m);
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
            Err(kind) => {
                if !conn.is_autocommit() {
                    let _ = conn.execute_batch("ROLLBACK");
                }
                fail!(kind);
            }
        }
    }
    Ok(report)
}

enum Step {
    Applied,
    AlreadyApplied,
}

/// Inside the write transaction: verify the history against the set, then
/// apply `m` with its history row unless it is there already.
fn check_and_apply(
    conn: &mut rusqlite::Connection,
    set: &Migrations,
    m: &Migration,
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
            Some(s) if s.name != a.name || s.checksum.to_string() != a.checksum => {
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
    let failed = |error: Error| MigrationErrorKind::Failed {
        version: m.version,
        file: m.label(),
        error,
    };
    if m.no_transaction {
        apply_outside_transaction(conn, m).map_err(failed)?;
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
    Ok(Step::Applied)
}

/// Leaves the write transaction, runs the migration's SQL on its own, then
/// takes the lock again for its history row. `PRAGMA foreign_keys` is put back
/// as it was, so the connection the pool keeps using is not left changed.
fn apply_outside_transaction(conn: &mut rusqlite::Connection, m: &Migration) -> Result<()> {
    conn.execute_batch("COMMIT")?;
    let fk: i64 = conn.query_row("PRAGMA foreign_keys", [], |r| r.get(0))?;
    let result = conn
        .execute_batch(&m.sql)
        .map_err(|e| Error::with_sql(e, &m.sql));
    conn.execute_batch(&format!("PRAGMA foreign_keys = {fk}"))?;
    conn.execute_batch("BEGIN IMMEDIATE")?;
    result
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
        assert_eq!(
            m.checksum(),
            crlf.checksum(),
            "CRLF and LF have one checksum"
        );
        let refinery =
            refinery_core::Migration::unapplied("V3__add_index", "CREATE INDEX i ON t(x);\n")
                .expect("refinery");
        assert_eq!(m.checksum(), refinery.checksum());
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
