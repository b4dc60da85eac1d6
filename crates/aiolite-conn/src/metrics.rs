//! What a connection and a pool have done since they opened, as a plain
//! snapshot ([`Connection::metrics`], [`Database::metrics`]) that serializes
//! with serde: requests, their wait in the queue and their execution
//! (histograms), cancellations and interrupts, `SQLITE_BUSY` errors and
//! aiolite's own retries of them,
//! transaction leases and how long they held the connection, read batches,
//! group commits, statement-cache hits and misses, automatic checkpoints and
//! their durations, what is held open right now, and the WAL's size.
//!
//! The counters are atomics the worker bumps as it goes (relaxed: each one
//! is exact, a snapshot is not one instant across all of them). What the
//! worker does after a request's answer (its execution time, a read batch's
//! or a lease's end) is counted just after the caller has the answer, and
//! before the worker takes its next request.
//!
//! [`Connection::metrics`]: crate::Connection::metrics
//! [`Database::metrics`]: crate::Database::metrics

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

/// Buckets of a [`Histogram`]: 1 us, 2 us, 4 us, ... 2^31 us (about 36
/// minutes), and above.
const BUCKETS: usize = 33;

thread_local! {
    /// The counters of the connection this worker thread serves (one
    /// thread, one connection), for code that holds only its
    /// `rusqlite::Connection`, or nothing: [`prepare_cached`] and
    /// [`busy_retried`] count into them.
    static SERVING: RefCell<Option<Arc<Stats>>> = const { RefCell::new(None) };
}

/// Makes this (worker) thread's counts go to `stats`.
pub(crate) fn serve_on_this_thread(stats: &Arc<Stats>) {
    SERVING.with_borrow_mut(|s| *s = Some(Arc::clone(stats)));
}

fn on_this_thread(f: impl FnOnce(&Stats)) {
    SERVING.with_borrow(|s| {
        if let Some(s) = s {
            f(s);
        }
    });
}

/// Whether a statement `prepare_cached` returned came from the cache: a
/// fresh one has never run, a cached one has (it went back after running).
pub(crate) fn from_cache(stmt: &rusqlite::Statement<'_>) -> bool {
    stmt.get_status(rusqlite::StatementStatus::Run) > 0
}

/// `conn.prepare_cached(sql)`, counted as a statement-cache hit or miss of
/// the connection this worker thread serves: for aiolite's own statements
/// inside closures (the typed layer's, migrations'). On another thread it
/// only prepares.
#[doc(hidden)]
pub fn prepare_cached<'c>(
    conn: &'c rusqlite::Connection,
    sql: &str,
) -> rusqlite::Result<rusqlite::CachedStatement<'c>> {
    let stmt = conn.prepare_cached(sql)?;
    on_this_thread(|s| s.statement_prepared(from_cache(&stmt)));
    Ok(stmt)
}

/// aiolite retried a `SQLITE_BUSY` itself (`busy::retry_busy`) on this
/// thread's connection.
pub(crate) fn busy_retried() {
    on_this_thread(Stats::busy_retry);
}

/// Durations in power-of-two microsecond buckets.
#[derive(Debug)]
pub(crate) struct Histo {
    counts: [AtomicU64; BUCKETS],
    sum_us: AtomicU64,
}

impl Default for Histo {
    fn default() -> Histo {
        Histo {
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_us: AtomicU64::new(0),
        }
    }
}

