//! The engine's promises at its edges (issue #15), one test per reported
//! case: a transaction SQLite ended by itself is over; nothing a caller
//! opened (a stream's statement, a blob) outlives its owner; no lease
//! outlives its guard; empty SQL is a clear error.
//!
//! Every step that could hang runs under [`within`], so a hang fails.

mod common;

use std::future::Future;
use std::sync::{Arc, Barrier};
use std::time::Duration;

use aiolite::{Connection, Database, Error};
use futures_util::StreamExt;

/// A bound on a step that should take milliseconds; it only catches hangs.
const HANG: Duration = Duration::from_secs(20);

async fn within<T>(what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(HANG, f)
        .await
        .unwrap_or_else(|_| panic!("hung: {what}"))
}

async fn count(conn: &Connection, sql: &str) -> i64 {
    within(sql, common::scalar(conn, sql)).await
}

/// A table with a UNIQUE key: `INSERT OR ROLLBACK` of a duplicate makes
/// SQLite roll back the whole transaction.
const SCHEMA: &str = "CREATE TABLE t(k INTEGER PRIMARY KEY, v TEXT);
                      INSERT INTO t VALUES (1, 'seed');";
const CONFLICT: &str = "INSERT OR ROLLBACK INTO t VALUES (1, 'dup')";

/// The error a dead transaction gives: it says SQLite rolled it back.
fn is_rolled_back(e: &Error) -> bool {
    matches!(e, Error::RolledBack { .. })
}

// ----- 1. A transaction SQLite ends by itself is over -----

#[tokio::test]
async fn insert_or_rollback_ends_a_connection_transaction() {
    let conn = Connection::open_in_memory().await.expect("open");
    conn.execute_script(SCHEMA).await.expect("schema");
    let tx = within("begin", conn.begin()).await.expect("begin");
    tx.execute("INSERT INTO t VALUES (2, 'before')", ())
        .await
        .expect("before");
    let err = tx.execute(CONFLICT, ()).await.expect_err("conflict");
    assert!(err.is_unique_violation() || err.is_constraint(), "{err}");
    assert!(is_rolled_back(&err), "the failing statement says so: {err}");
    // Nothing after it runs, in autocommit or otherwise.
    let later = tx
        .execute("INSERT INTO t VALUES (3, 'after')", ())
        .await
        .expect_err("refused");
    assert!(is_rolled_back(&later), "{later}");
    assert!(later.to_string().contains("rolled"), "{later}");
    let commit = within("commit", tx.commit()).await.expect_err("commit");
    assert!(is_rolled_back(&commit), "{commit}");
    assert_eq!(
        count(&conn, "SELECT count(*) FROM t").await,
        1,
        "only the seed"
    );
    assert!(!conn.in_transaction().await.expect("state"));
}

#[tokio::test]
async fn a_dead_transaction_rolls_back_cleanly() {
    let conn = Connection::open_in_memory().await.expect("open");
    conn.execute_script(SCHEMA).await.expect("schema");
    let tx = conn.begin().await.expect("begin");
    tx.execute(CONFLICT, ()).await.expect_err("conflict");
    within("rollback", tx.rollback())
        .await
        .expect("rollback of a dead transaction succeeds");
    conn.execute("INSERT INTO t VALUES (5, 'next')", ())
        .await
        .expect("the connection goes on");
    assert_eq!(count(&conn, "SELECT count(*) FROM t").await, 2);
}

#[tokio::test]
async fn raise_rollback_in_a_trigger_ends_a_pool_transaction() {
    let (_dir, path) = common::temp_db("raise.db");
    let db = Database::open(&path).await.expect("open");
    db.execute_script(
        "CREATE TABLE t(k INTEGER PRIMARY KEY, v TEXT);
         CREATE TRIGGER no_bad BEFORE INSERT ON t WHEN new.v = 'bad'
         BEGIN SELECT RAISE(ROLLBACK, 'bad rows roll everything back'); END;",
    )
    .await
    .expect("schema");
    let tx = within("begin", db.begin()).await.expect("begin");
    tx.execute("INSERT INTO t VALUES (1, 'good')", ())
        .await
        .expect("good");
    let err = tx
        .execute("INSERT INTO t VALUES (2, 'bad')", ())
        .await
        .expect_err("raise");
    assert!(err.to_string().contains("bad rows"), "{err}");
    let later = tx
        .execute("INSERT INTO t VALUES (3, 'good')", ())
        .await
        .expect_err("refused");
    assert!(is_rolled_back(&later), "{later}");
    assert!(within("commit", tx.commit()).await.is_err());
    let n: i64 = db
        .fetch_one("SELECT count(*) FROM t", ())
        .await
        .expect("count")
        .get(0)
        .expect("n");
    assert_eq!(n, 0, "nothing of the transaction is kept");
    // The writer is free again.
    within(
        "write after",
        db.execute("INSERT INTO t VALUES (4, 'x')", ()),
    )
    .await
    .expect("write");
    db.close().await.expect("close");
}

