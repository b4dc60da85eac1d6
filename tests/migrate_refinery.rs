//! Migrations side by side with refinery: the same files found, the same
//! checksums, and each tool accepting the history the other wrote (refinery's
//! own runner, linked on our rusqlite).

mod common;

use std::path::Path;

use aiolite::migrate::{Migration, Migrations};
use aiolite::{ConnectOptions, Connection, Error};
use proptest::prelude::*;

const FIXTURE: &str = "tests/fixtures/migrations_refinery";

/// (version, name, checksum) of a set, by version.
fn ours(set: &Migrations) -> Vec<(i32, String, u64)> {
    set.iter()
        .map(|m| (m.version(), m.name().to_owned(), m.checksum()))
        .collect()
}

fn refinerys(dir: &Path) -> Vec<(i32, String, u64)> {
    let mut list: Vec<_> = refinery_core::load_sql_migrations(dir)
        .expect("refinery reads the folder")
        .iter()
        .map(|m| (m.version(), m.name().to_owned(), m.checksum()))
        .collect();
    list.sort();
    list
}

async fn open_with(path: &Path, set: Migrations) -> Connection {
    ConnectOptions::new(path)
        .migrations(set)
        .open()
        .await
        .expect("open")
}

fn refinery_runner(dir: &Path) -> refinery_core::Runner {
    refinery_core::Runner::new(&refinery_core::load_sql_migrations(dir).expect("refinery set"))
}

#[test]
#[allow(deprecated)] // the fixture's notes.sql: embed_migrations! warns that it is skipped
fn both_paths_read_exactly_refinerys_set_subfolders_included() {
    let expected = refinerys(Path::new(FIXTURE));
    assert_eq!(
        expected.iter().map(|(v, _, _)| *v).collect::<Vec<_>>(),
        vec![1, 2, 3],
        "the fixture has a migration in a subfolder and one deeper"
    );
    let embedded = aiolite::embed_migrations!("tests/fixtures/migrations_refinery");
    assert_eq!(ours(&embedded), expected, "embed_migrations!");
    let read = Migrations::from_dir(FIXTURE).expect("from_dir");
    assert_eq!(ours(&read), expected, "from_dir");
}

#[tokio::test]
async fn a_history_refinery_wrote_is_accepted_and_refinery_accepts_ours() {
    let (_dir, path) = common::temp_db("r.db");
    // refinery first, with a CRLF file among them.
    let mut conn = rusqlite::Connection::open(&path).expect("open");
    let report = refinery_runner(Path::new(FIXTURE))
        .run(&mut conn)
        .expect("refinery migrates");
    assert_eq!(report.applied_migrations().len(), 3);
    drop(conn);
    let db = aiolite::Database::builder(&path)
        .migrations(Migrations::from_dir(FIXTURE).expect("set"))
        .open()
        .await
        .expect("open");
    let report = db
        .migrate()
        .await
        .expect("aiolite accepts refinery's history");
    assert!(report.applied.is_empty(), "{report:?}");
    assert_eq!(report.already_applied.len(), 3);
    db.close().await.expect("close");

    // aiolite first; refinery's runner, divergence and missing checks on,
    // finds nothing to do.
    let (_dir, path) = common::temp_db("a.db");
    let conn = open_with(&path, Migrations::from_dir(FIXTURE).expect("set")).await;
    assert_eq!(conn.migrate().await.expect("aiolite").applied.len(), 3);
    conn.close().await.expect("close");
    let mut conn = rusqlite::Connection::open(&path).expect("open");
    let report = refinery_runner(Path::new(FIXTURE))
        .set_abort_divergent(true)
        .set_abort_missing(true)
        .run(&mut conn)
        .expect("refinery accepts aiolite's history");
    assert!(report.applied_migrations().is_empty());
    let applied = refinery_runner(Path::new(FIXTURE))
        .get_applied_migrations(&mut conn)
        .expect("refinery reads the history");
    assert_eq!(applied.len(), 3, "applied_on parses as RFC 3339");
}

/// A checkout with the other line endings (git's autocrlf) is the same
/// migration to aiolite, whichever tool applied the first one.
#[tokio::test]
async fn the_other_line_endings_are_the_same_migration() {
    let lf = "CREATE TABLE a(x);\nCREATE TABLE b(y);\n";
    let crlf = lf.replace('\n', "\r\n");
    for (applied_with, then) in [(lf, crlf.as_str()), (crlf.as_str(), lf)] {
        let (_dir, path) = common::temp_db("m.db");
        let mut conn = rusqlite::Connection::open(&path).expect("open");
        refinery_core::Runner::new(&[
            refinery_core::Migration::unapplied("V1__ab", applied_with).expect("refinery")
        ])
        .run(&mut conn)
        .expect("refinery");
        drop(conn);
        let one = |sql: &str| {
            Migrations::new([Migration::new("V1__ab.sql", sql).expect("name")]).expect("set")
        };
        let conn = open_with(&path, one(then)).await;
        let report = conn.migrate().await.expect("not divergent");
        assert_eq!(report.already_applied.len(), 1);
        conn.close().await.expect("close");
        // A changed file still is divergent.
        let conn = open_with(&path, one("CREATE TABLE c(z);\n")).await;
        let err = conn.migrate().await.expect_err("divergent");
        assert!(err.to_string().contains("differs"), "{err}");
        conn.close().await.expect("close");
    }
}

