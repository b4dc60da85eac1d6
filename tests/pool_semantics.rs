//! The pool's promises (issue #16): read-your-writes whatever streams are
//! open, an error instead of a hang for a request from inside one's own
//! transaction, and an error instead of silent autocommit for transaction
//! control sent around `begin()`.

mod common;

use std::future::Future;
use std::time::Duration;

use aiolite::{Connection, Database, Error};
use futures_util::StreamExt;

const HANG: Duration = Duration::from_secs(20);

async fn within<T>(what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(HANG, f)
        .await
        .unwrap_or_else(|_| panic!("hung: {what}"))
}

async fn pool(name: &str, readers: usize) -> (tempfile::TempDir, Database) {
    let (dir, path) = common::temp_db(name);
    let db = Database::builder(&path)
        .readers(readers)
        .open()
        .await
        .expect("open");
    db.execute_script(
        "CREATE TABLE kv(k INTEGER PRIMARY KEY, v INTEGER NOT NULL);
         CREATE TABLE big(x INTEGER);
         WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 20000)
         INSERT INTO big SELECT x FROM c;",
    )
    .await
    .expect("schema");
    (dir, db)
}

/// Waits until `n` statements are parked on the pool: a stream's statement
/// is out of the map while its next chunk's prefetch reads from it.
async fn parked(db: &Database, n: usize) {
    within("parked statements", async {
        while db.resources().parked_statements != n {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
}

/// Opens `n` streams through the pool and reads one row of each, so each
/// parks its statement (and pins its connection's snapshot).
async fn hold_streams(db: &Database, n: usize) -> Vec<aiolite::RowStream> {
    let mut held = Vec::new();
    for _ in 0..n {
        let mut s = db.stream("SELECT x FROM big", ());
        within("first row", s.next())
            .await
            .expect("a row")
            .expect("ok");
        held.push(s);
    }
    held
}

// ----- 1. Read-your-writes while streams are open -----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_see_the_callers_writes_while_every_reader_holds_a_stream() {
    const READERS: usize = 4;
    const TASKS: i64 = 32;
    const ROUNDS: i64 = 100;
    let (_dir, db) = pool("ryw.db", READERS).await;
    let streams = hold_streams(&db, READERS).await;
    // Each stream's statement is parked once its next chunk's prefetch is
    // done (the prefetch has it out of the map while it reads).
    parked(&db, READERS).await;
    assert_eq!(
        db.writer().resources().parked_statements,
        0,
        "the streams are on the readers, one each"
    );
    let tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            let db = db.clone();
            tokio::spawn(async move {
                let mut stale = 0;
                for r in 0..ROUNDS {
                    let k = t * ROUNDS + r;
                    db.execute("INSERT INTO kv VALUES (?, ?)", (k, r))
                        .await
                        .expect("write");
                    let seen = db
                        .fetch_optional("SELECT v FROM kv WHERE k = ?", (k,))
                        .await
                        .expect("read");
                    if seen.is_none() {
                        stale += 1;
                    }
                }
                stale
            })
        })
        .collect();
    let mut stale = 0;
    for t in tasks {
        stale += within("a writer-reader task", t).await.expect("join");
    }
    assert_eq!(
        stale,
        0,
        "{stale} of {} reads missed the caller's own acknowledged write",
        TASKS * ROUNDS
    );
    drop(streams);
    db.close().await.expect("close");
}

#[tokio::test]
async fn a_stream_opened_while_others_are_open_reads_fresh_data() {
    let (_dir, db) = pool("streams.db", 2).await;
    let _held = hold_streams(&db, 2).await;
    db.execute("INSERT INTO big VALUES (-1)", ())
        .await
        .expect("write");
    // Both readers hold a snapshot from before the write: this stream goes
    // where it can see it.
    let mut s = db.stream("SELECT count(*) FROM big WHERE x = -1", ());
    let row = within("count", s.next()).await.expect("row").expect("ok");
    assert_eq!(row.get::<_, i64>(0).expect("n"), 1);
    let n: i64 = db
        .fetch_one("SELECT count(*) FROM big WHERE x = -1", ())
        .await
        .expect("count")
        .get(0)
        .expect("n");
    assert_eq!(n, 1);
}

// ----- 3. A request from inside one's own transaction -----