#[tokio::test]
async fn a_full_database_ends_the_transaction_it_fills() {
    // max_page_count stands in for a full disk: SQLITE_FULL.
    let conn = Connection::open_in_memory().await.expect("open");
    conn.execute_script(
        "CREATE TABLE t(k INTEGER PRIMARY KEY, v BLOB); INSERT INTO t VALUES (1, x'00');",
    )
    .await
    .expect("schema");
    let pages = count(&conn, "PRAGMA page_count").await;
    conn.execute_script(format!("PRAGMA max_page_count = {}", pages + 4))
        .await
        .expect("cap");
    let tx = conn.begin().await.expect("begin");
    tx.execute("INSERT INTO t VALUES (2, x'01')", ())
        .await
        .expect("small row fits");
    let full = tx
        .execute("INSERT INTO t VALUES (3, zeroblob(1000000))", ())
        .await
        .expect_err("full");
    assert_eq!(full.code(), Some(aiolite::ErrorCode::DiskFull), "{full}");
    let in_tx = within("state", tx.call(|c| Ok::<_, Error>(!c.is_autocommit()))).await;
    match in_tx {
        // SQLite kept the transaction: the guard goes on, and commits.
        Ok(true) => {
            tx.execute("INSERT INTO t VALUES (4, x'02')", ())
                .await
                .expect("still in the transaction");
            tx.commit().await.expect("commit");
            assert_eq!(count(&conn, "SELECT count(*) FROM t").await, 3);
        }
        // SQLite rolled it back: the guard is dead, nothing autocommits.
        Ok(false) => panic!("in_transaction answered although the transaction is over"),
        Err(e) => {
            assert!(is_rolled_back(&e), "{e}");
            assert!(tx
                .execute("INSERT INTO t VALUES (4, x'02')", ())
                .await
                .is_err());
            assert!(tx.commit().await.is_err());
            assert_eq!(count(&conn, "SELECT count(*) FROM t").await, 1);
        }
    }
}

#[tokio::test]
async fn a_group_member_rolled_back_by_sqlite_fails_and_nothing_autocommits() {
    let (_dir, path) = common::temp_db("group.db");
    let db = Database::builder(&path)
        .group_commit(true)
        .open()
        .await
        .expect("open");
    db.execute_script(SCHEMA).await.expect("schema");
    let tx = within("begin", db.begin()).await.expect("begin");
    tx.execute("INSERT INTO t VALUES (2, 'member')", ())
        .await
        .expect("insert");
    let err = tx.execute(CONFLICT, ()).await.expect_err("conflict");
    assert!(is_rolled_back(&err), "{err}");
    let later = tx
        .execute("INSERT INTO t VALUES (3, 'after')", ())
        .await
        .expect_err("refused");
    assert!(is_rolled_back(&later), "{later}");
    assert!(within("commit", tx.commit()).await.is_err());
    let n: i64 = db
        .fetch_one("SELECT count(*) FROM t", ())
        .await
        .expect("count")
        .get(0)
        .expect("n");
    assert_eq!(n, 1, "only the seed");
    db.close().await.expect("close");
}

#[tokio::test]
async fn the_closure_form_keeps_no_write_after_sqlite_rolled_back() {
    let conn = Connection::open_in_memory().await.expect("open");
    conn.execute_script(SCHEMA).await.expect("schema");
    let r: aiolite::Result<()> = within(
        "transaction",
        conn.transaction(|tx| {
            tx.execute("INSERT INTO t VALUES (2, 'before')", [])?;
            // The caller ignores the error and goes on, as code does.
            let _ = tx.execute(CONFLICT, []);
            let _ = tx.execute("INSERT INTO t VALUES (3, 'after')", []);
            Ok(())
        }),
    )
    .await;
    let err = r.expect_err("the transaction did not commit");
    assert!(is_rolled_back(&err), "{err}");
    assert_eq!(
        count(&conn, "SELECT count(*) FROM t").await,
        1,
        "the write after the rollback did not autocommit"
    );
}

