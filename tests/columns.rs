//! A row's column names and declared types are those of the schema its
//! statement ran against, however the statement got to the worker: from the
//! statement cache, re-prepared by SQLite after another connection changed
//! the schema, or prepared anew by a `call` closure after the cache evicted it.
//! The worker keeps each SQL text's columns to hand them to every row without
//! allocating; these tests hold that cache to the schema.

mod common;

use std::time::Duration;

use aiolite::{ConnectOptions, Connection, Row};
use futures_util::StreamExt;

type Described = Vec<(String, Option<String>)>;

fn described(row: &Row) -> Described {
    listed(row.columns())
}

fn listed(columns: &[aiolite::Column]) -> Described {
    columns
        .iter()
        .map(|c| (c.name().to_owned(), c.decl_type().map(str::to_owned)))
        .collect()
}

/// What a connection that has never seen the file reports for `sql`.
fn truth(path: &std::path::Path, sql: &str) -> Described {
    let c = rusqlite::Connection::open(path).expect("open the truth");
    let stmt = c.prepare(sql).expect("prepare the truth");
    stmt.columns()
        .map(|c| (c.name().to_owned(), c.decl_type().map(str::to_owned)))
        .collect()
}

fn cols(list: &[(&str, Option<&str>)]) -> Described {
    list.iter()
        .map(|(n, t)| ((*n).to_owned(), t.map(str::to_owned)))
        .collect()
}

async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(30), f)
        .await
        .unwrap_or_else(|_| panic!("{what} hung"))
}

/// A file with `t(a INTEGER, b TEXT)` holding one row, and a connection to
/// it opened with `options`.
async fn table_t(
    options: impl FnOnce(&std::path::Path) -> ConnectOptions,
) -> (tempfile::TempDir, std::path::PathBuf, Connection) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("c.db");
    let conn = options(&path).open().await.expect("open");
    conn.execute_script("CREATE TABLE t(a INTEGER, b TEXT); INSERT INTO t VALUES (1, 'x')")
        .await
        .expect("schema");
    (dir, path, conn)
}

async fn first_of_stream(conn: &Connection, sql: &'static str) -> Row {
    let mut rows = conn.stream(sql, ());
    let row = rows.next().await.expect("a row").expect("ok");
    drop(rows);
    row
}

/// Another connection adds a column. This connection's schema is stale until
/// its next statement starts a transaction: a statement prepared now is
/// compiled against the old schema and re-prepared by its first step. A
/// stream took its columns before that step, so its rows lost the new column.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_after_another_connections_alter_has_the_new_columns() {
    let (_dir, path, conn) = table_t(|path| ConnectOptions::new(path)).await;
    let row = first_of_stream(&conn, "SELECT * FROM t").await;
    assert_eq!(
        described(&row),
        cols(&[("a", Some("INTEGER")), ("b", Some("TEXT"))])
    );

    let other = rusqlite::Connection::open(&path).expect("other");
    other
        .execute_batch("ALTER TABLE t ADD COLUMN c REAL DEFAULT 2.5")
        .expect("alter");

    let row = within("stream", first_of_stream(&conn, "SELECT * FROM t")).await;
    assert_eq!(described(&row), truth(&path, "SELECT * FROM t"));
    assert_eq!(row.get::<_, f64>("c").expect("the new column"), 2.5);
}

