//! JSON lines: any bytes give one row (or one rejection) per non-blank line, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use turnscore::input::{JsonlReader, ReadOptions};

fuzz_target!(|data: &[u8]| {
    let mut opts = ReadOptions::default();
    opts.max_text_bytes = 1 << 12;
    let mut r = JsonlReader::new(data).with_options(opts);
    let mut rows = 0u64;
    loop {
        let chunk = r.next_chunk(64).expect("reading memory cannot fail");
        if chunk.is_empty() {
            break;
        }
        rows += chunk.len() as u64;
    }
    // Every line is a row or a blank line, nothing else.
    assert_eq!(rows + r.blank_lines(), r.lines_read());
});
