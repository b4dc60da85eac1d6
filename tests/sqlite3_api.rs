//! The rest of the sqlite3 API: aiosqlite's smoke tests for functions, hooks,
//! backup, iterdump and extensions (tests/smoke.py), ported with the same
//! expectations, plus what aiosqlite never wrapped: aggregates, window
//! functions, collations, blobs, serialize, limits.

mod common;

use std::future::IntoFuture;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use aiolite::functions::{Aggregate, Context, FunctionFlags, WindowAggregate};
use aiolite::hooks::{Action, AuthAction, AuthContext, Authorization};
use aiolite::rusqlite;
use aiolite::{BackupProgress, Connection, Database, Error, Limit, Value};
use futures_util::TryStreamExt;

use common::scalar;

async fn foo_table(conn: &Connection) {
    conn.execute("create table foo (i integer, k charvar(250))", ())
        .await
        .expect("create");
    conn.execute_many(
        "insert into foo values (?, ?)",
        [(1, "hello"), (2, "world")],
    )
    .await
    .expect("insert");
}

async fn foo_rows(conn: &Connection) -> Vec<(i64, String)> {
    conn.query_map("select * from foo", (), |r| Ok((r.get(0)?, r.get(1)?)))
        .await
        .expect("select")
}

// ----- aiosqlite smoke tests -----

#[tokio::test]
async fn create_function() {
    let conn = Connection::open_in_memory().await.expect("open");
    conn.create_function("no_arg", 0, FunctionFlags::empty(), |_| Ok("no arg"))
        .await
        .expect("no_arg");
    conn.create_function("one_arg", 1, FunctionFlags::empty(), |ctx| {
        Ok(ctx.get::<i64>(0)? * 2)
    })
    .await
    .expect("one_arg");
    let row = conn
        .fetch_one("SELECT no_arg();", ())
        .await
        .expect("no_arg()");
    assert_eq!(row.get::<String, _>(0).expect("text"), "no arg");
    assert_eq!(scalar(&conn, "SELECT one_arg(10);").await, 20);
}

#[tokio::test]
async fn create_function_deterministic_in_an_index() {
    // aiosqlite's expectation holds with Python's default of a trusted schema.
    let trusted = aiolite::ConnectOptions::in_memory()
        .pragma("trusted_schema", "ON")
        .open()
        .await
        .expect("open");
    trusted
        .create_function("one_arg", 1, FunctionFlags::SQLITE_DETERMINISTIC, |ctx| {
            Ok(ctx.get::<i64>(0)? * 2)
        })
        .await
        .expect("register");
    trusted
        .execute("create table foo (id int, bar int)", ())
        .await
        .expect("create");
    trusted
        .execute("create index t on foo(one_arg(bar))", ())
        .await
        .expect("a deterministic function may be used in an index");
    trusted
        .execute("insert into foo values (1, 21)", ())
        .await
        .expect("insert");
    assert_eq!(
        scalar(&trusted, "select id from foo where one_arg(bar) = 42").await,
        1
    );

    // aiolite opens with an untrusted schema: a function the schema calls
    // must also say it is harmless (SQLITE_INNOCUOUS).
    let conn = Connection::open_in_memory().await.expect("open");
    conn.execute("create table foo (id int, bar int)", ())
        .await
        .expect("create");
    conn.create_function("one_arg", 1, FunctionFlags::SQLITE_DETERMINISTIC, |ctx| {
        Ok(ctx.get::<i64>(0)? * 2)
    })
    .await
    .expect("register");
    let err = conn
        .execute("create index t on foo(one_arg(bar))", ())
        .await
        .expect_err("not innocuous");
    assert!(err.to_string().contains("unsafe use of one_arg()"), "{err}");
    conn.create_function(
        "one_arg",
        1,
        FunctionFlags::SQLITE_DETERMINISTIC | FunctionFlags::SQLITE_INNOCUOUS,
        |ctx| Ok(ctx.get::<i64>(0)? * 2),
    )
    .await
    .expect("replace");
    conn.execute("create index t on foo(one_arg(bar))", ())
        .await
        .expect("deterministic and innocuous");

    // Without the deterministic flag SQLite refuses it there.
    conn.create_function("loose", 1, FunctionFlags::SQLITE_INNOCUOUS, |ctx| {
        ctx.get::<i64>(0)
    })
    .await
    .expect("register");
    let err = conn
        .execute("create index u on foo(loose(bar))", ())
        .await
        .expect_err("non-deterministic in an index");
    assert!(err.to_string().contains("non-deterministic"), "{err}");
}

#[tokio::test]
async fn set_progress_handler_aborts() {
    let conn = Connection::open_in_memory().await.expect("open");
    conn.set_progress_handler(1, Some(|| true))
        .await
        .expect("set");
    let err = conn
        .execute("create table test_progress_handler (i int)", ())
        .await
        .expect_err("aborted by the handler");
    assert!(err.is_interrupted(), "{err:?}");
    conn.set_progress_handler(0, None::<fn() -> bool>)
        .await
        .expect("remove");
    conn.execute("create table test_progress_handler (i int)", ())
        .await
        .expect("runs once the handler is gone");
}

