//! The workloads of benches/WORKLOADS.md for aiolite and for the
//! synchronous rusqlite baseline, in the same run. W1, W2, W4, W5 use one
//! `Connection`; W3, W6, W7, W8 use a `Database` (writer + 4 readers). Every
//! workload body runs as a task spawned on a 2-worker runtime, as a service
//! runs its handlers (`aiolite-main`: W1 inside `block_on` on the main
//! thread, for comparison). Transactions use the `begin()` guard, the form
//! users write first; W6closure and W7closure are the same work through the
//! `transaction(|tx| ..)` closure, W6conn W6 on one `Connection`; W6exec
//! is W6 as single `execute` writes, W6groupexec those with group commit;
//! W7group is W7 on a group-commit pool.
//! W3held is
//! W3 with a partly read stream held open on every reader (aiolite only).
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
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aiolite::{ConnectOptions, Connection, Database, Synchronous};
use futures_util::StreamExt;

/// What every contestant shares with the peers' programs: the statements,
/// the scale, the ids, the clocks and W8's rules.
#[path = "peers/harness.rs"]
#[allow(unreachable_pub)] // `pub` for the peers, which use it as a module too
mod harness;

use harness::{
    check_total, peak_rss_kb, percentile_us, transfer, transfers, user, Rng, Scale, Started, User,
    ACCOUNTS, BALANCE, EVENT, INSERT, OPENING_BALANCE, POINT, READERS, SCHEMA, SET_BALANCE, TASKS,
};

/// W5derive: rounds of (hand-written, derived) scans per run.
const DECODE_ROUNDS: usize = 4;

/// W5 decoded into a struct on the worker: derived, or by hand.
#[derive(aiolite::FromRow)]
struct UserRow {
    id: i64,
    name: String,
    email: String,
    age: i64,
    created_at: String,
}

fn user_by_hand(r: &aiolite::rusqlite::Row<'_>) -> aiolite::Result<UserRow> {
    Ok(UserRow {
        id: r.get(0)?,
        name: r.get(1)?,
        email: r.get(2)?,
        age: r.get(3)?,
        created_at: r.get(4)?,
    })
}

fn sum_users(rows: &[UserRow]) -> i64 {
    rows.iter()
        .map(|u| {
            std::hint::black_box((&u.name, &u.email, &u.created_at, u.id));
            u.age
        })
        .sum()
}

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

fn synchronous_for(workload: &str) -> Synchronous {
    if workload.starts_with("W6") {
        Synchronous::Full
    } else {
        Synchronous::Normal
    }
}

fn sync_conn(path: &Path, workload: &str) -> rusqlite::Connection {
    let c = rusqlite::Connection::open(path).expect("open");
    let sync = if synchronous_for(workload) == Synchronous::Full {
        "FULL"
    } else {
        "NORMAL"
    };
    c.execute_batch(&format!(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous={sync};"
    ))
    .expect("pragmas");
    c.busy_timeout(Duration::from_secs(5))
        .expect("busy timeout");
    c.set_prepared_statement_cache_capacity(100);
    c
}

fn options(path: &Path, workload: &str) -> ConnectOptions {
    let mut opts = ConnectOptions::new(path).synchronous(synchronous_for(workload));
    if let Some(chunk) = std::env::var("AIOLITE_BENCH_CHUNK")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        opts = opts.iter_chunk_size(chunk);
    }
    opts
}

async fn pool(path: &Path, workload: &str) -> Database {
    Database::builder(path)
        .readers(READERS)
        .group_commit(matches!(workload, "W6group" | "W6groupexec" | "W7group"))
        .options(options(path, workload))
        .open()
        .await
        .expect("open pool")
}

fn fill(path: &Path, rows: i64) {
    let _ = std::fs::remove_file(path);
    let mut c = sync_conn(path, "fill");
    c.execute_batch(SCHEMA).expect("schema");
    c.execute_batch("CREATE TABLE events(id INTEGER PRIMARY KEY, at INTEGER NOT NULL)")
        .expect("events");
    let tx = c.transaction().expect("tx");
    {
        let mut stmt = tx.prepare(INSERT).expect("prepare");
        for i in 1..=rows {
            stmt.execute(user(i)).expect("insert");
        }
    }
    tx.commit().expect("commit");
}

fn fresh(path: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
}

/// W8's accounts, every one with the same opening balance.
fn accounts(c: &rusqlite::Connection) {
    c.execute_batch(
        "CREATE TABLE accounts(id INTEGER PRIMARY KEY, balance INTEGER NOT NULL);
         CREATE TABLE events(id INTEGER PRIMARY KEY, at INTEGER NOT NULL);",
    )
    .expect("accounts");
    c.execute(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1)
         INSERT INTO accounts SELECT i, ?2 FROM n",
        (ACCOUNTS, OPENING_BALANCE),
    )
    .expect("fill accounts");
}

