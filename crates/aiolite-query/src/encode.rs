//! Value-level encoding: one Rust value into one bound parameter.

use sea_query::Value;

use crate::Result;

/// A Rust type that is written as one SQLite value: the field types of a
/// [`Model`](crate::Model). Values become sea-query [`Value`]s and are always
/// bound as parameters, never spliced into SQL text.
///
/// Implement it for your own field types (with [`Decode`](crate::Decode)):
///
/// ```
/// use aiolite_query::Encode;
/// use aiolite_query::sea_query::Value;
///
/// struct Cents(i64);
///
/// impl Encode for Cents {
///     fn encode(&self) -> aiolite_query::Result<Value> {
///         self.0.encode()
///     }
///     fn null() -> Value {
///         i64::null()
///     }
/// }
/// ```
pub trait Encode {
    /// The value to bind.
    ///
    /// # Errors
    /// A value that cannot be represented (a JSON serializer that fails);
    /// reported as an [`ErrorKind::Interface`](crate::ErrorKind::Interface)
    /// error before anything is written.
    fn encode(&self) -> Result<Value>;

    /// A typed `NULL` of this type, for `Option::None`.
    fn null() -> Value
    where
        Self: Sized;
}

impl<T: Encode + ?Sized> Encode for &T {
    fn encode(&self) -> Result<Value> {
        (**self).encode()
    }

    fn null() -> Value {
        // `&T` with `T: ?Sized` has no `T::null`; every SQLite NULL binds the same.
        Value::String(None)
    }
}

impl<T: Encode> Encode for Option<T> {
    fn encode(&self) -> Result<Value> {
        match self {
            Some(v) => v.encode(),
            None => Ok(T::null()),
        }
    }

    fn null() -> Value {
        T::null()
    }
}

macro_rules! encode_copy {
    ($($t:ty => $variant:ident),* $(,)?) => {$(
        impl $crate::Encode for $t {
            fn encode(&self) -> $crate::Result<::sea_query::Value> {
                Ok(::sea_query::Value::$variant(Some(*self)))
            }
            fn null() -> ::sea_query::Value {
                ::sea_query::Value::$variant(None)
            }
        }
    )*};
}

#[cfg(any(feature = "chrono", feature = "uuid"))]
pub(crate) use encode_copy;

encode_copy!(
    bool => Bool,
    i8 => TinyInt,
    i16 => SmallInt,
    i32 => Int,
    i64 => BigInt,
    u8 => TinyUnsigned,
    u16 => SmallUnsigned,
    u32 => Unsigned,
    // Bound through rusqlite's `fallible_uint`: above i64::MAX is an error
    // when bound, never a wrapped negative.
    u64 => BigUnsigned,
    f32 => Float,
    f64 => Double,
);

impl Encode for String {
    fn encode(&self) -> Result<Value> {
        Ok(Value::String(Some(self.clone())))
    }
    fn null() -> Value {
        Value::String(None)
    }
}

impl Encode for str {
    fn encode(&self) -> Result<Value> {
        Ok(Value::String(Some(self.to_owned())))
    }
}

impl Encode for Vec<u8> {
    fn encode(&self) -> Result<Value> {
        Ok(Value::Bytes(Some(self.clone())))
    }
    fn null() -> Value {
        Value::Bytes(None)
    }
}

impl Encode for [u8] {
    fn encode(&self) -> Result<Value> {
        Ok(Value::Bytes(Some(self.to_vec())))
    }
}

impl Encode for rusqlite::types::Value {
    fn encode(&self) -> Result<Value> {
        use rusqlite::types::Value as V;
        match self {
            V::Null => Ok(Value::String(None)),
            V::Integer(i) => i.encode(),
            V::Real(f) => f.encode(),
            V::Text(s) => s.encode(),
            V::Blob(b) => b.encode(),
        }
    }
    fn null() -> Value {
        Value::String(None)
    }
}