#[tokio::test]
async fn progress_handler_is_called_and_chains_with_cancellation() {
    let conn = Connection::open_in_memory().await.expect("open");
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&calls);
    conn.set_progress_handler(
        7,
        Some(move || {
            seen.fetch_add(1, Ordering::Relaxed);
            false
        }),
    )
    .await
    .expect("set");
    assert_eq!(
        scalar(&conn, "WITH RECURSIVE s(value) AS (SELECT 1 UNION ALL SELECT value + 1 FROM s WHERE value < 10000) SELECT count(*) FROM s").await,
        10000
    );
    assert!(calls.load(Ordering::Relaxed) > 100, "the handler ran");

    // aiolite's own handler is still there: a dropped request is stopped.
    let slow = conn.fetch_one(
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c",
        (),
    );
    let timed_out = tokio::time::timeout(std::time::Duration::from_millis(50), slow).await;
    assert!(timed_out.is_err(), "the endless query was still running");
    assert_eq!(scalar(&conn, "SELECT 1").await, 1, "and it was stopped");
}

#[tokio::test]
async fn set_trace_callback() {
    let conn = Connection::open_in_memory().await.expect("open");
    let statements = Arc::new(Mutex::new(Vec::<String>::new()));
    let sink = Arc::clone(&statements);
    conn.set_trace_callback(Some(move |sql: &str| {
        sink.lock().expect("lock").push(sql.to_owned());
    }))
    .await
    .expect("set");
    conn.execute("select 10", ()).await.expect("select");
    conn.fetch_one("select ?", (42,)).await.expect("bound");
    {
        let seen = statements.lock().expect("lock");
        assert!(seen.iter().any(|s| s == "select 10"), "{seen:?}");
        assert!(seen.iter().any(|s| s == "select 42"), "expanded: {seen:?}");
    }
    conn.set_trace_callback(None::<fn(&str)>)
        .await
        .expect("remove");
    conn.execute("select 11", ()).await.expect("select");
    assert!(!statements
        .lock()
        .expect("lock")
        .iter()
        .any(|s| s == "select 11"));
}

#[tokio::test]
async fn trace_callbacks_stay_with_their_connection() {
    let a = Connection::open_in_memory().await.expect("open");
    let b = Connection::open_in_memory().await.expect("open");
    let seen_a = Arc::new(Mutex::new(Vec::<String>::new()));
    let seen_b = Arc::new(Mutex::new(Vec::<String>::new()));
    let (sa, sb) = (Arc::clone(&seen_a), Arc::clone(&seen_b));
    a.set_trace_callback(Some(move |s: &str| {
        sa.lock().expect("lock").push(s.to_owned())
    }))
    .await
    .expect("a");
    b.set_trace_callback(Some(move |s: &str| {
        sb.lock().expect("lock").push(s.to_owned())
    }))
    .await
    .expect("b");
    a.execute("select 'from a'", ()).await.expect("a");
    b.execute("select 'from b'", ()).await.expect("b");
    assert_eq!(*seen_a.lock().expect("lock"), ["select 'from a'"]);
    assert_eq!(*seen_b.lock().expect("lock"), ["select 'from b'"]);
}

fn deny_drops(ctx: AuthContext<'_>) -> Authorization {
    match ctx.action {
        AuthAction::DropTable { .. } => Authorization::Deny,
        _ => Authorization::Allow,
    }
}

#[tokio::test]
async fn authorizer_denies_drop_then_is_removed() {
    let conn = Connection::open_in_memory().await.expect("open");
    conn.execute("create table t (x)", ())
        .await
        .expect("create");
    conn.set_authorizer(Some(deny_drops)).await.expect("set");
    let err = conn.execute("drop table t", ()).await.expect_err("denied");
    assert_eq!(
        err.code(),
        Some(aiolite::ErrorCode::AuthorizationForStatementDenied)
    );
    assert!(err.to_string().contains("not authorized"), "{err}");
    assert_eq!(
        scalar(&conn, "select count(*) from t").await,
        0,
        "reads still allowed"
    );

    conn.set_authorizer(None::<fn(AuthContext<'_>) -> Authorization>)
        .await
        .expect("remove");
    conn.execute("drop table t", ())
        .await
        .expect("allowed again");
}

#[tokio::test]
async fn authorizer_ignore_reads_null() {
    let conn = Connection::open_in_memory().await.expect("open");
    conn.execute_script("create table secrets (id, pin); insert into secrets values (1, 1234);")
        .await
        .expect("setup");
    conn.set_authorizer(Some(|ctx: AuthContext<'_>| match ctx.action {
        AuthAction::Read {
            column_name: "pin", ..
        } => Authorization::Ignore,
        _ => Authorization::Allow,
    }))
    .await
    .expect("set");
    let row = conn
        .fetch_one("select id, pin from secrets", ())
        .await
        .expect("select");
    assert_eq!(row.get::<Value, _>(1).expect("pin"), Value::Null);
}

#[tokio::test]
async fn authorizer_panicking_fails_the_statement() {
    let conn = Connection::open_in_memory().await.expect("open");
    conn.set_authorizer(Some(|ctx: AuthContext<'_>| {
        if let AuthAction::CreateTable { .. } = ctx.action {
            panic!("authorizer exploded");
        }
        Authorization::Allow
    }))
    .await
    .expect("set");
    let err = conn
        .execute("create table t (x)", ())
        .await
        .expect_err("raising authorizer");
    match &err {
        Error::Panic { message } => assert!(message.contains("authorizer exploded"), "{message}"),
        other => panic!("expected a panic error, got {other:?}"),
    }
    assert_eq!(
        scalar(&conn, "select 1").await,
        1,
        "the connection still works"
    );
    let tables = scalar(&conn, "select count(*) from sqlite_master").await;
    assert_eq!(tables, 0, "nothing was created");
}

