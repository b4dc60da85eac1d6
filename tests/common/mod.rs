//! Helpers shared by the integration tests.
#![allow(dead_code)] // each test binary uses its own subset

use std::path::PathBuf;

use aiolite::Connection;

/// The first column of the first row of `sql`, as an integer.
pub(crate) async fn scalar(conn: &Connection, sql: &str) -> i64 {
    conn.fetch_one(sql.to_owned(), ())
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .get(0)
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// A fresh directory and a database path inside it (the directory lives as
/// long as the returned guard).
pub(crate) fn temp_db(name: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(name);
    (dir, path)
}

/// [`scalar`] inside a transaction.
pub(crate) async fn scalar_in(tx: &aiolite::Transaction, sql: &str) -> i64 {
    tx.fetch_one(sql.to_owned(), ())
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .get(0)
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// This process's resident set size, from /proc/self/status.
pub(crate) fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("procfs");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// aiosqlite's smoke-test table: `foo(i, k)` with two rows.
pub(crate) async fn foo_table(conn: &Connection) {
    conn.execute("create table foo (i integer, k charvar(250))", ())
        .await
        .expect("create");
    conn.execute_many(
        "insert into foo values (?, ?)",
        [(1, "hello"), (2, "world")],
    )
    .await
    .expect("insert");
}

/// The rows of [`foo_table`].
pub(crate) async fn foo_rows(conn: &Connection) -> Vec<(i64, String)> {
    conn.fetch_map("select * from foo", (), |r| Ok((r.get(0)?, r.get(1)?)))
        .await
        .expect("select")
}
