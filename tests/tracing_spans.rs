//! Each request runs inside its caller's span on the worker thread: the
//! statement events land in the request that caused them.

mod common;

use std::time::Duration;

use aiolite::ConnectOptions;
use common::Captured;
use tracing::Instrument;

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

    let text = captured.text();
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
