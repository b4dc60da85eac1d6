//! Many tasks and several processes writing through `Database`: exact
//! counters, no "database is locked", nothing foreign inside a transaction.

mod common;

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use aiolite::{ConnectOptions, Database, Synchronous};

async fn open(path: &std::path::Path) -> Database {
    Database::builder(path)
        .readers(4)
        .options(ConnectOptions::new(path).synchronous(Synchronous::Normal))
        .open()
        .await
        .expect("open")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_tasks_times_one_hundred_transactions() {
    let (_dir, path) = common::temp_db("counter.db");
    let db = open(&path).await;
    db.execute_script(
        "CREATE TABLE c(id INTEGER PRIMARY KEY, v INTEGER NOT NULL); INSERT INTO c VALUES (1, 0);
         CREATE TABLE log(n INTEGER);",
    )
    .await
    .expect("schema");
    let locked = Arc::new(AtomicUsize::new(0));
    let foreign = Arc::new(AtomicUsize::new(0));

    // Intruders write outside any transaction the whole time.
    let intruders: Vec<_> = (0..4)
        .map(|i| {
            let db = db.clone();
            tokio::spawn(async move {
                for n in 0..50 {
                    db.execute("INSERT INTO log(n) VALUES (?)", (i * 1000 + n,))
                        .await
                        .expect("intruder write");
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();

    let workers: Vec<_> = (0..64)
        .map(|_| {
            let db = db.clone();
            let (locked, foreign) = (Arc::clone(&locked), Arc::clone(&foreign));
            tokio::spawn(async move {
                for _ in 0..100 {
                    let tx = match db.begin().await {
                        Ok(tx) => tx,
                        Err(e) if e.is_busy() => {
                            locked.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                        Err(e) => panic!("begin: {e}"),
                    };
                    let log_before = common::scalar_in(&tx, "SELECT count(*) FROM log").await;
                    let v = common::scalar_in(&tx, "SELECT v FROM c WHERE id = 1").await;
                    tokio::task::yield_now().await;
                    tx.execute("UPDATE c SET v = ? WHERE id = 1", (v + 1,))
                        .await
                        .expect("write");
                    // An intruder's insert landing inside this transaction
                    // would show here.
                    if common::scalar_in(&tx, "SELECT count(*) FROM log").await != log_before {
                        foreign.fetch_add(1, Ordering::Relaxed);
                    }
                    if let Err(e) = tx.commit().await {
                        assert!(e.is_busy(), "commit: {e}");
                        locked.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.await.expect("worker");
    }
    for i in intruders {
        i.await.expect("intruder");
    }
    assert_eq!(
        locked.load(Ordering::Relaxed),
        0,
        "'database is locked' errors"
    );
    assert_eq!(
        foreign.load(Ordering::Relaxed),
        0,
        "foreign statements inside transactions"
    );
    assert_eq!(
        common::scalar(db.reader(), "SELECT v FROM c WHERE id = 1").await,
        6400
    );
    assert_eq!(
        common::scalar(db.reader(), "SELECT count(*) FROM log").await,
        200
    );
    db.close().await.expect("close");
}

const CHILD: &str = "AIOLITE_POOL_CHILD";

fn run_children(test: &str, path: &std::path::Path, n: usize) {
    let children: Vec<_> = (0..n)
        .map(|_| {
            Command::new(std::env::current_exe().expect("exe"))
                .args(["--exact", test, "--nocapture"])
                .env(CHILD, path)
                .stdout(std::process::Stdio::null())
                .spawn()
                .expect("spawn")
        })
        .collect();
    for mut c in children {
        let status = c.wait().expect("wait");
        assert!(status.success(), "a child failed: {status}");
    }
}

#[test]
fn two_processes_two_thousand_increments_each() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    if let Some(path) = std::env::var_os(CHILD) {
        rt.block_on(async {
            let db = open(std::path::Path::new(&path)).await;
            for _ in 0..2000 {
                let tx = db.begin().await.expect("begin");
                let v = common::scalar_in(&tx, "SELECT v FROM c WHERE id = 1").await;
                tx.execute("UPDATE c SET v = ? WHERE id = 1", (v + 1,))
                    .await
                    .expect("write");
                tx.commit().await.expect("commit");
            }
            db.close().await.expect("close");
        });
        return;
    }
    let (_dir, path) = common::temp_db("two.db");
    rt.block_on(async {
        let db = open(&path).await;
        db.execute_script("CREATE TABLE c(id INTEGER PRIMARY KEY, v INTEGER NOT NULL); INSERT INTO c VALUES (1, 0);")
            .await
            .expect("schema");
        db.close().await.expect("close");
    });
    run_children("two_processes_two_thousand_increments_each", &path, 2);
    rt.block_on(async {
        let db = open(&path).await;
        assert_eq!(
            common::scalar(db.reader(), "SELECT v FROM c WHERE id = 1").await,
            4000
        );
        let ok: String = db
            .fetch_one("PRAGMA integrity_check", ())
            .await
            .expect("check")
            .get(0)
            .expect("text");
        assert_eq!(ok, "ok");
    });
}

#[test]
fn processes_opening_one_fresh_file_at_once_all_end_in_wal() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    if let Some(path) = std::env::var_os(CHILD) {
        rt.block_on(async {
            let db = open(std::path::Path::new(&path)).await;
            let mode: String = db
                .fetch_one("PRAGMA journal_mode", ())
                .await
                .expect("mode")
                .get(0)
                .expect("text");
            assert_eq!(mode, "wal");
            db.execute("CREATE TABLE IF NOT EXISTS seen(pid INTEGER)", ())
                .await
                .expect("create");
            db.execute(
                "INSERT INTO seen VALUES (?)",
                (i64::from(std::process::id()),),
            )
            .await
            .expect("insert");
            db.close().await.expect("close");
        });
        return;
    }
    for round in 0..20 {
        let (_dir, path) = common::temp_db(&format!("fresh{round}.db"));
        run_children(
            "processes_opening_one_fresh_file_at_once_all_end_in_wal",
            &path,
            4,
        );
        rt.block_on(async {
            let db = open(&path).await;
            assert_eq!(
                common::scalar(db.reader(), "SELECT count(DISTINCT pid) FROM seen").await,
                4
            );
            db.close().await.expect("close");
        });
    }
}