#[derive(Default)]
struct Outcome {
    rate: f64,
    /// W5derive: the hand-written decoder's rate, measured alongside.
    by_hand: f64,
    writes: f64,
    errors: u64,
    latencies: Vec<Duration>,
    cpu_us_per_op: f64,
}

impl Outcome {
    fn rate(done: f64, started: Started) -> Outcome {
        Outcome {
            rate: done / started.elapsed().as_secs_f64(),
            cpu_us_per_op: started.cpu_us_per(done),
            ..Outcome::default()
        }
    }
}

impl Outcome {
    /// W7's result: reads and writes per second, and the errors counted.
    fn mixed(
        started: Started,
        reads: &AtomicU64,
        writes: &AtomicU64,
        errors: &AtomicU64,
    ) -> Outcome {
        let secs = started.elapsed().as_secs_f64();
        let (reads, writes) = (
            reads.load(Ordering::Relaxed) as f64,
            writes.load(Ordering::Relaxed) as f64,
        );
        Outcome {
            rate: reads / secs,
            writes: writes / secs,
            errors: errors.load(Ordering::Relaxed),
            cpu_us_per_op: started.cpu_us_per(reads + writes),
            ..Outcome::default()
        }
    }
}

/// W5's result: every row seen, the sum used, the rate.
fn scan_outcome(rows: i64, sum: i64, scale: &Scale, started: Started) -> Outcome {
    assert_eq!(rows, scale.bulk_rows, "the scan missed rows");
    std::hint::black_box(sum);
    Outcome::rate(rows as f64, started)
}

fn point_select(c: &rusqlite::Connection, id: i64) -> User {
    c.prepare_cached(POINT)
        .expect("prepare")
        .query_row([id], |r| Ok(read_user!(r)))
        .expect("row")
}

