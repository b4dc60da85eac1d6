//! With the `metrics` feature, what `Connection::metrics` counts also goes
//! through the `metrics` facade, labelled with the database and the role, so
//! a Prometheus or OpenTelemetry exporter sees it. A recorder in the test
//! captures it.
#![cfg(feature = "metrics")]

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use metrics::{
    Counter, CounterFn, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder,
    SharedString, Unit,
};

/// Name and labels, as `name{label=value,...}` with the labels sorted.
fn id(key: &Key) -> String {
    let mut labels: Vec<String> = key
        .labels()
        .map(|l| format!("{}={}", l.key(), l.value()))
        .collect();
    labels.sort();
    format!("{}{{{}}}", key.name(), labels.join(","))
}

#[derive(Default)]
struct Captured {
    counters: Mutex<HashMap<String, Arc<AtomicU64>>>,
    histograms: Mutex<HashMap<String, Arc<Mutex<Vec<f64>>>>>,
}

struct Count(Arc<AtomicU64>);
impl CounterFn for Count {
    fn increment(&self, value: u64) {
        self.0.fetch_add(value, Ordering::Relaxed);
    }
    fn absolute(&self, value: u64) {
        self.0.fetch_max(value, Ordering::Relaxed);
    }
}

struct Values(Arc<Mutex<Vec<f64>>>);
impl HistogramFn for Values {
    fn record(&self, value: f64) {
        self.0.lock().expect("lock").push(value);
    }
}

#[derive(Clone, Default)]
struct TestRecorder(Arc<Captured>);

impl Recorder for TestRecorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        let c = Arc::clone(
            self.0
                .counters
                .lock()
                .expect("lock")
                .entry(id(key))
                .or_default(),
        );
        Counter::from_arc(Arc::new(Count(c)))
    }
    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }
    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        let h = Arc::clone(
            self.0
                .histograms
                .lock()
                .expect("lock")
                .entry(id(key))
                .or_default(),
        );
        Histogram::from_arc(Arc::new(Values(h)))
    }
}

impl TestRecorder {
    fn counter(&self, id: &str) -> u64 {
        self.0
            .counters
            .lock()
            .expect("lock")
            .get(id)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }
    fn histogram(&self, id: &str) -> Vec<f64> {
        self.0
            .histograms
            .lock()
            .expect("lock")
            .get(id)
            .map(|h| h.lock().expect("lock").clone())
            .unwrap_or_default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_facade_sees_what_the_snapshot_counts() {
    let recorder = TestRecorder::default();
    metrics::set_global_recorder(recorder.clone()).expect("the only recorder");

    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("facade.db");
    let db = aiolite::Database::builder(&path)
        .readers(1)
        .group_commit(true)
        .open()
        .await
        .expect("open");
    db.execute("CREATE TABLE t(x)", ()).await.expect("schema");
    for i in 0..3 {
        db.execute("INSERT INTO t VALUES (?)", (i,))
            .await
            .expect("write");
    }
    let tx = db.begin().await.expect("begin");
    tx.execute("INSERT INTO t VALUES (9)", ())
        .await
        .expect("insert");
    tx.commit().await.expect("commit");
    // Served after the lease's end: its hold time is counted by then.
    db.writer().execute("SELECT 1", ()).await.expect("settle");
    let n: i64 = db
        .fetch_one("SELECT count(*) FROM t", ())
        .await
        .expect("count")
        .get(0)
        .expect("n");
    assert_eq!(n, 4);

    let db_label = path.display().to_string();
    let writer = |name: &str| format!("{name}{{db={db_label},role=writer}}");
    let reader = |name: &str| format!("{name}{{db={db_label},role=reader}}");
    let snapshot = db.metrics();
    assert_eq!(
        recorder.counter(&writer("aiolite_requests_total")),
        snapshot.writer.requests,
        "the facade and the snapshot count the same requests"
    );
    assert_eq!(recorder.counter(&writer("aiolite_leases_total")), 1);
    assert_eq!(
        recorder
            .histogram(&writer("aiolite_lease_hold_seconds"))
            .len(),
        1
    );
    assert_eq!(
        recorder.counter(&writer("aiolite_group_members_total")),
        snapshot.writer.group_members
    );
    assert!(snapshot.writer.group_members >= 4);
    // Each group's size, as a histogram: they add up to the members.
    let sizes = recorder.histogram(&writer("aiolite_group_size"));
    assert_eq!(sizes.len() as u64, snapshot.writer.group_commits);
    assert_eq!(
        sizes.iter().sum::<f64>(),
        snapshot.writer.group_members as f64
    );
    assert_eq!(
        recorder.counter(&reader("aiolite_requests_total")),
        snapshot.readers[0].requests
    );
    assert!(snapshot.readers[0].requests >= 1);
    let waits = recorder.histogram(&writer("aiolite_queue_wait_seconds"));
    assert_eq!(waits.len() as u64, snapshot.writer.queue_wait.count);
    assert!(
        waits.iter().all(|s| (0.0..60.0).contains(s)),
        "seconds: {waits:?}"
    );
    assert_eq!(
        recorder.histogram(&writer("aiolite_exec_seconds")).len() as u64,
        snapshot.writer.exec.count
    );
    for (name, counted) in [
        (
            "aiolite_statement_cache_hits_total",
            snapshot.writer.statement_cache_hits,
        ),
        (
            "aiolite_statement_cache_misses_total",
            snapshot.writer.statement_cache_misses,
        ),
    ] {
        assert_eq!(recorder.counter(&writer(name)), counted, "{name}");
    }
    assert!(
        snapshot.writer.statement_cache_hits >= 2,
        "{:?}",
        snapshot.writer
    );

    // A commit past wal_autocheckpoint pages (1000 by default): one
    // automatic checkpoint, timed on both sides.
    db.execute("INSERT INTO t VALUES (zeroblob(5 * 1024 * 1024))", ())
        .await
        .expect("big write");
    let checkpoints = recorder.histogram(&writer("aiolite_checkpoint_seconds"));
    assert_eq!(checkpoints.len(), 1, "{checkpoints:?}");
    assert_eq!(db.metrics().writer.checkpoints.count, 1);
    db.close().await.expect("close");
}