#[tokio::test]
async fn a_pool_request_from_inside_ones_own_transaction_fails_at_once() {
    let (_dir, file) = pool("own.db", 2).await;
    let memory = Database::open_in_memory().await.expect("memory");
    memory
        .execute_script("CREATE TABLE kv(k INTEGER PRIMARY KEY, v INTEGER NOT NULL)")
        .await
        .expect("schema");
    for (what, db) in [("file", &file), ("memory", &memory)] {
        let tx = within("begin", db.begin()).await.expect("begin");
        tx.execute("INSERT INTO kv VALUES (1, 1)", ())
            .await
            .expect("in tx");
        let write = within(what, db.execute("INSERT INTO kv VALUES (2, 2)", ())).await;
        assert!(
            matches!(write, Err(Error::InsideOwnTransaction)),
            "{what}: {write:?}"
        );
        assert!(
            write
                .expect_err("refused")
                .to_string()
                .contains("transaction's handle"),
            "the error says what to do"
        );
        let read = within(what, db.fetch_all("SELECT k FROM kv", ())).await;
        assert!(
            matches!(read, Err(Error::InsideOwnTransaction)),
            "{what}: {read:?}"
        );
        let stream = within(what, db.stream("SELECT k FROM kv", ()).next()).await;
        assert!(
            matches!(stream, Some(Err(Error::InsideOwnTransaction))),
            "{what}: {stream:?}"
        );
        let nested = within(what, db.begin()).await;
        assert!(
            matches!(nested, Err(Error::InsideOwnTransaction)),
            "{what}: {nested:?}"
        );
        let close = within(what, db.close()).await;
        assert!(
            matches!(close, Err(Error::InsideOwnTransaction)),
            "{what}: {close:?}"
        );
        assert!(!db.is_closed(), "{what}: nothing was closed");
        // Another task is not refused: it waits for the transaction.
        let other = {
            let db = db.clone();
            tokio::spawn(async move { db.execute("INSERT INTO kv VALUES (3, 3)", ()).await })
        };
        tx.commit().await.expect("commit");
        within("the other task", other)
            .await
            .expect("join")
            .expect("waited, then ran");
        // After the guard is gone, the task may use the pool again.
        let n: i64 = within("after", db.fetch_one("SELECT count(*) FROM kv", ()))
            .await
            .expect("count")
            .get(0)
            .expect("n");
        assert_eq!(n, 2, "{what}");
        db.execute("DELETE FROM kv", ()).await.expect("reset");
    }
}

