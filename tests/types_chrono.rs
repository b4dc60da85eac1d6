//! chrono's types (`chrono` feature): stored as ISO 8601 / RFC 3339 text,
//! read back equal, and an offset text cannot keep refused.
#![cfg(feature = "chrono")]

use aiolite::prelude::*;
use aiolite::Connection;
use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};

async fn stored<T: Into<aiolite::sea_query::Value>>(db: &Connection, value: T) -> (String, String) {
    db.execute_script("DROP TABLE IF EXISTS t; CREATE TABLE t(x);")
        .await
        .expect("table");
    let mut insert = Query::insert();
    insert
        .into_table("t")
        .columns(["x"])
        .values([Expr::val(value)])
        .expect("values");
    db.query_execute(&insert).await.expect("insert");
    db.fetch_one_as("SELECT typeof(x), x FROM t", ())
        .await
        .expect("read")
}

#[tokio::test]
async fn dates_and_times_are_iso_text_and_read_back() {
    let db = Connection::open_in_memory().await.expect("open");
    let date = NaiveDate::from_ymd_opt(2024, 2, 29).expect("date");
    let time = NaiveTime::from_hms_micro_opt(23, 59, 58, 123_456).expect("time");
    let at = NaiveDateTime::new(date, time);
    let utc = Utc.from_utc_datetime(&at);
    let plus2 = FixedOffset::east_opt(2 * 3600)
        .expect("offset")
        .from_utc_datetime(&at);

    assert_eq!(
        stored(&db, date).await,
        ("text".into(), "2024-02-29".into())
    );
    let (class, text) = stored(&db, time).await;
    assert_eq!(
        (class.as_str(), text.starts_with("23:59:58.123456")),
        ("text", true)
    );
    let back: (NaiveTime,) = db.fetch_one_as("SELECT x FROM t", ()).await.expect("time");
    assert_eq!(back.0, time);

    stored(&db, at).await;
    let back: (NaiveDateTime,) = db.fetch_one_as("SELECT x FROM t", ()).await.expect("dt");
    assert_eq!(back.0, at);
    stored(&db, utc).await;
    let back: (DateTime<Utc>,) = db.fetch_one_as("SELECT x FROM t", ()).await.expect("utc");
    assert_eq!(back.0, utc);
    let (_, text) = stored(&db, plus2).await;
    assert!(text.ends_with("+02:00"), "the offset is kept: {text}");
    let back: (DateTime<FixedOffset>,) =
        db.fetch_one_as("SELECT x FROM t", ()).await.expect("fixed");
    assert_eq!((back.0, back.0.offset().local_minus_utc()), (plus2, 7200));
}

/// A model field (`Encode`) with an offset RFC 3339 text cannot keep is an
/// error, not an instant moved by the cut seconds.
#[test]
fn an_offset_with_seconds_is_refused_not_moved() {
    // Amsterdam's mean time until 1937: +00:19:32.
    let lmt = FixedOffset::east_opt(19 * 60 + 32).expect("offset");
    let at = lmt
        .with_ymd_and_hms(1930, 1, 1, 12, 0, 0)
        .single()
        .expect("time");
    let err = aiolite::Encode::encode(&at).expect_err("RFC 3339 cannot keep it");
    assert!(err.to_string().contains("has seconds"), "{err}");
    let whole = FixedOffset::east_opt(3600).expect("offset");
    assert!(aiolite::Encode::encode(
        &whole
            .with_ymd_and_hms(1930, 1, 1, 12, 0, 0)
            .single()
            .expect("time")
    )
    .is_ok());
}

#[tokio::test]
async fn text_that_is_not_a_date_is_a_decode_error() {
    let db = Connection::open_in_memory().await.expect("open");
    let err = db
        .fetch_one_as::<(NaiveDate,), _>("SELECT 'yesterday'", ())
        .await
        .expect_err("not a date");
    assert!(matches!(err, aiolite::Error::Decode { .. }), "{err:?}");
}
