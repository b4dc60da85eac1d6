//! `fetch_*_with`: rows decoded on the worker by a stateful decoder.

mod common;

use aiolite::rusqlite;
use aiolite::{Connection, Database, Error, RowDecoder};

/// Resolves a column by name once (on the first row), then reads by index,
/// and records which thread it ran on.
struct ByName {
    column: &'static str,
    index: Option<usize>,
    resolved: usize,
}

impl RowDecoder for ByName {
    type Output = (i64, String, usize);

    fn decode(&mut self, row: &rusqlite::Row<'_>) -> aiolite::Result<Self::Output> {
        let index = match self.index {
            Some(i) => i,
            None => {
                self.resolved += 1;
                let stmt: &rusqlite::Statement<'_> = row.as_ref();
                let i = stmt.column_index(self.column)?;
                *self.index.insert(i)
            }
        };
        let thread = std::thread::current().name().unwrap_or("").to_owned();
        Ok((row.get(index)?, thread, self.resolved))
    }
}

async fn numbers() -> Connection {
    let conn = Connection::open_in_memory().await.expect("open");
    conn.execute_script(
        "CREATE TABLE t(a TEXT, n INTEGER);
         INSERT INTO t VALUES ('x', 1), ('y', 2), ('z', 3);",
    )
    .await
    .expect("schema");
    conn
}

#[tokio::test]
async fn a_decoder_runs_on_the_worker_and_keeps_state() {
    let conn = numbers().await;
    let decoder = ByName {
        column: "n",
        index: None,
        resolved: 0,
    };
    let rows = conn
        .fetch_all_with("SELECT a, n FROM t ORDER BY n", (), decoder)
        .await
        .expect("decode");
    let ns: Vec<i64> = rows.iter().map(|r| r.0).collect();
    assert_eq!(ns, vec![1, 2, 3]);
    assert!(
        rows.iter().all(|r| r.1.starts_with("aiolite-conn-")),
        "{rows:?}"
    );
    assert!(
        rows.iter().all(|r| r.2 == 1),
        "the name was resolved once: {rows:?}"
    );
}

#[tokio::test]
async fn closures_one_optional_and_errors() {
    let conn = numbers().await;
    let upper = |row: &rusqlite::Row<'_>| Ok(row.get::<_, String>(0)?.to_uppercase());
    assert_eq!(
        conn.fetch_one_with("SELECT a FROM t WHERE n = 2", (), upper)
            .await
            .expect("one"),
        "Y"
    );
    assert!(conn
        .fetch_optional_with("SELECT a FROM t WHERE n = 9", (), upper)
        .await
        .expect("none")
        .is_none());
    assert!(matches!(
        conn.fetch_one_with("SELECT a FROM t WHERE n = 9", (), upper)
            .await,
        Err(Error::NoRows { .. })
    ));
    let err = conn
        .fetch_all_with("SELECT a FROM t", (), |row: &rusqlite::Row<'_>| {
            Ok(row.get::<_, i64>(0)?)
        })
        .await
        .expect_err("text into i64");
    assert!(
        matches!(err, Error::Decode { ref column, .. } if column == "a"),
        "{err:?}"
    );
    let err = conn
        .fetch_all_with(
            "SELECT a FROM t",
            (),
            |_: &rusqlite::Row<'_>| -> aiolite::Result<()> { panic!("in a decoder") },
        )
        .await
        .expect_err("panic");
    assert!(matches!(err, Error::Panic { .. }), "{err:?}");
    assert_eq!(
        common::scalar(&conn, "SELECT count(*) FROM t").await,
        3,
        "still usable"
    );
}

#[tokio::test]
async fn the_pool_routes_decoded_reads_to_readers() {
    let (_dir, path) = common::temp_db("d.db");
    let db = Database::builder(&path)
        .readers(2)
        .open()
        .await
        .expect("open");
    db.execute_script("CREATE TABLE t(n INTEGER); INSERT INTO t VALUES (1), (2);")
        .await
        .expect("schema");
    let threads = db
        .fetch_all_with("SELECT n FROM t", (), |_: &rusqlite::Row<'_>| {
            Ok(std::thread::current().name().unwrap_or("").to_owned())
        })
        .await
        .expect("decode");
    assert!(
        threads.iter().all(|t| t.starts_with("aiolite-reader-")),
        "{threads:?}"
    );
    let total: i64 = db
        .fetch_one_with("SELECT sum(n) FROM t", (), |r: &rusqlite::Row<'_>| {
            Ok(r.get(0)?)
        })
        .await
        .expect("one");
    assert_eq!(total, 3);
}
