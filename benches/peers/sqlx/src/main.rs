//! sqlx's SQLite driver on the workloads: a `SqliteConnection` where one
//! task works alone (W1, W4, W5), a pool of one connection where 64 tasks
//! share one (W2), pools of 4 for W3, W6 and W7's reads (plus a pool of one
//! writer for W7's writes).

#[path = "../../harness.rs"]
mod harness;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::TryStreamExt;
use harness::*;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteRow, SqliteSynchronous,
};
use sqlx::{ConnectOptions, Connection, Row};

fn options(db: &Path, workload: &str) -> SqliteConnectOptions {
    let sync = if workload.starts_with("W6") {
        SqliteSynchronous::Full
    } else {
        SqliteSynchronous::Normal
    };
    SqliteConnectOptions::new()
        .filename(db)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(sync)
        .busy_timeout(Duration::from_secs(5))
}

async fn connect(db: &Path, workload: &str) -> SqliteConnection {
    options(db, workload).connect().await.expect("connect")
}

async fn pool(db: &Path, workload: &str, n: u32) -> SqlitePool {
    SqlitePoolOptions::new()
        .max_connections(n)
        .min_connections(n)
        .connect_with(options(db, workload))
        .await
        .expect("pool")
}

fn read_user(r: &SqliteRow) -> User {
    (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4))
}

async fn point<'c, E: sqlx::SqliteExecutor<'c>>(e: E, id: i64) -> User {
    let row = sqlx::query(POINT).bind(id).fetch_one(e).await.expect("point");
    read_user(&row)
}

fn fresh(db: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
}

