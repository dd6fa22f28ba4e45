//! Parquet input: arbitrary bytes through the reader the CLI uses and the row converter. A
//! damaged file is an error, never a panic or an unbounded allocation.
#![no_main]

use libfuzzer_sys::fuzz_target;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use turnscore::input::{rows_from_batch, ReadOptions};

fuzz_target!(|data: &[u8]| {
    let Ok(b) = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::copy_from_slice(data))
    else {
        return;
    };
    let Ok(r) = b.with_batch_size(256).build() else { return };
    let opts = ReadOptions::default();
    for batch in r.take(16) {
        let Ok(batch) = batch else { return };
        let _ = rows_from_batch(&batch, 1, &opts);
    }
});
