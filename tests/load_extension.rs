//! Loading extensions: off by default, behind the `load_extension` feature.

mod common;
use aiolite::Connection;

#[cfg(feature = "load_extension")]
#[tokio::test]
#[allow(unsafe_code)]
async fn enable_load_extension() {
    let conn = Connection::open_in_memory().await.expect("open");
    // SAFETY: no library is loaded: the paths below do not exist.
    let refused = unsafe { conn.load_extension("./no-such-extension", None) }.await;
    let err = refused.expect_err("not enabled");
    assert!(err.to_string().contains("not authorized"), "{err}");

    // SAFETY: as above; loading stays enabled only for this test connection.
    unsafe { conn.enable_load_extension(true) }
        .await
        .expect("enable");
    // SAFETY: as above.
    let missing = unsafe { conn.load_extension("./no-such-extension", None) }.await;
    let err = missing.expect_err("no such library");
    assert!(!err.to_string().contains("not authorized"), "{err}");
    // SAFETY: disabling is always sound.
    unsafe { conn.enable_load_extension(false) }
        .await
        .expect("disable");
}
