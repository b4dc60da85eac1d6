//! Retrying `SQLITE_BUSY` on the paths SQLite's busy handler does not cover.

use std::time::{Duration, Instant};

use crate::error::Result;

/// Retries `f` while it fails with SQLITE_BUSY or SQLITE_LOCKED, for up to
/// `timeout`. Some paths return BUSY without calling the busy handler:
/// switching a fresh file to WAL, or WAL recovery, while another process
/// holds the lock. Several processes opening one new file at once hit them.
pub(crate) fn retry_busy<T>(timeout: Duration, mut f: impl FnMut() -> Result<T>) -> Result<T> {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(1);
    loop {
        match f() {
            Err(e) if e.is_busy() && Instant::now() < deadline => {
                crate::metrics::busy_retried();
                tracing::debug!(
                    error = %e,
                    pause_ms = pause.as_millis() as u64,
                    "SQLITE_BUSY where SQLite's busy handler does not wait: retrying"
                );
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            other => return other,
        }
    }
}
