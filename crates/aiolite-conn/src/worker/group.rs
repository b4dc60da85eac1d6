//! Group commit on a pool's writer ([`DatabaseBuilder::group_commit`]).
//!
//! Transactions begun while others wait in the writer's queue share one
//! SQLite transaction: each runs inside its own savepoint, and one COMMIT (one
//! fsync of the WAL at `synchronous=FULL`) makes all of them durable. Each
//! member's `commit()` answers only after that COMMIT:
//!
//! - a member that rolls back (or fails, or is dropped) undoes only its own
//!   savepoint, at once;
//! - a member that commits releases its savepoint and waits;
//! - when the queue holds no further `begin` (or the group is full), the
//!   worker commits the group and answers every waiting member with the
//!   outcome: all succeed, or all get the COMMIT's error.
//!
//! [`DatabaseBuilder::group_commit`]: crate::DatabaseBuilder::group_commit

use std::sync::Arc;

use tokio::sync::oneshot;

use super::Worker;
use crate::error::{Error, Result};
use crate::params::Params;

/// The savepoint each member runs in. Members never overlap (each holds the
/// writer's lease), so one name serves all.
const SAVEPOINT: &str = "aiolite_group_member";

/// The most members one COMMIT makes durable: bounds how long the first
/// member waits behind the others.
const MAX_MEMBERS: usize = 256;

/// Where the group's outcome reaches a member's `commit()`.
type Waiter = oneshot::Sender<Result<()>>;

/// The writer's group state.
#[derive(Debug, Default)]
pub(crate) struct Group {
    /// Group commit is on (the pool's writer, when asked for).
    pub(crate) enabled: bool,
    /// The shared transaction is open.
    open: bool,
    /// The lease being served is a member (its savepoint is open).
    in_member: bool,
    /// Members so far in the open group.
    members: usize,
    /// Members that committed and wait for the group's COMMIT.
    waiters: Vec<Waiter>,
    /// Why the shared transaction ended inside a member, once it did.
    ended: Option<Option<Arc<Error>>>,
}

impl Group {
    pub(crate) fn new(enabled: bool) -> Group {
        Group {
            enabled,
            ..Group::default()
        }
    }

    /// Whether the open group should commit now rather than wait for the
    /// member queued next.
    pub(crate) fn is_full(&self) -> bool {
        self.members >= MAX_MEMBERS
    }

    pub(crate) fn is_open(&self) -> bool {
        self.open
    }

    pub(crate) fn in_member(&self) -> bool {
        self.in_member
    }

    /// The shared transaction ended inside a member (see
    /// `Worker::guarded_transaction_ended`): every member fails with `cause`.
    pub(crate) fn ended_by(&mut self, cause: Option<Arc<Error>>) {
        if self.open && self.ended.is_none() {
            self.ended = Some(cause);
        }
    }
}

impl Worker {
    /// A single write (`execute` through the pool) as a member of its own:
    /// in its savepoint inside the open group (opened for it if none is), and
    /// released into it. Its caller waits on the returned receiver for the
    /// group's COMMIT, so `execute` still returns only once the write is
    /// durable. A statement that fails undoes its savepoint only. Outside
    /// the group's reach (a lease, a transaction some `call` opened, group
    /// commit off) it runs as a plain `execute`.
    pub(crate) fn execute_in_group<P: Params + ?Sized>(
        &mut self,
        sql: &str,
        params: &P,
    ) -> Result<(usize, Option<oneshot::Receiver<Result<()>>>)> {
        if !self.group.enabled
            || self.in_lease()
            || (!self.group.open && !self.conn.is_autocommit())
        {
            return self.execute(sql, params).map(|n| (n, None));
        }
        self.group_begin()?;
        match self.execute(sql, params) {
            Ok(n) if !self.conn.is_autocommit() => Ok((n, Some(self.group_release()?))),
            // It ended the shared transaction itself (a COMMIT or ROLLBACK
            // in a trigger's stead cannot: only SQLite, which reported it
            // as an error): the group's check answers the others.
            Ok(n) => {
                self.group.in_member = false;
                Ok((n, None))
            }
            Err(e) => {
                self.group_rollback_member();
                Err(e)
            }
        }
    }

