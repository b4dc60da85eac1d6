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

/// Doubles of every exponent: uniform bit patterns (so every exponent is as
/// likely as any other), subnormals, and the edges by name.
fn double() -> impl proptest::strategy::Strategy<Value = f64> {
    use proptest::prelude::*;
    prop_oneof![
        4 => any::<u64>()
            .prop_map(f64::from_bits)
            .prop_filter("NaN is NULL in SQLite", |f| !f.is_nan()),
        1 => (1u64..1 << 52, any::<bool>())
            .prop_map(|(m, neg)| f64::from_bits(m | u64::from(neg) << 63)),
        1 => prop::sample::select(vec![
            0.0,
            -0.0,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::MIN_POSITIVE,
            -f64::MIN_POSITIVE,
            f64::from_bits(1),
            -f64::from_bits(1),
            f64::MAX,
            f64::MIN,
            1e308,
            -1e308,
            1e-308,
            0.1,
            1.0 / 3.0,
            // 17 significant digits with large exponents: what SQLite
            // 3.51.1's quote() wrote wrongly.
            1.2345678901234567e300,
            -9.876_543_210_987_655e-300,
            2.2250738585072014e-308,
            5e-324,
            1.7976931348623157e308,
            9007199254740993.0,
        ]),
    ]
}

/// `dump()` + restore gives back every REAL bit for bit: in a column without
/// affinity (which keeps -0.0) and in a REAL column (where SQLite itself
/// stores a zero as 0.0, so the source reads 0.0 too).
#[test]
fn reals_of_every_exponent_survive_dump_and_restore() {
    use proptest::test_runner::{Config, RngSeed, TestRunner};
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let mut runner = TestRunner::new(Config {
        cases: 48,
        failure_persistence: None,
        rng_seed: RngSeed::Fixed(0x00d0_b1e5),
        ..Config::default()
    });
    let bits = |rows: Vec<aiolite::Row>| -> Vec<(u64, u64)> {
        rows.iter()
            .map(|r| {
                let any: f64 = r.get(0).expect("x");
                let real: f64 = r.get(1).expect("y");
                (any.to_bits(), real.to_bits())
            })
            .collect()
    };
    runner
        .run(&proptest::collection::vec(double(), 1..96), |values| {
            rt.block_on(async {
                let conn = Connection::open_in_memory().await.expect("open");
                conn.execute("CREATE TABLE r(i INTEGER PRIMARY KEY, x, y REAL)", ())
                    .await
                    .expect("schema");
                conn.execute_many(
                    "INSERT INTO r(x, y) VALUES (?1, ?1)",
                    values.clone().into_iter().map(|v| (v,)),
                )
                .await
                .expect("fill");
                let script = dump_text(&conn).await;
                let restored = Connection::open_in_memory().await.expect("open");
                restored
                    .execute_script(script.clone())
                    .await
                    .expect("restore");
                let read = "SELECT x, y FROM r ORDER BY i";
                let before = bits(conn.fetch_all(read, ()).await.expect("source"));
                let after = bits(restored.fetch_all(read, ()).await.expect("restored"));
                assert_eq!(before.len(), values.len());
                for (i, (v, (b, a))) in values.iter().zip(before.iter().zip(&after)).enumerate() {
                    assert_eq!(b.0, v.to_bits(), "row {i}: the source keeps {v:e}");
                    assert_eq!(
                        a,
                        b,
                        "row {i}: {v:e} changed through the dump:\n{}",
                        script.lines().nth(2 + i).unwrap_or("")
                    );
                }
                assert_eq!(after.len(), before.len());
            });
            Ok(())
        })
        .expect("every REAL round-trips");
}

/// Python's text is kept wherever it round-trips: only a negative zero is
/// written differently (`-0.0`, where Python writes `0.0`), and SQLite's own
/// parser reads it back with its sign.
#[tokio::test]
async fn only_a_negative_zero_differs_from_python() {
    let conn = Connection::open_in_memory().await.expect("open");
    conn.execute_script(
        "CREATE TABLE r(x); INSERT INTO r VALUES (-0.0), (0.0), (1.5), (-2e300), (9e999), (NULL), ('t');",
    )
    .await
    .expect("fill");
    let script = dump_text(&conn).await;
    let rows: Vec<&str> = script.lines().filter(|l| l.starts_with("INSERT")).collect();
    assert_eq!(
        rows,
        [
            r#"INSERT INTO "r" VALUES(-0.0);"#,
            r#"INSERT INTO "r" VALUES(0.0);"#,
            r#"INSERT INTO "r" VALUES(1.5);"#,
            r#"INSERT INTO "r" VALUES(-2.0e+300);"#,
            r#"INSERT INTO "r" VALUES(9.0e+999);"#,
            r#"INSERT INTO "r" VALUES(NULL);"#,
            r#"INSERT INTO "r" VALUES('t');"#,
        ]
    );
    let sign: f64 = conn
        .fetch_one("SELECT -0.0", ())
        .await
        .expect("parse")
        .get(0)
        .expect("real");
    assert!(sign.is_sign_negative(), "SQLite parses -0.0 with its sign");
}
