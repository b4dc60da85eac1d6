//! Opening and closing many `Database`s at once: what a process-wide lock
//! around every SQLite open and close costs (issue #14 removed it).
//!
//!     cargo bench --bench open_many
//!     AIOLITE_BENCH_RUNS=7 cargo bench --bench open_many
//!
//! Each round spawns 64 tasks that each open a `Database` (a writer and 4
//! readers, so 320 SQLite connections) and then 64 that close them, once on
//! 64 files of their own and once all on one file. Each round prints one
//! `RESULT` line; the last line has the medians.

use std::path::Path;
use std::time::Instant;

use aiolite::Database;

const DATABASES: usize = 64;

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

/// Opens `DATABASES` pools at once (on `path(i)`), then closes them at once;
/// milliseconds for each half.
async fn round(path: impl Fn(usize) -> std::path::PathBuf) -> (f64, f64) {
    let started = Instant::now();
    let opening: Vec<_> = (0..DATABASES)
        .map(|i| tokio::spawn(Database::open(path(i))))
        .collect();
    let mut dbs = Vec::with_capacity(DATABASES);
    for task in opening {
        dbs.push(task.await.expect("join").expect("open"));
    }
    let opened = started.elapsed().as_secs_f64() * 1e3;
    let started = Instant::now();
    let closing: Vec<_> = dbs
        .into_iter()
        .map(|db| tokio::spawn(async move { db.close().await }))
        .collect();
    for task in closing {
        task.await.expect("join").expect("close");
    }
    (opened, started.elapsed().as_secs_f64() * 1e3)
}

fn main() {
    let runs: usize = std::env::var("AIOLITE_BENCH_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let one: &Path = &dir.path().join("shared.db");
    let mut results = [(Vec::new(), Vec::new()), (Vec::new(), Vec::new())];
    rt.block_on(async {
        // The one-file case opens an existing WAL database, as a service's
        // restart does; the separate files are created anew each round.
        Database::open(one)
            .await
            .expect("create")
            .close()
            .await
            .expect("close");
        for run in 0..runs {
            for (case, result) in ["separate", "one-file"].iter().zip(results.iter_mut()) {
                let (open_ms, close_ms) = if *case == "separate" {
                    let base = dir.path().join(format!("run{run}"));
                    std::fs::create_dir_all(&base).expect("dir");
                    round(|i| base.join(format!("db{i}.db"))).await
                } else {
                    round(|_| one.to_owned()).await
                };
                println!(
                    "RESULT open_many files={case} databases={DATABASES} open_ms={open_ms:.1} close_ms={close_ms:.1}"
                );
                result.0.push(open_ms);
                result.1.push(close_ms);
            }
        }
    });
    for (case, (open, close)) in ["separate", "one-file"].iter().zip(results) {
        println!(
            "MEDIAN open_many files={case} databases={DATABASES} runs={runs} open_ms={:.1} close_ms={:.1} sqlite={}",
            median(open),
            median(close),
            aiolite::rusqlite::version()
        );
    }
}
