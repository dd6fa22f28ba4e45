//! Replays `fuzz/regressions/<target>/*` on stable: each file is an input of that cargo fuzz
//! target that once crashed a model loader (ours or another's) or that a fuzz run found; each
//! must give a clean error or a clean result, never a panic. `fuzz/seeds/` runs too.

use crate::util::root;
use turnscore::format::ModelFile;
use turnscore::input::{rows_from_batch, JsonlReader, ReadOptions};

fn files(kind: &str, target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = root().join("fuzz").join(kind).join(target);
    let Ok(rd) = std::fs::read_dir(&dir) else { return Vec::new() };
    let mut v: Vec<_> = rd
        .map(|e| e.unwrap().path())
        .map(|p| {
            (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap())
        })
        .collect();
    v.sort();
    v
}

/// The model_open target's input: mode byte 1 is a whole file (mode 0 needs the target's
/// framing and is exercised by the fuzzer only).
fn model_open(input: &[u8]) -> Option<Result<(), String>> {
    let (&mode, rest) = input.split_first()?;
    if mode & 1 == 0 {
        return None;
    }
    Some(
        ModelFile::from_bytes(rest)
            .and_then(|m| turnscore::validate_model(&m))
            .map_err(|e| e.to_string()),
    )
}

#[test]
fn every_model_file_regression_is_refused_with_an_error() {
    let cases = files("regressions", "model_open");
    assert!(cases.len() >= 10, "the regression files are in the repository: {}", cases.len());
    for (name, bytes) in cases {
        match model_open(&bytes) {
            Some(Err(e)) => assert!(!e.is_empty(), "{name}"),
            Some(Ok(())) => panic!("{name}: a broken model file was accepted"),
            None => {}
        }
    }
}

#[test]
fn every_reader_regression_and_seed_is_read_without_a_panic() {
    for kind in ["regressions", "seeds"] {
        for (_, b) in files(kind, "model_open") {
            let _ = model_open(&b);
        }
        for (name, b) in files(kind, "jsonl_row") {
            let mut r = JsonlReader::new(&b[..]);
            let mut n = 0u64;
            loop {
                let c = r.next_chunk(64).unwrap();
                if c.is_empty() {
                    break;
                }
                n += c.len() as u64;
            }
            assert_eq!(n + r.blank_lines(), r.lines_read(), "{name}");
        }
        for (_, b) in files(kind, "policy_json") {
            if let Ok(p) = turnscore::policy::Policy::from_json(&b) {
                assert_eq!(
                    turnscore::policy::Policy::from_json(p.to_json().as_bytes()).unwrap(),
                    p
                );
            }
        }
        for (_, b) in files(kind, "arrow_rows") {
            if let Ok(r) = arrow_ipc::reader::StreamReader::try_new(&b[..], None) {
                for batch in r.take(16).flatten() {
                    let _ = rows_from_batch(&batch, 1, &ReadOptions::default());
                }
            }
        }
        for (_, b) in files(kind, "parquet_rows") {
            use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
            let Ok(bld) = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(b)) else {
                continue;
            };
            if let Ok(r) = bld.with_batch_size(256).build() {
                for batch in r.take(16).flatten() {
                    let _ = rows_from_batch(&batch, 1, &ReadOptions::default());
                }
            }
        }
    }
}
