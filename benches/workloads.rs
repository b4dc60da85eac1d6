//! The workloads of shared/bench/WORKLOADS.md that a single connection can
//! run (W1, W2, W4, W5), for aiolite and for the synchronous rusqlite baseline
//! in the same run.
//!
//!     cargo bench --bench workloads
//!     AIOLITE_BENCH_SCALE=0.5 AIOLITE_BENCH_RUNS=3 AIOLITE_BENCH_ONLY=W1,W5 cargo bench --bench workloads
//!
//! Every (contestant, workload, run) is its own child process, so peak RSS is
//! the contestant's own. Each child prints one `RESULT ...` line; the parent
//! prints the median of the runs and the ratio to the baseline.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use aiolite::{ConnectOptions, Connection, Synchronous};
use futures_util::StreamExt;

const SCHEMA: &str = "CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT NOT NULL,
                       email TEXT NOT NULL, age INTEGER NOT NULL,
                       created_at TEXT NOT NULL)";
const POINT: &str = "SELECT * FROM users WHERE id = ?";
const INSERT: &str = "INSERT INTO users(name, email, age, created_at) VALUES (?, ?, ?, ?)";

type User = (i64, String, String, i64, String);

/// Reads a users row; rusqlite's and aiolite's rows have the same `get`.
macro_rules! read_user {
    ($r:expr) => {
        (
            $r.get(0).expect("id"),
            $r.get(1).expect("name"),
            $r.get(2).expect("email"),
            $r.get(3).expect("age"),
            $r.get(4).expect("created_at"),
        )
    };
}

/// W5's result: every row seen, the sum used, the rate.
fn scan_outcome(rows: i64, sum: i64, scale: &Scale, started: Instant) -> Outcome {
    assert_eq!(rows, scale.bulk_rows, "the scan missed rows");
    std::hint::black_box(sum);
    Outcome {
        rate: rows as f64 / started.elapsed().as_secs_f64(),
        latencies: Vec::new(),
    }
}

struct Scale {
    point_rows: i64,
    w1_ops: usize,
    w2_ops: usize,
    bulk_rows: i64,
}

impl Scale {
    fn from_env() -> Scale {
        let f: f64 = std::env::var("AIOLITE_BENCH_SCALE")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(1.0);
        let n = |base: f64| (base * f).max(1.0) as i64;
        Scale {
            point_rows: n(100_000.0),
            w1_ops: n(50_000.0) as usize,
            w2_ops: n(200_000.0) as usize,
            bulk_rows: n(1_000_000.0),
        }
    }
}

fn user(i: i64) -> (String, String, i64, String) {
    (
        format!("user{i}"),
        format!("user{i}@example.com"),
        18 + i % 60,
        "2026-01-01T00:00:00Z".to_owned(),
    )
}

/// xorshift64*: deterministic ids without a dependency.
struct Rng(u64);
impl Rng {
    fn next_id(&mut self, max: i64) -> i64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % max as u64) as i64 + 1
    }
}

fn peak_rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn sync_conn(path: &Path) -> rusqlite::Connection {
    let c = rusqlite::Connection::open(path).expect("open");
    c.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;")
        .expect("pragmas");
    c.set_prepared_statement_cache_capacity(100);
    c
}

async fn async_conn(path: &Path) -> Connection {
    let mut opts = ConnectOptions::new(path).synchronous(Synchronous::Normal);
    if let Some(chunk) = std::env::var("AIOLITE_BENCH_CHUNK")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        opts = opts.iter_chunk_size(chunk);
    }
    opts.open().await.expect("open")
}

fn fill(path: &Path, rows: i64) {
    let _ = std::fs::remove_file(path);
    let mut c = sync_conn(path);
    c.execute_batch(SCHEMA).expect("schema");
    let tx = c.transaction().expect("tx");
    {
        let mut stmt = tx.prepare(INSERT).expect("prepare");
        for i in 1..=rows {
            let (n, e, a, t) = user(i);
            stmt.execute((n, e, a, t)).expect("insert");
        }
    }
    tx.commit().expect("commit");
}

fn percentile_us(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e6
}

struct Outcome {
    rate: f64,
    latencies: Vec<Duration>,
}

