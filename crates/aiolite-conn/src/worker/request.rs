//! What a request is and what the engine hooks into SQLite for every request:
//! the messages on the worker's queue, the work a `Drop` leaves for the
//! worker, and the two SQLite callbacks the engine owns (the progress
//! handler that stops a request whose caller went away, the commit hook that
//! refuses a commit no guard asked for), with the user's own chained behind.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use tokio::sync::oneshot;
use tracing::Span;

use super::{Shared, Worker};
use crate::error::{panic_text, Result};

/// How often (in SQLite VM instructions) a running statement checks whether its
/// caller is gone. A point query never reaches it; a scan checks every few µs.
pub(crate) const CANCEL_CHECK_OPS: i32 = 1000;

/// What a request is, as far as the worker's batching is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Anything: runs alone.
    Plain,
    /// One query that looks like a read: it may share a read transaction with
    /// the reads queued beside it.
    Read,
    /// A transaction's `begin`: on a group-commit writer it may join the
    /// open group.
    Begin,
    /// A single write through a group-commit writer's `execute`: it joins
    /// the open group as a member of its own, answered once the group's
    /// COMMIT ran.
    GroupWrite,
    /// A transaction guard's `commit` or `rollback`: it ends the lease, and
    /// runs even when the transaction is dead (it reports or accepts that).
    EndLease,
    /// A savepoint's rollback: runs even when the transaction is dead (the
    /// work it would undo is gone already).
    Undo,
}

/// A request: runs on the worker with the worker's state.
pub(crate) type Job = Box<dyn FnOnce(&mut Worker) + Send>;

pub(crate) enum Message {
    Run {
        id: u64,
        span: Span,
        job: Job,
        /// What the worker may do with it beyond running it.
        kind: Kind,
    },
    Close(oneshot::Sender<Result<()>>),
    /// Nothing to do; lets an idle worker notice dropped cursors.
    Wake,
}

/// Work left by a `Drop` (which cannot await), done by the worker before its
/// next request, in the order it was left.
#[derive(Debug)]
pub(crate) enum Deferred {
    /// A dropped stream: finalize its parked statement.
    CloseCursor(u64),
    /// A savepoint dropped without release: undo it.
    RollbackTo(String),
    /// A dropped blob handle: close it.
    CloseBlob(u64),
}

pub(crate) type ProgressFn = Box<dyn FnMut() -> bool + Send>;
pub(crate) type CommitFn = Box<dyn FnMut() -> bool + Send>;

/// Runs a user callback; a panic is recorded as the request's fault and
/// `on_panic` is returned to SQLite instead.
pub(crate) fn guarded<R>(shared: &Shared, what: &str, on_panic: R, f: impl FnOnce() -> R) -> R {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(payload) => {
            shared.fault(format!("{what} panicked: {}", panic_text(&*payload)));
            on_panic
        }
    }
}

fn gcd(a: i32, b: i32) -> i32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// SQLite has one progress handler per connection, and aiolite's own (which
/// stops a request whose caller went away) must stay. A user handler is
/// chained behind it: SQLite calls the pair every `gcd(n, 1000)` instructions,
/// the cancellation check runs each time, the user's handler every `n`.
pub(crate) fn install_progress_handler(
    conn: &mut rusqlite::Connection,
    shared: &Arc<Shared>,
    user: Option<(i32, ProgressFn)>,
) -> rusqlite::Result<()> {
    let probe = Arc::clone(shared);
    match user {
        None => conn.progress_handler(CANCEL_CHECK_OPS, Some(move || probe.interrupt_now())),
        Some((n, mut f)) => {
            let tick = gcd(n, CANCEL_CHECK_OPS);
            let every = n / tick;
            let mut count = 0;
            conn.progress_handler(
                tick,
                Some(move || {
                    if probe.interrupt_now() {
                        return true;
                    }
                    count += 1;
                    if count < every {
                        return false;
                    }
                    count = 0;
                    guarded(&probe, "the progress handler", true, &mut f)
                }),
            )
        }
    }
}

/// aiolite's commit hook turns the commit of a statement whose callback
/// panicked into a rollback (so an autocommit write that went wrong is not
/// kept), and so a commit no guard asked for while a guard owns the
/// transaction (see `GuardState`), then asks the user's hook, if any.
pub(crate) fn install_commit_hook(
    conn: &mut rusqlite::Connection,
    shared: &Arc<Shared>,
    mut user: Option<CommitFn>,
) -> rusqlite::Result<()> {
    let probe = Arc::clone(shared);
    conn.commit_hook(Some(move || {
        if probe.fault_pending() || probe.refuses_commit() {
            return true;
        }
        match user.as_mut() {
            Some(f) => guarded(&probe, "the commit hook", true, f),
            None => false,
        }
    }))
}
