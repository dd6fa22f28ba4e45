//! The façade: open a model, tokenize, encode, apply heads, build the output batch.

use crate::error::{Error, Result};
use crate::format::{LabelMeta, ModelFile};
use crate::input::Row;
use crate::model::{encode, head_scores, Scratch, Weights};
use crate::output::{build_batch, Outcome, TurnScores};
use crate::policy::Policy;
use arrow_array::RecordBatch;
use rayon::prelude::*;
use std::cell::RefCell;
use std::path::Path;

/// Engine settings.
#[derive(Clone, Debug)]
pub struct EngineOptions {
    /// Worker threads for tokenization and inference; 0 means one per available core.
    pub threads: usize,
    /// Token budget of one encoder batch (turns are grouped by length under this budget).
    pub batch_tokens: usize,
    /// The policy gate (default: [`Policy::default`], the strict built-in policy).
    pub policy: Policy,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions { threads: 0, batch_tokens: 2048, policy: Policy::default() }
    }
}

/// Pooled vectors for a list of texts.
#[derive(Clone, Debug)]
pub struct Embeddings {
    /// Width of each vector.
    pub dim: usize,
    /// `n × dim` row-major.
    pub data: Vec<f32>,
    /// Tokens used per text (special tokens included, after truncation).
    pub tokens: Vec<u32>,
    /// Whether each text was truncated to the model's `max_seq_len`.
    pub truncated: Vec<bool>,
}

impl Embeddings {
    /// Vector `i`.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }
}

/// A loaded model, ready to score. `Send + Sync`: share one engine between threads.
pub struct Engine {
    model: ModelFile,
    tokenizer: tokenizers::Tokenizer,
    pool: rayon::ThreadPool,
    opts: EngineOptions,
    no_labels: Vec<LabelMeta>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("model", &self.model).field("opts", &self.opts).finish()
    }
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

impl Engine {
    /// Memory-maps the model file at `path` and prepares an engine.
    ///
    /// # Errors
    /// Any error of [`ModelFile::open`], or [`Error::Tokenizer`] if the stored tokenizer does not
    /// load.
    pub fn open(path: impl AsRef<Path>, opts: EngineOptions) -> Result<Engine> {
        Self::new(ModelFile::open(path)?, opts)
    }

    /// Opens the default model embedded in this build (feature `bundled-model`).
    ///
    /// # Errors
    /// As [`Engine::new`].
    #[cfg(feature = "bundled-model")]
    pub fn bundled(opts: EngineOptions) -> Result<Engine> {
        Self::new(ModelFile::from_static(crate::bundled::bytes())?, opts)
    }