impl Histo {
    pub(crate) fn record(&self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        // Bucket i holds durations up to 2^i us.
        let i = if us <= 1 {
            0
        } else {
            (64 - (us - 1).leading_zeros() as usize).min(BUCKETS - 1)
        };
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    fn snapshot(&self) -> Histogram {
        let mut buckets = Vec::new();
        let mut cumulative = 0;
        let counts: Vec<u64> = self
            .counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        let last = counts.iter().rposition(|&c| c > 0).map_or(0, |i| i + 1);
        for (i, c) in counts.iter().enumerate().take(last) {
            cumulative += c;
            buckets.push(Bucket {
                le_us: if i == BUCKETS - 1 { u64::MAX } else { 1 << i },
                count: cumulative,
            });
        }
        Histogram {
            count: cumulative,
            sum_us: self.sum_us.load(Ordering::Relaxed),
            buckets,
        }
    }
}

/// A connection's counters, bumped by its worker through the methods
/// below, which also feed the `metrics` facade (feature `metrics`).
#[derive(Debug, Default)]
pub(crate) struct Stats {
    requests: AtomicU64,
    queue_wait: Histo,
    exec: Histo,
    cancelled: AtomicU64,
    interrupted: AtomicU64,
    busy_errors: AtomicU64,
    busy_retries: AtomicU64,
    leases: AtomicU64,
    lease_hold: Histo,
    read_batches: AtomicU64,
    read_batch_requests: AtomicU64,
    group_commits: AtomicU64,
    group_members: AtomicU64,
    statement_cache_hits: AtomicU64,
    statement_cache_misses: AtomicU64,
    checkpoints: Histo,
    #[cfg(feature = "metrics")]
    facade: std::sync::OnceLock<facade::Facade>,
}

fn bump(counter: &AtomicU64, by: u64) {
    counter.fetch_add(by, Ordering::Relaxed);
}

impl Stats {
    /// The connection's labels for the facade (`db`: its path, `role`),
    /// registered once as it opens; without the feature, nothing.
    pub(crate) fn label(&self, db: &str, role: &'static str) {
        #[cfg(feature = "metrics")]
        {
            let _ = self.facade.set(facade::Facade::new(db, role));
        }
        #[cfg(not(feature = "metrics"))]
        let _ = (db, role);
    }

    /// A request started after waiting `wait` in the queue.
    pub(crate) fn request_started(&self, wait: Duration) {
        bump(&self.requests, 1);
        self.queue_wait.record(wait);
        #[cfg(feature = "metrics")]
        if let Some(f) = self.facade.get() {
            f.requests.increment(1);
            f.queue_wait.record(wait.as_secs_f64());
        }
    }

    /// A request ran for `exec`.
    pub(crate) fn request_ran(&self, exec: Duration) {
        self.exec.record(exec);
        #[cfg(feature = "metrics")]
        if let Some(f) = self.facade.get() {
            f.exec.record(exec.as_secs_f64());
        }
    }

    /// A request skipped: its caller left before it started.
    pub(crate) fn cancelled(&self) {
        bump(&self.cancelled, 1);
        #[cfg(feature = "metrics")]
        if let Some(f) = self.facade.get() {
            f.cancelled.increment(1);
        }
    }

    /// A running statement stopped: its caller left.
    pub(crate) fn interrupted(&self) {
        bump(&self.interrupted, 1);
        #[cfg(feature = "metrics")]
        if let Some(f) = self.facade.get() {
            f.interrupted.increment(1);
        }
    }

    /// A request failed with SQLITE_BUSY or SQLITE_LOCKED.
    pub(crate) fn busy_error(&self) {
        bump(&self.busy_errors, 1);
        #[cfg(feature = "metrics")]
        if let Some(f) = self.facade.get() {
            f.busy_errors.increment(1);
        }
    }

    /// aiolite slept once and retried a `SQLITE_BUSY` that SQLite's busy
    /// handler does not cover (opening, WAL recovery, migrations' locks).
    pub(crate) fn busy_retry(&self) {
        bump(&self.busy_retries, 1);
        #[cfg(feature = "metrics")]
        if let Some(f) = self.facade.get() {
            f.busy_retries.increment(1);
        }
    }

    /// A transaction's lease started.
    pub(crate) fn lease_started(&self) {
        bump(&self.leases, 1);
        #[cfg(feature = "metrics")]
        if let Some(f) = self.facade.get() {
            f.leases.increment(1);
        }
    }

    /// A transaction's lease ended after holding the connection for `held`.
    pub(crate) fn lease_ended(&self, held: Duration) {
        self.lease_hold.record(held);
        #[cfg(feature = "metrics")]
        if let Some(f) = self.facade.get() {
            f.lease_hold.record(held.as_secs_f64());
        }
    }

