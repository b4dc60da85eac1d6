//! What every peer program shares (included with `#[path]`): the workloads'
//! constants and sizes, the id generator, and the RESULT line. They match
//! benches/workloads.rs, which runs the baseline and aiolite on the same
//! files; benches/run.sh runs them all.

#![allow(dead_code)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

pub const POINT: &str = "SELECT * FROM users WHERE id = ?";
pub const INSERT: &str = "INSERT INTO users(name, email, age, created_at) VALUES (?, ?, ?, ?)";
pub const SCAN: &str = "SELECT * FROM users";
pub const EVENT: &str = "INSERT INTO events(at) VALUES (?)";
pub const SCHEMA: &str = "CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT NOT NULL,
                       email TEXT NOT NULL, age INTEGER NOT NULL,
                       created_at TEXT NOT NULL)";
pub const TASKS: usize = 64;
pub const READERS: usize = 4;
pub const W7_READERS: u64 = 32;
pub const W7_WRITERS: i64 = 4;

pub type User = (i64, String, String, i64, String);

pub struct Scale {
    pub point_rows: i64,
    pub w1_ops: usize,
    pub w2_ops: usize,
    pub bulk_rows: i64,
    pub w6_tx_per_task: usize,
    pub w7_secs: f64,
}

impl Scale {
    pub fn from_env() -> Scale {
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
            w6_tx_per_task: n(200.0) as usize,
            w7_secs: (5.0 * f).max(1.0),
        }
    }
}

pub fn user(i: i64) -> (String, String, i64, String) {
    (
        format!("user{i}"),
        format!("user{i}@example.com"),
        18 + i % 60,
        "2026-01-01T00:00:00Z".to_owned(),
    )
}

/// xorshift64*, seeded as in benches/workloads.rs: the same ids.
pub struct Rng(u64);
impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(0x9E37_79B9_7F4A_7C15 ^ seed.wrapping_mul(0x2545_F491))
    }
    pub fn next_id(&mut self, max: i64) -> i64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % max as u64) as i64 + 1
    }
}

/// PRAGMAs of WORKLOADS.md: WAL, synchronous NORMAL (FULL for W6).
pub fn pragmas(workload: &str) -> String {
    let sync = if workload.starts_with("W6") { "FULL" } else { "NORMAL" };
    format!("PRAGMA journal_mode=WAL; PRAGMA synchronous={sync}; PRAGMA busy_timeout=5000;")
}

#[derive(Default)]
pub struct Outcome {
    pub rate: f64,
    pub writes: f64,
    pub errors: u64,
    pub latencies: Vec<Duration>,
}

impl Outcome {
    pub fn rate(done: f64, started: Instant) -> Outcome {
        Outcome {
            rate: done / started.elapsed().as_secs_f64(),
            ..Outcome::default()
        }
    }
}

/// `PROGRAM child WORKLOAD DB`: the workload and the database file.
pub fn args() -> (String, PathBuf) {
    let args: Vec<String> = std::env::args().collect();
    assert!(
        args.len() == 5 && args[1] == "child",
        "usage: {} child CONTESTANT WORKLOAD DB",
        args[0]
    );
    (args[3].clone(), PathBuf::from(&args[4]))
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
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

fn percentile_us(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e6
}

pub fn unit(workload: &str) -> &'static str {
    match workload {
        "W4" | "W5" => "rows_per_s",
        "W6" => "tx_per_s",
        _ => "ops_per_s",
    }
}

/// Prints the RESULT line of WORKLOADS.md.
pub fn report(contestant: &str, workload: &str, mut outcome: Outcome, sqlite: &str) {
    outcome.latencies.sort_unstable();
    println!(
        "RESULT contestant={contestant} workload={workload} {}={:.0} writes_per_s={:.0} p50_us={:.1} p99_us={:.1} peak_rss_kb={} errors={} sqlite={sqlite}",
        unit(workload),
        outcome.rate,
        outcome.writes,
        percentile_us(&outcome.latencies, 0.50),
        percentile_us(&outcome.latencies, 0.99),
        peak_rss_kb(),
        outcome.errors,
    );
}