/// `describe` runs nothing, so nothing had made the connection notice that
/// another connection changed the schema: it described the old one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_after_another_connections_alter_has_the_new_columns() {
    let (_dir, path, conn) = table_t(|path| ConnectOptions::new(path)).await;
    let sql = "SELECT * FROM t";
    let described = |list: Vec<aiolite::Column>| listed(&list);
    assert_eq!(
        described(conn.describe(sql).await.expect("describe")),
        cols(&[("a", Some("INTEGER")), ("b", Some("TEXT"))])
    );
    let other = rusqlite::Connection::open(&path).expect("other");
    other
        .execute_batch("ALTER TABLE t ADD COLUMN c TEXT")
        .expect("alter");
    assert_eq!(
        described(
            within("describe", conn.describe(sql))
                .await
                .expect("describe")
        ),
        truth(&path, sql)
    );
    // Inside a transaction that has read nothing yet, too.
    other
        .execute_batch("ALTER TABLE t ADD COLUMN d BLOB")
        .expect("alter");
    let tx = conn.begin().await.expect("begin");
    assert_eq!(
        described(
            within("describe", tx.describe(sql))
                .await
                .expect("describe")
        ),
        truth(&path, sql)
    );
    tx.rollback().await.expect("rollback");
}

/// The same through `fetch_one`: the cached statement is re-prepared by its
/// step, and the columns are read after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetch_after_another_connections_alter_has_the_new_columns() {
    let (_dir, path, conn) = table_t(|path| ConnectOptions::new(path)).await;
    let sql = "SELECT * FROM t";
    conn.fetch_one(sql, ()).await.expect("warm");
    conn.fetch_one(sql, ()).await.expect("warm again");
    let other = rusqlite::Connection::open(&path).expect("other");
    other
        .execute_batch("ALTER TABLE t RENAME COLUMN b TO bee; ALTER TABLE t ADD COLUMN c BLOB")
        .expect("alter");
    let row = within("fetch", conn.fetch_one(sql, ())).await.expect("row");
    assert_eq!(described(&row), truth(&path, sql));
    assert_eq!(row.len(), 3);
}

/// The case a statement's re-prepare count alone cannot tell: the cache evicts
/// the worker's statement, the schema changes, and a `call` closure prepares
/// the same text anew and runs it. The worker then gets a statement it has
/// never seen, never re-prepared, compiled against the new schema.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_a_closure_prepared_anew_brings_its_own_columns() {
    let (_dir, path, conn) =
        table_t(|path| ConnectOptions::new(path).statement_cache_capacity(1)).await;
    let sql = "SELECT * FROM t";
    for _ in 0..3 {
        conn.fetch_one(sql, ()).await.expect("warm");
    }
    for run_it in [true, false] {
        conn.call(move |c| {
            // Evicts the worker's statement (the cache holds one).
            c.prepare_cached("SELECT 1")?.query_row([], |_| Ok(()))?;
            c.execute_batch(if run_it {
                "ALTER TABLE t ADD COLUMN c TEXT DEFAULT 'new'"
            } else {
                "ALTER TABLE t ADD COLUMN d TEXT DEFAULT 'newer'"
            })?;
            let mut stmt = c.prepare_cached("SELECT * FROM t")?;
            if run_it {
                stmt.query_row([], |_| Ok(()))?;
            }
            Ok::<_, aiolite::Error>(())
        })
        .await
        .expect("closure");
        let row = within("fetch", conn.fetch_one(sql, ())).await.expect("row");
        assert_eq!(described(&row), truth(&path, sql), "run_it = {run_it}");
    }
}

mod model {
    //! Random sequences of what changes a schema (on this connection, on
    //! another, through the pool's writer, inside a transaction that commits
    //! or rolls back) and of what reads through the worker's columns cache
    //! (fetches, streams, the pool's readers) or around it (`call` closures
    //! that run, prepare or evict statements), with a fixed seed, each step
    //! under a timeout. The model is each table's columns; every read must
    //! report exactly them.

    use super::*;
    use aiolite::Database;
    use proptest::prelude::*;

    const TABLES: usize = 2;
    const DECLS: [Option<&str>; 5] = [
        Some("INTEGER"),
        Some("TEXT"),
        Some("REAL"),
        None,
        Some("VARCHAR(10)"),
    ];

    #[derive(Clone, Copy, Debug)]
    enum By {
        /// The connection whose reads are checked.
        Here,
        /// A plain rusqlite connection on the same file.
        Other,
        /// The pool's writer.
        Pool,
    }

