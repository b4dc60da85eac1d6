//! User functions, aggregates, window functions and collations (aiosqlite's
//! smoke tests for create_function, ported with the same expectations, and
//! what aiosqlite never wrapped), on a connection and on every connection of
//! a pool.

mod common;
use aiolite::functions::{Aggregate, Context, FunctionFlags, WindowAggregate};
use aiolite::rusqlite;
use aiolite::{Connection, Database, Error, Value};
use common::scalar;

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
    assert_eq!(row.get::<_, String>(0).expect("text"), "no arg");
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
            conn.fetch_map(sql, (), |r| {
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
            .fetch_map(sql_mine, (), |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))
            })
            .await
            .expect("mine");
        let builtin = conn
            .fetch_map(sql_builtin, (), |r| {
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
    assert!(matches!(err, Error::Misuse(_)), "{err:?}");

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
        .fetch_map("SELECT x FROM w ORDER BY x COLLATE reverse", (), |r| {
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
                .map(|r| (r.get::<_, i64>(0), r.get::<_, i64>(1)))
        }));
    }
    for h in handles {
        let (a, b) = h.await.expect("task").expect("query");
        assert_eq!((a.expect("a"), b.expect("b")), (110, 55));
    }
    for conn in [db.writer(), db.reader(), db.reader(), db.reader()] {
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
    for conn in [db.writer(), db.reader(), db.reader(), db.reader()] {
        assert!(conn.execute("SELECT twice(1)", ()).await.is_err());
    }
    db.close().await.expect("close");
}