#[tokio::test]
async fn iterdump() {
    let conn = Connection::open_in_memory().await.expect("open");
    foo_table(&conn).await;
    let lines: Vec<String> = conn.dump().try_collect().await.expect("dump");
    assert_eq!(
        lines,
        [
            "BEGIN TRANSACTION;",
            "CREATE TABLE foo (i integer, k charvar(250));",
            "INSERT INTO \"foo\" VALUES(1,'hello');",
            "INSERT INTO \"foo\" VALUES(2,'world');",
            "COMMIT;",
        ]
    );
}

#[tokio::test]
async fn backup_to_another_connection() {
    let db1 = Connection::open_in_memory().await.expect("open");
    let db2 = Connection::open_in_memory().await.expect("open");
    foo_table(&db1).await;
    let err = db2
        .execute("select * from foo", ())
        .await
        .expect_err("not there yet");
    assert!(err.to_string().contains("no such table: foo"), "{err}");
    let reports = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&reports);
    db1.backup_to(&db2)
        .progress(move |p| sink.lock().expect("lock").push(p))
        .await
        .expect("backup");
    assert_eq!(
        foo_rows(&db2).await,
        [(1, "hello".into()), (2, "world".into())]
    );
    // Everything at once: one report, nothing left.
    let reports = reports.lock().expect("lock");
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0].remaining, 0);
}

#[tokio::test]
async fn backup_to_a_file_read_by_plain_rusqlite() {
    let (_dir, path) = common::temp_db("copy.db");
    let db1 = Connection::open_in_memory().await.expect("open");
    foo_table(&db1).await;
    db1.backup_to_path(&path).await.expect("backup");
    let plain = rusqlite::Connection::open(&path).expect("sqlite3");
    let rows: Vec<(i64, String)> = plain
        .prepare("select * from foo")
        .expect("prepare")
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("query")
        .collect::<rusqlite::Result<_>>()
        .expect("rows");
    assert_eq!(rows, [(1, "hello".into()), (2, "world".into())]);
}

#[tokio::test]
async fn backup_progress_page_by_page() {
    // Python's test_backup.py: two pages, pages=1 gives two reports.
    let src = Connection::open_in_memory().await.expect("open");
    src.execute_script("CREATE TABLE foo (key INTEGER); INSERT INTO foo (key) VALUES (3), (4);")
        .await
        .expect("setup");
    let dst = Connection::open_in_memory().await.expect("open");
    let reports = Arc::new(Mutex::new(Vec::<BackupProgress>::new()));
    let sink = Arc::clone(&reports);
    src.backup_to(&dst)
        .pages_per_step(1)
        .progress(move |p| sink.lock().expect("lock").push(p))
        .await
        .expect("backup");
    let reports = reports.lock().expect("lock").clone();
    assert_eq!(reports.len(), 2, "{reports:?}");
    assert_eq!((reports[0].remaining, reports[0].total), (1, 2));
    assert_eq!((reports[1].remaining, reports[1].total), (0, 2));
    assert_eq!(scalar(&dst, "SELECT sum(key) FROM foo").await, 7);
}

#[tokio::test]
async fn backup_refusals() {
    let db = Connection::open_in_memory().await.expect("open");
    let err = db.backup_to(&db).await.expect_err("into itself");
    assert!(matches!(err, Error::Options(_)), "{err:?}");

    let other = Connection::open_in_memory().await.expect("open");
    let err = db
        .backup_to(&other)
        .schema("nope")
        .await
        .expect_err("unknown schema");
    assert!(err.to_string().contains("nope"), "{err}");

    let closed = Connection::open_in_memory().await.expect("open");
    closed.close().await.expect("close");
    let err = closed.backup_to(&other).await.expect_err("closed source");
    assert!(matches!(err, Error::Closed), "{err:?}");

    let err = db
        .backup_to(&other)
        .progress(|_| panic!("progress exploded"))
        .await
        .expect_err("panicking progress");
    assert!(matches!(err, Error::Panic { .. }), "{err:?}");
    assert_eq!(scalar(&other, "SELECT 1").await, 1, "target still works");
    assert_eq!(scalar(&db, "SELECT 1").await, 1, "source still works");
}