    /// Begins a member: opens the shared transaction if needed, then the
    /// member's savepoint.
    pub(crate) fn group_begin(&mut self) -> Result<()> {
        if !self.group.open {
            self.conn.execute_batch("BEGIN IMMEDIATE")?;
            self.group.open = true;
            // The group's transaction is a guard's: only its own COMMIT passes.
            self.shared.own_transaction();
        }
        self.conn.execute_batch(&format!("SAVEPOINT {SAVEPOINT}"))?;
        self.group.in_member = true;
        self.group.members += 1;
        Ok(())
    }

    /// Commits a member: its work joins the group; the receiver gets the
    /// group's outcome. If the release fails, the member is rolled back.
    pub(crate) fn group_release(&mut self) -> Result<oneshot::Receiver<Result<()>>> {
        self.group.in_member = false;
        if let Err(e) = self.conn.execute_batch(&format!("RELEASE {SAVEPOINT}")) {
            self.group.in_member = true;
            self.group_rollback_member();
            return Err(e.into());
        }
        let (waiter, outcome) = oneshot::channel();
        self.group.waiters.push(waiter);
        Ok(outcome)
    }

    /// Undoes the current member's work only; the group goes on.
    pub(crate) fn group_rollback_member(&mut self) {
        if !std::mem::take(&mut self.group.in_member) || self.conn.is_autocommit() {
            return;
        }
        let sql = format!("ROLLBACK TO {SAVEPOINT}; RELEASE {SAVEPOINT}");
        if let Err(e) = self.conn.execute_batch(&sql) {
            tracing::warn!(error = %e, "rolling back a group member failed");
        }
    }

    /// Notices a group whose transaction ended without its COMMIT (a member
    /// ran COMMIT or ROLLBACK itself, or an error rolled the whole
    /// transaction back): its waiting members are answered with an error.
    pub(crate) fn group_check(&mut self) {
        if self.group.open && self.conn.is_autocommit() {
            self.group.in_member = false;
            self.group_commit_now();
        }
    }

    /// Commits the open group and answers every waiting member.
    pub(crate) fn group_commit_now(&mut self) {
        if !std::mem::take(&mut self.group.open) {
            return;
        }
        self.group.members = 0;
        let waiters = std::mem::take(&mut self.group.waiters);
        let ended = self.group.ended.take();
        let members = waiters.len();
        let started = std::time::Instant::now();
        let outcome = if self.conn.is_autocommit() {
            // SQLite rolled the shared transaction back inside a member:
            // every member's work is gone, and every member hears why.
            Err(Error::RolledBack {
                cause: ended.flatten(),
            })
        } else {
            let shared = Arc::clone(&self.shared);
            match shared.guard_commit(|| self.conn.execute_batch("COMMIT")) {
                Ok(()) => Ok(()),
                Err(e) => {
                    self.rollback_if_open("the group's commit failed");
                    Err(Error::from(e))
                }
            }
        };
        // A group whose members all rolled back committed nothing (and
        // synced nothing): counting it would make the metrics' group size
        // lie to whoever reads them.
        if members > 0 {
            super::events::group_commit(members, started.elapsed(), self.slow_statement());
            self.shared.stats.group_commit(members as u64);
        }
        if !self.in_lease() {
            // (Inside a member's lease, the lease's end frees it.)
            self.shared.free_transaction();
        }
        if let Err(e) = &outcome {
            tracing::warn!(error = %e, members = waiters.len(), "group commit failed");
        }
        for waiter in waiters {
            let _ = waiter.send(match &outcome {
                Ok(()) => Ok(()),
                Err(e) => Err(e.duplicate()),
            });
        }
    }
}
