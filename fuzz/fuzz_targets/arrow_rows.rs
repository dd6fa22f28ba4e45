//! Arrow IPC input (stream and file format): arbitrary bytes through the readers the CLI uses
//! and the row converter. A damaged file is an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use turnscore::input::{rows_from_batch, ReadOptions};

fuzz_target!(|data: &[u8]| {
    let opts = ReadOptions::default();
    if let Ok(r) = arrow_ipc::reader::StreamReader::try_new(data, None) {
        for b in r.take(16) {
            let Ok(b) = b else { break };
            let _ = rows_from_batch(&b, 1, &opts);
        }
    }
    if let Ok(r) = arrow_ipc::reader::FileReader::try_new(std::io::Cursor::new(data), None) {
        for b in r.take(16) {
            let Ok(b) = b else { break };
            let _ = rows_from_batch(&b, 1, &opts);
        }
    }
});
