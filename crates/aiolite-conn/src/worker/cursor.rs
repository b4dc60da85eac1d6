//! What a request leaves open for the next ones: a stream's statement parked
//! between chunks, and an open blob handle. Each has one owner at a time (see
//! the module doc of `worker`); the chunks a stream reads grow from
//! `iter_chunk_size` rows while they stay small.

use rusqlite::blob::Blob as RawBlob;
use self_cell::self_cell;

use super::*;

self_cell!(
    /// A blob handle kept open between requests, with the connection alias
    /// it was opened on.
    pub(crate) struct OpenBlob {
        owner: Rc<rusqlite::Connection>,
        #[covariant]
        dependent: RawBlob,
    }
);

pub(super) struct Parked {
    pub(super) cursor: Cursor,
    /// Taken after the first step (see [`read_block`]); `None` until then.
    pub(super) columns: Option<Columns>,
    /// Rows in the next chunk (see [`Worker::fetch_cursor`]).
    pub(super) rows: usize,
    /// The lease it was opened in, if any: it is finalized when that lease
    /// ends (a stream opened in a transaction ends with it).
    pub(super) lease: Option<u64>,
    /// When its snapshot was taken (its first step).
    pub(super) opened: Instant,
    /// Logged as old already.
    pub(super) warned: bool,
    /// Its SQL and the rows it gave so far, for its close's event.
    pub(super) sql: Box<str>,
    pub(super) delivered: u64,
}

/// A stream's chunks double from `iter_chunk_size` rows up to this many, while
/// a chunk takes less than [`GROW_BELOW`] bytes. Every chunk is a round trip
/// and a hand-over between two threads; a long scan in chunks of 64 rows pays
/// that every few microseconds.
pub(super) const MAX_CHUNK_ROWS: usize = 4096;

/// A chunk that takes this much memory stops the growth: memory stays bounded
/// by a few chunks of this size, whatever the rows hold.
pub(super) const GROW_BELOW: usize = 256 * 1024;

/// A chunk of a stream's items; `cursor` is `None` once the result is exhausted.
pub(crate) struct Chunk<T> {
    pub(crate) rows: Vec<T>,
    pub(crate) cursor: Option<u64>,
}

/// How a stream turns the rows of one chunk into its items, on the worker.
/// The reader travels with each fetch request and back with its chunk, so a
/// decoder keeps its state (resolved column indexes) across chunks without
/// the worker storing anything typed.
pub(crate) trait ReadChunk: Send + 'static {
    type Item: Send + 'static;

    /// Reads up to `max` rows; `true` once the result is exhausted.
    fn read(
        &mut self,
        rows: &mut rusqlite::Rows<'_>,
        max: usize,
        columns: &mut Option<Columns>,
    ) -> Result<(Vec<Self::Item>, bool)>;

    /// About how much memory the last chunk read takes.
    fn footprint(&self) -> usize;
}

/// Owned [`Row`]s, in blocks.
#[derive(Default)]
pub(crate) struct RowBlocks {
    /// Text and blob bytes per row in the last chunk, to size the next.
    payload_per_row: usize,
    footprint: usize,
}

impl ReadChunk for RowBlocks {
    type Item = Row;

    fn read(
        &mut self,
        rows: &mut rusqlite::Rows<'_>,
        max: usize,
        columns: &mut Option<Columns>,
    ) -> Result<(Vec<Row>, bool)> {
        let (block, done) = read_block(
            rows,
            max,
            max.min(MAX_CHUNK_ROWS),
            columns,
            columns_of,
            self.payload_per_row,
        )?;
        let Some(block) = block else {
            self.footprint = 0;
            return Ok((Vec::new(), done));
        };
        self.payload_per_row = block.payload() / block.len().max(1);
        self.footprint = block.footprint();
        Ok((block.finish(), done))
    }

    fn footprint(&self) -> usize {
        self.footprint
    }
}

/// Values from a [`RowDecoder`].
pub(crate) struct Decoded<D> {
    decoder: D,
    footprint: usize,
}

impl<D> Decoded<D> {
    pub(crate) fn new(decoder: D) -> Decoded<D> {
        Decoded {
            decoder,
            footprint: 0,
        }
    }
}

impl<D: RowDecoder> ReadChunk for Decoded<D> {
    type Item = D::Output;

