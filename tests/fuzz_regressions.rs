//! Replays `fuzz/regressions/<target>/*` on stable: each file is an input of that cargo fuzz
//! target that once crashed a model loader (ours or another's) or that a fuzz run found; each
//! must give a clean error or a clean result, never a panic. `fuzz/seeds/` runs too.

use crate::util::root;
use turnscore::format::ModelFile;
use turnscore::input::{guarded, rows_from_batch, JsonlReader, ReadOptions};

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

/// What each model-file regression must be refused for: the check of its own class, not an
/// earlier one that would hide a regression in it.
const EXPECTED: [(&str, &str); 11] = [
    ("data_offset_outside_the_file", "lies outside the data region"),
    ("data_offset_overflow", "lies outside the data region"),
    ("huge_allocation_from_metadata", "vocab_size = 1099511627776 is out of range"),
    ("shape_product_overflow", "does not match its length"),
    ("tokenizer_blob_outside_the_file", "tokenizer blob: range"),
    ("unknown_element_type", "unknown variant `q4_k`"),
    ("wrong_element_type_for_a_weight", "is i32, which is not a weight matrix type"),
    ("zero_dimension_tensor", "has shape [0, 32]"),
    ("zero_heads_division", "num_heads = 0 is out of range"),
    ("zero_hidden_size", "hidden_size = 0 is out of range"),
    ("zero_length_key", "a tensor has an empty name"),
];

#[test]
fn every_model_file_regression_is_refused_for_its_own_reason() {
    let cases = files("regressions", "model_open");
    let names: Vec<String> =
        cases.iter().map(|(n, _)| n.trim_end_matches(".bin").to_string()).collect();
    let want: Vec<String> = EXPECTED.iter().map(|(n, _)| n.to_string()).collect();
    assert_eq!(names, want, "the regression files in the repository");
    for ((name, bytes), (_, msg)) in cases.iter().zip(EXPECTED) {
        match model_open(bytes) {
            Some(Err(e)) => assert!(e.contains(msg), "{name}: expected {msg:?} in {e:?}"),
            Some(Ok(())) => panic!("{name}: a broken model file was accepted"),
            None => panic!("{name}: a regression file is a whole file (mode byte 1)"),
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
        for (name, b) in files(kind, "arrow_rows") {
            let r = guarded("replay", || arrow_ipc::reader::StreamReader::try_new(&b[..], None));
            if let Ok(Ok(mut r)) = r {
                while let Ok(Some(Ok(batch))) = guarded("replay", || r.next()) {
                    let _ = rows_from_batch(&batch, 1, &ReadOptions::default());
                }
            }
            let _ = name;
        }
        for (_, b) in files(kind, "parquet_rows") {
            use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
            let bytes = bytes::Bytes::from(b);
            let Ok(Ok(bld)) = guarded("replay", || ParquetRecordBatchReaderBuilder::try_new(bytes))
            else {
                continue;
            };
            let bld = bld.with_batch_size(256);
            if let Ok(Ok(mut r)) = guarded("replay", || bld.build()) {
                while let Ok(Some(Ok(batch))) = guarded("replay", || r.next()) {
                    let _ = rows_from_batch(&batch, 1, &ReadOptions::default());
                }
            }
        }
    }
}

/// Reads batches through `guarded` until the reader fails; the error it gives. A file that
/// reads cleanly is not a regression.
fn first_guarded_error<I: Iterator>(name: &str, mut r: I) -> String {
    loop {
        match guarded(name, || r.next()) {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("{name} reads cleanly: not a regression"),
            Err(e) => return e.to_string(),
        }
    }
}

/// The readers' panics that fuzzing found are errors through `guarded`, and the panic is caught
/// (not only survived): each file really makes its reader panic.
#[test]
fn the_reader_crashes_found_by_fuzzing_are_errors() {
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let mut caught = 0;
    for (_, b) in files("regressions", "arrow_rows") {
        let r = arrow_ipc::reader::StreamReader::try_new(&b[..], None).unwrap();
        let e = first_guarded_error("x.arrows", r);
        assert!(e.contains("x.arrows: the decoder failed on damaged data"), "{e}");
        caught += 1;
    }
    for (_, b) in files("regressions", "parquet_rows") {
        let bld = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(b)).unwrap();
        let e = first_guarded_error("x.parquet", bld.with_batch_size(256).build().unwrap());
        assert!(e.contains("damaged data"), "{e}");
        caught += 1;
    }
    assert_eq!(caught, 2);
}
