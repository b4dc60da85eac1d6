//! Reads queued together on one connection share one read transaction (a
//! "read batch"). What a caller sees must not change: a write among them runs
//! in autocommit as it would alone, a caller still reads its own acknowledged
//! writes, and a parked cursor is not disturbed.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aiolite::{Connection, Database};
use futures_util::future::join_all;
use futures_util::StreamExt;

/// Holds the worker for `ms`, so the requests sent meanwhile queue up.
async fn hold(conn: &Connection, ms: u64) {
    conn.call(move |_| {
        std::thread::sleep(Duration::from_millis(ms));
        Ok::<_, aiolite::Error>(())
    })
    .await
    .expect("hold");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_reads_share_one_transaction_and_a_write_among_them_runs_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("batch.db");
    let conn = Connection::open(&path).await.expect("open");
    conn.execute_script("CREATE TABLE t(v INTEGER); INSERT INTO t VALUES (1), (2), (3);")
        .await
        .expect("schema");
    let statements = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&statements);
    conn.set_trace_callback(Some(move |sql: &str| {
        seen.lock().expect("trace log").push(sql.to_owned());
    }))
    .await
    .expect("trace");

    let reads = |n: usize| {
        (0..n).map(|_| {
            let conn = conn.clone();
            async move {
                conn.fetch_one("SELECT sum(v) FROM t", ())
                    .await
                    .expect("read")
                    .get::<_, i64>(0)
                    .expect("sum")
            }
        })
    };
    let busy = hold(&conn, 100);
    let before = join_all(reads(8));
    // Starts like a read (WITH), but writes: it must end the batch and commit
    // on its own before it is answered.
    let write = conn.fetch_optional(
        "WITH one(x) AS (VALUES (4)) INSERT INTO t(v) SELECT x FROM one RETURNING v",
        (),
    );
    let after = join_all(reads(8));
    let ((), before, written, after) = tokio::join!(busy, before, write, after);

    assert_eq!(before, vec![6; 8], "reads queued before the write");
    let written = written.expect("write").expect("a returned row");
    assert_eq!(written.get::<_, i64>(0).expect("v"), 4);
    assert_eq!(after, vec![10; 8], "reads queued after the write");
    assert!(!conn.in_transaction().await.expect("state"));
    // Committed, not held in a transaction: another connection sees it.
    let other = Connection::open(&path).await.expect("open other");
    let row = other
        .fetch_one("SELECT count(*) FROM t", ())
        .await
        .expect("count");
    assert_eq!(row.get::<_, i64>(0).expect("count"), 4);

    let log = statements.lock().expect("trace log").clone();
    let begins = log.iter().filter(|s| s.starts_with("BEGIN")).count();
    assert!(begins >= 1, "no read batch ran: {log:?}");
    let insert = log
        .iter()
        .position(|s| s.contains("INSERT"))
        .expect("the write was traced");
    // The batch around the reads before the write ended before the write ran.
    let last_commit_before = log[..insert].iter().rposition(|s| s == "COMMIT");
    let last_begin_before = log[..insert].iter().rposition(|s| s.starts_with("BEGIN"));
    assert!(
        last_begin_before < last_commit_before,
        "the write ran inside a read batch: {log:?}"
    );
    other.close().await.expect("close other");
    conn.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_task_reads_its_own_acknowledged_writes_on_the_readers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Database::builder(dir.path().join("ryw.db"))
        .readers(2)
        .open()
        .await
        .expect("open pool");
    db.execute_script("CREATE TABLE marks(task INTEGER, n INTEGER)")
        .await
        .expect("schema");
    // Readers kept busy, so their queues stay full and batches run long.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let noise: Vec<_> = (0..16)
        .map(|_| {
            let (db, stop) = (db.clone(), Arc::clone(&stop));
            tokio::spawn(async move {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    db.fetch_one("SELECT count(*) FROM marks", ())
                        .await
                        .expect("noise read");
                }
            })
        })
        .collect();
    let tasks: Vec<_> = (0..8i64)
        .map(|task| {
            let db = db.clone();
            tokio::spawn(async move {
                for n in 1..=40i64 {
                    db.execute("INSERT INTO marks VALUES (?, ?)", (task, n))
                        .await
                        .expect("write");
                    let row = db
                        .fetch_one("SELECT max(n) FROM marks WHERE task = ?", (task,))
                        .await
                        .expect("read");
                    let seen: i64 = row.get(0).expect("max");
                    assert_eq!(seen, n, "task {task} did not read its write {n}");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("task");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in noise {
        t.await.expect("noise task");
    }
    db.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_cursor_survives_reads_queued_beside_it() {
    let conn = Connection::open_in_memory().await.expect("open");
    conn.execute_script(
        "CREATE TABLE n(i INTEGER);
         WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 2000)
         INSERT INTO n SELECT i FROM c;",
    )
    .await
    .expect("schema");
    let mut stream = conn.stream("SELECT i FROM n ORDER BY i", ());
    let mut expected = 1i64;
    while let Some(row) = stream.next().await {
        let i: i64 = row.expect("row").get(0).expect("i");
        assert_eq!(i, expected);
        expected += 1;
        if i % 100 == 0 {
            // The cursor is parked between chunks; reads queue beside it.
            let busy = hold(&conn, 5);
            let reads = join_all((0..4).map(|_| conn.fetch_one("SELECT count(*) FROM n", ())));
            let ((), reads) = tokio::join!(busy, reads);
            for r in reads {
                assert_eq!(r.expect("read").get::<_, i64>(0).expect("count"), 2000);
            }
        }
    }
    assert_eq!(expected, 2001);
    conn.close().await.expect("close");
}
