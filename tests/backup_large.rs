//! A backup of a 100 MB database while 8 tasks keep querying the source: the
//! queries keep completing between the backup's steps, and the copy passes
//! `integrity_check` with the same contents.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aiolite::{BackupProgress, Connection};
use futures_util::StreamExt;

const ROWS: i64 = 25_000;
const BLOB: i64 = 4_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_megabytes_while_eight_tasks_query() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = Connection::open(dir.path().join("big.db"))
        .await
        .expect("open");
    src.execute(
        "CREATE TABLE big(id INTEGER PRIMARY KEY, data BLOB NOT NULL)",
        (),
    )
    .await
    .expect("create");
    let fill = format!(
        "INSERT INTO big WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {ROWS}) \
         SELECT x, randomblob({BLOB}) FROM c"
    );
    src.execute(fill, ()).await.expect("fill");
    let size: i64 = src
        .fetch_one(
            "SELECT page_count * page_size FROM pragma_page_count, pragma_page_size",
            (),
        )
        .await
        .expect("size")
        .get(0)
        .expect("int");
    assert!(size >= 100_000_000, "the source holds {size} bytes");

    let done = Arc::new(AtomicBool::new(false));
    let during = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for t in 0..8i64 {
        let (src, done, during) = (src.clone(), Arc::clone(&done), Arc::clone(&during));
        tasks.push(tokio::spawn(async move {
            let mut worst = Duration::ZERO;
            let mut i = 0i64;
            while !done.load(Ordering::Acquire) {
                let id = (t * 7919 + i * 104_729) % ROWS + 1;
                let started = Instant::now();
                let len: i64 = src
                    .fetch_one("SELECT length(data) FROM big WHERE id = ?", (id,))
                    .await
                    .expect("query during the backup")
                    .get(0)
                    .expect("int");
                assert_eq!(len, BLOB);
                worst = worst.max(started.elapsed());
                if !done.load(Ordering::Acquire) {
                    during.fetch_add(1, Ordering::Relaxed);
                }
                i += 1;
            }
            worst
        }));
    }

    let copy_path = dir.path().join("copy.db");
    let steps = Arc::new(AtomicU64::new(0));
    let counted = Arc::clone(&steps);
    let started = Instant::now();
    src.backup_to_path(&copy_path)
        .pages_per_step(256)
        .progress(move |_: BackupProgress| {
            counted.fetch_add(1, Ordering::Relaxed);
        })
        .await
        .expect("backup");
    let took = started.elapsed();
    done.store(true, Ordering::Release);
    let mut worst = Duration::ZERO;
    for t in tasks {
        worst = worst.max(t.await.expect("task"));
    }
    let steps = steps.load(Ordering::Relaxed);
    let queries = during.load(Ordering::Relaxed);
    eprintln!("backup of {size} bytes: {steps} steps in {took:?}; {queries} queries meanwhile, slowest {worst:?}");
    assert!(steps > 50, "{steps} steps");
    // The queries were served between the steps, not after the backup.
    assert!(queries >= steps, "{queries} queries during {steps} steps");

    let copy = Connection::open(&copy_path).await.expect("open the copy");
    let check: String = copy
        .fetch_one("PRAGMA integrity_check", ())
        .await
        .expect("check")
        .get(0)
        .expect("text");
    assert_eq!(check, "ok");
    let mut a = src.stream("SELECT id, data FROM big ORDER BY id", ());
    let mut b = copy.stream("SELECT id, data FROM big ORDER BY id", ());
    let mut rows = 0;
    loop {
        match (a.next().await, b.next().await) {
            (None, None) => break,
            (Some(x), Some(y)) => {
                let (x, y) = (x.expect("source row"), y.expect("copy row"));
                assert_eq!(
                    x.get::<_, i64>(0).expect("id"),
                    y.get::<_, i64>(0).expect("id")
                );
                assert!(
                    x.get::<_, Vec<u8>>(1).expect("blob") == y.get::<_, Vec<u8>>(1).expect("blob"),
                    "row {rows} differs"
                );
                rows += 1;
            }
            (x, y) => panic!(
                "row counts differ after {rows}: {:?} / {:?}",
                x.is_some(),
                y.is_some()
            ),
        }
    }
    assert_eq!(rows, ROWS);
}
