//! Property tests of the typed layer: every supported type survives insert,
//! update and delete with edge values, and random CRUD sequences agree with a
//! `BTreeMap` model. Case counts are fixed and the seed is fixed, so CI runs
//! the same cases every time.

use std::collections::BTreeMap;

use aiolite::prelude::*;
use aiolite::{Connection, Json};
use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime, Offset, TimeZone, Utc};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestRunner};

#[derive(Debug, Clone, PartialEq, aiolite::FromRow, aiolite::Model)]
#[aiolite(table = "everything")]
struct Everything {
    #[aiolite(primary_key)]
    id: i64,
    tiny: i8,
    small: i16,
    int: i32,
    big: i64,
    ubyte: u8,
    ushort: u16,
    uint: u32,
    ubig: u64,
    single: f32,
    double: f64,
    flag: bool,
    text: String,
    bytes: Vec<u8>,
    maybe_text: Option<String>,
    maybe_int: Option<i64>,
    maybe_real: Option<f64>,
    maybe_bytes: Option<Vec<u8>>,
    date: NaiveDate,
    time: NaiveTime,
    datetime: NaiveDateTime,
    utc: DateTime<Utc>,
    offset: DateTime<FixedOffset>,
    doc: serde_json::Value,
    wrapped: Json<BTreeMap<String, i64>>,
    #[aiolite(json)]
    tags: Vec<String>,
    #[aiolite(json(nullable))]
    extra: Option<Vec<i32>>,
    uuid: uuid::Uuid,
    maybe_uuid: Option<uuid::Uuid>,
}

const SCHEMA: &str = "CREATE TABLE everything(
    id INTEGER PRIMARY KEY, tiny INTEGER, small INTEGER, int INTEGER, big INTEGER,
    ubyte INTEGER, ushort INTEGER, uint INTEGER, ubig INTEGER, single REAL, double REAL,
    flag INTEGER, text TEXT, bytes BLOB, maybe_text TEXT, maybe_int INTEGER,
    maybe_real REAL, maybe_bytes BLOB, date TEXT, time TEXT, datetime TEXT, utc TEXT,
    offset TEXT, doc TEXT, wrapped TEXT, tags TEXT, extra TEXT, uuid BLOB, maybe_uuid BLOB)";

fn config(cases: u32) -> Config {
    Config {
        cases,
        failure_persistence: None,
        rng_seed: RngSeed::Fixed(0x0a10_1173),
        ..Config::default()
    }
}

/// Reals SQLite keeps exactly: NaN is stored as NULL (tested in from_row.rs).
fn real() -> impl Strategy<Value = f64> {
    prop_oneof![
        Just(0.0),
        Just(-0.0),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(f64::MIN_POSITIVE),
        Just(f64::MAX),
        Just(f64::MIN),
        any::<f64>().prop_filter("NaN is NULL in SQLite", |f| !f.is_nan()),
    ]
}

fn single() -> impl Strategy<Value = f32> {
    prop_oneof![
        Just(-0.0f32),
        Just(f32::INFINITY),
        Just(f32::NEG_INFINITY),
        Just(f32::MAX),
        any::<f32>().prop_filter("NaN is NULL in SQLite", |f| !f.is_nan()),
    ]
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("a\0b".to_owned()),
        Just("' OR 1=1 --".to_owned()),
        Just("ünïcödé 🦀 日本語".to_owned()),
        Just("x".repeat(1 << 20)),
        any::<String>(),
    ]
}

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(Vec::new()),
        Just(vec![0u8; 256 * 1024]),
        proptest::collection::vec(any::<u8>(), 0..64),
    ]
}

fn date() -> impl Strategy<Value = NaiveDate> {
    (1i32..=9999, 1u32..=366).prop_map(|(y, d)| {
        NaiveDate::from_yo_opt(y, d)
            .or_else(|| NaiveDate::from_yo_opt(y, 365))
            .unwrap_or(NaiveDate::MIN)
    })
}

fn time() -> impl Strategy<Value = NaiveTime> {
    (0u32..86_400, 0u32..1_000_000_000).prop_map(|(s, n)| {
        NaiveTime::from_num_seconds_from_midnight_opt(s, n).unwrap_or(NaiveTime::MIN)
    })
}

fn datetime() -> impl Strategy<Value = NaiveDateTime> {
    (date(), time()).prop_map(|(d, t)| d.and_time(t))
}

fn json() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        text().prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
            proptest::collection::btree_map("[a-z\"\\\\]{0,6}", inner, 0..4)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

fn uuid() -> impl Strategy<Value = uuid::Uuid> {
    any::<u128>().prop_map(uuid::Uuid::from_u128)
}

