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

/// Rewrites tensor `name`'s bytes with `f` and stores its new checksum, so the file is valid at
/// the format level and only the semantic validation can refuse it.
fn with_tensor(b: &[u8], name: &str, f: impl FnOnce(&mut [u8])) -> Vec<u8> {
    let h = Header::parse(b).unwrap();
    let meta = &b[h.meta_offset as usize..(h.meta_offset + h.meta_len) as usize];
    let v: Value = serde_json::from_slice(meta).unwrap();
    let t = v["tensors"].as_array().unwrap().iter().find(|t| t["name"] == name).unwrap().clone();
    let (off, len) = (t["offset"].as_u64().unwrap() as usize, t["len"].as_u64().unwrap() as usize);
    let mut out = b.to_vec();
    let start = h.data_offset as usize + off;
    f(&mut out[start..start + len]);
    let c = crc(&out[start..start + len]);
    with_meta(&out, |v| {
        for t in v["tensors"].as_array_mut().unwrap() {
            if t["name"] == name {
                t["crc32"] = Value::from(c);
            }
        }
    })
}

fn put_f32(bytes: &mut [u8], i: usize, x: f32) {
    bytes[4 * i..4 * i + 4].copy_from_slice(&x.to_le_bytes());
}

fn sensitive_head_bytes(quant: Quant) -> Vec<u8> {
    let opts = turnscore::convert::ConvertOptions {
        quant,
        checkpoint_head: turnscore::convert::HeadKind::Sensitive,
        ..Default::default()
    };
    turnscore::convert::build(&data("tiny-bert-cls"), &opts).unwrap()
}

