//! The JSON metadata of a model file: architecture, tokenizer, heads, tensor table, provenance.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Element type of a stored tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DType {
    /// IEEE 754 binary32.
    F32,
    /// IEEE 754 binary16.
    F16,
    /// Signed 8-bit integer. A matrix stored as `i8` has a companion `f32` tensor named
    /// `<name>.scale` with one scale per row: `value[r][c] = q[r][c] as f32 * scale[r]`.
    I8,
    /// A `[n, k]` signed-byte weight matrix (one row per output channel) in the int8 kernels'
    /// packed layout (`kernels::PackedB`: panels of 16 channels, groups of 4 k, `n` padded to 16
    /// and `k` to 4 with zeros), used in place from the mapping. Companions: `<name>.scale`
    /// (`f32 [n]`, `value[j][l] = q[j][l] · scale[j]`) and `<name>.colsum` (`i32 [n]`,
    /// `Σ_l q[j][l]`, for the activations' zero point).
    #[serde(rename = "i8k4n16")]
    I8K4N16,
    /// Signed 32-bit integer.
    I32,
}

impl DType {
    /// Bytes per element (for `i8k4n16`, before padding; see [`DType::byte_len`]).
    pub fn size(self) -> usize {
        match self {
            DType::F32 | DType::I32 => 4,
            DType::F16 => 2,
            DType::I8 | DType::I8K4N16 => 1,
        }
    }

    /// Stored bytes of a tensor of this type and shape, `None` on overflow or (for `i8k4n16`)
    /// a shape that is not 2-d.
    pub fn byte_len(self, shape: &[u64]) -> Option<u64> {
        match self {
            DType::I8K4N16 => match shape {
                [n, k] => n.div_ceil(16).checked_mul(k.div_ceil(4))?.checked_mul(64),
                _ => None,
            },
            _ => shape.iter().try_fold(self.size() as u64, |a, &d| a.checked_mul(d)),
        }
    }
    /// Lower-case name as stored.
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::I8 => "i8",
            DType::I8K4N16 => "i8k4n16",
            DType::I32 => "i32",
        }
    }
}

/// One entry of the tensor table. `offset` is relative to the data region.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TensorMeta {
    /// Hugging Face style name, e.g. `encoder.layer.0.attention.self.query.weight`.
    pub name: String,
    /// Element type.
    pub dtype: DType,
    /// Dimensions, outermost first (row-major).
    pub shape: Vec<u64>,
    /// Byte offset in the data region (a multiple of 64).
    pub offset: u64,
    /// Byte length.
    pub len: u64,
    /// CRC-32 (IEEE) of the bytes.
    pub crc32: u32,
}

/// A byte blob stored in the data region (the tokenizer).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BlobMeta {
    /// Byte offset in the data region (a multiple of 64).
    pub offset: u64,
    /// Byte length.
    pub len: u64,
    /// CRC-32 (IEEE) of the bytes.
    pub crc32: u32,
    /// SHA-256 of the bytes, hex.
    pub sha256: String,
}

/// How token vectors are reduced to the one vector the heads see.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pooling {
    /// Mean over the sequence's tokens (sentence-transformers style).
    Mean,
    /// The `[CLS]` token's vector.
    Cls,
    /// `tanh(W · h_cls + b)`: BERT's pooler, as `BertForSequenceClassification` uses it.
    ClsPooler,
}

/// The encoder's architecture and dimensions.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Architecture {
    /// `bert` (MiniLM checkpoints are `bert` too).
    pub model_type: String,
    /// Token vocabulary size.
    pub vocab_size: u64,
    /// Hidden width.
    pub hidden_size: u64,
    /// Number of encoder layers.
    pub num_layers: u64,
    /// Attention heads per layer.
    pub num_heads: u64,
    /// Feed-forward width.
    pub intermediate_size: u64,
    /// Position embedding table size.
    pub max_position_embeddings: u64,
    /// Token type table size.
    pub type_vocab_size: u64,
    /// LayerNorm epsilon.
    pub layer_norm_eps: f64,
    /// Feed-forward activation; `gelu` (erf form) is the one supported.
    pub hidden_act: String,
    /// Pooling.
    pub pooling: Pooling,
    /// Whether the pooled vector is L2-normalised before the heads.
    pub normalize: bool,
    /// Turns are truncated to this many tokens (special tokens included).
    pub max_seq_len: u64,
}

/// One label of a head.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LabelMeta {
    /// Label name, e.g. `travel` or `health`.
    pub name: String,
    /// Decision threshold on the sigmoid score: a label is on when `score >= threshold`.
    pub threshold: f32,
    /// False when the head had no training examples for this label: it never fires.
    #[serde(default = "yes")]
    pub trained: bool,
    /// How the score was calibrated, when it was. The map is folded into the head's weights, so
    /// the stored score is already calibrated; this records what was fitted, and on what.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration: Option<Calibration>,
}

