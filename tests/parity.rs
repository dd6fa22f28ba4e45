//! The encoder against references, on committed fixtures (no Python at test time):
//! 1. Hugging Face transformers on two tiny random checkpoints (mean pooling; CLS + pooler with a
//!    multi-label head) and on the real all-MiniLM-L6-v2;
//! 2. candle-transformers' BERT on the same weights (tiny f32, tiny f16, and the bundled model).
//! Tolerance: max abs error of pooled vectors ≤ 1e-4.

use crate::util::*;
use candle_core::{DType, Device, Tensor};
use std::collections::HashMap;
use turnscore::convert::Quant;
use turnscore::format::{ModelFile, Pooling, TensorData};
use turnscore::{Engine, EngineOptions};

const TOL: f32 = 1e-4;

#[test]
fn tiny_bert_matches_transformers() {
    let fx = fixture("tiny-bert.json");
    let e = engine_from_bytes(&tiny_bytes("tiny-bert", Quant::F32), 1);
    let sentences = strings(&fx["sentences"]);
    let want_ids = ids(&fx["input_ids"]);
    let refs: Vec<&str> = sentences.iter().map(String::as_str).collect();
    let got_ids: Vec<Vec<u32>> =
        e.tokenize(&refs).unwrap().into_iter().map(|t| t.windows[0].clone()).collect();
    assert_eq!(got_ids, want_ids, "tokenizer ids differ from transformers'");
    let pooled = e.embed_ids(&want_ids).unwrap();
    let err = max_abs(&pooled, &f32s(&fx["pooled"]));
    eprintln!("tiny-bert vs transformers: max abs error {err:.3e}");
    assert!(err <= TOL, "max abs error {err}");
}

#[test]
fn tiny_bert_classifier_matches_transformers() {
    let fx = fixture("tiny-bert-cls.json");
    let bytes = tiny_bytes("tiny-bert-cls", Quant::F32);
    let e = engine_from_bytes(&bytes, 1);
    assert_eq!(e.model().meta().architecture.pooling, Pooling::ClsPooler);
    let labels: Vec<String> = e.topic_labels().iter().map(|l| l.name.clone()).collect();
    assert_eq!(labels, strings(&fx["labels"]), "labels come from id2label, in order");
    let want_ids = ids(&fx["input_ids"]);
    let pooled = e.embed_ids(&want_ids).unwrap();
    let err = max_abs(&pooled, &f32s(&fx["pooled"]));
    assert!(err <= TOL, "pooled max abs error {err}");
    let (topics, _) = e.head_scores(&pooled, want_ids.len()).unwrap();
    let perr = max_abs(&topics, &f32s(&fx["probs"]));
    eprintln!("tiny-bert-cls vs transformers: pooled {err:.3e}, sigmoid probs {perr:.3e}");
    assert!(perr <= TOL, "probability max abs error {perr}");
}

fn bundled() -> Engine {
    Engine::open(bundled_path(), EngineOptions { threads: 2, ..Default::default() }).unwrap()
}

#[test]
fn bundled_minilm_matches_transformers_at_stored_precision() {
    // The fixture was computed by transformers with the checkpoint's weights rounded exactly as the
    // bundled file stores them (f16 matrices, i8 per-row word embeddings): same weights, so the
    // encoder itself must agree to 1e-4.
    let fx = fixture("minilm.json");
    let e = bundled();
    let sentences = strings(&fx["sentences"]);
    let refs: Vec<&str> = sentences.iter().map(String::as_str).collect();
    let want_ids = ids(&fx["input_ids"]);
    let got: Vec<Vec<u32>> =
        e.tokenize(&refs).unwrap().into_iter().map(|t| t.windows[0].clone()).collect();
    assert_eq!(got, want_ids, "tokenizer ids differ from transformers'");
    let emb = e.embed(&refs).unwrap();
    let err = max_abs(&emb.data, &f32s(&fx["pooled_stored_precision"]));
    eprintln!("bundled all-MiniLM-L6-v2 vs transformers (same weights): max abs error {err:.3e}");
    assert!(err <= TOL, "max abs error {err}");
}

#[test]
fn bundled_minilm_storage_drift_against_f32_is_small() {
    // Storage precision, not the encoder: the bundled file's f16/i8 weights against the original
    // f32 checkpoint. Bound stated in models/README.md.
    let fx = fixture("minilm.json");
    let e = bundled();
    let sentences = strings(&fx["sentences"]);
    let refs: Vec<&str> = sentences.iter().map(String::as_str).collect();
    let emb = e.embed(&refs).unwrap();
    let want = f32s(&fx["pooled_f32"]);
    let err = max_abs(&emb.data, &want);
    let min_cos = want
        .iter()
        .enumerate()
        .map(|(i, w)| emb.row(i).iter().zip(w).map(|(a, b)| a * b).sum::<f32>())
        .fold(1.0, f32::min);
    eprintln!("bundled vs f32 checkpoint: max abs {err:.3e}, min cosine {min_cos:.6}");
    assert!(err <= 5e-3 && min_cos >= 0.9995, "max abs {err}, min cosine {min_cos}");
}

