//! Streams: chunked, bounded, interleaved with other requests, finalized on drop.

mod common;

use std::time::Duration;

use aiolite::{ConnectOptions, Connection};
use futures_util::StreamExt;

async fn numbers(conn: &Connection, n: i64) {
    conn.execute_script("CREATE TABLE t(x INTEGER PRIMARY KEY)")
        .await
        .expect("create");
    conn.execute(
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < ?) INSERT INTO t SELECT x FROM c",
        (n,),
    )
    .await
    .expect("fill");
}

#[tokio::test]
async fn other_requests_complete_while_a_stream_is_open() {
    let conn = ConnectOptions::in_memory()
        .iter_chunk_size(10)
        .open()
        .await
        .expect("open");
    numbers(&conn, 1000).await;
    let mut stream = conn.stream("SELECT x FROM t ORDER BY x", ());
    let first = stream.next().await.expect("a row").expect("ok");
    assert_eq!(first.get::<_, i64>(0).expect("int"), 1);
    // The consumer is slow: meanwhile the connection serves everyone else,
    // writes included.
    for i in 0..20 {
        let v = tokio::time::timeout(
            Duration::from_secs(5),
            conn.fetch_one("SELECT count(*) + ? FROM t", (i,)),
        )
        .await
        .expect("not blocked by the open stream")
        .expect("query");
        assert_eq!(v.get::<_, i64>(0).expect("int"), 1000 + i);
    }
    conn.execute("CREATE TABLE other(y)", ())
        .await
        .expect("write while streaming");
    let rest: Vec<i64> = stream
        .map(|r| r.expect("row").get::<_, i64>(0).expect("int"))
        .collect()
        .await;
    assert_eq!(rest, (2..=1000).collect::<Vec<_>>());
}

#[tokio::test]
async fn dropping_a_stream_finalizes_its_statement() {
    let conn = ConnectOptions::in_memory()
        .iter_chunk_size(4)
        .open()
        .await
        .expect("open");
    numbers(&conn, 100).await;
    let mut stream = conn.stream("SELECT x FROM t", ());
    stream.next().await.expect("row").expect("ok");
    // With the statement still parked, SQLite refuses to drop the table.
    let err = conn
        .execute("DROP TABLE t", ())
        .await
        .expect_err("table in use");
    assert!(err.to_string().contains("locked"), "{err}");
    drop(stream);
    conn.execute("DROP TABLE t", ())
        .await
        .expect("statement finalized");
}

#[tokio::test]
async fn insert_returning_is_committed_before_the_first_row() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("r.db");
    let conn = ConnectOptions::new(&path)
        .iter_chunk_size(2)
        .open()
        .await
        .expect("open");
    conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v)", ())
        .await
        .expect("create");
    let other = Connection::open(&path).await.expect("other");
    let count = || async { common::scalar(&other, "SELECT count(*) FROM t").await };

    let row = conn
        .fetch_one("INSERT INTO t(v) VALUES (1), (2), (3) RETURNING id", ())
        .await
        .expect("returning");
    assert_eq!(row.get::<_, i64>(0).expect("id"), 1);
    assert_eq!(count().await, 3, "fetch_one's insert is committed");

    let mut stream = conn.stream(
        "INSERT INTO t(v) VALUES (4), (5), (6), (7), (8) RETURNING id",
        (),
    );
    let first = stream.next().await.expect("row").expect("ok");
    assert_eq!(first.get::<_, i64>(0).expect("id"), 4);
    assert_eq!(
        count().await,
        8,
        "the stream's insert is committed at its first row"
    );
    drop(stream);
    assert!(!conn.in_transaction().await.expect("state"));
}

#[tokio::test]
async fn stream_errors_are_items() {
    let conn = Connection::open_in_memory().await.expect("open");
    let mut s = conn.stream("SELECT * FROM missing", ());
    let err = s.next().await.expect("an item").expect_err("no table");
    assert!(err.to_string().contains("no such table"), "{err}");
    assert!(s.next().await.is_none(), "a failed stream ends");
    let mut s = conn.stream("SELECT ?", ());
    assert!(matches!(
        s.next().await,
        Some(Err(aiolite::Error::ParameterCount {
            expected: 1,
            given: 0,
            ..
        }))
    ));
}

#[tokio::test]
async fn stream_inside_a_transaction_sees_its_writes() {
    let conn = Connection::open_in_memory().await.expect("open");
    numbers(&conn, 10).await;
    let tx = conn.begin().await.expect("begin");
    tx.execute("DELETE FROM t WHERE x > 5", ())
        .await
        .expect("delete");
    let xs: Vec<i64> = tx
        .stream("SELECT x FROM t ORDER BY x", ())
        .map(|r| r.expect("row").get::<_, i64>(0).expect("int"))
        .collect()
        .await;
    assert_eq!(xs, vec![1, 2, 3, 4, 5]);
    tx.rollback().await.expect("rollback");
    assert_eq!(common::scalar(&conn, "SELECT count(*) FROM t").await, 10);
}
