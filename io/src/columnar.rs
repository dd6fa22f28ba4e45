//! Parquet and Arrow IPC inputs, checked against their own size before a reader trusts them.
//!
//! Both readers size some allocations from the file's metadata: arrow-ipc's file reader
//! allocates each block's declared length, and the Parquet reader each column chunk's declared
//! byte range, before reading a byte of it. A damaged or hostile file of a few hundred bytes can
//! so ask for gigabytes (fuzzing found both: `docs/FUZZING.md`). Here every declared range is
//! checked against the file's length first, so a reader never allocates more than the file
//! holds; the readers' panics on damaged data become errors ([`turnscore::input::guarded`]); and
//! a record batch is turned into rows a bounded slice at a time ([`BatchRows`]), so a batch that
//! declares billions of rows of null columns costs no more memory than one of a thousand.

use anyhow::{bail, Context, Result};
use arrow_array::RecordBatch;
use arrow_schema::ArrowError;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use parquet::file::metadata::ParquetMetaData;
use parquet::file::reader::ChunkReader;
use std::io::{Read, Seek, SeekFrom};
use turnscore::input::{guarded, rows_from_batch, ReadOptions, Row};

/// The magic that opens and closes an Arrow IPC file.
const ARROW_MAGIC: &[u8; 6] = b"ARROW1";

/// Checks an Arrow IPC file's footer against the file's length: the footer fits, and every
/// record-batch and dictionary block it lists lies inside the file, before the footer.
///
/// # Errors
/// Names the first block (or the footer) that does not fit.
pub fn check_arrow_file<R: Read + Seek>(r: &mut R, len: u64) -> Result<()> {
    // "ARROW1", 2 bytes of padding, ..., footer, footer length (i32), "ARROW1".
    if len < 18 {
        bail!("an Arrow IPC file of {len} bytes is too short to hold its footer");
    }
    let mut trailer = [0u8; 10];
    r.seek(SeekFrom::Start(len - 10))?;
    r.read_exact(&mut trailer)?;
    if &trailer[4..] != ARROW_MAGIC {
        bail!("the Arrow IPC file does not end with ARROW1 (truncated?)");
    }
    let footer_len = i32::from_le_bytes([trailer[0], trailer[1], trailer[2], trailer[3]]);
    let room = len - 10 - 8;
    let footer_len = u64::try_from(footer_len).ok().filter(|&n| n <= room).with_context(|| {
        format!("the Arrow IPC footer declares {footer_len} bytes; the file has room for {room}")
    })?;
    let footer_start = len - 10 - footer_len;
    let mut footer = vec![0u8; footer_len as usize];
    r.seek(SeekFrom::Start(footer_start))?;
    r.read_exact(&mut footer)?;
    let footer = arrow_ipc::root_as_footer(&footer)
        .map_err(|e| anyhow::anyhow!("the Arrow IPC footer is damaged: {e}"))?;
    let kinds = [("record batch", footer.recordBatches()), ("dictionary", footer.dictionaries())];
    for (kind, blocks) in kinds {
        for (i, b) in blocks.into_iter().flatten().enumerate() {
            let end = u64::try_from(b.offset()).ok().and_then(|o| {
                let meta = u64::try_from(b.metaDataLength()).ok()?;
                let body = u64::try_from(b.bodyLength()).ok()?;
                o.checked_add(meta)?.checked_add(body)
            });
            match end {
                Some(end) if end <= footer_start => {}
                _ => bail!(
                    "Arrow IPC {kind} block {i} declares offset {}, metadata {} and body {} \
                     bytes: past the {footer_start} bytes before the footer",
                    b.offset(),
                    b.metaDataLength(),
                    b.bodyLength()
                ),
            }
        }
    }
    Ok(())
}

/// Opens an Arrow IPC file (file format) after [`check_arrow_file`].
///
/// # Errors
/// The file is damaged or its footer declares more than it holds; the message names `name`.
pub fn open_arrow_file<R: Read + Seek>(
    mut r: R,
    len: u64,
    name: &str,
) -> Result<arrow_ipc::reader::FileReader<R>> {
    check_arrow_file(&mut r, len)
        .with_context(|| format!("{name}: not a readable Arrow IPC file"))?;
    r.seek(SeekFrom::Start(0))?;
    guarded(name, || arrow_ipc::reader::FileReader::try_new(r, None))?
        .with_context(|| format!("{name}: not an Arrow IPC file"))
}

/// Opens an Arrow IPC stream. arrow-ipc's stream reader grows each message body as its bytes
/// arrive (at most 64 MiB ahead of them), so a stream needs no length to be safe.
///
/// # Errors
/// The stream's schema message is damaged; the message names `name`.
pub fn open_arrow_stream<R: Read>(r: R, name: &str) -> Result<arrow_ipc::reader::StreamReader<R>> {
    guarded(name, || arrow_ipc::reader::StreamReader::try_new(r, None))?
        .with_context(|| format!("{name}: not an Arrow IPC stream or file"))
}

