//! Parquet input: arbitrary bytes through the reader the CLI uses, guarded as the CLI guards it
//! (`turnscore::input::guarded`: the reader panics on some damaged files), and the row
//! converter. A damaged file is an error, never a crash or an unbounded allocation.
#![no_main]

use libfuzzer_sys::fuzz_target;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use turnscore::input::{guarded, rows_from_batch, ReadOptions};

fuzz_target!(|data: &[u8]| {
    let bytes = bytes::Bytes::copy_from_slice(data);
    let Ok(Ok(b)) = guarded("fuzz", || ParquetRecordBatchReaderBuilder::try_new(bytes)) else {
        return;
    };
    let b = b.with_batch_size(256);
    let Ok(Ok(mut r)) = guarded("fuzz", || b.build()) else { return };
    let opts = ReadOptions::default();
    for _ in 0..16 {
        match guarded("fuzz", || r.next()) {
            Ok(Some(Ok(batch))) => {
                let _ = rows_from_batch(&batch, 1, &opts);
            }
            _ => break,
        }
    }
});
