//! Migrations: applied once, atomically, refused when history and set disagree.

mod common;

use aiolite::migrate::{Migration, MigrationErrorKind, Migrations};
use aiolite::{ConnectOptions, Connection, Database, Error};

fn set(files: &[(&str, &str)]) -> Migrations {
    Migrations::new(
        files
            .iter()
            .map(|(name, sql)| Migration::new(name, sql).expect("migration name")),
    )
    .expect("set")
}

const V1: (&str, &str) = (
    "V1__users",
    "CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT);",
);
const V2: (&str, &str) = (
    "V2__posts",
    "CREATE TABLE posts(id INTEGER PRIMARY KEY, user_id INTEGER REFERENCES users(id));",
);
const V3: (&str, &str) = ("V3__index", "CREATE INDEX posts_user ON posts(user_id);");

async fn open_with(path: &std::path::Path, migrations: Migrations) -> Database {
    Database::builder(path)
        .readers(1)
        .migrations(migrations)
        .open()
        .await
        .expect("open")
}

/// Opens a pool on `path` with `migrations` and runs them once.
async fn run(
    path: &std::path::Path,
    migrations: Migrations,
) -> aiolite::Result<aiolite::migrate::MigrationReport> {
    open_with(path, migrations).await.migrate().await
}

fn applied(report: &aiolite::migrate::MigrationReport) -> Vec<i32> {
    report.applied.iter().map(|(v, _)| *v).collect()
}

