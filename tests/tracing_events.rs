//! What aiolite tells `tracing`: each statement with its queue wait and its
//! execution apart (a slow-statement warning counts both), BEGIN, COMMIT and
//! ROLLBACK with their durations, a group commit with its members,
//! automatic checkpoints, aiolite's own retries of SQLITE_BUSY, and streams
//! from open to close, under OpenTelemetry's database field names.

mod common;

use std::time::Duration;

use aiolite::{ConnectOptions, Database};
use common::Captured;
use futures_util::StreamExt;
use tracing::Instrument;

/// The first line that holds every needle.
fn line(captured: &Captured, needles: &[&str]) -> String {
    let text = captured.text();
    let found = text.lines().find(|l| needles.iter().all(|n| l.contains(n)));
    match found {
        Some(l) => l.to_owned(),
        None => panic!("no line with {needles:?} in:\n{text}"),
    }
}

/// The number after `key=` in a line.
fn field(line: &str, key: &str) -> u64 {
    let at = line
        .find(&format!("{key}="))
        .unwrap_or_else(|| panic!("no {key} in {line}"));
    line[at + key.len() + 1..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .unwrap_or_else(|_| panic!("{key} is not a number in {line}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_transactions_and_streams_are_traced() {
    let captured = Captured::default();
    let writer = captured.clone();
    // Global: the events are emitted on the worker threads.
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();

    // 1. The wait for the connection counts toward a slow statement.
    let conn = ConnectOptions::in_memory()
        .log_slow_statements(Duration::from_millis(20))
        .open()
        .await
        .expect("open");
    conn.execute_script("CREATE TABLE t(x)")
        .await
        .expect("schema");
    let (release, hold) = common::hold_worker(&conn).await;
    let waiting = {
        let conn = conn.clone();
        tokio::spawn(
            async move { conn.execute("INSERT INTO t VALUES (1)", ()).await }
                .instrument(tracing::info_span!("handler", request_id = 42)),
        )
    };
    common::queued(&conn, 1).await;
    tokio::time::sleep(Duration::from_millis(40)).await;
    drop(release);
    hold.await.expect("join");
    waiting.await.expect("join").expect("insert");
    let slow = line(&captured, &["INSERT INTO t VALUES (1)"]);
    assert!(
        slow.contains("WARN") && slow.contains("slow statement"),
        "{slow}"
    );
    assert!(
        slow.contains("handler{request_id=42}"),
        "in the caller's span: {slow}"
    );
    assert!(slow.contains(r#"db.system="sqlite""#), "{slow}");
    assert!(slow.contains(r#"db.operation.name="INSERT""#), "{slow}");
    assert!(field(&slow, "queue_wait_us") >= 40_000, "{slow}");
    assert!(field(&slow, "exec_us") < 20_000, "{slow}");

    // 2. A guard's BEGIN and COMMIT, a rollback, and the closure's COMMIT.
    let tx = conn.begin().await.expect("begin");
    tx.execute("INSERT INTO t VALUES (2)", ())
        .await
        .expect("insert");
    tx.commit()
        .instrument(tracing::info_span!("committing"))
        .await
        .expect("commit");
    let begin = line(&captured, &[r#"db.operation.name="BEGIN""#, "DEFERRED"]);
    assert!(begin.contains("exec_us="), "{begin}");
    let commit = line(&captured, &["committing", r#"db.operation.name="COMMIT""#]);
    assert!(
        commit.contains("exec_us=") && commit.contains("queue_wait_us="),
        "{commit}"
    );
    let tx = conn.begin().await.expect("begin");
    tx.execute("INSERT INTO t VALUES (3)", ())
        .await
        .expect("insert");
    tx.rollback().await.expect("rollback");
    line(&captured, &[r#"db.operation.name="ROLLBACK""#, "exec_us="]);
    conn.transaction(|tx| {
        tx.execute("INSERT INTO t VALUES (4)", [])?;
        Ok::<_, aiolite::Error>(())
    })
    .instrument(tracing::info_span!("closure_form"))
    .await
    .expect("closure");
    line(
        &captured,
        &["closure_form", r#"db.operation.name="COMMIT""#],
    );

    // 3. Streams: opened, read to the end with their row count; dropped.
    conn.execute_script("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 300) INSERT INTO t SELECT i FROM n")
        .await
        .expect("rows");
    let mut all = conn.stream("SELECT x FROM t WHERE x > 0", ());
    let mut n = 0;
    while let Some(row) = all.next().await {
        row.expect("row");
        n += 1;
    }
    line(&captured, &["stream opened", "SELECT x FROM t WHERE x > 0"]);
    let closed = line(&captured, &["stream closed", "SELECT x FROM t WHERE x > 0"]);
    assert_eq!(field(&closed, "rows"), n, "{closed}");
    assert!(closed.contains("read to the end"), "{closed}");
    let mut partial = conn.stream("SELECT x FROM t WHERE x >= 0", ());
    partial.next().await.expect("a row").expect("row");
    drop(partial);
    // The drop is the worker's work at its next turn.
    conn.execute("SELECT 1", ()).await.expect("next turn");
    let dropped = line(
        &captured,
        &["stream closed", "SELECT x FROM t WHERE x >= 0"],
    );
    assert!(dropped.contains(r#"why="dropped""#), "{dropped}");
    conn.close().await.expect("close");

    // 4. A group commit names its members.
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Database::builder(dir.path().join("g.db"))
        .group_commit(true)
        .open()
        .await
        .expect("pool");
    db.execute("CREATE TABLE g(x)", ()).await.expect("schema");
    db.execute("INSERT INTO g VALUES (1)", ())
        .await
        .expect("grouped");
    let group = line(&captured, &["group commit", "members="]);
    assert!(field(&group, "members") >= 1, "{group}");
    db.close().await.expect("close");

    // 5. An automatic checkpoint, with the WAL's frames and its duration,
    // in the span of the write whose commit ran it.
    let conn = ConnectOptions::new(dir.path().join("c.db"))
        .pragma("wal_autocheckpoint", "8")
        .open()
        .await
        .expect("open");
    conn.execute_script("CREATE TABLE c(b BLOB)")
        .await
        .expect("schema");
    conn.execute("INSERT INTO c VALUES (zeroblob(64 * 1024))", ())
        .instrument(tracing::info_span!("bulk"))
        .await
        .expect("write");
    let checkpoint = line(&captured, &["checkpoint", "wal_frames="]);
    assert!(field(&checkpoint, "wal_frames") >= 8, "{checkpoint}");
    assert!(field(&checkpoint, "checkpointed") >= 8, "{checkpoint}");
    assert!(checkpoint.contains("exec_us="), "{checkpoint}");
    assert!(
        checkpoint.contains("bulk"),
        "in the writer's span: {checkpoint}"
    );
    conn.close().await.expect("close");

    // 6. A SQLITE_BUSY that SQLite's busy handler does not wait for
    // (switching a file to WAL while another connection writes to it):
    // aiolite retries it, says so, and counts it. The lock is released once
    // the retry is seen, so nothing here depends on timing.
    let fresh = dir.path().join("busy.db");
    let holder = rusqlite::Connection::open(&fresh).expect("holder");
    holder
        .execute_batch("CREATE TABLE h(x); BEGIN IMMEDIATE; INSERT INTO h VALUES (1);")
        .expect("hold the write lock");
    let options = ConnectOptions::new(&fresh).busy_timeout(Duration::from_secs(60));
    let opening = tokio::spawn(async move { options.open().await });
    tokio::time::timeout(Duration::from_secs(20), async {
        while !captured
            .text()
            .contains("busy handler does not wait: retrying")
        {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await
    .expect("aiolite retries the WAL switch");
    holder.execute_batch("COMMIT").expect("release");
    drop(holder);
    let conn = opening
        .await
        .expect("join")
        .expect("open after the retries");
    assert!(conn.metrics().busy_retries >= 1, "{:?}", conn.metrics());
    conn.close().await.expect("close");
}
