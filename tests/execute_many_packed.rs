//! `execute_many` runs a plain single-row INSERT 32 parameter sets at a
//! time as one multi-row INSERT. Its outcome must be the rows-alone outcome,
//! row for row: the same rows kept (and the same triggers fired, in order),
//! the same count, and on a failing set the same error with the rows before
//! it kept. Checked against rusqlite running the sets one by one, over
//! random sets that collide on keys, break NOT NULL and CHECK, under every
//! conflict clause, in autocommit and inside a transaction.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use aiolite::rusqlite;
use aiolite::Connection;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestRunner};

const SCHEMA: &str = "CREATE TABLE t(id INTEGER PRIMARY KEY, u INTEGER UNIQUE,
                          v TEXT NOT NULL CHECK (length(v) < 4));
                      CREATE TABLE log(id);
                      CREATE TRIGGER logged AFTER INSERT ON t BEGIN INSERT INTO log VALUES (new.id); END;";

/// Packed or not (`OR FAIL` and `OR ROLLBACK` never are), each must match.
const VERBS: [&str; 7] = [
    "INSERT INTO",
    "INSERT OR IGNORE INTO",
    "INSERT OR REPLACE INTO",
    "REPLACE INTO",
    "INSERT OR ABORT INTO",
    "INSERT OR FAIL INTO",
    "INSERT OR ROLLBACK INTO",
];

type Set = (Option<i64>, i64, Option<String>);

fn set() -> impl Strategy<Value = Set> {
    (
        prop::option::weighted(0.3, 1i64..2_000),
        0i64..4_000,
        prop::option::weighted(0.997, "[a-c]{1,4}"),
    )
}

/// What a run left: its result (the count, or the error's extended code and
/// SQLite's message), the table and the trigger's log.
#[derive(Debug, PartialEq)]
struct Outcome {
    result: Result<usize, (i32, String)>,
    rows: Vec<Set>,
    log: Vec<i64>,
}

fn reference(verb: &str, sets: &[Set], in_tx: bool) -> Outcome {
    let c = rusqlite::Connection::open_in_memory().expect("open");
    c.execute_batch(SCHEMA).expect("schema");
    if in_tx {
        c.execute_batch("BEGIN").expect("begin");
    }
    let sql = format!("{verb} t(id, u, v) VALUES (?, ?, ?)");
    let mut result = Ok(0);
    {
        let mut stmt = c.prepare(&sql).expect("prepare");
        for s in sets {
            match stmt.execute(s.clone()) {
                Ok(n) => *result.as_mut().expect("ok so far") += n,
                Err(rusqlite::Error::SqliteFailure(e, msg)) => {
                    result = Err((e.extended_code, msg.unwrap_or_default()));
                    break;
                }
                Err(e) => panic!("{e}"),
            }
        }
    }
    if in_tx && !c.is_autocommit() {
        c.execute_batch("COMMIT").expect("commit");
    }
    let rows = c
        .prepare("SELECT id, u, v FROM t ORDER BY id")
        .expect("rows")
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .expect("rows")
        .collect::<rusqlite::Result<_>>()
        .expect("rows");
    let log = c
        .prepare("SELECT id FROM log ORDER BY rowid")
        .expect("log")
        .query_map([], |r| r.get(0))
        .expect("log")
        .collect::<rusqlite::Result<_>>()
        .expect("log");
    Outcome { result, rows, log }
}

async fn aiolite(verb: &str, sets: &[Set], in_tx: bool, packed: &Arc<AtomicUsize>) -> Outcome {
    let conn = Connection::open_in_memory().await.expect("open");
    conn.execute_script(SCHEMA).await.expect("schema");
    let seen = Arc::clone(packed);
    conn.call(move |c| {
        c.trace_v2(
            rusqlite::trace::TraceEventCodes::SQLITE_TRACE_STMT,
            Some(move |e: rusqlite::trace::TraceEvent<'_>| {
                if let rusqlite::trace::TraceEvent::Stmt(_, sql) = e {
                    if sql.contains("),(") {
                        seen.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }),
        )
        .map_err(aiolite::Error::from)
    })
    .await
    .expect("trace");
    let sql = format!("{verb} t(id, u, v) VALUES (?, ?, ?)");
    let sets = sets.to_vec();
    let r = if in_tx {
        let tx = conn.begin().await.expect("begin");
        let r = tx.execute_many(sql, sets).await;
        // As the reference: what ran stays, unless SQLite rolled it back
        // (the guard then refuses to commit).
        let _ = tx.commit().await;
        r
    } else {
        conn.execute_many(sql, sets).await
    };
    let result = r.map_err(|e| {
        let code = e.extended_code().unwrap_or(-1);
        // The message alone, as SQLite wrote it (a dead guard's error wraps it).
        let text = e.to_string();
        (code, text)
    });
    let rows: Vec<Set> = conn
        .fetch_all("SELECT id, u, v FROM t ORDER BY id", ())
        .await
        .expect("rows")
        .iter()
        .map(|r| {
            (
                r.get(0).expect("id"),
                r.get(1).expect("u"),
                r.get(2).expect("v"),
            )
        })
        .collect();
    let log: Vec<i64> = conn
        .fetch_all("SELECT id FROM log ORDER BY rowid", ())
        .await
        .expect("log")
        .iter()
        .map(|r| r.get(0).expect("id"))
        .collect();
    Outcome { result, rows, log }
}

#[test]
fn packed_inserts_keep_the_rows_alone_outcome() {
    let cases = std::env::var("AIOLITE_PACK_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(64);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let packed = Arc::new(AtomicUsize::new(0));
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        rng_seed: RngSeed::Fixed(0x9ac4_ed01),
        ..Config::default()
    });
    let strategy = (
        0..VERBS.len(),
        prop::collection::vec(set(), 0..400),
        any::<bool>(),
    );
    runner
        .run(&strategy, |(verb, sets, in_tx)| {
            let verb = VERBS[verb];
            let want = reference(verb, &sets, in_tx);
            let got = rt.block_on(async {
                tokio::time::timeout(
                    std::time::Duration::from_secs(30),
                    aiolite(verb, &sets, in_tx, &packed),
                )
                .await
                .expect("hung")
            });
            prop_assert_eq!(&got.rows, &want.rows, "{} in_tx={}", verb, in_tx);
            prop_assert_eq!(&got.log, &want.log, "{} in_tx={}", verb, in_tx);
            match (&got.result, &want.result) {
                (Ok(g), Ok(w)) => prop_assert_eq!(g, w, "{} count", verb),
                (Err((gc, gm)), Err((wc, wm))) => {
                    prop_assert_eq!(gc, wc, "{}: {} against {}", verb, gm, wm);
                    prop_assert!(gm.contains(wm.as_str()), "{}: {} against {}", verb, gm, wm);
                }
                (g, w) => prop_assert!(false, "{}: {:?} against {:?}", verb, g, w),
            }
            Ok(())
        })
        .expect("every case matches the rows-alone outcome");
    assert!(
        packed.load(Ordering::Relaxed) > 0,
        "no multi-row INSERT ran: nothing was packed"
    );
}
