//! chrono's date and time types (`chrono` feature): stored as ISO 8601 /
//! RFC 3339 text, as rusqlite writes and reads them.

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use rusqlite::types::ValueRef;
use sea_query::Value;

use crate::decode::{via_from_sql, Decode, DecodeError};
use crate::encode::{encode_copy, Encode};
use crate::from_row::single_value;
use crate::Result;

macro_rules! chrono_decode {
    ($($t:ty),*) => {$(
        /// ISO 8601 text, as rusqlite writes and reads it.
        impl Decode for $t {
            fn decode(value: ValueRef<'_>) -> std::result::Result<Self, DecodeError> {
                via_from_sql(value)
            }
        }
    )*};
}

chrono_decode!(
    NaiveDate,
    NaiveTime,
    NaiveDateTime,
    DateTime<Utc>,
    DateTime<FixedOffset>
);

encode_copy!(
    NaiveDate => ChronoDate,
    NaiveTime => ChronoTime,
    NaiveDateTime => ChronoDateTime,
    DateTime<Utc> => ChronoDateTimeUtc,
);

impl Encode for DateTime<FixedOffset> {
    /// RFC 3339 text keeps the offset to the minute: an offset with
    /// seconds (historic local mean times) would be cut and the instant
    /// moved, so it is refused instead.
    fn encode(&self) -> Result<Value> {
        let offset = self.offset().local_minus_utc();
        if offset % 60 != 0 {
            return Err(crate::Error::Rusqlite(
                rusqlite::Error::ToSqlConversionFailure(
                    format!(
                        "the UTC offset {offset} s has seconds, which RFC 3339 text cannot keep; convert the time to whole-minute offset or UTC first"
                    )
                    .into(),
                ),
            ));
        }
        Ok(Value::ChronoDateTimeWithTimeZone(Some(*self)))
    }
    fn null() -> Value {
        Value::ChronoDateTimeWithTimeZone(None)
    }
}

single_value!(
    NaiveDate,
    NaiveTime,
    NaiveDateTime,
    DateTime<Utc>,
    DateTime<FixedOffset>,
);
