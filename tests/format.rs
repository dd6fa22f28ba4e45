//! A missing, empty, truncated, bit-flipped or hostile model file is a typed error that names the
//! problem: never a panic, never undefined behaviour.

use crate::util::*;
use serde_json::Value;
use turnscore::convert::Quant;
use turnscore::format::{Header, ModelFile, ALIGN, FORMAT_VERSION, HEADER_LEN, MAGIC};
use turnscore::{Engine, EngineOptions, Error};

fn good() -> Vec<u8> {
    tiny_bytes("tiny-bert-cls", Quant::F16Emb8)
}

fn err_of(b: &[u8]) -> String {
    match ModelFile::from_bytes(b).and_then(|m| Engine::new(m, EngineOptions::default())) {
        Ok(_) => panic!("a damaged model file was accepted"),
        Err(e) => e.to_string(),
    }
}

/// Rewrites the metadata JSON with `f` and rebuilds a file whose checksums are all valid, so the
/// semantic checks (not the CRCs) must catch the damage.
fn with_meta(b: &[u8], f: impl FnOnce(&mut Value)) -> Vec<u8> {
    let h = Header::parse(b).unwrap();
    let meta = &b[h.meta_offset as usize..(h.meta_offset + h.meta_len) as usize];
    let mut v: Value = serde_json::from_slice(meta).unwrap();
    f(&mut v);
    let meta = serde_json::to_vec(&v).unwrap();
    let data = &b[h.data_offset as usize..];
    let data_offset = (HEADER_LEN as u64 + meta.len() as u64).next_multiple_of(ALIGN);
    let nh = Header {
        magic: MAGIC,
        version: FORMAT_VERSION,
        header_len: HEADER_LEN as u32,
        file_len: data_offset + data.len() as u64,
        meta_offset: HEADER_LEN as u64,
        meta_len: meta.len() as u64,
        data_offset,
        data_len: data.len() as u64,
        meta_crc32: crc(&meta),
        header_crc32: 0,
    };
    let mut out = nh.to_bytes().to_vec();
    out.extend_from_slice(&meta);
    out.resize(data_offset as usize, 0);
    out.extend_from_slice(data);
    out
}

fn crc(b: &[u8]) -> u32 {
    // CRC-32/IEEE, bitwise; independent of the engine's implementation.
    let mut c = !0u32;
    for &x in b {
        c ^= x as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 { (c >> 1) ^ 0xEDB8_8320 } else { c >> 1 };
        }
    }
    !c
}

#[test]
fn the_good_file_loads() {
    let m = ModelFile::from_bytes(&good()).unwrap();
    Engine::new(m, EngineOptions::default()).unwrap();
}

#[test]
fn missing_and_empty_files_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.tsm");
    let e = ModelFile::open(&missing).unwrap_err();
    assert!(matches!(e, Error::Io { .. }) && e.to_string().contains("nope.tsm"), "{e}");
    let empty = dir.path().join("empty.tsm");
    std::fs::write(&empty, b"").unwrap();
    let e = ModelFile::open(&empty).unwrap_err().to_string();
    assert!(e.contains("empty.tsm") && e.contains("empty"), "{e}");
}

#[test]
fn every_truncation_is_an_error() {
    let b = good();
    let mut cuts: Vec<usize> = (0..200).collect();
    cuts.extend((200..b.len()).step_by(997));
    cuts.push(b.len() - 1);
    for n in cuts {
        let e = err_of(&b[..n]);
        assert!(e.contains("invalid model file"), "cut at {n}: {e}");
    }
}

#[test]
fn every_single_bit_flip_is_detected() {
    // Header and metadata: every bit. Data region: one bit in every 61st byte (all regions and
    // padding are covered by a CRC or the zero-padding rule).
    let b = good();
    let h = Header::parse(&b).unwrap();
    let meta_end = (h.meta_offset + h.meta_len) as usize;
    let mut positions: Vec<(usize, u8)> = Vec::new();
    for i in 0..meta_end.min(4096) {
        for bit in 0..8 {
            positions.push((i, 1 << bit));
        }
    }
    positions.extend((meta_end..b.len()).step_by(61).map(|i| (i, 1u8 << (i % 8))));
    for (i, mask) in positions {
        let mut c = b.clone();
        c[i] ^= mask;
        let e = err_of(&c);
        assert!(e.contains("model file"), "flip at byte {i}: {e}");
    }
}

#[test]
fn wrong_magic_and_version_are_named() {
    let mut b = good();
    b[0] = b'X';
    assert!(err_of(&b).contains("bad magic"));
    let mut b = good();
    b[8..12].copy_from_slice(&7u32.to_le_bytes());
    let fixed = crc(&b[0..60]);
    b[60..64].copy_from_slice(&fixed.to_le_bytes());
    let e = ModelFile::from_bytes(&b).unwrap_err();
    assert!(matches!(e, Error::UnsupportedVersion { found: 7, .. }), "{e}");
}

#[test]
fn hostile_metadata_is_rejected_with_a_reason() {
    let b = good();
    type Edit = Box<dyn Fn(&mut Value)>;
    let cases: Vec<(&str, Edit)> = vec![
        (
            "outside the data region",
            Box::new(|v| v["tensors"][0]["offset"] = Value::from(u64::MAX - 10)),
        ),
        (
            "does not match its length",
            Box::new(|v| v["tensors"][1]["shape"] = serde_json::json!([u64::MAX, 4])),
        ),
        (
            "not 64-byte aligned",
            Box::new(|v| {
                v["tensors"][2]["offset"] =
                    Value::from(v["tensors"][2]["offset"].as_u64().unwrap() + 4)
            }),
        ),
        (
            "appears twice",
            Box::new(|v| {
                let t = v["tensors"][3].clone();
                v["tensors"][4]["name"] = t["name"].clone();
            }),
        ),
        ("is missing", Box::new(|v| v["tensors"][5]["name"] = Value::from("renamed.weight"))),
        (
            "non-zero padding",
            Box::new(|v| {
                v["tensors"].as_array_mut().unwrap().remove(5);
            }),
        ),
        (
            "not a multiple of num_heads",
            Box::new(|v| v["architecture"]["num_heads"] = Value::from(5)),
        ),
        ("out of range", Box::new(|v| v["architecture"]["num_layers"] = Value::from(100_000))),
        ("not supported", Box::new(|v| v["architecture"]["model_type"] = Value::from("gpt2"))),
        ("threshold", Box::new(|v| v["topics"]["labels"][0]["threshold"] = Value::from(7.5))),
        (
            "metadata is not valid",
            Box::new(|v| v["architecture"]["hidden_size"] = Value::from("big")),
        ),
        ("expected", Box::new(|v| v["architecture"]["intermediate_size"] = Value::from(65))),
    ];
    for (want, f) in cases {
        let e = err_of(&with_meta(&b, f));
        assert!(e.contains(want), "expected {want:?} in: {e}");
    }
}

#[test]
fn a_damaged_file_on_disk_names_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("broken-model.tsm");
    let mut b = good();
    let n = b.len();
    b[n / 2] ^= 0x10;
    std::fs::write(&p, &b).unwrap();
    let e = Engine::open(&p, EngineOptions::default()).unwrap_err().to_string();
    assert!(e.contains("broken-model.tsm") && e.contains("checksum"), "{e}");
}