fn run_rusqlite(workload: &str, db: &Path, scale: &Scale) -> Outcome {
    match workload {
        "W1" | "W2" => {
            let ops = if workload == "W1" {
                scale.w1_ops
            } else {
                scale.w2_ops
            };
            let c = sync_conn(db);
            let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
            let mut latencies = Vec::with_capacity(ops);
            let started = Instant::now();
            for _ in 0..ops {
                let t = Instant::now();
                let mut stmt = c.prepare_cached(POINT).expect("prepare");
                let u: User = stmt
                    .query_row([rng.next_id(scale.point_rows)], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                    })
                    .expect("row");
                std::hint::black_box(u);
                latencies.push(t.elapsed());
            }
            Outcome {
                rate: ops as f64 / started.elapsed().as_secs_f64(),
                latencies,
            }
        }
        "W4" => {
            let _ = std::fs::remove_file(db);
            let mut c = sync_conn(db);
            c.execute_batch(SCHEMA).expect("schema");
            let started = Instant::now();
            let tx = c.transaction().expect("tx");
            {
                let mut stmt = tx.prepare_cached(INSERT).expect("prepare");
                for i in 1..=scale.bulk_rows {
                    stmt.execute(user(i)).expect("insert");
                }
            }
            tx.commit().expect("commit");
            Outcome {
                rate: scale.bulk_rows as f64 / started.elapsed().as_secs_f64(),
                latencies: Vec::new(),
            }
        }
        "W5" => {
            let c = sync_conn(db);
            let started = Instant::now();
            let mut stmt = c.prepare_cached("SELECT * FROM users").expect("prepare");
            let mut rows = stmt.query([]).expect("query");
            let (mut n, mut sum) = (0i64, 0i64);
            while let Some(r) = rows.next().expect("step") {
                let u: User = read_user!(r);
                sum += u.3;
                n += 1;
            }
            scan_outcome(n, sum, scale, started)
        }
        other => panic!("unknown workload {other}"),
    }
}

async fn decode(conn: &Connection, id: i64) -> User {
    let r = conn.fetch_one(POINT, (id,)).await.expect("row");
    read_user!(r)
}

async fn run_aiolite(workload: &str, db: &Path, scale: &Scale) -> Outcome {
    match workload {
        "W1" => {
            let c = async_conn(db).await;
            let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
            let mut latencies = Vec::with_capacity(scale.w1_ops);
            let started = Instant::now();
            for _ in 0..scale.w1_ops {
                let t = Instant::now();
                std::hint::black_box(decode(&c, rng.next_id(scale.point_rows)).await);
                latencies.push(t.elapsed());
            }
            Outcome {
                rate: scale.w1_ops as f64 / started.elapsed().as_secs_f64(),
                latencies,
            }
        }
        "W2" => {
            let c = async_conn(db).await;
            let tasks = 64;
            let per_task = scale.w2_ops / tasks;
            let started = Instant::now();
            let handles: Vec<_> = (0..tasks)
                .map(|t| {
                    let c = c.clone();
                    let max = scale.point_rows;
                    tokio::spawn(async move {
                        let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (t as u64 + 1));
                        for _ in 0..per_task {
                            std::hint::black_box(decode(&c, rng.next_id(max)).await);
                        }
                    })
                })
                .collect();
            for h in handles {
                h.await.expect("task");
            }
            Outcome {
                rate: (per_task * tasks) as f64 / started.elapsed().as_secs_f64(),
                latencies: Vec::new(),
            }
        }
        "W4" => {
            let _ = std::fs::remove_file(db);
            let c = async_conn(db).await;
            c.execute_script(SCHEMA).await.expect("schema");
            let rows = scale.bulk_rows;
            let started = Instant::now();
            let tx = c.begin().await.expect("begin");
            let n = tx
                .execute_many(INSERT, (1..=rows).map(user))
                .await
                .expect("insert");
            tx.commit().await.expect("commit");
            assert_eq!(n as i64, rows);
            Outcome {
                rate: rows as f64 / started.elapsed().as_secs_f64(),
                latencies: Vec::new(),
            }
        }
        "W5" => {
            let c = async_conn(db).await;
            let started = Instant::now();
            let mut stream = c.stream("SELECT * FROM users", ());
            let (mut n, mut sum) = (0i64, 0i64);
            while let Some(r) = stream.next().await {
                let r = r.expect("row");
                let u: User = read_user!(r);
                sum += u.3;
                n += 1;
            }
            scan_outcome(n, sum, scale, started)
        }
        other => panic!("unknown workload {other}"),
    }
}