/// Checks a Parquet file's metadata against the file's length: every column chunk's byte range
/// lies inside the file, and no size or count is negative.
///
/// # Errors
/// Names the first row group and column that do not fit.
pub fn check_parquet(meta: &ParquetMetaData, len: u64) -> Result<()> {
    for (g, rg) in meta.row_groups().iter().enumerate() {
        if rg.num_rows() < 0 {
            bail!("Parquet row group {g} declares {} rows", rg.num_rows());
        }
        for (c, col) in rg.columns().iter().enumerate() {
            let (start, n) = col.byte_range();
            let fits = start.checked_add(n).is_some_and(|end| end <= len);
            if !fits || col.compressed_size() < 0 || col.uncompressed_size() < 0 {
                bail!(
                    "Parquet row group {g}, column {c} ({}) declares {n} bytes at offset {start}: \
                     past the end of the {len}-byte file",
                    col.column_path()
                );
            }
        }
    }
    Ok(())
}

/// Opens a Parquet file after [`check_parquet`], reading batches of `batch_rows` rows.
///
/// # Errors
/// The file is damaged or declares more than it holds; the message names `name`.
pub fn open_parquet<T: ChunkReader + 'static>(
    r: T,
    batch_rows: usize,
    name: &str,
) -> Result<ParquetRecordBatchReader> {
    let len = r.len();
    let b = guarded(name, || ParquetRecordBatchReaderBuilder::try_new(r))?
        .with_context(|| format!("{name}: not a Parquet file"))?;
    check_parquet(b.metadata(), len)
        .with_context(|| format!("{name}: not a readable Parquet file"))?;
    let b = b.with_batch_size(batch_rows.max(1));
    guarded(name, || b.build())?.with_context(|| format!("{name}: cannot read Parquet"))
}

/// Record batches turned into rows at most `max` at a time: a batch is sliced (without copying)
/// rather than converted whole, so memory stays bounded by `max` rows whatever a batch declares.
pub struct BatchRows<I> {
    batches: I,
    current: Option<(RecordBatch, usize)>,
    /// The 1-based number of the next row (for messages naming a row).
    next_row: u64,
    name: String,
    opts: ReadOptions,
}

impl<I: Iterator<Item = Result<RecordBatch, ArrowError>>> BatchRows<I> {
    /// Rows of `batches`, read with `opts`; `name` names the input in messages.
    pub fn new(batches: I, name: &str, opts: ReadOptions) -> Self {
        BatchRows { batches, current: None, next_row: 1, name: name.to_owned(), opts }
    }

