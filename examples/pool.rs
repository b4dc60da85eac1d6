//! Many concurrent readers and writers on one `Database`: 16 reader tasks,
//! 4 writer tasks moving money between accounts in transactions, and a
//! checker that the total never changes.
//!
//!     cargo run --example pool

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aiolite::Database;

const ACCOUNTS: i64 = 100;
const START_BALANCE: i64 = 1_000;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::temp_dir().join("aiolite-pool.db");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    let db = Database::builder(&path).readers(4).open().await?;
    db.execute_script("CREATE TABLE accounts (id INTEGER PRIMARY KEY, balance INTEGER NOT NULL CHECK (balance >= 0))")
        .await?;
    db.execute_many(
        "INSERT INTO accounts (id, balance) VALUES (?, ?)",
        (1..=ACCOUNTS).map(|id| (id, START_BALANCE)),
    )
    .await?;
    println!("{ACCOUNTS} accounts of {START_BALANCE} each; running for 2 seconds...");

    let (reads, transfers, refused) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut tasks = Vec::new();

    for reader in 0..16i64 {
        let (db, reads) = (db.clone(), reads.clone());
        tasks.push(tokio::spawn(async move {
            let mut id = reader;
            while Instant::now() < deadline {
                id = id % ACCOUNTS + 1;
                // Read-only: goes to one of the readers.
                db.fetch_one("SELECT balance FROM accounts WHERE id = ?", (id,))
                    .await?;
                reads.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<_, aiolite::Error>(())
        }));
    }

    for writer in 0..4i64 {
        let (db, transfers, refused) = (db.clone(), transfers.clone(), refused.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = writer;
            while Instant::now() < deadline {
                n += 7;
                let (from, to, amount) = (n % ACCOUNTS + 1, (n * 3) % ACCOUNTS + 1, n % 50);
                // A leased write transaction: no other task's statement can
                // land between the two updates.
                let tx = db.begin().await?;
                tx.execute(
                    "UPDATE accounts SET balance = balance + ? WHERE id = ?",
                    (amount, to),
                )
                .await?;
                match tx
                    .execute(
                        "UPDATE accounts SET balance = balance - ? WHERE id = ?",
                        (amount, from),
                    )
                    .await
                {
                    Ok(_) => {
                        tx.commit().await?;
                        transfers.fetch_add(1, Ordering::Relaxed);
                    }
                    // Overdraft: the CHECK fails, the transfer is undone whole.
                    Err(e) if e.is_constraint() => {
                        tx.rollback().await?;
                        refused.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => return Err(e),
                }
            }
            Ok(())
        }));
    }

    for t in tasks {
        t.await??;
    }
    let total: i64 = db
        .fetch_one("SELECT sum(balance) FROM accounts", ())
        .await?
        .get(0)?;
    println!("reads:              {}", reads.load(Ordering::Relaxed));
    println!("transfers:          {}", transfers.load(Ordering::Relaxed));
    println!("refused overdrafts: {}", refused.load(Ordering::Relaxed));
    println!(
        "total balance:      {total} (expected {})",
        ACCOUNTS * START_BALANCE
    );
    assert_eq!(total, ACCOUNTS * START_BALANCE, "money was created or lost");
    db.close().await?;
    Ok(())
}
