//! `#[derive(FromRow)]` read exactly as sqlx reads it, attribute for
//! attribute: rename_all by heck's rules (sqlx's own), `json(nullable)`,
//! `default` over `flatten`, the combinations sqlx accepts, tuple structs,
//! attribute values through `macro_rules!`, and errors that name the field
//! path and the value.
#![allow(non_snake_case)] // field names as other codebases write them

use aiolite::prelude::*;
use aiolite::{Connection, Error};
use heck::{
    ToKebabCase, ToLowerCamelCase, ToShoutyKebabCase, ToShoutySnakeCase, ToSnakeCase,
    ToUpperCamelCase,
};

async fn conn() -> Connection {
    Connection::open_in_memory().await.expect("open")
}

/// The field names the rename_all table is checked on.
const FIELDS: [&str; 5] = ["user_id", "userId", "_private", "HTTPStatus", "created2_at"];

/// sqlx's rule (sqlx-macros-core's `rename_all`): lowercase and UPPERCASE
/// change case only; the others are heck's.
fn sqlx_rule(rule: &str, field: &str) -> String {
    match rule {
        "lowercase" => field.to_lowercase(),
        "UPPERCASE" => field.to_uppercase(),
        "snake_case" => field.to_snake_case(),
        "kebab-case" => field.to_kebab_case(),
        "camelCase" => field.to_lower_camel_case(),
        "PascalCase" => field.to_upper_camel_case(),
        "SCREAMING_SNAKE_CASE" => field.to_shouty_snake_case(),
        "SCREAMING-KEBAB-CASE" => field.to_shouty_kebab_case(),
        other => panic!("rule {other}"),
    }
}

// The rule reaches the derive through `$rule:literal`, as in code that
// generates its row types with a macro.
macro_rules! renamed {
    ($name:ident, $rule:literal) => {
        #[derive(Debug, PartialEq, aiolite::FromRow)]
        #[aiolite(rename_all = $rule)]
        struct $name {
            user_id: i64,
            userId: i64,
            _private: i64,
            HTTPStatus: i64,
            created2_at: i64,
        }

        impl $name {
            const RULE: &'static str = $rule;
            fn values(&self) -> [i64; 5] {
                [
                    self.user_id,
                    self.userId,
                    self._private,
                    self.HTTPStatus,
                    self.created2_at,
                ]
            }
        }
    };
}

renamed!(Lower, "lowercase");
renamed!(Upper, "UPPERCASE");
renamed!(Snake, "snake_case");
renamed!(Kebab, "kebab-case");
renamed!(Camel, "camelCase");
renamed!(Pascal, "PascalCase");
renamed!(ScreamingSnake, "SCREAMING_SNAKE_CASE");
renamed!(ScreamingKebab, "SCREAMING-KEBAB-CASE");

/// A SELECT naming each field's column as sqlx would, with distinct values.
/// Two fields that map to one name (snake_case folds `user_id` and `userId`)
/// read the same column, as in sqlx.
fn select_for(rule: &str) -> (String, [i64; 5]) {
    let mut names: Vec<String> = Vec::new();
    let mut values = [0; 5];
    for (i, f) in FIELDS.iter().enumerate() {
        let name = sqlx_rule(rule, f);
        let at = names.iter().position(|n| n == &name).unwrap_or_else(|| {
            names.push(name);
            names.len() - 1
        });
        values[i] = at as i64 + 1;
    }
    let columns: Vec<String> = names
        .iter()
        .enumerate()
        .map(|(i, n)| format!("{} AS \"{n}\"", i + 1))
        .collect();
    (format!("SELECT {}", columns.join(", ")), values)
}

macro_rules! check_rule {
    ($db:expr, $($t:ident),+) => {$(
        let (sql, expected) = select_for($t::RULE);
        let row: $t = $db
            .fetch_one_as(sql.clone(), ())
            .await
            .unwrap_or_else(|e| panic!("{}: {sql}: {e}", $t::RULE));
        assert_eq!(row.values(), expected, "{}: {sql}", $t::RULE);
    )+};
}

