//! Incremental BLOB I/O (`blob_open`).

mod common;
use aiolite::{Connection, Error};
use common::scalar;

#[tokio::test]
async fn blob_io() {
    let conn = Connection::open_in_memory().await.expect("open");
    conn.execute_script(
        "CREATE TABLE files(id INTEGER PRIMARY KEY, data BLOB);
         INSERT INTO files VALUES (1, zeroblob(1024)), (2, x'0102030405');",
    )
    .await
    .expect("setup");
    let mut blob = conn
        .blob_open("files", "data", 1, false)
        .await
        .expect("open");
    assert_eq!(blob.len(), 1024);
    blob.write_at(1000, b"hello".to_vec()).await.expect("write");
    assert_eq!(blob.read_at(998, 8).await.expect("read"), b"\0\0hello\0");
    let err = blob
        .write_at(1022, b"too long".to_vec())
        .await
        .expect_err("does not grow");
    assert!(matches!(err, Error::Misuse(_)), "{err:?}");
    assert!(
        blob.read_at(usize::MAX, 2).await.is_err(),
        "overflowing range"
    );

    blob.reopen(2).await.expect("reopen");
    assert_eq!(blob.len(), 5);
    assert_eq!(blob.read_at(0, 5).await.expect("read"), [1, 2, 3, 4, 5]);
    assert!(blob.reopen(99).await.is_err(), "no such row");
    blob.close().await.expect("close");

    let stored: Vec<u8> = conn
        .fetch_one("SELECT substr(data, 1001, 5) FROM files WHERE id = 1", ())
        .await
        .expect("select")
        .get(0)
        .expect("bytes");
    assert_eq!(stored, b"hello");

    let read_only = conn
        .blob_open("files", "data", 2, true)
        .await
        .expect("open");
    let err = read_only
        .write_at(0, vec![9])
        .await
        .expect_err("read-only handle");
    assert!(
        err.to_string().contains("readonly") || err.to_string().contains("read-only"),
        "{err}"
    );
    // Changing the row expires the handle.
    conn.execute("UPDATE files SET data = x'00' WHERE id = 2", ())
        .await
        .expect("update");
    assert!(read_only.read_at(0, 1).await.is_err(), "expired handle");
    drop(read_only);
    assert!(conn.blob_open("files", "nope", 1, true).await.is_err());
    assert!(conn.blob_open("files", "data", 42, true).await.is_err());
    assert_eq!(scalar(&conn, "SELECT count(*) FROM files").await, 2);
}
