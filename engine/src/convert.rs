//! Converts a Hugging Face BERT-family checkpoint directory into a turnscore model file.
//!
//! Reads `config.json`, `model.safetensors` and `tokenizer.json` (plus the sentence-transformers
//! files `modules.json`, `1_Pooling/config.json` and `sentence_bert_config.json` when present),
//! and optionally a heads file trained by `turnscore train-heads`.

use crate::error::{Error, Result};
use crate::format::{
    hex_sha256, Architecture, HeadMeta, LabelMeta, ModelWriter, Pooling, Provenance,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// How the converter stores weight matrices.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Quant {
    /// Everything f32 (exact).
    F32,
    /// Matrices f16; biases and LayerNorm f32.
    F16,
    /// As `F16`, with the word-embedding table as i8 with one f32 scale per row (the bundled
    /// default: keeps all-MiniLM-L6-v2 under 40 MiB).
    F16Emb8,
    /// The encoder's linear layers as int8 with one scale per output channel, packed for the
    /// int8 kernels and used in place (activations are quantized per token at run time); word
    /// embeddings i8 per row; other matrices f16; biases, norms and heads f32.
    Int8,
}

impl Quant {
    /// The description stored in the model file.
    pub fn describe(self) -> &'static str {
        match self {
            Quant::F32 => "f32",
            Quant::F16 => "f16 (biases and norms f32)",
            Quant::F16Emb8 => "f16 (word embeddings i8 per row; biases and norms f32)",
            Quant::Int8 => {
                "int8 (encoder linear layers i8 per output channel, packed k4n16, activations u8 \
                 per token; word embeddings i8 per row; other matrices f16; biases, norms, heads \
                 f32)"
            }
        }
    }
}

/// Which of our two heads a checkpoint's own classification head becomes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeadKind {
    /// The interest head.
    Topics,
    /// The sensitive-category head.
    Sensitive,
}

/// Converter options.
#[derive(Clone, Debug)]
pub struct ConvertOptions {
    /// Weight storage.
    pub quant: Quant,
    /// Heads trained by `turnscore train-heads` to attach (replacing any checkpoint head).
    pub heads: Option<PathBuf>,
    /// Where the checkpoint's own `classifier` head goes.
    pub checkpoint_head: HeadKind,
    /// Override the pooling read from the checkpoint.
    pub pooling: Option<Pooling>,
    /// Override L2 normalisation of the pooled vector.
    pub normalize: Option<bool>,
    /// Override the model id (default: the directory name).
    pub model_id: Option<String>,
}

impl Default for ConvertOptions {
    fn default() -> Self {
        ConvertOptions {
            quant: Quant::F32,
            heads: None,
            checkpoint_head: HeadKind::Topics,
            pooling: None,
            normalize: None,
            model_id: None,
        }
    }
}

/// One head in a heads file.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HeadFileHead {
    /// Labels with thresholds.
    pub labels: Vec<LabelMeta>,
    /// `[labels][hidden]` weights.
    pub weight: Vec<Vec<f32>>,
    /// `[labels]` biases.
    pub bias: Vec<f32>,
}

/// The heads file written by `turnscore train-heads` and read by the converter.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HeadsFile {
    /// Width of the pooled vector the heads were trained on.
    pub hidden_size: usize,
    /// The topic head.
    pub topics: HeadFileHead,
    /// The sensitive head.
    pub sensitive: HeadFileHead,
    /// Provenance notes (data, seed, method, metrics).
    #[serde(default)]
    pub notes: Vec<String>,
}

fn cerr(s: impl Into<String>) -> Error {
    Error::Convert(s.into())
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| Error::Io { path: path.to_path_buf(), source })
}

fn read_json(path: &Path) -> Result<Value> {
    serde_json::from_slice(&read(path)?)
        .map_err(|e| cerr(format!("{}: not valid JSON: {e}", path.display())))
}

fn cfg_u64(cfg: &Value, key: &str, default: Option<u64>) -> Result<u64> {
    match cfg.get(key) {
        Some(v) => v.as_u64().ok_or_else(|| cerr(format!("config.json: {key} is not an integer"))),
        None => default.ok_or_else(|| cerr(format!("config.json: {key} is missing"))),
    }
}

/// Maps a checkpoint tensor name to ours, or `None` to drop it.
fn canonical(name: &str) -> Option<String> {
    let n = name.strip_prefix("bert.").unwrap_or(name);
    if n.ends_with("position_ids") || n.starts_with("cls.") {
        return None;
    }
    let n = n
        .replace("LayerNorm.gamma", "LayerNorm.weight")
        .replace("LayerNorm.beta", "LayerNorm.bias");
    Some(n)
}