prop_compose! {
    fn everything()(
        ints in (any::<i8>(), any::<i16>(), any::<i32>(),
                 prop_oneof![Just(i64::MIN), Just(i64::MAX), any::<i64>()]),
        uints in (any::<u8>(), any::<u16>(), any::<u32>(), 0..=i64::MAX as u64),
        reals in (single(), real(), any::<bool>()),
        blobs in (text(), bytes(), proptest::option::of(text()),
                  proptest::option::of(any::<i64>()), proptest::option::of(real()),
                  proptest::option::of(bytes())),
        times in (date(), time(), datetime(), datetime(), datetime(), -1_439i32..1_440),
        docs in (json(), proptest::collection::btree_map(".{0,8}", any::<i64>(), 0..4),
                 proptest::collection::vec(text(), 0..3),
                 proptest::option::of(proptest::collection::vec(any::<i32>(), 0..4)),
                 uuid(), proptest::option::of(uuid())),
    ) -> Everything {
        let (tiny, small, int, big) = ints;
        let (ubyte, ushort, uint, ubig) = uints;
        let (single, double, flag) = reals;
        let (text, bytes, maybe_text, maybe_int, maybe_real, maybe_bytes) = blobs;
        let (date, time, datetime, utc, local, offset_minutes) = times;
        let (doc, wrapped, tags, extra, uuid, maybe_uuid) = docs;
        let offset = FixedOffset::east_opt(offset_minutes * 60).unwrap_or_else(|| Utc.fix());
        Everything {
            id: 0, tiny, small, int, big, ubyte, ushort, uint, ubig, single, double, flag,
            text, bytes, maybe_text, maybe_int, maybe_real, maybe_bytes, date, time, datetime,
            utc: Utc.from_utc_datetime(&utc),
            offset: offset.from_utc_datetime(&local),
            doc, wrapped: Json(wrapped), tags, extra, uuid, maybe_uuid,
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// -0.0 is stored as 0.0 by SQLite; `==` treats them as equal, and so does
/// this comparison (the derive's PartialEq), so the round trip is exact in
/// every other bit.
#[test]
fn every_type_round_trips_through_insert_update_and_delete() {
    let rt = runtime();
    let conn = rt.block_on(async {
        let c = Connection::open_in_memory().await.expect("open");
        c.execute_script(SCHEMA).await.expect("schema");
        c
    });
    let mut runner = TestRunner::new(config(48));
    runner
        .run(&(everything(), everything()), |(first, second)| {
            rt.block_on(async {
                let mut row = first;
                row.id = conn.insert(&row).await.expect("insert");
                let found = conn.find::<Everything>(row.id).await.expect("find");
                prop_assert_eq!(found.as_ref(), Some(&row));
                // The offset of a DateTime<FixedOffset> is kept, not only the instant.
                prop_assert_eq!(
                    found.map(|f| f.offset.offset().local_minus_utc()),
                    Some(row.offset.offset().local_minus_utc())
                );

                let mut updated = second;
                updated.id = row.id;
                prop_assert!(conn.update(&updated).await.expect("update"));
                prop_assert_eq!(
                    conn.find::<Everything>(row.id).await.expect("find"),
                    Some(updated)
                );

                prop_assert!(conn.delete::<Everything>(row.id).await.expect("delete"));
                prop_assert_eq!(conn.find::<Everything>(row.id).await.expect("find"), None);
                Ok(())
            })
        })
        .unwrap_or_else(|e| panic!("{e}"));
}

#[derive(Debug, Clone, PartialEq, aiolite::FromRow, aiolite::Model)]
#[aiolite(table = "events")]
struct Event {
    #[aiolite(primary_key)]
    id: i64,
    at: DateTime<FixedOffset>,
}

/// Found by the round trip above: RFC 3339 text keeps offsets to the minute,
/// so an offset with seconds would move the instant. It is refused instead.
#[test]
fn an_offset_with_seconds_is_refused_not_rounded() {
    let rt = runtime();
    rt.block_on(async {
        let conn = Connection::open_in_memory().await.expect("open");
        conn.execute_script("CREATE TABLE events(id INTEGER PRIMARY KEY, at TEXT NOT NULL)")
            .await
            .expect("schema");
        let lmt = FixedOffset::east_opt(-(21 * 3600 + 11 * 60 + 10)).expect("offset");
        let at = lmt
            .with_ymd_and_hms(1890, 1, 1, 12, 0, 0)
            .single()
            .expect("time");
        let err = conn
            .insert(&Event { id: 0, at })
            .await
            .expect_err("offset with seconds");
        assert_eq!(err.kind(), aiolite::ErrorKind::Interface, "{err:?}");
        assert!(err.to_string().contains("offset"), "{err}");
        let n: i64 = conn
            .fetch_one_as("SELECT count(*) FROM events", ())
            .await
            .expect("count");
        assert_eq!(n, 0);
        let whole = FixedOffset::east_opt(-(21 * 3600 + 11 * 60)).expect("offset");
        let at = whole
            .with_ymd_and_hms(1890, 1, 1, 12, 0, 0)
            .single()
            .expect("time");
        let id = conn
            .insert(&Event { id: 0, at })
            .await
            .expect("whole minutes");
        let back = conn.find::<Event>(id).await.expect("find").expect("row");
        assert_eq!(back.at.offset(), at.offset());
        assert_eq!(back.at, at);
    });
}

#[derive(Debug, Clone, PartialEq, aiolite::FromRow, aiolite::Model)]
#[aiolite(table = "notes")]
struct Note {
    #[aiolite(primary_key)]
    id: i64,
    title: String,
    score: Option<i64>,
}

#[derive(Debug, Clone)]
enum Op {
    Insert(String, Option<i64>),
    InsertMany(Vec<(String, Option<i64>)>),
    Update(usize, String, Option<i64>),
    Upsert(i64, String, Option<i64>),
    Delete(usize),
    DeleteMissing(i64),
    Find(usize),
}

fn op() -> impl Strategy<Value = Op> {
    let title = "[a-z' ;\"-]{0,12}";
    let score = proptest::option::of(any::<i64>());
    prop_oneof![
        3 => (title, score.clone()).prop_map(|(t, s)| Op::Insert(t, s)),
        1 => proptest::collection::vec((title, score.clone()), 0..5).prop_map(Op::InsertMany),
        2 => (any::<usize>(), title, score.clone()).prop_map(|(i, t, s)| Op::Update(i, t, s)),
        1 => (1i64..40, title, score).prop_map(|(k, t, s)| Op::Upsert(k, t, s)),
        2 => any::<usize>().prop_map(Op::Delete),
        1 => (1_000i64..2_000).prop_map(Op::DeleteMissing),
        2 => any::<usize>().prop_map(Op::Find),
    ]
}

fn pick(model: &BTreeMap<i64, Note>, i: usize) -> Option<i64> {
    if model.is_empty() {
        None
    } else {
        model.keys().nth(i % model.len()).copied()
    }
}

#[test]
fn random_crud_sequences_agree_with_a_btreemap() {
    let rt = runtime();
    let mut runner = TestRunner::new(config(32));
    runner
        .run(&proptest::collection::vec(op(), 1..40), |ops| {
            rt.block_on(async {
                let conn = Connection::open_in_memory().await.expect("open");
                conn.execute_script(
                    "CREATE TABLE notes(id INTEGER PRIMARY KEY, title TEXT NOT NULL, score INTEGER)",
                )
                .await
                .expect("schema");
                let mut model: BTreeMap<i64, Note> = BTreeMap::new();
                for op in ops {
                    match op {
                        Op::Insert(title, score) => {
                            let mut n = Note { id: 0, title, score };
                            n.id = conn.insert(&n).await.expect("insert");
                            prop_assert!(!model.contains_key(&n.id));
                            model.insert(n.id, n);
                        }
                        Op::InsertMany(rows) => {
                            let notes: Vec<Note> = rows
                                .into_iter()
                                .map(|(title, score)| Note { id: 0, title, score })
                                .collect();
                            let keys = conn.insert_many(&notes).await.expect("insert_many");
                            prop_assert_eq!(keys.len(), notes.len());
                            for (k, mut n) in keys.into_iter().zip(notes) {
                                n.id = k;
                                model.insert(k, n);
                            }
                        }
                        Op::Update(i, title, score) => {
                            if let Some(id) = pick(&model, i) {
                                let n = Note { id, title, score };
                                prop_assert!(conn.update(&n).await.expect("update"));
                                model.insert(id, n);
                            }
                        }
                        Op::Upsert(id, title, score) => {
                            let n = Note { id, title, score };
                            prop_assert_eq!(conn.upsert(&n).await.expect("upsert"), id);
                            model.insert(id, n);
                        }
                        Op::Delete(i) => {
                            if let Some(id) = pick(&model, i) {
                                prop_assert!(conn.delete::<Note>(id).await.expect("delete"));
                                model.remove(&id);
                            }
                        }
                        Op::DeleteMissing(id) => {
                            prop_assert!(!conn.delete::<Note>(id).await.expect("delete"));
                        }
                        Op::Find(i) => {
                            if let Some(id) = pick(&model, i) {
                                let found = conn.find::<Note>(id).await.expect("find");
                                prop_assert_eq!(found.as_ref(), model.get(&id));
                            }
                        }
                    }
                }
                let all: Vec<Note> = conn
                    .query_all(Note::select().order_by(NoteColumn::Id, Order::Asc))
                    .await
                    .expect("all");
                prop_assert_eq!(all, model.into_values().collect::<Vec<_>>());
                conn.close().await.expect("close");
                Ok(())
            })
        })
        .unwrap_or_else(|e| panic!("{e}"));
}
