//! `FromRow`: the derive's attributes, the built-in impls, and the errors a
//! bad row gives. Decoding runs on the worker; these tests see the results.

use aiolite::prelude::*;
// String-named columns use sea-query's operators, imported by name.
use aiolite::sea_query::ExprTrait;
use aiolite::{Connection, Error, Row};
use futures_util::TryStreamExt;

async fn conn() -> Connection {
    let c = Connection::open_in_memory().await.expect("open");
    c.execute_script(
        "CREATE TABLE authors(id INTEGER PRIMARY KEY, name TEXT NOT NULL, country TEXT);
         CREATE TABLE posts(id INTEGER PRIMARY KEY, title TEXT NOT NULL, author_id INTEGER,
                            tags TEXT, meta TEXT, score REAL, views INTEGER);
         INSERT INTO authors VALUES (1, 'Ann', 'NZ'), (2, 'Bob', NULL);
         INSERT INTO posts VALUES
           (10, 'Hello', 1, '[\"a\",\"b\"]', '{\"draft\":false}', 4.5, 300),
           (11, 'Orphan', NULL, '[]', NULL, NULL, 7);",
    )
    .await
    .expect("schema");
    c
}

#[derive(Debug, PartialEq, aiolite::FromRow)]
struct Author {
    id: i64,
    name: String,
    country: Option<String>,
}

#[derive(Debug, PartialEq, serde::Deserialize)]
struct Meta {
    draft: bool,
}

#[derive(Debug, PartialEq, aiolite::FromRow)]
struct Post {
    #[aiolite(rename = "id")]
    post_id: i64,
    title: String,
    #[aiolite(json)]
    tags: Vec<String>,
    #[aiolite(json(nullable))]
    meta: Option<Meta>,
    #[aiolite(flatten, prefix = "author_")]
    author: Option<Author>,
    #[aiolite(skip)]
    cached: Vec<u8>,
    #[aiolite(try_from = "i64")]
    views: u16,
    #[aiolite(default)]
    missing: Option<i64>,
}

const POSTS: &str = "SELECT p.id, p.title, p.tags, p.meta, p.views,
        a.id AS author_id, a.name AS author_name, a.country AS author_country
   FROM posts p LEFT JOIN authors a ON a.id = p.author_id ORDER BY p.id";

#[tokio::test]
async fn derive_reads_every_attribute() {
    let c = conn().await;
    let posts: Vec<Post> = c.fetch_all_as(POSTS, ()).await.expect("posts");
    assert_eq!(
        posts,
        vec![
            Post {
                post_id: 10,
                title: "Hello".into(),
                tags: vec!["a".into(), "b".into()],
                meta: Some(Meta { draft: false }),
                author: Some(Author {
                    id: 1,
                    name: "Ann".into(),
                    country: Some("NZ".into()),
                }),
                cached: Vec::new(),
                views: 300,
                missing: None,
            },
            // LEFT JOIN without a match: every author_ column is NULL, so
            // the flattened Option is None (not a decode error).
            Post {
                post_id: 11,
                title: "Orphan".into(),
                tags: vec![],
                meta: None,
                author: None,
                cached: Vec::new(),
                views: 7,
                missing: None,
            },
        ]
    );
}

#[derive(Debug, PartialEq, aiolite::FromRow)]
#[aiolite(rename_all = "camelCase")]
struct Camel {
    user_id: i64,
    display_name: String,
}

#[derive(Debug, PartialEq, aiolite::FromRow)]
#[aiolite(rename_all = "SCREAMING_SNAKE_CASE")]
struct Screaming {
    user_id: i64,
}

#[tokio::test]
async fn rename_all_rules() {
    let c = conn().await;
    let v: Camel = c
        .fetch_one_as("SELECT 1 AS userId, 'x' AS displayName", ())
        .await
        .expect("camel");
    assert_eq!(
        v,
        Camel {
            user_id: 1,
            display_name: "x".into()
        }
    );
    let v: Screaming = c
        .fetch_one_as("SELECT 2 AS USER_ID", ())
        .await
        .expect("screaming");
    assert_eq!(v, Screaming { user_id: 2 });
}

#[derive(Debug, PartialEq, aiolite::FromRow)]
#[aiolite(default)]
struct WithDefaults {
    a: i64,
    b: String,
    #[aiolite(skip)]
    c: i64,
}

impl Default for WithDefaults {
    fn default() -> Self {
        WithDefaults {
            a: -1,
            b: "unset".into(),
            c: 42,
        }
    }
}

#[tokio::test]
async fn container_default_fills_missing_columns_from_the_struct_default() {
    let c = conn().await;
    let v: WithDefaults = c
        .fetch_one_as("SELECT 'given' AS b", ())
        .await
        .expect("row");
    assert_eq!(
        v,
        WithDefaults {
            a: -1,
            b: "given".into(),
            c: 42
        }
    );
    let v: WithDefaults = c
        .fetch_one_as("SELECT 5 AS a, 'x' AS b", ())
        .await
        .expect("row");
    assert_eq!(
        v,
        WithDefaults {
            a: 5,
            b: "x".into(),
            c: 42
        }
    );
}

