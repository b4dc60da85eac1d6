//! sea-query values bound as rusqlite parameters.
//!
//! This is aiolite's own binder, not sea-query-rusqlite: that crate pins one
//! rusqlite minor version per release, and its latest (0.8) held the whole
//! workspace on rusqlite 0.38 and so on SQLite 3.51.1, whose WAL-reset bug can
//! corrupt a pooled database. Binding a value is one `match`; owning it lets
//! rusqlite move on with SQLite.
//!
//! The stored forms, listed on [`SqlValues`](crate::SqlValues), are exactly
//! those sea-query-rusqlite 0.8 gave, so rows written before and after the
//! switch compare equal; the tests below pin each one.
//!
//! The chrono, uuid and JSON forms are rusqlite's own `ToSql` impls, which
//! sea-query-rusqlite also called: one definition of each form.

use rusqlite::types::{Null, ToSqlOutput, ValueRef};
use rusqlite::ToSql;
use sea_query::{OptionEnum, Value};

/// One sea-query [`Value`] as a rusqlite parameter.
#[derive(Debug)]
pub(crate) struct Bound<'a>(pub(crate) &'a Value);

/// `Some(v)` bound through `v`'s own `ToSql`, `None` as NULL.
fn opt<T: ToSql>(v: &Option<T>) -> rusqlite::Result<ToSqlOutput<'_>> {
    match v {
        Some(v) => v.to_sql(),
        None => Ok(ToSqlOutput::Borrowed(ValueRef::Null)),
    }
}

fn conversion(e: impl std::error::Error + Send + Sync + 'static) -> rusqlite::Error {
    rusqlite::Error::ToSqlConversionFailure(Box::new(e))
}