#[tokio::test]
async fn opposite_backups_at_once_do_not_deadlock() {
    let a = Connection::open_in_memory().await.expect("open");
    let b = Connection::open_in_memory().await.expect("open");
    for c in [&a, &b] {
        c.execute_script(
            "CREATE TABLE t(x); INSERT INTO t WITH RECURSIVE s(value) AS (SELECT 1 UNION ALL SELECT value + 1 FROM s WHERE value < 400) SELECT randomblob(500) FROM s;",
        )
        .await
        .expect("fill");
    }
    let run = async {
        tokio::join!(
            a.backup_to(&b).pages_per_step(1).into_future(),
            b.backup_to(&a).pages_per_step(1).into_future()
        )
    };
    let (x, y) = tokio::time::timeout(std::time::Duration::from_secs(20), run)
        .await
        .expect("no deadlock");
    // Overlapping, the second to start is refused (SQLite would find the
    // database locked at each step); one after the other, both succeed.
    for r in [&x, &y] {
        if let Err(e) = r {
            assert!(
                matches!(e, Error::Options(m) if m.contains("backup in progress")),
                "{e:?}"
            );
        }
    }
    assert!(x.is_ok() || y.is_ok(), "{x:?} {y:?}");
    assert_eq!(scalar(&a, "SELECT count(*) FROM t").await, 400);
    assert_eq!(scalar(&b, "SELECT count(*) FROM t").await, 400);
}

#[tokio::test]
async fn restore_and_vacuum_into() {
    let (dir, path) = common::temp_db("src.db");
    let src = Connection::open(&path).await.expect("open");
    foo_table(&src).await;
    let vacuumed = dir.path().join("vacuumed.db");
    src.vacuum_into(&vacuumed).await.expect("vacuum into");
    let err = src
        .vacuum_into(&vacuumed)
        .await
        .expect_err("the file exists now");
    assert!(
        err.to_string().contains("output file already exists"),
        "{err}"
    );

    let restored = Connection::open_in_memory().await.expect("open");
    restored.restore_from(&vacuumed).await.expect("restore");
    assert_eq!(foo_rows(&restored).await, foo_rows(&src).await);

    let err = restored
        .restore_from(dir.path().join("missing.db"))
        .await
        .expect_err("no such file");
    assert!(matches!(err, Error::Open { .. }), "{err:?}");
    assert!(!dir.path().join("missing.db").exists(), "not created");
}

#[cfg(feature = "load_extension")]
#[tokio::test]
#[allow(unsafe_code)]
async fn enable_load_extension() {
    let conn = Connection::open_in_memory().await.expect("open");
    // SAFETY: no library is loaded: the paths below do not exist.
    let refused = unsafe { conn.load_extension("./no-such-extension", None) }.await;
    let err = refused.expect_err("not enabled");
    assert!(err.to_string().contains("not authorized"), "{err}");

    // SAFETY: as above; loading stays enabled only for this test connection.
    unsafe { conn.enable_load_extension(true) }
        .await
        .expect("enable");
    // SAFETY: as above.
    let missing = unsafe { conn.load_extension("./no-such-extension", None) }.await;
    let err = missing.expect_err("no such library");
    assert!(!err.to_string().contains("not authorized"), "{err}");
    // SAFETY: disabling is always sound.
    unsafe { conn.enable_load_extension(false) }
        .await
        .expect("disable");
}

// ----- beyond aiosqlite -----

/// `sum()` written as a user window function.
struct MySum;

impl Aggregate<i64, i64> for MySum {
    fn init(&self, _: &mut Context<'_>) -> rusqlite::Result<i64> {
        Ok(0)
    }
    fn step(&self, ctx: &mut Context<'_>, acc: &mut i64) -> rusqlite::Result<()> {
        *acc += ctx.get::<i64>(0)?;
        Ok(())
    }
    fn finalize(&self, _: &mut Context<'_>, acc: Option<i64>) -> rusqlite::Result<i64> {
        Ok(acc.unwrap_or(0))
    }
}

impl WindowAggregate<i64, i64> for MySum {
    fn value(&self, acc: Option<&mut i64>) -> rusqlite::Result<i64> {
        Ok(acc.map_or(0, |a| *a))
    }
    fn inverse(&self, ctx: &mut Context<'_>, acc: &mut i64) -> rusqlite::Result<()> {
        *acc -= ctx.get::<i64>(0)?;
        Ok(())
    }
}

/// `group_concat(x, ',')` as a plain aggregate.
struct Joined;

impl Aggregate<Vec<String>, Option<String>> for Joined {
    fn init(&self, _: &mut Context<'_>) -> rusqlite::Result<Vec<String>> {
        Ok(Vec::new())
    }
    fn step(&self, ctx: &mut Context<'_>, acc: &mut Vec<String>) -> rusqlite::Result<()> {
        acc.push(ctx.get::<String>(0)?);
        Ok(())
    }
    fn finalize(
        &self,
        _: &mut Context<'_>,
        acc: Option<Vec<String>>,
    ) -> rusqlite::Result<Option<String>> {
        Ok(acc.map(|a| a.join(",")))
    }
}