#[tokio::test]
async fn a_call_inside_a_transaction_cannot_autocommit_after_a_rollback() {
    let conn = Connection::open_in_memory().await.expect("open");
    conn.execute_script(SCHEMA).await.expect("schema");
    let tx = conn.begin().await.expect("begin");
    let _ = within(
        "call",
        tx.call(|c| {
            let _ = c.execute(CONFLICT, []);
            Ok::<_, Error>(c.execute("INSERT INTO t VALUES (3, 'after')", [])?)
        }),
    )
    .await;
    assert!(tx.commit().await.is_err());
    assert_eq!(count(&conn, "SELECT count(*) FROM t").await, 1);
}

#[tokio::test]
async fn a_savepoint_in_a_dead_transaction() {
    let conn = Connection::open_in_memory().await.expect("open");
    conn.execute_script(SCHEMA).await.expect("schema");
    let mut tx = conn.begin().await.expect("begin");
    tx.execute("INSERT INTO t VALUES (2, 'outer')", ())
        .await
        .expect("outer");
    let sp = tx.savepoint().await.expect("savepoint");
    let err = sp.execute(CONFLICT, ()).await.expect_err("conflict");
    assert!(is_rolled_back(&err), "{err}");
    let later = sp
        .execute("INSERT INTO t VALUES (3, 'inner')", ())
        .await
        .expect_err("refused");
    assert!(is_rolled_back(&later), "{later}");
    within("savepoint rollback", sp.rollback())
        .await
        .expect("undoing a savepoint of a dead transaction is fine");
    let after = tx
        .execute("INSERT INTO t VALUES (4, 'outer again')", ())
        .await
        .expect_err("the outer transaction is dead too");
    assert!(is_rolled_back(&after), "{after}");
    assert!(tx.commit().await.is_err());
    assert_eq!(count(&conn, "SELECT count(*) FROM t").await, 1);
}

// ----- 2. and 3. Nothing a caller opened outlives its owner -----

/// A file database, a second connection that writes, and a row count that
/// the first connection must see move: a parked statement would pin the
/// first connection's snapshot.
struct Snapshot {
    _dir: tempfile::TempDir,
    reader: Connection,
    writer: Connection,
}

impl Snapshot {
    async fn new() -> Snapshot {
        let (dir, path) = common::temp_db("snap.db");
        let writer = Connection::open(&path).await.expect("writer");
        writer
            .execute_script(
                "CREATE TABLE big(x); WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 5000) INSERT INTO big SELECT x FROM c;
                 CREATE TABLE files(id INTEGER PRIMARY KEY, data BLOB); INSERT INTO files VALUES (1, zeroblob(64));",
            )
            .await
            .expect("fill");
        let reader = Connection::open(&path).await.expect("reader");
        Snapshot {
            _dir: dir,
            reader,
            writer,
        }
    }

    /// Writes a row on the other connection, then checks the reader sees it.
    async fn reader_sees_fresh_writes(&self) {
        let before = count(&self.writer, "SELECT count(*) FROM big").await;
        within(
            "write",
            self.writer.execute("INSERT INTO big VALUES (-1)", ()),
        )
        .await
        .expect("write");
        assert_eq!(
            count(&self.reader, "SELECT count(*) FROM big").await,
            before + 1,
            "the reader's snapshot is pinned by a statement nobody owns"
        );
        let held = self.reader.resources();
        assert_eq!(held.parked_statements, 0, "{held:?}");
        assert_eq!(held.open_blobs, 0, "{held:?}");
    }
}

#[tokio::test]
async fn a_panicking_stream_decoder_leaves_no_statement_parked() {
    let s = Snapshot::new().await;
    let mut seen = 0;
    let mut stream = s.reader.stream_with(
        "SELECT x FROM big",
        (),
        move |row: &aiolite::rusqlite::Row<'_>| {
            seen += 1;
            if seen == 100 {
                panic!("decoder bug");
            }
            Ok(row.get::<_, i64>(0)?)
        },
    );
    let mut failed = false;
    while let Some(item) = within("stream", stream.next()).await {
        if let Err(e) = item {
            assert!(matches!(e, Error::Panic { .. }), "{e}");
            failed = true;
            break;
        }
    }
    assert!(failed, "the panic became an error");
    // The stream is still alive (not dropped): nothing may stay parked anyway.
    s.reader_sees_fresh_writes().await;
    drop(stream);
}

