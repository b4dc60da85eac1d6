//! The aiosqlite tutorial's task tracker, with a `Task` model: add four tasks
//! concurrently, complete two, print the summary by status and the pending
//! tasks. The schema comes from `migrations/`, run on open.
//!
//!     cargo run --example task_tracker

use aiolite::prelude::*;
use aiolite::Database;

/// A task's state, stored as the text SQLite's CHECK constraint allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Pending,
    Done,
}

impl TryFrom<String> for Status {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        match s.as_str() {
            "pending" => Ok(Status::Pending),
            "done" => Ok(Status::Done),
            other => Err(format!("unknown status {other:?}")),
        }
    }
}

impl From<Status> for String {
    fn from(s: Status) -> String {
        match s {
            Status::Pending => "pending".into(),
            Status::Done => "done".into(),
        }
    }
}

#[derive(Debug, Clone, aiolite::FromRow, aiolite::Model)]
#[aiolite(table = "tasks")]
struct Task {
    #[aiolite(primary_key)]
    id: i64,
    title: String,
    #[aiolite(try_from = "String")]
    status: Status,
    owner_id: Option<i64>,
}

impl Task {
    fn new(title: &str) -> Task {
        Task {
            id: 0,
            title: title.to_owned(),
            status: Status::Pending,
            owner_id: None,
        }
    }
}

#[tokio::main]
async fn main() -> aiolite::Result<()> {
    let path = std::env::temp_dir().join("aiolite-task-tracker.db");
    // A fresh file each run, so the ids below are 1 to 4.
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    let db = Database::builder(&path)
        .migrations(aiolite::embed_migrations!("migrations"))
        .migrate_on_open(true)
        .open()
        .await?;

    // Four inserts in flight at once; the writer queues them in order.
    let (setup, login, tests, deploy) = (
        Task::new("Set up CI"),
        Task::new("Fix login bug"),
        Task::new("Write tests"),
        Task::new("Deploy to staging"),
    );
    let ids = tokio::try_join!(
        db.insert(&setup),
        db.insert(&login),
        db.insert(&tests),
        db.insert(&deploy),
    )?;
    let ids = [ids.0, ids.1, ids.2, ids.3];
    println!("Added tasks: {ids:?}");

    for id in [ids[0], ids[2]] {
        if let Some(mut task) = db.find::<Task>(id).await? {
            task.status = Status::Done;
            db.update(&task).await?;
        }
    }
    println!("Completed tasks {} and {}", ids[0], ids[2]);

    let summary: Vec<(String, i64)> = db
        .fetch_all_as(
            "SELECT status, count(*) FROM tasks GROUP BY status ORDER BY status",
            (),
        )
        .await?;
    println!("Summary by status:");
    for (status, count) in summary {
        println!("  {status}: {count}");
    }

    let pending: Vec<Task> = db
        .query_all(
            Task::select()
                .and_where(TaskColumn::Status.eq(String::from(Status::Pending)))
                .order_by(TaskColumn::Id, Order::Asc),
        )
        .await?;
    println!("Pending tasks:");
    for task in &pending {
        println!("  [{}] {}", task.id, task.title);
    }

    db.close().await?;
    Ok(())
}
