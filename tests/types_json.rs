//! JSON (`serde_json` feature): `Json<T>` and `serde_json::Value` stored as
//! JSON text, read back equal; NULL, the JSON `null` and bad JSON apart.
#![cfg(feature = "serde_json")]

use aiolite::prelude::*;
use aiolite::{Connection, Json};

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct Settings {
    theme: String,
    size: u8,
}

#[tokio::test]
async fn json_is_text_and_reads_back() {
    let db = Connection::open_in_memory().await.expect("open");
    db.execute_script("CREATE TABLE t(id INTEGER PRIMARY KEY, x);")
        .await
        .expect("table");
    let settings = Settings {
        theme: "dark".into(),
        size: 3,
    };
    let value = serde_json::json!({"a": [1, 2.5, "three", null], "b": {"c": true}});
    for v in [
        aiolite::Encode::encode(&Json(settings.clone())).expect("encode"),
        aiolite::Encode::encode(&value).expect("encode"),
    ] {
        let mut insert = Query::insert();
        insert
            .into_table("t")
            .columns(["x"])
            .values([Expr::val(v)])
            .expect("values");
        db.query_execute(&insert).await.expect("insert");
    }
    let classes: Vec<(String,)> = db
        .fetch_all_as("SELECT typeof(x) FROM t ORDER BY id", ())
        .await
        .expect("classes");
    assert_eq!(classes, [("text".to_owned(),), ("text".to_owned(),)]);
    let back: (Json<Settings>,) = db
        .fetch_one_as("SELECT x FROM t WHERE id = 1", ())
        .await
        .expect("settings");
    assert_eq!(back.0 .0, settings);
    let back: (serde_json::Value,) = db
        .fetch_one_as("SELECT x FROM t WHERE id = 2", ())
        .await
        .expect("value");
    assert_eq!(back.0, value);
}

#[tokio::test]
async fn null_json_null_and_bad_json_are_told_apart() {
    let db = Connection::open_in_memory().await.expect("open");
    let none: (Option<Json<Settings>>,) = db.fetch_one_as("SELECT NULL", ()).await.expect("NULL");
    assert_eq!(none.0, None);
    let err = db
        .fetch_one_as::<(Json<Settings>,), _>("SELECT NULL", ())
        .await
        .expect_err("NULL is not a Settings");
    assert!(matches!(err, aiolite::Error::Decode { .. }), "{err:?}");
    let err = db
        .fetch_one_as::<(Json<Settings>,), _>("SELECT '{\"theme\": '", ())
        .await
        .expect_err("bad JSON");
    assert!(err.to_string().contains("JSON"), "{err}");
    let null: (serde_json::Value,) = db.fetch_one_as("SELECT 'null'", ()).await.expect("null");
    assert_eq!(null.0, serde_json::Value::Null);
}