/// A Platt map `p = sigmoid(a · z + b)` over the head's raw logit `z`, fitted on held-out rows
/// and folded into the head (`W' = a·W`, `b' = a·bias + b`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// `"platt"`.
    pub method: String,
    /// Slope over the raw logit.
    pub a: f32,
    /// Offset.
    pub b: f32,
    /// What it was fitted on, e.g. `"data/chat dev, 878 rows, 41 positives"`.
    pub fitted_on: String,
}

fn yes() -> bool {
    true
}

/// A multi-label head: `sigmoid(W · pooled + b)` per label.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HeadMeta {
    /// Its labels, in the order of the weight rows.
    pub labels: Vec<LabelMeta>,
    /// Name of the `[labels, hidden]` weight tensor.
    pub weight: String,
    /// Name of the `[labels]` bias tensor.
    pub bias: String,
}

/// Where the model came from.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Provenance {
    /// What the converter read, e.g. a checkpoint directory name.
    pub source: String,
    /// SHA-256 of each source file, by file name.
    pub source_sha256: BTreeMap<String, String>,
    /// `turnscore-convert <version>`.
    pub converter: String,
    /// Free-form notes (head training data, etc.).
    #[serde(default)]
    pub notes: Vec<String>,
}

/// The whole metadata document.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Meta {
    /// Always `turnscore-model`.
    pub format: String,
    /// A human-readable model id, e.g. `all-MiniLM-L6-v2+heads-v1`.
    pub model_id: String,
    /// How weights are stored, e.g. `f32`, or `f16 (word embeddings i8 per row)`.
    pub quantization: String,
    /// Encoder architecture.
    pub architecture: Architecture,
    /// The Hugging Face `tokenizer.json`.
    pub tokenizer: BlobMeta,
    /// The topic head, if any.
    pub topics: Option<HeadMeta>,
    /// The sensitive head, if any.
    pub sensitive: Option<HeadMeta>,
    /// Every tensor.
    pub tensors: Vec<TensorMeta>,
    /// Provenance.
    pub provenance: Provenance,
}

impl Meta {
    /// Checks values that the byte-level checks cannot: dimensions, label names, thresholds.
    pub(crate) fn validate(&self) -> Result<()> {
        let f = |s: String| Err(Error::format(s));
        if self.format != "turnscore-model" {
            return f(format!(
                "metadata format is {:?}, expected \"turnscore-model\"",
                self.format
            ));
        }
        let a = &self.architecture;
        if a.model_type != "bert" {
            return f(format!(
                "architecture {:?} is not supported (supported: bert)",
                a.model_type
            ));
        }
        if a.hidden_act != "gelu" {
            return f(format!("activation {:?} is not supported (supported: gelu)", a.hidden_act));
        }
        let dims = [
            ("vocab_size", a.vocab_size, 1 << 22),
            ("hidden_size", a.hidden_size, 1 << 14),
            ("num_layers", a.num_layers, 256),
            ("num_heads", a.num_heads, 256),
            ("intermediate_size", a.intermediate_size, 1 << 16),
            ("max_position_embeddings", a.max_position_embeddings, 1 << 16),
            ("type_vocab_size", a.type_vocab_size, 1 << 10),
            ("max_seq_len", a.max_seq_len, 1 << 16),
        ];
        for (name, v, max) in dims {
            if v == 0 || v > max {
                return f(format!("architecture.{name} = {v} is out of range (1..={max})"));
            }
        }
        if !a.hidden_size.is_multiple_of(a.num_heads) {
            return f(format!(
                "hidden_size {} is not a multiple of num_heads {}",
                a.hidden_size, a.num_heads
            ));
        }
        if a.max_seq_len > a.max_position_embeddings {
            return f(format!(
                "max_seq_len {} exceeds max_position_embeddings {}",
                a.max_seq_len, a.max_position_embeddings
            ));
        }
        if !(a.layer_norm_eps.is_finite() && a.layer_norm_eps > 0.0) {
            return f(format!("layer_norm_eps {} is not a positive number", a.layer_norm_eps));
        }
        for (hname, head) in [("topics", &self.topics), ("sensitive", &self.sensitive)] {
            let Some(h) = head else { continue };
            let mut seen = std::collections::HashSet::new();
            for l in &h.labels {
                if l.name.is_empty() || !seen.insert(l.name.as_str()) {
                    return f(format!("{hname} head: label {:?} is empty or repeated", l.name));
                }
                if !(0.0..=1.0).contains(&l.threshold) {
                    return f(format!(
                        "{hname} head: threshold {} of label {:?} is not in [0, 1]",
                        l.threshold, l.name
                    ));
                }
            }
        }
        Ok(())
    }
}
