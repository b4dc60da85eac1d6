//! Handles are cheap `Clone + Send + Sync + 'static`, every future is `Send`,
//! and dropping the last handle neither blocks nor loses queued work.

mod common;

use std::future::Future;
use std::time::{Duration, Instant};

use aiolite::{
    Connection, Database, DatabaseBuilder, Error, Row, RowStream, Savepoint, Transaction,
};

fn assert_handle<T: Clone + Send + Sync + 'static>() {}
fn assert_send_static<T: Send + 'static>() {}
fn assert_send<F: Future + Send>(_: F) {}

/// Compile-time proof: if a future stopped being `Send`, this would not build.
#[allow(dead_code)]
fn every_future_is_send(conn: Connection, tx: Transaction) {
    assert_handle::<Connection>();
    assert_send_static::<Transaction>();
    assert_send_static::<RowStream>();
    assert_send_static::<Row>();
    assert_send_static::<Error>();
    assert_send(Connection::open("x.db"));
    assert_send(Connection::open_in_memory());
    assert_send(conn.execute("", ()));
    assert_send(conn.execute_insert("", ()));
    assert_send(conn.execute_many("", vec![(1,)]));
    assert_send(conn.execute_script(""));
    assert_send(conn.fetch_all("", ()));
    assert_send(conn.fetch_one("", ()));
    assert_send(conn.fetch_optional("", ()));
    assert_send(conn.fetch_map("", (), |r| r.get::<_, i64>(0)));
    assert_send(conn.describe(""));
    assert_send(conn.call(|_| Ok::<_, Error>(())));
    assert_send(conn.begin());
    assert_send(conn.transaction(|_| Ok::<_, Error>(())));
    assert_send(conn.commit());
    assert_send(conn.rollback());
    assert_send(conn.in_transaction());
    assert_send(conn.total_changes());
    assert_send(conn.last_insert_rowid());
    assert_send(conn.close());
    assert_send(tx.execute("", ()));
    assert_send(tx.fetch_all("", ()));
    assert_send(tx.commit());
}

/// The same for the pool: every future `Database` returns is `Send`.
#[allow(dead_code)]
fn every_pool_future_is_send(db: Database, mut tx: Transaction) {
    assert_handle::<Database>();
    assert_send_static::<DatabaseBuilder>();
    assert_send_static::<Savepoint<'static>>();
    assert_send(Database::open("x.db"));
    assert_send(Database::open_in_memory());
    assert_send(Database::builder("x.db").readers(2).open());
    assert_send(db.execute("", ()));
    assert_send(db.execute_insert("", ()));
    assert_send(db.execute_many("", vec![(1,)]));
    assert_send(db.execute_script(""));
    assert_send(db.fetch_all("", ()));
    assert_send(db.fetch_one("", ()));
    assert_send(db.fetch_optional("", ()));
    assert_send(db.fetch_map("", (), |r| r.get::<_, i64>(0)));
    assert_send(db.describe(""));
    assert_send(db.read(|_| Ok::<_, Error>(())));
    assert_send(db.write(|_| Ok::<_, Error>(())));
    assert_send(db.begin());
    assert_send(db.transaction(|_| Ok::<_, Error>(())));
    assert_send(db.close());
    assert_send(db.migrate());
    assert_send(db.migrate_to(1));
    assert_send(db.writer().migrate());
    assert_send_static::<aiolite::migrate::Migrations>();
    assert_send_static::<aiolite::migrate::MigrationError>();
    assert_send_static::<RowStream>();
    let _ = db.stream("", ());
    assert_send(tx.savepoint());
}

#[tokio::test]
async fn worker_threads_are_named() {
    let conn = Connection::open_in_memory().await.expect("open");
    let name: Option<String> = conn
        .call(|_| Ok::<_, Error>(std::thread::current().name().map(str::to_owned)))
        .await
        .expect("call");
    assert!(name.expect("named").starts_with("aiolite-conn-"));
}

#[tokio::test]
async fn dropping_the_last_handle_does_not_block_and_queued_rollback_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("d.db");
    let conn = Connection::open(&path).await.expect("open");
    conn.execute("CREATE TABLE t(x)", ()).await.expect("create");
    let tx = conn.begin().await.expect("begin");
    tx.execute("INSERT INTO t VALUES (1)", ())
        .await
        .expect("insert");
    // Keep the worker busy so the drops below happen while it works.
    tx.call(|_| {
        std::thread::sleep(Duration::from_millis(1));
        Ok::<_, Error>(())
    })
    .await
    .expect("call");
    let started = Instant::now();
    drop(tx);
    drop(conn);
    assert!(
        started.elapsed() < Duration::from_millis(200),
        "drop blocked"
    );
    // The worker rolls back, closes and releases the file: a new writer gets
    // the lock at once and sees no row.
    let again = Connection::open(&path).await.expect("reopen");
    again
        .execute("BEGIN IMMEDIATE", ())
        .await
        .expect("write lock is free");
    let n = common::scalar(&again, "SELECT count(*) FROM t").await;
    assert_eq!(n, 0);
    again.rollback().await.expect("rollback");
}

/// A process that drops its connection with work queued still exits promptly.
#[test]
fn process_exits_with_a_connection_alive() {
    if std::env::var_os("AIOLITE_EXIT_CHILD").is_some() {
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        let conn = rt.block_on(Connection::open_in_memory()).expect("open");
        let c = conn.clone();
        // The worker is busy for a long time; main returns anyway.
        rt.spawn(async move {
            let _ = c
                .call(|_| {
                    std::thread::sleep(Duration::from_secs(60));
                    Ok::<_, Error>(())
                })
                .await;
        });
        std::thread::sleep(Duration::from_millis(50));
        std::mem::forget(rt); // nothing joins the worker at exit
        std::process::exit(0);
    }
    let started = Instant::now();
    let status = std::process::Command::new(std::env::current_exe().expect("exe"))
        .args([
            "--exact",
            "process_exits_with_a_connection_alive",
            "--nocapture",
        ])
        .env("AIOLITE_EXIT_CHILD", "1")
        .status()
        .expect("spawn child");
    assert!(status.success());
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the child hung at exit"
    );
}
