//! Migrations across processes: killed at random moments, and racing.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use aiolite::migrate::{Migration, Migrations};
use aiolite::{Connection, Database};

const CHILD: &str = "AIOLITE_MIGRATE_CHILD";
const TABLES: i32 = 10;
const ROWS: i64 = 5_000;

/// Ten migrations that each take a moment: a table and its rows, plus a line
/// in `applied_log` (created by the first) per run of the migration.
fn ten() -> Migrations {
    Migrations::new((1..=TABLES).map(|v| {
        let log = if v == 1 {
            "CREATE TABLE applied_log(v INTEGER NOT NULL);".to_owned()
        } else {
            String::new()
        };
        let sql = format!(
            "{log}
             CREATE TABLE t{v}(x INTEGER NOT NULL);
             INSERT INTO t{v} WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {ROWS}) SELECT x FROM c;
             INSERT INTO applied_log VALUES ({v});"
        );
        Migration::new(&format!("V{v}__table_{v}"), &sql).expect("name")
    }))
    .expect("set")
}

fn child_main(path: &Path) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let db = Database::builder(path)
            .readers(1)
            .migrations(ten())
            .open()
            .await
            .expect("open");
        db.migrate().await.expect("migrate");
        db.close().await.expect("close");
    });
}

fn spawn_child(test: &str, path: &Path) -> std::process::Child {
    Command::new(std::env::current_exe().expect("exe"))
        .args(["--exact", test, "--nocapture"])
        .env(CHILD, path)
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn")
}

/// For each migration: applied with its history row and all its rows, or
/// not at all; applied ones form a prefix 1..=n. Returns n.
async fn check_all_or_nothing(path: &Path) -> i32 {
    let conn = Connection::open(path).await.expect("open after kill");
    let has_history = common::scalar(
        &conn,
        "SELECT count(*) FROM sqlite_schema WHERE name = 'refinery_schema_history'",
    )
    .await
        == 1;
    let mut applied = 0;
    for v in 1..=TABLES {
        let in_history = has_history
            && common::scalar(
                &conn,
                &format!("SELECT count(*) FROM refinery_schema_history WHERE version = {v}"),
            )
            .await
                == 1;
        let table = common::scalar(
            &conn,
            &format!("SELECT count(*) FROM sqlite_schema WHERE name = 't{v}'"),
        )
        .await
            == 1;
        assert_eq!(
            in_history, table,
            "migration {v}: history row and table disagree"
        );
        if table {
            assert_eq!(
                common::scalar(&conn, &format!("SELECT count(*) FROM t{v}")).await,
                ROWS,
                "migration {v} is half applied"
            );
            assert_eq!(applied, v - 1, "migration {v} applied after a gap");
            applied = v;
        }
    }
    conn.close().await.expect("close");
    applied
}

#[test]
fn killed_at_random_moments_all_or_nothing_then_finished() {
    if let Some(path) = std::env::var_os(CHILD) {
        child_main(Path::new(&path));
        return;
    }
    const TEST: &str = "killed_at_random_moments_all_or_nothing_then_finished";
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    // How long one uninterrupted run takes here: kills land inside it.
    let started = Instant::now();
    let full = dir.path().join("full.db");
    assert!(spawn_child(TEST, &full).wait().expect("wait").success());
    let run_us = started.elapsed().as_micros() as u64;
    assert_eq!(rt.block_on(check_all_or_nothing(&full)), TABLES);

    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    let mut partial = 0;
    for round in 0..100 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let path = dir.path().join(format!("kill{round}.db"));
        let mut child = spawn_child(TEST, &path);
        std::thread::sleep(Duration::from_micros(seed % run_us));
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        let applied = rt.block_on(check_all_or_nothing(&path));
        if applied > 0 && applied < TABLES {
            partial += 1;
        }
        // Rerunning finishes the job.
        rt.block_on(async {
            let db = Database::builder(&path)
                .readers(1)
                .migrations(ten())
                .open()
                .await
                .expect("reopen");
            let report = db.migrate().await.expect("rerun");
            assert_eq!(report.applied.len() as i32, TABLES - applied);
            db.close().await.expect("close");
        });
        assert_eq!(rt.block_on(check_all_or_nothing(&path)), TABLES);
    }
    eprintln!("{partial} of 100 kills landed mid-run (an uninterrupted run: {run_us} us)");
    assert!(partial >= 10, "only {partial} of 100 kills landed mid-run");
}

#[test]
fn four_processes_migrate_one_fresh_file_fifty_times() {
    if let Some(path) = std::env::var_os(CHILD) {
        child_main(Path::new(&path));
        return;
    }
    const TEST: &str = "four_processes_migrate_one_fresh_file_fifty_times";
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    for round in 0..50 {
        let path = dir.path().join(format!("race{round}.db"));
        let children: Vec<_> = (0..4).map(|_| spawn_child(TEST, &path)).collect();
        for mut c in children {
            let status = c.wait().expect("wait");
            assert!(
                status.success(),
                "round {round}: a process did not proceed: {status}"
            );
        }
        rt.block_on(async {
            let conn = Connection::open(&path).await.expect("open");
            let runs: Vec<(i64, i64)> = conn
                .query_map(
                    "SELECT v, count(*) FROM applied_log GROUP BY v ORDER BY v",
                    (),
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .await
                .expect("log");
            let expected: Vec<(i64, i64)> = (1..=i64::from(TABLES)).map(|v| (v, 1)).collect();
            assert_eq!(runs, expected, "round {round}: each migration exactly once");
            conn.close().await.expect("close");
        });
    }
}