fn run_rusqlite(workload: &str, db: &Path, scale: &Scale) -> Outcome {
    match workload {
        // One connection can do no better than this loop, however many tasks
        // share it: W2's baseline is W1's loop at W2's count.
        "W1" | "W2" => {
            let ops = if workload == "W1" {
                scale.w1_ops
            } else {
                scale.w2_ops
            };
            let c = sync_conn(db, workload);
            let mut rng = Rng::new(0);
            let mut latencies = Vec::with_capacity(ops);
            let started = Started::now();
            for _ in 0..ops {
                let t = Instant::now();
                std::hint::black_box(point_select(&c, rng.next_id(scale.point_rows)));
                latencies.push(t.elapsed());
            }
            Outcome {
                latencies,
                ..Outcome::rate(ops as f64, started)
            }
        }
        // The baseline has no pool to route: W3held compares with W3's.
        "W3" | "W3held" => {
            let per_thread = scale.w2_ops / READERS;
            let started = Started::now();
            let threads: Vec<_> = (0..READERS)
                .map(|t| {
                    let (db, max) = (db.to_path_buf(), scale.point_rows);
                    std::thread::spawn(move || {
                        let c = sync_conn(&db, "W3");
                        let mut rng = Rng::new(t as u64 + 1);
                        for _ in 0..per_thread {
                            std::hint::black_box(point_select(&c, rng.next_id(max)));
                        }
                    })
                })
                .collect();
            for t in threads {
                t.join().expect("reader thread");
            }
            Outcome::rate((per_thread * READERS) as f64, started)
        }
        "W4" => {
            fresh(db);
            let mut c = sync_conn(db, workload);
            c.execute_batch(SCHEMA).expect("schema");
            let started = Started::now();
            let tx = c.transaction().expect("tx");
            {
                let mut stmt = tx.prepare_cached(INSERT).expect("prepare");
                for i in 1..=scale.bulk_rows {
                    stmt.execute(user(i)).expect("insert");
                }
            }
            tx.commit().expect("commit");
            Outcome::rate(scale.bulk_rows as f64, started)
        }
        // W5derive: the same scan; its aiolite side decodes into a struct on
        // the worker.
        "W5" | "W5derive" => {
            let c = sync_conn(db, workload);
            let started = Started::now();
            let mut stmt = c.prepare_cached("SELECT * FROM users").expect("prepare");
            let mut rows = stmt.query([]).expect("query");
            let (mut n, mut sum) = (0i64, 0i64);
            while let Some(r) = rows.next().expect("step") {
                let u: User = read_user!(r);
                sum += u.3;
                n += 1;
            }
            drop(rows);
            scan_outcome(n, sum, scale, started)
        }
        // W6conn, W6closure, W6group: the same baseline; aiolite runs them on
        // one Connection, through the closure, with group commit.
        "W6" | "W6conn" | "W6closure" | "W6group" | "W6exec" | "W6groupexec" => {
            fresh(db);
            let mut c = sync_conn(db, workload);
            c.execute_batch(SCHEMA).expect("schema");
            let total = TASKS * scale.w6_tx_per_task;
            let started = Started::now();
            for i in 0..total {
                let tx = c.transaction().expect("begin");
                tx.prepare_cached(INSERT)
                    .expect("prepare")
                    .execute(user(i as i64))
                    .expect("insert");
                tx.commit().expect("commit");
            }
            Outcome::rate(total as f64, started)
        }
        "W7" | "W7closure" | "W7group" => {
            // One thread per reader connection plus one writer thread: the
            // writes serialize on SQLite's lock anyway.
            let stop = Arc::new(AtomicBool::new(false));
            let (reads, writes, errors) = (
                Arc::new(AtomicU64::new(0)),
                Arc::new(AtomicU64::new(0)),
                Arc::new(AtomicU64::new(0)),
            );
            let mut threads = Vec::new();
            for t in 0..READERS {
                let (db, stop, reads, max) = (
                    db.to_path_buf(),
                    stop.clone(),
                    reads.clone(),
                    scale.point_rows,
                );
                threads.push(std::thread::spawn(move || {
                    let c = sync_conn(&db, "W7");
                    let mut rng = Rng::new(t as u64 + 1);
                    while !stop.load(Ordering::Relaxed) {
                        std::hint::black_box(point_select(&c, rng.next_id(max)));
                        reads.fetch_add(1, Ordering::Relaxed);
                    }
                }));
            }
            {
                let (db, stop, writes, errors) = (
                    db.to_path_buf(),
                    stop.clone(),
                    writes.clone(),
                    errors.clone(),
                );
                threads.push(std::thread::spawn(move || {
                    let c = sync_conn(&db, "W7");
                    let mut i = 0i64;
                    while !stop.load(Ordering::Relaxed) {
                        i += 1;
                        match c.prepare_cached(EVENT).expect("prepare").execute([i]) {
                            Ok(_) => writes.fetch_add(1, Ordering::Relaxed),
                            Err(_) => errors.fetch_add(1, Ordering::Relaxed),
                        };
                    }
                }));
            }
            let started = Started::now();
            std::thread::sleep(Duration::from_secs_f64(scale.w7_secs));
            stop.store(true, Ordering::Relaxed);
            for t in threads {
                t.join().expect("thread");
            }
            Outcome::mixed(started, &reads, &writes, &errors)
        }
        "W8" => {
            fresh(db);
            let mut c = sync_conn(db, workload);
            accounts(&c);
            let total = TASKS * scale.w8_tx_per_task;
            let mut rngs: Vec<Rng> = (0..TASKS).map(|t| Rng::new(t as u64 + 1)).collect();
            let mut latencies = Vec::with_capacity(total);
            let started = Started::now();
            // The tasks' transfers, one after another: what one connection
            // can do at best.
            for i in 0..total {
                let (from, to, amount) = transfer(&mut rngs[i % TASKS]);
                let t = Instant::now();
                let tx = c.transaction().expect("begin");
                let balance = |id: i64| -> i64 {
                    tx.prepare_cached(BALANCE)
                        .expect("prepare")
                        .query_row([id], |r| r.get(0))
                        .expect("balance")
                };
                let (a, b) = (balance(from), balance(to));
                for (balance, id) in [(a - amount, from), (b + amount, to)] {
                    tx.prepare_cached(SET_BALANCE)
                        .expect("prepare")
                        .execute((balance, id))
                        .expect("update");
                }
                tx.commit().expect("commit");
                latencies.push(t.elapsed());
            }
            let outcome = Outcome::rate(total as f64, started);
            check_total(
                c.query_row("SELECT sum(balance) FROM accounts", [], |r| r.get(0))
                    .expect("sum"),
            );
            Outcome {
                latencies,
                ..outcome
            }
        }
        other => panic!("unknown workload {other}"),
    }
}

/// What W1, W2, W4 and W5 run on: one `Connection` (`aiolite`) or a
/// `Database` (`aiolite-db`: its readers, or its writer for W4).
#[derive(Clone)]
enum Target {
    Conn(Connection),
    Db(Database),
}

impl Target {
    async fn open(contestant: &str, db: &Path, workload: &str) -> Target {
        match (contestant, workload) {
            ("aiolite", _) => Target::Conn(options(db, workload).open().await.expect("open")),
            // One connection shared by 64 tasks: a pool with one reader.
            (_, "W2") => Target::Db(
                Database::builder(db)
                    .readers(1)
                    .options(options(db, workload))
                    .open()
                    .await
                    .expect("open pool"),
            ),
            _ => Target::Db(pool(db, workload).await),
        }
    }

    async fn point(&self, id: i64) -> User {
        let r = match self {
            Target::Conn(c) => c.fetch_one(POINT, (id,)).await,
            Target::Db(d) => d.fetch_one(POINT, (id,)).await,
        };
        let r = r.expect("row");
        read_user!(r)
    }

    async fn execute_script(&self, sql: &'static str) {
        match self {
            Target::Conn(c) => c.execute_script(sql).await,
            Target::Db(d) => d.execute_script(sql).await,
        }
        .expect("script");
    }

    async fn begin(&self) -> aiolite::Result<aiolite::Transaction> {
        match self {
            Target::Conn(c) => c.begin().await,
            Target::Db(d) => d.begin().await,
        }
    }