    fn read(
        &mut self,
        rows: &mut rusqlite::Rows<'_>,
        max: usize,
        _: &mut Option<Columns>,
    ) -> Result<(Vec<D::Output>, bool)> {
        let mut out = Vec::with_capacity(max.min(MAX_CHUNK_ROWS));
        // What the decoded values hold on the heap is out of sight; the
        // first row's text and blob bytes stand in for every row's.
        let mut per_row = std::mem::size_of::<D::Output>();
        let mut done = false;
        while out.len() < max {
            match rows.next()? {
                Some(row) => {
                    if out.is_empty() {
                        per_row += payload_of(row);
                    }
                    out.push(self.decoder.decode(row)?);
                }
                None => {
                    done = true;
                    break;
                }
            }
        }
        self.footprint = per_row * out.len();
        Ok((out, done))
    }

    fn footprint(&self) -> usize {
        self.footprint
    }
}

/// The bytes of text and blobs in a row.
pub(super) fn payload_of(row: &rusqlite::Row<'_>) -> usize {
    (0..row.as_ref().column_count())
        .map(|i| match row.get_ref(i) {
            Ok(ValueRef::Text(b) | ValueRef::Blob(b)) => b.len(),
            _ => 0,
        })
        .sum()
}

/// Reads up to `max` rows into one block; `true` once the result is exhausted.
/// The columns are taken (unless given) from the statement after its first
/// step, when a statement prepared against an older schema has been re-prepared.
pub(super) fn read_rows(
    rows: &mut rusqlite::Rows<'_>,
    max: usize,
    columns: &mut Option<Columns>,
    columns_for: impl FnMut(&Statement<'_>) -> Columns,
) -> Result<(Vec<Row>, bool)> {
    // No size hint: room for a few rows, grown as they come. Room for
    // `MAX_CHUNK_ROWS` (a stream's largest chunk) made every `fetch_all`
    // allocate 4,096 rows' cells, and keep them for as long as a row lived.
    let (block, done) = read_block(rows, max, max.min(FIRST_ROWS), columns, columns_for, 0)?;
    Ok((block.map_or_else(Vec::new, RowsBuilder::finish), done))
}

/// The first row, if any (`fetch_optional`, `fetch_one`).
pub(super) fn read_first_row(
    rows: &mut rusqlite::Rows<'_>,
    columns_for: impl FnMut(&Statement<'_>) -> Columns,
) -> Result<Option<Row>> {
    let (block, _) = read_block(rows, 1, 1, &mut None, columns_for, 0)?;
    Ok(block.and_then(RowsBuilder::finish_first))
}

/// Rows a block without a size hint has room for at first.
const FIRST_ROWS: usize = 16;

/// Up to `max` rows into one block (`None` when there were none), sized for
/// `capacity` rows of `payload_per_row` bytes of text and blobs each; `true`
/// once the result is exhausted.
pub(super) fn read_block(
    rows: &mut rusqlite::Rows<'_>,
    max: usize,
    capacity: usize,
    columns: &mut Option<Columns>,
    mut columns_for: impl FnMut(&Statement<'_>) -> Columns,
    payload_per_row: usize,
) -> Result<(Option<RowsBuilder>, bool)> {
    let mut out: Option<RowsBuilder> = None;
    while out.as_ref().map_or(0, RowsBuilder::len) < max {
        let Some(row) = rows.next()? else {
            return Ok((out, true));
        };
        let builder = out.get_or_insert_with(|| {
            RowsBuilder::with_capacity(
                Arc::clone(columns.get_or_insert_with(|| columns_for(row.as_ref()))),
                capacity,
                capacity * payload_per_row,
            )
        });
        builder.push(row)?;
    }
    Ok((out, false))
}

impl Worker {
    /// Keeps a blob handle open for its `Blob`; its id comes from the same
    /// space as the parked statements' (one counter per worker).
    pub(crate) fn park_blob(&mut self, blob: OpenBlob) -> u64 {
        let id = self.next_resource_id();
        self.blobs.insert(id, blob);
        id
    }

    /// The blob handle parked under `id`, if it is still open.
    pub(crate) fn parked_blob(&mut self, id: u64) -> Option<&mut OpenBlob> {
        self.blobs.get_mut(&id)
    }

    /// The next id for something parked on this worker: a statement or a
    /// blob handle.
    fn next_resource_id(&mut self) -> u64 {
        self.next_parked_id += 1;
        self.next_parked_id
    }

    /// Starts a stream: the first chunk, and the statement parked for the rest.
    pub(crate) fn open_cursor<R: ReadChunk + ?Sized>(
        &mut self,
        sql: &str,
        params: &dyn Params,
        reader: &mut R,
    ) -> Result<Chunk<R::Item>> {
        check_sql(sql)?;
        let mut columns = None;
        let mut readonly = true;
        let cursor = Cursor::try_new(Rc::clone(&self.alias), |conn| {
            let mut stmt = conn.prepare(sql).map_err(|e| Error::with_sql(e, sql))?;
            readonly = stmt.readonly();
            params.bind(&mut stmt).map_err(|e| e.attach_sql(sql))?;
            // No columns yet: a fresh statement is compiled against this
            // connection's copy of the schema, which is stale when another
            // connection has changed it since; the first step notices and
            // re-prepares. Taken before it, a column another connection had
            // added went missing from every row.
            StatementRows::try_new(MutBorrow::new(stmt), |s| {
                Ok::<_, Error>(s.borrow_mut().raw_query())
            })
        })?;
        if !readonly {
            // A writing statement (INSERT ... RETURNING) runs to the end now, on
            // the main connection, so it is committed before the caller sees a
            // row, and no write is left parked half-done.
            drop(cursor);
            let (rows, _) = self.query(sql, params, |rows| {
                reader.read(rows, usize::MAX, &mut columns)
            })?;
            return Ok(Chunk { rows, cursor: None });
        }
        let id = self.next_resource_id();
        self.cursors.insert(
            id,
            Parked {
                cursor,
                columns,
                rows: self.chunk_size,
                lease: self.serving.as_ref().map(|s| s.generation),
                opened: Instant::now(),
                warned: false,
                sql: sql.into(),
                delivered: 0,
            },
        );
        events::stream_opened(sql);
        if let Some(limit) = self.snapshot_limit {
            // An idle worker must still stop it on time.
            timer::wake_at(Instant::now() + limit, self.wake_self.clone());
        }
        self.fetch_cursor(id, reader)
    }

    /// The next chunk of a parked stream.
    ///
    /// Ownership: between requests the map holds the statement, for the one
    /// handle the caller's side holds (`Held`); while this request reads
    /// from it, the statement is out of the map, owned by this frame, so a
    /// reader that panics (a decoder) or fails finalizes it as the frame
    /// unwinds or returns. It goes back only when rows remain, for the new
    /// handle the answer carries.
    pub(crate) fn fetch_cursor<R: ReadChunk + ?Sized>(
        &mut self,
        id: u64,
        reader: &mut R,
    ) -> Result<Chunk<R::Item>> {
        if let (Some(age), Some(limit)) = (self.expired.remove(&id), self.snapshot_limit) {
            return Err(Error::SnapshotTooOld { age, limit });
        }
        // Not reachable through a stream, which stops at its end, at its
        // transaction's end and at a stopped snapshot before it asks again.
        let mut parked = self.cursors.remove(&id).ok_or_else(|| {
            Error::Misuse("the stream's statement was already finalized".to_owned())
        })?;
        if let Some(limit) = self.snapshot_limit {
            let age = parked.opened.elapsed();
            if age > limit {
                return Err(Error::SnapshotTooOld { age, limit });
            }
        }
        let max = parked.rows;
        let columns = &mut parked.columns;
        let result = parked.cursor.with_dependent_mut(|_, rows| {
            rows.with_dependent_mut(|_, rows| reader.read(rows, max, columns))
        });
        if reader.footprint() < GROW_BELOW {
            parked.rows = (max * 2).min(MAX_CHUNK_ROWS).max(self.chunk_size);
        }
        let (rows, exhausted) = result?;
        parked.delivered += rows.len() as u64;
        if exhausted {
            events::stream_closed(
                &parked.sql,
                parked.delivered,
                parked.opened.elapsed(),
                "read to the end",
            );
            return Ok(Chunk { rows, cursor: None });
        }
        self.cursors.insert(id, parked);
        Ok(Chunk {
            rows,
            cursor: Some(id),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A worker on `opts`, used from this thread.
    fn worker(opts: &ConnectOptions) -> Worker {
        Worker::open(
            opts,
            Arc::new(Shared::default()),
            mpsc::channel(1).0.downgrade(),
        )
        .expect("open")
    }

    /// The lengths of a stream's chunks over `sql`, read through `reader`.
    fn chunk_lengths<R: ReadChunk>(w: &mut Worker, sql: &str, mut reader: R) -> Vec<usize> {
        let mut chunk = w.open_cursor(sql, &(), &mut reader).expect("open");
        let mut lengths = vec![chunk.rows.len()];
        while let Some(id) = chunk.cursor {
            chunk = w.fetch_cursor(id, &mut reader).expect("fetch");
            lengths.push(chunk.rows.len());
        }
        lengths
    }

    /// A fetch has no size hint: its block starts small and grows, where it
    /// used to take room for a stream's largest chunk (4,096 rows), and keep
    /// it for as long as one of its rows was held.
    #[test]
    fn a_fetch_takes_room_for_its_rows_not_for_a_chunk() {
        let w = worker(&ConnectOptions::in_memory());
        w.conn
            .execute_batch(
                "CREATE TABLE t(id INTEGER PRIMARY KEY, a TEXT, b TEXT, c INT, d TEXT);
                 WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000)
                 INSERT INTO t SELECT i, 'alice', 'alice@example.com', i, '2024-01-01' FROM n;",
            )
            .expect("fill");
        let one = w
            .fetch_all("SELECT * FROM t WHERE id = 1", &())
            .expect("one");
        assert_eq!(one.len(), 1);
        let (cells, bytes) = one[0].block_capacity();
        assert!(cells <= 16 * 5, "{cells} cells for one row of 5");
        assert!(bytes <= 256, "{bytes} bytes for one row of 31");
        let row = w
            .fetch_optional("SELECT * FROM t WHERE id = 2", &())
            .expect("optional")
            .expect("a row");
        assert_eq!(row.block_capacity(), (5, 256));
        let all = w.fetch_all("SELECT * FROM t", &()).expect("all");
        assert_eq!(all.len(), 1000);
        assert_eq!(all[999].get::<_, i64>(3).expect("c"), 1000);
        assert_eq!(
            all[999].get::<_, String>(2).expect("b"),
            "alice@example.com"
        );
        let (cells, _) = all[0].block_capacity();
        assert!(cells < 2 * 5 * 1000, "{cells} cells for 1,000 rows of 5");
    }

    #[test]
    fn chunks_grow_until_they_are_big() {
        let mut w = worker(&ConnectOptions::in_memory().iter_chunk_size(4));
        w.conn
            .execute_batch(
                "CREATE TABLE small(x); CREATE TABLE big(b);
                 WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20000)
                 INSERT INTO small SELECT i FROM n;
                 WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 42)
                 INSERT INTO big SELECT zeroblob(100000) FROM n;",
            )
            .expect("fill");

        // Small rows: doubling from 4 up to the cap, then the rest.
        let mut expected: Vec<usize> = (2..=12).map(|p| 1 << p).collect();
        let mut left = 20000 - expected.iter().sum::<usize>();
        while left > 0 {
            expected.push(left.min(MAX_CHUNK_ROWS));
            left -= left.min(MAX_CHUNK_ROWS);
        }
        assert_eq!(
            chunk_lengths(&mut w, "SELECT x FROM small", RowBlocks::default()),
            expected
        );

        // 100 kB rows: a chunk of 4 passes GROW_BELOW, so it grows no more.
        let expected = [4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 2];
        assert_eq!(
            chunk_lengths(&mut w, "SELECT b FROM big", RowBlocks::default()),
            expected
        );
        let blob_len = |row: &rusqlite::Row<'_>| Ok(row.get::<_, Vec<u8>>(0)?.len());
        assert_eq!(
            chunk_lengths(&mut w, "SELECT b FROM big", Decoded::new(blob_len)),
            expected
        );
        let mut w1 = worker(&ConnectOptions::in_memory().iter_chunk_size(1));
        w1.conn
            .execute_batch(
                "CREATE TABLE big(b);
                 WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 12)
                 INSERT INTO big SELECT zeroblob(100000) FROM n;",
            )
            .expect("fill");
        assert_eq!(
            chunk_lengths(&mut w1, "SELECT b FROM big", RowBlocks::default()),
            [1, 2, 4, 4, 1]
        );
    }
}