    #[derive(Clone, Copy, Debug)]
    enum How {
        Fetch,
        FetchAll,
        Stream,
        PoolFetch,
        PoolStream,
    }

    #[derive(Clone, Debug)]
    enum Op {
        Read {
            t: usize,
            text: usize,
            how: How,
        },
        /// `describe`: the columns, with nothing run.
        Describe {
            t: usize,
            text: usize,
        },
        /// `execute` on the query: the statement runs, no columns are taken.
        Execute {
            t: usize,
            text: usize,
        },
        ClosureRun {
            t: usize,
            text: usize,
        },
        ClosurePrepare {
            t: usize,
            text: usize,
        },
        Evict,
        Add {
            t: usize,
            decl: usize,
            by: By,
        },
        Rename {
            t: usize,
            col: usize,
            by: By,
        },
        DropColumn {
            t: usize,
            col: usize,
            by: By,
        },
        Recreate {
            t: usize,
            width: usize,
            decl: usize,
            by: By,
        },
        InTransaction {
            t: usize,
            decl: usize,
            text: usize,
            commit: bool,
        },
    }

    fn by() -> impl Strategy<Value = By> {
        prop_oneof![Just(By::Here), Just(By::Other), Just(By::Pool)]
    }

    fn op() -> impl Strategy<Value = Op> {
        let t = 0..TABLES;
        let how = prop_oneof![
            Just(How::Fetch),
            Just(How::FetchAll),
            Just(How::Stream),
            Just(How::PoolFetch),
            Just(How::PoolStream),
        ];
        prop_oneof![
            6 => (t.clone(), 0..2usize, how).prop_map(|(t, text, how)| Op::Read { t, text, how }),
            1 => (t.clone(), 0..2usize).prop_map(|(t, text)| Op::Execute { t, text }),
            1 => (t.clone(), 0..2usize).prop_map(|(t, text)| Op::Describe { t, text }),
            2 => (t.clone(), 0..2usize).prop_map(|(t, text)| Op::ClosureRun { t, text }),
            1 => (t.clone(), 0..2usize).prop_map(|(t, text)| Op::ClosurePrepare { t, text }),
            1 => Just(Op::Evict),
            2 => (t.clone(), 0..DECLS.len(), by()).prop_map(|(t, decl, by)| Op::Add { t, decl, by }),
            1 => (t.clone(), 0..4usize, by()).prop_map(|(t, col, by)| Op::Rename { t, col, by }),
            1 => (t.clone(), 0..4usize, by()).prop_map(|(t, col, by)| Op::DropColumn { t, col, by }),
            1 => (t.clone(), 1..4usize, 0..DECLS.len(), by())
                .prop_map(|(t, width, decl, by)| Op::Recreate { t, width, decl, by }),
            1 => (t, 0..DECLS.len(), 0..2usize, any::<bool>())
                .prop_map(|(t, decl, text, commit)| Op::InTransaction { t, decl, text, commit }),
        ]
    }

    fn sql(t: usize, text: usize) -> String {
        // Two texts per table: two entries in each cache.
        if text == 0 {
            format!("SELECT * FROM t{t}")
        } else {
            format!("SELECT * FROM t{t} AS x")
        }
    }

    fn column_sql(name: &str, decl: Option<&str>) -> String {
        match decl {
            Some(d) => format!("{name} {d}"),
            None => name.to_owned(),
        }
    }

    struct World {
        path: std::path::PathBuf,
        conn: Connection,
        db: Database,
        other: rusqlite::Connection,
        tables: Vec<Described>,
        names: usize,
    }

    impl World {
        fn fresh_name(&mut self) -> String {
            self.names += 1;
            format!("c{}", self.names)
        }

