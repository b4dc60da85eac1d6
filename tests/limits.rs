//! Run-time limits (`limit`, `set_limit`).

mod common;
use aiolite::{Connection, Limit};

#[tokio::test]
async fn limits() {
    let conn = Connection::open_in_memory().await.expect("open");
    let before = conn
        .set_limit(Limit::SQLITE_LIMIT_LENGTH, 100)
        .await
        .expect("set");
    assert!(before > 100);
    assert_eq!(
        conn.limit(Limit::SQLITE_LIMIT_LENGTH).await.expect("get"),
        100
    );
    let err = conn
        .execute("SELECT zeroblob(1000)", ())
        .await
        .expect_err("over the limit");
    assert!(err.to_string().contains("too big"), "{err}");
    conn.set_limit(Limit::SQLITE_LIMIT_LENGTH, before)
        .await
        .expect("restore");
    conn.execute("SELECT zeroblob(1000)", ())
        .await
        .expect("fits");
}
