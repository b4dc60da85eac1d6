//! Bad input gets a clear error: never a panic, never a wrong result.

mod common;

use aiolite::{Connection, Error, ErrorKind};

async fn conn() -> Connection {
    let c = Connection::open_in_memory().await.expect("open");
    c.execute_script(
        "CREATE TABLE t(id INTEGER PRIMARY KEY, x INTEGER, name TEXT);
         INSERT INTO t(x, name) VALUES (1, 'a'), (2, 'b');",
    )
    .await
    .expect("schema");
    c
}

#[tokio::test]
async fn nul_byte_in_sql_is_refused_before_prepare() {
    let c = conn().await;
    // rusqlite would run this as `UPDATE t SET x = 9` on every row.
    let err = c
        .execute("UPDATE t SET x = 9 \0 WHERE id = 2", ())
        .await
        .expect_err("nul");
    assert!(matches!(err, Error::NulInSql { offset: 19 }), "{err:?}");
    assert_eq!(err.kind(), ErrorKind::Programming);
    for e in [
        c.execute_script("DELETE FROM t;\0 garbage")
            .await
            .expect_err("script"),
        c.fetch_all("SELECT 1\0", ()).await.expect_err("fetch"),
        c.execute_many("DELETE FROM t\0", vec![()])
            .await
            .expect_err("many"),
    ] {
        assert!(matches!(e, Error::NulInSql { .. }), "{e:?}");
    }
    let mut s = c.stream("SELECT 1\0", ());
    use futures_util::StreamExt;
    assert!(matches!(s.next().await, Some(Err(Error::NulInSql { .. }))));
    let xs: Vec<i64> = c
        .fetch_all("SELECT x FROM t ORDER BY id", ())
        .await
        .expect("rows")
        .iter()
        .map(|r| r.get(0).expect("x"))
        .collect();
    assert_eq!(xs, vec![1, 2], "nothing was updated");
}

#[tokio::test]
async fn two_statements_in_execute_are_an_error() {
    let c = conn().await;
    let err = c
        .execute("DELETE FROM t WHERE id = 1; DELETE FROM t", ())
        .await
        .expect_err("two statements");
    assert!(matches!(err, Error::MultipleStatements { .. }), "{err:?}");
    assert!(err.to_string().contains("execute_script"), "{err}");
    let n = common::scalar(&c, "SELECT count(*) FROM t").await;
    assert_eq!(n, 2, "neither statement ran");
    // A trailing semicolon or comment is still one statement.
    c.execute("UPDATE t SET x = x; -- done", ())
        .await
        .expect("one statement");
}

