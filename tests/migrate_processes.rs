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
                .fetch_map(
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

/// A set whose second migration runs outside a transaction
/// ([`aiolite::migrate::NO_TRANSACTION`]), taking a moment, and logs each run
/// of itself in autocommit: a second run would leave a second line.
fn with_no_transaction(v2_body: &str) -> Migrations {
    Migrations::new([
        Migration::new("V1__log", "CREATE TABLE no_tx_log(run INTEGER NOT NULL);").expect("v1"),
        Migration::new(
            "V2__outside",
            &format!("{}\n{v2_body}", aiolite::migrate::NO_TRANSACTION),
        )
        .expect("v2"),
        Migration::new("V3__after", "CREATE TABLE after_it(x);").expect("v3"),
    ])
    .expect("set")
}

const COUNT_TO: &str =
    "SELECT count(*) FROM (WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 200000) SELECT x FROM c);";

fn no_transaction_child(path: &Path, body: &str) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let conn = aiolite::ConnectOptions::new(path)
            .migrations(with_no_transaction(body))
            .open()
            .await
            .expect("open");
        conn.migrate().await.expect("migrate");
        conn.close().await.expect("close");
    });
}

/// Reported: 4 processes x 10 rounds ran a no-transaction migration twice in
/// 4 to 5 rounds, and 4 to 6 processes failed on the history's primary key.
#[test]
fn a_no_transaction_migration_runs_once_across_racing_processes() {
    const TEST: &str = "a_no_transaction_migration_runs_once_across_racing_processes";
    let body = format!("{COUNT_TO}\nINSERT INTO no_tx_log VALUES (1);");
    if let Some(path) = std::env::var_os(CHILD) {
        no_transaction_child(Path::new(&path), &body);
        return;
    }
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    for round in 0..10 {
        let path = dir.path().join(format!("no_tx{round}.db"));
        let children: Vec<_> = (0..4).map(|_| spawn_child(TEST, &path)).collect();
        for mut c in children {
            let status = c.wait().expect("wait");
            assert!(
                status.success(),
                "round {round}: a process failed: {status}"
            );
        }
        rt.block_on(async {
            let conn = Connection::open(&path).await.expect("open");
            assert_eq!(
                common::scalar(&conn, "SELECT count(*) FROM no_tx_log").await,
                1,
                "round {round}: the migration outside a transaction ran once"
            );
            assert_eq!(
                common::scalar(&conn, "SELECT count(*) FROM refinery_schema_history").await,
                3
            );
            assert_eq!(
                common::scalar(&conn, "SELECT count(*) FROM aiolite_migration_claims").await,
                0,
                "round {round}: no claim is left"
            );
            conn.close().await.expect("close");
        });
    }
}

/// A process killed inside a migration outside a transaction leaves a state
/// the next run reports, with what to do, instead of running it again or
/// skipping it.
#[test]
fn a_crash_inside_a_no_transaction_migration_is_reported_not_rerun() {
    const TEST: &str = "a_crash_inside_a_no_transaction_migration_is_reported_not_rerun";
    // Long enough that the kill, sent once the claim is visible, lands inside
    // it however fast the machine is (a slower machine only widens it).
    let slow = format!(
        "INSERT INTO no_tx_log VALUES (1);\n{}",
        COUNT_TO.replace("200000", "2000000000")
    );
    if let Some(path) = std::env::var_os(CHILD) {
        no_transaction_child(Path::new(&path), &slow);
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("crash.db");
    let mut child = spawn_child(TEST, &path);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(Instant::now() < deadline, "the child never claimed V2");
        assert!(
            child.try_wait().expect("try_wait").is_none(),
            "the child exited"
        );
        // Read-only: never create the file before the child does.
        let read_only = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY;
        let claimed = rusqlite::Connection::open_with_flags(&path, read_only)
            .ok()
            .and_then(|c| {
                c.query_row("SELECT count(*) FROM aiolite_migration_claims", [], |r| {
                    r.get::<_, i64>(0)
                })
                .ok()
            });
        if claimed == Some(1) {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = child.kill(); // SIGKILL, inside V2's SQL
    let _ = child.wait();

    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let fast = "INSERT INTO no_tx_log VALUES (2);";
        let conn = aiolite::ConnectOptions::new(&path)
            .migrations(with_no_transaction(fast))
            .open()
            .await
            .expect("open");
        let err = conn.migrate().await.expect_err("interrupted");
        let text = err.to_string();
        match &err {
            aiolite::Error::Migration(m) => assert!(
                matches!(
                    m.kind,
                    aiolite::migrate::MigrationErrorKind::Interrupted { version: 2, .. }
                ),
                "{text}"
            ),
            other => panic!("{other:?}"),
        }
        assert!(
            text.contains("DELETE FROM aiolite_migration_claims WHERE version = 2"),
            "{text}"
        );
        assert_eq!(
            common::scalar(&conn, "SELECT count(*) FROM no_tx_log").await,
            1,
            "nothing was run again"
        );
        assert_eq!(
            common::scalar(&conn, "SELECT count(*) FROM refinery_schema_history").await,
            1
        );
        // Doing what the error says finishes the job.
        conn.execute("DELETE FROM aiolite_migration_claims WHERE version = 2", ())
            .await
            .expect("delete the claim");
        let report = conn.migrate().await.expect("migrate again");
        assert_eq!(report.applied.len(), 2, "{report:?}");
        assert_eq!(
            common::scalar(&conn, "SELECT count(*) FROM no_tx_log WHERE run = 2").await,
            1,
            "V2 ran once more, after the claim was deleted"
        );
        conn.close().await.expect("close");
    });
}
