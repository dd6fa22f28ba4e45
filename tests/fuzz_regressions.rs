//! Replays `fuzz/regressions/<target>/*` on stable: each file is an input of that cargo fuzz
//! target that once crashed a model loader (ours or another's) or that a fuzz run found; each
//! must give a clean error or a clean result, never a panic. `fuzz/seeds/` runs too.

use crate::util::root;
use turnscore::format::ModelFile;
use turnscore::input::{JsonlReader, ReadOptions};
use turnscore_io::columnar::{open_arrow_file, open_arrow_stream, open_parquet, BatchRows};

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
            let _ = read_arrow(&name, &b);
        }
        for (name, b) in files(kind, "parquet_rows") {
            let _ = read_parquet(&name, b);
        }
    }
}

/// Every row of an Arrow IPC input (stream, then file format), through the openers the CLI
/// uses; the first error.
fn read_arrow(name: &str, b: &[u8]) -> Result<usize, String> {
    let stream = open_arrow_stream(b, name).map(|r| drain(BatchRows::new(r, name, opts())));
    let file = open_arrow_file(std::io::Cursor::new(b), b.len() as u64, name)
        .map(|r| drain(BatchRows::new(r, name, opts())));
    match (stream, file) {
        (Ok(Ok(n)), _) | (_, Ok(Ok(n))) => Ok(n),
        (Ok(Err(e)), _) | (_, Ok(Err(e))) | (Err(_), Err(e)) => Err(format!("{e:#}")),
    }
}

/// Every row of a Parquet input through the opener the CLI uses; the first error.
fn read_parquet(name: &str, b: Vec<u8>) -> Result<usize, String> {
    let r = open_parquet(bytes::Bytes::from(b), 256, name).map_err(|e| format!("{e:#}"))?;
    drain(BatchRows::new(r, name, opts())).map_err(|e| format!("{e:#}"))
}

fn opts() -> ReadOptions {
    ReadOptions::default()
}

fn drain<I>(mut rows: BatchRows<I>) -> anyhow::Result<usize>
where
    I: Iterator<Item = Result<arrow_array::RecordBatch, arrow_schema::ArrowError>>,
{
    let mut n = 0;
    loop {
        let got = rows.next_rows(256)?.len();
        if got == 0 {
            return Ok(n);
        }
        n += got;
    }
}

/// Each columnar input that fuzzing found crashing a reader, or asking it for more memory than
/// the file holds, is an error naming the input, for its own reason: a panic caught by
/// `guarded`, a declared range checked against the file, or a declared page size that the
/// data does not fill.
#[test]
fn the_reader_crashes_found_by_fuzzing_are_errors() {
    let expect = [
        ("block_body_past_end.arrow", "record batch block 0 declares offset"),
        ("buffer_offset_past_end.arrows", "the decoder failed on damaged data"),
        ("bitmap_range_out_of_bounds.parquet", "the decoder failed on damaged data"),
        ("page_declares_1gb_uncompressed.parquet", "Invalid page header"),
    ];
    let mut got = Vec::new();
    for (name, b) in files("regressions", "arrow_rows") {
        got.push((name.clone(), read_arrow(&name, &b)));
    }
    for (name, b) in files("regressions", "parquet_rows") {
        got.push((name.clone(), read_parquet(&name, b)));
    }
    assert_eq!(got.len(), expect.len(), "a regression file without an expected reason");
    for (name, r) in got {
        let (_, want) = expect.iter().find(|(n, _)| *n == name).expect(&name);
        let e = r.expect_err(&name);
        assert!(e.contains(&name) && e.contains(want), "{name}: expected {want:?} in {e:?}");
    }
}
