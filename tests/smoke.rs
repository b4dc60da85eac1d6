//! aiosqlite's smoke suite (tests/smoke.py), ported scenario by scenario, plus
//! the rest of the core surface.

mod common;

use std::path::Path;

use aiolite::{named_params, ConnectOptions, Connection, Error, TransactionBehavior, Value};
use futures_util::StreamExt;

async fn users(conn: &Connection) {
    conn.execute_script(
        "CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT NOT NULL, age INTEGER NOT NULL)",
    )
    .await
    .expect("schema");
}

#[tokio::test]
async fn connect_with_each_path_type() {
    let (_dir, path) = common::temp_db("test.db");
    let as_str: &str = path.to_str().expect("utf-8 path");
    let c1 = Connection::open(as_str).await.expect("&str");
    let c2 = Connection::open(as_str.to_string()).await.expect("String");
    let c3 = Connection::open(Path::new(as_str)).await.expect("&Path");
    let c4 = Connection::open(path.clone()).await.expect("PathBuf");
    c1.execute("CREATE TABLE t(x)", ()).await.expect("create");
    c2.execute("INSERT INTO t VALUES (1)", ())
        .await
        .expect("insert");
    for c in [&c3, &c4] {
        let n = common::scalar(c, "SELECT count(*) FROM t").await;
        assert_eq!(n, 1);
    }
    assert_eq!(c4.path(), path.as_path());
}

#[tokio::test]
async fn multiple_connections_see_each_others_commits() {
    let (_dir, path) = common::temp_db("test.db");
    let a = Connection::open(&path).await.expect("a");
    let b = Connection::open(&path).await.expect("b");
    users(&a).await;
    a.execute("INSERT INTO users(name, age) VALUES ('Alice', 30)", ())
        .await
        .expect("insert");
    let rows = b
        .fetch_all("SELECT name FROM users", ())
        .await
        .expect("read");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get::<_, String>(0).expect("name"), "Alice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_queries_on_one_handle() {
    let conn = Connection::open_in_memory().await.expect("open");
    users(&conn).await;
    let tasks: Vec<_> = (0..100)
        .map(|i| {
            let conn = conn.clone();
            tokio::spawn(async move {
                conn.execute_insert(
                    "INSERT INTO users(name, age) VALUES (?, ?)",
                    (format!("user{i}"), i),
                )
                .await
            })
        })
        .collect();
    let mut ids = Vec::new();
    for t in tasks {
        ids.push(t.await.expect("join").expect("insert"));
    }
    ids.sort_unstable();
    assert_eq!(ids, (1..=100).collect::<Vec<i64>>());
    let n = common::scalar(&conn, "SELECT count(*) FROM users").await;
    assert_eq!(n, 100);
}

#[tokio::test]
async fn iterate_cursor() {
    let conn = Connection::open_in_memory().await.expect("open");
    users(&conn).await;
    conn.execute_many(
        "INSERT INTO users(name, age) VALUES (?, ?)",
        (0..200).map(|i| (format!("u{i}"), i)),
    )
    .await
    .expect("many");
    let mut stream = conn.stream("SELECT age FROM users ORDER BY id", ());
    let mut seen = Vec::new();
    while let Some(row) = stream.next().await {
        seen.push(row.expect("row").get::<_, i64>(0).expect("age"));
    }
    assert_eq!(seen, (0..200).collect::<Vec<i64>>());
}

#[test]
fn one_connection_used_from_four_threads_each_with_its_own_runtime() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let conn = rt.block_on(async {
        let c = Connection::open_in_memory().await.expect("open");
        users(&c).await;
        c
    });
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let conn = conn.clone();
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .build()
                    .expect("runtime");
                rt.block_on(async {
                    for i in 0..25 {
                        conn.execute(
                            "INSERT INTO users(name, age) VALUES (?, ?)",
                            (format!("t{t}-{i}"), i),
                        )
                        .await
                        .expect("insert");
                    }
                });
            })
        })
        .collect();
    for t in threads {
        t.join().expect("thread");
    }
    let n: i64 = rt
        .block_on(conn.fetch_one("SELECT count(*) FROM users", ()))
        .expect("count")
        .get(0)
        .expect("int");
    assert_eq!(n, 100);
}