    /// A read batch answered `requests` requests in one read transaction.
    pub(crate) fn read_batch(&self, requests: u64) {
        bump(&self.read_batches, 1);
        bump(&self.read_batch_requests, requests);
        #[cfg(feature = "metrics")]
        if let Some(f) = self.facade.get() {
            f.read_batches.increment(1);
            f.read_batch_requests.increment(requests);
            f.read_batch_size.record(requests as f64);
        }
    }

    /// A statement aiolite asked for came from the connection's statement
    /// cache (`hit`), or had to be prepared.
    pub(crate) fn statement_prepared(&self, hit: bool) {
        bump(
            if hit {
                &self.statement_cache_hits
            } else {
                &self.statement_cache_misses
            },
            1,
        );
        #[cfg(feature = "metrics")]
        if let Some(f) = self.facade.get() {
            if hit {
                f.statement_cache_hits.increment(1);
            } else {
                f.statement_cache_misses.increment(1);
            }
        }
    }

    /// An automatic checkpoint (after a commit grew the WAL past
    /// `wal_autocheckpoint` pages) took `took`.
    pub(crate) fn checkpointed(&self, took: Duration) {
        self.checkpoints.record(took);
        #[cfg(feature = "metrics")]
        if let Some(f) = self.facade.get() {
            f.checkpoint.record(took.as_secs_f64());
        }
    }

    /// A group commit made `members` transactions or writes durable.
    pub(crate) fn group_commit(&self, members: u64) {
        bump(&self.group_commits, 1);
        bump(&self.group_members, members);
        #[cfg(feature = "metrics")]
        if let Some(f) = self.facade.get() {
            f.group_commits.increment(1);
            f.group_members.increment(members);
            f.group_size.record(members as f64);
        }
    }
}

/// The `metrics` facade's handles of one connection, registered once with
/// the recorder installed when it opened (none installed: handles that do
/// nothing). Queue depth, what is held open and the WAL's size are in the
/// snapshot only: they are states, read when asked for.
#[cfg(feature = "metrics")]
mod facade {
    use std::fmt;

    use metrics::{counter, histogram, Counter, Histogram};

    pub(super) struct Facade {
        pub(super) requests: Counter,
        pub(super) queue_wait: Histogram,
        pub(super) exec: Histogram,
        pub(super) cancelled: Counter,
        pub(super) interrupted: Counter,
        pub(super) busy_errors: Counter,
        pub(super) busy_retries: Counter,
        pub(super) leases: Counter,
        pub(super) lease_hold: Histogram,
        pub(super) read_batches: Counter,
        pub(super) read_batch_requests: Counter,
        pub(super) read_batch_size: Histogram,
        pub(super) group_commits: Counter,
        pub(super) group_members: Counter,
        pub(super) group_size: Histogram,
        pub(super) statement_cache_hits: Counter,
        pub(super) statement_cache_misses: Counter,
        pub(super) checkpoint: Histogram,
    }

    impl Facade {
        pub(super) fn new(db: &str, role: &'static str) -> Facade {
            let db = db.to_owned();
            macro_rules! labelled {
                ($kind:ident, $name:literal) => {
                    $kind!($name, "db" => db.clone(), "role" => role)
                };
            }
            Facade {
                requests: labelled!(counter, "aiolite_requests_total"),
                queue_wait: labelled!(histogram, "aiolite_queue_wait_seconds"),
                exec: labelled!(histogram, "aiolite_exec_seconds"),
                cancelled: labelled!(counter, "aiolite_cancelled_total"),
                interrupted: labelled!(counter, "aiolite_interrupted_total"),
                busy_errors: labelled!(counter, "aiolite_busy_errors_total"),
                busy_retries: labelled!(counter, "aiolite_busy_retries_total"),
                leases: labelled!(counter, "aiolite_leases_total"),
                lease_hold: labelled!(histogram, "aiolite_lease_hold_seconds"),
                read_batches: labelled!(counter, "aiolite_read_batches_total"),
                read_batch_requests: labelled!(counter, "aiolite_read_batch_requests_total"),
                read_batch_size: labelled!(histogram, "aiolite_read_batch_size"),
                group_commits: labelled!(counter, "aiolite_group_commits_total"),
                group_members: labelled!(counter, "aiolite_group_members_total"),
                group_size: labelled!(histogram, "aiolite_group_size"),
                statement_cache_hits: labelled!(counter, "aiolite_statement_cache_hits_total"),
                statement_cache_misses: labelled!(counter, "aiolite_statement_cache_misses_total"),
                checkpoint: labelled!(histogram, "aiolite_checkpoint_seconds"),
            }
        }
    }

