//! `dump()` against Python 3.11's `iterdump()`: fixtures made by
//! tests/fixtures/dump/make.py with Python's sqlite3, and restores.

use aiolite::Connection;
use futures_util::TryStreamExt;

const EVERY_KIND: &str = include_str!("fixtures/dump/every_kind.sql");
const EVERY_KIND_DUMP: &str = include_str!("fixtures/dump/every_kind.expected.sql");

async fn dump_text(conn: &Connection) -> String {
    let lines: Vec<String> = conn.dump().try_collect().await.expect("dump");
    lines.join("\n") + "\n"
}

/// Runs `script` on a fresh database and checks it dumps back to `script`.
async fn restore(script: &str) -> Connection {
    let restored = Connection::open_in_memory().await.expect("open");
    restored
        .execute_script(script.to_owned())
        .await
        .expect("restore");
    assert_eq!(dump_text(&restored).await, script);
    restored
}

#[tokio::test]
async fn matches_python_iterdump_line_for_line() {
    let conn = Connection::open_in_memory().await.expect("open");
    conn.execute_script(EVERY_KIND).await.expect("build");
    let ours = dump_text(&conn).await;
    let ours: Vec<&str> = ours.lines().collect();
    let python: Vec<&str> = EVERY_KIND_DUMP.lines().collect();
    for (i, (a, b)) in ours.iter().zip(&python).enumerate() {
        assert_eq!(a, b, "line {}", i + 1);
    }
    assert_eq!(ours.len(), python.len());
}

#[tokio::test]
async fn a_dump_restores_the_same_database() {
    let conn = Connection::open_in_memory().await.expect("open");
    conn.execute_script(EVERY_KIND).await.expect("build");
    let script = dump_text(&conn).await;

    let restored = restore(&script).await;
    // The AUTOINCREMENT counters came back too: the next id continues.
    let id = restored
        .execute_insert("INSERT INTO events(kind) VALUES ('next')", ())
        .await
        .expect("insert");
    assert_eq!(id, 4);
}

#[tokio::test]
async fn names_python_cannot_dump() {
    // Python 3.11 builds a broken query for a table name containing `'`;
    // aiolite doubles the quote inside the literal, and the dump restores.
    let conn = Connection::open_in_memory().await.expect("open");
    conn.execute_script(
        r#"CREATE TABLE "it's" (id INTEGER PRIMARY KEY AUTOINCREMENT, "o'clock" TEXT);
           INSERT INTO "it's"("o'clock") VALUES ('five'), ('six');"#,
    )
    .await
    .expect("build");
    let script = dump_text(&conn).await;
    assert!(
        script.contains(r#"INSERT INTO "it's" VALUES(1,'five');"#),
        "{script}"
    );
    assert!(
        script.contains(r#"INSERT INTO "sqlite_sequence" VALUES('it''s',2);"#),
        "{script}"
    );
    restore(&script).await;
}

#[tokio::test]
async fn an_empty_database_and_a_dropped_dump() {
    let conn = Connection::open_in_memory().await.expect("open");
    assert_eq!(dump_text(&conn).await, "BEGIN TRANSACTION;\nCOMMIT;\n");

    conn.execute_script(
        "CREATE TABLE t(x); WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1000) INSERT INTO t SELECT x FROM c;",
    )
    .await
    .expect("fill");
    let mut dump = conn.dump();
    use futures_util::StreamExt;
    for _ in 0..10 {
        dump.next().await.expect("line").expect("ok");
    }
    // Dropped mid-table: the read transaction ends, the connection is free.
    drop(dump);
    conn.execute("INSERT INTO t VALUES (1001)", ())
        .await
        .expect("writes again");
    assert!(!conn.in_transaction().await.expect("state"));
}

#[tokio::test]
async fn a_dump_is_one_snapshot() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = aiolite::Database::builder(dir.path().join("snap.db"))
        .readers(2)
        .open()
        .await
        .expect("open");
    db.execute_script(
        "CREATE TABLE a(x); CREATE TABLE b(x); INSERT INTO a VALUES (1); INSERT INTO b VALUES (1);",
    )
    .await
    .expect("setup");
    let mut dump = db.dump();
    use futures_util::StreamExt;
    let mut lines = vec![dump.next().await.expect("line").expect("ok")];
    lines.push(dump.next().await.expect("line").expect("ok"));
    // Written after the dump began (on the writer), not in the dump.
    db.execute("INSERT INTO b VALUES (2)", ())
        .await
        .expect("write");
    while let Some(line) = dump.next().await {
        lines.push(line.expect("ok"));
    }
    assert!(lines.contains(&r#"INSERT INTO "b" VALUES(1);"#.to_owned()));
    assert!(
        !lines.contains(&r#"INSERT INTO "b" VALUES(2);"#.to_owned()),
        "{lines:?}"
    );
    db.close().await.expect("close");
}