impl ToSql for Bound<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        match self.0 {
            Value::Bool(v) => opt(v),
            Value::TinyInt(v) => opt(v),
            Value::SmallInt(v) => opt(v),
            Value::Int(v) => opt(v),
            Value::BigInt(v) => opt(v),
            Value::TinyUnsigned(v) => opt(v),
            Value::SmallUnsigned(v) => opt(v),
            Value::Unsigned(v) => opt(v),
            Value::BigUnsigned(None) => Null.to_sql(),
            Value::BigUnsigned(Some(v)) => i64::try_from(*v)
                .map(ToSqlOutput::from)
                .map_err(conversion),
            Value::Float(v) => opt(v),
            Value::Double(v) => opt(v),
            Value::String(v) => match v {
                Some(s) => Ok(ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes()))),
                None => Null.to_sql(),
            },
            Value::Char(v) => match v {
                Some(c) => Ok(ToSqlOutput::from(c.to_string())),
                None => Null.to_sql(),
            },
            Value::Enum(v) => match v {
                OptionEnum::Some(e) => Ok(ToSqlOutput::Borrowed(ValueRef::Text(e.value.as_bytes()))),
                OptionEnum::None(_) => Null.to_sql(),
            },
            Value::Bytes(v) => match v {
                Some(b) => Ok(ToSqlOutput::Borrowed(ValueRef::Blob(b))),
                None => Null.to_sql(),
            },
            #[cfg(feature = "chrono")]
            Value::ChronoDate(v) => opt(v),
            #[cfg(feature = "chrono")]
            Value::ChronoTime(v) => opt(v),
            #[cfg(feature = "chrono")]
            Value::ChronoDateTime(v) => opt(v),
            #[cfg(feature = "chrono")]
            Value::ChronoDateTimeUtc(v) => opt(v),
            #[cfg(feature = "chrono")]
            Value::ChronoDateTimeLocal(v) => opt(v),
            #[cfg(feature = "chrono")]
            Value::ChronoDateTimeWithTimeZone(v) => opt(v),
            #[cfg(feature = "uuid")]
            Value::Uuid(v) => opt(v),
            #[cfg(feature = "serde_json")]
            Value::Json(v) => match v {
                Some(j) => j.as_ref().to_sql(),
                None => Null.to_sql(),
            },
            // sea-query's other value kinds (time, jiff, decimals, network
            // addresses, arrays) exist only when another crate in the build
            // turns on their sea-query feature. aiolite has no stored form for
            // them, so they fail when bound instead of guessing one.
            #[allow(unreachable_patterns)]
            other => Err(rusqlite::Error::ToSqlConversionFailure(
                format!(
                    "aiolite cannot bind the sea-query value {other:?}: its type has no SQLite form here; convert it to a string, number or blob first"
                )
                .into(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Bound;
    use rusqlite::types::Value as Stored;
    use rusqlite::Connection;
    use sea_query::Value;

    /// What SQLite stores for `v`: its value and `typeof()`.
    fn stored(v: Value) -> rusqlite::Result<(Stored, String)> {
        let conn = Connection::open_in_memory()?;
        conn.query_row("SELECT ?1, typeof(?1)", [Bound(&v)], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
    }

    fn check(v: Value, want: Stored, kind: &str) {
        let (got, got_kind) = stored(v.clone()).expect("bind");
        assert_eq!((&got, got_kind.as_str()), (&want, kind), "{v:?}");
    }

    #[test]
    fn bool_is_integer_0_or_1() {
        check(Value::Bool(Some(true)), Stored::Integer(1), "integer");
        check(Value::Bool(Some(false)), Stored::Integer(0), "integer");
        check(Value::Bool(None), Stored::Null, "null");
    }

    #[test]
    fn signed_integers_are_integers() {
        check(
            Value::TinyInt(Some(i8::MIN)),
            Stored::Integer(-128),
            "integer",
        );
        check(
            Value::SmallInt(Some(i16::MAX)),
            Stored::Integer(32767),
            "integer",
        );
        check(
            Value::Int(Some(i32::MIN)),
            Stored::Integer(i32::MIN.into()),
            "integer",
        );
        check(
            Value::BigInt(Some(i64::MIN)),
            Stored::Integer(i64::MIN),
            "integer",
        );
        check(Value::BigInt(None), Stored::Null, "null");
    }

    #[test]
    fn small_unsigned_integers_are_integers() {
        check(
            Value::TinyUnsigned(Some(255)),
            Stored::Integer(255),
            "integer",
        );
        check(
            Value::SmallUnsigned(Some(u16::MAX)),
            Stored::Integer(65535),
            "integer",
        );
        check(
            Value::Unsigned(Some(u32::MAX)),
            Stored::Integer(u32::MAX.into()),
            "integer",
        );
    }

    #[test]
    fn u64_is_an_integer_up_to_i64_max_and_an_error_above() {
        check(
            Value::BigUnsigned(Some(i64::MAX as u64)),
            Stored::Integer(i64::MAX),
            "integer",
        );
        check(Value::BigUnsigned(None), Stored::Null, "null");
        let err = stored(Value::BigUnsigned(Some(i64::MAX as u64 + 1))).expect_err("overflow");
        assert!(
            matches!(err, rusqlite::Error::ToSqlConversionFailure(_)),
            "{err:?}"
        );
    }

    #[test]
    fn floats_are_reals() {
        check(Value::Float(Some(1.5)), Stored::Real(1.5), "real");
        check(Value::Double(Some(-0.1)), Stored::Real(-0.1), "real");
        check(Value::Double(None), Stored::Null, "null");
    }

    #[test]
    fn text_kinds_are_text() {
        check(
            Value::String(Some("it's".into())),
            Stored::Text("it's".into()),
            "text",
        );
        check(Value::String(None), Stored::Null, "null");
        check(Value::Char(Some('é')), Stored::Text("é".into()), "text");
        check(Value::Char(None), Stored::Null, "null");
    }

    #[test]
    fn an_enum_is_its_text() {
        let e = sea_query::Value::Enum(sea_query::OptionEnum::Some(Box::new(sea_query::Enum {
            type_name: "status".into(),
            value: "active".into(),
        })));
        check(e, Stored::Text("active".into()), "text");
    }

    #[test]
    fn bytes_are_a_blob() {
        check(
            Value::Bytes(Some(vec![0, 1, 255])),
            Stored::Blob(vec![0, 1, 255]),
            "blob",
        );
        check(Value::Bytes(None), Stored::Null, "null");
    }

    #[cfg(feature = "uuid")]
    #[test]
    fn a_uuid_is_a_16_byte_blob() {
        let id = uuid::Uuid::from_u128(0x0102_0304_0506_0708_090a_0b0c_0d0e_0f10);
        check(
            Value::Uuid(Some(id)),
            Stored::Blob(id.as_bytes().to_vec()),
            "blob",
        );
        check(Value::Uuid(None), Stored::Null, "null");
    }

    #[cfg(feature = "chrono")]
    #[test]
    fn dates_and_times_are_todays_text() {
        use chrono::{FixedOffset, NaiveDate, TimeZone, Utc};
        let date = NaiveDate::from_ymd_opt(2024, 2, 29).expect("date");
        let time = chrono::NaiveTime::from_hms_milli_opt(23, 59, 58, 125).expect("time");
        let dt = date.and_time(time);
        check(
            Value::ChronoDate(Some(date)),
            Stored::Text("2024-02-29".into()),
            "text",
        );
        check(
            Value::ChronoTime(Some(time)),
            Stored::Text("23:59:58.125".into()),
            "text",
        );
        check(
            Value::ChronoDateTime(Some(dt)),
            Stored::Text("2024-02-29 23:59:58.125".into()),
            "text",
        );
        check(
            Value::ChronoDateTimeUtc(Some(Utc.from_utc_datetime(&dt))),
            Stored::Text("2024-02-29 23:59:58.125+00:00".into()),
            "text",
        );
        let plus_two = FixedOffset::east_opt(2 * 3600).expect("offset");
        check(
            Value::ChronoDateTimeWithTimeZone(Some(
                plus_two.from_local_datetime(&dt).single().expect("local"),
            )),
            Stored::Text("2024-02-29 23:59:58.125+02:00".into()),
            "text",
        );
        let local = chrono::Local.from_utc_datetime(&dt);
        let (text, kind) = stored(Value::ChronoDateTimeLocal(Some(local))).expect("bind");
        assert_eq!(kind, "text");
        assert_eq!(
            text,
            Stored::Text(local.format("%F %T%.f%:z").to_string()),
            "local time keeps its offset"
        );
        check(Value::ChronoDate(None), Stored::Null, "null");
    }

    #[cfg(feature = "serde_json")]
    #[test]
    fn json_numbers_stay_numbers_and_the_rest_is_json_text() {
        use serde_json::json;
        let j = |v: serde_json::Value| Value::Json(Some(Box::new(v)));
        check(
            j(json!({"a": [1, "x"]})),
            Stored::Text(r#"{"a":[1,"x"]}"#.into()),
            "text",
        );
        check(j(json!("s")), Stored::Text(r#""s""#.into()), "text");
        check(j(json!(true)), Stored::Text("true".into()), "text");
        check(j(json!(7)), Stored::Integer(7), "integer");
        check(j(json!(0.5)), Stored::Real(0.5), "real");
        check(j(json!(null)), Stored::Null, "null");
        check(Value::Json(None), Stored::Null, "null");
    }
}