/// A NaN or infinite weight, a head whose rows do not match its labels, a transposed matrix, a
/// NaN scale or a layer past `num_layers`: each file has valid checksums, and each is refused by
/// the one validation that `Engine::new`, `inspect` and `convert` share.
#[test]
fn semantically_broken_models_are_refused_by_the_shared_validation() {
    let b = sensitive_head_bytes(Quant::Int8);
    let m = ModelFile::from_bytes(&b).unwrap();
    let head = m.meta().sensitive.clone().unwrap();
    // (expected error, file, whether the format-level checks may refuse it first)
    type Case = (&'static str, Vec<u8>, bool);
    let nan_at = |name: &str, i: usize, x: f32| with_tensor(&b, name, |t| put_f32(t, i, x));
    let cases: Vec<Case> = vec![
        ("NaN or infinite", nan_at(&head.weight, 3, f32::NAN), false),
        ("NaN or infinite", nan_at(&head.bias, 0, f32::INFINITY), false),
        ("NaN or infinite", nan_at("encoder.layer.1.output.LayerNorm.weight", 7, f32::NAN), false),
        (
            "non-finite scale",
            nan_at("encoder.layer.0.attention.self.query.weight.scale", 1, f32::NAN),
            false,
        ),
        (
            "expected",
            with_meta(&b, |v| {
                let labels = v["sensitive"]["labels"].as_array_mut().unwrap();
                labels.pop();
            }),
            false,
        ),
        (
            "expected",
            with_meta(&b, |v| {
                for t in v["tensors"].as_array_mut().unwrap() {
                    if t["name"] == "encoder.layer.0.intermediate.dense.weight" {
                        t["shape"] = serde_json::json!([32, 64]);
                    }
                }
            }),
            true,
        ),
        (
            "belongs to no layer",
            with_meta(&b, |v| v["architecture"]["num_layers"] = Value::from(1)),
            false,
        ),
    ];
    for (want, bytes, format_may_refuse) in cases {
        // The file itself is sound: only the semantic checks can catch it.
        let m = match ModelFile::from_bytes(&bytes) {
            Ok(m) => m,
            Err(e) if format_may_refuse => {
                // A transposed packed matrix can fail the packing's own length check first.
                assert!(e.to_string().contains("does not match its length"), "{e}");
                continue;
            }
            Err(e) => panic!("the edit broke the file's format, not its meaning: {e}"),
        };
        let e = turnscore::validate_model(&m).unwrap_err().to_string();
        assert!(e.contains(want), "validate: expected {want:?} in: {e}");
        let e = err_of(&bytes);
        assert!(e.contains(want), "Engine::new: expected {want:?} in: {e}");
    }
    assert!(turnscore::validate_model(&m).is_ok());
}

/// `convert` refuses a checkpoint whose weights hold a NaN, and writes nothing.
#[test]
fn convert_refuses_nan_weights() {
    let dir = tempfile::tempdir().unwrap();
    let src = data("tiny-bert-cls");
    let ck = dir.path().join("ck");
    std::fs::create_dir(&ck).unwrap();
    for f in ["config.json", "tokenizer.json", "model.safetensors"] {
        std::fs::copy(src.join(f), ck.join(f)).unwrap();
    }
    let st = ck.join("model.safetensors");
    let mut b = std::fs::read(&st).unwrap();
    let n = u64::from_le_bytes(b[..8].try_into().unwrap()) as usize;
    let h: Value = serde_json::from_slice(&b[8..8 + n]).unwrap();
    let off = h["bert.embeddings.LayerNorm.weight"]["data_offsets"][0].as_u64().unwrap() as usize;
    put_f32(&mut b[8 + n + off..], 2, f32::NAN);
    std::fs::write(&st, &b).unwrap();
    let out = dir.path().join("m.tsm");
    let e = turnscore::convert::convert(&ck, &out, &Default::default()).unwrap_err().to_string();
    assert!(e.contains("NaN or infinite") && e.contains("embeddings.LayerNorm.weight"), "{e}");
    assert!(!out.exists(), "nothing is written");
}

fn policy_row(id: &str) -> turnscore::input::Row {
    let l = format!(
        r#"{{"id":"{id}","text":"a short turn about the trip","role":"user","region":"US","consent_ads":true,"is_minor":false,"account_linked":true}}"#
    );
    turnscore::input::parse_line(l.as_bytes(), 1)
}

fn reasons(e: &Engine, rows: &[turnscore::input::Row]) -> Vec<(bool, String)> {
    use arrow_array::cast::AsArray;
    let b = e.score_rows(rows).unwrap();
    let el = b.column_by_name("ad_eligible").unwrap().as_boolean().clone();
    let r = arrow_array::cast::as_dictionary_array::<arrow_array::types::Int32Type>(
        b.column_by_name("reason").unwrap(),
    )
    .clone();
    let vals = r.values().as_string::<i32>().clone();
    (0..b.num_rows())
        .map(|i| (el.value(i), vals.value(r.keys().value(i) as usize).to_string()))
        .collect()
}

/// Finite weights large enough to overflow make NaN scores: the gate fails closed, naming the
/// label, instead of reading a NaN as "below the threshold".
#[test]
fn a_model_that_overflows_into_nan_scores_makes_no_turn_ad_eligible() {
    let b = sensitive_head_bytes(Quant::F32);
    let b = with_tensor(&b, "embeddings.LayerNorm.weight", |t| {
        for i in 0..t.len() / 4 {
            put_f32(t, i, 3e38);
        }
    });
    let e = engine_from_bytes(&b, 1);
    let got = reasons(&e, &[policy_row("a"), policy_row("b")]);
    for (ok, why) in got {
        assert!(!ok && why.starts_with("score_not_finite:"), "{why}");
    }
}

/// A model with no sensitive head cannot veto anything: no turn is ad-eligible unless the
/// policy says so explicitly.
#[test]
fn a_model_without_a_sensitive_head_makes_no_turn_ad_eligible_by_default() {
    let b = tiny_bytes("tiny-bert-cls", Quant::Int8); // the checkpoint's head becomes topics
    let m = ModelFile::from_bytes(&b).unwrap();
    assert!(m.meta().sensitive.is_none());
    let e = engine_from_bytes(&b, 1);
    assert_eq!(reasons(&e, &[policy_row("a")]), vec![(false, "no_sensitive_head".to_string())]);
    let lax = turnscore::policy::Policy { require_sensitive_head: false, ..Default::default() };
    let e =
        Engine::new(m, EngineOptions { threads: 1, policy: lax, ..Default::default() }).unwrap();
    assert_eq!(reasons(&e, &[policy_row("a")]), vec![(true, "ok".to_string())]);
}

/// A directory, or anything else that is not a regular file, is named as such (and a FIFO is
/// never opened, which would block until a writer came).
#[test]
fn a_model_path_that_is_not_a_regular_file_is_refused_without_opening_it() {
    let dir = tempfile::tempdir().unwrap();
    let e = ModelFile::open(dir.path()).unwrap_err().to_string();
    assert!(e.contains("a directory, not a model file"), "{e}");
    let fifo = dir.path().join("model.fifo");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    if made.is_ok_and(|s| s.success()) {
        let e = ModelFile::open(&fifo).unwrap_err().to_string();
        assert!(e.contains("not a regular file"), "{e}");
    }
}
