//! `execute_many` inside a transaction draws its parameter sets on the
//! caller and sends them in chunks (64, 128, ... up to 1024), one queued
//! behind the one running. These pin what that must not change: every set
//! runs once and in order, and nothing after the first failing set runs.

mod common;

use aiolite::{ConnectOptions, Connection, Database, Error};

use common::{scalar, scalar_in};

const ROWS: i64 = 5000;

async fn table(conn: &Connection) {
    conn.execute(
        "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT NOT NULL)",
        (),
    )
    .await
    .expect("create");
}

#[tokio::test]
async fn every_set_runs_once_in_order_across_chunks() {
    in_order(Connection::open_in_memory().await.expect("open")).await;
}

#[tokio::test]
async fn a_queue_of_one_keeps_the_chunks_in_order() {
    // The next chunk waits for room behind the one queued; it must never
    // take the place of one still waiting.
    let conn = ConnectOptions::in_memory()
        .queue_bound(1)
        .open()
        .await
        .expect("open");
    in_order(conn).await;
}

async fn in_order(conn: Connection) {
    table(&conn).await;
    let tx = conn.begin().await.expect("begin");
    let n = tx
        .execute_many(
            "INSERT INTO t(v) VALUES (?)",
            (1..=ROWS).map(|i| (format!("v{i}"),)),
        )
        .await
        .expect("insert");
    assert_eq!(n as i64, ROWS);
    tx.commit().await.expect("commit");
    // Row ids are handed out in insertion order: each id names its set.
    let out_of_place = scalar(&conn, "SELECT count(*) FROM t WHERE v <> 'v' || id").await;
    assert_eq!(out_of_place, 0);
    assert_eq!(scalar(&conn, "SELECT count(*) FROM t").await, ROWS);
}

#[tokio::test]
async fn nothing_after_the_first_failing_set_runs() {
    let conn = Connection::open_in_memory().await.expect("open");
    table(&conn).await;
    // Set 900 (the fourth chunk, 449..=960) is slow before it fails, so the
    // fifth chunk is surely queued behind it: the worker must skip it rather
    // than run it before the caller hears of the failure.
    conn.execute_script(
        "CREATE TABLE pad(x);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1500)
         INSERT INTO pad SELECT i FROM n;
         CREATE TRIGGER slow BEFORE INSERT ON t WHEN NEW.v = 'slow'
         BEGIN SELECT count(*) FROM pad a, pad b; END;",
    )
    .await
    .expect("schema");
    let tx = conn.begin().await.expect("begin");
    let sets = (1..=ROWS).map(|i| match i {
        900 => (1, "slow".to_owned()),
        _ => (i, format!("v{i}")),
    });
    let err = tx
        .execute_many("INSERT INTO t(id, v) VALUES (?, ?)", sets)
        .await
        .expect_err("duplicate id");
    assert!(
        matches!(&err, Error::Sqlite { .. }) && err.to_string().contains("UNIQUE"),
        "{err}"
    );
    // The transaction is still usable and holds exactly the sets before it.
    assert_eq!(scalar_in(&tx, "SELECT count(*) FROM t").await, 899);
    assert_eq!(scalar_in(&tx, "SELECT max(id) FROM t").await, 899);
    tx.commit().await.expect("commit");
    assert_eq!(scalar(&conn, "SELECT count(*) FROM t").await, 899);
}

#[tokio::test]
async fn a_wrong_parameter_count_fails_the_call_where_it_occurs() {
    let conn = Connection::open_in_memory().await.expect("open");
    table(&conn).await;
    let tx = conn.begin().await.expect("begin");
    let sets = (1..=ROWS).map(|i| {
        if i == 3000 {
            vec![i.to_string(), "extra".to_owned()]
        } else {
            vec![i.to_string()]
        }
    });
    let err = tx
        .execute_many("INSERT INTO t(v) VALUES (?)", sets)
        .await
        .expect_err("two values for one parameter");
    assert!(
        matches!(
            err,
            Error::ParameterCount {
                expected: 1,
                given: 2,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(scalar_in(&tx, "SELECT count(*) FROM t").await, 2999);
    tx.rollback().await.expect("rollback");
    assert_eq!(scalar(&conn, "SELECT count(*) FROM t").await, 0);
}

#[tokio::test]
async fn no_sets_still_checks_the_sql() {
    let conn = Connection::open_in_memory().await.expect("open");
    table(&conn).await;
    let tx = conn.begin().await.expect("begin");
    let n = tx
        .execute_many("INSERT INTO t(v) VALUES (?)", Vec::<(String,)>::new())
        .await
        .expect("nothing to insert");
    assert_eq!(n, 0);
    let err = tx
        .execute_many("INSERT INTO nope(v) VALUES (?)", Vec::<(String,)>::new())
        .await
        .expect_err("no such table");
    assert!(err.to_string().contains("no such table"), "{err}");
}

#[tokio::test]
async fn the_pool_writer_takes_chunks_too() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Database::open(dir.path().join("m.db")).await.expect("open");
    db.execute(
        "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT NOT NULL)",
        (),
    )
    .await
    .expect("create");
    let tx = db.begin().await.expect("begin");
    let n = tx
        .execute_many(
            "INSERT INTO t(v) VALUES (?)",
            (1..=ROWS).map(|i| (format!("v{i}"),)),
        )
        .await
        .expect("insert");
    assert_eq!(n as i64, ROWS);
    tx.commit().await.expect("commit");
    let count = db
        .fetch_one("SELECT count(*) FROM t", ())
        .await
        .expect("count")
        .get::<_, i64>(0)
        .expect("int");
    assert_eq!(count, ROWS);
}
