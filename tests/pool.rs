//! `Database`: routing, guard rails, leased transactions, savepoints.

mod common;

use std::time::Duration;

use aiolite::{ConnectOptions, Database, Error, Synchronous};
use futures_util::StreamExt;

async fn pool() -> (tempfile::TempDir, Database) {
    let (dir, path) = common::temp_db("pool.db");
    let db = Database::builder(&path)
        .readers(2)
        .options(ConnectOptions::new(&path).synchronous(Synchronous::Normal))
        .open()
        .await
        .expect("open");
    db.execute_script(
        "CREATE TABLE t(id INTEGER PRIMARY KEY, v INTEGER);
         CREATE TABLE c(id INTEGER PRIMARY KEY, v INTEGER NOT NULL);
         INSERT INTO c VALUES (1, 0);",
    )
    .await
    .expect("schema");
    (dir, db)
}

/// Which worker thread ran the statement.
async fn thread_of(db: &Database, sql: &'static str) -> String {
    let names = db
        .fetch_map(sql, (), |_| {
            Ok(std::thread::current().name().unwrap_or("").to_owned())
        })
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    names.into_iter().next().expect("one row")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_go_to_readers_writes_to_the_writer() {
    let (_dir, db) = pool().await;
    assert!(thread_of(&db, "SELECT v FROM c")
        .await
        .starts_with("aiolite-reader-"));
    assert_eq!(
        thread_of(&db, "UPDATE c SET v = v RETURNING v").await,
        "aiolite-writer"
    );
    assert_eq!(
        thread_of(&db, "INSERT INTO t(v) VALUES (1) RETURNING id").await,
        "aiolite-writer"
    );
    // Streams run on readers too.
    let mut s = db.stream("SELECT v FROM c", ());
    assert_eq!(
        s.next()
            .await
            .expect("row")
            .expect("ok")
            .get::<_, i64>(0)
            .expect("v"),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guard_rail_statements_go_to_the_writer() {
    let (_dir, db) = pool().await;
    for sql in [
        "PRAGMA user_version",
        "SELECT last_insert_rowid()",
        "SELECT changes()",
        "SELECT total_changes()",
    ] {
        assert_eq!(thread_of(&db, sql).await, "aiolite-writer", "{sql}");
    }
    // On a reader these would report the reader's own state (0).
    let id = db
        .execute_insert("INSERT INTO t(v) VALUES (5)", ())
        .await
        .expect("insert");
    assert_eq!(common::scalar(db.writer(), "SELECT 1").await, 1);
    let rowid: i64 = db
        .fetch_one("SELECT last_insert_rowid()", ())
        .await
        .expect("rowid")
        .get(0)
        .expect("int");
    assert_eq!(rowid, id);
    let changes: i64 = db
        .fetch_one("SELECT total_changes()", ())
        .await
        .expect("changes")
        .get(0)
        .expect("int");
    assert!(changes >= 2, "{changes}");
    // ATTACH changes the connection it runs on: the writer.
    db.execute("ATTACH ':memory:' AS aux", ())
        .await
        .expect("attach");
    let names: Vec<String> = db
        .writer()
        .fetch_map("SELECT name FROM pragma_database_list", (), |r| r.get(0))
        .await
        .expect("list");
    assert!(names.iter().any(|n| n == "aux"), "{names:?}");
    db.execute("DETACH aux", ()).await.expect("detach");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_left_open_outside_a_lease_is_rolled_back() {
    let (_dir, db) = pool().await;
    // Sent through the pool, BEGIN is refused (it would be rolled back right
    // after the request): issue #16.
    let begin = db.execute("BEGIN", ()).await;
    assert!(
        matches!(begin, Err(Error::TransactionControl(_))),
        "{begin:?}"
    );
    assert!(!db.writer().in_transaction().await.expect("state"));
    // It went to the writer (and was rolled back there), not to a reader:
    // `reader()` rotates, so these calls visit both readers.
    for _ in 0..4 {
        assert!(!db.reader().in_transaction().await.expect("state"));
    }
    let r: Result<(), Error> = db
        .write(|c| {
            c.execute_batch("BEGIN; INSERT INTO t(v) VALUES (99);")?;
            Ok(())
        })
        .await;
    r.expect("write");
    assert!(!db.writer().in_transaction().await.expect("state"));
    assert_eq!(
        common::scalar(db.writer(), "SELECT count(*) FROM t WHERE v = 99").await,
        0,
        "the stray transaction's insert was rolled back"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_read_their_writes_and_others_do_not() {
    let (_dir, db) = pool().await;
    let tx = db.begin().await.expect("begin");
    tx.execute("UPDATE c SET v = 10 WHERE id = 1", ())
        .await
        .expect("write");
    assert_eq!(
        common::scalar_in(&tx, "SELECT v FROM c WHERE id = 1").await,
        10,
        "the transaction reads its own write"
    );
    // Another task reads the committed state from a reader, without waiting.
    // (This task holds the transaction: a read through the pool from here is
    // refused, tests/pool_semantics.rs.)
    let other = db.clone();
    let outside = tokio::time::timeout(
        Duration::from_secs(2),
        tokio::spawn(async move { other.fetch_one("SELECT v FROM c WHERE id = 1", ()).await }),
    )
    .await
    .expect("reads are not blocked by the write transaction")
    .expect("join")
    .expect("read");
    assert_eq!(outside.get::<_, i64>(0).expect("v"), 0);
    tx.commit().await.expect("commit");
    assert_eq!(
        common::scalar(db.reader(), "SELECT v FROM c WHERE id = 1").await,
        10
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_sent_to_a_reader_is_a_clear_error() {
    let (_dir, db) = pool().await;
    let err = db
        .reader()
        .execute("UPDATE c SET v = 1", ())
        .await
        .expect_err("readers are query_only");
    assert!(err.to_string().contains("readonly"), "{err}");
    let err = db
        .read(|c| Ok::<_, Error>(c.execute("DELETE FROM c", [])?))
        .await
        .expect_err("read() is a reader");
    assert!(err.to_string().contains("readonly"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_tables_and_temp_tables_reach_the_writer() {
    let (_dir, db) = pool().await;
    db.execute("CREATE TEMP TABLE scratch(x)", ())
        .await
        .expect("temp");
    db.execute("INSERT INTO scratch VALUES (1)", ())
        .await
        .expect("insert");
    // Readers cannot see the writer's TEMP table; the query still works.
    assert_eq!(
        db.fetch_one("SELECT count(*) FROM scratch", ())
            .await
            .expect("temp read")
            .get::<_, i64>(0)
            .expect("int"),
        1
    );
    let err = db
        .fetch_all("SELECT * FROM nowhere", ())
        .await
        .expect_err("no such table");
    assert!(err.to_string().contains("no such table: nowhere"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn savepoints_nest_release_and_roll_back() {
    let (_dir, db) = pool().await;
    let mut tx = db.begin().await.expect("begin");
    tx.execute("INSERT INTO t(v) VALUES (1)", ())
        .await
        .expect("1");
    {
        let mut sp = tx.savepoint().await.expect("sp");
        sp.execute("INSERT INTO t(v) VALUES (2)", ())
            .await
            .expect("2");
        {
            let inner = sp.savepoint().await.expect("inner");
            inner
                .execute("INSERT INTO t(v) VALUES (3)", ())
                .await
                .expect("3");
            inner.rollback().await.expect("rollback inner");
        }
        {
            let dropped = sp.savepoint().await.expect("dropped");
            dropped
                .execute("INSERT INTO t(v) VALUES (4)", ())
                .await
                .expect("4");
            // dropped without release: undone before the parent's next statement
        }
        sp.execute("INSERT INTO t(v) VALUES (5)", ())
            .await
            .expect("5");
        sp.release().await.expect("release");
    }
    {
        let sp = tx.savepoint().await.expect("sp2");
        sp.execute("INSERT INTO t(v) VALUES (6)", ())
            .await
            .expect("6");
    }
    let vs: Vec<i64> = tx
        .fetch_map("SELECT v FROM t ORDER BY id", (), |r| r.get(0))
        .await
        .expect("rows");
    assert_eq!(vs, vec![1, 2, 5]);
    tx.commit().await.expect("commit");
    assert_eq!(
        common::scalar(db.reader(), "SELECT count(*) FROM t").await,
        3
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closure_transaction_nests_savepoints_and_rolls_back_on_panic() {
    let (_dir, db) = pool().await;
    db.transaction(|tx| {
        tx.execute("INSERT INTO t(v) VALUES (1)", [])?;
        let sp = tx.savepoint()?;
        sp.execute("INSERT INTO t(v) VALUES (2)", [])?;
        drop(sp); // rusqlite rolls a dropped savepoint back
        Ok::<_, Error>(())
    })
    .await
    .expect("tx");
    let r: Result<(), Error> = db
        .transaction(|tx| {
            tx.execute("INSERT INTO t(v) VALUES (3)", [])?;
            panic!("boom")
        })
        .await;
    assert!(matches!(r, Err(Error::Panic { .. })));
    let vs: Vec<i64> = db
        .fetch_map("SELECT v FROM t ORDER BY id", (), |r| r.get(0))
        .await
        .expect("rows");
    assert_eq!(vs, vec![1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_pool_is_one_database() {
    let db = Database::open_in_memory().await.expect("open");
    db.execute("CREATE TABLE m(x)", ()).await.expect("create");
    db.execute("INSERT INTO m VALUES (1)", ())
        .await
        .expect("insert");
    let other = db.clone();
    assert_eq!(
        common::scalar(other.reader(), "SELECT count(*) FROM m").await,
        1
    );
    assert_eq!(
        other
            .fetch_one("SELECT count(*) FROM m", ())
            .await
            .expect("read")
            .get::<_, i64>(0)
            .expect("int"),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_closes_every_connection() {
    let (_dir, db) = pool().await;
    let copy = db.clone();
    db.close().await.expect("close");
    db.close().await.expect("close twice");
    assert!(copy.is_closed());
    assert!(matches!(
        copy.fetch_all("SELECT 1", ()).await,
        Err(Error::Closed)
    ));
    assert!(matches!(
        copy.execute("DELETE FROM t", ()).await,
        Err(Error::Closed)
    ));
    assert!(matches!(copy.begin().await, Err(Error::Closed)));
    assert!(matches!(
        copy.reader().fetch_all("SELECT 1", ()).await,
        Err(Error::Closed)
    ));
}

#[tokio::test]
async fn a_pool_refuses_isolation_level() {
    let (_dir, path) = common::temp_db("iso.db");
    let err = Database::builder(&path)
        .options(
            ConnectOptions::new(&path)
                .isolation_level(Some(aiolite::TransactionBehavior::Deferred)),
        )
        .open()
        .await
        .expect_err("implicit transactions would be rolled back after each request");
    assert!(matches!(err, Error::Config(_)), "{err:?}");
    assert!(err.to_string().contains("isolation_level"), "{err}");
}

/// Reported: `options()` dropped migrations given before it, and ignored the
/// options' path while its doc said the path replaced the builder's.
#[tokio::test]
async fn builder_options_keep_migrations_and_refuse_a_second_path() {
    use aiolite::migrate::{Migration, Migrations};
    let set = || {
        Migrations::new([Migration::new("V1__t", "CREATE TABLE t(x);").expect("name")])
            .expect("set")
    };
    let (_dir, path) = common::temp_db("b.db");
    // Migrations first, options after: both kept.
    let db = Database::builder(&path)
        .migrations(set())
        .migrate_on_open(true)
        .options(ConnectOptions::new(&path).synchronous(Synchronous::Normal))
        .open()
        .await
        .expect("open");
    assert_eq!(
        common::scalar(db.writer(), "SELECT count(*) FROM refinery_schema_history").await,
        1,
        "migrated on open"
    );
    assert_eq!(
        common::scalar(db.writer(), "PRAGMA synchronous").await,
        1,
        "NORMAL from the options"
    );
    db.close().await.expect("close");
    // Options naming another database: an error at open, never a silent pick.
    let (_other_dir, other) = common::temp_db("other.db");
    let err = Database::builder(&path)
        .options(ConnectOptions::new(&other))
        .open()
        .await
        .expect_err("two paths");
    assert!(matches!(err, Error::Config(_)), "{err:?}");
    assert!(err.to_string().contains("other.db"), "{err}");
    assert!(!other.exists(), "nothing was opened");
}
