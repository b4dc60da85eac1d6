//! tokio-rusqlite on the workloads: one thread per `Connection`, closures
//! sent to it. It has no pool (W3 and W7 spread tasks over 4 connections)
//! and no streaming (W5 collects the rows in one call).

#[path = "../../harness.rs"]
mod harness;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use harness::*;
use tokio_rusqlite::{rusqlite, Connection};

fn read_user(r: &rusqlite::Row<'_>) -> rusqlite::Result<User> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
}

async fn open(db: &Path, workload: &str) -> Connection {
    let c = Connection::open(db).await.expect("open");
    let sql = pragmas(workload);
    c.call(move |c| c.execute_batch(&sql)).await.expect("pragmas");
    c
}

async fn point(c: &Connection, id: i64) -> User {
    c.call(move |c| c.prepare_cached(POINT)?.query_row([id], read_user))
        .await
        .expect("point")
}

fn fresh(db: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
}

async fn run(workload: &str, db: &Path, s: &Scale) -> Outcome {
    match workload {
        "W1" => {
            let c = open(db, workload).await;
            let mut rng = Rng::new(0);
            let mut latencies = Vec::with_capacity(s.w1_ops);
            let started = Started::now();
            for _ in 0..s.w1_ops {
                let t = Instant::now();
                std::hint::black_box(point(&c, rng.next_id(s.point_rows)).await);
                latencies.push(t.elapsed());
            }
            Outcome { latencies, ..Outcome::rate(s.w1_ops as f64, started) }
        }
        "W2" | "W3" => {
            let n = if workload == "W2" { 1 } else { READERS };
            let mut conns = Vec::new();
            for _ in 0..n {
                conns.push(open(db, workload).await);
            }
            let per_task = s.w2_ops / TASKS;
            let started = Started::now();
            let tasks: Vec<_> = (0..TASKS)
                .map(|t| {
                    let (c, max) = (conns[t % n].clone(), s.point_rows);
                    tokio::spawn(async move {
                        let mut rng = Rng::new(t as u64 + 1);
                        for _ in 0..per_task {
                            std::hint::black_box(point(&c, rng.next_id(max)).await);
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
            let c = open(db, workload).await;
            c.call(|c| c.execute_batch(SCHEMA)).await.expect("schema");
            let rows = s.bulk_rows;
            let started = Started::now();
            c.call(move |c| {
                let tx = c.transaction()?;
                {
                    let mut stmt = tx.prepare_cached(INSERT)?;
                    for i in 1..=rows {
                        stmt.execute(user(i))?;
                    }
                }
                tx.commit()
            })
            .await
            .expect("insert");
            Outcome::rate(rows as f64, started)
        }
        "W5" => {
            let c = open(db, workload).await;
            let started = Started::now();
            let rows: Vec<User> = c
                .call(|c| c.prepare(SCAN)?.query_map([], read_user)?.collect())
                .await
                .expect("scan");
            let sum: i64 = rows.iter().map(|u| u.3).sum();
            assert_eq!(rows.len() as i64, s.bulk_rows);
            std::hint::black_box(sum);
            Outcome::rate(rows.len() as f64, started)
        }
        "W6" => {
            fresh(db);
            let c = open(db, workload).await;
            c.call(|c| c.execute_batch(SCHEMA)).await.expect("schema");
            let per_task = s.w6_tx_per_task;
            let started = Started::now();
            let tasks: Vec<_> = (0..TASKS)
                .map(|t| {
                    let c = c.clone();
                    tokio::spawn(async move {
                        for i in 0..per_task {
                            let row = user((t * per_task + i) as i64);
                            c.call(move |c| {
                                let tx = c.transaction()?;
                                tx.prepare_cached(INSERT)?.execute(row)?;
                                tx.commit()
                            })
                            .await
                            .expect("tx");
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
            let mut readers = Vec::new();
            for _ in 0..READERS {
                readers.push(open(db, workload).await);
            }
            let writer = open(db, workload).await;
            let stop = Arc::new(AtomicBool::new(false));
            let counts = Arc::new([AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)]);
            let mut tasks = Vec::new();
            for t in 0..W7_READERS {
                let (c, stop, counts, max) =
                    (readers[t as usize % READERS].clone(), stop.clone(), counts.clone(), s.point_rows);
                tasks.push(tokio::spawn(async move {
                    let mut rng = Rng::new(t + 1);
                    while !stop.load(Ordering::Relaxed) {
                        std::hint::black_box(point(&c, rng.next_id(max)).await);
                        counts[0].fetch_add(1, Ordering::Relaxed);
                    }
                }));
            }
            for t in 0..W7_WRITERS {
                let (c, stop, counts) = (writer.clone(), stop.clone(), counts.clone());
                tasks.push(tokio::spawn(async move {
                    let mut i = t * 1_000_000_000;
                    while !stop.load(Ordering::Relaxed) {
                        i += 1;
                        match c.call(move |c| c.prepare_cached(EVENT)?.execute([i])).await {
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
        // Its way to a transaction: one closure on the connection's thread.
        "W8" => {
            fresh(db);
            let c = open(db, workload).await;
            c.call(|c| c.execute_batch(ACCOUNTS_SCHEMA)).await.expect("accounts");
            let started = Started::now();
            let worker = c.clone();
            let latencies = transfers(s.w8_tx_per_task, move |from, to, amount| {
                let c = worker.clone();
                async move {
                    c.call(move |c| {
                        let tx = c.transaction()?;
                        let a: i64 = tx.prepare_cached(BALANCE)?.query_row([from], |r| r.get(0))?;
                        let b: i64 = tx.prepare_cached(BALANCE)?.query_row([to], |r| r.get(0))?;
                        tx.prepare_cached(SET_BALANCE)?.execute((a - amount, from))?;
                        tx.prepare_cached(SET_BALANCE)?.execute((b + amount, to))?;
                        tx.commit()
                    })
                    .await
                    .expect("transfer");
                }
            })
            .await;
            let outcome = Outcome::rate(latencies.len() as f64, started);
            check_total(
                c.call(|c| c.query_row("SELECT sum(balance) FROM accounts", [], |r| r.get(0)))
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
    let name = workload.clone();
    let outcome = spawned(&runtime(), async move { run(&name, &db, &scale).await });
    report("tokio-rusqlite", &workload, outcome, rusqlite::version());
}
