//! Read batches: point reads queued together are answered inside one read
//! transaction (one snapshot, one lock acquisition) instead of one each.

use super::*;

/// The most requests one read batch answers: the snapshot they share stays
/// young, and a checkpoint waits on it for at most this many point reads.
pub(super) const MAX_READ_BATCH: usize = 64;

impl Worker {
    /// Whether a read batch may open a transaction now: none is open, and
    /// no parked cursor or open blob could be hurt by the batch's COMMIT (or
    /// the ROLLBACK that follows a failed one).
    pub(super) fn may_batch_reads(&self) -> bool {
        self.conn.is_autocommit() && self.cursors.is_empty() && self.blobs.is_empty()
    }

    /// Runs `job` and then the reads queued behind it inside one read
    /// transaction: one lock of the WAL snapshot, one check of the file, and a
    /// warm page cache for all of them, instead of one each.
    ///
    /// Each answer is still one a lone request could have got: every request
    /// in the batch was queued before the batch's snapshot was taken (the
    /// batch takes at most the requests queued when it begins, and the
    /// snapshot is taken by its first read), and is answered after, so the
    /// snapshot's moment lies within each one's wait. A request that turns
    /// out to write ends the batch before its statement runs (see
    /// [`Worker::prepare`]). Returns the first message that is not a read,
    /// for the caller to serve next.
    pub(super) fn run_read_batch(
        &mut self,
        id: u64,
        span: Span,
        job: Job,
        rx: &mut mpsc::Receiver<Message>,
    ) -> Option<Message> {
        let queued = rx.len().min(MAX_READ_BATCH);
        let began = self.holding_handle(|w| w.conn.execute_batch("BEGIN DEFERRED").is_ok());
        if !began {
            // An authorizer that refuses transactions, say: no batch.
            self.run(id, span, job);
            return None;
        }
        self.read_batch.set(true);
        self.run(id, span, job);
        let mut answered = 1;
        let mut next = None;
        for _ in 0..queued {
            if !self.read_batch.get() || self.lease.is_some() {
                break;
            }
            match rx.try_recv() {
                Ok(Message::Run {
                    id,
                    span,
                    job,
                    kind: Kind::Read,
                }) => {
                    self.run(id, span, job);
                    answered += 1;
                }
                Ok(other) => {
                    next = Some(other);
                    break;
                }
                Err(_) => break,
            }
        }
        self.holding_handle(|w| w.end_read_batch());
        self.shared.stats.read_batch(answered);
        next
    }

    /// Ends a read batch: COMMIT of what only read, or ROLLBACK if that fails.
    pub(super) fn end_read_batch(&self) {
        if self.read_batch.replace(false) && !self.conn.is_autocommit() {
            if let Err(e) = self.conn.execute_batch("COMMIT") {
                tracing::debug!(error = %e, "ending a read batch");
                self.rollback_if_open("a read batch could not commit");
            }
        }
    }
}
