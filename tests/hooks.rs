//! Hooks and callbacks: progress handler, trace callback, authorizer, the
//! update/commit/rollback hooks, and a panic in any of them.

mod common;
use aiolite::functions::{Aggregate, Context, FunctionFlags};
use aiolite::hooks::{Action, AuthAction, AuthContext, Authorization};
use aiolite::rusqlite;
use aiolite::{Connection, Database, Error, Value};
use common::scalar;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

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
    assert_eq!(row.get::<_, Value>(1).expect("pin"), Value::Null);
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
        .fetch_map("SELECT s FROM t ORDER BY id", (), |r| r.get(0))
        .await
        .expect("rows");
    assert_eq!(rows, ["x", "y"]);
    assert!(!conn.in_transaction().await.expect("state"));
}

/// Every callback can be removed without naming a closure type
/// (`set_authorizer(None::<fn(..)>)` was the only way).
#[tokio::test]
async fn callbacks_are_cleared_without_a_type() {
    for pool in [false, true] {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Database::open(dir.path().join("h.db")).await.expect("open");
        let conn = Connection::open_in_memory().await.expect("open");
        let updates = Arc::new(AtomicUsize::new(0));
        let seen = Arc::clone(&updates);
        macro_rules! on_both {
            ($call:ident $(, $arg:expr)*) => {
                if pool {
                    db.$call($($arg),*).await.expect(stringify!($call));
                } else {
                    conn.$call($($arg),*).await.expect(stringify!($call));
                }
            };
        }
        let target = if pool {
            db.writer().clone()
        } else {
            conn.clone()
        };
        let target = || &target;
        target()
            .execute("CREATE TABLE t(x)", ())
            .await
            .expect("table");
        on_both!(set_authorizer, Some(deny_drops));
        on_both!(
            update_hook,
            Some(move |_: Action, _: &str, _: &str, _: i64| {
                seen.fetch_add(1, Ordering::Relaxed);
            })
        );
        on_both!(set_trace_callback, Some(|_: &str| {}));
        on_both!(set_progress_handler, 1000, Some(|| false));
        on_both!(commit_hook, Some(|| false));
        on_both!(rollback_hook, Some(|| {}));
        target()
            .execute("INSERT INTO t VALUES (1)", ())
            .await
            .expect("insert");
        assert_eq!(updates.load(Ordering::Relaxed), 1);
        assert!(
            target().execute("DROP TABLE t", ()).await.is_err(),
            "denied"
        );
        on_both!(clear_authorizer);
        on_both!(clear_update_hook);
        on_both!(clear_trace_callback);
        on_both!(clear_progress_handler);
        on_both!(clear_commit_hook);
        on_both!(clear_rollback_hook);
        target()
            .execute("INSERT INTO t VALUES (2)", ())
            .await
            .expect("insert");
        assert_eq!(
            updates.load(Ordering::Relaxed),
            1,
            "the update hook is gone"
        );
        target()
            .execute("DROP TABLE t", ())
            .await
            .expect("allowed again");
        db.close().await.expect("close");
        conn.close().await.expect("close");
    }
}
