//! `uuid::Uuid` (`uuid` feature): a 16-byte BLOB, read back equal; the
//! hyphenated text form is read too.
#![cfg(feature = "uuid")]

use aiolite::prelude::*;
use aiolite::Connection;

#[tokio::test]
async fn a_uuid_is_a_16_byte_blob_and_text_reads_too() {
    let db = Connection::open_in_memory().await.expect("open");
    db.execute_script("CREATE TABLE t(x);")
        .await
        .expect("table");
    let id = uuid::Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);
    let mut insert = Query::insert();
    insert
        .into_table("t")
        .columns(["x"])
        .values([Expr::val(id)])
        .expect("values");
    db.query_execute(&insert).await.expect("insert");
    let (class, len): (String, i64) = db
        .fetch_one_as("SELECT typeof(x), length(x) FROM t", ())
        .await
        .expect("stored");
    assert_eq!((class.as_str(), len), ("blob", 16));
    let back: (uuid::Uuid,) = db.fetch_one_as("SELECT x FROM t", ()).await.expect("read");
    assert_eq!(back.0, id);
    let text: (uuid::Uuid,) = db
        .fetch_one_as(format!("SELECT '{}'", id.hyphenated()), ())
        .await
        .expect("text");
    assert_eq!(text.0, id);
    let err = db
        .fetch_one_as::<(uuid::Uuid,), _>("SELECT 'not-a-uuid'", ())
        .await
        .expect_err("bad text");
    assert!(err.to_string().contains("not a UUID"), "{err}");
    let err = db
        .fetch_one_as::<(uuid::Uuid,), _>("SELECT x'0102'", ())
        .await
        .expect_err("2 bytes");
    assert!(matches!(err, aiolite::Error::Decode { .. }), "{err:?}");
}
