//! `#[derive(Model)]`: CRUD on every handle, keys, upserts, batch inserts,
//! sea-query writes, and the column enum.

use aiolite::prelude::*;
use aiolite::sea_query::{Iden, IdenStatic};
use aiolite::{Connection, Database, Error};

const SCHEMA: &str = "
    CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, age INTEGER,
                       settings TEXT NOT NULL);
    CREATE TABLE tags(slug TEXT PRIMARY KEY, uses INTEGER NOT NULL) WITHOUT ROWID;
    CREATE TABLE counters(id INTEGER PRIMARY KEY);
    CREATE TABLE big(id INTEGER PRIMARY KEY, n INTEGER NOT NULL);";

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct Settings {
    theme: String,
}

#[derive(Debug, Clone, PartialEq, aiolite::FromRow, aiolite::Model)]
#[aiolite(table = "users")]
struct User {
    #[aiolite(primary_key)]
    id: i64,
    #[aiolite(rename = "name")]
    display_name: String,
    age: Option<u8>,
    #[aiolite(json)]
    settings: Settings,
    #[aiolite(skip)]
    session: Option<String>,
}

fn user(name: &str, age: Option<u8>) -> User {
    User {
        id: 0,
        display_name: name.into(),
        age,
        settings: Settings {
            theme: "dark".into(),
        },
        session: None,
    }
}

#[derive(Debug, Clone, PartialEq, aiolite::FromRow, aiolite::Model)]
#[aiolite(table = "tags")]
struct Tag {
    #[aiolite(primary_key)]
    slug: String,
    uses: i64,
}

/// Only a key: insert uses DEFAULT VALUES, update has nothing to set.
#[derive(Debug, Clone, PartialEq, aiolite::FromRow, aiolite::Model)]
#[aiolite(table = "counters")]
struct Counter {
    #[aiolite(primary_key)]
    id: i64,
}

#[derive(Debug, Clone, PartialEq, aiolite::FromRow, aiolite::Model)]
#[aiolite(table = "big")]
struct Big {
    #[aiolite(primary_key)]
    id: i64,
    n: u64,
}

async fn conn() -> Connection {
    let c = Connection::open_in_memory().await.expect("open");
    c.execute_script(SCHEMA).await.expect("schema");
    c
}

/// The CRUD cycle, written once for every handle type.
async fn crud_cycle<E: Executor>(e: &E) {
    let mut alice = user("Alice", Some(30));
    alice.id = e.insert(&alice).await.expect("insert");
    assert!(alice.id > 0, "SQLite assigned the key");
    let mut bob = user("Bob", None);
    bob.id = e.insert(&bob).await.expect("insert bob");
    assert_ne!(alice.id, bob.id);

    assert_eq!(
        e.find::<User>(alice.id).await.expect("find"),
        Some(alice.clone())
    );
    alice.age = Some(31);
    alice.settings.theme = "light".into();
    assert!(e.update(&alice).await.expect("update"));
    assert_eq!(
        e.find::<User>(alice.id).await.expect("find"),
        Some(alice.clone())
    );

    let adults: Vec<User> = e
        .query_all(
            User::select()
                .and_where(UserColumn::Age.gte(18))
                .order_by(UserColumn::Id, Order::Asc),
        )
        .await
        .expect("select");
    assert_eq!(adults, vec![alice.clone()]);

    assert!(e.delete::<User>(bob.id).await.expect("delete"));
    assert!(!e.delete::<User>(bob.id).await.expect("delete again"));
    assert_eq!(e.find::<User>(bob.id).await.expect("find"), None);
    let mut ghost = user("Ghost", None);
    ghost.id = 9_999;
    assert!(!e.update(&ghost).await.expect("update of a missing row"));
    // Clean up so the cycle can run again on the same database.
    assert!(e.delete::<User>(alice.id).await.expect("delete"));
}

