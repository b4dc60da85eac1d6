//! What the worker tells `tracing`, with OpenTelemetry's database field
//! names (`db.system`, `db.operation.name`, `db.query.text`): every
//! statement with its wait in the queue and its execution apart, the
//! transactions' BEGIN, COMMIT and ROLLBACK (where a commit's fsync shows),
//! and streams from open to close. Each is emitted inside the span of the
//! request that caused it, the caller's; a statement is `warn` when its wait
//! and its execution together pass `ConnectOptions::log_slow_statements`,
//! `debug` otherwise.

use std::time::Duration;

use crate::sql::first_word;

/// `warn` with "slow ..." when `$slow`, `debug` otherwise, with one list of
/// fields for both (tracing's macros take the level as a constant).
macro_rules! slow_or_debug {
    ($slow:expr, $what:literal, $($field:tt)*) => {
        if $slow {
            tracing::warn!($($field)* concat!("slow ", $what))
        } else {
            tracing::debug!($($field)* $what)
        }
    };
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// A statement (or a transaction's BEGIN, COMMIT, ROLLBACK): how long it
/// waited in the connection's queue, and how long it ran.
pub(crate) fn statement(sql: &str, queue_wait: Duration, exec: Duration, slow: Duration) {
    // Field values are computed only for an enabled event: a statement
    // nobody listens to costs the comparison below and nothing more.
    slow_or_debug!(
        queue_wait + exec >= slow,
        "statement",
        db.system = "sqlite",
        db.operation.name = first_word(sql),
        db.query.text = sql,
        queue_wait_us = micros(queue_wait),
        exec_us = micros(exec),
    );
}

/// A group commit's shared COMMIT, which made `members` transactions
/// durable at once.
pub(crate) fn group_commit(members: usize, exec: Duration, slow: Duration) {
    slow_or_debug!(
        exec >= slow,
        "group commit",
        db.system = "sqlite",
        db.operation.name = "COMMIT",
        members,
        exec_us = micros(exec),
    );
}

/// An automatic checkpoint after a commit that left `frames` frames in the
/// WAL: how many it copied back (`None`: it did not run), and how long it
/// took. It runs inside the COMMIT's request, so that request's time
/// includes it.
pub(crate) fn checkpoint(frames: i32, done: Option<&(i32, i32)>, took: Duration, slow: Duration) {
    let checkpointed = done.map_or(-1, |&(_, copied)| copied);
    slow_or_debug!(
        took >= slow,
        "checkpoint",
        db.system = "sqlite",
        wal_frames = frames,
        checkpointed,
        exec_us = micros(took),
    );
}

/// A stream's statement was parked after its first chunk.
pub(crate) fn stream_opened(sql: &str) {
    tracing::debug!(
        db.system = "sqlite",
        db.operation.name = first_word(sql),
        db.query.text = sql,
        "stream opened"
    );
}

/// A stream's statement was finalized: `why` it ended, the rows it gave, and
/// how long it kept its read snapshot.
pub(crate) fn stream_closed(sql: &str, rows: u64, open_for: Duration, why: &'static str) {
    tracing::debug!(
        db.system = "sqlite",
        db.operation.name = first_word(sql),
        db.query.text = sql,
        rows,
        open_us = micros(open_for),
        why,
        "stream closed"
    );
}