#[tokio::test]
async fn a_connection_request_from_inside_ones_own_transaction_fails_at_once() {
    let conn = Connection::open_in_memory().await.expect("open");
    conn.execute_script("CREATE TABLE t(x)")
        .await
        .expect("schema");
    let tx = conn.begin().await.expect("begin");
    let r = within(
        "around the guard",
        conn.execute("INSERT INTO t VALUES (1)", ()),
    )
    .await;
    assert!(matches!(r, Err(Error::InsideOwnTransaction)), "{r:?}");
    let close = within("close around the guard", conn.close()).await;
    assert!(
        matches!(close, Err(Error::InsideOwnTransaction)),
        "{close:?}"
    );
    // A dropped guard frees the task at once, before the worker notices.
    drop(tx);
    within(
        "after the guard",
        conn.execute("INSERT INTO t VALUES (2)", ()),
    )
    .await
    .expect("free again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guard_whose_begin_is_still_queued_is_its_tasks_already() {
    // `begin()` returns before the worker runs its BEGIN: from that moment
    // on, a request its task sends around the guard would wait for the
    // guard forever, so it is refused at once, not queued.
    let conn = Connection::open_in_memory().await.expect("open");
    conn.execute_script("CREATE TABLE t(x)")
        .await
        .expect("schema");
    let (release, _held) = common::hold_worker(&conn).await;
    let tx = within("begin behind a busy worker", conn.begin())
        .await
        .expect("begin");
    assert!(conn.resources().leased, "the guard counts from begin() on");
    let around = within(
        "around the queued guard",
        conn.execute("INSERT INTO t VALUES (1)", ()),
    )
    .await;
    assert!(
        matches!(around, Err(Error::InsideOwnTransaction)),
        "{around:?}"
    );
    let nested = within("a second begin", conn.begin()).await;
    assert!(
        matches!(nested, Err(Error::InsideOwnTransaction)),
        "{nested:?}"
    );
    // The guard's own statement goes in behind its BEGIN, inside it.
    let insert = {
        let tx_insert = tx.execute("INSERT INTO t VALUES (2)", ());
        let (r, ()) = tokio::join!(tx_insert, async move { drop(release) });
        r
    };
    insert.expect("inside the guard");
    assert!(conn.resources().leased);
    tx.rollback().await.expect("rollback");
    let n = within("after", conn.fetch_one("SELECT count(*) FROM t", ()))
        .await
        .expect("count")
        .get::<_, i64>(0)
        .expect("n");
    assert_eq!(n, 0, "the statement ran inside the guard's transaction");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guard_dropped_before_its_begin_ran_begins_nothing() {
    for pool in [false, true] {
        let db = Database::open_in_memory().await.expect("open");
        let conn = db.writer().clone();
        conn.execute_script("CREATE TABLE t(x)")
            .await
            .expect("schema");
        let (release, _held) = common::hold_worker(&conn).await;
        let tx = if pool {
            db.begin().await
        } else {
            conn.begin().await
        }
        .expect("begin");
        // Another task's write waits behind the queued BEGIN.
        let other = {
            let conn = conn.clone();
            tokio::spawn(async move { conn.execute("INSERT INTO t VALUES (1)", ()).await })
        };
        drop(tx);
        assert!(!conn.resources().leased, "gone with its guard");
        drop(release);
        within("the other task", other)
            .await
            .expect("join")
            .expect("ran in autocommit, after the dropped guard");
        assert!(!within("state", conn.in_transaction()).await.expect("state"));
        let n = within("count", conn.fetch_one("SELECT count(*) FROM t", ()))
            .await
            .expect("count")
            .get::<_, i64>(0)
            .expect("n");
        assert_eq!(n, 1, "pool: {pool}");
    }
}

// ----- 3 (cont.). Transaction control around begin() -----

#[tokio::test]
async fn transaction_control_through_the_pool_is_refused() {
    let (_dir, file) = pool("control.db", 2).await;
    let memory = Database::open_in_memory().await.expect("memory");
    memory
        .execute_script("CREATE TABLE kv(k INTEGER PRIMARY KEY, v INTEGER NOT NULL)")
        .await
        .expect("schema");
    for db in [&file, &memory] {
        refuses_transaction_control(db).await;
    }
}

async fn refuses_transaction_control(db: &Database) {
    for sql in [
        "BEGIN",
        "begin immediate",
        "SAVEPOINT s",
        "COMMIT",
        "END",
        "ROLLBACK",
        "RELEASE s",
        "  -- c\n BEGIN",
    ] {
        let r = within(sql, db.execute(sql, ())).await;
        assert!(
            matches!(r, Err(Error::TransactionControl(_))),
            "{sql}: {r:?}"
        );
        assert!(r.expect_err("refused").to_string().contains("db.begin()"));
        let r = within(sql, db.fetch_all(sql, ())).await;
        assert!(
            matches!(r, Err(Error::TransactionControl(_))),
            "{sql}: {r:?}"
        );
    }
    // A script that leaves its transaction open: refused, nothing kept.
    let r = within(
        "script",
        db.execute_script("BEGIN; INSERT INTO kv VALUES (1, 1);"),
    )
    .await;
    assert!(matches!(r, Err(Error::TransactionControl(_))), "{r:?}");
    // One that commits (a dump's) runs.
    within(
        "whole script",
        db.execute_script("BEGIN TRANSACTION; INSERT INTO kv VALUES (2, 2); COMMIT;"),
    )
    .await
    .expect("a complete transaction in one script");
    let keys: Vec<i64> = db
        .fetch_all("SELECT k FROM kv", ())
        .await
        .expect("keys")
        .iter()
        .map(|r| r.get(0).expect("k"))
        .collect();
    assert_eq!(keys, [2]);
    // Inside a guard, savepoints are the guard's business.
    let tx = db.begin().await.expect("begin");
    tx.execute("SAVEPOINT inner", ()).await.expect("savepoint");
    tx.execute("RELEASE inner", ()).await.expect("release");
    tx.commit().await.expect("commit");
}

// ----- 2. TEMP objects and attached databases live on the writer -----

#[tokio::test]
async fn temp_objects_and_attachments_are_seen_through_the_pool() {
    let (dir, db) = pool("temp.db", 2).await;
    db.execute_script("CREATE TABLE t(x); INSERT INTO t VALUES ('main');")
        .await
        .expect("main table");
    let read_t = || async {
        db.fetch_one("SELECT x FROM t", ())
            .await
            .expect("read")
            .get::<_, String>(0)
            .expect("x")
    };
    // Learned and remembered as a reader's read.
    assert_eq!(read_t().await, "main");
    // A TEMP table shadows the main one on the writer, where it lives.
    db.writer()
        .execute("CREATE TEMP TABLE t(x)", ())
        .await
        .expect("temp");
    db.writer()
        .execute("INSERT INTO temp.t VALUES ('temp')", ())
        .await
        .expect("insert");
    assert_eq!(read_t().await, "temp", "the remembered route was dropped");
    // A TEMP table only the writer has.
    db.write(|c| {
        Ok::<_, Error>(
            c.execute_batch("CREATE TEMP TABLE only_temp(y); INSERT INTO only_temp VALUES (7);")?,
        )
    })
    .await
    .expect("write");
    let y: i64 = db
        .fetch_one("SELECT y FROM only_temp", ())
        .await
        .expect("no 'no such table' through the pool")
        .get(0)
        .expect("y");
    assert_eq!(y, 7);
    // Made inside the closure form: noticed too.
    db.transaction(|tx| Ok::<_, Error>(tx.execute_batch("CREATE TEMP TABLE via_closure(q)")?))
        .await
        .expect("closure");
    db.fetch_all("SELECT q FROM via_closure", ())
        .await
        .expect("a TEMP table made in a transaction closure");
    db.execute_script("DROP TABLE temp.t; DROP TABLE temp.only_temp; DROP TABLE temp.via_closure;")
        .await
        .expect("drop temp");
    assert_eq!(read_t().await, "main");

    // ATTACH: the pool's reads see what the writer attached.
    let aux = dir.path().join("aux.db");
    db.execute(format!("ATTACH '{}' AS aux", aux.display()), ())
        .await
        .expect("attach");
    let names: Vec<String> = db
        .fetch_all("SELECT name FROM pragma_database_list", ())
        .await
        .expect("list")
        .iter()
        .map(|r| r.get(0).expect("name"))
        .collect();
    assert!(names.iter().any(|n| n == "aux"), "{names:?}");
    db.execute("CREATE TABLE aux.a(z)", ())
        .await
        .expect("aux table");
    db.execute("INSERT INTO aux.a VALUES (1)", ())
        .await
        .expect("aux row");
    let n: i64 = db
        .fetch_one("SELECT count(*) FROM aux.a", ())
        .await
        .expect("read the attached database")
        .get(0)
        .expect("n");
    assert_eq!(n, 1);
    db.execute("DETACH aux", ()).await.expect("detach");
    // Back to the readers: a stream there leaves the writer free.
    assert_eq!(read_t().await, "main");
    let mut s = db.stream("SELECT x FROM big", ());
    s.next().await.expect("row").expect("ok");
    // Once the next chunk's prefetch is done, the statement is parked again:
    // on a reader.
    parked(&db, 1).await;
    assert_eq!(db.writer().resources().parked_statements, 0);
    drop(s);
    db.close().await.expect("close");
}

// ----- 4. Functions with effects a reader must not have -----

#[tokio::test]
async fn a_function_registered_on_the_writer_runs_there() {
    use aiolite::functions::FunctionFlags;
    let (_dir, db) = pool("functions.db", 2).await;
    let thread = || Ok(std::thread::current().name().unwrap_or_default().to_owned());
    db.create_function_on_writer("where_am_i", 0, FunctionFlags::empty(), move |_| thread())
        .await
        .expect("register");
    db.create_function("where_read", 0, FunctionFlags::empty(), move |_| thread())
        .await
        .expect("register everywhere");
    for _ in 0..3 {
        // Learned on the first call, remembered after.
        let on: String = within("writer function", db.fetch_one("SELECT where_am_i()", ()))
            .await
            .expect("runs")
            .get(0)
            .expect("name");
        assert_eq!(on, "aiolite-writer");
        let read: String = db
            .fetch_one("SELECT where_read()", ())
            .await
            .expect("runs")
            .get(0)
            .expect("name");
        assert!(read.starts_with("aiolite-reader"), "{read}");
    }
}

// ----- 5. Long-held snapshots -----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_past_its_snapshot_age_limit_is_stopped_even_when_idle() {
    let (dir, path) = common::temp_db("age.db");
    let limit = Duration::from_millis(300);
    let db = Database::builder(&path)
        .readers(1)
        .options(aiolite::ConnectOptions::new(&path).snapshot_age_limit(limit))
        .open()
        .await
        .expect("open");
    db.execute_script(
        "CREATE TABLE big(x INTEGER);
         WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 20000)
         INSERT INTO big SELECT x FROM c;",
    )
    .await
    .expect("fill");
    let mut s = db.stream("SELECT x FROM big", ());
    s.next().await.expect("row").expect("ok");
    // The age is reported while the snapshot is held.
    within("a snapshot to report", async {
        while db.resources().oldest_snapshot.is_none() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
    // Nobody reads the stream, and no request reaches its connection: the
    // worker still stops it at the limit, and the snapshot is released.
    within("the limit to be enforced on an idle worker", async {
        while db.resources().parked_statements > 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert_eq!(db.resources().oldest_snapshot, None);
    // Then the stream says why, after the rows it had already.
    let mut stopped = None;
    while let Some(item) = within("stream", s.next()).await {
        if let Err(e) = item {
            stopped = Some(e);
            break;
        }
    }
    match stopped {
        Some(Error::SnapshotTooOld { age, limit: l }) => {
            assert_eq!(l, limit);
            assert!(age > limit, "{age:?}");
        }
        other => panic!("the stream ended without saying why: {other:?}"),
    }
    drop(dir);
}
