//! aiosqlite's quickstart, in aiolite: a users table, two inserts, a query,
//! an update, a delete and a count, on a database file this program creates.
//!
//!     cargo run --example quickstart

use aiolite::Connection;
use futures_util::StreamExt;

#[tokio::main]
async fn main() -> aiolite::Result<()> {
    let path = std::env::temp_dir().join("aiolite-quickstart.db");
    // Start from an empty file each run, so the ids below are 1 and 2.
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }

    let db = Connection::open(&path).await?;
    db.execute(
        "CREATE TABLE IF NOT EXISTS users (id INTEGER PRIMARY KEY, name TEXT NOT NULL, age INTEGER NOT NULL)",
        (),
    )
    .await?;
    db.execute("INSERT INTO users (name, age) VALUES (?, ?)", ("Alice", 30))
        .await?;
    db.execute("INSERT INTO users (name, age) VALUES (?, ?)", ("Bob", 24))
        .await?;

    println!("Users older than 25:");
    let mut rows = db.stream("SELECT id, name, age FROM users WHERE age > ?", (25,));
    while let Some(row) = rows.next().await {
        let row = row?;
        let (id, name, age): (i64, String, i64) = (row.get(0)?, row.get(1)?, row.get(2)?);
        println!(" ID: {id}, Name: {name}, Age: {age}");
    }

    db.execute("UPDATE users SET age = ? WHERE name = ?", (31, "Alice"))
        .await?;
    db.execute("DELETE FROM users WHERE name = ?", ("Bob",))
        .await?;

    let count: i64 = db
        .fetch_one("SELECT COUNT(*) FROM users", ())
        .await?
        .get(0)?;
    println!("Total users remaining: {count}");

    db.close().await?;
    println!("(database file: {})", path.display());
    Ok(())
}
