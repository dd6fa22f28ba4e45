//! Arrow IPC input (stream and file format): arbitrary bytes through the readers the CLI uses,
//! guarded as the CLI guards them (`turnscore::input::guarded`: the readers panic on some damaged
//! files), and the row converter. A damaged file is an error, never a crash.
#![no_main]

use libfuzzer_sys::fuzz_target;
use turnscore::input::{guarded, rows_from_batch, ReadOptions};

fuzz_target!(|data: &[u8]| {
    let opts = ReadOptions::default();
    if let Ok(Ok(mut r)) = guarded("fuzz", || arrow_ipc::reader::StreamReader::try_new(data, None)) {
        for _ in 0..16 {
            match guarded("fuzz", || r.next()) {
                Ok(Some(Ok(b))) => {
                    let _ = rows_from_batch(&b, 1, &opts);
                }
                _ => break,
            }
        }
    }
    let file = guarded("fuzz", || {
        arrow_ipc::reader::FileReader::try_new(std::io::Cursor::new(data), None)
    });
    if let Ok(Ok(mut r)) = file {
        for _ in 0..16 {
            match guarded("fuzz", || r.next()) {
                Ok(Some(Ok(b))) => {
                    let _ = rows_from_batch(&b, 1, &opts);
                }
                _ => break,
            }
        }
    }
});