    async fn execute<P: aiolite::Params>(
        &self,
        sql: &'static str,
        params: P,
    ) -> aiolite::Result<()> {
        match self {
            Target::Conn(c) => c.execute(sql, params).await,
            Target::Db(d) => d.execute(sql, params).await,
        }
        .map(drop)
    }

    async fn transaction<F>(&self, f: F) -> aiolite::Result<()>
    where
        F: FnOnce(&mut aiolite::rusqlite::Transaction<'_>) -> aiolite::Result<()> + Send + 'static,
    {
        match self {
            Target::Conn(c) => c.transaction(f).await,
            Target::Db(d) => d.transaction(f).await,
        }
    }

    fn stream(&self, sql: &'static str) -> aiolite::RowStream {
        match self {
            Target::Conn(c) => c.stream(sql, ()),
            Target::Db(d) => d.stream(sql, ()),
        }
    }
}

/// One INSERT in a transaction of its own, in the guard form of the README.
async fn insert_in_guard<P: aiolite::Params + Send + 'static>(
    target: &Target,
    sql: &'static str,
    params: P,
) -> aiolite::Result<()> {
    let tx = target.begin().await?;
    tx.execute(sql, params).await?;
    tx.commit().await
}

async fn run_aiolite(
    contestant: &str,
    workload: &'static str,
    db: &Path,
    scale: &Scale,
) -> Outcome {
    match workload {
        "W1" => {
            let c = Target::open(contestant, db, workload).await;
            let mut rng = Rng::new(0);
            let mut latencies = Vec::with_capacity(scale.w1_ops);
            let started = Started::now();
            for _ in 0..scale.w1_ops {
                let t = Instant::now();
                std::hint::black_box(c.point(rng.next_id(scale.point_rows)).await);
                latencies.push(t.elapsed());
            }
            Outcome {
                latencies,
                ..Outcome::rate(scale.w1_ops as f64, started)
            }
        }
        "W2" | "W3" | "W3held" => {
            let target = if workload == "W2" {
                Target::open(contestant, db, workload).await
            } else {
                Target::Db(pool(db, workload).await)
            };
            // W3held: every reader keeps a partly read stream (a slow export
            // on each). Their snapshots are old, so the pool sends the fresh
            // reads elsewhere (the writer): this measures what that costs.
            let mut held = Vec::new();
            if workload == "W3held" {
                for _ in 0..READERS {
                    let mut s = target.stream("SELECT * FROM users");
                    s.next().await.expect("a row").expect("row");
                    held.push(s);
                }
            }
            let per_task = scale.w2_ops / TASKS;
            let started = Started::now();
            let handles: Vec<_> = (0..TASKS)
                .map(|t| {
                    let (target, max) = (target.clone(), scale.point_rows);
                    tokio::spawn(async move {
                        let mut rng = Rng::new(t as u64 + 1);
                        for _ in 0..per_task {
                            std::hint::black_box(target.point(rng.next_id(max)).await);
                        }
                    })
                })
                .collect();
            for h in handles {
                h.await.expect("task");
            }
            drop(held);
            Outcome::rate((per_task * TASKS) as f64, started)
        }
        "W4" => {
            fresh(db);
            let c = Target::open(contestant, db, workload).await;
            c.execute_script(SCHEMA).await;
            let rows = scale.bulk_rows;
            let started = Started::now();
            let tx = c.begin().await.expect("begin");
            let n = tx
                .execute_many(INSERT, (1..=rows).map(user))
                .await
                .expect("insert");
            tx.commit().await.expect("commit");
            assert_eq!(n as i64, rows);
            Outcome::rate(rows as f64, started)
        }
        "W5" => {
            let c = Target::open(contestant, db, workload).await;
            let started = Started::now();
            let mut stream = c.stream("SELECT * FROM users");
            let (mut n, mut sum) = (0i64, 0i64);
            while let Some(r) = stream.next().await {
                let r = r.expect("row");
                let u: User = read_user!(r);
                sum += u.3;
                n += 1;
            }
            scan_outcome(n, sum, scale, started)
        }
        // The derive against hand-written `row.get` calls, both decoding
        // into the same struct on the worker, alternated in one process so the
        // machine's speed modes hit both alike. The rate is the derive's; the
        // hand-written rate rides in `by_hand`.
        "W5derive" => {
            let c = options(db, workload).open().await.expect("open");
            let (mut derived, mut by_hand) = (Vec::new(), Vec::new());
            // CPU per row over both decoders' rounds.
            let all_rounds = Started::now();
            for round in 0..DECODE_ROUNDS {
                for derive in [round % 2 == 0, round % 2 == 1] {
                    let started = Started::now();
                    let mut stream = if derive {
                        use aiolite::Executor;
                        c.stream_as::<UserRow, _>("SELECT * FROM users", ())
                    } else {
                        c.stream_with("SELECT * FROM users", (), user_by_hand)
                    };
                    let (mut n, mut sum) = (0i64, 0i64);
                    while let Some(u) = stream.next().await {
                        let u = u.expect("row");
                        sum += sum_users(std::slice::from_ref(&u));
                        n += 1;
                    }
                    let rate = scan_outcome(n, sum, scale, started).rate;
                    if derive {
                        derived.push(rate);
                    } else {
                        by_hand.push(rate);
                    }
                }
            }
            Outcome {
                rate: median(derived),
                by_hand: median(by_hand),
                cpu_us_per_op: all_rounds
                    .cpu_us_per((2 * DECODE_ROUNDS) as f64 * scale.bulk_rows as f64),
                ..Outcome::default()
            }
        }
        "W6" | "W6conn" | "W6closure" | "W6group" | "W6exec" | "W6groupexec" => {
            fresh(db);
            let target = if workload == "W6conn" {
                Target::Conn(options(db, workload).open().await.expect("open"))
            } else {
                Target::Db(pool(db, workload).await)
            };
            target.execute_script(SCHEMA).await;
            let per_task = scale.w6_tx_per_task;
            let started = Started::now();
            let handles: Vec<_> = (0..TASKS)
                .map(|t| {
                    let target = target.clone();
                    tokio::spawn(async move {
                        for i in 0..per_task {
                            let row = user((t * per_task + i) as i64);
                            if workload == "W6closure" {
                                target
                                    .transaction(move |tx| {
                                        tx.prepare_cached(INSERT)?.execute(row)?;
                                        Ok(())
                                    })
                                    .await
                            } else if matches!(workload, "W6exec" | "W6groupexec") {
                                // One statement, its own transaction.
                                target.execute(INSERT, row).await
                            } else {
                                insert_in_guard(&target, INSERT, row).await
                            }
                            .expect("transaction");
                        }
                    })
                })
                .collect();
            for h in handles {
                h.await.expect("task");
            }
            Outcome::rate((per_task * TASKS) as f64, started)
        }
        // The writers write through a transaction each, in the guard form
        // (W7) or the closure form (W7closure): the baseline's writer is one
        // autocommit INSERT per transaction, the same work.
        "W7" | "W7closure" | "W7group" => {
            let db = pool(db, workload).await;
            let target = Target::Db(db.clone());
            let stop = Arc::new(AtomicBool::new(false));
            let (reads, writes, errors) = (
                Arc::new(AtomicU64::new(0)),
                Arc::new(AtomicU64::new(0)),
                Arc::new(AtomicU64::new(0)),
            );
            let mut handles = Vec::new();
            for t in 0..32 {
                let (db, stop, reads, max) = (
                    target.clone(),
                    stop.clone(),
                    reads.clone(),
                    scale.point_rows,
                );
                handles.push(tokio::spawn(async move {
                    let mut rng = Rng::new(t + 1);
                    while !stop.load(Ordering::Relaxed) {
                        std::hint::black_box(db.point(rng.next_id(max)).await);
                        reads.fetch_add(1, Ordering::Relaxed);
                    }
                }));
            }
            for t in 0..4i64 {
                let (target, stop, writes, errors) =
                    (target.clone(), stop.clone(), writes.clone(), errors.clone());
                handles.push(tokio::spawn(async move {
                    let mut i = t * 1_000_000_000;
                    while !stop.load(Ordering::Relaxed) {
                        i += 1;
                        let r = if workload == "W7closure" {
                            target
                                .transaction(move |tx| {
                                    tx.prepare_cached(EVENT)?.execute([i])?;
                                    Ok(())
                                })
                                .await
                        } else {
                            insert_in_guard(&target, EVENT, (i,)).await
                        };
                        match r {
                            Ok(()) => writes.fetch_add(1, Ordering::Relaxed),
                            Err(_) => errors.fetch_add(1, Ordering::Relaxed),
                        };
                    }
                }));
            }
            let started = Started::now();
            tokio::time::sleep(Duration::from_secs_f64(scale.w7_secs)).await;
            stop.store(true, Ordering::Relaxed);
            for h in handles {
                h.await.expect("task");
            }
            Outcome::mixed(started, &reads, &writes, &errors)
        }
        "W8" => {
            fresh(db);
            accounts(&sync_conn(db, workload));
            let db = pool(db, workload).await;
            let started = Started::now();
            let client = db.clone();
            let latencies = transfers(scale.w8_tx_per_task, move |from, to, amount| {
                let db = client.clone();
                async move {
                    let tx = db.begin().await.expect("begin");
                    let a: i64 = tx
                        .fetch_one(BALANCE, (from,))
                        .await
                        .expect("a")
                        .get(0)
                        .expect("a");
                    let b: i64 = tx
                        .fetch_one(BALANCE, (to,))
                        .await
                        .expect("b")
                        .get(0)
                        .expect("b");
                    tx.execute(SET_BALANCE, (a - amount, from))
                        .await
                        .expect("debit");
                    tx.execute(SET_BALANCE, (b + amount, to))
                        .await
                        .expect("credit");
                    tx.commit().await.expect("commit");
                }
            })
            .await;
            let outcome = Outcome::rate(latencies.len() as f64, started);
            let total: i64 = db
                .fetch_one("SELECT sum(balance) FROM accounts", ())
                .await
                .expect("sum")
                .get(0)
                .expect("sum");
            check_total(total);
            Outcome {
                latencies,
                ..outcome
            }
        }
        other => panic!("unknown workload {other}"),
    }
}

