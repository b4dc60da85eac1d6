//! Bring a database's schema up to date with the migrations in `migrations/`,
//! compiled into this binary.
//!
//!     cargo run --example migrations

use aiolite::Database;

#[tokio::main]
async fn main() -> aiolite::Result<()> {
    let path = std::env::temp_dir().join("aiolite-migrations.db");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    let db = Database::builder(&path)
        .migrations(aiolite::embed_migrations!("migrations"))
        .open()
        .await?;

    let report = db.migrate().await?;
    for (version, name) in &report.applied {
        println!("applied   V{version}__{name}");
    }

    // A second run finds everything applied, here or by another process.
    let again = db.migrate().await?;
    println!(
        "second run: {} applied, {} already there",
        again.applied.len(),
        again.already_applied.len()
    );

    let owner = db
        .execute_insert(
            "INSERT INTO users (name, email, age) VALUES (?, ?, ?)",
            ("Alice", "alice@example.com", 30),
        )
        .await?;
    db.execute(
        "INSERT INTO tasks (title, owner_id) VALUES (?, ?)",
        ("Write the release notes", owner),
    )
    .await?;
    let pending: i64 = db
        .fetch_one("SELECT count(*) FROM tasks WHERE status = 'pending'", ())
        .await?
        .get(0)?;
    println!("pending tasks: {pending}");
    db.close().await
}
