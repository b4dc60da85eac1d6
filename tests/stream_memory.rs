//! A 1,000,000-row stream keeps memory flat, and the connection keeps serving
//! other queries while it is open. Alone in its binary so no other test's
//! allocations move the RSS it measures.

mod common;

use aiolite::Connection;
use common::rss_kib;
use futures_util::StreamExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn million_row_stream_has_flat_memory() {
    const ROWS: i64 = 1_000_000;
    let conn = Connection::open_in_memory().await.expect("open");
    // Each row carries ~100 bytes of text: materialized, the result would take
    // well over 100 MiB.
    let sql = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1000000) \
               SELECT x, printf('%0100d', x) FROM c";
    let mut stream = conn.stream(sql, ());
    let first = stream.next().await.expect("row").expect("ok");
    assert_eq!(first.get::<_, i64>(0).expect("int"), 1);
    let baseline = rss_kib();
    let mut peak = baseline;
    let mut count = 1i64;
    let mut sum = 1i64;
    while let Some(row) = stream.next().await {
        let row = row.expect("row");
        let x: i64 = row.get(0).expect("x");
        let text: String = row.get(1).expect("text");
        assert_eq!(text.len(), 100);
        sum += x;
        count += 1;
        if count % 100_000 == 0 {
            peak = peak.max(rss_kib());
            // Other requests on the same connection complete mid-stream.
            let n: i64 = conn
                .fetch_one("SELECT ?", (count,))
                .await
                .expect("query while streaming")
                .get(0)
                .expect("int");
            assert_eq!(n, count);
        }
    }
    assert_eq!(count, ROWS);
    assert_eq!(sum, ROWS * (ROWS + 1) / 2);
    let growth_kib = peak.saturating_sub(baseline);
    assert!(
        growth_kib < 16 * 1024,
        "RSS grew by {growth_kib} KiB while streaming {ROWS} rows"
    );
}
