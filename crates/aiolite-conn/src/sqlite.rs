//! What aiolite needs of the SQLite it is linked with.
//!
//! The `bundled` feature (on by default) compiles SQLite 3.54.1, which has
//! none of the bugs below. Built against a system SQLite, the library may be
//! older; aiolite then warns once per process and works around what it can.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

/// The oldest SQLite without a known defect in the way aiolite uses it: 3.51.3
/// fixed the WAL-reset bug.
pub(crate) const MINIMUM_SQLITE: i32 = 3_051_003;

/// The first SQLite without the open/close deadlock of rusqlite#1860.
const OPEN_CLOSE_FIXED: i32 = 3_051_002;

/// The known defects of SQLite `version` (as `sqlite3_libversion_number`)
/// that hit how aiolite uses it, worst first; empty from 3.51.3 on.
pub(crate) fn known_defects(version: i32) -> Vec<&'static str> {
    let mut defects = Vec::new();
    if version < MINIMUM_SQLITE {
        defects.push(
            "the WAL-reset bug (fixed in 3.51.3): with two or more connections to one WAL \
             file, as a Database has, a checkpoint racing a commit can corrupt the database",
        );
    }
    if version < OPEN_CLOSE_FIXED {
        defects.push(
            "a process-wide deadlock when one thread closes the last connection to a WAL \
             file while another opens it (fixed in 3.51.2; aiolite serializes opens and \
             closes to avoid it)",
        );
    }
    defects
}

static WARNED: AtomicBool = AtomicBool::new(false);

/// Logs one warning per process (per `warned` flag) when `version` has a
/// known defect. Returns whether it warned.
fn warn_once(version: i32, warned: &AtomicBool) -> bool {
    let defects = known_defects(version);
    if defects.is_empty() || warned.swap(true, Ordering::Relaxed) {
        return false;
    }
    tracing::warn!(
        sqlite = %version_text(version),
        minimum = "3.51.3",
        "the linked SQLite has known defects: {}; upgrade the system SQLite or build \
         aiolite with its `bundled` feature (SQLite 3.54.1)",
        defects.join("; and ")
    );
    true
}

/// Called on every open: warns (once) about an old system SQLite.
pub(crate) fn check_linked_version() {
    warn_once(rusqlite::version_number(), &WARNED);
}

fn version_text(v: i32) -> String {
    format!("{}.{}.{}", v / 1_000_000, v / 1_000 % 1_000, v % 1_000)
}

/// Held around every `sqlite3_open` and `sqlite3_close`, but only where the
/// linked SQLite has the open/close deadlock (older than 3.51.2). From 3.51.2
/// on, opens and closes run in parallel: `benches/open_many.rs` measured 64
/// `Database`s (320 connections) on 64 files opening in 88-104 ms without the
/// lock against 159-172 ms with it (on one file, 50-52 ms against 54-63 ms;
/// closing 22-31 ms either way). `tests/open_close_stress.rs` is the proof
/// that concurrent open/close of one WAL file no longer hangs.
pub(crate) fn open_close_guard() -> Option<MutexGuard<'static, ()>> {
    static OPEN_CLOSE: Mutex<()> = Mutex::new(());
    (rusqlite::version_number() < OPEN_CLOSE_FIXED)
        .then(|| OPEN_CLOSE.lock().unwrap_or_else(PoisonError::into_inner))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;

    #[test]
    fn the_bundled_sqlite_is_past_every_known_defect() {
        assert!(
            rusqlite::version_number() >= MINIMUM_SQLITE,
            "linked SQLite {} is older than 3.51.3",
            rusqlite::version()
        );
        assert!(known_defects(rusqlite::version_number()).is_empty());
        assert!(open_close_guard().is_none(), "no lock on a fixed SQLite");
    }

    #[test]
    fn each_defect_is_named_for_the_versions_it_hits() {
        assert_eq!(known_defects(3_051_001).len(), 2);
        assert!(known_defects(3_051_001)[0].contains("WAL-reset"));
        assert_eq!(known_defects(3_051_002).len(), 1);
        assert!(known_defects(3_051_002)[0].contains("WAL-reset"));
        assert!(known_defects(3_051_003).is_empty());
        assert!(known_defects(3_054_001).is_empty());
        assert_eq!(version_text(3_051_003), "3.51.3");
    }

    /// Counts the warnings logged while it is the default subscriber.
    struct CountWarnings(Arc<AtomicUsize>);

    impl tracing::Subscriber for CountWarnings {
        fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
            tracing::span::Id::from_u64(1)
        }
        fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
        fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
        fn event(&self, event: &tracing::Event<'_>) {
            if *event.metadata().level() == tracing::Level::WARN {
                self.0.fetch_add(1, Ordering::Relaxed);
            }
        }
        fn enter(&self, _: &tracing::span::Id) {}
        fn exit(&self, _: &tracing::span::Id) {}
    }

    #[test]
    fn an_old_sqlite_is_warned_about_once_per_process() {
        let count = Arc::new(AtomicUsize::new(0));
        let warned = AtomicBool::new(false);
        tracing::subscriber::with_default(CountWarnings(Arc::clone(&count)), || {
            assert!(warn_once(3_051_001, &warned));
            assert!(!warn_once(3_051_001, &warned));
            assert!(!warn_once(3_050_000, &warned));
        });
        assert_eq!(count.load(Ordering::Relaxed), 1);

        let fresh = AtomicBool::new(false);
        tracing::subscriber::with_default(CountWarnings(Arc::clone(&count)), || {
            assert!(
                !warn_once(3_054_001, &fresh),
                "a fixed SQLite is not warned about"
            );
        });
        assert_eq!(count.load(Ordering::Relaxed), 1);
        assert!(!fresh.load(Ordering::Relaxed));
    }
}