#[tokio::test]
async fn a_panicking_decoder_on_the_first_chunk_leaves_nothing_parked() {
    let s = Snapshot::new().await;
    let mut stream = s.reader.stream_with(
        "SELECT x FROM big",
        (),
        |_: &aiolite::rusqlite::Row<'_>| -> aiolite::Result<i64> { panic!("at once") },
    );
    let first = within("first", stream.next()).await.expect("an item");
    assert!(matches!(first, Err(Error::Panic { .. })), "{first:?}");
    s.reader_sees_fresh_writes().await;
}

/// Holds `conn`'s worker until the returned barrier is passed, so requests
/// queued meanwhile cannot be answered on their first poll.
async fn hold_worker(conn: &Connection) -> (Arc<Barrier>, tokio::task::JoinHandle<()>) {
    let barrier = Arc::new(Barrier::new(2));
    let held = Arc::clone(&barrier);
    let (running_tx, running) = tokio::sync::oneshot::channel();
    let conn = conn.clone();
    let task = tokio::spawn(async move {
        conn.call(move |_| {
            let _ = running_tx.send(());
            held.wait();
            Ok::<_, Error>(())
        })
        .await
        .expect("hold");
    });
    // Returns once the worker runs the hold: whatever is queued from now on
    // waits behind it.
    within("the hold to start", running)
        .await
        .expect("the hold runs");
    (barrier, task)
}