#[tokio::test]
async fn fetch_all_one_optional() {
    let conn = Connection::open_in_memory().await.expect("open");
    users(&conn).await;
    conn.execute_many(
        "INSERT INTO users(name, age) VALUES (?, ?)",
        vec![("Alice", 30), ("Bob", 24)],
    )
    .await
    .expect("insert");
    let rows = conn
        .fetch_all("SELECT name, age FROM users ORDER BY id", ())
        .await
        .expect("all");
    let got: Vec<(String, i64)> = rows
        .iter()
        .map(|r| (r.get(0).expect("name"), r.get("age").expect("age")))
        .collect();
    assert_eq!(got, vec![("Alice".into(), 30), ("Bob".into(), 24)]);

    let none = conn
        .fetch_optional("SELECT name FROM users WHERE age > ?", (100,))
        .await
        .expect("optional");
    assert!(none.is_none());
    let err = conn
        .fetch_one("SELECT name FROM users WHERE age > ?", (100,))
        .await
        .expect_err("no rows");
    assert!(matches!(err, Error::NoRows { .. }), "{err:?}");
    assert!(err.to_string().contains("age > ?"), "{err}");
}

#[tokio::test]
async fn total_changes_and_in_transaction() {
    let conn = Connection::open_in_memory().await.expect("open");
    users(&conn).await;
    assert_eq!(conn.total_changes().await.expect("changes"), 0);
    assert!(!conn.in_transaction().await.expect("in tx"));
    conn.execute("BEGIN", ()).await.expect("begin");
    assert!(conn.in_transaction().await.expect("in tx"));
    conn.execute("INSERT INTO users(name, age) VALUES ('a', 1)", ())
        .await
        .expect("insert");
    conn.execute("INSERT INTO users(name, age) VALUES ('b', 2)", ())
        .await
        .expect("insert");
    assert_eq!(conn.total_changes().await.expect("changes"), 2);
    conn.commit().await.expect("commit");
    assert!(!conn.in_transaction().await.expect("in tx"));
    assert_eq!(conn.last_insert_rowid().await.expect("rowid"), 2);
}

#[tokio::test]
async fn connect_error_names_the_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("no/such/dir/x.db");
    let err = Connection::open(&path).await.expect_err("must fail");
    assert!(matches!(err, Error::Open { .. }), "{err:?}");
    assert!(err.to_string().contains("no/such/dir/x.db"), "{err}");
    let err = ConnectOptions::new(dir.path().join("missing.db"))
        .create_if_missing(false)
        .open()
        .await
        .expect_err("must not create");
    assert!(err.to_string().contains("missing.db"), "{err}");
}

#[tokio::test]
async fn close_twice_and_calls_after_close() {
    let conn = Connection::open_in_memory().await.expect("open");
    let other = conn.clone();
    assert!(!conn.is_closed());
    conn.close().await.expect("close");
    conn.close().await.expect("close again");
    assert!(conn.is_closed() && other.is_closed());
    let err = other.execute("SELECT 1", ()).await.expect_err("closed");
    assert!(matches!(err, Error::Closed), "{err:?}");
    assert!(matches!(
        other.fetch_all("SELECT 1", ()).await,
        Err(Error::Closed)
    ));
    assert!(matches!(other.begin().await, Err(Error::Closed)));
    let mut s = other.stream("SELECT 1", ());
    assert!(matches!(s.next().await, Some(Err(Error::Closed))));
    let r: Result<(), Error> = other.call(|_| Ok(())).await;
    assert!(matches!(r, Err(Error::Closed)));
}

#[tokio::test]
async fn close_after_a_thousand_queued_queries() {
    let (_dir, path) = common::temp_db("test.db");
    let conn = Connection::open(&path).await.expect("open");
    conn.execute("CREATE TABLE t(x INTEGER)", ())
        .await
        .expect("create");
    // Poll each query once: that puts its request in the queue.
    let mut results = Vec::new();
    let mut pending = Vec::new();
    for i in 0..1000 {
        let mut q = Box::pin(conn.execute("INSERT INTO t VALUES (?)", (i,)));
        match futures_util::poll!(q.as_mut()) {
            std::task::Poll::Ready(r) => results.push(r),
            std::task::Poll::Pending => pending.push(q),
        }
    }
    let (rest, closed) = tokio::join!(futures_util::future::join_all(pending), conn.close());
    closed.expect("close");
    results.extend(rest);
    assert_eq!(results.len(), 1000);
    assert!(
        results.iter().all(|r| matches!(r, Ok(1))),
        "{:?}",
        results.iter().find(|r| r.is_err())
    );
    assert!(matches!(
        conn.execute("SELECT 1", ()).await,
        Err(Error::Closed)
    ));
    let check = Connection::open(&path).await.expect("reopen");
    let n = common::scalar(&check, "SELECT count(*) FROM t").await;
    assert_eq!(n, 1000);
}

