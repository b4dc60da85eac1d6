//! `dump()` of a large table keeps memory flat: its lines are streamed chunk
//! by chunk. Alone in its binary so no other test's allocations move the RSS
//! it measures.

mod common;

use aiolite::Connection;
use common::rss_kib;
use futures_util::StreamExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dumping_a_large_table_has_flat_memory() {
    const ROWS: usize = 400_000;
    let conn = Connection::open_in_memory().await.expect("open");
    // ~130 bytes per INSERT line: collected, the dump would take over 50 MiB.
    conn.execute_script(format!(
        "CREATE TABLE t(id INTEGER PRIMARY KEY, s TEXT);
         INSERT INTO t WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {ROWS})
         SELECT x, printf('%0100d', x) FROM c;"
    ))
    .await
    .expect("fill");
    let mut dump = conn.dump();
    let mut lines = 0usize;
    let mut bytes = 0usize;
    let mut baseline = None;
    let mut peak = 0;
    while let Some(line) = dump.next().await {
        let line = line.expect("line");
        bytes += line.len();
        lines += 1;
        if lines == 1000 {
            baseline = Some(rss_kib());
        }
        if lines.is_multiple_of(50_000) {
            peak = peak.max(rss_kib());
        }
    }
    assert_eq!(lines, ROWS + 3, "BEGIN, CREATE, the rows, COMMIT");
    assert!(bytes > 50 * 1024 * 1024, "{bytes} bytes of SQL");
    let growth = peak.saturating_sub(baseline.expect("baseline"));
    assert!(
        growth < 16 * 1024,
        "RSS grew by {growth} KiB while dumping {bytes} bytes"
    );
}