    /// Prepares an engine over an opened model file.
    ///
    /// # Errors
    /// [`Error::Format`] if tensors are missing or misshapen, [`Error::Tokenizer`] if the stored
    /// tokenizer does not load, [`Error::Invalid`] if the thread pool cannot start.
    pub fn new(model: ModelFile, opts: EngineOptions) -> Result<Engine> {
        Weights::new(&model).map_err(|e| match (e, model.path()) {
            (e @ Error::Format { .. }, Some(p)) => e.with_path(p),
            (e, _) => e,
        })?;
        let mut tokenizer = tokenizers::Tokenizer::from_bytes(model.tokenizer_json())
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
        let max = model.meta().architecture.max_seq_len as usize;
        tokenizer
            .with_truncation(Some(tokenizers::TruncationParams {
                max_length: max,
                ..Default::default()
            }))
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
        tokenizer.with_padding(None);
        if opts.batch_tokens == 0 {
            return Err(Error::Invalid("batch_tokens must be at least 1".into()));
        }
        {
            let names = |h: &Option<crate::format::HeadMeta>| -> Vec<String> {
                h.as_ref().map_or(Vec::new(), |h| h.labels.iter().map(|l| l.name.clone()).collect())
            };
            let (t, s) = (names(&model.meta().topics), names(&model.meta().sensitive));
            let t: Vec<&str> = t.iter().map(String::as_str).collect();
            let s: Vec<&str> = s.iter().map(String::as_str).collect();
            opts.policy.check_labels(&t, &s)?;
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(opts.threads)
            .thread_name(|i| format!("turnscore-{i}"))
            .build()
            .map_err(|e| Error::Invalid(format!("thread pool: {e}")))?;
        Ok(Engine { model, tokenizer, pool, opts, no_labels: Vec::new() })
    }

    /// The model file.
    pub fn model(&self) -> &ModelFile {
        &self.model
    }

    /// The policy this engine applies.
    pub fn policy(&self) -> &Policy {
        &self.opts.policy
    }

    /// Worker threads in use.
    pub fn threads(&self) -> usize {
        self.pool.current_num_threads()
    }

    /// Topic labels (empty if the model has no topic head).
    pub fn topic_labels(&self) -> &[LabelMeta] {
        self.model.meta().topics.as_ref().map_or(&self.no_labels, |h| &h.labels)
    }

    /// Sensitive labels (empty if the model has no sensitive head).
    pub fn sensitive_labels(&self) -> &[LabelMeta] {
        self.model.meta().sensitive.as_ref().map_or(&self.no_labels, |h| &h.labels)
    }

    /// Token ids for each text (special tokens added, truncated to the model's `max_seq_len`),
    /// and whether each was truncated.
    ///
    /// # Errors
    /// [`Error::Tokenizer`] if tokenization fails.
    pub fn tokenize(&self, texts: &[&str]) -> Result<Vec<(Vec<u32>, bool)>> {
        self.pool.install(|| {
            texts
                .par_iter()
                .map(|t| {
                    let enc = self
                        .tokenizer
                        .encode(*t, true)
                        .map_err(|e| Error::Tokenizer(e.to_string()))?;
                    Ok((enc.get_ids().to_vec(), !enc.get_overflowing().is_empty()))
                })
                .collect()
        })
    }

    /// Pooled vectors (what the heads see) for token id sequences.
    ///
    /// # Errors
    /// [`Error::Invalid`] for an empty or too long sequence or an id outside the vocabulary.
    pub fn embed_ids(&self, seqs: &[Vec<u32>]) -> Result<Vec<f32>> {
        let h = self.model.meta().architecture.hidden_size as usize;
        // Group by length under the token budget; original order is restored below.
        let mut order: Vec<usize> = (0..seqs.len()).collect();
        order.sort_by_key(|&i| seqs[i].len());
        let mut batches: Vec<Vec<usize>> = Vec::new();
        let mut cur = Vec::new();
        let mut tokens = 0;
        for i in order {
            let l = seqs[i].len();
            if !cur.is_empty() && tokens + l > self.opts.batch_tokens {
                batches.push(std::mem::take(&mut cur));
                tokens = 0;
            }
            cur.push(i);
            tokens += l;
        }
        if !cur.is_empty() {
            batches.push(cur);
        }
        let outs: Vec<Result<Vec<f32>>> = self.pool.install(|| {
            batches
                .par_iter()
                .map(|b| {
                    let w = Weights::new(&self.model)?;
                    let refs: Vec<&[u32]> = b.iter().map(|&i| seqs[i].as_slice()).collect();
                    SCRATCH.with(|s| encode(&w, &refs, &mut s.borrow_mut()))
                })
                .collect()
        });
        let mut pooled = vec![0f32; seqs.len() * h];
        for (b, out) in batches.iter().zip(outs) {
            let out = out?;
            for (j, &i) in b.iter().enumerate() {
                pooled[i * h..(i + 1) * h].copy_from_slice(&out[j * h..(j + 1) * h]);
            }
        }
        Ok(pooled)
    }

    /// Pooled vectors for texts.
    ///
    /// # Errors
    /// As [`Engine::tokenize`] and [`Engine::embed_ids`].
    pub fn embed(&self, texts: &[&str]) -> Result<Embeddings> {
        let toks = self.tokenize(texts)?;
        let tokens = toks.iter().map(|(t, _)| t.len() as u32).collect();
        let truncated = toks.iter().map(|(_, tr)| *tr).collect();
        let ids: Vec<Vec<u32>> = toks.into_iter().map(|(t, _)| t).collect();
        let data = self.embed_ids(&ids)?;
        Ok(Embeddings {
            dim: self.model.meta().architecture.hidden_size as usize,
            data,
            tokens,
            truncated,
        })
    }

    /// Head scores for pooled vectors (`n × hidden`): `(topics, sensitive)`, each `n × labels`.
    pub fn head_scores(&self, pooled: &[f32], n: usize) -> Result<(Vec<f32>, Vec<f32>)> {
        let w = Weights::new(&self.model)?;
        let mut buf = Vec::new();
        let t = w.topics.as_ref().map_or(Vec::new(), |hd| head_scores(hd, pooled, n, &mut buf));
        let s = w.sensitive.as_ref().map_or(Vec::new(), |hd| head_scores(hd, pooled, n, &mut buf));
        Ok((t, s))
    }

    /// Scores texts: one [`TurnScores`] per text, in order.
    ///
    /// # Errors
    /// As [`Engine::embed`].
    pub fn score_texts(&self, texts: &[&str]) -> Result<Vec<TurnScores>> {
        let e = self.embed(texts)?;
        let n = texts.len();
        let (t, s) = self.head_scores(&e.data, n)?;
        let (nt, ns) = (self.topic_labels().len(), self.sensitive_labels().len());
        Ok((0..n)
            .map(|i| TurnScores {
                topics: t[i * nt..(i + 1) * nt].to_vec(),
                sensitive: s[i * ns..(i + 1) * ns].to_vec(),
                tokens: e.tokens[i],
                windows: 1,
            })
            .collect())
    }

    /// Scores input rows into the output batch: one output row per input row, in order.
    ///
    /// The policy admits or suppresses each turn first; suppressed turns are never tokenized.
    /// Rejected rows pass through with their reason. Admitted turns are scored and gated.
    ///
    /// # Errors
    /// As [`Engine::score_texts`], and [`Error::Arrow`] if the batch cannot be built.
    pub fn score_rows(&self, rows: &[Row]) -> Result<RecordBatch> {
        let policy = &self.opts.policy;
        let admit: Vec<Option<crate::policy::Suppression>> =
            rows.iter().map(|r| r.turn.as_ref().ok().and_then(|t| policy.admit(t))).collect();
        let texts: Vec<&str> = rows
            .iter()
            .zip(&admit)
            .filter_map(|(r, a)| match (&r.turn, a) {
                (Ok(t), None) => Some(t.text.as_str()),
                _ => None,
            })
            .collect();
        let mut scored = self.score_texts(&texts)?.into_iter();
        let outcomes: Vec<Outcome> = rows
            .iter()
            .zip(admit)
            .map(|(r, a)| match (&r.turn, a) {
                (Err(_), _) => Outcome::Rejected,
                (Ok(_), Some(s)) => Outcome::Suppressed(s),
                (Ok(_), None) => {
                    Outcome::Scored(scored.next().expect("one score per admitted turn"))
                }
            })
            .collect();
        build_batch(self.topic_labels(), self.sensitive_labels(), policy, rows, &outcomes)
    }
}
