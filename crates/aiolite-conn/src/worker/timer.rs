//! Wake-ups at a deadline, for workers that would otherwise sleep through
//! one (a stream's snapshot age limit on an idle connection).
//!
//! One thread for the process, started on first use; it holds only weak
//! senders, so it never keeps a worker alive.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::Instant;

use tokio::sync::mpsc as queue;

use super::Message;

struct Alarm {
    at: Instant,
    wake: queue::WeakSender<Message>,
}

impl PartialEq for Alarm {
    fn eq(&self, other: &Self) -> bool {
        self.at == other.at
    }
}
impl Eq for Alarm {}
impl PartialOrd for Alarm {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Alarm {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.at.cmp(&other.at)
    }
}

fn alarms() -> Option<&'static Mutex<mpsc::Sender<Alarm>>> {
    static ALARMS: OnceLock<Option<Mutex<mpsc::Sender<Alarm>>>> = OnceLock::new();
    ALARMS
        .get_or_init(|| {
            let (tx, rx) = mpsc::channel::<Alarm>();
            std::thread::Builder::new()
                .name("aiolite-timer".to_owned())
                .spawn(move || ring(&rx))
                .ok()
                .map(|_| Mutex::new(tx))
        })
        .as_ref()
}

/// The timer thread: sends `Wake` to each alarm's queue at its time.
fn ring(rx: &mpsc::Receiver<Alarm>) {
    let mut due: BinaryHeap<Reverse<Alarm>> = BinaryHeap::new();
    loop {
        let next = match due.peek() {
            Some(Reverse(a)) => rx.recv_timeout(a.at.saturating_duration_since(Instant::now())),
            None => rx.recv().map_err(|_| mpsc::RecvTimeoutError::Disconnected),
        };
        match next {
            Ok(alarm) => due.push(Reverse(alarm)),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        }
        let now = Instant::now();
        while due.peek().is_some_and(|Reverse(a)| a.at <= now) {
            if let Some(Reverse(alarm)) = due.pop() {
                if let Some(wake) = alarm.wake.upgrade() {
                    let _ = wake.try_send(Message::Wake);
                }
            }
        }
    }
}

/// Sends `Message::Wake` to `wake`'s queue at `at` (if the queue still
/// exists). Best effort: if the timer thread cannot be started, the worker
/// notices at its next message instead.
pub(crate) fn wake_at(at: Instant, wake: queue::WeakSender<Message>) {
    if let Some(alarms) = alarms() {
        let _ = alarms
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .send(Alarm { at, wake });
    }
}
