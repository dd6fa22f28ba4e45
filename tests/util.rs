use std::path::{Path, PathBuf};
use turnscore::convert::{ConvertOptions, Quant};
use turnscore::{Engine, EngineOptions};

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

pub fn data(p: &str) -> PathBuf {
    root().join("tests").join("data").join(p)
}

pub fn fixture(name: &str) -> serde_json::Value {
    let p = data(&format!("fixtures/{name}"));
    serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap()
}

pub fn bundled_path() -> PathBuf {
    root().join("models").join("all-minilm-l6-v2.tsm")
}

/// Converts a tiny checkpoint directory into model-file bytes.
pub fn tiny_bytes(dir: &str, quant: Quant) -> Vec<u8> {
    let opts = ConvertOptions { quant, ..Default::default() };
    turnscore::convert::build(&data(dir), &opts).unwrap()
}

pub fn engine_from_bytes(b: &[u8], threads: usize) -> Engine {
    let m = turnscore::format::ModelFile::from_bytes(b).unwrap();
    Engine::new(m, EngineOptions { threads, ..Default::default() }).unwrap()
}

pub fn f32s(v: &serde_json::Value) -> Vec<Vec<f32>> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect())
        .collect()
}

pub fn ids(v: &serde_json::Value) -> Vec<Vec<u32>> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect())
        .collect()
}

pub fn strings(v: &serde_json::Value) -> Vec<String> {
    v.as_array().unwrap().iter().map(|x| x.as_str().unwrap().to_string()).collect()
}

/// Largest absolute difference between rows of `got` (flat, `dim` wide) and `want`.
pub fn max_abs(got: &[f32], want: &[Vec<f32>]) -> f32 {
    let dim = want[0].len();
    assert_eq!(got.len(), want.len() * dim, "shape");
    want.iter()
        .enumerate()
        .flat_map(|(i, w)| w.iter().enumerate().map(move |(j, x)| (i * dim + j, *x)))
        .map(|(k, x)| (got[k] - x).abs())
        .fold(0.0, f32::max)
}
