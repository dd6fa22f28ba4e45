//! # turnscore
//!
//! Scores chat turns between people and AI assistants: which interests a turn shows (for ad
//! targeting) and which sensitive special categories it touches (which must never be used for
//! ads). One memory-mapped model file holds the tokenizer, the BERT-family encoder, both heads and
//! their thresholds; the output is an Arrow [`arrow_array::RecordBatch`] with one row per input
//! row.
//!
//! ```no_run
//! use turnscore::{Engine, EngineOptions};
//! let engine = Engine::open("models/all-minilm-l6-v2.tsm", EngineOptions::default())?;
//! let scores = engine.score_texts(&["any good day hikes near Denver?"])?;
//! for (label, s) in engine.topic_labels().iter().zip(&scores[0].topics) {
//!     println!("{} {s:.3}", label.name);
//! }
//! # Ok::<(), turnscore::Error>(())
//! ```
//!
//! Unsafe code, each block with its soundness argument next to it: the memory map in
//! [`format::ModelFile::open`], the call into the `gemm` crate in `linalg::sgemm`, and the SIMD
//! kernels under [`kernels`] (reached only through ISA tokens that prove the CPU supports them).
//! Message text never appears in errors or logs.

#![deny(missing_docs)]

#[cfg(feature = "bundled-model")]
pub mod bundled;
pub mod convert;
mod engine;
mod error;
pub mod format;
pub mod input;
pub mod kernels;
pub mod linalg;
mod model;
pub mod output;
pub mod policy;

pub use engine::{Embeddings, Engine, EngineOptions};
pub use error::{Error, Result};
pub use model::Scratch;