fn child(contestant: &str, workload: &str, db: &Path) {
    let scale = Scale::from_env();
    let mut outcome = match contestant {
        "rusqlite" => run_rusqlite(workload, db, &scale),
        "aiolite" => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(run_aiolite(workload, db, &scale)),
        other => panic!("unknown contestant {other}"),
    };
    outcome.latencies.sort_unstable();
    let unit = if matches!(workload, "W4" | "W5") {
        "rows_per_s"
    } else {
        "ops_per_s"
    };
    println!(
        "RESULT contestant={contestant} workload={workload} {unit}={:.0} p50_us={:.1} p99_us={:.1} peak_rss_kb={} errors=0",
        outcome.rate,
        percentile_us(&outcome.latencies, 0.50),
        percentile_us(&outcome.latencies, 0.99),
        peak_rss_kb(),
    );
}

fn parse_result(line: &str) -> BTreeMap<String, String> {
    line.split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("child") {
        child(&args[2], &args[3], Path::new(&args[4]));
        return;
    }
    let runs: usize = std::env::var("AIOLITE_BENCH_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let scale = Scale::from_env();
    let dir = tempfile::tempdir().expect("tempdir");
    let point_db: PathBuf = dir.path().join("point.db");
    let bulk_db: PathBuf = dir.path().join("bulk.db");
    eprintln!(
        "preparing {} and {} rows",
        scale.point_rows, scale.bulk_rows
    );
    fill(&point_db, scale.point_rows);
    fill(&bulk_db, scale.bulk_rows);
    let exe = std::env::current_exe().expect("exe");

    let only = std::env::var("AIOLITE_BENCH_ONLY").unwrap_or_default();
    let mut summary = Vec::new();
    for workload in ["W1", "W2", "W4", "W5"] {
        if !only.is_empty() && !only.split(',').any(|w| w == workload) {
            continue;
        }
        let db = match workload {
            "W1" | "W2" => point_db.clone(),
            "W4" => dir.path().join("w4.db"),
            _ => bulk_db.clone(),
        };
        let mut medians = BTreeMap::new();
        for contestant in ["rusqlite", "aiolite"] {
            let mut results = Vec::new();
            for _ in 0..runs {
                let out = Command::new(&exe)
                    .args(["child", contestant, workload])
                    .arg(&db)
                    .output()
                    .expect("child");
                assert!(
                    out.status.success(),
                    "{contestant} {workload} failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                let text = String::from_utf8_lossy(&out.stdout);
                let line = text
                    .lines()
                    .find(|l| l.starts_with("RESULT"))
                    .expect("a RESULT line")
                    .to_owned();
                println!("{line}");
                results.push(parse_result(&line));
            }
            let field = |k: &str| {
                median(
                    results
                        .iter()
                        .map(|r| r.get(k).and_then(|v| v.parse().ok()).unwrap_or(0.0))
                        .collect(),
                )
            };
            let rate = if matches!(workload, "W4" | "W5") {
                field("rows_per_s")
            } else {
                field("ops_per_s")
            };
            medians.insert(
                contestant,
                (rate, field("p50_us"), field("p99_us"), field("peak_rss_kb")),
            );
        }
        let (base, _, _, _) = medians["rusqlite"];
        for (contestant, (rate, p50, p99, rss)) in &medians {
            summary.push(format!(
                "{workload} {contestant:9} rate={rate:>11.0}/s ratio={:.2} p50_us={p50:.1} p99_us={p99:.1} peak_rss_kb={rss:.0}",
                rate / base
            ));
        }
    }
    println!("\nMedians of {runs} run(s), ratio = rate / synchronous rusqlite rate:");
    for line in summary {
        println!("{line}");
    }
}
