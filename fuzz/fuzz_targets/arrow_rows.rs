//! Arrow IPC input (stream and file format): arbitrary bytes through the openers the CLI uses
//! (`turnscore_io::columnar`: the file's footer checked against its length, the readers' panics
//! turned into errors) and the bounded row converter. A damaged file is an error, never a crash
//! or an allocation past what the file holds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::io::Cursor;
use turnscore::input::ReadOptions;
use turnscore_io::columnar::{open_arrow_file, open_arrow_stream, BatchRows};

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = open_arrow_stream(data, "fuzz") {
        drain(BatchRows::new(r, "fuzz", ReadOptions::default()));
    }
    if let Ok(r) = open_arrow_file(Cursor::new(data), data.len() as u64, "fuzz") {
        drain(BatchRows::new(r, "fuzz", ReadOptions::default()));
    }
});

fn drain<I>(mut rows: BatchRows<I>)
where
    I: Iterator<Item = Result<arrow_array::RecordBatch, arrow_schema::ArrowError>>,
{
    for _ in 0..64 {
        match rows.next_rows(256) {
            Ok(r) if !r.is_empty() => {}
            _ => break,
        }
    }
}