#[tokio::test]
async fn execute_returns_rowcount_and_metadata() {
    let conn = Connection::open_in_memory().await.expect("open");
    users(&conn).await;
    // DDL changes no rows, even after a DML statement changed some.
    let id = conn
        .execute_insert("INSERT INTO users(name, age) VALUES (?, ?)", ("x", 1))
        .await
        .expect("insert");
    assert_eq!(id, 1);
    assert_eq!(
        conn.execute("CREATE TABLE other(y)", ())
            .await
            .expect("ddl"),
        0
    );
    conn.execute_many(
        "INSERT INTO users(name, age) VALUES (?, ?)",
        (0..5).map(|i| vec![Value::Text(format!("n{i}")), Value::Integer(i)]),
    )
    .await
    .expect("many");
    let changed = conn
        .execute("UPDATE users SET age = age + 1 WHERE age < ?", (3,))
        .await
        .expect("update");
    assert_eq!(changed, 4); // x (1) and n0, n1, n2
    assert_eq!(
        conn.execute("SELECT * FROM users", ())
            .await
            .expect("select"),
        0
    );
    let cols = conn
        .describe("SELECT id, name, age + 1 AS next FROM users")
        .await
        .expect("describe");
    let described: Vec<(&str, Option<&str>)> =
        cols.iter().map(|c| (c.name(), c.decl_type())).collect();
    assert_eq!(
        described,
        vec![
            ("id", Some("INTEGER")),
            ("name", Some("TEXT")),
            ("next", None)
        ]
    );
    let row = conn
        .fetch_one("SELECT id, name FROM users WHERE id = 1", ())
        .await
        .expect("one");
    assert_eq!(row.columns()[1].name(), "name");
    let values: Vec<_> = row.values().map(|v| v.data_type()).collect();
    assert_eq!(
        values,
        vec![
            aiolite::rusqlite::types::Type::Integer,
            aiolite::rusqlite::types::Type::Text
        ]
    );
}

#[tokio::test]
async fn named_and_vec_params() {
    let conn = Connection::open_in_memory().await.expect("open");
    users(&conn).await;
    conn.execute(
        "INSERT INTO users(name, age) VALUES (:name, :age)",
        named_params! { ":name": "Carol", ":age": 41 },
    )
    .await
    .expect("named");
    let row = conn
        .fetch_one(
            "SELECT name FROM users WHERE age = ?1 AND name = ?2",
            vec![Value::Integer(41), Value::Text("Carol".into())],
        )
        .await
        .expect("vec");
    assert_eq!(row.get::<_, String>(0).expect("name"), "Carol");
    let row = conn
        .fetch_one("SELECT ? || ?", ["a".to_string(), "b".to_string()])
        .await
        .expect("array");
    assert_eq!(row.get::<_, String>(0).expect("concat"), "ab");
}

#[tokio::test]
async fn fetch_map_runs_on_the_worker() {
    let conn = Connection::open_in_memory().await.expect("open");
    let names: Vec<(String, String)> = conn
        .fetch_map("SELECT 'x' || value FROM json_each('[1,2,3]')", (), |row| {
            let name = std::thread::current().name().unwrap_or("").to_owned();
            Ok((row.get(0)?, name))
        })
        .await
        .expect("map");
    assert_eq!(names.len(), 3);
    assert_eq!(names[0].0, "x1");
    assert!(
        names.iter().all(|(_, t)| t.starts_with("aiolite-conn-")),
        "{names:?}"
    );
}

#[tokio::test]
async fn commit_and_rollback_outside_a_transaction_are_noops() {
    let conn = Connection::open_in_memory().await.expect("open");
    conn.commit().await.expect("commit");
    conn.rollback().await.expect("rollback");
    users(&conn).await;
    conn.execute("BEGIN", ()).await.expect("begin");
    conn.execute("INSERT INTO users(name, age) VALUES ('a', 1)", ())
        .await
        .expect("insert");
    conn.rollback().await.expect("rollback");
    let n = common::scalar(&conn, "SELECT count(*) FROM users").await;
    assert_eq!(n, 0);
}

#[tokio::test]
async fn isolation_level_emulates_pythons_implicit_begin() {
    let (_dir, path) = common::temp_db("test.db");
    let conn = ConnectOptions::new(&path)
        .isolation_level(Some(TransactionBehavior::Deferred))
        .open()
        .await
        .expect("open");
    users(&conn).await;
    assert!(!conn.in_transaction().await.expect("state"));
    conn.execute("INSERT INTO users(name, age) VALUES ('a', 1)", ())
        .await
        .expect("insert");
    assert!(
        conn.in_transaction().await.expect("state"),
        "DML opened a transaction"
    );
    let other = Connection::open(&path).await.expect("other");
    let count =
        |c: Connection| async move { common::scalar(&c, "SELECT count(*) FROM users").await };
    assert_eq!(count(other.clone()).await, 0, "not committed yet");
    conn.commit().await.expect("commit");
    assert_eq!(count(other.clone()).await, 1);
    // SELECT opens nothing.
    conn.fetch_all("SELECT * FROM users", ())
        .await
        .expect("select");
    assert!(!conn.in_transaction().await.expect("state"));
}

