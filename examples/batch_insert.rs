//! 10,000 rows in one transaction, then a transaction rolled back on error.
//!
//!     cargo run --example batch_insert

use std::time::Instant;

use aiolite::Connection;

#[tokio::main]
async fn main() -> aiolite::Result<()> {
    let path = std::env::temp_dir().join("aiolite-batch.db");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    let db = Connection::open(&path).await?;
    db.execute_script(
        "CREATE TABLE events (id INTEGER PRIMARY KEY, kind TEXT NOT NULL, amount INTEGER NOT NULL CHECK (amount >= 0))",
    )
    .await?;

    // One transaction, one prepared statement, one fsync.
    let started = Instant::now();
    let tx = db.begin().await?;
    let inserted = tx
        .execute_many(
            "INSERT INTO events (kind, amount) VALUES (?, ?)",
            (0..10_000).map(|i| (if i % 2 == 0 { "credit" } else { "debit" }, i)),
        )
        .await?;
    tx.commit().await?;
    println!("Inserted {inserted} rows in {:?}", started.elapsed());

    // A batch with a bad row: the transaction is rolled back as a whole.
    let tx = db.begin().await?;
    let result = tx
        .execute_many(
            "INSERT INTO events (kind, amount) VALUES (?, ?)",
            vec![("credit", 5), ("debit", -1), ("credit", 7)],
        )
        .await;
    match result {
        Ok(_) => tx.commit().await?,
        Err(e) => {
            println!("Batch failed ({e}); rolling back");
            tx.rollback().await?;
        }
    }

    let count: i64 = db
        .fetch_one("SELECT count(*) FROM events", ())
        .await?
        .get(0)?;
    println!("Rows in table: {count}");
    assert_eq!(count, 10_000, "the failed batch left nothing behind");
    db.close().await
}
