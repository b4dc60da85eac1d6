//! Group commit (`DatabaseBuilder::group_commit`): transactions queued on the
//! writer share one COMMIT; each keeps its own failure, and every commit that
//! returned `Ok` survives a SIGKILL.

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aiolite::{Database, Synchronous};

const SCHEMA: &str = "
    CREATE TABLE items(task INTEGER NOT NULL, n INTEGER NOT NULL, PRIMARY KEY (task, n));
    CREATE TABLE totals(id INTEGER PRIMARY KEY, n INTEGER NOT NULL);
    INSERT INTO totals VALUES (1, 0);
    INSERT INTO items VALUES (-1, -1);";

async fn open(path: &Path, group: bool) -> Database {
    let db = Database::builder(path)
        .readers(2)
        .group_commit(group)
        .open()
        .await
        .expect("open");
    db.execute_script(SCHEMA).await.expect("schema");
    db
}

/// Holds the writer for `ms`, so the transactions begun meanwhile queue up
/// and form one group when it is free.
async fn hold_writer(db: &Database, ms: u64) {
    db.writer()
        .call(move |_| {
            std::thread::sleep(Duration::from_millis(ms));
            Ok::<_, aiolite::Error>(())
        })
        .await
        .expect("hold");
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Fate {
    Commit,
    /// Inserts a row that already exists: the statement fails, and the
    /// caller rolls back.
    FailAndRollBack,
    /// Writes, then drops the guard without commit.
    Drop,
    /// Writes, fails a statement, then commits what it did before.
    FailThenCommit,
}

fn fate(task: i64, n: i64) -> Fate {
    match (task * 7 + n) % 5 {
        0 => Fate::FailAndRollBack,
        1 => Fate::Drop,
        2 => Fate::FailThenCommit,
        _ => Fate::Commit,
    }
}

/// One transaction of `task`: its row, plus one to the running total.
/// Returns whether it committed.
async fn one_tx(db: &Database, task: i64, n: i64) -> bool {
    let tx = db.begin().await.expect("begin");
    tx.execute("INSERT INTO items VALUES (?, ?)", (task, n))
        .await
        .expect("insert");
    tx.execute("UPDATE totals SET n = n + 1 WHERE id = 1", ())
        .await
        .expect("update");
    match fate(task, n) {
        Fate::Commit => {
            tx.commit().await.expect("commit");
            true
        }
        Fate::FailAndRollBack => {
            let dup = tx.execute("INSERT INTO items VALUES (-1, -1)", ()).await;
            assert!(dup.is_err(), "the duplicate must fail");
            tx.rollback().await.expect("rollback");
            false
        }
        Fate::Drop => {
            drop(tx);
            false
        }
        Fate::FailThenCommit => {
            let dup = tx.execute("INSERT INTO items VALUES (-1, -1)", ()).await;
            assert!(dup.is_err(), "the duplicate must fail");
            tx.commit().await.expect("commit after a failed statement");
            true
        }
    }
}

/// Runs `tasks` x `per_task` transactions, starting them behind a held writer
/// so that groups form; returns the final table contents.
async fn run_mixed(db: &Database, tasks: i64, per_task: i64) -> (Vec<(i64, i64)>, i64, usize) {
    let committed = Arc::new(AtomicUsize::new(0));
    let hold = hold_writer(db, 50);
    let workers: Vec<_> = (0..tasks)
        .map(|task| {
            let (db, committed) = (db.clone(), Arc::clone(&committed));
            tokio::spawn(async move {
                for n in 0..per_task {
                    if one_tx(&db, task, n).await {
                        committed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    hold.await;
    for w in workers {
        w.await.expect("task");
    }
    let rows: Vec<(i64, i64)> = db
        .fetch_map(
            "SELECT task, n FROM items WHERE task >= 0 ORDER BY task, n",
            (),
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .await
        .expect("rows");
    let total: i64 = db
        .fetch_one("SELECT n FROM totals WHERE id = 1", ())
        .await
        .expect("total")
        .get(0)
        .expect("n");
    (rows, total, committed.load(Ordering::Relaxed))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_stay_in_their_own_transaction_and_the_result_matches_no_grouping() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut outcomes = Vec::new();
    for group in [false, true] {
        let db = open(&dir.path().join(format!("mixed-{group}.db")), group).await;
        let commits = common::count_commits(&db).await;
        let (rows, total, committed) = run_mixed(&db, 16, 20).await;
        let expected: Vec<(i64, i64)> = (0..16)
            .flat_map(|t| (0..20).map(move |n| (t, n)))
            .filter(|&(t, n)| matches!(fate(t, n), Fate::Commit | Fate::FailThenCommit))
            .collect();
        assert_eq!(
            rows, expected,
            "group={group}: the committed rows, no others"
        );
        assert_eq!(total, expected.len() as i64, "group={group}: the total");
        assert_eq!(committed, expected.len());
        let commits = commits.load(Ordering::Relaxed);
        if group {
            assert!(
                commits < committed,
                "{committed} transactions took {commits} commits: no group formed"
            );
        } else {
            assert!(commits >= committed);
        }
        db.close().await.expect("close");
        outcomes.push((rows, total));
    }
    assert_eq!(
        outcomes[0], outcomes[1],
        "same final state with and without"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_group_commit_fails_every_member_and_keeps_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = open(&dir.path().join("fk.db"), true).await;
    db.execute_script(
        "CREATE TABLE parent(id INTEGER PRIMARY KEY);
         CREATE TABLE child(id INTEGER PRIMARY KEY,
                            parent INTEGER REFERENCES parent(id) DEFERRABLE INITIALLY DEFERRED);",
    )
    .await
    .expect("schema");
    let hold = hold_writer(&db, 50);
    let members: Vec<_> = (0..8i64)
        .map(|i| {
            let db = db.clone();
            tokio::spawn(async move {
                let tx = db.begin().await.expect("begin");
                // Member 3 points at a parent that never exists: checked only
                // at the group's COMMIT.
                let parent = if i == 3 { None } else { Some(i) };
                if let Some(p) = parent {
                    tx.execute("INSERT INTO parent VALUES (?)", (p,))
                        .await
                        .expect("parent");
                }
                tx.execute(
                    "INSERT INTO child VALUES (?, ?)",
                    (i, parent.unwrap_or(999)),
                )
                .await
                .expect("child");
                tx.commit().await
            })
        })
        .collect();
    hold.await;
    let mut failed = 0;
    for m in members {
        let outcome = m.await.expect("task");
        if let Err(e) = outcome {
            assert!(e.to_string().contains("FOREIGN KEY"), "{e}");
            failed += 1;
        }
    }
    let kept: i64 = db
        .fetch_one(
            "SELECT (SELECT count(*) FROM parent) + (SELECT count(*) FROM child)",
            (),
        )
        .await
        .expect("count")
        .get(0)
        .expect("n");
    // Every member of the group that held member 3 failed, and kept nothing;
    // members in other groups (if the group split) committed whole.
    assert!(
        failed >= 2,
        "only {failed} failed: member 3 was not grouped"
    );
    assert_eq!(kept, 2 * (8 - failed), "failed members kept rows");
    db.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_requests_never_see_a_group_before_its_commit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = open(&dir.path().join("visible.db"), true).await;
    let hold = hold_writer(&db, 30);
    let tx_task = {
        let db = db.clone();
        tokio::spawn(async move {
            let tx = db.begin().await.expect("begin");
            tx.execute("INSERT INTO items VALUES (1, 1)", ())
                .await
                .expect("insert");
            tx.commit().await.expect("commit");
        })
    };
    // Queued on the writer behind the transaction: it runs after the group
    // committed, so it sees the row, and a reader sees it once commit returned.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let on_writer = db
        .writer()
        .fetch_one("SELECT count(*) FROM items WHERE task = 1", ());
    let (_, seen, done) = tokio::join!(hold, on_writer, tx_task);
    done.expect("task");
    assert_eq!(seen.expect("read").get::<_, i64>(0).expect("n"), 1);
    let on_reader = db
        .fetch_one("SELECT count(*) FROM items WHERE task = 1", ())
        .await
        .expect("read");
    assert_eq!(on_reader.get::<_, i64>(0).expect("n"), 1);
    db.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_writes_queued_together_share_one_commit_and_fail_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("single.db");
    let db = open(&path, true).await;
    let commits = common::count_commits(&db).await;
    let (release, _held) = common::hold_worker(db.writer()).await;
    // 16 single writes queue behind the held writer; one of them collides
    // with the seed row. Each awaits its own answer.
    let writes: Vec<_> = (0..16i64)
        .map(|i| {
            let db = db.clone();
            let path = path.clone();
            tokio::spawn(async move {
                let (task, n) = if i == 7 { (-1, -1) } else { (100, i) };
                let r = db
                    .execute("INSERT INTO items VALUES (?, ?)", (task, n))
                    .await;
                // Answered only once the group's COMMIT ran: another
                // connection sees the row at once.
                let seen = if r.is_ok() {
                    let other = aiolite::Connection::open(&path).await.expect("other");
                    let n: i64 = other
                        .fetch_one(
                            "SELECT count(*) FROM items WHERE task = 100 AND n = ?",
                            (n,),
                        )
                        .await
                        .expect("count")
                        .get(0)
                        .expect("n");
                    n
                } else {
                    0
                };
                (i, r, seen)
            })
        })
        .collect();
    common::queued(db.writer(), 16).await;
    commits.store(0, Ordering::Relaxed);
    drop(release);
    for w in writes {
        let (i, r, seen) = w.await.expect("task");
        if i == 7 {
            let e = r.expect_err("the duplicate fails");
            assert!(e.is_unique_violation(), "{e}");
        } else {
            assert_eq!(r.expect("write"), 1, "write {i}");
            assert_eq!(seen, 1, "write {i} was answered before it was durable");
        }
    }
    assert_eq!(
        commits.load(Ordering::Relaxed),
        1,
        "16 queued writes, one COMMIT"
    );
    let rows: i64 = db
        .fetch_one("SELECT count(*) FROM items WHERE task = 100", ())
        .await
        .expect("count")
        .get(0)
        .expect("n");
    assert_eq!(rows, 15, "the failing write undid only itself");
    db.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_writes_and_guards_group_together_and_reads_wait_for_the_commit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = open(&dir.path().join("mixed.db"), true).await;
    let commits = common::count_commits(&db).await;
    let (release, _held) = common::hold_worker(db.writer()).await;
    let single = {
        let db = db.clone();
        tokio::spawn(async move { db.execute("INSERT INTO items VALUES (1, 1)", ()).await })
    };
    common::queued(db.writer(), 1).await;
    let guarded = {
        let db = db.clone();
        tokio::spawn(async move {
            let tx = db.begin().await?;
            tx.execute("INSERT INTO items VALUES (2, 2)", ()).await?;
            tx.commit().await
        })
    };
    common::queued(db.writer(), 2).await;
    // A read on the writer queued behind both: it must see both rows, so the
    // group commits before it runs.
    let read = {
        let db = db.clone();
        tokio::spawn(async move {
            db.writer()
                .fetch_one("SELECT count(*) FROM items WHERE task IN (1, 2)", ())
                .await
        })
    };
    common::queued(db.writer(), 3).await;
    commits.store(0, Ordering::Relaxed);
    drop(release);
    single.await.expect("task").expect("single write");
    guarded.await.expect("task").expect("guarded");
    let n: i64 = read.await.expect("task").expect("read").get(0).expect("n");
    assert_eq!(n, 2);
    assert_eq!(commits.load(Ordering::Relaxed), 1, "one group for both");
    db.close().await.expect("close");
}

const CHILD: &str = "AIOLITE_GROUP_COMMIT_CHILD";

/// The child: 16 tasks commit (task, n) rows through group commit at
/// synchronous=FULL and print each one after its `commit()` returned.
fn child_main(path: &Path) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let db = Database::builder(path)
            .readers(1)
            .group_commit(true)
            .options(aiolite::ConnectOptions::new(path).synchronous(Synchronous::Full))
            .open()
            .await
            .expect("open");
        db.execute_script("CREATE TABLE IF NOT EXISTS acked(task INTEGER, n INTEGER)")
            .await
            .expect("schema");
        let out = Arc::new(std::sync::Mutex::new(std::io::stdout()));
        let tasks: Vec<_> = (0..16i64)
            .map(|task| {
                let (db, out) = (db.clone(), Arc::clone(&out));
                tokio::spawn(async move {
                    for n in 0.. {
                        let tx = db.begin().await.expect("begin");
                        tx.execute("INSERT INTO acked VALUES (?, ?)", (task, n))
                            .await
                            .expect("insert");
                        tx.commit().await.expect("commit");
                        let mut out = out.lock().expect("stdout");
                        writeln!(out, "{task} {n}").expect("print");
                        out.flush().expect("flush");
                    }
                })
            })
            .collect();
        for t in tasks {
            let _ = t.await;
        }
    });
}

#[test]
fn every_acknowledged_commit_survives_sigkill() {
    if let Some(path) = std::env::var_os(CHILD) {
        child_main(Path::new(&path));
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    for round in 0..3u64 {
        let path = dir.path().join(format!("kill{round}.db"));
        let mut child = Command::new(std::env::current_exe().expect("exe"))
            .args([
                "--exact",
                "every_acknowledged_commit_survives_sigkill",
                "--nocapture",
            ])
            .env(CHILD, &path)
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn");
        let stdout = child.stdout.take().expect("stdout");
        let seen = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = Arc::clone(&seen);
        let reader = std::thread::spawn(move || {
            let mut acked = BTreeSet::new();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let mut parts = line.split_whitespace().map(|p| p.parse::<i64>());
                if let (Some(Ok(t)), Some(Ok(n))) = (parts.next(), parts.next()) {
                    acked.insert((t, n));
                    counter.store(acked.len(), std::sync::atomic::Ordering::Relaxed);
                }
            }
            acked
        });
        // Kill it mid-stream: once it has acknowledged a number of commits
        // that varies by round (counted, not timed: a loaded machine only
        // takes longer), with a bound that only catches a child that hangs.
        let wanted = 100 + 150 * round as usize;
        let started = Instant::now();
        while seen.load(std::sync::atomic::Ordering::Relaxed) < wanted {
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "round {round}: only {} commits acknowledged in {:?}",
                seen.load(std::sync::atomic::Ordering::Relaxed),
                started.elapsed()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        child.kill().expect("SIGKILL");
        let _ = child.wait();
        let acked = reader.join().expect("reader");
        assert!(acked.len() >= wanted, "round {round}");
        let stored: BTreeSet<(i64, i64)> = rt.block_on(async {
            let conn = aiolite::Connection::open(&path).await.expect("reopen");
            let rows = conn
                .fetch_map("SELECT task, n FROM acked", (), |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .await
                .expect("rows");
            conn.close().await.expect("close");
            rows.into_iter().collect()
        });
        let lost: Vec<_> = acked.difference(&stored).collect();
        assert!(
            lost.is_empty(),
            "round {round}: acknowledged but lost: {lost:?}"
        );
        // Per task, the stored rows are a prefix 0..k: nothing half-applied.
        for task in 0..16 {
            let ns: Vec<i64> = stored
                .iter()
                .filter(|(t, _)| *t == task)
                .map(|&(_, n)| n)
                .collect();
            assert!(
                ns.iter().copied().eq(0..ns.len() as i64),
                "task {task}: {ns:?}"
            );
        }
    }
}
