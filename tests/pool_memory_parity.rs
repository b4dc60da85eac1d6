//! The documented way to test handlers is an in-memory pool: it must route
//! and lease as a file pool does, so a test passing on it says something of
//! production. Each rule runs on both.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use aiolite::{Database, Error};

async fn pools() -> (tempfile::TempDir, Vec<(&'static str, Database)>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut out = Vec::new();
    for (what, path) in [
        ("memory", std::path::PathBuf::from(":memory:")),
        ("file", dir.path().join("parity.db")),
    ] {
        let db = Database::builder(&path)
            .readers(2)
            .group_commit(true)
            .open()
            .await
            .expect("open");
        db.execute_script("CREATE TABLE kv(k INTEGER PRIMARY KEY, v INTEGER NOT NULL)")
            .await
            .expect("schema");
        out.push((what, db));
    }
    (dir, out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_in_memory_pool_routes_and_leases_as_a_file_pool_does() {
    let (_dir, pools) = pools().await;
    for (what, db) in pools {
        // Read your writes.
        db.execute("INSERT INTO kv VALUES (1, 10)", ())
            .await
            .expect("write");
        let v: i64 = db
            .fetch_one("SELECT v FROM kv WHERE k = 1", ())
            .await
            .expect("read")
            .get(0)
            .expect("v");
        assert_eq!(v, 10, "{what}");

        // A guard leases the writer: another task's write waits for it and
        // never lands inside it; a read from another task sees the last
        // committed state meanwhile.
        let tx = db.begin().await.expect("begin");
        tx.execute("UPDATE kv SET v = 11 WHERE k = 1", ())
            .await
            .expect("in tx");
        let other = {
            let db = db.clone();
            tokio::spawn(async move { db.execute("INSERT INTO kv VALUES (2, 20)", ()).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(
            !other.is_finished(),
            "{what}: a write went around the lease"
        );
        let n = common::scalar_in(&tx, "SELECT count(*) FROM kv").await;
        assert_eq!(
            n, 1,
            "{what}: the other task's write is not inside the guard"
        );
        tx.commit().await.expect("commit");
        tokio::time::timeout(Duration::from_secs(20), other)
            .await
            .expect("the waiting write ran")
            .expect("join")
            .expect("write");

        // The mistakes are errors on both.
        let tx = db.begin().await.expect("begin");
        let around = db.execute("INSERT INTO kv VALUES (3, 30)", ()).await;
        assert!(
            matches!(around, Err(Error::InsideOwnTransaction)),
            "{what}: {around:?}"
        );
        tx.rollback().await.expect("rollback");
        let control = db.execute("BEGIN", ()).await;
        assert!(
            matches!(control, Err(Error::TransactionControl(_))),
            "{what}: {control:?}"
        );

        // Group commit and metrics behave the same: 4 writes queued behind
        // a held writer, one COMMIT.
        let commits = common::count_commits(&db).await;
        let (release, held) = common::hold_worker(db.writer()).await;
        let writes: Vec<_> = (10..14i64)
            .map(|k| {
                let db = db.clone();
                tokio::spawn(async move { db.execute("INSERT INTO kv VALUES (?, 0)", (k,)).await })
            })
            .collect();
        common::queued(db.writer(), 4).await;
        commits.store(0, Ordering::Relaxed);
        drop(release);
        held.await.expect("held");
        for w in writes {
            w.await.expect("join").expect("grouped write");
        }
        assert_eq!(commits.load(Ordering::Relaxed), 1, "{what}");
        db.writer().execute("SELECT 1", ()).await.expect("settle");
        let m = db.metrics();
        assert!(m.writer.group_members >= 4, "{what}: {:?}", m.writer);
        let rows: i64 = db
            .fetch_one("SELECT count(*) FROM kv", ())
            .await
            .expect("count")
            .get(0)
            .expect("n");
        assert_eq!(rows, 6, "{what}");
        db.close().await.expect("close");
    }
}
