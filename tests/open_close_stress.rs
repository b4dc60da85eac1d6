//! SQLite before 3.51.2 could deadlock the whole process when one thread closed
//! the last connection to a WAL file while another opened it (rusqlite#1860).
//! aiolite used to serialize every open and close; with SQLite 3.54 it opens
//! and closes in parallel (a lock remains only for an older system SQLite).
//! This test is the proof that concurrent open/close of one WAL file never
//! hangs: it hammers it in a child process, so that a deadlock fails this test
//! (the parent kills the child) instead of hanging the suite.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use aiolite::Connection;

const CHILD_ENV: &str = "AIOLITE_OPEN_CLOSE_CHILD";
const TASKS: u32 = 8;
const CYCLES: u32 = 40;

#[test]
fn concurrent_open_close_on_one_wal_file_never_hangs() {
    if let Some(dir) = std::env::var_os(CHILD_ENV) {
        child(std::path::Path::new(&dir));
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = Command::new(std::env::current_exe().expect("exe"))
        .args([
            "--exact",
            "concurrent_open_close_on_one_wal_file_never_hangs",
            "--nocapture",
        ])
        .env(CHILD_ENV, dir.path())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn child");
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            assert!(status.success(), "the stress child failed: {status}");
            return;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("concurrent open/close of one WAL file hung (rusqlite#1860 is back?)");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn child(dir: &std::path::Path) {
    let path = dir.join("stress.db");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let setup = Connection::open(&path).await.expect("setup");
        setup
            .execute("CREATE TABLE IF NOT EXISTS t(x)", ())
            .await
            .expect("create");
        setup.close().await.expect("close");
        // A fixed count, not a duration: the same work on a fast machine
        // and a loaded one; the parent's deadline is what catches a hang.
        let tasks: Vec<_> = (0..TASKS)
            .map(|i| {
                let path = path.clone();
                tokio::spawn(async move {
                    let mut cycles = 0u32;
                    for _ in 0..CYCLES {
                        let conn = Connection::open(&path).await.expect("open");
                        conn.execute("INSERT INTO t VALUES (?)", (i,))
                            .await
                            .expect("insert");
                        conn.close().await.expect("close");
                        cycles += 1;
                    }
                    cycles
                })
            })
            .collect();
        let mut total = 0;
        for t in tasks {
            total += t.await.expect("join");
        }
        let check = Connection::open(&path).await.expect("check");
        let n = common::scalar(&check, "SELECT count(*) FROM t").await;
        assert_eq!(n, i64::from(total), "every acknowledged insert is there");
        assert_eq!(total, TASKS * CYCLES, "every task finished its cycles");
    });
}
