//! Models that never lose a write: keys that are not the rowid, columns the
//! database fills, updates of chosen or changed columns only, insert
//! returning the stored row, and pages of a select with their total.

use aiolite::prelude::*;
use aiolite::{Connection, Database};

#[derive(Debug, Clone, PartialEq, aiolite::FromRow, aiolite::Model)]
#[aiolite(table = "accounts")]
struct Account {
    #[aiolite(primary_key)]
    id: i64,
    owner: String,
    balance: i64,
}

/// Reported: with `id BIGINT PRIMARY KEY`, `insert` returned Ok(1), stored a
/// NULL id, and `find(1)` was None. Only `INTEGER PRIMARY KEY` is the rowid.
#[tokio::test]
async fn an_integer_key_that_is_not_the_rowid_is_written_as_given() {
    for (schema, rowid) in [
        (
            "(id BIGINT PRIMARY KEY, owner TEXT, balance INTEGER)",
            false,
        ),
        ("(id INT PRIMARY KEY, owner TEXT, balance INTEGER)", false),
        (
            "(id INTEGER PRIMARY KEY DESC, owner TEXT, balance INTEGER)",
            false,
        ),
        (
            "(id INTEGER PRIMARY KEY, owner TEXT, balance INTEGER) WITHOUT ROWID",
            false,
        ),
        (
            "(id INTEGER, owner TEXT, balance INTEGER, PRIMARY KEY (id))",
            true,
        ),
        (
            "(id integer primary key, owner TEXT, balance INTEGER)",
            true,
        ),
        (
            "(id INTEGER PRIMARY KEY, owner TEXT, balance INTEGER)",
            true,
        ),
    ] {
        let db = Connection::open_in_memory().await.expect("open");
        db.execute_script(format!("CREATE TABLE accounts{schema};"))
            .await
            .expect("schema");
        let given = Account {
            id: 7,
            owner: "ann".into(),
            balance: 10,
        };
        let key = db.insert(&given).await.expect("insert");
        let nulls: i64 = db
            .fetch_one_as("SELECT count(*) FROM accounts WHERE id IS NULL", ())
            .await
            .expect("count");
        assert_eq!(nulls, 0, "{schema}: a NULL key was stored");
        if rowid {
            assert_eq!(key, 1, "{schema}: SQLite assigns the rowid");
        } else {
            assert_eq!(key, 7, "{schema}: the model's key is written");
        }
        assert!(
            db.find::<Account>(key).await.expect("find").is_some(),
            "{schema}"
        );
        // The batch path decides the same way.
        let batch = [
            Account {
                id: 20,
                ..given.clone()
            },
            Account {
                id: 21,
                ..given.clone()
            },
        ];
        let keys = db.insert_many(&batch).await.expect("insert_many");
        if rowid {
            assert_eq!(keys, [2, 3], "{schema}");
        } else {
            assert_eq!(keys, [20, 21], "{schema}");
        }
        for k in keys {
            assert!(
                db.find::<Account>(k).await.expect("find").is_some(),
                "{schema}"
            );
        }
        db.close().await.expect("close");
    }
}

/// Reported: find-change-update reverted a concurrent `balance - 40`.
#[tokio::test]
async fn updating_chosen_or_changed_columns_keeps_a_concurrent_change() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Database::open(dir.path().join("a.db")).await.expect("open");
    db.execute_script(
        "CREATE TABLE accounts(id INTEGER PRIMARY KEY, owner TEXT, balance INTEGER);",
    )
    .await
    .expect("schema");
    let id = db
        .insert(&Account {
            id: 0,
            owner: "ann".into(),
            balance: 100,
        })
        .await
        .expect("insert");
    let before = db.find::<Account>(id).await.expect("find").expect("row");
    // Another request, between this one's read and its write.
    db.execute(
        "UPDATE accounts SET balance = balance - 40 WHERE id = ?",
        (id,),
    )
    .await
    .expect("concurrent");
    let mut after = before.clone();
    after.owner = "Ann".into();
    assert!(db
        .update_changed(&before, &after)
        .await
        .expect("update_changed"));
    let stored = db.find::<Account>(id).await.expect("find").expect("row");
    assert_eq!((stored.owner.as_str(), stored.balance), ("Ann", 60));

    after.owner = "ANN".into();
    assert!(db
        .update_columns(&after, &[AccountColumn::Owner])
        .await
        .expect("update_columns"));
    let stored = db.find::<Account>(id).await.expect("find").expect("row");
    assert_eq!((stored.owner.as_str(), stored.balance), ("ANN", 60));
    // Nothing changed: nothing written, the row exists.
    assert!(db
        .update_changed(&stored, &stored)
        .await
        .expect("no change"));
    let gone = Account {
        id: 999,
        ..stored.clone()
    };
    assert!(!db.update_changed(&gone, &gone).await.expect("no row"));
    assert!(!db
        .update_columns(&gone, &[AccountColumn::Owner])
        .await
        .expect("no row"));
    // `update` writes every column, as documented: the old balance returns.
    assert!(db.update(&before).await.expect("update"));
    let stored = db.find::<Account>(id).await.expect("find").expect("row");
    assert_eq!(stored.balance, 100);
    db.close().await.expect("close");
}

