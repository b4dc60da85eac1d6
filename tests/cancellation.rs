//! Dropping a future cancels its request: skipped if queued, interrupted if
//! running, and never the next request.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aiolite::{Connection, Error};

/// A query that runs for minutes unless stopped.
const ENDLESS: &str =
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c";

#[tokio::test]
async fn queued_request_is_skipped() {
    let conn = Connection::open_in_memory().await.expect("open");
    conn.execute("CREATE TABLE t(x)", ()).await.expect("create");
    let release = Arc::new(AtomicBool::new(false));
    let r = Arc::clone(&release);
    let c = conn.clone();
    let blocker = tokio::spawn(async move {
        c.call(move |_| {
            while !r.load(Ordering::Acquire) {
                std::thread::sleep(Duration::from_millis(1));
            }
            Ok::<_, Error>(())
        })
        .await
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    // Queued behind the blocker, then abandoned.
    let insert = conn.execute("INSERT INTO t VALUES (1)", ());
    assert!(
        tokio::time::timeout(Duration::from_millis(20), insert)
            .await
            .is_err(),
        "the insert cannot run while the worker is blocked"
    );
    release.store(true, Ordering::Release);
    blocker.await.expect("join").expect("blocker");
    let n = common::scalar(&conn, "SELECT count(*) FROM t").await;
    assert_eq!(n, 0, "a request dropped before it started must not run");
}

#[tokio::test]
async fn running_query_is_interrupted_and_connection_stays_usable() {
    let conn = Connection::open_in_memory().await.expect("open");
    let started = Instant::now();
    let r = tokio::time::timeout(Duration::from_millis(100), conn.fetch_one(ENDLESS, ())).await;
    assert!(r.is_err(), "the endless query cannot finish");
    // The next request is served once the interrupt lands: well before the
    // endless query could have ended by itself.
    let row = tokio::time::timeout(Duration::from_secs(10), conn.fetch_one("SELECT 42", ()))
        .await
        .expect("the running query was not stopped")
        .expect("next query succeeds");
    assert_eq!(row.get::<_, i64>(0).expect("int"), 42);
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_cancel_never_hits_the_next_request() {
    let conn = Connection::open_in_memory().await.expect("open");
    conn.execute_script(
        "CREATE TABLE t(x); WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 20000) INSERT INTO t SELECT x FROM c",
    )
    .await
    .expect("seed");
    // Drop a scan at many different moments; the request queued right behind
    // it must never see an interrupt.
    let mut interrupted_next = 0;
    for i in 0..200u64 {
        let scan = conn.fetch_one("SELECT sum(x * x) FROM t a, (SELECT 1 UNION SELECT 2)", ());
        let next = conn.fetch_one("SELECT sum(x) FROM t", ());
        let (dropped, next) = tokio::join!(
            tokio::time::timeout(Duration::from_micros(i * 7), scan),
            next
        );
        drop(dropped);
        match next {
            Ok(row) => assert_eq!(row.get::<_, i64>(0).expect("int"), 20000 * 20001 / 2),
            Err(e) if e.is_interrupted() => interrupted_next += 1,
            Err(e) => panic!("unexpected error {e}"),
        }
    }
    assert_eq!(interrupted_next, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupt_stops_the_running_statement() {
    let conn = Connection::open_in_memory().await.expect("open");
    let c = conn.clone();
    let running = tokio::spawn(async move { c.fetch_one(ENDLESS, ()).await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    conn.interrupt();
    let err = tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .expect("interrupt took effect")
        .expect("join")
        .expect_err("interrupted");
    assert!(err.is_interrupted(), "{err:?}");
    assert_eq!(common::scalar(&conn, "SELECT 1").await, 1);
}

#[tokio::test]
async fn cancelled_write_inside_isolation_level_is_rolled_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let conn = aiolite::ConnectOptions::new(dir.path().join("c.db"))
        .isolation_level(Some(aiolite::TransactionBehavior::Deferred))
        .open()
        .await
        .expect("open");
    conn.execute_script("CREATE TABLE t(x)")
        .await
        .expect("create");
    for delay_us in [0u64, 5, 20, 100, 500] {
        let fut = conn.execute("INSERT INTO t VALUES (1)", ());
        let finished = tokio::time::timeout(Duration::from_micros(delay_us), fut)
            .await
            .is_ok();
        let open = conn.in_transaction().await.expect("state");
        // Acknowledged: the implicit transaction is the caller's to commit.
        // Not acknowledged: nobody knows it exists, so it was rolled back.
        assert_eq!(open, finished, "delay {delay_us}us");
        conn.rollback().await.expect("rollback");
    }
}
