//! Random databases dumped and restored with `restore_dump` under aiolite's
//! defaults, compared value for value (REALs bit for bit): schemas with
//! every column type, WITHOUT ROWID, AUTOINCREMENT, indexes, views,
//! triggers, foreign keys (children sorting before parents), legacy
//! double-quoted strings; values with every edge (NUL in text, -0.0, the
//! integer and REAL limits, empty text and blobs).

use std::path::Path;

use aiolite::Connection;
use futures_util::TryStreamExt;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestRunner};
use rusqlite::types::Value;

const TYPES: [&str; 10] = [
    "INTEGER",
    "TEXT",
    "REAL",
    "BLOB",
    "NUMERIC",
    "",
    "VARCHAR(20)",
    "BOOLEAN",
    "DATETIME",
    "DECIMAL(10,2)",
];

/// Table names; some sort before the tables they refer to, some need quoting.
const NAMES: [&str; 6] = [
    "a_child",
    "orders",
    "People",
    "t'q",
    "with \"quote\"",
    "z_parent",
];

fn edge_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        prop::sample::select(vec![0, -1, 1, i64::MIN, i64::MAX, 42]).prop_map(Value::Integer),
        prop::sample::select(vec![
            0.0,
            -0.0,
            1.5,
            -2.5e-300,
            1e308,
            f64::INFINITY,
            f64::NEG_INFINITY,
            5e-324,
            0.1,
        ])
        .prop_map(Value::Real),
        prop::sample::select(vec![
            "",
            "it's",
            "a\0b",
            "\0",
            "😀 ünï",
            "line\nbreak",
            "1",
            "2.5",
            "x\"y",
            "  7 ",
        ])
        .prop_map(|s| Value::Text(s.to_owned())),
        prop::sample::select(vec![vec![], vec![0u8], vec![0, 255, 39], b"text".to_vec()])
            .prop_map(Value::Blob),
    ]
}

#[derive(Debug, Clone)]
enum Key {
    /// `id INTEGER PRIMARY KEY`, optionally AUTOINCREMENT.
    Rowid { autoincrement: bool },
    /// `k TEXT PRIMARY KEY` in a WITHOUT ROWID table.
    WithoutRowid,
    /// No declared key.
    None,
}

#[derive(Debug, Clone)]
struct Table {
    name: &'static str,
    key: Key,
    types: Vec<&'static str>,
    /// Refers to this earlier table's rowid key (by index in the list).
    parent: Option<usize>,
    legacy_check: bool,
    index: bool,
    rows: Vec<Vec<Value>>,
}

fn table(name: &'static str) -> impl Strategy<Value = Table> {
    (
        prop_oneof![
            Just(Key::Rowid {
                autoincrement: false
            }),
            Just(Key::Rowid {
                autoincrement: true
            }),
            Just(Key::WithoutRowid),
            Just(Key::None),
        ],
        prop::collection::vec(prop::sample::select(TYPES.to_vec()), 1..4),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        prop::collection::vec(prop::collection::vec(edge_value(), 4), 0..7),
    )
        .prop_map(move |(key, types, fk, legacy_check, index, rows)| Table {
            name,
            key,
            types,
            parent: fk.then_some(usize::MAX),
            legacy_check,
            index,
            rows,
        })
}

fn database() -> impl Strategy<Value = Vec<Table>> {
    prop::sample::subsequence(NAMES.to_vec(), 1..=4)
        .prop_flat_map(|names| names.into_iter().map(table).collect::<Vec<_>>())
        .prop_map(|mut tables| {
            // A foreign key refers to a later table of the list (so no
            // cycle) with a rowid key; the list is in name order, so the
            // child often sorts (and is dumped) before its parent.
            let parents: Vec<usize> = (0..tables.len())
                .filter(|&i| matches!(tables[i].key, Key::Rowid { .. }))
                .collect();
            for (i, t) in tables.iter_mut().enumerate() {
                if t.parent.is_some() {
                    t.parent = parents.iter().copied().find(|&p| p > i);
                }
            }
            tables
        })
}

fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The source database, built as another tool would: plain rusqlite,
/// foreign keys on, legacy double-quoted strings on.
fn build(path: &Path, tables: &[Table]) {
    use rusqlite::config::DbConfig;
    let conn = rusqlite::Connection::open(path).expect("open");
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_DQS_DDL, true)
        .expect("dqs");
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_DQS_DML, true)
        .expect("dqs");
    conn.execute_batch("PRAGMA foreign_keys = ON").expect("fk");
    // Parents (later in the list) first, so that children's rows can refer
    // to theirs.
    for i in (0..tables.len()).rev() {
        let t = &tables[i];
        let mut columns = Vec::new();
        match t.key {
            Key::Rowid { autoincrement } => columns.push(format!(
                "id INTEGER PRIMARY KEY{}",
                if autoincrement { " AUTOINCREMENT" } else { "" }
            )),
            Key::WithoutRowid => columns.push("k TEXT PRIMARY KEY".to_owned()),
            Key::None => {}
        }
        for (c, ty) in t.types.iter().enumerate() {
            let check = if t.legacy_check && c == 0 {
                // SQLite's legacy quoting: "" is the empty string here.
                r#" CHECK (c0 IS NOT "never")"#
            } else {
                ""
            };
            columns.push(format!("c{c} {ty}{check}"));
        }
        if let Some(p) = t.parent {
            columns.push(format!(
                "parent INTEGER REFERENCES {}(id)",
                quoted(tables[p].name)
            ));
        }
        let without = if matches!(t.key, Key::WithoutRowid) {
            " WITHOUT ROWID"
        } else {
            ""
        };
        let name = quoted(t.name);
        conn.execute_batch(&format!(
            "CREATE TABLE {name}({}){without};",
            columns.join(", ")
        ))
        .expect("create");
        for (r, row) in t.rows.iter().enumerate() {
            let mut names: Vec<String> = Vec::new();
            let mut values: Vec<Value> = Vec::new();
            if matches!(t.key, Key::WithoutRowid) {
                names.push("k".into());
                values.push(Value::Text(format!("key {r}")));
            }
            for (c, value) in row.iter().take(t.types.len()).enumerate() {
                names.push(format!("c{c}"));
                values.push(value.clone());
            }
            if let Some(p) = t.parent {
                names.push("parent".into());
                let parent_rows = tables[p].rows.len() as i64;
                values.push(if parent_rows == 0 || r % 3 == 2 {
                    Value::Null
                } else {
                    Value::Integer(r as i64 % parent_rows + 1)
                });
            }
            let marks = vec!["?"; names.len()].join(", ");
            conn.execute(
                &format!("INSERT INTO {name}({}) VALUES ({marks})", names.join(", ")),
                rusqlite::params_from_iter(values),
            )
            .expect("insert");
        }
        if t.index {
            conn.execute_batch(&format!(
                "CREATE INDEX {} ON {name}(c0);",
                quoted(&format!("{} by c0", t.name))
            ))
            .expect("index");
        }
    }
    if let Some(t) = tables.first() {
        let name = quoted(t.name);
        conn.execute_batch(&format!(
            "CREATE VIEW {} AS SELECT count(*) AS n FROM {name};
             CREATE TRIGGER {} AFTER DELETE ON {name} BEGIN SELECT 1; END;",
            quoted(&format!("{} view", t.name)),
            quoted(&format!("{} trigger", t.name)),
        ))
        .expect("view and trigger");
    }
}

/// A database's schema (type, name, SQL) and each table's rows, every value
/// written out with its type (REALs by their bits), sorted.
type Contents = (Vec<(String, String, String)>, Vec<(String, Vec<String>)>);

fn contents(path: &Path) -> Contents {
    let conn = rusqlite::Connection::open(path).expect("open");
    let mut schema_stmt = conn
        .prepare("SELECT type, name, ifnull(sql, '') FROM sqlite_schema ORDER BY name")
        .expect("schema");
    let schema: Vec<(String, String, String)> = schema_stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .expect("schema")
        .collect::<rusqlite::Result<_>>()
        .expect("schema");
    let canon = |v: Value| match v {
        Value::Null => "NULL".to_owned(),
        Value::Integer(i) => format!("int {i}"),
        Value::Real(f) => format!("real {:#x}", f.to_bits()),
        Value::Text(s) => format!("text {s:?}"),
        Value::Blob(b) => format!("blob {b:?}"),
    };
    let mut rows = Vec::new();
    for (kind, name, _) in &schema {
        if kind != "table" {
            continue;
        }
        let mut stmt = conn
            .prepare(&format!("SELECT * FROM {}", quoted(name)))
            .expect("select");
        let width = stmt.column_count();
        let mut all: Vec<String> = stmt
            .query_map([], |r| {
                let cells: Vec<String> = (0..width)
                    .map(|i| r.get::<_, Value>(i).map(canon))
                    .collect::<rusqlite::Result<_>>()?;
                Ok(cells.join(" | "))
            })
            .expect("rows")
            .collect::<rusqlite::Result<_>>()
            .expect("rows");
        all.sort();
        rows.push((name.clone(), all));
    }
    (schema, rows)
}

#[test]
fn random_databases_dump_and_restore_with_identical_contents() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let mut runner = TestRunner::new(Config {
        cases: 40,
        failure_persistence: None,
        rng_seed: RngSeed::Fixed(0x0d0_5eed),
        ..Config::default()
    });
    runner
        .run(&database(), |tables| {
            let dir = tempfile::tempdir().expect("tempdir");
            let (source, copy) = (dir.path().join("source.db"), dir.path().join("copy.db"));
            build(&source, &tables);
            rt.block_on(async {
                let from = Connection::open(&source).await.expect("open source");
                let lines: Vec<String> = from.dump().try_collect().await.expect("dump");
                from.close().await.expect("close");
                // aiolite's defaults: foreign keys on, legacy quoting off.
                let to = Connection::open(&copy).await.expect("open copy");
                to.restore_dump(lines.join("\n"))
                    .await
                    .unwrap_or_else(|e| panic!("restore: {e}\n{}", lines.join("\n")));
                to.close().await.expect("close");
            });
            let (a, b) = (contents(&source), contents(&copy));
            prop_assert_eq!(&a.0, &b.0, "schema");
            prop_assert_eq!(&a.1, &b.1, "rows");
            Ok(())
        })
        .expect("every random database restores identically");
}