/// Waits until `conn`'s worker has answered everything queued before now.
async fn drain(conn: &Connection) {
    within("drain", conn.execute("SELECT 1", ()))
        .await
        .expect("drain");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_chunk_answered_after_its_caller_left_is_finalized() {
    let s = Snapshot::new().await;
    let (barrier, holder) = hold_worker(&s.reader).await;
    let mut stream = s.reader.stream("SELECT x FROM big", ());
    {
        // One poll queues the first chunk's request and returns Pending.
        let next = stream.next();
        futures_util::pin_mut!(next);
        assert!(futures_util::poll!(next.as_mut()).is_pending());
        barrier.wait();
        // Everything queued before this is answered: the chunk is in the
        // reply, unread, when the `next()` future is dropped here (a timeout
        // or select! around the first next()).
        drain(&s.reader).await;
    }
    drop(stream);
    holder.await.expect("holder");
    s.reader_sees_fresh_writes().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blob_opened_after_its_caller_left_is_closed() {
    let s = Snapshot::new().await;
    let (barrier, holder) = hold_worker(&s.reader).await;
    {
        let open = s.reader.blob_open("files", "data", 1, true);
        futures_util::pin_mut!(open);
        assert!(futures_util::poll!(open.as_mut()).is_pending());
        barrier.wait();
        drain(&s.reader).await;
    }
    holder.await.expect("holder");
    s.reader_sees_fresh_writes().await;
}

#[tokio::test]
async fn a_blob_and_a_stream_dropped_normally_are_released() {
    let s = Snapshot::new().await;
    let blob = s
        .reader
        .blob_open("files", "data", 1, true)
        .await
        .expect("blob");
    let mut stream = s.reader.stream("SELECT x FROM big", ());
    stream.next().await.expect("row").expect("ok");
    // The next chunk's prefetch is done, and the statement parked again.
    drain(&s.reader).await;
    let held = s.reader.resources();
    assert_eq!(
        (held.parked_statements, held.open_blobs),
        (1, 1),
        "{held:?}"
    );
    drop(blob);
    drop(stream);
    drain(&s.reader).await;
    s.reader_sees_fresh_writes().await;
}

// ----- 4. A group member's commit returns on an idle pool -----

#[tokio::test]
async fn a_member_commit_returns_when_a_writer_stream_was_dropped_during_it() {
    let (_dir, path) = common::temp_db("idle.db");
    let db = Database::builder(&path)
        .group_commit(true)
        .open()
        .await
        .expect("open");
    db.execute_script(
        "CREATE TABLE t(x); WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 5000) INSERT INTO t SELECT x FROM c;
         CREATE TABLE files(id INTEGER PRIMARY KEY, data BLOB); INSERT INTO files VALUES (1, zeroblob(8));",
    )
    .await
    .expect("fill");
    for blob_too in [false, true] {
        let mut stream = db.writer().stream("SELECT x FROM t", ());
        stream.next().await.expect("row").expect("ok");
        let blob = if blob_too {
            Some(
                db.writer()
                    .blob_open("files", "data", 1, true)
                    .await
                    .expect("blob"),
            )
        } else {
            None
        };
        let tx = within("begin", db.begin()).await.expect("begin");
        drop(stream);
        drop(blob);
        tx.execute("INSERT INTO t VALUES (0)", ())
            .await
            .expect("insert");
        within("member commit on an idle pool", tx.commit())
            .await
            .expect("commit");
    }
    db.close().await.expect("close");
}

// ----- 5. No lease outlives its guard -----

#[tokio::test]
async fn a_stream_from_a_transaction_ends_with_it() {
    let (_dir, path) = common::temp_db("lease.db");
    let db = Database::open(&path).await.expect("open");
    db.execute_script(
        "CREATE TABLE t(x); WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 5000) INSERT INTO t SELECT x FROM c;",
    )
    .await
    .expect("fill");
    for read_all in [false, true] {
        let tx = db.begin().await.expect("begin");
        tx.execute("INSERT INTO t VALUES (-1)", ())
            .await
            .expect("insert");
        let mut stream = tx.stream("SELECT x FROM t", ());
        stream.next().await.expect("row").expect("ok");
        if read_all {
            while let Some(row) = stream.next().await {
                row.expect("ok");
            }
        }
        // The guard goes; the stream stays.
        drop(tx);
        // Every other writer gets the writer back.
        within(
            "a write after the guard was dropped",
            db.execute("INSERT INTO t VALUES (-2)", ()),
        )
        .await
        .expect("write");
        if !read_all {
            let after = within("stream after its transaction", stream.next())
                .await
                .expect("an item");
            assert!(matches!(after, Err(Error::TransactionEnded)), "{after:?}");
        }
        assert!(within("end", stream.next()).await.is_none());
        drop(stream);
        let minus_one: i64 = db
            .fetch_one("SELECT count(*) FROM t WHERE x = -1", ())
            .await
            .expect("count")
            .get(0)
            .expect("n");
        assert_eq!(minus_one, 0, "the dropped guard rolled back");
    }
    let writer = db.writer().resources();
    assert_eq!(writer.parked_statements, 0, "{writer:?}");
    assert!(!writer.leased, "{writer:?}");
    db.close().await.expect("close");
}

// ----- 6. Empty SQL -----

const EMPTY: [&str; 6] = ["", "   ", "-- only a comment", ";", " ; ;", "/* c */ ;\n"];

fn is_empty_sql(r: &aiolite::Result<impl std::fmt::Debug>) -> bool {
    match r {
        Err(e @ Error::EmptySql) => e.to_string().contains("empty"),
        _ => false,
    }
}

macro_rules! check_empty {
    ($h:expr, $what:literal) => {
        for sql in EMPTY {
            let h = $h;
            assert!(
                is_empty_sql(&h.execute(sql, ()).await),
                "{} execute {sql:?}",
                $what
            );
            assert!(
                is_empty_sql(&h.execute_insert(sql, ()).await),
                "{} execute_insert {sql:?}",
                $what
            );
            assert!(
                is_empty_sql(&h.fetch_all(sql, ()).await),
                "{} fetch_all {sql:?}",
                $what
            );
            assert!(
                is_empty_sql(&h.fetch_one(sql, ()).await),
                "{} fetch_one {sql:?}",
                $what
            );
            assert!(
                is_empty_sql(&h.fetch_optional(sql, ()).await),
                "{} fetch_optional {sql:?}",
                $what
            );
            assert!(
                is_empty_sql(&h.execute_many(sql, vec![(1,), (2,)]).await),
                "{} execute_many {sql:?}",
                $what
            );
            assert!(
                is_empty_sql(&h.describe(sql).await),
                "{} describe {sql:?}",
                $what
            );
            let first = h.stream(sql, ()).next().await;
            assert!(
                matches!(first, Some(Err(Error::EmptySql))),
                "{} stream {sql:?}: {first:?}",
                $what
            );
            // A script of no statements is a valid script, as in Python.
            h.execute_script(sql).await.expect("an empty script runs");
        }
    };
}

#[tokio::test]
async fn empty_sql_is_a_clear_error_on_every_handle() {
    let conn = Connection::open_in_memory().await.expect("open");
    check_empty!(&conn, "Connection");
    let mut tx = conn.begin().await.expect("begin");
    check_empty!(&tx, "Transaction");
    {
        let sp = tx.savepoint().await.expect("savepoint");
        check_empty!(&sp, "Savepoint");
        sp.release().await.expect("release");
    }
    tx.commit()
        .await
        .expect("commit: empty SQL did not kill it");
    let (_dir, path) = common::temp_db("empty.db");
    let db = Database::open(&path).await.expect("open");
    check_empty!(&db, "Database");
    db.close().await.expect("close");
}
