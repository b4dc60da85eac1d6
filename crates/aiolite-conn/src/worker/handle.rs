//! Exclusive use of the `sqlite3*` handle: the worker holds it while it runs
//! a request, a backup reading the connection holds it for one step. This is
//! the engine's side; the backup (`backup.rs`) uses it through [`with_both`],
//! [`HandleLock::pin`] and [`HandleLock::fill`].

use std::fmt;
use std::ptr;
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

use rusqlite::ffi;

/// Exclusive use of one connection's `sqlite3*`. Its worker holds it while it
/// runs a request; a backup reading from the connection holds it for one step.
/// Connections are opened `SQLITE_OPEN_NOMUTEX`, so SQLite itself does not
/// serialize two threads on one handle: this does.
#[derive(Default)]
pub(crate) struct HandleLock {
    state: Mutex<HandleState>,
    changed: Condvar,
    /// The handle, for a backup holding the lock; null once closing.
    pub(crate) db: AtomicPtr<ffi::sqlite3>,
}

#[derive(Default)]
struct HandleState {
    busy: bool,
    waiters: usize,
    /// Backups that have an `sqlite3_backup` object reading this handle.
    pins: usize,
    /// Backups writing into this handle.
    fills: usize,
    closed: bool,
}

impl fmt::Debug for HandleLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandleLock").finish_non_exhaustive()
    }
}

fn lock_state(m: &Mutex<HandleState>) -> MutexGuard<'_, HandleState> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl HandleLock {
    /// Records the handle once the connection is open.
    pub(crate) fn set(&self, conn: &rusqlite::Connection) {
        // SAFETY: only the pointer is copied. It is dereferenced (by SQLite)
        // only under this lock, and the worker clears it under the lock
        // before the handle is closed.
        #[allow(unsafe_code)]
        let db = unsafe { conn.handle() };
        self.db.store(db, Ordering::Release);
    }

    fn wait_until(&self, ready: impl Fn(&HandleState) -> bool) -> MutexGuard<'_, HandleState> {
        let mut st = lock_state(&self.state);
        while !ready(&st) {
            st.waiters += 1;
            st = self
                .changed
                .wait(st)
                .unwrap_or_else(PoisonError::into_inner);
            st.waiters -= 1;
        }
        st
    }

    pub(crate) fn acquire(&self) -> HandleGuard<'_> {
        let mut st = self.wait_until(|st| !st.busy);
        st.busy = true;
        HandleGuard { lock: self }
    }

    /// For closing: waits until no backup reads this handle, and refuses new
    /// ones from then on.
    pub(crate) fn acquire_for_close(&self) -> HandleGuard<'_> {
        let mut st = self.wait_until(|st| !st.busy && st.pins == 0);
        st.busy = true;
        st.closed = true;
        self.db.store(ptr::null_mut(), Ordering::Release);
        HandleGuard { lock: self }
    }

    fn release(&self) {
        let mut st = lock_state(&self.state);
        st.busy = false;
        if st.waiters > 0 {
            self.changed.notify_all();
        }
    }

    pub(crate) fn pinned(&self) -> bool {
        lock_state(&self.state).pins > 0
    }

    pub(crate) fn filling(&self) -> bool {
        lock_state(&self.state).fills > 0
    }

    /// Marks the handle as a backup's target until the guard is dropped.
    pub(crate) fn fill(&self) -> FillGuard<'_> {
        lock_state(&self.state).fills += 1;
        FillGuard { lock: self }
    }

    /// Keeps the handle open until the pin is dropped; `None` once closing.
    pub(crate) fn pin(&self) -> Option<PinGuard<'_>> {
        let mut st = lock_state(&self.state);
        if st.closed {
            return None;
        }
        st.pins += 1;
        Some(PinGuard { lock: self })
    }
}

pub(crate) struct HandleGuard<'a> {
    lock: &'a HandleLock,
}

impl Drop for HandleGuard<'_> {
    fn drop(&mut self) {
        self.lock.release();
    }
}

pub(crate) struct FillGuard<'a> {
    lock: &'a HandleLock,
}

impl Drop for FillGuard<'_> {
    fn drop(&mut self) {
        lock_state(&self.lock.state).fills -= 1;
    }
}

pub(crate) struct PinGuard<'a> {
    lock: &'a HandleLock,
}

impl Drop for PinGuard<'_> {
    fn drop(&mut self) {
        let mut st = lock_state(&self.lock.state);
        st.pins -= 1;
        if st.waiters > 0 {
            self.lock.changed.notify_all();
        }
    }
}

/// Runs `f` holding both handles. The target's worker gives up its own lock
/// first and takes the two in a fixed (address) order, so two backups running
/// in opposite directions cannot deadlock.
pub(crate) fn with_both<R>(own: &HandleLock, source: &HandleLock, f: impl FnOnce() -> R) -> R {
    own.release();
    let (first, second) = if ptr::from_ref(own) < ptr::from_ref(source) {
        (own, source)
    } else {
        (source, own)
    };
    let a = first.acquire();
    let b = second.acquire();
    let r = f();
    drop(b);
    drop(a);
    // The request's own guard (in `Worker::run`) releases it again.
    std::mem::forget(own.acquire());
    r
}
