//! `Connection::metrics` and `Database::metrics`: each counter counts what it
//! says, driven deterministically (a worker held on a channel while requests
//! queue behind it), and the snapshot serializes.

use std::time::Duration;

mod common;

use aiolite::{ConnectOptions, Connection, Database, TransactionBehavior};
use common::{hold_worker as hold, queued};
use futures_util::StreamExt;

/// A request answered after everything sent before it: the worker has
/// finished the bookkeeping it does after an answer (a request's execution
/// time, a read batch's or a lease's end).
async fn settle(conn: &Connection) {
    conn.execute("SELECT 1", ()).await.expect("settle");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_counts_requests_waits_cancellations_and_leases() {
    let conn = Connection::open_in_memory().await.expect("open");
    conn.execute_script("CREATE TABLE t(x)")
        .await
        .expect("schema");
    let before = conn.metrics();

    // A request that waits 40 ms behind a held worker, one whose caller
    // leaves while it waits, and the held request that ran 40 ms.
    let (release, held) = hold(&conn).await;
    let waiting = {
        let conn = conn.clone();
        tokio::spawn(async move { conn.execute("INSERT INTO t VALUES (1)", ()).await })
    };
    queued(&conn, 1).await;
    let gone = {
        let conn = conn.clone();
        tokio::spawn(async move { conn.execute("INSERT INTO t VALUES (2)", ()).await })
    };
    queued(&conn, 2).await;
    assert_eq!(conn.metrics().queued_requests, 2);
    gone.abort();
    let _ = gone.await;
    tokio::time::sleep(Duration::from_millis(40)).await;
    drop(release);
    held.await.expect("held");
    waiting.await.expect("join").expect("insert");
    // The abandoned request sits behind the answered one: the worker skips
    // (and counts) it only when it gets there, after that answer.
    settle(&conn).await;
    let m = conn.metrics();
    assert_eq!(m.cancelled - before.cancelled, 1, "{m:?}");
    assert_eq!(
        m.requests - before.requests,
        3,
        "the held one, the waiting one and the settling one"
    );
    // At least one wait above 32 ms (the insert's), and one execution above
    // 32 ms (the held call's).
    let above = |h: &aiolite::Histogram, us: u64| {
        h.count
            - h.buckets
                .iter()
                .find(|b| b.le_us >= us)
                .map_or(h.count, |b| b.count)
    };
    assert!(above(&m.queue_wait, 32_768) >= 1, "{:?}", m.queue_wait);
    assert!(above(&m.exec, 32_768) >= 1, "{:?}", m.exec);
    assert!(m.queue_wait.sum_us >= 40_000);

    // A statement stopped because its caller left while it ran.
    let runaway = conn.fetch_one(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT count(*) FROM n",
        (),
    );
    let _ = tokio::time::timeout(Duration::from_millis(50), runaway).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while conn.metrics().interrupted == before.interrupted {
        assert!(std::time::Instant::now() < deadline, "never interrupted");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    // Leases and how long they held the connection.
    for _ in 0..3 {
        let tx = conn.begin().await.expect("begin");
        tx.execute("INSERT INTO t VALUES (3)", ())
            .await
            .expect("insert");
        tx.commit().await.expect("commit");
    }
    settle(&conn).await;
    let m = conn.metrics();
    assert_eq!(m.leases - before.leases, 3);
    assert_eq!(m.lease_hold.count - before.lease_hold.count, 3);

    // What is held now.
    let mut stream = conn.stream("SELECT x FROM t", ());
    stream.next().await.expect("a row").expect("row");
    // (Parked once the first chunk came back; a long result stays parked.)
    conn.execute_script("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000) INSERT INTO t SELECT i FROM n")
        .await
        .expect("rows");
    let mut long = conn.stream("SELECT x FROM t", ());
    long.next().await.expect("a row").expect("row");
    // The worker publishes what it holds after the answer went.
    settle(&conn).await;
    let m = conn.metrics();
    assert!(m.parked_statements >= 1, "{m:?}");
    assert!(m.oldest_snapshot_secs.is_some(), "{m:?}");
    drop((stream, long));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_errors_read_batches_and_group_commits_are_counted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("m.db");

    // SQLITE_BUSY past the busy timeout.
    let holder = Connection::open(&path).await.expect("holder");
    holder
        .execute_script("CREATE TABLE t(x)")
        .await
        .expect("schema");
    let other = ConnectOptions::new(&path)
        .busy_timeout(Duration::from_millis(10))
        .open()
        .await
        .expect("other");
    let tx = holder
        .begin_with(TransactionBehavior::Immediate)
        .await
        .expect("lock");
    tx.execute("INSERT INTO t VALUES (1)", ())
        .await
        .expect("write");
    let e = other
        .execute("INSERT INTO t VALUES (2)", ())
        .await
        .expect_err("busy");
    assert!(e.is_busy(), "{e}");
    assert_eq!(other.metrics().busy_errors, 1);
    // SQLite's busy handler waited (its own, not counted as aiolite's).
    assert_eq!(other.metrics().busy_retries, 0);
    // `PRAGMA busy_timeout` reads what was asked for: aiolite leaves SQLite's
    // handler in place.
    let ms: i64 = other
        .fetch_one("PRAGMA busy_timeout", ())
        .await
        .expect("pragma")
        .get(0)
        .expect("ms");
    assert_eq!(ms, 10);
    tx.commit().await.expect("commit");

    // Point reads queued together share one read transaction.
    let (release, held) = hold(&other).await;
    let reads: Vec<_> = (0..5)
        .map(|_| {
            let other = other.clone();
            tokio::spawn(async move { other.fetch_one("SELECT count(*) FROM t", ()).await })
        })
        .collect();
    queued(&other, 5).await;
    drop(release);
    held.await.expect("held");
    for r in reads {
        r.await.expect("join").expect("read");
    }
    settle(&other).await;
    let m = other.metrics();
    assert!(m.read_batches >= 1, "{m:?}");
    assert!(m.read_batch_requests >= 2, "{m:?}");
    drop((holder, other));

    // A group commit and its members.
    let db = Database::builder(&path)
        .readers(2)
        .group_commit(true)
        .open()
        .await
        .expect("pool");
    let (release, held) = hold(db.writer()).await;
    let writes: Vec<_> = (0..4)
        .map(|i| {
            let db = db.clone();
            tokio::spawn(async move { db.execute("INSERT INTO t VALUES (?)", (i,)).await })
        })
        .collect();
    queued(db.writer(), 4).await;
    drop(release);
    held.await.expect("held");
    for w in writes {
        w.await.expect("join").expect("write");
    }
    let m = db.metrics();
    assert_eq!(m.writer.group_commits, 1, "{:?}", m.writer);
    assert_eq!(m.writer.group_members, 4);
    assert_eq!(m.readers.len(), 2);
    assert!(m.wal_bytes.is_some_and(|n| n > 0), "{:?}", m.wal_bytes);

    // A group whose only member rolled back committed nothing: not counted,
    // or the mean group size a dashboard shows would be wrong.
    let tx = db.begin().await.expect("begin");
    tx.execute("INSERT INTO t VALUES (99)", ())
        .await
        .expect("insert");
    tx.rollback().await.expect("rollback");
    settle(db.writer()).await;
    let m = db.metrics();
    assert_eq!(m.writer.group_commits, 1, "{:?}", m.writer);
    assert_eq!(m.writer.group_members, 4);

    // The snapshot is plain data: it serializes.
    let json = serde_json::to_value(&m).expect("serialize");
    assert_eq!(json["writer"]["group_members"], 4);
    assert!(json["writer"]["queue_wait"]["buckets"].is_array());
    assert_eq!(json["readers"].as_array().map(Vec::len), Some(2));
    db.close().await.expect("close");
}

#[derive(Debug, aiolite::FromRow, aiolite::Model)]
#[aiolite(table = "items")]
struct Item {
    #[aiolite(primary_key)]
    id: i64,
    name: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statement_cache_hits_and_misses_are_counted() {
    use aiolite::prelude::*;
    let conn = Connection::open_in_memory().await.expect("open");
    conn.execute_script("CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT)")
        .await
        .expect("schema");
    let before = conn.metrics();
    for _ in 0..3 {
        conn.fetch_all("SELECT 42", ()).await.expect("select");
    }
    let m = conn.metrics();
    assert_eq!(
        m.statement_cache_misses - before.statement_cache_misses,
        1,
        "{m:?}"
    );
    assert_eq!(
        m.statement_cache_hits - before.statement_cache_hits,
        2,
        "{m:?}"
    );

    // The typed layer's statements, prepared inside its closures, count too.
    let before = conn.metrics();
    for i in 1..=3 {
        conn.insert(&Item {
            id: i,
            name: format!("item {i}"),
        })
        .await
        .expect("insert");
    }
    let m = conn.metrics();
    let misses = m.statement_cache_misses - before.statement_cache_misses;
    let hits = m.statement_cache_hits - before.statement_cache_hits;
    // The INSERT once, and the key check once, as the model's plan is made.
    assert!(misses >= 1 && hits >= 2, "misses {misses}, hits {hits}");
    let again = conn.metrics();
    conn.insert(&Item {
        id: 4,
        name: "item 4".into(),
    })
    .await
    .expect("insert");
    let m = conn.metrics();
    assert_eq!(
        m.statement_cache_misses, again.statement_cache_misses,
        "a warm insert prepares nothing"
    );
    assert!(m.statement_cache_hits > again.statement_cache_hits);

    // A cache of one, two statements in turn: each evicts the other.
    let small = ConnectOptions::new(":memory:")
        .statement_cache_capacity(1)
        .open()
        .await
        .expect("open");
    let before = small.metrics();
    for i in 0..6 {
        let sql = if i % 2 == 0 { "SELECT 1" } else { "SELECT 2" };
        small.fetch_all(sql, ()).await.expect("select");
    }
    let m = small.metrics();
    assert_eq!(
        m.statement_cache_misses - before.statement_cache_misses,
        6,
        "{m:?}"
    );
    assert_eq!(m.statement_cache_hits, before.statement_cache_hits);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn automatic_checkpoints_are_timed() {
    let (_dir, path) = common::temp_db("ckpt.db");
    let conn = ConnectOptions::new(&path)
        .pragma("wal_autocheckpoint", "16")
        .open()
        .await
        .expect("open");
    conn.execute_script("CREATE TABLE t(b BLOB)")
        .await
        .expect("schema");
    assert_eq!(conn.metrics().checkpoints.count, 0);
    // The threshold is aiolite's to apply now, and SQLite reports its own
    // automatic checkpoint as off (documented on `checkpoints`).
    let v: i64 = conn
        .fetch_one("PRAGMA wal_autocheckpoint", ())
        .await
        .expect("pragma")
        .get(0)
        .expect("pages");
    assert_eq!(v, 0);
    // Small commits leave the WAL under 16 pages: no checkpoint yet.
    conn.execute("INSERT INTO t VALUES (x'00')", ())
        .await
        .expect("insert");
    assert_eq!(conn.metrics().checkpoints.count, 0);
    // One commit of about 32 pages passes the threshold: SQLite's rule, run
    // (and timed) by aiolite, inside that commit's request.
    conn.execute("INSERT INTO t VALUES (zeroblob(128 * 1024))", ())
        .await
        .expect("insert");
    let m = conn.metrics();
    assert_eq!(m.checkpoints.count, 1, "{m:?}");
    assert!(m.checkpoints.buckets.last().is_some_and(|b| b.count == 1));
    // It did checkpoint: the WAL restarts from its start on the next write,
    // so the file does not grow past what one commit needs.
    for _ in 0..5 {
        conn.execute("INSERT INTO t VALUES (zeroblob(128 * 1024))", ())
            .await
            .expect("insert");
    }
    let m = conn.metrics();
    assert_eq!(m.checkpoints.count, 6, "{m:?}");
    let wal = std::fs::metadata(path.with_extension("db-wal"))
        .expect("wal")
        .len();
    assert!(
        wal < 2 * 200 * 1024,
        "the WAL grew to {wal} bytes: not checkpointed"
    );

    // Turned off as SQLite is asked: no hook, no checkpoint.
    let (_dir2, path2) = common::temp_db("off.db");
    let off = ConnectOptions::new(&path2)
        .pragma("wal_autocheckpoint", "0")
        .open()
        .await
        .expect("open");
    off.execute_script("CREATE TABLE t(b BLOB)")
        .await
        .expect("schema");
    off.execute("INSERT INTO t VALUES (zeroblob(1024 * 1024))", ())
        .await
        .expect("insert");
    assert_eq!(off.metrics().checkpoints.count, 0);
}
