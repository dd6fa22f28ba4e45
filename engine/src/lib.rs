//! # turnscore
//!
//! Scores chat turns between people and AI assistants: which interests a turn shows (for ad
//! targeting) and which sensitive special categories it touches (which must never be used for
//! ads). One memory-mapped model file holds the tokenizer, the BERT-family encoder, both heads and
//! their thresholds; the output is an Arrow [`arrow_array::RecordBatch`] with one row per input
//! row.
//!
//! ```
//! use turnscore::{Engine, EngineOptions};
//! # let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../models/all-minilm-l6-v2.tsm");
//! let engine = Engine::open(path, EngineOptions { threads: 1, ..Default::default() })?;
//! let scores = engine.score_texts(&["cheap flights to Lisbon in May and a hotel"])?;
//! let travel = engine.topic_labels().iter().position(|l| l.name == "travel").unwrap();
//! assert!(scores[0].topics[travel] >= engine.topic_labels()[travel].threshold);
//! # Ok::<(), turnscore::Error>(())
//! ```
//!
//! Rows with the policy fields go through the whole gate and come back as Arrow:
//!
//! ```
//! use arrow_array::cast::AsArray;
//! use turnscore::input::parse_line;
//! use turnscore::{Engine, EngineOptions};
//! # let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../models/all-minilm-l6-v2.tsm");
//! let engine = Engine::open(path, EngineOptions { threads: 1, ..Default::default() })?;
//! let rows = [
//!     r#"{"id":"a","text":"best hiking boots?","role":"user","region":"US","consent_ads":true,"is_minor":false,"account_linked":true}"#,
//!     r#"{"id":"b","text":"best hiking boots?","role":"user","region":"DE","consent_ads":true,"is_minor":false,"account_linked":true}"#,
//!     r#"{"id":"c"}"#,
//! ]
//! .iter()
//! .enumerate()
//! .map(|(i, l)| parse_line(l.as_bytes(), i as u64 + 1))
//! .collect::<Vec<_>>();
//! let batch = engine.score_rows(&rows)?;
//! assert_eq!(batch.num_rows(), 3);
//! let elig = batch.column_by_name("ad_eligible").unwrap().as_boolean();
//! assert!(elig.value(0) && !elig.value(1) && !elig.value(2)); // ok, region:DE, rejected
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
pub mod gate;
pub mod input;
pub mod kernels;
pub mod linalg;
mod model;
#[doc(hidden)]
pub use model::bench_layer;
pub mod output;
pub mod policy;

pub use engine::{Embeddings, Engine, EngineOptions, MAX_THREADS};
pub use error::{Error, Result};
pub use model::{validate as validate_model, Scratch};
