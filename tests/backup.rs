//! Online backup, restore and VACUUM INTO (aiosqlite's smoke tests for
//! backup and iterdump, ported with the same expectations).

mod common;
use aiolite::rusqlite;
use aiolite::{BackupProgress, Connection, Error};
use common::{foo_rows, foo_table, scalar};
use futures_util::TryStreamExt;
use std::future::IntoFuture;
use std::sync::{Arc, Mutex};

#[tokio::test]
async fn iterdump() {
    let conn = Connection::open_in_memory().await.expect("open");
    foo_table(&conn).await;
    let lines: Vec<String> = conn.dump().try_collect().await.expect("dump");
    assert_eq!(
        lines,
        [
            "BEGIN TRANSACTION;",
            "CREATE TABLE foo (i integer, k charvar(250));",
            "INSERT INTO \"foo\" VALUES(1,'hello');",
            "INSERT INTO \"foo\" VALUES(2,'world');",
            "COMMIT;",
        ]
    );
}

#[tokio::test]
async fn backup_to_another_connection() {
    let db1 = Connection::open_in_memory().await.expect("open");
    let db2 = Connection::open_in_memory().await.expect("open");
    foo_table(&db1).await;
    let err = db2
        .execute("select * from foo", ())
        .await
        .expect_err("not there yet");
    assert!(err.to_string().contains("no such table: foo"), "{err}");
    let reports = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&reports);
    db1.backup_to(&db2)
        .progress(move |p| sink.lock().expect("lock").push(p))
        .await
        .expect("backup");
    assert_eq!(
        foo_rows(&db2).await,
        [(1, "hello".into()), (2, "world".into())]
    );
    // Everything at once: one report, nothing left.
    let reports = reports.lock().expect("lock");
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0].remaining, 0);
}

#[tokio::test]
async fn backup_to_a_file_read_by_plain_rusqlite() {
    let (_dir, path) = common::temp_db("copy.db");
    let db1 = Connection::open_in_memory().await.expect("open");
    foo_table(&db1).await;
    db1.backup_to_path(&path).await.expect("backup");
    let plain = rusqlite::Connection::open(&path).expect("sqlite3");
    let rows: Vec<(i64, String)> = plain
        .prepare("select * from foo")
        .expect("prepare")
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("query")
        .collect::<rusqlite::Result<_>>()
        .expect("rows");
    assert_eq!(rows, [(1, "hello".into()), (2, "world".into())]);
}

#[tokio::test]
async fn backup_progress_page_by_page() {
    // Python's test_backup.py: two pages, pages=1 gives two reports.
    let src = Connection::open_in_memory().await.expect("open");
    src.execute_script("CREATE TABLE foo (key INTEGER); INSERT INTO foo (key) VALUES (3), (4);")
        .await
        .expect("setup");
    let dst = Connection::open_in_memory().await.expect("open");
    let reports = Arc::new(Mutex::new(Vec::<BackupProgress>::new()));
    let sink = Arc::clone(&reports);
    src.backup_to(&dst)
        .pages_per_step(1)
        .progress(move |p| sink.lock().expect("lock").push(p))
        .await
        .expect("backup");
    let reports = reports.lock().expect("lock").clone();
    assert_eq!(reports.len(), 2, "{reports:?}");
    assert_eq!((reports[0].remaining, reports[0].total), (1, 2));
    assert_eq!((reports[1].remaining, reports[1].total), (0, 2));
    assert_eq!(scalar(&dst, "SELECT sum(key) FROM foo").await, 7);
}

#[tokio::test]
async fn backup_refusals() {
    let db = Connection::open_in_memory().await.expect("open");
    let err = db.backup_to(&db).await.expect_err("into itself");
    assert!(matches!(err, Error::Misuse(_)), "{err:?}");

    let other = Connection::open_in_memory().await.expect("open");
    let err = db
        .backup_to(&other)
        .schema("nope")
        .await
        .expect_err("unknown schema");
    assert!(err.to_string().contains("nope"), "{err}");

    let closed = Connection::open_in_memory().await.expect("open");
    closed.close().await.expect("close");
    let err = closed.backup_to(&other).await.expect_err("closed source");
    assert!(matches!(err, Error::Closed), "{err:?}");

    let err = db
        .backup_to(&other)
        .progress(|_| panic!("progress exploded"))
        .await
        .expect_err("panicking progress");
    assert!(matches!(err, Error::Panic { .. }), "{err:?}");
    assert_eq!(scalar(&other, "SELECT 1").await, 1, "target still works");
    assert_eq!(scalar(&db, "SELECT 1").await, 1, "source still works");
}

#[tokio::test]
async fn opposite_backups_at_once_do_not_deadlock() {
    let a = Connection::open_in_memory().await.expect("open");
    let b = Connection::open_in_memory().await.expect("open");
    for c in [&a, &b] {
        c.execute_script(
            "CREATE TABLE t(x); INSERT INTO t WITH RECURSIVE s(value) AS (SELECT 1 UNION ALL SELECT value + 1 FROM s WHERE value < 400) SELECT randomblob(500) FROM s;",
        )
        .await
        .expect("fill");
    }
    let run = async {
        tokio::join!(
            a.backup_to(&b).pages_per_step(1).into_future(),
            b.backup_to(&a).pages_per_step(1).into_future()
        )
    };
    let (x, y) = tokio::time::timeout(std::time::Duration::from_secs(20), run)
        .await
        .expect("no deadlock");
    // Overlapping, the second to start is refused (SQLite would find the
    // database locked at each step); one after the other, both succeed.
    for r in [&x, &y] {
        if let Err(e) = r {
            assert!(
                matches!(e, Error::Misuse(m) if m.contains("backup in progress")),
                "{e:?}"
            );
        }
    }
    assert!(x.is_ok() || y.is_ok(), "{x:?} {y:?}");
    assert_eq!(scalar(&a, "SELECT count(*) FROM t").await, 400);
    assert_eq!(scalar(&b, "SELECT count(*) FROM t").await, 400);
}

#[tokio::test]
async fn restore_and_vacuum_into() {
    let (dir, path) = common::temp_db("src.db");
    let src = Connection::open(&path).await.expect("open");
    foo_table(&src).await;
    let vacuumed = dir.path().join("vacuumed.db");
    src.vacuum_into(&vacuumed).await.expect("vacuum into");
    let err = src
        .vacuum_into(&vacuumed)
        .await
        .expect_err("the file exists now");
    assert!(
        err.to_string().contains("output file already exists"),
        "{err}"
    );

    let restored = Connection::open_in_memory().await.expect("open");
    restored.restore_from(&vacuumed).await.expect("restore");
    assert_eq!(foo_rows(&restored).await, foo_rows(&src).await);

    let err = restored
        .restore_from(dir.path().join("missing.db"))
        .await
        .expect_err("no such file");
    assert!(matches!(err, Error::Open { .. }), "{err:?}");
    assert!(!dir.path().join("missing.db").exists(), "not created");
}