async fn history(db: &Database) -> Vec<(i64, String)> {
    db.writer()
        .fetch_map(
            "SELECT version, name FROM refinery_schema_history ORDER BY version",
            (),
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .await
        .expect("history")
}

fn migration_error(e: Error) -> aiolite::migrate::MigrationError {
    match e {
        Error::Migration(m) => *m,
        other => panic!("expected a migration error, got {other:?}"),
    }
}

#[tokio::test]
async fn fresh_then_nothing_then_a_new_file_alone() {
    let (_dir, path) = common::temp_db("m.db");
    let db = open_with(&path, set(&[V1, V2])).await;
    let first = db.migrate().await.expect("first run");
    assert_eq!(applied(&first), vec![1, 2]);
    assert!(first.already_applied.is_empty());
    let second = db.migrate().await.expect("second run");
    assert!(second.applied.is_empty());
    assert_eq!(second.already_applied.len(), 2);
    db.close().await.expect("close");

    let db = open_with(&path, set(&[V1, V2, V3])).await;
    let third = db.migrate().await.expect("new file");
    assert_eq!(applied(&third), vec![3]);
    assert_eq!(
        history(&db).await,
        vec![
            (1, "users".into()),
            (2, "posts".into()),
            (3, "index".into())
        ]
    );
}

#[tokio::test]
async fn an_edited_applied_migration_is_divergent() {
    let (_dir, path) = common::temp_db("m.db");
    run(&path, set(&[V1, V2])).await.expect("run");
    let edited = (
        "V2__posts",
        "CREATE TABLE posts(id INTEGER PRIMARY KEY, title TEXT);",
    );
    let err = run(&path, set(&[V1, edited, V3]))
        .await
        .expect_err("divergent");
    let err = migration_error(err);
    assert!(
        matches!(err.kind, MigrationErrorKind::Divergent { version: 2, .. }),
        "{err}"
    );
    assert!(
        err.report.applied.is_empty(),
        "nothing applied after a divergence"
    );
    assert!(err.to_string().contains("must not change"), "{err}");
}

#[tokio::test]
async fn a_removed_applied_migration_is_missing() {
    let (_dir, path) = common::temp_db("m.db");
    run(&path, set(&[V1, V2])).await.expect("run");
    let err = migration_error(run(&path, set(&[V1])).await.expect_err("missing"));
    assert!(
        matches!(err.kind, MigrationErrorKind::Missing { version: 2, .. }),
        "{err}"
    );
}

#[tokio::test]
async fn a_new_migration_below_the_applied_ones_is_refused() {
    let (_dir, path) = common::temp_db("m.db");
    let v3 = ("V3__tags", "CREATE TABLE tags(name TEXT);");
    run(&path, set(&[V1, v3])).await.expect("run");
    let err = migration_error(
        run(&path, set(&[V1, V2, v3]))
            .await
            .expect_err("out of order"),
    );
    assert!(
        matches!(
            err.kind,
            MigrationErrorKind::OutOfOrder {
                version: 2,
                applied: 3,
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn a_failing_third_migration_leaves_the_first_two() {
    let (_dir, path) = common::temp_db("m.db");
    let bad = (
        "V3__broken",
        "CREATE TABLE half(x); INSERT INTO nowhere VALUES (1);",
    );
    let db = open_with(&path, set(&[V1, V2, bad])).await;
    let err = migration_error(db.migrate().await.expect_err("fails"));
    match &err.kind {
        MigrationErrorKind::Failed {
            version,
            file,
            error,
        } => {
            assert_eq!(*version, 3);
            assert_eq!(file, "V3__broken");
            assert!(
                error.to_string().contains("no such table: nowhere"),
                "{error}"
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(
        applied(&err.report),
        vec![1, 2],
        "the error carries the report"
    );
    assert!(err.to_string().contains("V3__broken.sql"), "{err}");
    assert_eq!(
        history(&db).await,
        vec![(1, "users".into()), (2, "posts".into())]
    );
    // Nothing of the failed migration was kept: not even its first statement.
    assert_eq!(
        common::scalar(
            db.writer(),
            "SELECT count(*) FROM sqlite_schema WHERE name = 'half'"
        )
        .await,
        0
    );
}

#[tokio::test]
async fn no_transaction_migrations_really_turn_foreign_keys_off() {
    let (_dir, path) = common::temp_db("m.db");
    // Inserting an orphan only works if foreign keys are really off, which a
    // PRAGMA inside a transaction would not do.
    let fk_off = (
        "V3__orphans",
        "-- aiolite:no-transaction\nPRAGMA foreign_keys = OFF;\nINSERT INTO posts(id, user_id) VALUES (1, 42);",
    );
    let db = open_with(&path, set(&[V1, V2, fk_off])).await;
    let report = db.migrate().await.expect("runs");
    assert_eq!(applied(&report), vec![1, 2, 3]);
    assert_eq!(
        common::scalar(db.writer(), "SELECT count(*) FROM posts").await,
        1
    );
    // ...and the writer got its foreign keys back afterwards.
    assert_eq!(common::scalar(db.writer(), "PRAGMA foreign_keys").await, 1);
    let err = db
        .execute("INSERT INTO posts(id, user_id) VALUES (2, 43)", ())
        .await
        .expect_err("foreign keys are on again");
    assert!(err.is_foreign_key_violation(), "{err}");
    // The same migration inside a transaction fails: the PRAGMA is a no-op there.
    let (_dir2, path2) = common::temp_db("m2.db");
    let in_tx = (
        "V3__orphans",
        "PRAGMA foreign_keys = OFF;\nINSERT INTO posts(id, user_id) VALUES (1, 42);",
    );
    let err = run(&path2, set(&[V1, V2, in_tx]))
        .await
        .expect_err("the pragma did nothing in a transaction");
    assert!(err.to_string().contains("FOREIGN KEY"), "{err}");
}

#[tokio::test]
async fn crlf_and_lf_checkouts_of_one_file_are_one_migration() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (lf, crlf) = (dir.path().join("lf"), dir.path().join("crlf"));
    std::fs::create_dir_all(&lf).expect("lf");
    std::fs::create_dir_all(&crlf).expect("crlf");
    let sql = "CREATE TABLE a(x);\nCREATE TABLE b(y);\n";
    std::fs::write(lf.join("V1__ab.sql"), sql).expect("write");
    std::fs::write(crlf.join("V1__ab.sql"), sql.replace('\n', "\r\n")).expect("write");
    let a = Migrations::from_dir(&lf).expect("lf set");
    let b = Migrations::from_dir(&crlf).expect("crlf set");
    // Each checksum is refinery's, of the bytes (refinery does not normalise).
    for (set, text) in [(&a, sql.to_owned()), (&b, sql.replace('\n', "\r\n"))] {
        let refinery = refinery_core::Migration::unapplied("V1__ab", &text).expect("refinery");
        assert_eq!(
            set.iter().next().expect("one").checksum(),
            refinery.checksum()
        );
    }
    // Applied from the LF checkout, the CRLF checkout is not divergent.
    let path = dir.path().join("m.db");
    run(&path, a).await.expect("lf");
    let report = run(&path, b).await.expect("crlf is the same");
    assert_eq!(report.already_applied.len(), 1);
}

#[tokio::test]
async fn migrate_to_on_open_and_on_a_connection() {
    let (_dir, path) = common::temp_db("m.db");
    let db = open_with(&path, set(&[V1, V2, V3])).await;
    assert_eq!(applied(&db.migrate_to(2).await.expect("to 2")), vec![1, 2]);
    assert_eq!(applied(&db.migrate().await.expect("rest")), vec![3]);
    db.close().await.expect("close");

    let (_dir, path) = common::temp_db("c.db");
    let conn = ConnectOptions::new(&path)
        .migrations(set(&[V1, V2]))
        .migrate_on_open(true)
        .open()
        .await
        .expect("open migrates");
    assert_eq!(
        common::scalar(&conn, "SELECT count(*) FROM refinery_schema_history").await,
        2
    );
    let failing = ConnectOptions::new(common::temp_db("f.db").1)
        .migrations(set(&[("V1__bad", "NOT SQL")]))
        .migrate_on_open(true)
        .open()
        .await;
    assert!(matches!(failing, Err(Error::Migration(_))), "{failing:?}");
    let none = Connection::open_in_memory().await.expect("open");
    assert!(matches!(none.migrate().await, Err(Error::Config(_))));
}

#[tokio::test]
async fn memory_database_migrations_are_seen_by_every_handle() {
    let db = Database::builder(":memory:")
        .migrations(aiolite::embed_migrations!("migrations"))
        .migrate_on_open(true)
        .open()
        .await
        .expect("open");
    let other = db.clone();
    for table in ["users", "products", "tasks"] {
        assert_eq!(
            common::scalar(
                other.reader(),
                &format!("SELECT count(*) FROM sqlite_schema WHERE name = '{table}'")
            )
            .await,
            1,
            "{table}"
        );
    }
    let report = other.migrate().await.expect("again");
    assert_eq!(report.already_applied.len(), 3);
}
