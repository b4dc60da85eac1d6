//! [`RowDecoder`]: rows turned into values on the worker thread, the hook the
//! typed layer builds on (aiolite-query's `decode` is the per-value side).

use crate::error::Result;

/// Turns rows into values **on the worker thread**, so only the finished
/// values cross to the caller. It is `FnMut`-like: it can keep state between
/// the rows of one statement (a typed decoder resolves column names to
/// indexes once, on the first row).
///
/// Any `FnMut(&rusqlite::Row) -> aiolite::Result<T>` closure is a decoder.
///
/// ```
/// # async fn demo(conn: aiolite_conn::Connection) -> aiolite_conn::Result<()> {
/// let names: Vec<String> = conn
///     .fetch_all_with("SELECT name FROM users", (), |row: &aiolite_conn::rusqlite::Row<'_>| {
///         Ok(row.get::<_, String>(0)?.to_uppercase())
///     })
///     .await?;
/// # Ok(()) }
/// ```
pub trait RowDecoder: Send + 'static {
    /// What one row becomes.
    type Output: Send + 'static;

    /// Decodes one row. Called on the worker thread, in row order.
    ///
    /// # Errors
    /// Whatever keeps the row from becoming an `Output`; the fetch fails with it.
    fn decode(&mut self, row: &rusqlite::Row<'_>) -> Result<Self::Output>;
}

impl<T, F> RowDecoder for F
where
    F: FnMut(&rusqlite::Row<'_>) -> Result<T> + Send + 'static,
    T: Send + 'static,
{
    type Output = T;

    fn decode(&mut self, row: &rusqlite::Row<'_>) -> Result<T> {
        self(row)
    }
}