        async fn ddl(&mut self, by: By, script: String) {
            // SQLite prepares `ALTER TABLE` against the connection's copy of
            // the schema, which is stale after another connection's change
            // until a statement reads ("no such column", in Python's sqlite3
            // as well): the read first refreshes it.
            let script = format!("SELECT count(*) FROM sqlite_schema; {script}");
            match by {
                By::Here => within("ddl here", self.conn.execute_script(script))
                    .await
                    .expect("ddl here"),
                By::Pool => within("ddl on the pool", self.db.execute_script(script))
                    .await
                    .expect("ddl on the pool"),
                By::Other => self.other.execute_batch(&script).expect("ddl on the other"),
            }
        }

        async fn read(&self, sql: String, how: How) -> Row {
            let step = format!("{how:?} {sql}");
            let mut rows = match how {
                How::Fetch => vec![within(&step, self.conn.fetch_one(sql, ()))
                    .await
                    .expect("fetch")],
                How::PoolFetch => vec![within(&step, self.db.fetch_one(sql, ()))
                    .await
                    .expect("pool fetch")],
                How::FetchAll => within(&step, self.conn.fetch_all(sql, ()))
                    .await
                    .expect("fetch_all"),
                How::Stream => within(&step, self.conn.stream(sql, ()).collect::<Vec<_>>())
                    .await
                    .into_iter()
                    .collect::<aiolite::Result<_>>()
                    .expect("stream"),
                How::PoolStream => within(&step, self.db.stream(sql, ()).collect::<Vec<_>>())
                    .await
                    .into_iter()
                    .collect::<aiolite::Result<_>>()
                    .expect("pool stream"),
            };
            assert_eq!(rows.len(), 1, "{step}: every table holds one row");
            rows.remove(0)
        }

        async fn step(&mut self, op: &Op) {
            match *op {
                Op::Read { t, text, how } => {
                    let row = self.read(sql(t, text), how).await;
                    assert_eq!(described(&row), self.tables[t], "{op:?}");
                    assert_eq!(row.len(), self.tables[t].len(), "{op:?}: the values");
                }
                Op::Describe { t, text } => {
                    let list = within("describe", self.conn.describe(sql(t, text)))
                        .await
                        .expect("describe");
                    assert_eq!(listed(&list), self.tables[t], "{op:?}");
                }
                Op::Execute { t, text } => {
                    within("execute", self.conn.execute(sql(t, text), ()))
                        .await
                        .expect("execute");
                }
                Op::ClosureRun { t, text } | Op::ClosurePrepare { t, text } => {
                    let run = matches!(op, Op::ClosureRun { .. });
                    let sql = sql(t, text);
                    let seen = within(
                        "closure",
                        self.conn.call(move |c| {
                            let mut stmt = c.prepare_cached(&sql)?;
                            if run {
                                stmt.query_row([], |_| Ok(()))?;
                            }
                            Ok::<_, aiolite::Error>(stmt.column_count())
                        }),
                    )
                    .await
                    .expect("closure");
                    if run {
                        assert_eq!(seen, self.tables[t].len(), "{op:?}");
                    }
                }
                Op::Evict => within(
                    "evict",
                    self.conn.call(|c| {
                        for n in 0..4 {
                            c.prepare_cached(&format!("SELECT {n}"))?
                                .query_row([], |_| Ok(()))?;
                        }
                        Ok::<_, aiolite::Error>(())
                    }),
                )
                .await
                .expect("evict"),
                Op::Add { t, decl, by } => {
                    let name = self.fresh_name();
                    let decl = DECLS[decl];
                    self.ddl(
                        by,
                        format!("ALTER TABLE t{t} ADD COLUMN {}", column_sql(&name, decl)),
                    )
                    .await;
                    self.tables[t].push((name, decl.map(str::to_owned)));
                }
                Op::Rename { t, col, by } => {
                    let col = col % self.tables[t].len();
                    let name = self.fresh_name();
                    let old = self.tables[t][col].0.clone();
                    self.ddl(
                        by,
                        format!("ALTER TABLE t{t} RENAME COLUMN {old} TO {name}"),
                    )
                    .await;
                    self.tables[t][col].0 = name;
                }
                Op::DropColumn { t, col, by } => {
                    if self.tables[t].len() > 1 {
                        let col = col % self.tables[t].len();
                        let old = self.tables[t][col].0.clone();
                        self.ddl(by, format!("ALTER TABLE t{t} DROP COLUMN {old}"))
                            .await;
                        self.tables[t].remove(col);
                    }
                }
                Op::Recreate { t, width, decl, by } => {
                    let columns: Described = (0..width)
                        .map(|i| {
                            let d = DECLS[(decl + i) % DECLS.len()];
                            (self.fresh_name(), d.map(str::to_owned))
                        })
                        .collect();
                    let list: Vec<String> = columns
                        .iter()
                        .map(|(n, d)| column_sql(n, d.as_deref()))
                        .collect();
                    self.ddl(
                        by,
                        format!(
                            "DROP TABLE t{t}; CREATE TABLE t{t}({}); INSERT INTO t{t} DEFAULT VALUES;",
                            list.join(", ")
                        ),
                    )
                    .await;
                    self.tables[t] = columns;
                }
                Op::InTransaction {
                    t,
                    decl,
                    text,
                    commit,
                } => {
                    let name = self.fresh_name();
                    let decl = DECLS[decl];
                    let tx = within("begin", self.conn.begin()).await.expect("begin");
                    within(
                        "ddl in the transaction",
                        tx.execute_script(format!(
                            "ALTER TABLE t{t} ADD COLUMN {}",
                            column_sql(&name, decl)
                        )),
                    )
                    .await
                    .expect("ddl in the transaction");
                    let mut inside = self.tables[t].clone();
                    inside.push((name, decl.map(str::to_owned)));
                    let row = within("read in the transaction", tx.fetch_one(sql(t, text), ()))
                        .await
                        .expect("read in the transaction");
                    assert_eq!(described(&row), inside, "{op:?}, inside");
                    if commit {
                        within("commit", tx.commit()).await.expect("commit");
                        self.tables[t] = inside;
                    } else {
                        within("rollback", tx.rollback()).await.expect("rollback");
                    }
                    let row = self.read(sql(t, text), How::Fetch).await;
                    assert_eq!(described(&row), self.tables[t], "{op:?}, after");
                }
            }
        }
    }

