//! Every `Database` API, polled 0, 1, 2, ... times and then dropped: after each
//! drop no transaction is open on the writer, the lease is free, the next write
//! succeeds, and the data is what the completed operations imply.

mod common;

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use std::time::{Duration, Instant};

use aiolite::{ConnectOptions, Database, Error, Synchronous};
use futures_util::StreamExt;

type Op = Pin<Box<dyn Future<Output = Result<(), Error>> + Send>>;

const BUMP: &str = "UPDATE c SET v = v + 1 WHERE id = 1";
const ENDLESS: &str =
    "WITH RECURSIVE r(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM r) SELECT count(*) FROM r";

/// The operations, each with the changes to the counter it may leave when
/// dropped part-way (`maybe`) and when it completes (`done`).
fn operations(db: &Database) -> Vec<(&'static str, Op, &'static [i64], i64)> {
    let d = db.clone();
    let mut ops: Vec<(&'static str, Op, &'static [i64], i64)> = Vec::new();
    ops.push((
        "execute",
        Box::pin(async move { d.execute(BUMP, ()).await.map(drop) }),
        &[0, 1],
        1,
    ));
    let d = db.clone();
    ops.push((
        "fetch_all",
        Box::pin(async move { d.fetch_all("SELECT * FROM c", ()).await.map(drop) }),
        &[0],
        0,
    ));
    let d = db.clone();
    ops.push((
        "fetch_one",
        Box::pin(async move { d.fetch_one("SELECT v FROM c", ()).await.map(drop) }),
        &[0],
        0,
    ));
    let d = db.clone();
    ops.push((
        "fetch_optional",
        Box::pin(async move {
            d.fetch_optional("SELECT v FROM c WHERE id = 2", ())
                .await
                .map(drop)
        }),
        &[0],
        0,
    ));
    let d = db.clone();
    ops.push((
        "stream",
        Box::pin(async move {
            let mut s = d.stream("SELECT value FROM json_each('[1,2,3,4,5,6,7,8,9]')", ());
            while let Some(row) = s.next().await {
                row?;
            }
            Ok(())
        }),
        &[0],
        0,
    ));
    let d = db.clone();
    ops.push((
        "begin (guard dropped after use)",
        Box::pin(async move {
            let tx = d.begin().await?;
            tx.execute(BUMP, ()).await?;
            Ok(()) // the guard is dropped here: rolled back
        }),
        &[0],
        0,
    ));
    let d = db.clone();
    ops.push((
        "commit",
        Box::pin(async move {
            let tx = d.begin().await?;
            tx.execute(BUMP, ()).await?;
            tx.commit().await
        }),
        &[0, 1],
        1,
    ));
    let d = db.clone();
    ops.push((
        "rollback",
        Box::pin(async move {
            let tx = d.begin().await?;
            tx.execute(BUMP, ()).await?;
            tx.rollback().await
        }),
        &[0],
        0,
    ));
    let d = db.clone();
    ops.push((
        "savepoint",
        Box::pin(async move {
            let mut tx = d.begin().await?;
            let sp = tx.savepoint().await?;
            sp.execute(BUMP, ()).await?;
            sp.release().await?;
            tx.commit().await
        }),
        &[0, 1],
        1,
    ));
    let d = db.clone();
    ops.push((
        "transaction closure",
        Box::pin(async move {
            d.transaction(|tx| {
                tx.execute(BUMP, [])?;
                Ok::<_, Error>(())
            })
            .await
        }),
        &[0, 1],
        1,
    ));
    ops
}

async fn counter(db: &Database) -> i64 {
    common::scalar(db.writer(), "SELECT v FROM c WHERE id = 1").await
}

async fn assert_settled(db: &Database, what: &str) {
    let open = tokio::time::timeout(Duration::from_secs(5), db.writer().in_transaction())
        .await
        .unwrap_or_else(|_| panic!("{what}: the writer's lease was not freed"))
        .expect("state");
    assert!(!open, "{what}: a transaction was left open on the writer");
    tokio::time::timeout(
        Duration::from_secs(5),
        db.execute("INSERT INTO log(what) VALUES (?)", (what.to_owned(),)),
    )
    .await
    .unwrap_or_else(|_| panic!("{what}: the next write hung"))
    .unwrap_or_else(|e| panic!("{what}: the next write failed: {e}"));
}

async fn setup(readers: usize) -> (tempfile::TempDir, Database) {
    let (dir, path) = common::temp_db("cancel.db");
    let db = Database::builder(&path)
        .readers(readers)
        .options(ConnectOptions::new(&path).synchronous(Synchronous::Normal))
        .open()
        .await
        .expect("open");
    db.execute_script(
        "CREATE TABLE c(id INTEGER PRIMARY KEY, v INTEGER NOT NULL);
         INSERT INTO c VALUES (1, 0);
         CREATE TABLE log(what TEXT);",
    )
    .await
    .expect("schema");
    (dir, db)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_api_dropped_after_every_number_of_polls() {
    let (_dir, db) = setup(2).await;
    let mut dropped = 0;
    let mut never_polled = 0;
    for polls in 0..12usize {
        for (name, mut op, maybe, done) in operations(&db) {
            if polls == 0 {
                never_polled += 1;
            }
            let before = counter(&db).await;
            let mut finished = None;
            for _ in 0..polls {
                if let Poll::Ready(r) = futures_util::poll!(op.as_mut()) {
                    finished = Some(r);
                    break;
                }
                // Let the workers move between polls.
                tokio::task::yield_now().await;
                std::thread::sleep(Duration::from_micros(30));
            }
            let what = format!("{name} after {polls} polls");
            drop(op);
            assert_settled(&db, &what).await;
            let delta = counter(&db).await - before;
            match finished {
                Some(r) => {
                    r.unwrap_or_else(|e| panic!("{what}: {e}"));
                    assert_eq!(delta, done, "{what}: completed");
                }
                None => {
                    dropped += 1;
                    assert!(
                        maybe.contains(&delta),
                        "{what}: dropped, changed the counter by {delta}"
                    );
                }
            }
        }
    }
    // How many are dropped after one poll or more depends on the machine's
    // speed; those never polled are dropped on every machine.
    assert!(
        dropped >= never_polled && never_polled > 0,
        "{dropped} dropped, {never_polled} never polled"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_long_query_stops() {
    let (_dir, db) = setup(1).await;
    for _ in 0..3 {
        let long = db.fetch_one(ENDLESS, ());
        assert!(
            tokio::time::timeout(Duration::from_millis(200), long)
                .await
                .is_err(),
            "the endless query cannot finish"
        );
        let dropped_at = Instant::now();
        // The one reader is free again once the interrupt lands.
        let one = db
            .reader()
            .fetch_one("SELECT 1", ())
            .await
            .expect("next read");
        assert_eq!(one.get::<_, i64>(0).expect("int"), 1);
        // The interrupt lands within a progress-handler tick (microseconds);
        // the bound only tells an endless query from one that stopped, on
        // however loaded a machine.
        let took = dropped_at.elapsed();
        assert!(
            took < Duration::from_secs(10),
            "the dropped query ran on for {took:?}"
        );
    }
    assert_settled(&db, "long query").await;
}