#[derive(Debug, PartialEq)]
struct Celsius(f64);

impl From<f64> for Celsius {
    fn from(v: f64) -> Self {
        Celsius(v)
    }
}

#[derive(Debug, PartialEq, aiolite::FromRow)]
struct Reading {
    #[aiolite(from = "f64")]
    temp: Celsius,
}

#[tokio::test]
async fn from_converts_after_decoding() {
    let c = conn().await;
    let r: Reading = c
        .fetch_one_as("SELECT 21.5 AS temp", ())
        .await
        .expect("row");
    assert_eq!(r.temp, Celsius(21.5));
}

type Sixteen = (
    i64,
    i64,
    i64,
    i64,
    i64,
    i64,
    i64,
    i64,
    i64,
    i64,
    i64,
    i64,
    i64,
    i64,
    i64,
    i64,
);

#[tokio::test]
async fn tuples_single_values_rows_and_options() {
    let c = conn().await;
    let pairs: Vec<(i64, String, Option<String>)> = c
        .fetch_all_as("SELECT id, name, country FROM authors ORDER BY id", ())
        .await
        .expect("tuples");
    assert_eq!(
        pairs,
        vec![
            (1, "Ann".into(), Some("NZ".into())),
            (2, "Bob".into(), None)
        ]
    );
    let n: i64 = c
        .fetch_one_as("SELECT count(*) FROM authors", ())
        .await
        .expect("count");
    assert_eq!(n, 2);
    let none: Option<String> = c
        .fetch_one_as("SELECT country FROM authors WHERE id = 2", ())
        .await
        .expect("null country");
    assert_eq!(none, None);
    let missing: Option<i64> = c
        .fetch_optional_as("SELECT id FROM authors WHERE id = 99", ())
        .await
        .expect("no row");
    assert_eq!(missing, None);
    let row: Row = c
        .fetch_one_as("SELECT name FROM authors WHERE id = 1", ())
        .await
        .expect("row");
    assert_eq!(row.get::<_, String>("name").expect("name"), "Ann");
    let sixteen: Sixteen = c
        .fetch_one_as("SELECT 1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16", ())
        .await
        .expect("16-tuple");
    assert_eq!(sixteen.15, 16);
    let err = c
        .fetch_one_as::<(i64, i64, i64), _>("SELECT 1, 2", ())
        .await
        .expect_err("too few columns");
    assert!(
        matches!(err, Error::ColumnIndexOutOfRange { index: 2, len: 2 }),
        "{err:?}"
    );
    let err = c
        .fetch_one_as::<i64, _>("SELECT 1 WHERE 0", ())
        .await
        .expect_err("no rows");
    assert!(matches!(err, Error::NoRows { .. }), "{err:?}");
}

#[tokio::test]
async fn decode_error_names_field_column_rust_type_and_sqlite_type() {
    let c = conn().await;
    let err = c
        .fetch_one_as::<Author, _>("SELECT 1 AS id, NULL AS name, NULL AS country", ())
        .await
        .expect_err("NULL name");
    match &err {
        Error::Decode {
            index,
            column,
            field,
            expected,
            found,
        } => {
            assert_eq!(*index, 1);
            assert_eq!(column, "name");
            assert_eq!(field.as_deref(), Some("Author.name"));
            assert!(expected.ends_with("String"), "{expected}");
            assert_eq!(found, "NULL");
        }
        other => panic!("unexpected {other:?}"),
    }
    let text = err.to_string();
    assert!(
        text.contains("Author.name") && text.contains("\"name\"") && text.contains("NULL"),
        "{text}"
    );
}

#[tokio::test]
async fn a_missing_column_names_itself() {
    let c = conn().await;
    let err = c
        .fetch_one_as::<Author, _>("SELECT 1 AS id, 'x' AS name", ())
        .await
        .expect_err("no country column");
    assert!(
        matches!(&err, Error::ColumnNotFound(name) if name == "country"),
        "{err:?}"
    );
    let err = c
        .fetch_all_as::<Post, _>("SELECT id, title, tags, meta, views FROM posts", ())
        .await
        .expect_err("no author_ columns");
    assert!(
        matches!(&err, Error::ColumnNotFound(name) if name == "author_id"),
        "{err:?}"
    );
}

#[derive(Debug, aiolite::FromRow)]
struct Numbers {
    small: u8,
    big: u64,
    real: f64,
    maybe: Option<f64>,
}