const WORKLOADS: [&str; 17] = [
    "W1",
    "W2",
    "W3",
    "W3held",
    "W4",
    "W5",
    "W5derive",
    "W6",
    "W6conn",
    "W6closure",
    "W6group",
    "W6exec",
    "W6groupexec",
    "W7",
    "W7closure",
    "W7group",
    "W8",
];

fn unit(workload: &str) -> &'static str {
    match workload {
        "W4" | "W5" | "W5derive" => "rows_per_s",
        "W6" | "W6conn" | "W6closure" | "W6group" | "W6exec" | "W6groupexec" | "W8" => "tx_per_s",
        _ => "ops_per_s",
    }
}

fn child(contestant: &str, workload: &str, db: &Path) {
    let scale = Scale::from_env();
    let mut outcome = match contestant {
        "rusqlite" => run_rusqlite(workload, db, &scale),
        "aiolite" | "aiolite-db" | "aiolite-main" => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            let workload: &'static str = WORKLOADS
                .iter()
                .find(|w| **w == workload)
                .expect("a known workload");
            if contestant == "aiolite-main" {
                // The old form: the body inside `block_on` on the main
                // thread, which the runtime's wake-ups never reach.
                rt.block_on(run_aiolite("aiolite", workload, db, &scale))
            } else {
                // As a service runs its handlers: a task on the runtime's
                // workers.
                let (contestant, db) = (contestant.to_owned(), db.to_path_buf());
                rt.block_on(async move {
                    tokio::spawn(
                        async move { run_aiolite(&contestant, workload, &db, &scale).await },
                    )
                    .await
                    .expect("the workload's task")
                })
            }
        }
        other => panic!("unknown contestant {other}"),
    };
    outcome.latencies.sort_unstable();
    println!(
        "RESULT contestant={contestant} workload={workload} {}={:.0} cpu_us_per_op={:.2} by_hand={:.0} writes_per_s={:.0} p50_us={:.1} p99_us={:.1} peak_rss_kb={} errors={} sqlite={}",
        unit(workload),
        outcome.rate,
        outcome.cpu_us_per_op,
        outcome.by_hand,
        outcome.writes,
        percentile_us(&outcome.latencies, 0.50),
        percentile_us(&outcome.latencies, 0.99),
        peak_rss_kb(),
        outcome.errors,
        rusqlite::version(),
    );
}

