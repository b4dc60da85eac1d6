//! How callers and workers wait for each other: a short spin before parking,
//! where it pays (an idle worker polling its queue, a caller polling for the
//! answer to a point query), bounded process-wide so that spinners never take
//! the cores the busy threads need.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

/// How long an idle worker polls its queue before it parks. A caller that
/// awaits one request after another sends the next within microseconds of
/// being answered; catching it here saves a futex wake-up of the worker on
/// every request (and on every chunk of a stream).
const SPIN: Duration = Duration::from_micros(50);

/// Workers spinning right now, process-wide. Spinning burns a core: with many
/// workers (a pool) on few cores, spinners would steal the CPU the busy
/// workers need, so at most half the cores (at least one) spin at a time and
/// the other idle workers park at once.
static SPINNING: AtomicUsize = AtomicUsize::new(0);

/// How long a caller whose request went to an empty queue polls for the
/// answer before it parks its task. A point query takes a few microseconds on
/// the worker; parking instead costs a futex wake-up of a runtime thread
/// (tens of microseconds) on every request.
const CALLER_SPIN: Duration = Duration::from_micros(25);

/// Requests sent to any worker and not yet finished, process-wide: spinning
/// pays only while the program waits on nothing but one request. When other
/// requests are in flight, the core a spinner would burn is the one their
/// workers and callers need.
static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);

/// One request in flight; counted from [`InFlight::start`] until dropped:
/// just before its answer is sent, or with its message when it is skipped or
/// discarded. Dropped before the answer, so a caller that sends its next
/// request the moment it is answered finds itself alone in flight.
#[derive(Debug)]
pub(crate) struct InFlight(());

impl InFlight {
    /// Counts a new request; also returns how many are in flight with it.
    pub(crate) fn start() -> (InFlight, usize) {
        let n = IN_FLIGHT.fetch_add(1, Ordering::AcqRel) + 1;
        (InFlight(()), n)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        IN_FLIGHT.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Whether a caller may spin on the runtime thread it is polled on: when
/// the runtime has fewer tasks than threads, no task waits for this one's
/// thread (a current-thread runtime spins only under `block_on`).
pub(crate) fn runtime_has_room() -> bool {
    tokio::runtime::Handle::try_current().map_or(true, |h| {
        let m = h.metrics();
        m.num_alive_tasks() < m.num_workers()
    })
}

/// Callers spinning right now, process-wide: one at a time, so a runtime
/// thread that spins never stands in for more than one core's worth of
/// waiting, and a busy program (many requests in flight, deep queues) does
/// not spin at all.
static CALLERS_SPINNING: AtomicUsize = AtomicUsize::new(0);

/// Polls `ready` for up to [`CALLER_SPIN`], when no other caller spins.
pub(crate) fn spin_for<T>(mut ready: impl FnMut() -> Option<T>) -> Option<T> {
    if CALLERS_SPINNING
        .compare_exchange(0, 1, Ordering::AcqRel, Ordering::Relaxed)
        .is_err()
    {
        return None;
    }
    let found = poll_for(CALLER_SPIN, &mut ready);
    CALLERS_SPINNING.store(0, Ordering::Release);
    found
}

/// Calls `ready` until it answers or `limit` has passed, pausing the core
/// briefly between calls. Never inlined: benches/callgrind.sh subtracts the
/// instructions spent here (they grow with wall time, not with work).
#[inline(never)]
fn poll_for<T>(limit: Duration, mut ready: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = ready() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        for _ in 0..16 {
            std::hint::spin_loop();
        }
    }
}

fn spin_slots() -> usize {
    static SLOTS: OnceLock<usize> = OnceLock::new();
    *SLOTS.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1)))
}

/// The next message: at once if queued, else after a short spin (when a
/// spin slot is free and, unless `eager`, no other request is in flight),
/// else parked. `None` once every sender is gone and the queue is drained.
pub(crate) fn next_message<T>(rx: &mut mpsc::Receiver<T>, eager: bool) -> Option<T> {
    use mpsc::error::TryRecvError;
    match rx.try_recv() {
        Ok(m) => return Some(m),
        Err(TryRecvError::Disconnected) => return None,
        Err(TryRecvError::Empty) => {}
    }
    if eager || IN_FLIGHT.load(Ordering::Acquire) == 0 {
        let spinning = SPINNING.fetch_add(1, Ordering::AcqRel) < spin_slots();
        let found = if spinning { spin_on(rx) } else { None };
        SPINNING.fetch_sub(1, Ordering::AcqRel);
        if found.is_some() {
            return found;
        }
    }
    rx.blocking_recv()
}

/// Polls the queue for up to [`SPIN`]; `None` if nothing came (or every
/// sender is gone, which the blocking receive that follows reports).
fn spin_on<T>(rx: &mut mpsc::Receiver<T>) -> Option<T> {
    poll_for(SPIN, || match rx.try_recv() {
        Ok(m) => Some(Some(m)),
        Err(mpsc::error::TryRecvError::Disconnected) => Some(None),
        Err(mpsc::error::TryRecvError::Empty) => None,
    })
    .flatten()
}