async fn numbers(conn: &Connection) {
    conn.execute_script(
        "CREATE TABLE n(g TEXT, v INTEGER);
         INSERT INTO n WITH RECURSIVE s(value) AS (SELECT 1 UNION ALL SELECT value + 1 FROM s WHERE value < 300) SELECT char(97 + value % 3), (value * 7919) % 1000 - 500 FROM s;",
    )
    .await
    .expect("numbers");
}

#[tokio::test]
async fn aggregate_and_window_match_the_builtins() {
    let conn = Connection::open_in_memory().await.expect("open");
    numbers(&conn).await;
    conn.create_window_function("mysum", 1, FunctionFlags::SQLITE_DETERMINISTIC, MySum)
        .await
        .expect("window");
    conn.create_aggregate("joined", 1, FunctionFlags::SQLITE_DETERMINISTIC, Joined)
        .await
        .expect("aggregate");

    let pairs = |sql: &'static str| {
        let conn = conn.clone();
        async move {
            conn.query_map(sql, (), |r| {
                Ok((r.get::<_, Value>(0)?, r.get::<_, Value>(1)?))
            })
            .await
            .expect(sql)
        }
    };
    // As an aggregate, per group.
    let mine = pairs("SELECT g, mysum(v) FROM n GROUP BY g ORDER BY g").await;
    let builtin = pairs("SELECT g, sum(v) FROM n GROUP BY g ORDER BY g").await;
    assert_eq!(mine, builtin);
    // As a window: running sums and a sliding frame (which calls inverse).
    for frame in [
        "ORDER BY rowid",
        "PARTITION BY g ORDER BY rowid ROWS BETWEEN 3 PRECEDING AND 1 FOLLOWING",
        "ORDER BY v, rowid ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING",
    ] {
        let sql_mine = format!("SELECT rowid, mysum(v) OVER ({frame}) FROM n ORDER BY rowid");
        let sql_builtin = format!("SELECT rowid, sum(v) OVER ({frame}) FROM n ORDER BY rowid");
        let mine = conn
            .query_map(sql_mine, (), |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))
            })
            .await
            .expect("mine");
        let builtin = conn
            .query_map(sql_builtin, (), |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))
            })
            .await
            .expect("builtin");
        assert_eq!(mine.len(), 300);
        assert_eq!(mine, builtin, "{frame}");
    }
    // On no rows: NULL for group_concat, the aggregate's own empty value.
    let mine = pairs("SELECT joined(g), 1 FROM n WHERE v > 10000").await;
    let builtin = pairs("SELECT group_concat(g, ','), 1 FROM n WHERE v > 10000").await;
    assert_eq!(mine, builtin);
    let mine =
        pairs("SELECT joined(g), count(*) FROM (SELECT g FROM n ORDER BY rowid LIMIT 5)").await;
    let builtin = pairs(
        "SELECT group_concat(g, ','), count(*) FROM (SELECT g FROM n ORDER BY rowid LIMIT 5)",
    )
    .await;
    assert_eq!(mine, builtin);

    conn.remove_function("mysum", 1).await.expect("remove");
    let err = conn
        .execute("SELECT mysum(v) FROM n", ())
        .await
        .expect_err("removed");
    assert!(err.to_string().contains("no such function"), "{err}");
}

#[tokio::test]
async fn function_errors_and_arity() {
    let conn = Connection::open_in_memory().await.expect("open");
    conn.create_function("fails", 1, FunctionFlags::empty(), |ctx| {
        let x: i64 = ctx.get(0)?;
        if x < 0 {
            return Err(rusqlite::Error::UserFunctionError("negative input".into()));
        }
        Ok(x)
    })
    .await
    .expect("register");
    let err = conn
        .execute("SELECT fails(-1)", ())
        .await
        .expect_err("user error");
    assert!(err.to_string().contains("negative input"), "{err}");
    let err = conn
        .execute("SELECT fails('text')", ())
        .await
        .expect_err("wrong type");
    assert!(
        err.to_string().contains("Invalid function parameter type"),
        "{err}"
    );
    let err = conn
        .execute("SELECT fails(1, 2)", ())
        .await
        .expect_err("wrong arity");
    assert!(
        err.to_string().contains("wrong number of arguments"),
        "{err}"
    );
    let err = conn
        .create_function("bad", 200, FunctionFlags::empty(), |_| Ok(1))
        .await
        .expect_err("arity out of range");
    assert!(matches!(err, Error::Options(_)), "{err:?}");

    conn.create_function("variadic", -1, FunctionFlags::SQLITE_INNOCUOUS, |ctx| {
        Ok(ctx.len() as i64)
    })
    .await
    .expect("variadic");
    assert_eq!(scalar(&conn, "SELECT variadic(1, 2, 3, 4)").await, 4);
    assert_eq!(scalar(&conn, "SELECT variadic()").await, 0);

    conn.create_function("direct", 0, FunctionFlags::SQLITE_DIRECTONLY, |_| Ok(1))
        .await
        .expect("direct-only");
    assert_eq!(scalar(&conn, "SELECT direct()").await, 1);
    conn.execute("CREATE VIEW v AS SELECT direct() AS d", ())
        .await
        .expect("view");
    let err = conn
        .execute("SELECT d FROM v", ())
        .await
        .expect_err("direct-only from a view");
    assert!(err.to_string().contains("unsafe use of direct()"), "{err}");
}