async fn run(workload: &str, db: &Path, s: &Scale) -> Outcome {
    match workload {
        "W1" => {
            let mut c = connect(db, workload).await;
            let mut rng = Rng::new(0);
            let mut latencies = Vec::with_capacity(s.w1_ops);
            let started = Started::now();
            for _ in 0..s.w1_ops {
                let t = Instant::now();
                std::hint::black_box(point(&mut c, rng.next_id(s.point_rows)).await);
                latencies.push(t.elapsed());
            }
            Outcome { latencies, ..Outcome::rate(s.w1_ops as f64, started) }
        }
        "W2" | "W3" => {
            let n = if workload == "W2" { 1 } else { READERS as u32 };
            let p = pool(db, workload, n).await;
            let per_task = s.w2_ops / TASKS;
            let started = Started::now();
            let tasks: Vec<_> = (0..TASKS)
                .map(|t| {
                    let (p, max) = (p.clone(), s.point_rows);
                    tokio::spawn(async move {
                        let mut rng = Rng::new(t as u64 + 1);
                        for _ in 0..per_task {
                            std::hint::black_box(point(&p, rng.next_id(max)).await);
                        }
                    })
                })
                .collect();
            for t in tasks {
                t.await.expect("task");
            }
            Outcome::rate((per_task * TASKS) as f64, started)
        }
        "W4" => {
            fresh(db);
            let mut c = connect(db, workload).await;
            sqlx::raw_sql(SCHEMA).execute(&mut c).await.expect("schema");
            let started = Started::now();
            let mut tx = c.begin().await.expect("begin");
            for i in 1..=s.bulk_rows {
                let (name, email, age, at) = user(i);
                sqlx::query(INSERT)
                    .bind(name)
                    .bind(email)
                    .bind(age)
                    .bind(at)
                    .execute(&mut *tx)
                    .await
                    .expect("insert");
            }
            tx.commit().await.expect("commit");
            Outcome::rate(s.bulk_rows as f64, started)
        }
        "W5" => {
            let mut c = connect(db, workload).await;
            let started = Started::now();
            let mut rows = sqlx::query(SCAN).fetch(&mut c);
            let (mut n, mut sum) = (0i64, 0i64);
            while let Some(r) = rows.try_next().await.expect("row") {
                let u = read_user(&r);
                sum += u.3;
                n += 1;
            }
            assert_eq!(n, s.bulk_rows);
            std::hint::black_box(sum);
            Outcome::rate(n as f64, started)
        }
        "W6" => {
            fresh(db);
            let p = pool(db, workload, READERS as u32).await;
            sqlx::raw_sql(SCHEMA).execute(&p).await.expect("schema");
            let per_task = s.w6_tx_per_task;
            let started = Started::now();
            let tasks: Vec<_> = (0..TASKS)
                .map(|t| {
                    let p = p.clone();
                    tokio::spawn(async move {
                        for i in 0..per_task {
                            let (name, email, age, at) = user((t * per_task + i) as i64);
                            let mut tx = p.begin().await.expect("begin");
                            sqlx::query(INSERT)
                                .bind(name)
                                .bind(email)
                                .bind(age)
                                .bind(at)
                                .execute(&mut *tx)
                                .await
                                .expect("insert");
                            tx.commit().await.expect("commit");
                        }
                    })
                })
                .collect();
            for t in tasks {
                t.await.expect("task");
            }
            Outcome::rate((per_task * TASKS) as f64, started)
        }
        "W7" => {
            let readers = pool(db, workload, READERS as u32).await;
            let writer = pool(db, workload, 1).await;
            let stop = Arc::new(AtomicBool::new(false));
            let counts = Arc::new([AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)]);
            let mut tasks = Vec::new();
            for t in 0..W7_READERS {
                let (p, stop, counts, max) =
                    (readers.clone(), stop.clone(), counts.clone(), s.point_rows);
                tasks.push(tokio::spawn(async move {
                    let mut rng = Rng::new(t + 1);
                    while !stop.load(Ordering::Relaxed) {
                        std::hint::black_box(point(&p, rng.next_id(max)).await);
                        counts[0].fetch_add(1, Ordering::Relaxed);
                    }
                }));
            }
            for t in 0..W7_WRITERS {
                let (p, stop, counts) = (writer.clone(), stop.clone(), counts.clone());
                tasks.push(tokio::spawn(async move {
                    let mut i = t * 1_000_000_000;
                    while !stop.load(Ordering::Relaxed) {
                        i += 1;
                        match sqlx::query(EVENT).bind(i).execute(&p).await {
                            Ok(_) => counts[1].fetch_add(1, Ordering::Relaxed),
                            Err(_) => counts[2].fetch_add(1, Ordering::Relaxed),
                        };
                    }
                }));
            }
            let started = Started::now();
            tokio::time::sleep(Duration::from_secs_f64(s.w7_secs)).await;
            stop.store(true, Ordering::Relaxed);
            for t in tasks {
                t.await.expect("task");
            }
            let secs = started.elapsed().as_secs_f64();
            Outcome {
                rate: counts[0].load(Ordering::Relaxed) as f64 / secs,
                writes: counts[1].load(Ordering::Relaxed) as f64 / secs,
                errors: counts[2].load(Ordering::Relaxed),
                latencies: Vec::new(),
                cpu_us_per_op: started.cpu_us_per(
                    (counts[0].load(Ordering::Relaxed) + counts[1].load(Ordering::Relaxed)) as f64,
                ),
            }
        }
        // sqlx's transaction guard on a pool of one connection, as its
        // writers on SQLite are (more connections would fail their
        // read-then-write upgrades with SQLITE_BUSY).
        "W8" => {
            fresh(db);
            let p = pool(db, workload, 1).await;
            sqlx::raw_sql(ACCOUNTS_SCHEMA).execute(&p).await.expect("accounts");
            let started = Started::now();
            let writers = p.clone();
            // sqlx's transaction guard on a pool of one connection, as its
            // writers on SQLite are (more connections would fail their
            // read-then-write upgrades with SQLITE_BUSY).
            let latencies = transfers(s.w8_tx_per_task, move |from, to, amount| {
                let p = writers.clone();
                async move {
                    let mut tx = p.begin().await.expect("begin");
                    let a: i64 = sqlx::query_scalar(BALANCE).bind(from).fetch_one(&mut *tx).await.expect("a");
                    let b: i64 = sqlx::query_scalar(BALANCE).bind(to).fetch_one(&mut *tx).await.expect("b");
                    sqlx::query(SET_BALANCE).bind(a - amount).bind(from).execute(&mut *tx).await.expect("debit");
                    sqlx::query(SET_BALANCE).bind(b + amount).bind(to).execute(&mut *tx).await.expect("credit");
                    tx.commit().await.expect("commit");
                }
            })
            .await;
            let outcome = Outcome::rate(latencies.len() as f64, started);
            check_total(
                sqlx::query_scalar("SELECT sum(balance) FROM accounts")
                    .fetch_one(&p)
                    .await
                    .expect("sum"),
            );
            Outcome { latencies, ..outcome }
        }
        other => panic!("unknown workload {other}"),
    }
}

fn main() {
    let (workload, db) = args();
    let scale = Scale::from_env();
    let rt = runtime();
    let version: String = rt.block_on(async {
        let mut c = SqliteConnectOptions::new()
            .in_memory(true)
            .connect()
            .await
            .expect("memory");
        sqlx::query_scalar("SELECT sqlite_version()")
            .fetch_one(&mut c)
            .await
            .expect("version")
    });
    let name = workload.clone();
    let outcome = spawned(&rt, async move { run(&name, &db, &scale).await });
    report("sqlx", &workload, outcome, &version);
}
