//! `uuid::Uuid` (`uuid` feature): stored as a 16-byte BLOB; hyphenated TEXT
//! is read too.

use rusqlite::types::ValueRef;

use crate::decode::{via_from_sql, Decode, DecodeError};
use crate::encode::encode_copy;
use crate::from_row::single_value;

impl Decode for uuid::Uuid {
    /// A 16-byte `BLOB` (as written), or hyphenated `TEXT`.
    fn decode(value: ValueRef<'_>) -> std::result::Result<Self, DecodeError> {
        match value {
            ValueRef::Text(t) => std::str::from_utf8(t)
                .ok()
                .and_then(|s| uuid::Uuid::parse_str(s).ok())
                .ok_or_else(|| DecodeError::invalid(value, "not a UUID")),
            v => via_from_sql(v),
        }
    }
}

encode_copy!(uuid::Uuid => Uuid);

single_value!(uuid::Uuid);
