//! The `turnscore._native` extension module: the engine behind `turnscore.Engine` (see
//! `turnscore/__init__.py` for the Python-facing API and its documentation).
//!
//! Arrow data crosses through the Arrow C data interface (`arrow-pyarrow`): the input batch's
//! buffers are borrowed, not copied, and the output batch's buffers are handed to pyarrow, not
//! copied. What does copy: each admitted turn's text is read into the engine's row (one copy of
//! the text column, needed to tokenize), and the string fields of the output (`id`, `user_id`,
//! `conversation_id`) are built anew.

use arrow_array::RecordBatch;
use arrow_pyarrow::PyArrowType;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use std::sync::Arc;
use turnscore::input::{rows_from_batch, FieldMap, ReadOptions, DEFAULT_MAX_TEXT_BYTES};
use turnscore::policy::Policy;
use turnscore::{Engine, EngineOptions};

fn err(e: impl std::fmt::Display) -> PyErr {
    PyValueError::new_err(e.to_string())
}

/// A loaded model with its policy. Thread-safe; inference runs with the GIL released.
#[pyclass(module = "turnscore._native", frozen)]
struct NativeEngine {
    engine: Arc<Engine>,
}

#[pymethods]
impl NativeEngine {
    /// `model`: a model file path, or None for the bundled default. `policy`: a policy JSON
    /// document (the file's content), or None for the built-in strict policy.
    #[new]
    #[pyo3(signature = (model=None, threads=1, policy=None, batch_tokens=512))]
    fn new(
        model: Option<String>,
        threads: usize,
        policy: Option<String>,
        batch_tokens: usize,
    ) -> PyResult<Self> {
        let policy = match policy {
            Some(p) => Policy::from_json(p.as_bytes()).map_err(err)?,
            None => Policy::default(),
        };
        let opts = EngineOptions { threads, batch_tokens, policy, ..Default::default() };
        let engine = match model {
            Some(p) => Engine::open(&p, opts),
            None => Engine::bundled(opts),
        }
        .map_err(err)?;
        Ok(NativeEngine { engine: Arc::new(engine) })
    }

    /// Scores one record batch of turns; one output row per input row, in order.
    #[pyo3(signature = (batch, fields, max_text_bytes=None))]
    fn score_batch(
        &self,
        py: Python<'_>,
        batch: PyArrowType<RecordBatch>,
        fields: std::collections::HashMap<String, String>,
        max_text_bytes: Option<usize>,
    ) -> PyResult<PyArrowType<RecordBatch>> {
        let mut map = FieldMap::default();
        for (k, v) in fields {
            let slot = match k.as_str() {
                "id" => &mut map.id,
                "text" => &mut map.text,
                "user_id" => &mut map.user_id,
                "conversation_id" => &mut map.conversation_id,
                "turn" => &mut map.turn,
                "role" => &mut map.role,
                "region" => &mut map.region,
                "consent_ads" => &mut map.consent_ads,
                "is_minor" => &mut map.is_minor,
                "account_linked" => &mut map.account_linked,
                "ts" => &mut map.ts,
                other => return Err(err(format!("unknown field {other:?}"))),
            };
            *slot = v;
        }
        let opts =
            ReadOptions { fields: map, max_text_bytes: max_text_bytes.unwrap_or(DEFAULT_MAX_TEXT_BYTES) };
        let engine = self.engine.clone();
        let batch = batch.0;
        // Inference without the GIL: other Python threads run meanwhile.
        let out = py.detach(move || -> turnscore::Result<RecordBatch> {
            let rows = rows_from_batch(&batch, 1, &opts)?;
            engine.score_rows(&rows)
        });
        out.map(PyArrowType).map_err(err)
    }

    /// The output schema (as pyarrow) for this model's labels.
    fn output_schema(&self) -> PyArrowType<arrow_schema::Schema> {
        let s =
            turnscore::output::schema(self.engine.topic_labels(), self.engine.sensitive_labels());
        PyArrowType(s.as_ref().clone())
    }

    /// `(topics, sensitive)`: each a list of `(name, threshold, trained)`.
    fn labels(&self) -> (Vec<(String, f32, bool)>, Vec<(String, f32, bool)>) {
        let f = |l: &[turnscore::format::LabelMeta]| {
            l.iter().map(|x| (x.name.clone(), x.threshold, x.trained)).collect()
        };
        (f(self.engine.topic_labels()), f(self.engine.sensitive_labels()))
    }

    /// Model and engine facts as JSON.
    fn model_info(&self) -> String {
        let m = self.engine.model();
        let p = self.engine.policy();
        serde_json::json!({
            "engine": format!("turnscore {}", env!("CARGO_PKG_VERSION")),
            "model_id": m.meta().model_id,
            "model_sha256": m.sha256(),
            "quantization": m.meta().quantization,
            "kernels": turnscore::kernels::Kernels::detect().isa().name(),
            "threads": self.engine.threads(),
            "window": self.engine.window(),
            "policy_version": p.version,
            "policy_sha256": p.sha256(),
        })
        .to_string()
    }
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<NativeEngine>()?;
    Ok(())
}