/// Reported: 9 of 35 field/rule pairs named another column than sqlx.
#[tokio::test]
async fn rename_all_names_every_column_as_sqlx_does() {
    let db = conn().await;
    check_rule!(
        db,
        Lower,
        Upper,
        Snake,
        Kebab,
        Camel,
        Pascal,
        ScreamingSnake,
        ScreamingKebab
    );
    // The reported examples, spelled out.
    assert_eq!(sqlx_rule("snake_case", "userId"), "user_id");
    assert_eq!(
        sqlx_rule("SCREAMING_SNAKE_CASE", "HTTPStatus"),
        "HTTP_STATUS"
    );
    assert_eq!(sqlx_rule("snake_case", "_private"), "private");
}

#[derive(Debug, PartialEq, serde::Deserialize)]
struct Prefs {
    theme: String,
}

#[derive(Debug, PartialEq, aiolite::FromRow)]
struct WithPrefs {
    #[aiolite(json(nullable))]
    prefs: Option<Prefs>,
}

/// Reported: the JSON text `null` failed instead of reading as None.
#[tokio::test]
async fn json_nullable_reads_sql_null_and_json_null_as_none() {
    let db = conn().await;
    for (value, expected) in [
        ("NULL", None),
        ("'null'", None),
        (
            "'{\"theme\":\"dark\"}'",
            Some(Prefs {
                theme: "dark".into(),
            }),
        ),
    ] {
        let row: WithPrefs = db
            .fetch_one_as(format!("SELECT {value} AS prefs"), ())
            .await
            .unwrap_or_else(|e| panic!("{value}: {e}"));
        assert_eq!(row.prefs, expected, "{value}");
    }
}

#[derive(Debug, Clone, PartialEq, Default, aiolite::FromRow)]
struct Address {
    city: String,
    zip: String,
}

#[derive(Debug, PartialEq, aiolite::FromRow)]
#[aiolite(default)]
struct Customer {
    name: String,
    #[aiolite(flatten)]
    address: Address,
}

impl Default for Customer {
    fn default() -> Self {
        Customer {
            name: "nobody".into(),
            address: Address {
                city: "nowhere".into(),
                zip: "00000".into(),
            },
        }
    }
}

#[derive(Debug, PartialEq, aiolite::FromRow)]
struct Order {
    id: i64,
    #[aiolite(flatten, default)]
    address: Address,
}

/// Reported: a container `default` did not cover `flatten` fields, and sqlx
/// accepts `flatten` with `default`.
#[tokio::test]
async fn default_covers_flattened_fields() {
    let db = conn().await;
    let c: Customer = db
        .fetch_one_as("SELECT 'ann' AS name", ())
        .await
        .expect("flattened columns missing");
    assert_eq!(c.name, "ann");
    assert_eq!(
        c.address,
        Customer::default().address,
        "the struct's Default"
    );
    let c: Customer = db
        .fetch_one_as("SELECT 'ann' AS name, 'Oslo' AS city, '0150' AS zip", ())
        .await
        .expect("all there");
    assert_eq!(c.address.city, "Oslo");
    let o: Order = db
        .fetch_one_as("SELECT 7 AS id", ())
        .await
        .expect("missing");
    assert_eq!(o.address, Address::default());
    let o: Order = db
        .fetch_one_as("SELECT 7 AS id, 'Rome' AS city, '00100' AS zip", ())
        .await
        .expect("there");
    assert_eq!(o.address.city, "Rome");
}

#[derive(Debug, PartialEq)]
struct Zip(u32);

impl TryFrom<Address> for Zip {
    type Error = String;
    fn try_from(a: Address) -> Result<Zip, String> {
        a.zip
            .parse()
            .map(Zip)
            .map_err(|e| format!("zip {:?}: {e}", a.zip))
    }
}

#[derive(Debug, PartialEq, serde::Deserialize)]
struct Celsius(f64);

#[derive(Debug, PartialEq)]
struct Kelvin(f64);

impl TryFrom<Celsius> for Kelvin {
    type Error = String;
    fn try_from(c: Celsius) -> Result<Kelvin, String> {
        if c.0 < -273.15 {
            Err(format!("{} is below absolute zero", c.0))
        } else {
            Ok(Kelvin(c.0 + 273.15))
        }
    }
}