#[tokio::test]
async fn options_init_hook_pragmas_and_url() {
    let (_dir, path) = common::temp_db("test.db");
    let conn = ConnectOptions::new(&path)
        .pragma("user_version", "7")
        .on_open(|c| {
            c.execute_batch("CREATE TABLE IF NOT EXISTS from_hook(x)")?;
            Ok(())
        })
        .open()
        .await
        .expect("open");
    let row = conn
        .fetch_one(
            "SELECT (SELECT user_version FROM pragma_user_version), (SELECT journal_mode FROM pragma_journal_mode), (SELECT foreign_keys FROM pragma_foreign_keys), (SELECT count(*) FROM from_hook)",
            (),
        )
        .await
        .expect("pragmas");
    assert_eq!(row.get::<_, i64>(0).expect("uv"), 7);
    assert_eq!(row.get::<_, String>(1).expect("jm"), "wal");
    assert_eq!(row.get::<_, i64>(2).expect("fk"), 1);
    conn.close().await.expect("close");

    let url = format!("sqlite://{}?mode=ro", path.display());
    let ro = url
        .parse::<ConnectOptions>()
        .expect("url")
        .open()
        .await
        .expect("open ro");
    let err = ro
        .execute("INSERT INTO from_hook VALUES (1)", ())
        .await
        .expect_err("read-only");
    assert_eq!(err.code(), Some(aiolite::ErrorCode::ReadOnly), "{err:?}");
    let mem: ConnectOptions = "sqlite::memory:".parse().expect("memory url");
    let m = mem.open().await.expect("open memory");
    assert_eq!(common::scalar(&m, "SELECT 1").await, 1);
}

#[tokio::test]
async fn init_hook_failure_fails_the_open() {
    let err = ConnectOptions::in_memory()
        .on_open(|c| c.execute_batch("NOT SQL"))
        .open()
        .await
        .expect_err("hook fails");
    assert!(err.to_string().contains("syntax error"), "{err}");
    let err = ConnectOptions::in_memory()
        .on_open(|_| panic!("hook panicked"))
        .open()
        .await
        .expect_err("hook panics");
    assert!(matches!(err, Error::Panic { .. }), "{err:?}");
}

#[tokio::test]
async fn column_names_follow_schema_changes() {
    let conn = Connection::open_in_memory().await.expect("open");
    conn.execute_script("CREATE TABLE s(a INTEGER); INSERT INTO s VALUES (1)")
        .await
        .expect("schema");
    let names = |row: &aiolite::Row| -> Vec<(String, Option<String>)> {
        row.columns()
            .iter()
            .map(|c| (c.name().to_owned(), c.decl_type().map(str::to_owned)))
            .collect()
    };
    let row = conn.fetch_one("SELECT * FROM s", ()).await.expect("row");
    assert_eq!(names(&row), vec![("a".into(), Some("INTEGER".into()))]);
    conn.execute_script("ALTER TABLE s RENAME COLUMN a TO b; ALTER TABLE s ADD COLUMN c TEXT")
        .await
        .expect("alter");
    let row = conn.fetch_one("SELECT * FROM s", ()).await.expect("row");
    assert_eq!(
        names(&row),
        vec![
            ("b".into(), Some("INTEGER".into())),
            ("c".into(), Some("TEXT".into()))
        ]
    );
    conn.execute_script(
        "DROP TABLE s; CREATE TABLE s(b TEXT, c BLOB); INSERT INTO s VALUES ('x', x'00')",
    )
    .await
    .expect("recreate");
    let row = conn.fetch_one("SELECT * FROM s", ()).await.expect("row");
    assert_eq!(
        names(&row),
        vec![
            ("b".into(), Some("TEXT".into())),
            ("c".into(), Some("BLOB".into()))
        ]
    );
    assert_eq!(row.get::<_, String>("b").expect("b"), "x");
}

#[tokio::test]
async fn rows_of_one_fetch_are_independent_values() {
    let conn = Connection::open_in_memory().await.expect("open");
    let rows = conn
        .fetch_all(
            "SELECT value, 'v' || value, x'ab' FROM json_each('[1,2,3]')",
            (),
        )
        .await
        .expect("rows");
    let kept = rows[1].clone();
    drop(rows);
    assert_eq!(kept.get::<_, i64>(0).expect("int"), 2);
    assert_eq!(kept.get::<_, String>(1).expect("text"), "v2");
    assert_eq!(kept.get::<_, Vec<u8>>(2).expect("blob"), vec![0xab]);
    assert_eq!(
        format!("{kept:?}"),
        r#"{"value": Integer(2), "'v' || value": Text("v2"), "x'ab'": Blob([171])}"#
    );
}
