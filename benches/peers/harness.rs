//! What every contestant's program shares (included with `#[path]`): the
//! workloads' constants and sizes, the id generator, the clocks, W8's rules
//! and driver, and the RESULT line. benches/workloads.rs (the baseline and
//! aiolite) includes it too, so all of them run from this one copy;
//! benches/run.sh runs them all.

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
/// W8: accounts, what each starts with, and the statements of a transfer.
pub const ACCOUNTS: i64 = 1_000;
pub const OPENING_BALANCE: i64 = 1_000;
pub const BALANCE: &str = "SELECT balance FROM accounts WHERE id = ?";
pub const SET_BALANCE: &str = "UPDATE accounts SET balance = ? WHERE id = ?";
pub const ACCOUNTS_SCHEMA: &str =
    "CREATE TABLE accounts(id INTEGER PRIMARY KEY, balance INTEGER NOT NULL);
     WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000)
     INSERT INTO accounts SELECT i, 1000 FROM n;";

pub type User = (i64, String, String, i64, String);

pub struct Scale {
    pub point_rows: i64,
    pub w1_ops: usize,
    pub w2_ops: usize,
    pub bulk_rows: i64,
    pub w6_tx_per_task: usize,
    pub w7_secs: f64,
    pub w8_tx_per_task: usize,
}

impl Scale {
    pub fn from_env() -> Scale {
        let f: f64 = std::env::var("AIOLITE_BENCH_SCALE")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(1.0);
        let n = |base: f64| (base * f).max(1.0) as i64;
        // benches/callgrind.sh: W1's and W2's operation counts alone, on
        // the full table, so that two counts differ only by operations.
        let ops: Option<usize> = std::env::var("AIOLITE_BENCH_OPS")
            .ok()
            .and_then(|s| s.parse().ok());
        Scale {
            point_rows: n(100_000.0),
            w1_ops: ops.unwrap_or(n(50_000.0) as usize),
            w2_ops: ops.unwrap_or(n(200_000.0) as usize),
            bulk_rows: n(1_000_000.0),
            w6_tx_per_task: n(200.0) as usize,
            w7_secs: (5.0 * f).max(1.0),
            w8_tx_per_task: n(400.0) as usize,
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

/// xorshift64*: deterministic ids without a dependency, the same in every
/// contestant.
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

/// W8's next transfer: two different accounts and an amount.
pub fn transfer(rng: &mut Rng) -> (i64, i64, i64) {
    let from = rng.next_id(ACCOUNTS);
    let mut to = rng.next_id(ACCOUNTS);
    while to == from {
        to = rng.next_id(ACCOUNTS);
    }
    (from, to, rng.next_id(100))
}

/// W8's 64 tasks: each runs `per_task` transfers through `one` (the peer's
/// transaction), timed one by one; every latency, once all have finished.
pub async fn transfers<F, Fut>(per_task: usize, one: F) -> Vec<Duration>
where
    F: Fn(i64, i64, i64) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            let one = one.clone();
            tokio::spawn(async move {
                let mut rng = Rng::new(t as u64 + 1);
                let mut latencies = Vec::with_capacity(per_task);
                for _ in 0..per_task {
                    let (from, to, amount) = transfer(&mut rng);
                    let started = Instant::now();
                    one(from, to, amount).await;
                    latencies.push(started.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("task"));
    }
    all
}

/// Money is neither made nor lost: every transfer was one transaction.
pub fn check_total(total: i64) {
    assert_eq!(
        total,
        ACCOUNTS * OPENING_BALANCE,
        "a transfer was lost or torn"
    );
}

/// When a measured section began: the wall clock, and the CPU time the
/// whole process had used by then.
#[derive(Clone, Copy)]
pub struct Started {
    at: Instant,
    cpu: f64,
}

impl Started {
    pub fn now() -> Started {
        Started {
            at: Instant::now(),
            cpu: cpu_seconds(),
        }
    }

    pub fn elapsed(&self) -> Duration {
        self.at.elapsed()
    }

    /// CPU microseconds per operation since then, every thread counted, so
    /// a lead bought with spinning threads shows as cost.
    pub fn cpu_us_per(&self, ops: f64) -> f64 {
        (cpu_seconds() - self.cpu) / ops.max(1.0) * 1e6
    }
}

/// User + system CPU seconds of this process, all threads.
#[allow(unsafe_code)] // aiolite's workspace denies it; getrusage is the point
fn cpu_seconds() -> f64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: `usage` is a valid, writable `rusage`; getrusage fills it.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) } != 0 {
        return 0.0;
    }
    // SAFETY: zeroed is a valid `rusage` (plain integers), and getrusage
    // succeeded.
    let usage = unsafe { usage.assume_init() };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

/// PRAGMAs of WORKLOADS.md: WAL, synchronous NORMAL (FULL for W6).
pub fn pragmas(workload: &str) -> String {
    let sync = if workload.starts_with("W6") {
        "FULL"
    } else {
        "NORMAL"
    };
    format!("PRAGMA journal_mode=WAL; PRAGMA synchronous={sync}; PRAGMA busy_timeout=5000;")
}

#[derive(Default)]
pub struct Outcome {
    pub rate: f64,
    pub writes: f64,
    pub errors: u64,
    pub latencies: Vec<Duration>,
    pub cpu_us_per_op: f64,
}

impl Outcome {
    pub fn rate(done: f64, started: Started) -> Outcome {
        Outcome {
            rate: done / started.elapsed().as_secs_f64(),
            cpu_us_per_op: started.cpu_us_per(done),
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

/// Runs a workload's body as a task spawned on the runtime, as a service
/// runs its handlers (benches/WORKLOADS.md), not inside `block_on`.
pub fn spawned<F>(rt: &tokio::runtime::Runtime, body: F) -> Outcome
where
    F: std::future::Future<Output = Outcome> + Send + 'static,
{
    rt.block_on(async move { tokio::spawn(body).await.expect("the workload's task") })
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

pub fn peak_rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

pub fn percentile_us(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e6
}

pub fn unit(workload: &str) -> &'static str {
    match workload {
        "W4" | "W5" => "rows_per_s",
        "W6" | "W8" => "tx_per_s",
        _ => "ops_per_s",
    }
}

/// Prints the RESULT line of WORKLOADS.md.
pub fn report(contestant: &str, workload: &str, mut outcome: Outcome, sqlite: &str) {
    outcome.latencies.sort_unstable();
    println!(
        "RESULT contestant={contestant} workload={workload} {}={:.0} cpu_us_per_op={:.2} writes_per_s={:.0} p50_us={:.1} p99_us={:.1} peak_rss_kb={} errors={} sqlite={sqlite}",
        unit(workload),
        outcome.rate,
        outcome.cpu_us_per_op,
        outcome.writes,
        percentile_us(&outcome.latencies, 0.50),
        percentile_us(&outcome.latencies, 0.99),
        peak_rss_kb(),
        outcome.errors,
    );
}
