//! `serialize` and `deserialize`: the database as one image.

mod common;
use aiolite::{Connection, Error};
use common::{foo_rows, foo_table, scalar};

#[tokio::test]
async fn serialize_and_deserialize() {
    let src = Connection::open_in_memory().await.expect("open");
    foo_table(&src).await;
    let image = src.serialize().await.expect("serialize");
    assert_eq!(&image[..16], b"SQLite format 3\0");

    let copy = Connection::open_in_memory().await.expect("open");
    copy.deserialize(image).await.expect("deserialize");
    assert_eq!(foo_rows(&copy).await, foo_rows(&src).await);
    copy.execute("INSERT INTO foo VALUES (3, 'writable')", ())
        .await
        .expect("the image is writable");

    let junk = Connection::open_in_memory().await.expect("open");
    junk.deserialize(b"definitely not a database, but long enough to look at".to_vec())
        .await
        .expect("accepted as bytes");
    let err = junk
        .execute("SELECT * FROM sqlite_master", ())
        .await
        .expect_err("not a database");
    assert!(err.to_string().contains("not a database"), "{err}");

    let err = copy.deserialize(Vec::new()).await.expect_err("empty image");
    assert!(matches!(err, Error::Misuse(_)), "{err:?}");
    let empty = Connection::open_in_memory().await.expect("open");
    let image = empty
        .serialize()
        .await
        .expect("serialize an empty database");
    copy.deserialize(image).await.expect("an empty database");
    assert_eq!(scalar(&copy, "SELECT count(*) FROM sqlite_master").await, 0);
}
