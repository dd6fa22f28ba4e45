//! Parquet input: arbitrary bytes through the opener the CLI uses (`turnscore_io::columnar`:
//! every column chunk checked against the file's length, the reader's panics turned into errors)
//! and the bounded row converter. A damaged file is an error, never a crash or an allocation past
//! what the file holds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use turnscore::input::ReadOptions;
use turnscore_io::columnar::{open_parquet, BatchRows};

fuzz_target!(|data: &[u8]| {
    let bytes = bytes::Bytes::copy_from_slice(data);
    let Ok(r) = open_parquet(bytes, 256, "fuzz") else { return };
    let mut rows = BatchRows::new(r, "fuzz", ReadOptions::default());
    for _ in 0..64 {
        match rows.next_rows(256) {
            Ok(r) if !r.is_empty() => {}
            _ => break,
        }
    }
});
