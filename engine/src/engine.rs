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
    /// Worker threads for tokenization and inference; 0 means one per available core. At most
    /// [`MAX_THREADS`].
    pub threads: usize,
    /// Token budget of one encoder batch (turns are grouped by length under this budget).
    pub batch_tokens: usize,
    /// Tokens that consecutive windows of a long turn share (a turn longer than the model's
    /// `max_seq_len` is scored in overlapping windows and its scores max-pooled). `None`: a
    /// quarter of the window, at most 64.
    pub stride: Option<usize>,
    /// Tokens per window (special tokens included), at most the model's `max_seq_len`. `None`:
    /// `max_seq_len`. Shorter windows dilute a short disclosure in a long turn less (the pooled
    /// vector is a mean over the window), at the cost of more windows.
    pub window: Option<usize>,
    /// The policy gate (default: [`Policy::default`], the strict built-in policy).
    pub policy: Policy,
}

/// The most worker threads an engine takes. More than this is refused rather than started: the
/// pool's threads are created up front, and a mistyped `100000` would otherwise spend minutes
/// creating threads that have nothing to do.
pub const MAX_THREADS: usize = 256;

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            threads: 0,
            batch_tokens: 512,
            stride: None,
            window: None,
            policy: Policy::default(),
        }
    }
}

/// Pooled vectors for a list of texts.
#[derive(Clone, Debug)]
pub struct Embeddings {
    /// Width of each vector.
    pub dim: usize,
    /// `n × dim` row-major.
    pub data: Vec<f32>,
    /// Tokens of each text (special tokens included; all of them are scored).
    pub tokens: Vec<u32>,
    /// Windows each text was scored in (1 unless it is longer than the model's `max_seq_len`).
    pub windows: Vec<u32>,
}

/// One tokenized text: the windows the encoder sees, and the text's full token count.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tokenized {
    /// Token id sequences, each at most `max_seq_len` long, with the model's special tokens.
    pub windows: Vec<Vec<u32>>,
    /// Tokens of the whole text, special tokens included (context tokens not counted).
    pub tokens: u32,
    /// For a turn scored with context (one window, a sentence pair `[CLS] context [SEP] turn
    /// [SEP]`): the index where the turn's segment starts. `None` for a turn scored alone.
    pub pair_start: Option<u32>,
}

