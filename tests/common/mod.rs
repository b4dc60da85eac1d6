//! Helpers shared by the integration tests.
#![allow(dead_code)] // each test binary uses its own subset

use std::path::PathBuf;

use aiolite::Connection;

/// The first column of the first row of `sql`, as an integer.
pub(crate) async fn scalar(conn: &Connection, sql: &str) -> i64 {
    conn.fetch_one(sql.to_owned(), ())
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .get(0)
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// A fresh directory and a database path inside it (the directory lives as
/// long as the returned guard).
pub(crate) fn temp_db(name: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(name);
    (dir, path)
}

/// [`scalar`] inside a transaction.
pub(crate) async fn scalar_in(tx: &aiolite::Transaction, sql: &str) -> i64 {
    tx.fetch_one(sql.to_owned(), ())
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .get(0)
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// This process's resident set size, from /proc/self/status.
pub(crate) fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("procfs");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// aiosqlite's smoke-test table: `foo(i, k)` with two rows.
pub(crate) async fn foo_table(conn: &Connection) {
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

/// The rows of [`foo_table`].
pub(crate) async fn foo_rows(conn: &Connection) -> Vec<(i64, String)> {
    conn.fetch_map("select * from foo", (), |r| Ok((r.get(0)?, r.get(1)?)))
        .await
        .expect("select")
}

/// Keeps `conn`'s worker inside a request until the returned sender is
/// dropped: whatever is sent meanwhile queues up behind it,
/// deterministically. The task finishes once the worker is released.
pub(crate) async fn hold_worker(
    conn: &Connection,
) -> (std::sync::mpsc::Sender<()>, tokio::task::JoinHandle<()>) {
    let (release, held) = std::sync::mpsc::channel::<()>();
    let (started_tx, started) = tokio::sync::oneshot::channel::<()>();
    let c = conn.clone();
    let task = tokio::spawn(async move {
        c.call(move |_| {
            let _ = started_tx.send(());
            let _ = held.recv();
            Ok::<_, aiolite::Error>(())
        })
        .await
        .expect("hold");
    });
    started.await.expect("the worker took the request");
    (release, task)
}

/// Waits (bounded) until `n` requests wait in `conn`'s queue.
pub(crate) async fn queued(conn: &Connection, n: usize) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while conn.queued_requests() < n {
        assert!(
            std::time::Instant::now() < deadline,
            "the requests never queued"
        );
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
}

/// Counts the COMMITs that reach the database (through the commit hook of
/// `db`'s writer).
pub(crate) async fn count_commits(
    db: &aiolite::Database,
) -> std::sync::Arc<std::sync::atomic::AtomicUsize> {
    let commits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = std::sync::Arc::clone(&commits);
    db.commit_hook(Some(move || {
        seen.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        false
    }))
    .await
    .expect("commit hook");
    commits
}

/// What a global `tracing_subscriber::fmt` subscriber writes, for tests that
/// read the events back.
#[derive(Clone, Default)]
pub(crate) struct Captured(pub(crate) std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    /// Everything written so far.
    pub(crate) fn text(&self) -> String {
        let bytes = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        String::from_utf8(bytes).expect("utf-8")
    }
}

/// The runtime and the seeded runner of a model-based test: `default_cases`
/// sequences unless `AIOLITE_MODEL_CASES` says otherwise (a deeper search,
/// once, after a change to the engine), none persisted, a failing case shrunk
/// for at most a minute (a hang costs a step's timeout per try).
pub(crate) fn model_runner(
    seed: u64,
    default_cases: u32,
) -> (tokio::runtime::Runtime, proptest::test_runner::TestRunner) {
    use proptest::test_runner::{Config, RngSeed, TestRunner};
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let runner = TestRunner::new(Config {
        cases: std::env::var("AIOLITE_MODEL_CASES")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(default_cases),
        failure_persistence: None,
        rng_seed: RngSeed::Fixed(seed),
        max_shrink_time: 60_000,
        ..Config::default()
    });
    (rt, runner)
}