#[tokio::test]
async fn crud_on_every_handle() {
    let c = conn().await;
    crud_cycle(&c).await;

    let tx = c.begin().await.expect("begin");
    crud_cycle(&tx).await;
    tx.commit().await.expect("commit");

    let mut tx = c.begin().await.expect("begin");
    {
        let sp = tx.savepoint().await.expect("savepoint");
        crud_cycle(&sp).await;
        sp.release().await.expect("release");
    }
    tx.commit().await.expect("commit");

    let (_dir, path) = tempdir_db();
    let db = Database::open(&path).await.expect("db");
    db.execute_script(SCHEMA).await.expect("schema");
    crud_cycle(&db).await;
    let tx = db.begin().await.expect("begin");
    crud_cycle(&tx).await;
    tx.rollback().await.expect("rollback");
    db.close().await.expect("close");
}

fn tempdir_db() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("model.db");
    (dir, path)
}

#[tokio::test]
async fn a_rolled_back_transaction_keeps_nothing() {
    let c = conn().await;
    let tx = c.begin().await.expect("begin");
    let id = tx.insert(&user("Temp", None)).await.expect("insert");
    tx.rollback().await.expect("rollback");
    assert_eq!(c.find::<User>(id).await.expect("find"), None);
}

#[tokio::test]
async fn text_keys_are_inserted_as_given_and_upsert_updates() {
    let c = conn().await;
    let rust = Tag {
        slug: "rust".into(),
        uses: 1,
    };
    assert_eq!(c.insert(&rust).await.expect("insert"), "rust");
    let err = c.insert(&rust).await.expect_err("duplicate key");
    assert!(err.is_unique_violation(), "{err:?}");
    let more = Tag {
        slug: "rust".into(),
        uses: 5,
    };
    assert_eq!(c.upsert(&more).await.expect("upsert"), "rust");
    assert_eq!(
        c.find::<Tag>("rust".into()).await.expect("find"),
        Some(more)
    );
    let new = Tag {
        slug: "sql".into(),
        uses: 2,
    };
    c.upsert(&new).await.expect("upsert inserts");
    assert_eq!(c.find::<Tag>("sql".into()).await.expect("find"), Some(new));
}

#[tokio::test]
async fn upsert_writes_an_integer_key_as_given() {
    let c = conn().await;
    let mut u = user("Keyed", Some(1));
    u.id = 42;
    assert_eq!(c.upsert(&u).await.expect("upsert"), 42);
    u.age = Some(2);
    c.upsert(&u).await.expect("upsert updates");
    assert_eq!(c.find::<User>(42).await.expect("find"), Some(u));
}

#[tokio::test]
async fn insert_many_is_all_or_nothing_and_returns_keys_in_order() {
    let c = conn().await;
    let batch: Vec<User> = (0..50).map(|i| user(&format!("u{i}"), Some(i))).collect();
    let keys = c.insert_many(&batch).await.expect("insert_many");
    assert_eq!(keys.len(), 50);
    for (k, u) in keys.iter().zip(&batch) {
        let found = c.find::<User>(*k).await.expect("find").expect("row");
        assert_eq!(found.display_name, u.display_name);
    }
    // A duplicate name in the middle fails the whole batch.
    let bad = vec![user("fresh1", None), user("u3", None), user("fresh2", None)];
    let err = c.insert_many(&bad).await.expect_err("unique violation");
    assert!(err.is_unique_violation(), "{err:?}");
    let n: i64 = c
        .fetch_one_as("SELECT count(*) FROM users WHERE name LIKE 'fresh%'", ())
        .await
        .expect("count");
    assert_eq!(n, 0, "the rows before the failure were rolled back");
    assert!(!c.in_transaction().await.expect("state"));
    // Inside a caller's transaction it nests as a savepoint.
    let tx = c.begin().await.expect("begin");
    tx.insert_many(&[user("t1", None), user("t2", None)])
        .await
        .expect("nested");
    tx.rollback().await.expect("rollback");
    let n: i64 = c
        .fetch_one_as("SELECT count(*) FROM users WHERE name LIKE 't_'", ())
        .await
        .expect("count");
    assert_eq!(n, 0);
    let none: Vec<i64> = c.insert_many::<User>(&[]).await.expect("empty batch");
    assert!(none.is_empty());
}