/// Splits a tokenized text into windows of at most `max` tokens.
///
/// `special[i]` marks special tokens; the leading and trailing runs of them (`[CLS]`, `[SEP]` for
/// BERT) are repeated around every window, and the content between them is cut into chunks of
/// `max - specials` tokens, consecutive chunks sharing `stride` tokens. A text that fits is one
/// window, unchanged.
pub fn split_windows(ids: &[u32], special: &[u32], max: usize, stride: usize) -> Vec<Vec<u32>> {
    if ids.len() <= max {
        return vec![ids.to_vec()];
    }
    let lead = special.iter().take_while(|&&m| m == 1).count().min(ids.len());
    let trail = special[lead..].iter().rev().take_while(|&&m| m == 1).count();
    let (head, content, tail) =
        (&ids[..lead], &ids[lead..ids.len() - trail], &ids[ids.len() - trail..]);
    let width = max.saturating_sub(lead + trail).max(1);
    let step = width.saturating_sub(stride).max(1);
    let mut out = Vec::new();
    let mut start = 0;
    loop {
        let end = (start + width).min(content.len());
        let mut w = Vec::with_capacity(lead + (end - start) + trail);
        w.extend_from_slice(head);
        w.extend_from_slice(&content[start..end]);
        w.extend_from_slice(tail);
        out.push(w);
        if end == content.len() {
            return out;
        }
        start += step;
    }
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
        crate::model::validate(&model).map_err(|e| match (e, model.path()) {
            (e @ Error::Format { .. }, Some(p)) => e.with_path(p),
            (e, _) => e,
        })?;
        let mut tokenizer = tokenizers::Tokenizer::from_bytes(model.tokenizer_json())
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
        let max = model.meta().architecture.max_seq_len as usize;
        // No truncation: long turns are split into windows instead (see `split_windows`).
        tokenizer.with_truncation(None).map_err(|e| Error::Tokenizer(e.to_string()))?;
        let model_max = max;
        let max = opts.window.unwrap_or(model_max);
        if max < 3 || max > model_max {
            return Err(Error::Invalid(format!(
                "window {max} must be between 3 and the model's max_seq_len ({model_max})"
            )));
        }
        let stride = opts.stride.unwrap_or((max.saturating_sub(2) / 4).min(64));
        if stride >= max.saturating_sub(2) {
            return Err(Error::Invalid(format!(
                "stride {stride} must be smaller than the model's window ({max} tokens) minus its special tokens"
            )));
        }
        let mut opts = opts;
        opts.stride = Some(stride);
        opts.window = Some(max);
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
        if opts.threads > MAX_THREADS {
            return Err(Error::Invalid(format!(
                "threads {} is over the limit of {MAX_THREADS} (0 = one per core)",
                opts.threads
            )));
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

    /// Tokens per window.
    pub fn window(&self) -> usize {
        self.opts.window.unwrap_or(0)
    }

    /// Tokens shared by consecutive windows of a long turn.
    pub fn stride(&self) -> usize {
        self.opts.stride.unwrap_or(0)
    }

    /// Where a runtime that truncates at `max_tokens` (special tokens included, as a Hugging
    /// Face tokenizer with `truncation=True, max_length=max_tokens` does) stops reading `text`:
    /// `Some(n)` when the text is longer, `text[..n]` being the part it reads (cut after the last
    /// content token it keeps); `None` when it reads the whole text. turnscore itself never
    /// truncates (long turns are scored in windows); this is for comparing with runtimes that do
    /// (`turnscore bench --same-work`).
    ///
    /// # Errors
    /// [`Error::Tokenizer`] if tokenization fails.
    pub fn truncation_point(&self, text: &str, max_tokens: usize) -> Result<Option<usize>> {
        let enc = self.tokenizer.encode(text, true).map_err(|e| Error::Tokenizer(e.to_string()))?;
        if enc.get_ids().len() <= max_tokens {
            return Ok(None);
        }
        let special = enc.get_special_tokens_mask();
        let specials = special.iter().filter(|&&s| s != 0).count();
        // The content tokens it keeps; the text ends where the last of them does.
        let Some(last) = max_tokens.saturating_sub(specials).checked_sub(1) else {
            return Ok(Some(0));
        };
        let content = enc.get_offsets().iter().zip(special).filter(|(_, &s)| s == 0);
        Ok(Some(content.map(|(o, _)| o.1).nth(last).unwrap_or(text.len())))
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

    /// Tokenizes texts into the windows the encoder sees (see [`split_windows`]).
    ///
    /// # Errors
    /// [`Error::Tokenizer`] if tokenization fails.
    pub fn tokenize(&self, texts: &[&str]) -> Result<Vec<Tokenized>> {
        let max = self.window();
        self.pool.install(|| {
            texts
                .par_iter()
                .map(|t| {
                    let enc = self
                        .tokenizer
                        .encode(*t, true)
                        .map_err(|e| Error::Tokenizer(e.to_string()))?;
                    let ids = enc.get_ids();
                    let windows =
                        split_windows(ids, enc.get_special_tokens_mask(), max, self.stride());
                    Ok(Tokenized { windows, tokens: ids.len() as u32, pair_start: None })
                })
                .collect()
        })
    }

    /// Tokenizes turns, each with an optional context (the conversation's previous turns), into
    /// what the encoder sees. A turn with context becomes one sentence pair `[CLS] context [SEP]
    /// turn [SEP]`, the context cut from its start (the most recent words kept) to fit the
    /// window; a turn without context, or too long to leave room for any, is tokenized as by
    /// [`Engine::tokenize`].
    ///
    /// # Errors
    /// [`Error::Tokenizer`] if tokenization fails.
    pub fn tokenize_in_context(
        &self,
        texts: &[&str],
        contexts: &[Option<&str>],
    ) -> Result<Vec<Tokenized>> {
        if contexts.len() != texts.len() {
            return Err(Error::Invalid(format!(
                "{} contexts for {} texts",
                contexts.len(),
                texts.len()
            )));
        }
        let mut out = self.tokenize(texts)?;
        let max = self.window();
        let tk = &self.tokenizer;
        let with: Vec<(usize, &str)> = contexts
            .iter()
            .enumerate()
            .filter_map(|(i, c)| c.filter(|c| !c.trim().is_empty()).map(|c| (i, c)))
            .collect();
        let ctx_ids: Vec<Result<Vec<u32>>> = self.pool.install(|| {
            with.par_iter()
                .map(|&(_, c)| {
                    tk.encode(c, false)
                        .map(|e| e.get_ids().to_vec())
                        .map_err(|e| Error::Tokenizer(e.to_string()))
                })
                .collect()
        });
        for (&(i, _), ctx) in with.iter().zip(ctx_ids) {
            let ctx = ctx?;
            let t = &mut out[i];
            if t.windows.len() != 1 || ctx.is_empty() {
                continue;
            }
            let ids = &t.windows[0];
            // [CLS] turn [SEP] → room for the context and one more [SEP].
            let room = max.saturating_sub(ids.len() + 1);
            if ids.len() < 2 || room == 0 {
                continue;
            }
            let tail = &ctx[ctx.len().saturating_sub(room)..];
            let sep = *ids.last().expect("at least 2 ids");
            let mut seq = Vec::with_capacity(ids.len() + tail.len() + 1);
            seq.push(ids[0]);
            seq.extend_from_slice(tail);
            seq.push(sep);
            let start = seq.len() as u32;
            seq.extend_from_slice(&ids[1..]);
            t.windows[0] = seq;
            t.pair_start = Some(start);
        }
        Ok(out)
    }

    /// Pooled vectors (what the heads see) for token id sequences.
    ///
    /// # Errors
    /// [`Error::Invalid`] for an empty or too long sequence or an id outside the vocabulary.
    pub fn embed_ids<S: AsRef<[u32]> + Sync>(&self, seqs: &[S]) -> Result<Vec<f32>> {
        self.embed_ids_pairs(&Weights::new(&self.model)?, seqs, &[])
    }

    /// As [`Engine::embed_ids`], with `pair_start[i]` marking sequence `i` as a sentence pair
    /// whose second segment (token type 1, and the only tokens mean pooling covers) starts
    /// there; an empty slice means no pairs. `w` is the model's weights, resolved once per call
    /// (about 40 µs on the bundled model) and shared by its batches and the heads.
    fn embed_ids_pairs<S: AsRef<[u32]> + Sync>(
        &self,
        w: &Weights<'_>,
        seqs: &[S],
        pair_start: &[Option<usize>],
    ) -> Result<Vec<f32>> {
        let h = self.model.meta().architecture.hidden_size as usize;
        // Group by length under the token budget; original order is restored below.
        let mut order: Vec<usize> = (0..seqs.len()).collect();
        order.sort_by_key(|&i| seqs[i].as_ref().len());
        let mut batches: Vec<Vec<usize>> = Vec::new();
        let mut cur = Vec::new();
        let mut tokens = 0;
        for i in order {
            let l = seqs[i].as_ref().len();
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
                    let refs: Vec<&[u32]> = b.iter().map(|&i| seqs[i].as_ref()).collect();
                    let segb: Vec<Option<usize>> =
                        b.iter().map(|&i| pair_start.get(i).copied().flatten()).collect();
                    SCRATCH.with(|s| encode(w, &refs, &segb, &mut s.borrow_mut()))
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

    /// Pooled vectors for texts. A text scored in several windows gets the mean of their
    /// vectors (re-normalised when the model normalises); a one-window text gets its window's
    /// vector unchanged.
    ///
    /// # Errors
    /// As [`Engine::tokenize`] and [`Engine::embed_ids`].
    pub fn embed(&self, texts: &[&str]) -> Result<Embeddings> {
        let h = self.model.meta().architecture.hidden_size as usize;
        let toks = self.tokenize(texts)?;
        let (flat, owner) = flatten(&toks);
        let v = self.embed_ids(&flat)?;
        Ok(self.mean_over_windows(&toks, &owner, &v, h))
    }

    /// As [`Engine::embed`], together with each text's scores as [`Engine::score_texts`] gives
    /// them (each label's maximum over the text's windows), from one encoder pass: what the gate
    /// needs to say whether an embedded turn is ad-eligible.
    ///
    /// # Errors
    /// As [`Engine::embed`].
    pub fn embed_scored(&self, texts: &[&str]) -> Result<(Embeddings, Vec<TurnScores>)> {
        let h = self.model.meta().architecture.hidden_size as usize;
        let toks = self.tokenize(texts)?;
        let (flat, owner) = flatten(&toks);
        let w = Weights::new(&self.model)?;
        let v = self.embed_ids_pairs(&w, &flat, &[])?;
        let scores = self.max_over_windows(&toks, &owner, &w, &v, flat.len());
        Ok((self.mean_over_windows(&toks, &owner, &v, h), scores))
    }

    fn mean_over_windows(
        &self,
        toks: &[Tokenized],
        owner: &[usize],
        v: &[f32],
        h: usize,
    ) -> Embeddings {
        let mut data = vec![0f32; toks.len() * h];
        let mut count = vec![0u32; toks.len()];
        for (w, &i) in owner.iter().enumerate() {
            count[i] += 1;
            data[i * h..(i + 1) * h]
                .iter_mut()
                .zip(&v[w * h..(w + 1) * h])
                .for_each(|(d, x)| *d += x);
        }
        for (i, &n) in count.iter().enumerate() {
            if n > 1 {
                let row = &mut data[i * h..(i + 1) * h];
                row.iter_mut().for_each(|x| *x /= n as f32);
                if self.model.meta().architecture.normalize {
                    let norm =
                        row.iter().map(|&x| x as f64 * x as f64).sum::<f64>().sqrt().max(1e-12);
                    row.iter_mut().for_each(|x| *x = (*x as f64 / norm) as f32);
                }
            }
        }
        let tokens = toks.iter().map(|t| t.tokens).collect();
        Embeddings { dim: h, data, tokens, windows: count }
    }

    fn max_over_windows(
        &self,
        toks: &[Tokenized],
        owner: &[usize],
        w: &Weights<'_>,
        pooled: &[f32],
        n: usize,
    ) -> Vec<TurnScores> {
        let (t, s) = heads(w, pooled, n);
        let (nt, ns) = (self.topic_labels().len(), self.sensitive_labels().len());
        let mut out: Vec<TurnScores> = toks
            .iter()
            .map(|tk| TurnScores {
                topics: vec![f32::NEG_INFINITY; nt],
                sensitive: vec![f32::NEG_INFINITY; ns],
                tokens: tk.tokens,
                windows: tk.windows.len() as u32,
            })
            .collect();
        for (w, &i) in owner.iter().enumerate() {
            let o = &mut out[i];
            // `f32::max` would drop a NaN; the gate must see it (it fails closed on one).
            let keep = |a: &mut f32, b: f32| {
                *a = if a.is_nan() || b.is_nan() { f32::NAN } else { a.max(b) }
            };
            o.topics.iter_mut().zip(&t[w * nt..(w + 1) * nt]).for_each(|(a, &b)| keep(a, b));
            o.sensitive.iter_mut().zip(&s[w * ns..(w + 1) * ns]).for_each(|(a, &b)| keep(a, b));
        }
        out
    }

    /// Head scores for pooled vectors (`n × hidden`): `(topics, sensitive)`, each `n × labels`.
    pub fn head_scores(&self, pooled: &[f32], n: usize) -> Result<(Vec<f32>, Vec<f32>)> {
        Ok(heads(&Weights::new(&self.model)?, pooled, n))
    }

    /// Scores texts: one [`TurnScores`] per text, in order. A long text is scored in
    /// overlapping windows and each label's score is the maximum over its windows.
    ///
    /// # Errors
    /// As [`Engine::embed`].
    pub fn score_texts(&self, texts: &[&str]) -> Result<Vec<TurnScores>> {
        self.score_tokenized(self.tokenize(texts)?)
    }

    /// Scores turns, each with an optional context (see [`Engine::tokenize_in_context`]).
    ///
    /// # Errors
    /// As [`Engine::score_texts`].
    pub fn score_texts_in_context(
        &self,
        texts: &[&str],
        contexts: &[Option<&str>],
    ) -> Result<Vec<TurnScores>> {
        self.score_tokenized(self.tokenize_in_context(texts, contexts)?)
    }

    fn score_tokenized(&self, toks: Vec<Tokenized>) -> Result<Vec<TurnScores>> {
        let (flat, owner) = flatten(&toks);
        let pairs: Vec<Option<usize>> =
            owner.iter().map(|&i| toks[i].pair_start.map(|s| s as usize)).collect();
        let w = Weights::new(&self.model)?;
        let pooled = self.embed_ids_pairs(&w, &flat, &pairs)?;
        Ok(self.max_over_windows(&toks, &owner, &w, &pooled, flat.len()))
    }

    /// The policy's decision for each row before inference: `Some(why)` for a turn it does not
    /// admit, `None` for an admitted turn and for a rejected row (which is never scored either).
    pub fn admit(&self, rows: &[Row]) -> Vec<Option<crate::policy::Suppression>> {
        rows.iter().map(|r| r.turn.as_ref().ok().and_then(|t| self.opts.policy.admit(t))).collect()
    }

    /// The texts of the rows that will be scored (admitted turns), in order.
    pub fn admitted_texts<'r>(
        rows: &'r [Row],
        admit: &[Option<crate::policy::Suppression>],
    ) -> Vec<&'r str> {
        rows.iter()
            .zip(admit)
            .filter_map(|(r, a)| match (&r.turn, a) {
                (Ok(t), None) => Some(t.text.as_str()),
                _ => None,
            })
            .collect()
    }

    /// Scores input rows into the output batch: one output row per input row, in order.
    ///
    /// The policy admits or suppresses each turn first; suppressed turns are never tokenized.
    /// Rejected rows pass through with their reason. Admitted turns are scored and gated.
    ///
    /// # Errors
    /// As [`Engine::score_texts`], and [`Error::Arrow`] if the batch cannot be built.
    pub fn score_rows(&self, rows: &[Row]) -> Result<RecordBatch> {
        self.score_rows_in_context(rows, &[])
    }

    /// As [`Engine::score_rows`], each row with an optional context (the text of the
    /// conversation's previous turns; see [`Engine::tokenize_in_context`]). `contexts` is
    /// empty (no context) or has one entry per row; entries of rows that are not scored are
    /// ignored. The caller chooses the context, and must take it only from turns the policy
    /// admits (the CLI's `--context N` does).
    ///
    /// # Errors
    /// As [`Engine::score_rows`]; [`Error::Invalid`] if `contexts` has another length.
    pub fn score_rows_in_context(
        &self,
        rows: &[Row],
        contexts: &[Option<&str>],
    ) -> Result<RecordBatch> {
        if !contexts.is_empty() && contexts.len() != rows.len() {
            return Err(Error::Invalid(format!(
                "{} contexts for {} rows",
                contexts.len(),
                rows.len()
            )));
        }
        let admit = self.admit(rows);
        let texts = Self::admitted_texts(rows, &admit);
        let ctx: Vec<Option<&str>> = if contexts.is_empty() {
            vec![None; texts.len()]
        } else {
            rows.iter()
                .zip(&admit)
                .zip(contexts)
                .filter(|((r, a), _)| r.turn.is_ok() && a.is_none())
                .map(|(_, c)| *c)
                .collect()
        };
        let mut scored = self.score_texts_in_context(&texts, &ctx)?.into_iter();
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
        build_batch(
            self.topic_labels(),
            self.sensitive_labels(),
            &self.opts.policy,
            rows,
            &outcomes,
        )
    }
}

/// All windows of all texts, and the text each window belongs to.
/// Both heads' scores for pooled vectors (`n × hidden`): `(topics, sensitive)`, each `n ×
/// labels` (empty for a head the model does not have).
fn heads(w: &Weights<'_>, pooled: &[f32], n: usize) -> (Vec<f32>, Vec<f32>) {
    let mut buf = crate::model::LinBuf::default();
    let t = w.topics.as_ref().map_or(Vec::new(), |hd| head_scores(hd, pooled, n, &mut buf));
    let s = w.sensitive.as_ref().map_or(Vec::new(), |hd| head_scores(hd, pooled, n, &mut buf));
    (t, s)
}

fn flatten(toks: &[Tokenized]) -> (Vec<&[u32]>, Vec<usize>) {
    let mut flat = Vec::new();
    let mut owner = Vec::new();
    for (i, t) in toks.iter().enumerate() {
        for w in &t.windows {
            flat.push(w.as_slice());
            owner.push(i);
        }
    }
    (flat, owner)
}

#[cfg(test)]
mod tests {
    use super::split_windows;

    #[test]
    fn windows_cover_every_token_with_the_stated_overlap() {
        // [CLS]=101, content 0..20, [SEP]=102; max 8 → 6 content tokens per window.
        let mut ids = vec![101u32];
        ids.extend(0..20);
        ids.push(102);
        let mut special = vec![0u32; ids.len()];
        special[0] = 1;
        *special.last_mut().unwrap() = 1;
        let w = split_windows(&ids, &special, 8, 2);
        assert!(w.iter().all(|w| w.len() <= 8 && w[0] == 101 && *w.last().unwrap() == 102));
        let content: Vec<Vec<u32>> = w.iter().map(|w| w[1..w.len() - 1].to_vec()).collect();
        assert_eq!(content[0], (0..6).collect::<Vec<_>>());
        assert_eq!(content[1], (4..10).collect::<Vec<_>>(), "consecutive windows share 2 tokens");
        let mut seen: Vec<u32> = content.concat();
        seen.sort();
        seen.dedup();
        assert_eq!(seen, (0..20).collect::<Vec<_>>(), "every token is in some window");
        assert_eq!(content.last().unwrap().last(), Some(&19));
        // A text that fits is one window, unchanged.
        assert_eq!(split_windows(&ids[..8], &special[..8], 8, 2), vec![ids[..8].to_vec()]);
    }
}