fn parse_result(line: &str) -> BTreeMap<String, String> {
    line.split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// The round trip of one cache line between two threads spinning on it, in
/// nanoseconds: how fast the machine hands data from one core to another
/// right now. This VM flips between about 100 ns and about 500 ns (its two
/// vCPUs sharing a core complex or not), and every figure that hands a
/// request to a worker thread and an answer back follows it (W3: 145k-160k
/// queries/s at ~500 ns, 226k-263k at ~100 ns, the baseline alike in both),
/// so it is measured before every child and reported with its round.
fn handoff_ns() -> f64 {
    const TRIPS: u64 = 20_000;
    const BATCH: u64 = 2_000;
    let flag = Arc::new(AtomicU64::new(0));
    let wait = |flag: &AtomicU64, value: u64| {
        let mut spins = 0u32;
        while flag.load(Ordering::Acquire) != value {
            spins += 1;
            // Two spinners sharing one vCPU would wait out a time slice per
            // trip: let the other run now and then.
            if spins.is_multiple_of(1024) {
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
    };
    let echo = {
        let flag = Arc::clone(&flag);
        std::thread::spawn(move || {
            for i in 0..TRIPS {
                wait(&flag, 2 * i + 1);
                flag.store(2 * i + 2, Ordering::Release);
            }
        })
    };
    // Batches, and their median: a batch the scheduler interrupted (the
    // last child's exit, another process) says nothing of the hand-over.
    let mut batches = Vec::new();
    for batch in 0..TRIPS / BATCH {
        let started = Instant::now();
        for i in batch * BATCH..(batch + 1) * BATCH {
            flag.store(2 * i + 1, Ordering::Release);
            wait(&flag, 2 * i + 2);
        }
        batches.push(started.elapsed().as_nanos() as f64 / BATCH as f64);
    }
    echo.join().expect("echo thread");
    median(batches)
}

/// One figure of a contestant's results, round by round (0 where a round
/// did not report it).
fn per_round(results: &[BTreeMap<String, String>], key: &str) -> Vec<f64> {
    results
        .iter()
        .map(|r| r.get(key).and_then(|v| v.parse().ok()).unwrap_or(0.0))
        .collect()
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

/// Who runs a workload: the baseline and aiolite in this program, the peers
/// in theirs (`AIOLITE_BENCH_PEERS=name=path,...`, set by benches/run.sh).
struct Contestant {
    name: String,
    program: PathBuf,
}

fn contestants_for(workload: &str, all: &[Contestant]) -> Vec<usize> {
    (0..all.len())
        .filter(|&i| match all[i].name.as_str() {
            "rusqlite" | "aiolite" => true,
            // W3, W6, W7 and W8 already run aiolite on a Database.
            "aiolite-db" => matches!(workload, "W1" | "W2" | "W4" | "W5"),
            "aiolite-main" => workload == "W1",
            // aiolite's own questions: what held readers cost, the other
            // transaction forms, one Connection, group commit.
            _ if matches!(
                workload,
                "W3held"
                    | "W5derive"
                    | "W6conn"
                    | "W6closure"
                    | "W6group"
                    | "W6exec"
                    | "W6groupexec"
                    | "W7closure"
                    | "W7group"
            ) =>
            {
                false
            }
            // Peers: the workloads of WORKLOADS.md.
            _ => matches!(
                workload,
                "W1" | "W2" | "W3" | "W4" | "W5" | "W6" | "W7" | "W8"
            ),
        })
        .collect()
}

/// The medians of one contestant on one workload.
#[derive(Clone, Default)]
struct Medians {
    rate: f64,
    writes: f64,
    p50: f64,
    p99: f64,
    rss_kb: f64,
    errors: f64,
    by_hand: f64,
    cpu_us_per_op: f64,
    sqlite: String,
    /// The ratio to the baseline in each round, in round order: a goal must
    /// hold in every round, not only for the median.
    round_ratios: Vec<f64>,
    /// [`handoff_ns`] just before this contestant's run, per round.
    round_handoffs: Vec<f64>,
    /// The p50 latency in each round (W1), in round order.
    round_p50s: Vec<f64>,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("child") {
        child(&args[2], &args[3], Path::new(&args[4]));
        return;
    }
    if args.get(1).map(String::as_str) == Some("fill") {
        // benches/callgrind.sh: the point table, for children run alone.
        fill(Path::new(&args[2]), Scale::from_env().point_rows);
        return;
    }
    let runs: usize = std::env::var("AIOLITE_BENCH_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let only = std::env::var("AIOLITE_BENCH_ONLY").unwrap_or_default();
    let wanted = |w: &str| only.is_empty() || only.split(',').any(|o| o == w);
    let scale = Scale::from_env();
    let dir = tempfile::tempdir().expect("tempdir");
    let point_db: PathBuf = dir.path().join("point.db");
    let bulk_db: PathBuf = dir.path().join("bulk.db");
    eprintln!(
        "preparing {} and {} rows",
        scale.point_rows, scale.bulk_rows
    );
    // AIOLITE_BENCH_REPLAY=log: the RESULT lines a full run printed, taken
    // in their order instead of running the children again, so that the
    // report can be rewritten (an edited HOW.md) from the same measurements.
    let mut replay: Option<BTreeMap<(String, String), std::collections::VecDeque<String>>> =
        std::env::var("AIOLITE_BENCH_REPLAY").ok().map(|path| {
            let log = std::fs::read_to_string(&path).expect("AIOLITE_BENCH_REPLAY: a run's output");
            let mut lines: BTreeMap<_, std::collections::VecDeque<String>> = BTreeMap::new();
            for line in log.lines().filter(|l| l.starts_with("RESULT ")) {
                let r = parse_result(line);
                let key = (r["workload"].clone(), r["contestant"].clone());
                lines.entry(key).or_default().push_back(line.to_owned());
            }
            lines
        });
    if replay.is_none() {
        fill(&point_db, scale.point_rows);
    }
    if replay.is_none() && (wanted("W5") || wanted("W5derive")) {
        fill(&bulk_db, scale.bulk_rows);
    }
    let exe = std::env::current_exe().expect("exe");
    let mut all: Vec<Contestant> = ["rusqlite", "aiolite", "aiolite-db", "aiolite-main"]
        .iter()
        .map(|n| Contestant {
            name: (*n).to_owned(),
            program: exe.clone(),
        })
        .collect();
    for peer in std::env::var("AIOLITE_BENCH_PEERS")
        .unwrap_or_default()
        .split(',')
        .filter(|p| !p.is_empty())
    {
        let (name, program) = peer
            .split_once('=')
            .expect("AIOLITE_BENCH_PEERS: name=path");
        all.push(Contestant {
            name: name.to_owned(),
            program: PathBuf::from(program),
        });
    }

    let mut table: Vec<(&str, Vec<(String, Medians)>)> = Vec::new();
    for workload in WORKLOADS {
        if !wanted(workload) {
            continue;
        }
        let db = match workload {
            "W1" | "W2" | "W3" | "W3held" | "W7" | "W7closure" | "W7group" => point_db.clone(),
            "W5" | "W5derive" => bulk_db.clone(),
            _ => dir.path().join(format!("{workload}.db")),
        };
        let who = contestants_for(workload, &all);
        let mut results: Vec<Vec<BTreeMap<String, String>>> = vec![Vec::new(); who.len()];
        // Round-robin: each round runs every contestant once, so the
        // machine's drift between rounds hits all of them alike.
        for _ in 0..runs {
            for (slot, &i) in who.iter().enumerate() {
                let c = &all[i];
                if let Some(lines) = replay.as_mut() {
                    let line = lines
                        .get_mut(&(workload.to_string(), c.name.clone()))
                        .and_then(|q| q.pop_front())
                        .unwrap_or_else(|| {
                            panic!("the replayed run has no {} {workload} round left", c.name)
                        });
                    println!("{line}");
                    results[slot].push(parse_result(&line));
                    continue;
                }
                let handoff = handoff_ns();
                let out = Command::new(&c.program)
                    .args(["child", &c.name, workload])
                    .arg(&db)
                    .output()
                    .expect("child");
                assert!(
                    out.status.success(),
                    "{} {workload} failed: {}",
                    c.name,
                    String::from_utf8_lossy(&out.stderr)
                );
                let text = String::from_utf8_lossy(&out.stdout);
                let line = text
                    .lines()
                    .find(|l| l.starts_with("RESULT"))
                    .expect("a RESULT line")
                    .to_owned();
                println!("{line} handoff_ns={handoff:.0}");
                let mut parsed = parse_result(&line);
                parsed.insert("handoff_ns".to_owned(), format!("{handoff:.0}"));
                results[slot].push(parsed);
            }
        }
        // Each round's baseline (the first contestant, synchronous rusqlite).
        let base_rates: Vec<f64> = results
            .first()
            .map(|rs| per_round(rs, unit(workload)))
            .unwrap_or_default();
        let row = who
            .iter()
            .zip(&results)
            .map(|(&i, rs)| {
                let round_ratios = per_round(rs, unit(workload))
                    .iter()
                    .zip(&base_rates)
                    .map(|(rate, base)| if *base > 0.0 { rate / base } else { 0.0 })
                    .collect();
                let field = |k: &str| median(per_round(rs, k));
                let m = Medians {
                    rate: field(unit(workload)),
                    writes: field("writes_per_s"),
                    p50: field("p50_us"),
                    p99: field("p99_us"),
                    rss_kb: field("peak_rss_kb"),
                    errors: field("errors"),
                    by_hand: field("by_hand"),
                    cpu_us_per_op: field("cpu_us_per_op"),
                    sqlite: rs
                        .first()
                        .and_then(|r| r.get("sqlite").cloned())
                        .unwrap_or_default(),
                    round_ratios,
                    round_handoffs: per_round(rs, "handoff_ns"),
                    round_p50s: per_round(rs, "p50_us"),
                };
                (all[i].name.clone(), m)
            })
            .collect();
        table.push((workload, row));
    }

    println!("\nMedians of {runs} run(s), ratio = contestant / synchronous rusqlite in this run:");
    for (workload, row) in &table {
        let base = &row[0].1;
        for (name, m) in row {
            let mut line = format!(
                "{workload} {name:15} {:>11.0} {} ratio={:.2} cpu_us_per_op={:.2} cpu_ratio={:.2} p50_us={:.1} p99_us={:.1} peak_rss_kb={:.0}",
                m.rate,
                unit(workload),
                m.rate / base.rate,
                m.cpu_us_per_op,
                m.cpu_us_per_op / base.cpu_us_per_op,
                m.p50,
                m.p99,
                m.rss_kb
            );
            let rounds: Vec<String> = m
                .round_ratios
                .iter()
                .zip(&m.round_handoffs)
                .map(|(r, h)| format!("{r:.2}@{h:.0}ns"))
                .collect();
            line += &format!(" rounds=[{}]", rounds.join(","));
            if workload.starts_with("W7") {
                line += &format!(
                    " writes_per_s={:.0} writes_ratio={:.2} locked_errors={:.0}",
                    m.writes,
                    m.writes / base.writes,
                    m.errors
                );
            }
            println!("{line}");
        }
        if *workload == "W5derive" {
            if let Some((_, m)) = row.iter().find(|(n, _)| n == "aiolite") {
                println!(
                    "W5 decoded into a struct on the worker: #[derive(FromRow)] {:.0} rows/s, hand-written row.get {:.0} rows/s (alternated in each run): derive overhead {:+.1} %",
                    m.rate,
                    m.by_hand,
                    (m.by_hand / m.rate - 1.0) * 100.0
                );
            }
        }
    }
    if let Ok(path) = std::env::var("AIOLITE_BENCH_REPORT") {
        let report = report::Report {
            table: &table,
            runs,
            scale: std::env::var("AIOLITE_BENCH_SCALE").unwrap_or_else(|_| "1".to_owned()),
        };
        report.write(Path::new(&path)).expect("write the report");
        eprintln!("wrote {path}");
    }
}

#[path = "workloads/report.rs"]
mod report;