#[tokio::test]
async fn wrong_parameter_count_or_name() {
    let c = conn().await;
    let err = c
        .execute("UPDATE t SET x = ? WHERE id = ?", (1,))
        .await
        .expect_err("too few");
    match &err {
        Error::ParameterCount {
            expected,
            given,
            sql,
        } => {
            assert_eq!((*expected, *given), (2, 1));
            assert_eq!(sql.as_deref(), Some("UPDATE t SET x = ? WHERE id = ?"));
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(matches!(
        c.fetch_all("SELECT ?", (1, 2)).await,
        Err(Error::ParameterCount {
            expected: 1,
            given: 2,
            ..
        })
    ));
    let err = c
        .execute("UPDATE t SET x = :x", aiolite::named_params! { ":y": 1 })
        .await
        .expect_err("bad name");
    assert!(
        matches!(err, Error::ParameterName(_)) && err.to_string().contains(":y"),
        "{err}"
    );
    let err = c
        .execute(
            "UPDATE t SET x = :x WHERE id = :id",
            aiolite::named_params! { ":x": 1 },
        )
        .await
        .expect_err("missing name");
    assert!(err.to_string().contains(":id"), "{err}");
}

#[tokio::test]
async fn decode_mismatch_names_column_rust_type_and_sqlite_type() {
    let c = conn().await;
    let row = c
        .fetch_one("SELECT name, NULL AS missing, x FROM t WHERE id = 1", ())
        .await
        .expect("row");
    let err = row.get::<_, i64>("name").expect_err("text into i64");
    match &err {
        Error::Decode {
            index,
            column,
            field,
            expected,
            found,
        } => {
            assert_eq!(*field, None, "a Row has no struct fields");
            assert_eq!(*index, 0);
            assert_eq!(column, "name");
            assert_eq!(*expected, "i64");
            assert_eq!(found, "TEXT");
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(err.kind(), ErrorKind::Data);
    let err = row
        .get::<_, String>("missing")
        .expect_err("null into String");
    assert!(
        err.to_string().contains("NULL") && err.to_string().contains("missing"),
        "{err}"
    );
    assert_eq!(
        row.get::<_, Option<String>>("missing").expect("option"),
        None
    );
    // Decoding inside fetch_map reports the column too.
    let err = c
        .fetch_map("SELECT name FROM t", (), |r| r.get::<_, i64>(0))
        .await
        .expect_err("decode on the worker");
    assert!(
        matches!(err, Error::Decode { ref column, .. } if column == "name"),
        "{err:?}"
    );
}

#[tokio::test]
async fn invalid_utf8_into_string_is_an_error() {
    let c = conn().await;
    let row = c
        .fetch_one("SELECT CAST(x'c328' AS TEXT) AS bad, x'c328' AS raw", ())
        .await
        .expect("fetching bad text is fine");
    let err = row.get::<_, String>("bad").expect_err("invalid utf-8");
    assert!(err.to_string().contains("UTF-8"), "{err}");
    assert_eq!(
        row.get::<_, Vec<u8>>("raw").expect("bytes"),
        vec![0xc3, 0x28]
    );
    let err = c
        .fetch_map("SELECT CAST(x'c328' AS TEXT)", (), |r| {
            r.get::<_, String>(0)
        })
        .await
        .expect_err("invalid utf-8 on the worker");
    assert!(err.to_string().to_lowercase().contains("utf-8"), "{err}");
}

#[tokio::test]
async fn invalid_sql_and_double_quoted_strings() {
    let c = conn().await;
    let err = c.execute("SELEKT 1", ()).await.expect_err("syntax");
    assert_eq!(err.kind(), ErrorKind::Operational);
    assert_eq!(err.sql(), Some("SELEKT 1"));
    // Double-quoted string literals are off: a misspelt "column" is an error,
    // not the string 'nmae'.
    let err = c
        .fetch_all("SELECT \"nmae\" FROM t", ())
        .await
        .expect_err("no such column");
    assert!(err.to_string().contains("no such column"), "{err}");
    let err = c
        .execute("INSERT INTO nope VALUES (1)", ())
        .await
        .expect_err("table");
    assert!(err.to_string().contains("no such table: nope"), "{err}");
}

#[tokio::test]
async fn constraint_violations_are_classified() {
    let c = conn().await;
    c.execute_script(
        "CREATE TABLE p(id INTEGER PRIMARY KEY); CREATE TABLE ch(p INTEGER REFERENCES p(id))",
    )
    .await
    .expect("schema");
    let err = c
        .execute("INSERT INTO t(id, x) VALUES (1, 1)", ())
        .await
        .expect_err("duplicate");
    assert!(
        err.is_unique_violation() && err.kind() == ErrorKind::Integrity,
        "{err:?}"
    );
    let err = c
        .execute("INSERT INTO ch VALUES (42)", ())
        .await
        .expect_err("foreign keys are on by default");
    assert!(err.is_foreign_key_violation(), "{err:?}");
}

#[tokio::test]
async fn panicking_closures_become_errors_and_the_worker_lives_on() {
    let c = conn().await;
    let r: Result<(), Error> = c.call(|_| panic!("in call")).await;
    assert!(
        matches!(r, Err(Error::Panic { ref message }) if message == "in call"),
        "{r:?}"
    );

    let r = c
        .fetch_map(
            "SELECT x FROM t",
            (),
            |_| -> aiolite::rusqlite::Result<i64> { panic!("in fetch_map") },
        )
        .await;
    assert!(matches!(r, Err(Error::Panic { .. })), "{r:?}");

    // A transaction the panicking closure opened is rolled back.
    let r: Result<(), Error> = c
        .call(|conn| {
            conn.execute_batch("BEGIN; DELETE FROM t;")?;
            panic!("after BEGIN");
        })
        .await;
    assert!(matches!(r, Err(Error::Panic { .. })));
    assert!(!c.in_transaction().await.expect("state"));
    let n = common::scalar(&c, "SELECT count(*) FROM t").await;
    assert_eq!(n, 2, "the panicking closure's delete was rolled back");
}

#[tokio::test]
async fn read_only_database_refuses_writes_clearly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("ro.db");
    let rw = Connection::open(&path).await.expect("open");
    rw.execute("CREATE TABLE t(x)", ()).await.expect("create");
    rw.close().await.expect("close");
    let ro = aiolite::ConnectOptions::new(&path)
        .read_only(true)
        .open()
        .await
        .expect("open read-only");
    let err = ro
        .execute("INSERT INTO t VALUES (1)", ())
        .await
        .expect_err("ro");
    assert!(err.to_string().contains("readonly"), "{err}");
    assert_eq!(err.kind(), ErrorKind::Operational);
}

#[tokio::test]
async fn safe_defaults_are_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = Connection::open(dir.path().join("safe.db"))
        .await
        .expect("open");
    c.execute("CREATE TABLE t(x)", ()).await.expect("create");
    for pragma in ["PRAGMA trusted_schema", "PRAGMA mmap_size"] {
        let row = c.fetch_one(pragma, ()).await.expect(pragma);
        assert_eq!(row.get::<_, i64>(0).expect("int"), 0, "{pragma}");
    }
    // Defensive mode: the schema cannot be written through SQL.
    let err = c
        .execute_script(
            "PRAGMA writable_schema = ON; UPDATE sqlite_schema SET sql = 'x' WHERE name = 't'",
        )
        .await
        .expect_err("defensive");
    assert!(err.to_string().contains("may not be modified"), "{err}");
    // Extensions cannot be loaded through SQL.
    let err = c
        .fetch_one("SELECT load_extension('libnothing')", ())
        .await
        .expect_err("load_extension is off");
    assert!(err.to_string().contains("not authorized"), "{err}");
}

#[tokio::test]
async fn a_full_database_is_a_clear_error_and_loses_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = Connection::open(dir.path().join("full.db"))
        .await
        .expect("open");
    c.execute_script("CREATE TABLE t(x BLOB); INSERT INTO t VALUES (zeroblob(100))")
        .await
        .expect("schema");
    // Cap the file at its current size: the next page cannot be allocated,
    // as on a full disk.
    let pages = common::scalar(&c, "PRAGMA page_count").await;
    c.execute_script(format!("PRAGMA max_page_count = {pages}"))
        .await
        .expect("cap");
    let err = c
        .execute("INSERT INTO t VALUES (zeroblob(1000000))", ())
        .await
        .expect_err("full");
    assert_eq!(err.code(), Some(aiolite::ErrorCode::DiskFull), "{err:?}");
    assert_eq!(err.kind(), ErrorKind::Operational);
    assert!(err.to_string().contains("full"), "{err}");
    let n = common::scalar(&c, "SELECT count(*) FROM t").await;
    assert_eq!(n, 1, "the earlier row is intact");
}

/// What a handler maps to an HTTP status: each constraint is told apart,
/// and `message()` is the text a client may see, with no SQL in it.
#[tokio::test]
async fn constraint_errors_are_told_apart_and_have_a_message_without_sql() {
    let c = Connection::open_in_memory().await.expect("open");
    c.execute_script(
        "CREATE TABLE parent(id INTEGER PRIMARY KEY);
         CREATE TABLE p(id INTEGER PRIMARY KEY, email TEXT NOT NULL UNIQUE,
                        age INTEGER CHECK (age >= 0),
                        parent INTEGER REFERENCES parent(id));
         INSERT INTO parent VALUES (1);
         INSERT INTO p VALUES (1, 'a@x', 1, 1);",
    )
    .await
    .expect("schema");
    let cases = [
        ("INSERT INTO p VALUES (2, 'a@x', 1, 1)", "unique"),
        ("INSERT INTO p VALUES (1, 'b@x', 1, 1)", "unique"),
        ("INSERT INTO p VALUES (3, NULL, 1, 1)", "not null"),
        ("INSERT INTO p VALUES (4, 'c@x', -5, 1)", "check"),
        ("INSERT INTO p VALUES (5, 'd@x', 1, 99)", "foreign key"),
    ];
    for (sql, which) in cases {
        let e = c.execute(sql, ()).await.expect_err(sql);
        let seen = [
            ("unique", e.is_unique_violation()),
            ("not null", e.is_not_null_violation()),
            ("check", e.is_check_violation()),
            ("foreign key", e.is_foreign_key_violation()),
        ];
        for (name, is) in seen {
            assert_eq!(is, name == which, "{sql}: is {name}? {e}");
        }
        assert!(e.is_constraint(), "{sql}");
        assert!(
            e.to_string().contains(sql),
            "Display keeps the SQL for logs: {e}"
        );
        let message = e.message();
        assert!(!message.contains("INSERT"), "{message}");
        assert!(message.contains("constraint failed"), "{message}");
    }
    // Every error that quotes its SQL has a message without it.
    let secret = "SELECT id FROM p WHERE email = 'secret@example.com'";
    let errors = [
        c.fetch_one(secret, ()).await.map(drop).expect_err("no row"),
        c.execute(secret, (1,)).await.map(drop).expect_err("count"),
        c.execute("SELECT 1; SELECT 'secret@example.com'", ())
            .await
            .map(drop)
            .expect_err("two statements"),
        c.execute("SELEC 'secret@example.com'", ())
            .await
            .map(drop)
            .expect_err("syntax"),
    ];
    for e in errors {
        assert!(e.to_string().contains("secret@example.com"), "{e}");
        assert!(!e.message().contains("secret"), "{}", e.message());
        assert!(!e.message().is_empty());
    }
    // Inside a guard SQLite rolled back: the cause's message, no SQL.
    let tx = c.begin().await.expect("begin");
    let e = tx
        .execute("INSERT OR ROLLBACK INTO p VALUES (9, 'a@x', 1, 1)", ())
        .await
        .expect_err("rolled back");
    assert!(matches!(e, Error::RolledBack { .. }), "{e:?}");
    assert!(e.is_unique_violation(), "{e}");
    assert!(!e.message().contains("INSERT"), "{}", e.message());
    assert!(
        e.message().contains("UNIQUE constraint failed"),
        "{}",
        e.message()
    );
    tx.rollback().await.expect("rollback");
}