#[tokio::test]
async fn key_only_models_work() {
    let c = conn().await;
    let id = c.insert(&Counter { id: 0 }).await.expect("insert");
    assert!(c.update(&Counter { id }).await.expect("update existing"));
    assert!(!c
        .update(&Counter { id: id + 1 })
        .await
        .expect("update missing"));
    c.upsert(&Counter { id }).await.expect("upsert existing");
    assert_eq!(
        c.find::<Counter>(id).await.expect("find"),
        Some(Counter { id })
    );
}

#[tokio::test]
async fn u64_above_i64_max_is_refused_and_nothing_is_written() {
    let c = conn().await;
    let err = c
        .insert(&Big { id: 0, n: u64::MAX })
        .await
        .expect_err("u64::MAX cannot be stored");
    assert_eq!(err.kind(), aiolite::ErrorKind::Interface, "{err:?}");
    let n: i64 = c
        .fetch_one_as("SELECT count(*) FROM big", ())
        .await
        .expect("count");
    assert_eq!(n, 0);
    let max = i64::MAX as u64;
    let id = c.insert(&Big { id: 0, n: max }).await.expect("in range");
    assert_eq!(
        c.find::<Big>(id).await.expect("find"),
        Some(Big { id, n: max })
    );
}

#[tokio::test]
async fn column_enum_and_select() {
    assert_eq!(UserColumn::DisplayName.as_str(), "name");
    assert_eq!(UserColumn::Age.unquoted(), "age");
    assert_eq!(
        User::all_columns(),
        &[
            UserColumn::Id,
            UserColumn::DisplayName,
            UserColumn::Age,
            UserColumn::Settings
        ]
    );
    let (sql, values) = User::select().and_where(UserColumn::Age.gt(18)).to_sql();
    assert_eq!(
        sql,
        r#"SELECT "id", "name", "age", "settings" FROM "users" WHERE "age" > ?"#
    );
    assert_eq!(values.len(), 1);
}

#[tokio::test]
async fn sea_query_writes_run_through_exec() {
    let c = conn().await;
    let id = c
        .query_execute_insert(
            Query::insert()
                .into_table(User::TABLE)
                .columns([UserColumn::DisplayName, UserColumn::Settings])
                .values_panic(["Carol".into(), r#"{"theme":"x"}"#.into()]),
        )
        .await
        .expect("insert");
    let changed = c
        .query_execute(
            Query::update()
                .table(User::TABLE)
                .value(UserColumn::Age, 40)
                .and_where(UserColumn::Id.eq(id)),
        )
        .await
        .expect("update");
    assert_eq!(changed, 1);
    let age: Option<u8> = c
        .query_one(
            Query::select()
                .column(UserColumn::Age)
                .from(User::TABLE)
                .and_where(UserColumn::Id.eq(id)),
        )
        .await
        .expect("age");
    assert_eq!(age, Some(40));
    let deleted = c
        .query_execute(
            Query::delete()
                .from_table(User::TABLE)
                .and_where(UserColumn::Id.eq(id)),
        )
        .await
        .expect("delete");
    assert_eq!(deleted, 1);
    // RETURNING rows decode like a select.
    let returned: Vec<(i64, String)> = c
        .query_all(
            Query::insert()
                .into_table(User::TABLE)
                .columns([UserColumn::DisplayName, UserColumn::Settings])
                .values_panic(["Dan".into(), "{}".into()])
                .returning(Query::returning().columns([UserColumn::Id, UserColumn::DisplayName])),
        )
        .await
        .expect("returning");
    assert_eq!(returned.len(), 1);
    assert_eq!(returned[0].1, "Dan");
}

#[tokio::test]
async fn a_decode_failure_of_find_names_the_field() {
    let c = conn().await;
    c.execute(
        "INSERT INTO users(id, name, age, settings) VALUES (1, 'Old', 300, '{\"theme\":\"x\"}')",
        (),
    )
    .await
    .expect("raw insert");
    let err = c.find::<User>(1).await.expect_err("age 300 into u8");
    assert!(
        matches!(&err, Error::Decode { field: Some(f), column, .. } if f == "User.age" && column == "age"),
        "{err:?}"
    );
}