    impl fmt::Debug for Facade {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("Facade")
        }
    }
}

/// Durations, as Prometheus histograms have them: cumulative buckets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Histogram {
    /// How many were recorded.
    pub count: u64,
    /// Their sum, in microseconds.
    pub sum_us: u64,
    /// `count` of those that took at most `le_us` microseconds, for
    /// `le_us` = 1, 2, 4, ... up to the largest recorded (the last bucket's
    /// bound is `u64::MAX`: everything).
    pub buckets: Vec<Bucket>,
}

impl Histogram {
    /// The smallest bucket bound (microseconds) under which at least the
    /// fraction `q` of the recorded durations lie; `None` when empty.
    pub fn quantile_us(&self, q: f64) -> Option<u64> {
        if self.count == 0 {
            return None;
        }
        let want = (q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64;
        self.buckets
            .iter()
            .find(|b| b.count >= want.max(1))
            .map(|b| b.le_us)
    }
}

/// One bucket of a [`Histogram`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Bucket {
    /// The bucket's upper bound, in microseconds.
    pub le_us: u64,
    /// Durations at most `le_us` (cumulative).
    pub count: u64,
}

/// What one connection has done since it opened, and holds right now.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConnectionMetrics {
    /// Requests waiting in the queue now (not counting the one running).
    pub queued_requests: usize,
    /// Requests the worker started.
    pub requests: u64,
    /// How long requests waited in the queue before the worker took them.
    pub queue_wait: Histogram,
    /// How long requests ran on the worker.
    pub exec: Histogram,
    /// Requests skipped because their caller went away before they started.
    pub cancelled: u64,
    /// Running statements stopped because their caller went away.
    pub interrupted: u64,
    /// Requests that failed with `SQLITE_BUSY` or `SQLITE_LOCKED` (another
    /// connection held a lock past the busy timeout).
    pub busy_errors: u64,
    /// Times aiolite itself retried a `SQLITE_BUSY` where SQLite's busy
    /// handler does not wait (switching a new file to WAL, WAL recovery,
    /// a migration's write lock while another process migrates): contention
    /// that did not (yet) become a busy error. The waits inside SQLite's busy
    /// handler (`busy_timeout`) are SQLite's, and not counted: counting them
    /// would mean replacing its handler, and `PRAGMA busy_timeout` would then
    /// read 0.
    pub busy_retries: u64,
    /// Transaction guards (`begin()`) that leased the connection.
    pub leases: u64,
    /// How long each lease held the connection, from its BEGIN to its end.
    pub lease_hold: Histogram,
    /// Read transactions shared by point reads queued together (with the
    /// `metrics` feature, each one's size also goes to the
    /// `aiolite_read_batch_size` histogram; `aiolite_group_size` likewise).
    pub read_batches: u64,
    /// Requests answered inside those.
    pub read_batch_requests: u64,
    /// Group commits (a pool's writer with `group_commit(true)`).
    pub group_commits: u64,
    /// Transactions and writes those made durable.
    pub group_members: u64,
    /// Statements aiolite prepared that came from the connection's
    /// statement cache (every query method, the typed layer, migrations; not
    /// what a `call` closure prepares itself). A statement that went back to
    /// the cache without ever running counts as a miss when next taken.
    pub statement_cache_hits: u64,
    /// Statements aiolite had to prepare (not in the cache, or evicted: see
    /// `ConnectOptions::statement_cache_capacity`).
    pub statement_cache_misses: u64,
    /// Automatic checkpoints (run after a commit that left the WAL at
    /// `wal_autocheckpoint` pages or more, as SQLite's own would) and how long
    /// each took. aiolite runs them itself on a file in WAL mode, with the
    /// threshold the connection had when it opened (1000 pages unless
    /// `ConnectOptions::pragma("wal_autocheckpoint", ..)` said otherwise):
    /// SQLite then reports its own as off, so `PRAGMA wal_autocheckpoint`
    /// reads 0. Setting that pragma later gives checkpoints back to SQLite,
    /// which then runs them unseen.
    pub checkpoints: Histogram,
    /// Statements parked by open streams now.
    pub parked_statements: usize,
    /// Open blob handles now.
    pub open_blobs: usize,
    /// The age of the oldest read snapshot a stream keeps, in seconds.
    pub oldest_snapshot_secs: Option<f64>,
}