#[derive(Debug, Clone, PartialEq, aiolite::FromRow, aiolite::Model)]
#[aiolite(table = "events")]
struct Event {
    #[aiolite(primary_key)]
    id: i64,
    name: String,
    #[aiolite(db_default)]
    created_at: String,
    #[aiolite(db_default)]
    status: String,
    #[aiolite(generated)]
    name_length: i64,
}

const EVENTS: &str = "CREATE TABLE events(
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    status TEXT NOT NULL DEFAULT 'new',
    name_length INTEGER GENERATED ALWAYS AS (length(name)) VIRTUAL);";

/// Reported: `insert` wrote every column, so `created_at` was stored as "".
#[tokio::test]
async fn columns_the_database_fills_are_left_to_it_and_read_back() {
    let db = Connection::open_in_memory().await.expect("open");
    db.execute_script(EVENTS).await.expect("schema");
    let draft = Event {
        id: 0,
        name: "launch".into(),
        created_at: String::new(),
        status: String::new(),
        name_length: 0,
    };
    let stored = db.insert_returning(&draft).await.expect("insert_returning");
    assert_eq!(stored.id, 1);
    assert!(stored.created_at.starts_with("20"), "{stored:?}");
    assert_eq!(stored.status, "new");
    assert_eq!(stored.name_length, 6);
    let id = db.insert(&draft).await.expect("insert");
    let again = db.find::<Event>(id).await.expect("find").expect("row");
    assert!(
        !again.created_at.is_empty(),
        "the DEFAULT applied: {again:?}"
    );
    // A generated column is never written, by update or upsert either.
    let mut renamed = again.clone();
    renamed.name = "go".into();
    renamed.status = "done".into();
    assert!(db.update(&renamed).await.expect("update"));
    let after = db.find::<Event>(id).await.expect("find").expect("row");
    assert_eq!((after.status.as_str(), after.name_length), ("done", 2));
    db.upsert(&renamed).await.expect("upsert");
    // insert_many leaves them to the database too.
    db.insert_many(&[draft.clone(), draft.clone()])
        .await
        .expect("insert_many");
    let empty: i64 = db
        .fetch_one_as(
            "SELECT count(*) FROM events WHERE created_at = '' OR status = ''",
            (),
        )
        .await
        .expect("count");
    assert_eq!(empty, 0);
    db.close().await.expect("close");
}

#[tokio::test]
async fn insert_returning_on_a_pool_and_in_a_transaction() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Database::open(dir.path().join("e.db")).await.expect("open");
    db.execute_script(EVENTS).await.expect("schema");
    let draft = Event {
        id: 0,
        name: "pool".into(),
        created_at: String::new(),
        status: String::new(),
        name_length: 0,
    };
    assert_eq!(
        db.insert_returning(&draft).await.expect("pool").status,
        "new"
    );
    let tx = db.begin().await.expect("begin");
    let inside = tx.insert_returning(&draft).await.expect("in tx");
    tx.rollback().await.expect("rollback");
    assert!(db.find::<Event>(inside.id).await.expect("find").is_none());
    db.close().await.expect("close");
}

#[tokio::test]
async fn pages_of_a_select_with_the_total() {
    let db = Connection::open_in_memory().await.expect("open");
    db.execute_script(
        "CREATE TABLE accounts(id INTEGER PRIMARY KEY, owner TEXT, balance INTEGER);
         INSERT INTO accounts(owner, balance)
           WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 45)
           SELECT 'o' || (x % 7), x FROM c;",
    )
    .await
    .expect("schema");
    let mut select = Account::select();
    select
        .and_where(AccountColumn::Balance.gt(5))
        .order_by(AccountColumn::Balance, Order::Desc);
    let mut seen = Vec::new();
    for n in 0..4 {
        let page = db
            .query_page::<Account>(&select, n, 12)
            .await
            .expect("page");
        assert_eq!((page.total, page.pages(), page.page), (40, 4, n));
        assert_eq!(page.items.len(), if n < 3 { 12 } else { 4 });
        seen.extend(page.items.iter().map(|a| a.balance));
    }
    let expected: Vec<i64> = (6..=45).rev().collect();
    assert_eq!(seen, expected, "every row once, in the statement's order");
    let past = db
        .query_page::<Account>(&select, 9, 12)
        .await
        .expect("past the end");
    assert_eq!((past.items.len(), past.total), (0, 40));
    let mut none = Account::select();
    none.and_where(AccountColumn::Balance.gt(1000));
    let empty = db.query_page::<Account>(&none, 0, 12).await.expect("empty");
    assert_eq!((empty.items.len(), empty.total, empty.pages()), (0, 0, 0));
    // DISTINCT is counted after it removes duplicates.
    let mut owners = aiolite::sea_query::Query::select();
    owners
        .distinct()
        .column("owner")
        .from("accounts")
        .order_by("owner", Order::Asc);
    let page = db
        .query_page::<(String,)>(&owners, 0, 5)
        .await
        .expect("distinct");
    assert_eq!(page.total, 7);
    assert_eq!(
        page.items.iter().map(|(o,)| o.as_str()).collect::<Vec<_>>(),
        ["o0", "o1", "o2", "o3", "o4"]
    );
    db.close().await.expect("close");
}
