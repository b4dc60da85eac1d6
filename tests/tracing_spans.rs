//! Each request runs inside its caller's span on the worker thread: the
//! statement events land in the request that caused them.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aiolite::ConnectOptions;
use tracing::Instrument;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn statement_events_carry_the_callers_span() {
    let captured = Captured::default();
    let writer = captured.clone();
    // Global: the events are emitted on the worker thread, not this one.
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_thread_names(true)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();

    let conn = ConnectOptions::in_memory()
        .log_slow_statements(Duration::ZERO)
        .open()
        .await
        .expect("open");
    conn.execute("CREATE TABLE t(x)", ())
        .instrument(tracing::info_span!("handler", request_id = 42))
        .await
        .expect("create");
    conn.fetch_all("SELECT x FROM t", ())
        .instrument(tracing::info_span!("other", request_id = 7))
        .await
        .expect("select");

    let text = String::from_utf8(captured.0.lock().expect("lock").clone()).expect("utf-8");
    let line_with = |needle: &str| {
        text.lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no line with {needle:?} in:\n{text}"))
            .to_owned()
    };
    let create = line_with("CREATE TABLE t(x)");
    assert!(create.contains("handler{request_id=42}"), "{create}");
    assert!(
        create.contains("aiolite-conn-"),
        "logged on the worker: {create}"
    );
    assert!(
        create.contains("WARN") && create.contains("slow statement"),
        "{create}"
    );
    let select = line_with("SELECT x FROM t");
    assert!(select.contains("other{request_id=7}"), "{select}");
    assert!(
        !select.contains("handler"),
        "a span leaked into the next request: {select}"
    );
}