#[test]
fn files_named_for_other_tools_are_errors_not_silent_skips() {
    for file in [
        "20240101120000_create.sql",
        "V1__create.up.sql",
        "v3__lower.sql",
        "V2__add-index.sql",
        "V1_one_underscore.sql",
        "V4__rust.rs",
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("V1__ok.sql"), "CREATE TABLE ok(x);").expect("write");
        std::fs::create_dir(dir.path().join("sub")).expect("sub");
        std::fs::write(dir.path().join("sub").join(file), "CREATE TABLE t(x);").expect("write");
        let err = Migrations::from_dir(dir.path()).expect_err(file);
        let text = err.to_string();
        assert!(
            text.contains(file) && text.contains("rename it") || text.contains("as SQL"),
            "{file}: {text}"
        );
    }
    // Other files refinery skips are skipped here too, with a warning.
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("V1__ok.sql"), "CREATE TABLE ok(x);").expect("write");
    std::fs::write(dir.path().join("seed.sql"), "SELECT 1;").expect("write");
    std::fs::write(dir.path().join("README.md"), "notes").expect("write");
    let set = Migrations::from_dir(dir.path()).expect("set");
    assert_eq!(ours(&set), refinerys(dir.path()));
}

/// File name templates (`{v}` stands for a version) from a pool that mixes
/// refinery's names, other tools' and plain files; and whether the name looks
/// like a misnamed migration.
fn file_name() -> impl Strategy<Value = (String, bool)> {
    let word = "[a-z][a-z0-9_]{0,8}";
    prop_oneof![
        4 => word.prop_map(|n| (format!("V{{v}}__{n}.sql"), false)),
        2 => word.prop_map(|n| (format!("U{{v}}__{n}.sql"), false)),
        1 => word.prop_map(|n| (format!("V00{{v}}__{n}.sql"), false)),
        1 => "[a-z][a-z_]{0,8}".prop_map(|n| (format!("{n}.sql"), false)),
        1 => word.prop_map(|n| (format!("{n}.md"), false)),
        1 => word.prop_map(|n| (format!("2024010{{v}}_{n}.sql"), true)),
        1 => word.prop_map(|n| (format!("v{{v}}__{n}.sql"), true)),
        1 => word.prop_map(|n| (format!("V{{v}}__{n}-x.sql"), true)),
        1 => word.prop_map(|n| (format!("V{{v}}__{n}.up.sql"), true)),
        1 => word.prop_map(|n| (format!("V{{v}}__{n}.rs"), true)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// from_dir finds exactly refinery's set, or refuses a folder holding a
    /// file that looks like a migration refinery would skip.
    #[test]
    fn from_dir_reads_refinerys_set_or_names_the_misnamed_file(
        files in prop::collection::vec((file_name(), 0usize..3), 0..12)
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let folders = [dir.path().to_owned(), dir.path().join("a"), dir.path().join("a").join("b")];
        for f in &folders {
            std::fs::create_dir_all(f).expect("folder");
        }
        let mut misnamed = Vec::new();
        for (i, ((name, bad), folder)) in files.iter().enumerate() {
            let name = name.replace("{v}", &(i + 1).to_string());
            let path = folders[*folder].join(&name);
            if path.exists() {
                continue;
            }
            std::fs::write(&path, format!("CREATE TABLE t{i}(x);\r\n")).expect("write");
            if *bad {
                misnamed.push(name);
            }
        }
        match Migrations::from_dir(dir.path()) {
            Ok(set) => {
                prop_assert!(misnamed.is_empty(), "accepted {misnamed:?}");
                prop_assert_eq!(ours(&set), refinerys(dir.path()));
            }
            Err(e) => {
                let text = e.to_string();
                prop_assert!(
                    misnamed.iter().any(|m| text.contains(m.as_str())),
                    "refused without a misnamed file: {}", text
                );
            }
        }
    }
}

#[tokio::test]
async fn a_missing_folder_is_an_error() {
    let err = Migrations::from_dir("tests/fixtures/no_such_folder").expect_err("missing");
    assert!(matches!(err, Error::Io { .. }), "{err:?}");
}
