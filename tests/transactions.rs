//! Transactions: the guard, the closure form, exclusivity, and what happens
//! when their futures are dropped.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use aiolite::{Connection, Error, TransactionBehavior};

async fn count(conn: &Connection) -> i64 {
    common::scalar(conn, "SELECT count(*) FROM t").await
}

async fn setup() -> (tempfile::TempDir, PathBuf, Connection) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("tx.db");
    let conn = Connection::open(&path).await.expect("open");
    conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v INTEGER)", ())
        .await
        .expect("create");
    (dir, path, conn)
}

#[tokio::test]
async fn guard_commit_rollback_and_drop() {
    let (_dir, path, conn) = setup().await;
    let other = Connection::open(&path).await.expect("other");

    let tx = conn.begin().await.expect("begin");
    tx.execute("INSERT INTO t(v) VALUES (1)", ())
        .await
        .expect("insert");
    assert_eq!(
        common::scalar_in(&tx, "SELECT count(*) FROM t").await,
        1,
        "a transaction reads its own writes"
    );
    assert_eq!(count(&other).await, 0, "not visible before commit");
    tx.commit().await.expect("commit");
    assert_eq!(count(&other).await, 1);

    let tx = conn.begin().await.expect("begin");
    tx.execute("INSERT INTO t(v) VALUES (2)", ())
        .await
        .expect("insert");
    tx.rollback().await.expect("rollback");
    assert_eq!(count(&conn).await, 1);

    let tx = conn
        .begin_with(TransactionBehavior::Immediate)
        .await
        .expect("begin immediate");
    tx.execute("INSERT INTO t(v) VALUES (3)", ())
        .await
        .expect("insert");
    drop(tx);
    assert_eq!(count(&conn).await, 1, "dropped guard rolls back");
    assert!(!conn.in_transaction().await.expect("state"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guard_owns_the_connection_against_64_tasks() {
    let (_dir, _path, conn) = setup().await;
    let tx = conn.begin().await.expect("begin");
    tx.execute("INSERT INTO t(v) VALUES (-1)", ())
        .await
        .expect("insert");
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let conn = conn.clone();
            tokio::spawn(async move {
                conn.execute("INSERT INTO t(v) VALUES (?)", (i,))
                    .await
                    .expect("insert outside");
            })
        })
        .collect();
    // Give the 64 tasks every chance to run; none may land inside `tx`.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        common::scalar_in(&tx, "SELECT count(*) FROM t").await,
        1,
        "another task's statement landed inside the transaction"
    );
    tx.rollback().await.expect("rollback");
    for t in tasks {
        t.await.expect("join");
    }
    let rows = conn
        .fetch_all("SELECT v FROM t ORDER BY v", ())
        .await
        .expect("rows");
    let vs: Vec<i64> = rows.iter().map(|r| r.get(0).expect("v")).collect();
    assert_eq!(
        vs,
        (0..64).collect::<Vec<_>>(),
        "only the rolled-back row is missing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_guards_serialize() {
    let (_dir, _path, conn) = setup().await;
    conn.execute("INSERT INTO t(id, v) VALUES (1, 0)", ())
        .await
        .expect("seed");
    // Read-modify-write in 32 concurrent transactions: without exclusivity
    // increments would be lost or interleave.
    let tasks: Vec<_> = (0..32)
        .map(|_| {
            let conn = conn.clone();
            tokio::spawn(async move {
                let tx = conn.begin().await.expect("begin");
                let v = common::scalar_in(&tx, "SELECT v FROM t WHERE id = 1").await;
                tokio::task::yield_now().await;
                tx.execute("UPDATE t SET v = ? WHERE id = 1", (v + 1,))
                    .await
                    .expect("write");
                tx.commit().await.expect("commit");
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("join");
    }
    let v = common::scalar(&conn, "SELECT v FROM t WHERE id = 1").await;
    assert_eq!(v, 32);
}

#[tokio::test]
async fn closure_transaction_commits_rolls_back_and_survives_panics() {
    let (_dir, _path, conn) = setup().await;
    let n = conn
        .transaction(|tx| {
            tx.execute("INSERT INTO t(v) VALUES (1)", [])?;
            tx.execute("INSERT INTO t(v) VALUES (2)", [])?;
            Ok::<_, Error>(2)
        })
        .await
        .expect("commit");
    assert_eq!(n, 2);
    assert_eq!(count(&conn).await, 2);

    #[derive(Debug)]
    #[allow(dead_code)] // the payload is read through Debug only
    enum MyError {
        Db(Error),
        Refused,
    }
    impl From<Error> for MyError {
        fn from(e: Error) -> Self {
            MyError::Db(e)
        }
    }
    let r: Result<(), MyError> = conn
        .transaction(|tx| {
            tx.execute("INSERT INTO t(v) VALUES (3)", [])
                .map_err(|e| MyError::Db(e.into()))?;
            Err(MyError::Refused)
        })
        .await;
    assert!(
        matches!(r, Err(MyError::Refused)),
        "the closure's own error type is kept"
    );
    assert_eq!(count(&conn).await, 2, "rolled back on Err");

    let r: Result<(), Error> = conn
        .transaction(|tx| {
            tx.execute("INSERT INTO t(v) VALUES (4)", [])?;
            panic!("boom");
        })
        .await;
    match r {
        Err(Error::Panic { message }) => assert_eq!(message, "boom"),
        other => panic!("expected a panic error, got {other:?}"),
    }
    assert_eq!(count(&conn).await, 2, "rolled back on panic");
    assert!(!conn.in_transaction().await.expect("state"));

    let r: Result<(), MyError> = conn
        .transaction_with(TransactionBehavior::Immediate, |tx| {
            tx.execute("INSERT INTO t(v) VALUES (5)", [])
                .map_err(|e| MyError::Db(e.into()))?;
            Ok(())
        })
        .await;
    assert!(r.is_ok());
    assert_eq!(count(&conn).await, 3);
}

#[tokio::test]
async fn begin_across_requests_like_aiosqlite() {
    let (_dir, path, conn) = setup().await;
    conn.execute("BEGIN", ()).await.expect("begin");
    conn.execute("INSERT INTO t(v) VALUES (1)", ())
        .await
        .expect("insert");
    let other = Connection::open(&path).await.expect("other");
    assert_eq!(count(&other).await, 0);
    conn.commit().await.expect("commit");
    assert_eq!(count(&other).await, 1);
    // A guard cannot begin inside an explicit transaction: its BEGIN fails
    // on the worker, and the guard's first statement says so. Nothing of the
    // guard runs, and the explicit transaction is not the guard's to end:
    // neither the guard's drop nor its rollback touches it.
    conn.execute("BEGIN", ()).await.expect("begin");
    conn.execute("INSERT INTO t(v) VALUES (2)", ())
        .await
        .expect("insert");
    let tx = conn
        .begin()
        .await
        .expect("the guard; its BEGIN runs behind");
    let err = tx
        .execute("INSERT INTO t(v) VALUES (3)", ())
        .await
        .expect_err("nested");
    assert!(matches!(err, Error::BeginFailed { .. }), "{err:?}");
    assert!(err.to_string().contains("within a transaction"), "{err}");
    let err = tx
        .commit()
        .await
        .expect_err("commit of a guard that never began");
    assert!(matches!(err, Error::BeginFailed { .. }), "{err:?}");
    // Dropped, or rolled back, once its BEGIN has failed (its first
    // request says so).
    let tx = conn.begin().await.expect("the guard");
    let err = tx.fetch_all("SELECT 1", ()).await.expect_err("dead");
    assert!(matches!(err, Error::BeginFailed { .. }), "{err:?}");
    drop(tx);
    let tx = conn.begin().await.expect("the guard");
    let err = tx.fetch_all("SELECT 1", ()).await.expect_err("dead");
    assert!(matches!(err, Error::BeginFailed { .. }), "{err:?}");
    tx.rollback()
        .await
        .expect("rollback of a guard that never began");
    assert!(conn.in_transaction().await.expect("state"));
    conn.commit()
        .await
        .expect("the explicit transaction commits");
    assert_eq!(common::scalar(&conn, "SELECT sum(v) FROM t").await, 3);
}

#[tokio::test]
async fn dropped_begin_future_leaves_no_transaction_open() {
    let (_dir, _path, conn) = setup().await;
    for delay_us in [0u64, 10, 50, 100, 200, 500, 1000] {
        // Keep the worker busy a moment so the BEGIN is queued, then drop the
        // caller at various points around its execution.
        let c = conn.clone();
        let blocker = tokio::spawn(async move {
            c.call(|_| {
                std::thread::sleep(Duration::from_micros(300));
                Ok::<_, Error>(())
            })
            .await
        });
        let begin = conn.begin();
        let _ = tokio::time::timeout(Duration::from_micros(delay_us), begin).await;
        blocker.await.expect("join").expect("blocker");
        // Whether the BEGIN ran or not, the connection is free and not inside
        // a transaction.
        let state = tokio::time::timeout(Duration::from_secs(5), conn.in_transaction())
            .await
            .expect("connection released")
            .expect("state");
        assert!(!state, "a BEGIN whose caller vanished was left open");
    }
    // The same for a raw BEGIN: if it ran with nobody to see it, it is rolled
    // back; if its caller saw it succeed, the transaction is the caller's.
    for delay_us in [0u64, 10, 100, 1000] {
        let fut = conn.execute("BEGIN IMMEDIATE", ());
        let acknowledged = tokio::time::timeout(Duration::from_micros(delay_us), fut)
            .await
            .is_ok();
        assert_eq!(conn.in_transaction().await.expect("state"), acknowledged);
        conn.rollback().await.expect("rollback");
    }
}

#[tokio::test]
async fn dropped_commit_future_commits_or_rolls_back_never_both() {
    let (_dir, _path, conn) = setup().await;
    let mut committed = 0;
    for i in 0..50 {
        let tx = conn.begin().await.expect("begin");
        tx.execute("INSERT INTO t(v) VALUES (?)", (i as i64,))
            .await
            .expect("insert");
        let commit = tx.commit();
        let done = tokio::time::timeout(Duration::from_micros(i * 20), commit).await;
        let acknowledged = done.is_ok();
        if let Ok(r) = done {
            r.expect("commit");
        }
        // Either way the connection is free again and consistent.
        assert!(!conn.in_transaction().await.expect("state"));
        let now = count(&conn).await;
        assert!(now == committed || now == committed + 1);
        if acknowledged {
            assert_eq!(now, committed + 1, "an acknowledged commit is durable");
        }
        committed = now;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_waits_for_a_live_transaction_to_finish() {
    let (_dir, path, conn) = setup().await;
    let tx = conn.begin().await.expect("begin");
    let closer = {
        let conn = conn.clone();
        tokio::spawn(async move { conn.close().await })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(!closer.is_finished(), "close waits for the transaction");
    // New work on the connection is refused at once...
    assert!(matches!(
        conn.execute("SELECT 1", ()).await,
        Err(Error::Closed)
    ));
    // ...but the transaction in progress finishes.
    tx.execute("INSERT INTO t(v) VALUES (7)", ())
        .await
        .expect("insert");
    tx.commit().await.expect("commit");
    closer.await.expect("join").expect("close");
    let again = Connection::open(&path).await.expect("reopen");
    assert_eq!(count(&again).await, 1);
}