/// Converts the checkpoint in `dir` and writes the model to `out` (atomically).
///
/// # Errors
/// [`Error::Convert`] naming an unsupported architecture, a missing or misshapen tensor, or a bad
/// heads file; [`Error::Io`] for unreadable files.
pub fn convert(dir: &Path, out: &Path, opts: &ConvertOptions) -> Result<()> {
    let bytes = build(dir, opts)?;
    // The same validation as `Engine::new` and `inspect`: a checkpoint holding NaN or infinite
    // weights, or heads that do not match their labels, never becomes a model file.
    crate::model::validate(&crate::format::ModelFile::from_bytes(&bytes)?)?;
    crate::format::write_atomic(out, &bytes)
}

/// As [`convert`], returning the model file's bytes (already validated) instead of writing.
///
/// # Errors
/// As [`convert`].
pub fn build(dir: &Path, opts: &ConvertOptions) -> Result<Vec<u8>> {
    let cfg_path = dir.join("config.json");
    let cfg_bytes = read(&cfg_path)?;
    let cfg: Value = serde_json::from_slice(&cfg_bytes)
        .map_err(|e| cerr(format!("{}: not valid JSON: {e}", cfg_path.display())))?;
    let model_type = cfg.get("model_type").and_then(Value::as_str).unwrap_or("");
    if model_type != "bert" {
        return Err(cerr(format!(
            "unsupported architecture {model_type:?} in config.json (supported: \"bert\", which \
             includes MiniLM and other BERT-family checkpoints)"
        )));
    }
    let act = cfg.get("hidden_act").and_then(Value::as_str).unwrap_or("gelu");
    if act != "gelu" {
        return Err(cerr(format!("unsupported hidden_act {act:?} (supported: \"gelu\")")));
    }
    if let Some(p) = cfg.get("position_embedding_type").and_then(Value::as_str) {
        if p != "absolute" {
            return Err(cerr(format!("unsupported position_embedding_type {p:?}")));
        }
    }
    let st_path = dir.join("model.safetensors");
    let st_bytes = read(&st_path)?;
    let st = safetensors::SafeTensors::deserialize(&st_bytes)
        .map_err(|e| cerr(format!("{}: {e}", st_path.display())))?;
    let tk_path = dir.join("tokenizer.json");
    let tk_bytes = read(&tk_path)?;
    tokenizers::Tokenizer::from_bytes(&tk_bytes)
        .map_err(|e| cerr(format!("{}: not a usable tokenizer: {e}", tk_path.display())))?;

    // Load every tensor as f32 under its canonical name.
    let mut tensors: BTreeMap<String, (Vec<u64>, Vec<f32>)> = BTreeMap::new();
    for (name, view) in st.tensors() {
        let Some(cname) = canonical(&name) else { continue };
        let shape: Vec<u64> = view.shape().iter().map(|&d| d as u64).collect();
        let data = view.data();
        let v: Vec<f32> = match view.dtype() {
            safetensors::Dtype::F32 => {
                data.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect()
            }
            safetensors::Dtype::F16 => data
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes(b.try_into().unwrap()).to_f32())
                .collect(),
            safetensors::Dtype::BF16 => data
                .chunks_exact(2)
                .map(|b| half::bf16::from_le_bytes(b.try_into().unwrap()).to_f32())
                .collect(),
            other => return Err(cerr(format!("tensor {name:?} has unsupported dtype {other:?}"))),
        };
        tensors.insert(cname, (shape, v));
    }

    let h = cfg_u64(&cfg, "hidden_size", None)?;
    let max_pos = cfg_u64(&cfg, "max_position_embeddings", None)?;
    let has_classifier = tensors.contains_key("classifier.weight");
    let (pooling0, normalize0) = sentence_transformers_pooling(dir)?;
    let pooling = opts.pooling.or(pooling0).unwrap_or(if has_classifier {
        Pooling::ClsPooler
    } else {
        Pooling::Mean
    });
    let normalize = opts.normalize.or(normalize0).unwrap_or(false);
    let max_seq_len = max_seq_len(dir, &tk_bytes)?.unwrap_or(max_pos).min(max_pos);
    let arch = Architecture {
        model_type: "bert".into(),
        vocab_size: cfg_u64(&cfg, "vocab_size", None)?,
        hidden_size: h,
        num_layers: cfg_u64(&cfg, "num_hidden_layers", None)?,
        num_heads: cfg_u64(&cfg, "num_attention_heads", None)?,
        intermediate_size: cfg_u64(&cfg, "intermediate_size", None)?,
        max_position_embeddings: max_pos,
        type_vocab_size: cfg_u64(&cfg, "type_vocab_size", Some(2))?,
        layer_norm_eps: cfg.get("layer_norm_eps").and_then(Value::as_f64).unwrap_or(1e-12),
        hidden_act: "gelu".into(),
        pooling,
        normalize,
        max_seq_len,
    };

    let mut prov = Provenance {
        source: dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
        converter: format!("turnscore-convert {}", env!("CARGO_PKG_VERSION")),
        ..Default::default()
    };
    prov.source_sha256.insert("config.json".into(), hex_sha256(&cfg_bytes));
    prov.source_sha256.insert("model.safetensors".into(), hex_sha256(&st_bytes));
    prov.source_sha256.insert("tokenizer.json".into(), hex_sha256(&tk_bytes));

    // Required encoder tensors, in a fixed order.
    let mut names = vec![
        "embeddings.word_embeddings.weight".to_string(),
        "embeddings.position_embeddings.weight".into(),
        "embeddings.token_type_embeddings.weight".into(),
        "embeddings.LayerNorm.weight".into(),
        "embeddings.LayerNorm.bias".into(),
    ];
    for i in 0..arch.num_layers {
        for part in [
            "attention.self.query",
            "attention.self.key",
            "attention.self.value",
            "attention.output.dense",
            "attention.output.LayerNorm",
            "intermediate.dense",
            "output.dense",
            "output.LayerNorm",
        ] {
            names.push(format!("encoder.layer.{i}.{part}.weight"));
            names.push(format!("encoder.layer.{i}.{part}.bias"));
        }
    }
    if pooling == Pooling::ClsPooler {
        names.push("pooler.dense.weight".into());
        names.push("pooler.dense.bias".into());
    }

    let model_id = opts.model_id.clone().unwrap_or_else(|| prov.source.clone());
    let mut heads: (Option<HeadMeta>, Option<HeadMeta>) = (None, None);
    let mut extra: Vec<(String, Vec<u64>, Vec<f32>)> = Vec::new();
    if let Some(hp) = &opts.heads {
        let hb = read(hp)?;
        let hf: HeadsFile = serde_json::from_slice(&hb)
            .map_err(|e| cerr(format!("{}: not a heads file: {e}", hp.display())))?;
        if hf.hidden_size as u64 != h {
            return Err(cerr(format!(
                "{}: heads were trained on width {}, the checkpoint's hidden_size is {h}",
                hp.display(),
                hf.hidden_size
            )));
        }
        prov.source_sha256.insert("heads".into(), hex_sha256(&hb));
        prov.notes.extend(hf.notes.iter().cloned());
        for (kind, head) in [("topics", &hf.topics), ("sensitive", &hf.sensitive)] {
            let n = head.labels.len();
            if head.weight.len() != n
                || head.bias.len() != n
                || head.weight.iter().any(|r| r.len() as u64 != h)
            {
                return Err(cerr(format!(
                    "{}: {kind} head weights are not [{n}][{h}] with {n} biases",
                    hp.display()
                )));
            }
            let w = format!("heads.{kind}.weight");
            let b = format!("heads.{kind}.bias");
            extra.push((w.clone(), vec![n as u64, h], head.weight.concat()));
            extra.push((b.clone(), vec![n as u64], head.bias.clone()));
            let meta = HeadMeta { labels: head.labels.clone(), weight: w, bias: b };
            if kind == "topics" {
                heads.0 = Some(meta)
            } else {
                heads.1 = Some(meta)
            }
        }
    } else if has_classifier {
        let (w, b) = match (tensors.get("classifier.weight"), tensors.get("classifier.bias")) {
            (Some(w), Some(b)) => (w.clone(), b.clone()),
            _ => return Err(cerr("tensor \"classifier.bias\" is missing")),
        };
        let n = w.0.first().copied().unwrap_or(0);
        match cfg.get("problem_type").and_then(Value::as_str) {
            Some("multi_label_classification") => {}
            None => prov.notes.push(
                "config.json sets no problem_type; the classifier is applied as multi-label sigmoid"
                    .into(),
            ),
            Some(other) => {
                return Err(cerr(format!(
                    "problem_type {other:?} is not supported: turnscore heads are multi-label \
                     sigmoid (problem_type \"multi_label_classification\")"
                )))
            }
        }
        let id2label = cfg.get("id2label").and_then(Value::as_object);
        let labels = (0..n)
            .map(|i| {
                let name = id2label
                    .and_then(|m| m.get(&i.to_string()))
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("LABEL_{i}"));
                LabelMeta { name, threshold: 0.5, trained: true, calibration: None }
            })
            .collect();
        let kind = if opts.checkpoint_head == HeadKind::Topics { "topics" } else { "sensitive" };
        let (wn, bn) = (format!("heads.{kind}.weight"), format!("heads.{kind}.bias"));
        extra.push((wn.clone(), w.0, w.1));
        extra.push((bn.clone(), b.0, b.1));
        let meta = HeadMeta { labels, weight: wn, bias: bn };
        if opts.checkpoint_head == HeadKind::Topics {
            heads.0 = Some(meta)
        } else {
            heads.1 = Some(meta)
        }
    }

    let mut wr = ModelWriter::new(&model_id, opts.quant.describe(), arch, prov);
    wr.set_tokenizer(tk_bytes);
    for name in &names {
        let (shape, v) = tensors.get(name).ok_or_else(|| {
            cerr(format!("tensor {name:?} is missing from {}", st_path.display()))
        })?;
        let is_matrix = shape.len() == 2;
        let encoder_linear =
            name.starts_with("encoder.layer.") && name.ends_with(".weight") && is_matrix;
        match opts.quant {
            Quant::Int8 if encoder_linear => wr.add_i8_packed(name, shape, v)?,
            Quant::F16Emb8 | Quant::Int8 if name == "embeddings.word_embeddings.weight" => {
                wr.add_i8_rows(name, shape, v)?
            }
            Quant::Int8 if is_matrix => wr.add_f16(name, shape, v)?,
            Quant::F16 | Quant::F16Emb8 if is_matrix => wr.add_f16(name, shape, v)?,
            _ => wr.add_f32(name, shape, v)?,
        }
    }
    for (name, shape, v) in &extra {
        wr.add_f32(name, shape, v)?;
    }
    wr.set_topics(heads.0);
    wr.set_sensitive(heads.1);
    // Validate the result exactly as the engine will at open.
    let bytes = wr.to_bytes()?;
    let model = crate::format::ModelFile::from_bytes(&bytes)?;
    crate::model::Weights::new(&model)
        .map_err(|e| cerr(format!("converted model does not load: {e}")))?;
    drop(model);
    Ok(bytes)
}