#[derive(Debug, PartialEq, aiolite::FromRow)]
struct Reading {
    #[aiolite(flatten, try_from = "Address")]
    zip: Zip,
    #[aiolite(json, try_from = "Celsius")]
    temperature: Kelvin,
}

#[derive(Debug, PartialEq, aiolite::FromRow)]
struct Point(i64, String);

/// sqlx accepts `flatten` with `try_from`, `try_from` with `json`, and tuple
/// structs (by position).
#[tokio::test]
async fn the_combinations_sqlx_accepts() {
    let db = conn().await;
    let r: Reading = db
        .fetch_one_as(
            "SELECT 'Oslo' AS city, '0150' AS zip, '21.5' AS temperature",
            (),
        )
        .await
        .expect("reading");
    assert_eq!(r.zip, Zip(150));
    assert_eq!(r.temperature, Kelvin(21.5 + 273.15));
    let err = db
        .fetch_one_as::<Reading, _>(
            "SELECT 'Oslo' AS city, '01x' AS zip, '-300' AS temperature",
            (),
        )
        .await
        .expect_err("bad zip");
    assert!(
        err.to_string().contains("Reading.zip") && err.to_string().contains("01x"),
        "{err}"
    );
    let err = db
        .fetch_one_as::<Reading, _>(
            "SELECT 'Oslo' AS city, '1' AS zip, '-300' AS temperature",
            (),
        )
        .await
        .expect_err("below zero");
    assert!(
        err.to_string().contains("Reading.temperature")
            && err.to_string().contains("absolute zero"),
        "{err}"
    );
    let p: Point = db
        .fetch_one_as("SELECT 3, 'x'", ())
        .await
        .expect("tuple struct");
    assert_eq!(p, Point(3, "x".into()));
    let err = db
        .fetch_one_as::<Point, _>("SELECT 3", ())
        .await
        .expect_err("too few columns");
    assert!(
        matches!(err, Error::ColumnIndexOutOfRange { .. }),
        "{err:?}"
    );
    let err = db
        .fetch_one_as::<Point, _>("SELECT 'three', 'x'", ())
        .await
        .expect_err("wrong type");
    assert!(err.to_string().contains("Point.0"), "{err}");
}

#[derive(Debug, aiolite::FromRow)]
#[allow(dead_code)] // only its decode errors are read
struct Author {
    name: String,
}

#[derive(Debug, aiolite::FromRow)]
#[allow(dead_code)] // only its decode errors are read
struct Post {
    title: String,
    #[aiolite(flatten, prefix = "author_")]
    author: Author,
}

#[derive(Debug, aiolite::FromRow)]
#[allow(dead_code)] // only its decode errors are read
struct Feed {
    #[aiolite(flatten)]
    post: Post,
}

#[derive(Debug, aiolite::FromRow)]
#[allow(dead_code)] // only its decode errors are read
struct Small {
    #[aiolite(try_from = "i64")]
    n: u8,
}

/// Reported: a decode error inside a flattened field named only
/// `Author.name`, and a `try_from` overflow did not show the value.
#[tokio::test]
async fn errors_name_the_field_path_and_the_value() {
    let db = conn().await;
    let err = db
        .fetch_one_as::<Post, _>("SELECT 'hi' AS title, 42 AS author_name", ())
        .await
        .expect_err("an integer name");
    match &err {
        Error::Decode { field, column, .. } => {
            assert_eq!(field.as_deref(), Some("Post.author.name"), "{err}");
            assert_eq!(column, "author_name");
        }
        other => panic!("{other:?}"),
    }
    let err = db
        .fetch_one_as::<Feed, _>("SELECT 'hi' AS title, 42 AS author_name", ())
        .await
        .expect_err("two levels");
    assert!(err.to_string().contains("Feed.post.author.name"), "{err}");
    let err = db
        .fetch_one_as::<Small, _>("SELECT 300 AS n", ())
        .await
        .expect_err("overflow");
    assert!(err.to_string().contains("300"), "{err}");
    assert!(err.to_string().contains("Small.n"), "{err}");
}