#[tokio::test]
async fn overflow_is_an_error_never_a_wrap() {
    let c = conn().await;
    let ok = c
        .fetch_one_as::<Numbers, _>(
            "SELECT 255 AS small, 9223372036854775807 AS big, 3 AS real, 0.5 AS maybe",
            (),
        )
        .await
        .expect("edges that fit");
    assert_eq!(
        (ok.small, ok.big, ok.real, ok.maybe),
        (255, i64::MAX as u64, 3.0, Some(0.5))
    );
    let err = c
        .fetch_one_as::<Numbers, _>(
            "SELECT 256 AS small, 1 AS big, 1.0 AS real, NULL AS maybe",
            (),
        )
        .await
        .expect_err("256 into u8");
    assert!(
        matches!(&err, Error::Decode { field: Some(f), found, .. }
            if f == "Numbers.small" && found.contains("256") && found.contains("out of range")),
        "{err:?}"
    );
    let err = c
        .fetch_one_as::<Numbers, _>(
            "SELECT 1 AS small, -1 AS big, 1.0 AS real, NULL AS maybe",
            (),
        )
        .await
        .expect_err("-1 into u64");
    assert!(
        matches!(&err, Error::Decode { field: Some(f), .. } if f == "Numbers.big"),
        "{err:?}"
    );
    let err = c
        .fetch_one_as::<Post, _>(
            "SELECT 1 AS id, 't' AS title, '[]' AS tags, NULL AS meta, 70000 AS views,
                    NULL AS author_id, NULL AS author_name, NULL AS author_country",
            (),
        )
        .await
        .expect_err("70000 into u16 via try_from");
    assert!(
        matches!(&err, Error::Decode { field: Some(f), .. } if f == "Post.views"),
        "{err:?}"
    );
}

#[tokio::test]
async fn nan_is_stored_as_null_an_error_for_f64_none_for_option() {
    let c = conn().await;
    c.execute_script("CREATE TABLE f(real REAL, maybe REAL)")
        .await
        .expect("table");
    c.execute("INSERT INTO f VALUES (?, ?)", (f64::NAN, f64::NAN))
        .await
        .expect("insert NaN");
    let err = c
        .fetch_one_as::<Numbers, _>("SELECT 1 AS small, 1 AS big, real, maybe FROM f", ())
        .await
        .expect_err("NaN (NULL) into f64");
    assert!(
        matches!(&err, Error::Decode { field: Some(f), found, .. } if f == "Numbers.real" && found == "NULL"),
        "{err:?}"
    );
    let maybe: Option<f64> = c
        .fetch_one_as("SELECT maybe FROM f", ())
        .await
        .expect("NaN into Option<f64>");
    assert_eq!(maybe, None);
}

#[tokio::test]
async fn invalid_json_is_a_decode_error() {
    let c = conn().await;
    let err = c
        .fetch_one_as::<Post, _>(
            "SELECT 1 AS id, 't' AS title, 'not json' AS tags, NULL AS meta, 1 AS views,
                    NULL AS author_id, NULL AS author_name, NULL AS author_country",
            (),
        )
        .await
        .expect_err("bad json");
    assert!(
        matches!(&err, Error::Decode { field: Some(f), found, .. } if f == "Post.tags" && found.contains("invalid JSON")),
        "{err:?}"
    );
}

#[tokio::test]
async fn stream_as_decodes_on_the_worker_across_chunks() {
    let c = aiolite::ConnectOptions::in_memory()
        .iter_chunk_size(7)
        .open()
        .await
        .expect("open");
    let got: Vec<(i64, String)> = c
        .stream_as(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100)
             SELECT i, 'row ' || i FROM n",
            (),
        )
        .try_collect()
        .await
        .expect("stream");
    assert_eq!(got.len(), 100);
    assert_eq!(got[99], (100, "row 100".to_owned()));
    // An error in a later chunk ends the stream with that error.
    let err = c
        .stream_as::<i64, _>(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20)
             SELECT CASE WHEN i = 15 THEN 'x' ELSE i END FROM n",
            (),
        )
        .try_collect::<Vec<_>>()
        .await
        .expect_err("text in row 15");
    assert!(matches!(err, Error::Decode { .. }), "{err:?}");
}

#[tokio::test]
async fn sea_query_selects_run_and_decode() {
    let c = conn().await;
    let names: Vec<String> = c
        .query_all(
            Query::select()
                .column("name")
                .from("authors")
                .and_where(Expr::col("country").is_not_null())
                .order_by("id", Order::Asc),
        )
        .await
        .expect("select");
    assert_eq!(names, vec!["Ann".to_owned()]);
    let one: Author = c
        .query_one(
            Query::select()
                .columns(["id", "name", "country"])
                .from("authors")
                .and_where(Expr::col("id").eq(2)),
        )
        .await
        .expect("one");
    assert_eq!(one.name, "Bob");
    let none: Option<Author> = c
        .query_optional(
            Query::select()
                .columns(["id", "name", "country"])
                .from("authors")
                .and_where(Expr::col("id").eq(3)),
        )
        .await
        .expect("optional");
    assert_eq!(none, None);
}