/// Every tensor of a model file, widened to f32, as candle tensors.
fn candle_tensors(m: &ModelFile) -> HashMap<String, Tensor> {
    let mut out = HashMap::new();
    for t in &m.meta().tensors {
        if t.name.ends_with(".scale") {
            continue;
        }
        let shape: Vec<usize> = t.shape.iter().map(|&d| d as usize).collect();
        let (data, _) = m.tensor(&t.name).unwrap();
        let v: Vec<f32> = match data {
            TensorData::F32(v) => v.to_vec(),
            TensorData::F16(v) => v.iter().map(|x| x.to_f32()).collect(),
            TensorData::I8(q) => {
                let (s, _) = m.tensor(&format!("{}.scale", t.name)).unwrap();
                let TensorData::F32(s) = s else { panic!("scale must be f32") };
                let cols = shape[1];
                q.iter().enumerate().map(|(k, &x)| x as f32 * s[k / cols]).collect()
            }
        };
        out.insert(t.name.clone(), Tensor::from_vec(v, shape, &Device::Cpu).unwrap());
    }
    out
}

/// candle-transformers' BertModel on the model file's (widened) weights, mean pooled.
fn candle_pooled(m: &ModelFile, seqs: &[Vec<u32>]) -> Vec<f32> {
    let a = &m.meta().architecture;
    let cfg: candle_transformers::models::bert::Config =
        serde_json::from_value(serde_json::json!({
            "vocab_size": a.vocab_size, "hidden_size": a.hidden_size,
            "num_hidden_layers": a.num_layers, "num_attention_heads": a.num_heads,
            "intermediate_size": a.intermediate_size, "hidden_act": "gelu",
            "hidden_dropout_prob": 0.0, "max_position_embeddings": a.max_position_embeddings,
            "type_vocab_size": a.type_vocab_size, "initializer_range": 0.02,
            "layer_norm_eps": a.layer_norm_eps, "pad_token_id": 0, "model_type": "bert"
        }))
        .unwrap();
    let vb = candle_nn::VarBuilder::from_tensors(candle_tensors(m), DType::F32, &Device::Cpu);
    let model = candle_transformers::models::bert::BertModel::load(vb, &cfg).unwrap();
    let mut out = Vec::new();
    for s in seqs {
        let ids = Tensor::new(s.as_slice(), &Device::Cpu).unwrap().unsqueeze(0).unwrap();
        let tt = ids.zeros_like().unwrap();
        let hs = model.forward(&ids, &tt, None).unwrap(); // [1, L, H]
        let mut v: Vec<f32> = hs.mean(1).unwrap().squeeze(0).unwrap().to_vec1().unwrap();
        if a.normalize {
            let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
            v.iter_mut().for_each(|x| *x /= n);
        }
        out.extend(v);
    }
    out
}

fn check_against_candle(m: ModelFile, seqs: &[Vec<u32>], what: &str) {
    let want_flat = candle_pooled(&m, seqs);
    let h = m.meta().architecture.hidden_size as usize;
    let want: Vec<Vec<f32>> = want_flat.chunks(h).map(<[f32]>::to_vec).collect();
    let e = Engine::new(m, EngineOptions { threads: 2, ..Default::default() }).unwrap();
    let got = e.embed_ids(seqs).unwrap();
    let err = max_abs(&got, &want);
    eprintln!("{what} vs candle-transformers: max abs error {err:.3e}");
    assert!(err <= TOL, "{what}: max abs error {err}");
}

#[test]
fn tiny_bert_f32_matches_candle() {
    let seqs = ids(&fixture("tiny-bert.json")["input_ids"]);
    let m = ModelFile::from_bytes(&tiny_bytes("tiny-bert", Quant::F32)).unwrap();
    check_against_candle(m, &seqs, "tiny-bert f32");
}

#[test]
fn tiny_bert_f16_storage_matches_candle_on_the_same_weights() {
    let seqs = ids(&fixture("tiny-bert.json")["input_ids"]);
    for q in [Quant::F16, Quant::F16Emb8] {
        let m = ModelFile::from_bytes(&tiny_bytes("tiny-bert", q)).unwrap();
        check_against_candle(m, &seqs, &format!("tiny-bert {q:?}"));
    }
}

#[test]
fn bundled_minilm_matches_candle_on_the_same_weights() {
    let seqs = ids(&fixture("minilm.json")["input_ids"]);
    let m = ModelFile::open(bundled_path()).unwrap();
    check_against_candle(m, &seqs, "bundled all-MiniLM-L6-v2");
}