fn sentence_transformers_pooling(dir: &Path) -> Result<(Option<Pooling>, Option<bool>)> {
    let modules = dir.join("modules.json");
    if !modules.exists() {
        return Ok((None, None));
    }
    let m = read_json(&modules)?;
    let list = m.as_array().cloned().unwrap_or_default();
    let ty = |v: &Value| v.get("type").and_then(Value::as_str).unwrap_or("").to_string();
    let normalize = list.iter().any(|v| ty(v).ends_with("Normalize"));
    let mut pooling = None;
    if let Some(p) = list.iter().find(|v| ty(v).ends_with("Pooling")) {
        let sub = p.get("path").and_then(Value::as_str).unwrap_or("1_Pooling");
        let pc = read_json(&dir.join(sub).join("config.json"))?;
        let on = |k: &str| pc.get(k).and_then(Value::as_bool).unwrap_or(false);
        pooling = if on("pooling_mode_mean_tokens") {
            Some(Pooling::Mean)
        } else if on("pooling_mode_cls_token") {
            Some(Pooling::Cls)
        } else {
            return Err(cerr(format!(
                "{}: only mean and CLS pooling are supported",
                dir.join(sub).join("config.json").display()
            )));
        };
    }
    Ok((pooling, Some(normalize)))
}

fn max_seq_len(dir: &Path, tokenizer_json: &[u8]) -> Result<Option<u64>> {
    let sb = dir.join("sentence_bert_config.json");
    if sb.exists() {
        if let Some(n) = read_json(&sb)?.get("max_seq_length").and_then(Value::as_u64) {
            return Ok(Some(n));
        }
    }
    let tk: Value = serde_json::from_slice(tokenizer_json).unwrap_or(Value::Null);
    Ok(tk.pointer("/truncation/max_length").and_then(Value::as_u64))
}