#[tokio::test]
async fn collations() {
    let conn = Connection::open_in_memory().await.expect("open");
    conn.create_collation("reverse", |a, b| b.cmp(a))
        .await
        .expect("register");
    conn.execute_script("CREATE TABLE w(x TEXT); INSERT INTO w VALUES ('b'), ('a'), ('c');")
        .await
        .expect("setup");
    let order: Vec<String> = conn
        .query_map("SELECT x FROM w ORDER BY x COLLATE reverse", (), |r| {
            r.get(0)
        })
        .await
        .expect("order");
    assert_eq!(order, ["c", "b", "a"]);
    conn.remove_collation("reverse").await.expect("remove");
    let err = conn
        .execute("SELECT x FROM w ORDER BY x COLLATE reverse", ())
        .await
        .expect_err("removed");
    assert!(err.to_string().contains("no such collation"), "{err}");
}

#[tokio::test]
async fn update_commit_and_rollback_hooks() {
    let conn = Connection::open_in_memory().await.expect("open");
    conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, x)", ())
        .await
        .expect("create");
    let events = Arc::new(Mutex::new(Vec::<String>::new()));
    let (u, c, r) = (
        Arc::clone(&events),
        Arc::clone(&events),
        Arc::clone(&events),
    );
    conn.update_hook(Some(
        move |action: Action, db: &str, table: &str, rowid: i64| {
            u.lock()
                .expect("lock")
                .push(format!("{action:?} {db}.{table} {rowid}"));
        },
    ))
    .await
    .expect("update hook");
    conn.commit_hook(Some(move || {
        c.lock().expect("lock").push("commit".into());
        false
    }))
    .await
    .expect("commit hook");
    conn.rollback_hook(Some(move || {
        r.lock().expect("lock").push("rollback".into())
    }))
    .await
    .expect("rollback hook");

    conn.execute("INSERT INTO t(x) VALUES ('a')", ())
        .await
        .expect("insert");
    let tx = conn.begin().await.expect("begin");
    tx.execute("UPDATE t SET x = 'b' WHERE id = 1", ())
        .await
        .expect("update");
    tx.execute("DELETE FROM t WHERE id = 1", ())
        .await
        .expect("delete");
    tx.rollback().await.expect("rollback");
    assert_eq!(
        *events.lock().expect("lock"),
        [
            "SQLITE_INSERT main.t 1",
            "commit",
            "SQLITE_UPDATE main.t 1",
            "SQLITE_DELETE main.t 1",
            "rollback",
        ]
    );

    // A commit hook returning true turns the commit into a rollback.
    conn.commit_hook(Some(|| true)).await.expect("veto");
    let err = conn
        .execute("INSERT INTO t(x) VALUES ('vetoed')", ())
        .await
        .expect_err("vetoed");
    assert!(err.to_string().contains("constraint failed"), "{err}");
    conn.commit_hook(None::<fn() -> bool>)
        .await
        .expect("remove");
    conn.update_hook(None::<fn(Action, &str, &str, i64)>)
        .await
        .expect("remove");
    conn.rollback_hook(None::<fn()>).await.expect("remove");
    assert_eq!(scalar(&conn, "SELECT count(*) FROM t").await, 1);
}

