//! The injection corpus: hostile values and hostile identifiers through every
//! builder method. SQLite's own statement trace shows the SQL text that ran:
//! it never contains a value (every value is bound), identifiers appear only
//! quoted with their `"` doubled, and every payload reads back as data.

use std::sync::Mutex;

use aiolite::prelude::*;
use aiolite::rusqlite::trace::{TraceEvent, TraceEventCodes};
use aiolite::Connection;

static TRACED: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn record(event: TraceEvent<'_>) {
    if let TraceEvent::Stmt(stmt, _) = event {
        TRACED
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(stmt.sql().into_owned());
    }
}

fn take_traced() -> Vec<String> {
    std::mem::take(&mut *TRACED.lock().unwrap_or_else(|p| p.into_inner()))
}

const TABLE: &str = "evil\"; DROP TABLE victims; --\ntable";
const KEY: &str = "k\"ey; --";
const VALUE: &str = "va\nl\"ue";
const DATA: &str = "blob;--";

#[derive(Debug, Clone, PartialEq, aiolite::FromRow, aiolite::Model)]
#[aiolite(table = "evil\"; DROP TABLE victims; --\ntable")]
struct Evil {
    #[aiolite(primary_key, rename = "k\"ey; --")]
    key: String,
    #[aiolite(rename = "va\nl\"ue")]
    value: String,
    #[aiolite(rename = "blob;--")]
    data: Vec<u8>,
}

fn quoted(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

fn payloads() -> Vec<String> {
    vec![
        "' OR 1=1 --".into(),
        "'); DROP TABLE victims; --".into(),
        "\"); DELETE FROM victims; --".into(),
        "Robert'); DELETE FROM victims WHERE ('1'='1".into(),
        "back\\slash\\'\\\"".into(),
        "nul\0inside".into(),
        "/* comment */ SELECT".into(),
        "ünïcödé 🦀 \u{202e}rtl".into(),
        "x".repeat(1 << 20),
    ]
}

/// Every statement traced since the last check: no value, no string literal,
/// identifiers quoted.
fn check_sql(payloads: &[String], op: &str) {
    let traced = take_traced();
    assert!(!traced.is_empty(), "{op}: no statement was traced");
    for sql in traced {
        assert!(
            sql.len() < 2_000,
            "{op}: a value reached the SQL: {} bytes",
            sql.len()
        );
        assert!(!sql.contains('\''), "{op}: a string literal in {sql:?}");
        assert!(!sql.contains('\0'), "{op}: NUL in {sql:?}");
        for p in payloads {
            assert!(!sql.contains(p.as_str()), "{op}: payload {p:?} in {sql:?}");
        }
        if sql.contains("evil") {
            assert!(
                sql.contains(&quoted(TABLE)),
                "{op}: table not quoted in {sql:?}"
            );
        }
    }
}

#[tokio::test]
async fn hostile_values_and_identifiers_stay_data() {
    let conn = Connection::open_in_memory().await.expect("open");
    conn.execute_script(format!(
        "CREATE TABLE victims(id INTEGER PRIMARY KEY);
         INSERT INTO victims VALUES (1);
         CREATE TABLE {}({} TEXT PRIMARY KEY, {} TEXT NOT NULL, {} BLOB NOT NULL);",
        quoted(TABLE),
        quoted(KEY),
        quoted(VALUE),
        quoted(DATA)
    ))
    .await
    .expect("schema");
    conn.call(|c| {
        c.trace_v2(TraceEventCodes::SQLITE_TRACE_STMT, Some(record))?;
        Ok::<_, aiolite::Error>(())
    })
    .await
    .expect("trace");
    take_traced();

    let payloads = payloads();
    for (i, p) in payloads.iter().enumerate() {
        let row = Evil {
            key: p.clone(),
            value: p.clone(),
            data: p.as_bytes().to_vec(),
        };
        assert_eq!(conn.insert(&row).await.expect("insert"), *p);
        check_sql(&payloads, "insert");
        assert_eq!(
            conn.find::<Evil>(p.clone()).await.expect("find"),
            Some(row.clone())
        );
        check_sql(&payloads, "find");

        let found: Vec<Evil> = conn
            .query_all(Evil::select().and_where(EvilColumn::Value.eq(p.as_str())))
            .await
            .expect("select");
        assert_eq!(found, vec![row.clone()]);
        check_sql(&payloads, "select eq");
        let liked: aiolite::Result<Vec<String>> = conn
            .query_all(
                Query::select()
                    .column(EvilColumn::Key)
                    .from(Evil::TABLE)
                    .and_where(EvilColumn::Value.like(p.as_str())),
            )
            .await;
        if p.len() <= 50_000 {
            let liked = liked.expect("select like");
            assert!(
                liked.contains(p),
                "LIKE with the payload as the pattern finds it"
            );
        } else {
            // SQLite caps LIKE patterns at 50,000 bytes: a clean error.
            let err = liked.expect_err("pattern too long");
            assert!(err.to_string().contains("LIKE"), "{err}");
        }
        check_sql(&payloads, "select like");

        let other = payloads[(i + 1) % payloads.len()].clone();
        let updated = Evil {
            value: other.clone(),
            ..row.clone()
        };
        assert!(conn.update(&updated).await.expect("update"));
        check_sql(&payloads, "update");
        let upserted = Evil {
            data: other.as_bytes().to_vec(),
            ..updated.clone()
        };
        conn.upsert(&upserted).await.expect("upsert");
        check_sql(&payloads, "upsert");
        assert_eq!(
            conn.find::<Evil>(p.clone()).await.expect("find"),
            Some(upserted)
        );
        take_traced();

        let changed = conn
            .query_execute(
                Query::update()
                    .table(Evil::TABLE)
                    .value(EvilColumn::Value, p.as_str())
                    .and_where(EvilColumn::Key.eq(p.as_str())),
            )
            .await
            .expect("exec update");
        assert_eq!(changed, 1);
        check_sql(&payloads, "exec update");

        assert!(conn.delete::<Evil>(p.clone()).await.expect("delete"));
        check_sql(&payloads, "delete");
        assert_eq!(conn.find::<Evil>(p.clone()).await.expect("find"), None);
        take_traced();
    }

    let rows: Vec<Evil> = payloads
        .iter()
        .map(|p| Evil {
            key: format!("many {p}"),
            value: p.clone(),
            data: Vec::new(),
        })
        .collect();
    conn.insert_many(&rows).await.expect("insert_many");
    check_sql(&payloads, "insert_many");
    let back: Vec<Evil> = conn
        .query_all(Evil::select().order_by(EvilColumn::Key, Order::Asc))
        .await
        .expect("all");
    let mut expected = rows.clone();
    expected.sort_by(|a, b| a.key.cmp(&b.key));
    assert_eq!(back, expected);

    let victims: i64 = conn
        .fetch_one_as("SELECT count(*) FROM victims", ())
        .await
        .expect("victims survive");
    assert_eq!(victims, 1);
    conn.close().await.expect("close");
}