impl ConnectionMetrics {
    /// `held`: parked statements, open blobs and the oldest snapshot's age,
    /// as `Connection::resources` reads them (passed in, so that this file
    /// depends on nothing: the worker bumps its counters).
    pub(crate) fn new(
        stats: &Stats,
        queued_requests: usize,
        held: (usize, usize, Option<Duration>),
    ) -> ConnectionMetrics {
        let (parked_statements, open_blobs, oldest_snapshot) = held;
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        ConnectionMetrics {
            queued_requests,
            requests: load(&stats.requests),
            queue_wait: stats.queue_wait.snapshot(),
            exec: stats.exec.snapshot(),
            cancelled: load(&stats.cancelled),
            interrupted: load(&stats.interrupted),
            busy_errors: load(&stats.busy_errors),
            busy_retries: load(&stats.busy_retries),
            leases: load(&stats.leases),
            lease_hold: stats.lease_hold.snapshot(),
            read_batches: load(&stats.read_batches),
            read_batch_requests: load(&stats.read_batch_requests),
            group_commits: load(&stats.group_commits),
            group_members: load(&stats.group_members),
            statement_cache_hits: load(&stats.statement_cache_hits),
            statement_cache_misses: load(&stats.statement_cache_misses),
            checkpoints: stats.checkpoints.snapshot(),
            parked_statements,
            open_blobs,
            oldest_snapshot_secs: oldest_snapshot.map(|d| d.as_secs_f64()),
        }
    }
}

/// What a pool has done: its writer's and each reader's metrics, and the
/// size of the WAL file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DatabaseMetrics {
    /// The writer's.
    pub writer: ConnectionMetrics,
    /// Each reader's, in order.
    pub readers: Vec<ConnectionMetrics>,
    /// The `-wal` file's size in bytes; `None` in memory or when it does not
    /// exist (no write since the last connection closed).
    pub wal_bytes: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_hold_what_they_say() {
        let h = Histo::default();
        for us in [0, 1, 2, 3, 4, 5, 1000, 1024, 1025] {
            h.record(Duration::from_micros(us));
        }
        let s = h.snapshot();
        assert_eq!(s.count, 9);
        assert_eq!(s.sum_us, 3064);
        let at = |le: u64| s.buckets.iter().find(|b| b.le_us == le).map(|b| b.count);
        assert_eq!(at(1), Some(2)); // 0 and 1
        assert_eq!(at(2), Some(3));
        assert_eq!(at(4), Some(5)); // 3 and 4
        assert_eq!(at(8), Some(6));
        assert_eq!(at(1024), Some(8)); // 1000 and 1024
        assert_eq!(at(2048), Some(9));
        assert_eq!(s.buckets.last().map(|b| b.count), Some(9));
        assert_eq!(s.quantile_us(0.5), Some(4));
        assert_eq!(s.quantile_us(1.0), Some(2048));
        assert_eq!(Histo::default().snapshot().quantile_us(0.5), None);
        h.record(Duration::from_secs(100_000));
        assert_eq!(h.snapshot().buckets.last().map(|b| b.le_us), Some(u64::MAX));
    }
}
