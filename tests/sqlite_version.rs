//! The version floor: aiolite must not run on an SQLite with a known defect in
//! the way it uses it. 3.51.3 fixed the last of them (the WAL-reset bug, which
//! can corrupt a database that a writer and readers share).

use aiolite::{Connection, Database};

/// 3.51.3 as `sqlite3_libversion_number()` writes it.
const FLOOR: i32 = 3_051_003;

fn number(text: &str) -> i32 {
    let parts: Vec<i32> = text
        .split('.')
        .map(|p| p.parse().expect("a version number"))
        .collect();
    parts[0] * 1_000_000 + parts[1] * 1_000 + parts.get(2).copied().unwrap_or(0)
}

#[test]
fn the_linked_sqlite_is_at_least_3_51_3() {
    let linked = aiolite::rusqlite::version_number();
    assert!(
        linked >= FLOOR,
        "aiolite is linked with SQLite {}, older than 3.51.3: it has the WAL-reset \
         corruption bug; build with the `bundled` feature or upgrade the system SQLite",
        aiolite::rusqlite::version()
    );
}

#[tokio::test]
async fn every_connection_runs_that_sqlite() {
    let conn = Connection::open_in_memory().await.expect("open");
    let text: String = conn
        .fetch_one("SELECT sqlite_version()", ())
        .await
        .expect("version")
        .get(0)
        .expect("text");
    assert_eq!(number(&text), aiolite::rusqlite::version_number());
    assert!(number(&text) >= FLOOR, "SQLite {text}");

    let dir = tempfile::tempdir().expect("tempdir");
    let db = Database::open(dir.path().join("v.db")).await.expect("open");
    for handle in [db.writer(), db.reader()] {
        let text: String = handle
            .fetch_one("SELECT sqlite_version()", ())
            .await
            .expect("version")
            .get(0)
            .expect("text");
        assert!(number(&text) >= FLOOR, "SQLite {text}");
    }
    db.close().await.expect("close");
}