/// Each kind of callback panics once; the statement that triggered it fails
/// with `Error::Panic`, its writes are not kept, the connection goes on.
#[tokio::test]
async fn panics_in_callbacks_fail_only_their_statement() {
    let conn = Connection::open_in_memory().await.expect("open");
    conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, s TEXT)", ())
        .await
        .expect("create");
    conn.execute("INSERT INTO t(s) VALUES ('x'), ('y')", ())
        .await
        .expect("seed");

    fn expect_panic(result: aiolite::Result<usize>, what: &str) {
        match result {
            Err(Error::Panic { message }) => {
                assert!(message.contains("boom"), "{what}: {message}");
            }
            other => panic!("{what}: expected Error::Panic, got {other:?}"),
        }
    }

    conn.create_function(
        "explode",
        1,
        FunctionFlags::empty(),
        |_| -> rusqlite::Result<i64> { panic!("boom") },
    )
    .await
    .expect("function");
    expect_panic(
        conn.execute("INSERT INTO t(s) SELECT explode(s) FROM t", ())
            .await,
        "scalar function",
    );

    struct Exploding;
    impl Aggregate<i64, i64> for Exploding {
        fn init(&self, _: &mut Context<'_>) -> rusqlite::Result<i64> {
            Ok(0)
        }
        fn step(&self, _: &mut Context<'_>, _: &mut i64) -> rusqlite::Result<()> {
            panic!("boom in step")
        }
        fn finalize(&self, _: &mut Context<'_>, _: Option<i64>) -> rusqlite::Result<i64> {
            Ok(0)
        }
    }
    conn.create_aggregate("explodes", 1, FunctionFlags::empty(), Exploding)
        .await
        .expect("aggregate");
    expect_panic(
        conn.execute("SELECT explodes(id) FROM t", ()).await,
        "aggregate",
    );

    conn.create_collation("explosive", |_, _| panic!("boom in compare"))
        .await
        .expect("collation");
    expect_panic(
        conn.execute("SELECT s FROM t ORDER BY s COLLATE explosive", ())
            .await,
        "collation",
    );
    // A write through a panicking collation is rolled back.
    expect_panic(
        conn.execute(
            "INSERT INTO t(s) SELECT s FROM t ORDER BY s COLLATE explosive",
            (),
        )
        .await,
        "collation in a write",
    );

    conn.update_hook(Some(|_: Action, _: &str, _: &str, _: i64| {
        panic!("boom in update hook")
    }))
    .await
    .expect("update hook");
    expect_panic(
        conn.execute("INSERT INTO t(s) VALUES ('z')", ()).await,
        "update hook",
    );
    conn.update_hook(None::<fn(Action, &str, &str, i64)>)
        .await
        .expect("remove");

    conn.commit_hook(Some(|| panic!("boom in commit hook")))
        .await
        .expect("commit hook");
    expect_panic(
        conn.execute("INSERT INTO t(s) VALUES ('z')", ()).await,
        "commit hook",
    );
    conn.commit_hook(None::<fn() -> bool>)
        .await
        .expect("remove");

    conn.rollback_hook(Some(|| panic!("boom in rollback hook")))
        .await
        .expect("rollback hook");
    let tx = conn.begin().await.expect("begin");
    tx.execute("INSERT INTO t(s) VALUES ('rolled back')", ())
        .await
        .expect("insert");
    let err = tx.rollback().await.expect_err("hook panicked");
    assert!(matches!(err, Error::Panic { .. }), "{err:?}");
    conn.rollback_hook(None::<fn()>).await.expect("remove");

    conn.set_progress_handler(1, Some(|| panic!("boom in progress")))
        .await
        .expect("progress");
    expect_panic(
        conn.execute("INSERT INTO t(s) VALUES ('p')", ()).await,
        "progress handler",
    );
    conn.set_progress_handler(0, None::<fn() -> bool>)
        .await
        .expect("remove");

    conn.set_trace_callback(Some(|_: &str| panic!("boom in trace")))
        .await
        .expect("trace");
    expect_panic(
        conn.execute("INSERT INTO t(s) VALUES ('t')", ()).await,
        "trace callback",
    );
    conn.set_trace_callback(None::<fn(&str)>)
        .await
        .expect("remove");

    // Nothing any failed statement wrote was kept; the connection works.
    let rows: Vec<String> = conn
        .query_map("SELECT s FROM t ORDER BY id", (), |r| r.get(0))
        .await
        .expect("rows");
    assert_eq!(rows, ["x", "y"]);
    assert!(!conn.in_transaction().await.expect("state"));
}

#[tokio::test]
async fn pool_registers_on_every_connection() {
    let (_dir, path) = common::temp_db("pool.db");
    let db = Database::builder(&path)
        .readers(3)
        .open()
        .await
        .expect("open");
    db.create_function("twice", 1, FunctionFlags::SQLITE_DETERMINISTIC, |ctx| {
        Ok(ctx.get::<i64>(0)? * 2)
    })
    .await
    .expect("function");
    db.create_window_function("mysum", 1, FunctionFlags::SQLITE_DETERMINISTIC, MySum)
        .await
        .expect("window");
    db.create_collation("reverse", |a, b| b.cmp(a))
        .await
        .expect("collation");
    db.execute("CREATE TABLE t(x INTEGER)", ())
        .await
        .expect("create");
    db.execute("INSERT INTO t WITH RECURSIVE s(value) AS (SELECT 1 UNION ALL SELECT value + 1 FROM s WHERE value < 10) SELECT value FROM s", ())
        .await
        .expect("insert");
    // The writer and each reader (least busy first, so a burst reaches all).
    let mut handles = Vec::new();
    for _ in 0..16 {
        let db = db.clone();
        handles.push(tokio::spawn(async move {
            db.fetch_one("SELECT sum(twice(x)), mysum(x) FROM t", ())
                .await
                .map(|r| (r.get::<i64, _>(0), r.get::<i64, _>(1)))
        }));
    }
    for h in handles {
        let (a, b) = h.await.expect("task").expect("query");
        assert_eq!((a.expect("a"), b.expect("b")), (110, 55));
    }
    for conn in [
        db.on_writer(),
        db.on_reader(),
        db.on_reader(),
        db.on_reader(),
    ] {
        assert_eq!(scalar(conn, "SELECT twice(21)").await, 42);
        let first: String = conn
            .fetch_one(
                "SELECT column1 FROM (VALUES ('a'), ('b')) ORDER BY 1 COLLATE reverse",
                (),
            )
            .await
            .expect("collation")
            .get(0)
            .expect("text");
        assert_eq!(first, "b");
    }
    db.remove_function("twice", 1).await.expect("remove");
    for conn in [
        db.on_writer(),
        db.on_reader(),
        db.on_reader(),
        db.on_reader(),
    ] {
        assert!(conn.execute("SELECT twice(1)", ()).await.is_err());
    }
    db.close().await.expect("close");
}

