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

/// A database built with plain rusqlite, as other tools leave them: foreign
/// keys on, SQLite's legacy double-quoted strings accepted.
fn legacy_source(path: &std::path::Path, script: &str) {
    use rusqlite::config::DbConfig;
    let conn = rusqlite::Connection::open(path).expect("open");
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_DQS_DDL, true)
        .expect("dqs");
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_DQS_DML, true)
        .expect("dqs");
    conn.execute_batch("PRAGMA foreign_keys = ON").expect("fk");
    conn.execute_batch(script).expect("source");
}

/// Reported: under aiolite's defaults (foreign keys on, legacy quoting
/// off) a dump whose child table sorts before its parent, or whose schema
/// uses `""`, did not restore, where Python's restore works.
#[tokio::test]
async fn restore_dump_restores_under_aiolite_defaults() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("legacy.db");
    legacy_source(
        &path,
        r#"CREATE TABLE authors(id INTEGER PRIMARY KEY, name TEXT CHECK (name <> ""));
           CREATE TABLE books(id INTEGER PRIMARY KEY, author INTEGER REFERENCES authors(id));
           INSERT INTO authors VALUES (1, 'Ann');
           INSERT INTO books VALUES (10, 1);"#,
    );
    let source = Connection::open(&path).await.expect("open");
    let script = dump_text(&source).await;
    assert!(script.contains(r#"CHECK (name <> "")"#), "{script}");

    let plain = Connection::open_in_memory().await.expect("open");
    let err = plain
        .execute_script(script.clone())
        .await
        .expect_err("execute_script under the defaults");
    assert!(err.to_string().contains("no such column"), "{err}");

    let copy = Connection::open_in_memory().await.expect("open");
    copy.restore_dump(script.clone())
        .await
        .expect("restore_dump");
    assert_eq!(dump_text(&copy).await, script);
    // The connection's settings are back: foreign keys on, `""` refused.
    assert_eq!(common_scalar(&copy, "PRAGMA foreign_keys").await, 1);
    let err = copy
        .execute("CREATE TABLE later(s TEXT CHECK (s <> \"\"))", ())
        .await
        .expect_err("legacy quoting is off again");
    assert!(err.to_string().contains("no such column"), "{err}");
    source.close().await.expect("close");
}

async fn common_scalar(conn: &Connection, sql: &str) -> i64 {
    conn.fetch_one(sql.to_owned(), ())
        .await
        .expect(sql)
        .get(0)
        .expect("integer")
}

#[tokio::test]
async fn a_child_table_that_sorts_before_its_parent_restores() {
    let conn = Connection::open_in_memory().await.expect("open");
    conn.execute_script(
        "CREATE TABLE a_child(id INTEGER PRIMARY KEY, parent INTEGER NOT NULL REFERENCES z_parent(id));
         CREATE TABLE z_parent(id INTEGER PRIMARY KEY);
         INSERT INTO z_parent VALUES (1), (2);
         INSERT INTO a_child VALUES (1, 2), (2, 1);",
    )
    .await
    .expect("source");
    let script = dump_text(&conn).await;
    let plain = Connection::open_in_memory().await.expect("open");
    let err = plain
        .execute_script(script.clone())
        .await
        .expect_err("row by row, the parent is not there yet");
    assert!(err.to_string().contains("no such table"), "{err}");
    let copy = Connection::open_in_memory().await.expect("open");
    copy.restore_dump(script.clone())
        .await
        .expect("restore_dump");
    assert_eq!(dump_text(&copy).await, script);

    // Rows that break a foreign key: an error naming it, nothing restored.
    let broken = script.replace("VALUES(1,2)", "VALUES(1,99)");
    let other = Connection::open_in_memory().await.expect("open");
    let err = other.restore_dump(broken).await.expect_err("violation");
    assert!(err.is_foreign_key_violation(), "{err:?}");
    assert!(err.to_string().contains("a_child"), "{err}");
    assert_eq!(
        common_scalar(&other, "SELECT count(*) FROM sqlite_schema").await,
        0,
        "all or nothing"
    );
    // Inside a transaction it refuses, rather than commit the caller's work.
    other.execute_script("BEGIN").await.expect("begin");
    let err = other
        .restore_dump(script.clone())
        .await
        .expect_err("in a transaction");
    assert!(
        matches!(err, aiolite::Error::TransactionControl(_)),
        "{err:?}"
    );
    other.execute_script("ROLLBACK").await.expect("rollback");
    let dir = tempfile::tempdir().expect("dir");
    let db = aiolite::Database::open(dir.path().join("p.db"))
        .await
        .expect("pool");
    db.restore_dump(script).await.expect("on a pool's writer");
    assert_eq!(
        common_scalar(db.reader(), "SELECT count(*) FROM a_child").await,
        2
    );
    db.close().await.expect("close");
}

/// Reported: text after a NUL was lost (Python loses it too), and a REAL
/// `sqlite_sequence` counter was written `5` where Python writes `5.0`.
#[tokio::test]
async fn nul_text_and_real_counters_survive() {
    let conn = Connection::open_in_memory().await.expect("open");
    conn.execute_script(
        "CREATE TABLE t(id INTEGER PRIMARY KEY AUTOINCREMENT, s TEXT, x);
         INSERT INTO t(s, x) VALUES ('a' || char(0) || 'b', 'plain'), (char(0), 'c' || char(0));
         UPDATE sqlite_sequence SET seq = 5.0 WHERE name = 't';",
    )
    .await
    .expect("source");
    let script = dump_text(&conn).await;
    assert!(
        script.contains(r#"INSERT INTO "t" VALUES(1,CAST(X'610062' AS TEXT),'plain');"#),
        "{script}"
    );
    assert!(
        script.contains(r#"INSERT INTO "sqlite_sequence" VALUES('t',5.0);"#),
        "{script}"
    );
    let copy = Connection::open_in_memory().await.expect("open");
    copy.restore_dump(script.clone()).await.expect("restore");
    let read = "SELECT hex(s), typeof(s), hex(x), typeof(x) FROM t ORDER BY id";
    let rows = |c: &Connection| {
        let c = c.clone();
        async move {
            c.fetch_all(read, ())
                .await
                .expect("rows")
                .iter()
                .map(|r| {
                    (0..4)
                        .map(|i| r.get::<_, String>(i).expect("text"))
                        .collect::<Vec<_>>()
                })
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(rows(&copy).await, rows(&conn).await);
    assert_eq!(
        copy.fetch_one("SELECT typeof(seq) FROM sqlite_sequence", ())
            .await
            .expect("seq")
            .get::<_, String>(0)
            .expect("text"),
        "real"
    );
    assert_eq!(dump_text(&copy).await, script);
}