    /// Up to `max` more rows; empty at the end of the input.
    ///
    /// # Errors
    /// A batch cannot be read, or its columns are not usable (named, with the input's name).
    pub fn next_rows(&mut self, max: usize) -> Result<Vec<Row>> {
        let max = max.max(1);
        loop {
            if let Some((b, off)) = &mut self.current {
                if *off < b.num_rows() {
                    let n = max.min(b.num_rows() - *off);
                    let slice = b.slice(*off, n);
                    let rows = rows_from_batch(&slice, self.next_row, &self.opts)
                        .with_context(|| format!("input {}", self.name))?;
                    *off += n;
                    self.next_row += n as u64;
                    return Ok(rows);
                }
                self.current = None;
            }
            // The readers have panicked on damaged files (found by fuzzing): that is an error
            // naming the input, and the input is not read further.
            match guarded(&self.name, || self.batches.next())? {
                None => return Ok(Vec::new()),
                Some(b) => {
                    let b = b.with_context(|| format!("cannot read {}", self.name))?;
                    self.current = Some((b, 0));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{ArrayRef, NullArray, StringArray};
    use std::io::Cursor;
    use std::sync::Arc;

    fn batch(rows: usize) -> RecordBatch {
        let ids: Vec<String> = (0..rows).map(|i| format!("r{i}")).collect();
        let texts: Vec<&str> = (0..rows).map(|_| "hello there").collect();
        RecordBatch::try_from_iter([
            ("id", Arc::new(StringArray::from(ids)) as ArrayRef),
            ("text", Arc::new(StringArray::from(texts)) as ArrayRef),
        ])
        .unwrap()
    }

    fn arrow_file(b: &RecordBatch) -> Vec<u8> {
        let mut out = Vec::new();
        let mut w = arrow_ipc::writer::FileWriter::try_new(&mut out, &b.schema()).unwrap();
        w.write(b).unwrap();
        w.finish().unwrap();
        drop(w);
        out
    }

    #[test]
    fn a_good_arrow_file_passes_and_reads() {
        let bytes = arrow_file(&batch(5));
        let len = bytes.len() as u64;
        let r = open_arrow_file(Cursor::new(bytes), len, "t.arrow").unwrap();
        let mut rows = BatchRows::new(r, "t.arrow", ReadOptions::default());
        assert_eq!(rows.next_rows(100).unwrap().len(), 5);
        assert!(rows.next_rows(100).unwrap().is_empty());
    }

    /// A footer whose block declares a body far past the file is refused before any reader
    /// allocates it (arrow-ipc would allocate the declared length).
    #[test]
    fn an_arrow_block_past_the_end_is_refused() {
        let bytes = arrow_file(&batch(3));
        let len = bytes.len();
        let footer_len = i32::from_le_bytes(bytes[len - 10..len - 6].try_into().unwrap()) as usize;
        let footer = &bytes[len - 10 - footer_len..len - 10];
        let parsed = arrow_ipc::root_as_footer(footer).unwrap();
        let block = parsed.recordBatches().unwrap().get(0);
        // The block's body length sits in the footer as a little-endian i64; find it and make
        // it 5 GB.
        let body = block.bodyLength().to_le_bytes();
        let at = footer.windows(8).position(|w| w == body).unwrap() + len - 10 - footer_len;
        let mut bad = bytes.clone();
        bad[at..at + 8].copy_from_slice(&5_000_000_000i64.to_le_bytes());
        let err = open_arrow_file(Cursor::new(bad), len as u64, "bad.arrow").unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("bad.arrow") && msg.contains("record batch block 0"), "{msg}");
        assert!(msg.contains("5000000000"), "{msg}");
    }

    #[test]
    fn an_arrow_footer_longer_than_the_file_is_refused() {
        let mut bytes = arrow_file(&batch(2));
        let len = bytes.len();
        bytes[len - 10..len - 6].copy_from_slice(&i32::MAX.to_le_bytes());
        let err = open_arrow_file(Cursor::new(bytes), len as u64, "f.arrow").unwrap_err();
        assert!(format!("{err:#}").contains("footer declares 2147483647 bytes"), "{err:#}");
        let err = check_arrow_file(&mut Cursor::new(b"ARROW1".to_vec()), 6).unwrap_err();
        assert!(err.to_string().contains("too short"), "{err}");
    }

    /// A batch that declares many rows of null columns is converted a slice at a time: each
    /// call returns at most `max` rows, and every row is accounted for.
    #[test]
    fn a_huge_batch_is_turned_into_rows_a_slice_at_a_time() {
        let n = 10_000;
        let b = RecordBatch::try_from_iter([
            ("id", Arc::new(NullArray::new(n)) as ArrayRef),
            ("text", Arc::new(NullArray::new(n)) as ArrayRef),
        ])
        .unwrap();
        let mut rows = BatchRows::new(std::iter::once(Ok(b)), "n.arrow", ReadOptions::default());
        let mut total = 0;
        loop {
            let got = rows.next_rows(256).unwrap();
            if got.is_empty() {
                break;
            }
            assert!(got.len() <= 256);
            total += got.len();
        }
        assert_eq!(total, n);
    }

    fn parquet_file(b: &RecordBatch) -> Vec<u8> {
        let mut out = Vec::new();
        let mut w = parquet::arrow::ArrowWriter::try_new(&mut out, b.schema(), None).unwrap();
        w.write(b).unwrap();
        w.close().unwrap();
        out
    }

    #[test]
    fn a_good_parquet_file_passes_and_reads() {
        let bytes = bytes::Bytes::from(parquet_file(&batch(7)));
        let r = open_parquet(bytes, 3, "t.parquet").unwrap();
        let mut rows = BatchRows::new(r, "t.parquet", ReadOptions::default());
        let mut total = 0;
        while let Ok(got) = rows.next_rows(100) {
            if got.is_empty() {
                break;
            }
            total += got.len();
        }
        assert_eq!(total, 7);
    }

    /// The metadata of a real file, checked against a shorter length, names the column chunk
    /// that does not fit (the Parquet reader would allocate the declared range).
    #[test]
    fn a_parquet_column_chunk_past_the_end_is_refused() {
        let bytes = bytes::Bytes::from(parquet_file(&batch(7)));
        let b = ParquetRecordBatchReaderBuilder::try_new(bytes.clone()).unwrap();
        check_parquet(b.metadata(), bytes.len() as u64).unwrap();
        let err = check_parquet(b.metadata(), 10).unwrap_err().to_string();
        assert!(err.contains("row group 0, column 0 (\"id\")"), "{err}");
        assert!(err.contains("past the end of the 10-byte file"), "{err}");
    }
}