#[tokio::test]
async fn blob_io() {
    let conn = Connection::open_in_memory().await.expect("open");
    conn.execute_script(
        "CREATE TABLE files(id INTEGER PRIMARY KEY, data BLOB);
         INSERT INTO files VALUES (1, zeroblob(1024)), (2, x'0102030405');",
    )
    .await
    .expect("setup");
    let mut blob = conn
        .blob_open("files", "data", 1, false)
        .await
        .expect("open");
    assert_eq!(blob.len(), 1024);
    blob.write_at(1000, b"hello".to_vec()).await.expect("write");
    assert_eq!(blob.read_at(998, 8).await.expect("read"), b"\0\0hello\0");
    let err = blob
        .write_at(1022, b"too long".to_vec())
        .await
        .expect_err("does not grow");
    assert!(matches!(err, Error::Options(_)), "{err:?}");
    assert!(
        blob.read_at(usize::MAX, 2).await.is_err(),
        "overflowing range"
    );

    blob.reopen(2).await.expect("reopen");
    assert_eq!(blob.len(), 5);
    assert_eq!(blob.read_at(0, 5).await.expect("read"), [1, 2, 3, 4, 5]);
    assert!(blob.reopen(99).await.is_err(), "no such row");
    blob.close().await.expect("close");

    let stored: Vec<u8> = conn
        .fetch_one("SELECT substr(data, 1001, 5) FROM files WHERE id = 1", ())
        .await
        .expect("select")
        .get(0)
        .expect("bytes");
    assert_eq!(stored, b"hello");

    let read_only = conn
        .blob_open("files", "data", 2, true)
        .await
        .expect("open");
    let err = read_only
        .write_at(0, vec![9])
        .await
        .expect_err("read-only handle");
    assert!(
        err.to_string().contains("readonly") || err.to_string().contains("read-only"),
        "{err}"
    );
    // Changing the row expires the handle.
    conn.execute("UPDATE files SET data = x'00' WHERE id = 2", ())
        .await
        .expect("update");
    assert!(read_only.read_at(0, 1).await.is_err(), "expired handle");
    drop(read_only);
    assert!(conn.blob_open("files", "nope", 1, true).await.is_err());
    assert!(conn.blob_open("files", "data", 42, true).await.is_err());
    assert_eq!(scalar(&conn, "SELECT count(*) FROM files").await, 2);
}

#[tokio::test]
async fn serialize_and_deserialize() {
    let src = Connection::open_in_memory().await.expect("open");
    foo_table(&src).await;
    let image = src.serialize().await.expect("serialize");
    assert_eq!(&image[..16], b"SQLite format 3\0");

    let copy = Connection::open_in_memory().await.expect("open");
    copy.deserialize(image).await.expect("deserialize");
    assert_eq!(foo_rows(&copy).await, foo_rows(&src).await);
    copy.execute("INSERT INTO foo VALUES (3, 'writable')", ())
        .await
        .expect("the image is writable");

    let junk = Connection::open_in_memory().await.expect("open");
    junk.deserialize(b"definitely not a database, but long enough to look at".to_vec())
        .await
        .expect("accepted as bytes");
    let err = junk
        .execute("SELECT * FROM sqlite_master", ())
        .await
        .expect_err("not a database");
    assert!(err.to_string().contains("not a database"), "{err}");

    let err = copy.deserialize(Vec::new()).await.expect_err("empty image");
    assert!(matches!(err, Error::Options(_)), "{err:?}");
    let empty = Connection::open_in_memory().await.expect("open");
    let image = empty
        .serialize()
        .await
        .expect("serialize an empty database");
    copy.deserialize(image).await.expect("an empty database");
    assert_eq!(scalar(&copy, "SELECT count(*) FROM sqlite_master").await, 0);
}

#[tokio::test]
async fn limits() {
    let conn = Connection::open_in_memory().await.expect("open");
    let before = conn
        .set_limit(Limit::SQLITE_LIMIT_LENGTH, 100)
        .await
        .expect("set");
    assert!(before > 100);
    assert_eq!(
        conn.limit(Limit::SQLITE_LIMIT_LENGTH).await.expect("get"),
        100
    );
    let err = conn
        .execute("SELECT zeroblob(1000)", ())
        .await
        .expect_err("over the limit");
    assert!(err.to_string().contains("too big"), "{err}");
    conn.set_limit(Limit::SQLITE_LIMIT_LENGTH, before)
        .await
        .expect("restore");
    conn.execute("SELECT zeroblob(1000)", ())
        .await
        .expect("fits");
}