    async fn replay(ops: &[Op]) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("model.db");
        // A cache of 2 statements: evictions come often.
        let conn = ConnectOptions::new(&path)
            .statement_cache_capacity(2)
            .open()
            .await
            .expect("open");
        let mut tables = Vec::new();
        let mut script = String::new();
        for t in 0..TABLES {
            script.push_str(&format!(
                "CREATE TABLE t{t}(a INTEGER, b TEXT); INSERT INTO t{t} VALUES (1, 'x');"
            ));
            tables.push(cols(&[("a", Some("INTEGER")), ("b", Some("TEXT"))]));
        }
        conn.execute_script(script).await.expect("schema");
        let db = Database::builder(&path)
            .readers(2)
            .open()
            .await
            .expect("pool");
        let other = rusqlite::Connection::open(&path).expect("other");
        other
            .busy_timeout(Duration::from_secs(10))
            .expect("busy timeout");
        let mut world = World {
            path,
            conn,
            db,
            other,
            tables,
            names: 0,
        };
        for op in ops {
            world.step(op).await;
        }
        // The model itself against a connection that never saw the file.
        for t in 0..TABLES {
            assert_eq!(truth(&world.path, &sql(t, 0)), world.tables[t], "the model");
        }
        within("close", world.db.close())
            .await
            .expect("close the pool");
    }

    #[test]
    fn every_read_reports_the_schema_it_ran_against() {
        let (rt, mut runner) = crate::common::model_runner(0xc01_0a115, 48);
        runner
            .run(&proptest::collection::vec(op(), 10..60), |ops| {
                rt.block_on(replay(&ops));
                Ok(())
            })
            .expect("every read reports its schema's columns");
    }
}
