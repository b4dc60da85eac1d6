//! One URL configures a pool (`Database::connect`, `DatabaseBuilder::from_url`),
//! and the options say back what they hold.

mod common;

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

use aiolite::{ConnectOptions, Database, DatabaseBuilder, Error, JournalMode, Synchronous};

#[test]
fn a_url_carries_the_pools_parameters_and_every_connection_option() {
    let b = DatabaseBuilder::from_url(
        "sqlite://data/app.db?mode=rwc&readers=8&journal_mode=wal&synchronous=normal\
         &busy_timeout=250&foreign_keys=off&cache_capacity=7&group_commit=on",
    )
    .expect("url");
    assert_eq!(b.get_readers(), 8);
    assert!(b.get_group_commit());
    let o = b.get_options();
    assert_eq!(o.get_path(), Some(Path::new("data/app.db")));
    assert!(!o.get_read_only());
    assert!(o.get_create_if_missing());
    assert_eq!(o.get_journal_mode(), Some(JournalMode::Wal));
    assert_eq!(o.get_synchronous(), Synchronous::Normal);
    assert_eq!(o.get_busy_timeout(), Duration::from_millis(250));
    assert!(!o.get_foreign_keys());
    assert_eq!(o.get_statement_cache_capacity(), 7);

    // Defaults, when the URL says nothing.
    let b = DatabaseBuilder::from_url("sqlite:app.db").expect("bare");
    assert_eq!(b.get_readers(), 4);
    assert!(!b.get_group_commit());
    let defaults = ConnectOptions::new("app.db");
    assert_eq!(
        b.get_options().get_synchronous(),
        defaults.get_synchronous()
    );
    assert_eq!(b.get_options().get_busy_timeout(), Duration::from_secs(5));
    assert!(b.get_options().get_foreign_keys());
    let memory = DatabaseBuilder::from_url("sqlite::memory:").expect("memory");
    assert_eq!(memory.get_options().get_path(), None);
    let ro = DatabaseBuilder::from_url("sqlite://app.db?mode=ro&readers=0").expect("ro");
    assert!(ro.get_options().get_read_only());
    assert_eq!(ro.get_readers(), 0);
}

#[test]
fn a_bad_url_names_what_is_wrong() {
    for (url, says) in [
        ("sqlite://app.db?readers=many", "readers"),
        ("sqlite://app.db?group_commit=maybe", "group_commit"),
        ("sqlite://app.db?readers=2&colour=blue", "colour"),
        ("sqlite://app.db?synchronous=sometimes", "sometimes"),
        ("postgres://app.db", "sqlite:"),
        ("sqlite://?readers=2", "names no database"),
    ] {
        let e = DatabaseBuilder::from_url(url).map(drop).expect_err(url);
        assert!(matches!(e, Error::Config(_)), "{url}: {e:?}");
        assert!(e.to_string().contains(says), "{url}: {e}");
    }
    // A pool's parameter given to a single connection's URL says where it
    // belongs.
    let e = "sqlite://app.db?readers=2"
        .parse::<ConnectOptions>()
        .map(drop)
        .expect_err("pool parameter");
    assert!(e.to_string().contains("Database::connect"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_opens_the_pool_the_url_describes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("url.db");
    let url = format!(
        "sqlite://{}?mode=rwc&readers=2&group_commit=true&synchronous=full",
        path.display()
    );
    let db = Database::connect(&url).await.expect("connect");
    assert_eq!(db.readers().len(), 2);
    db.execute("CREATE TABLE t(x)", ()).await.expect("schema");
    let synchronous: i64 = db
        .writer()
        .fetch_one("PRAGMA synchronous", ())
        .await
        .expect("pragma")
        .get(0)
        .expect("n");
    assert_eq!(synchronous, 2, "FULL");
    // Group commit is on: writes queued together share one COMMIT.
    let commits = common::count_commits(&db).await;
    let (release, hold) = common::hold_worker(db.writer()).await;
    let writes: Vec<_> = (0..4)
        .map(|i| {
            let db = db.clone();
            tokio::spawn(async move { db.execute("INSERT INTO t VALUES (?)", (i,)).await })
        })
        .collect();
    common::queued(db.writer(), 4).await;
    commits.store(0, Ordering::Relaxed);
    drop(release);
    hold.await.expect("join");
    for w in writes {
        w.await.expect("join").expect("write");
    }
    assert_eq!(commits.load(Ordering::Relaxed), 1);
    db.close().await.expect("close");
    // The connection's own URL still opens a single connection.
    let conn = format!("sqlite://{}?mode=rw", path.display())
        .parse::<ConnectOptions>()
        .expect("url")
        .open()
        .await
        .expect("open");
    let n: i64 = conn
        .fetch_one("SELECT count(*) FROM t", ())
        .await
        .expect("count")
        .get(0)
        .expect("n");
    assert_eq!(n, 4);
}
