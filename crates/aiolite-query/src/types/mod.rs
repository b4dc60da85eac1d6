//! The types a cargo feature brings, one file per feature (rusqlite's and
//! sqlx's layout): how each is stored, read back, and read as a whole row.

#[cfg(feature = "chrono")]
mod chrono;
#[cfg(feature = "serde_json")]
pub(crate) mod json;
#[cfg(feature = "uuid")]
mod uuid;
