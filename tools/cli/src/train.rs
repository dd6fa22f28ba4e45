//! `turnscore train-heads`: logistic-regression heads over the frozen encoder.
//!
//! For each vocabulary (topics, sensitive) one linear layer `sigmoid(W · pooled + b)` is trained
//! by full-batch Adam on a weighted binary cross-entropy:
//! - a row whose head is `null` is masked out of that head's loss (not a negative);
//! - rows are weighted by source, `w = sqrt(N / (S · n_source))`, so that 15k CLINC commands do
//!   not drown the small datasets; rows of the tuning dataset (`--tune`, the chat corpus) count
//!   `--tune-weight` times more, because chat turns are what the engine scores;
//! - positives of label `l` are up-weighted by `min(sqrt(neg_l / pos_l), 10)`;
//! - L2 penalty `1e-4 · |W|²`.
//!
//! Then, on the tuning dataset's dev split only (never trained on):
//! - **calibration**: per label a Platt map `sigmoid(a·z + b)` over the raw logit, fitted by
//!   Newton's method, folded into the head (`W' = a·W`, `b' = a·bias + b`) and recorded in the
//!   label's metadata, so that a score of 0.8 means about 80% on that data;
//! - **thresholds**: topics at the score that maximises F1; sensitive labels recall first, at
//!   the highest score that keeps recall ≥ `--sensitive-recall` (default 0.95).
//!
//! A label with no training positives is stored untrained (zero weights, threshold 1): it never
//! fires, and `inspect` says so. Without `--tune` every dev row tunes, with F1 for topics and the
//! same recall rule for sensitive labels.

use crate::data::{load_file, Example};
use crate::metrics::Prf;
use anyhow::{bail, Context, Result};
use std::io::Write;
use std::path::{Path, PathBuf};
use turnscore::convert::{HeadFileHead, HeadsFile};
use turnscore::format::LabelMeta;
use turnscore::linalg::{sgemm, sigmoid, View};
use turnscore::Engine;

/// The label vocabulary (shared/data/LABELS.md).
pub const TOPICS: [&str; 28] = [
    "arts_culture",
    "automotive",
    "books_literature",
    "business_finance",
    "careers",
    "education",
    "events_attractions",
    "family_parenting",
    "fitness_healthy_living",
    "food_drink",
    "hobbies_interests",
    "home_garden",
    "movies_tv",
    "music_audio",
    "news_current_events",
    "outdoors_hiking",
    "personal_finance",
    "pets",
    "pop_culture",
    "real_estate",
    "relationships_dating",
    "science",
    "shopping",
    "sports",
    "style_fashion",
    "technology_computing",
    "travel",
    "video_gaming",
];
/// The sensitive vocabulary (shared/data/LABELS.md).
pub const SENSITIVE: [&str; 9] = [
    "health",
    "sexual_orientation",
    "religion",
    "philosophical_beliefs",
    "political_views",
    "racial_ethnic_origin",
    "trade_union",
    "genetic_data",
    "biometric_data",
];

/// Reads `split.jsonl` from each data directory: the directory's own file when it has one (a single
/// dataset such as `data/chat`), else one per sub-folder (a collection such as `../shared/data`).
fn load(dirs: &[PathBuf], split: &str) -> Result<Vec<Example>> {
    let mut out = Vec::new();
    for dir in dirs {
        let own = dir.join(format!("{split}.jsonl"));
        let files = if own.is_file() {
            vec![own]
        } else {
            let mut subdirs: Vec<_> = std::fs::read_dir(dir)
                .with_context(|| format!("cannot read data directory {}", dir.display()))?
                .filter_map(|e| e.ok().map(|e| e.path().join(format!("{split}.jsonl"))))
                .filter(|p| p.is_file())
                .collect();
            subdirs.sort();
            subdirs
        };
        if files.is_empty() {
            bail!("no {split}.jsonl in {} or its sub-folders", dir.display());
        }
        for f in files {
            out.extend(load_file(&f, &TOPICS, &SENSITIVE)?);
        }
    }
    Ok(out)
}

fn embed_cached(engine: &Engine, ex: &[Example], cache: Option<&Path>) -> Result<Vec<f32>> {
    let h = engine.model().meta().architecture.hidden_size as usize;
    let key = {
        let mut all = Vec::new();
        for e in ex {
            all.extend_from_slice(e.text.as_bytes());
            all.push(0);
        }
        let sha = turnscore::format::hex_sha256(engine.model().bytes());
        format!("{}-{}.f32", &sha[..16], &turnscore::format::hex_sha256(&all)[..16])
    };
    if let Some(dir) = cache {
        let p = dir.join(&key);
        if let Ok(b) = std::fs::read(&p) {
            if b.len() == ex.len() * h * 4 {
                eprintln!("turnscore: embeddings from cache {}", p.display());
                return Ok(b
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                    .collect());
            }
        }
    }
    let mut out = Vec::with_capacity(ex.len() * h);
    let started = std::time::Instant::now();
    for (i, chunk) in ex.chunks(2048).enumerate() {
        let texts: Vec<&str> = chunk.iter().map(|e| e.text.as_str()).collect();
        out.extend(engine.embed(&texts)?.data);
        let done = (i * 2048 + chunk.len()) as f64;
        if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            eprint!(
                "\rturnscore: embedded {done:.0}/{} ({:.0} turns/s)   ",
                ex.len(),
                done / started.elapsed().as_secs_f64()
            );
        }
    }
    if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        eprintln!();
    }
    if let Some(dir) = cache {
        std::fs::create_dir_all(dir)?;
        let bytes: Vec<u8> = out.iter().flat_map(|v| v.to_le_bytes()).collect();
        std::fs::write(dir.join(&key), bytes)?;
    }
    Ok(out)
}

struct Head {
    w: Vec<f32>,
    b: Vec<f32>,
    trained: Vec<bool>,
}

/// Builds targets, mask and weights for one head.
fn targets(
    ex: &[Example],
    nl: usize,
    pick: impl Fn(&Example) -> &Option<Vec<usize>>,
) -> (Vec<f32>, Vec<f32>) {
    let mut y = vec![0f32; ex.len() * nl];
    let mut mask = vec![0f32; ex.len()];
    for (i, e) in ex.iter().enumerate() {
        if let Some(ls) = pick(e) {
            mask[i] = 1.0;
            for &l in ls {
                y[i * nl + l] = 1.0;
            }
        }
    }
    (y, mask)
}

fn source_weights(ex: &[Example], mask: &[f32]) -> Vec<f32> {
    let mut counts = std::collections::BTreeMap::<&str, f64>::new();
    for (e, &m) in ex.iter().zip(mask) {
        if m > 0.0 {
            *counts.entry(&e.source).or_default() += 1.0;
        }
    }
    let total: f64 = counts.values().sum();
    let s = counts.len().max(1) as f64;
    ex.iter()
        .zip(mask)
        .map(
            |(e, &m)| {
                if m > 0.0 {
                    (total / (s * counts[e.source.as_str()])).sqrt() as f32
                } else {
                    0.0
                }
            },
        )
        .collect()
}

fn fit(x: &[f32], n: usize, h: usize, y: &[f32], rw: &[f32], nl: usize, epochs: usize) -> Head {
    let mut pos = vec![0f64; nl];
    let mut neg = vec![0f64; nl];
    for i in 0..n {
        if rw[i] > 0.0 {
            for l in 0..nl {
                if y[i * nl + l] > 0.0 {
                    pos[l] += 1.0
                } else {
                    neg[l] += 1.0
                }
            }
        }
    }
    let pw: Vec<f32> = (0..nl)
        .map(|l| if pos[l] > 0.0 { (neg[l] / pos[l]).sqrt().min(10.0) as f32 } else { 1.0 })
        .collect();
    let trained: Vec<bool> = pos.iter().map(|&p| p > 0.0).collect();
    let wsum: f32 = rw.iter().sum::<f32>().max(1e-6);
    let (mut w, mut b) = (vec![0f32; nl * h], vec![0f32; nl]);
    let (mut mw, mut vw, mut mb, mut vb) =
        (vec![0f32; nl * h], vec![0f32; nl * h], vec![0f32; nl], vec![0f32; nl]);
    let (lr, b1, b2, l2) = (0.05f32, 0.9f32, 0.999f32, 1e-4f32);
    let mut z = vec![0f32; n * nl];
    let mut gw = vec![0f32; nl * h];
    for t in 1..=epochs {
        for i in 0..n {
            z[i * nl..(i + 1) * nl].copy_from_slice(&b);
        }
        sgemm(n, nl, h, View::rows(x, h), View::transposed(&w, h), &mut z, nl, true);
        // dL/dz for weighted BCE with positive weight pw: rw · ((pw·y + 1 − y)·σ(z) − pw·y).
        let mut gb = vec![0f32; nl];
        for i in 0..n {
            for l in 0..nl {
                let yi = y[i * nl + l];
                let g = if rw[i] > 0.0 {
                    let p = sigmoid(z[i * nl + l]);
                    rw[i] * ((pw[l] * yi + 1.0 - yi) * p - pw[l] * yi) / wsum
                } else {
                    0.0
                };
                z[i * nl + l] = g;
                gb[l] += g;
            }
        }
        // gw = zᵀ · x  (nl × h)
        sgemm(nl, h, n, View::transposed(&z, nl), View::rows(x, h), &mut gw, h, false);
        let (c1, c2) = (1.0 - b1.powi(t as i32), 1.0 - b2.powi(t as i32));
        for k in 0..nl * h {
            let g = gw[k] + 2.0 * l2 * w[k];
            mw[k] = b1 * mw[k] + (1.0 - b1) * g;
            vw[k] = b2 * vw[k] + (1.0 - b2) * g * g;
            w[k] -= lr * (mw[k] / c1) / ((vw[k] / c2).sqrt() + 1e-8);
        }
        for l in 0..nl {
            mb[l] = b1 * mb[l] + (1.0 - b1) * gb[l];
            vb[l] = b2 * vb[l] + (1.0 - b2) * gb[l] * gb[l];
            b[l] -= lr * (mb[l] / c1) / ((vb[l] / c2).sqrt() + 1e-8);
        }
    }
    for l in 0..nl {
        if !trained[l] {
            w[l * h..(l + 1) * h].fill(0.0);
            b[l] = -10.0;
        }
    }
    Head { w, b, trained }
}

fn predict(head: &Head, x: &[f32], n: usize, h: usize, nl: usize) -> Vec<f32> {
    let mut z = logits(head, x, n, h, nl);
    z.iter_mut().for_each(|v| *v = sigmoid(*v));
    z
}

fn logits(head: &Head, x: &[f32], n: usize, h: usize, nl: usize) -> Vec<f32> {
    let mut z = vec![0f32; n * nl];
    for i in 0..n {
        z[i * nl..(i + 1) * nl].copy_from_slice(&head.b);
    }
    sgemm(n, nl, h, View::rows(x, h), View::transposed(&head.w, h), &mut z, nl, true);
    z
}

/// (score, positive) pairs of label `l` over the rows `rows`, highest score first.
fn ranked(scores: &[f32], y: &[f32], rows: &[usize], nl: usize, l: usize) -> Vec<(f32, bool)> {
    let mut v: Vec<(f32, bool)> =
        rows.iter().map(|&i| (scores[i * nl + l], y[i * nl + l] > 0.0)).collect();
    v.sort_by(|a, b| b.0.total_cmp(&a.0));
    v
}

/// The threshold maximising F-beta for one label, or None when it has no positives.
fn threshold_f(v: &[(f32, bool)], beta: f64) -> Option<f32> {
    let total_pos = v.iter().filter(|x| x.1).count() as f64;
    if total_pos == 0.0 {
        return None;
    }
    let (mut best, mut best_t) = (-1.0, 0.5f32);
    let mut c = Prf::default();
    for (k, &(s, pos)) in v.iter().enumerate() {
        if pos {
            c.tp += 1.0
        } else {
            c.fp += 1.0
        }
        if k + 1 < v.len() && v[k + 1].0 == s {
            continue;
        }
        c.fn_ = total_pos - c.tp;
        let f = c.f(beta);
        if f > best {
            best = f;
            // Midway to the next lower score, so the threshold is not tuned onto one point.
            let next = v.get(k + 1).map_or(0.0, |x| x.0);
            best_t = (s + next) / 2.0;
        }
    }
    Some(best_t.clamp(1e-4, 0.9999))
}

/// The highest threshold that keeps recall at least `recall`, or None when there are no
/// positives. It sits midway between the last positive it must keep and the next lower score.
fn threshold_recall(v: &[(f32, bool)], recall: f64) -> Option<f32> {
    let total_pos = v.iter().filter(|x| x.1).count();
    if total_pos == 0 {
        return None;
    }
    let need = ((recall * total_pos as f64) - 1e-9).ceil().max(1.0) as usize;
    let mut seen = 0;
    for (k, &(s, pos)) in v.iter().enumerate() {
        seen += usize::from(pos);
        if seen == need {
            // Keep every row tied with this score too.
            let mut j = k;
            while j + 1 < v.len() && v[j + 1].0 == s {
                j += 1;
            }
            let next = v.get(j + 1).map_or(0.0, |x| x.0);
            return Some(((s + next) / 2.0).clamp(1e-4, 0.9999));
        }
    }
    unreachable!("need <= total_pos")
}

/// Calibrated scores of one head over the dev rows, with their truth.
struct ScoreSet<'a> {
    s: &'a [f32],
    y: &'a [f32],
    nl: usize,
    trained: &'a [bool],
}

impl ScoreSet<'_> {
    /// Topics: per label, the threshold of maximal F1 on `rows` (on `fallback` when `rows` has
    /// no positive of the label).
    fn topic_thresholds(&self, rows: &[usize], fallback: &[usize]) -> Vec<f32> {
        (0..self.nl)
            .map(|l| {
                if !self.trained[l] {
                    return 1.0;
                }
                let t = |r: &[usize]| threshold_f(&ranked(self.s, self.y, r, self.nl, l), 1.0);
                t(rows).or_else(|| t(fallback)).unwrap_or(0.5)
            })
            .collect()
    }

    /// Sensitive labels, recall first:
    /// 1. per label, the highest threshold keeping recall ≥ `recall` on `rows`;
    /// 2. then, while the gate (any label fires) catches fewer than `caught` of the sensitive
    ///    rows, lower one label's threshold to catch the next missed turn positive for it,
    ///    choosing each time the label that catches the most missed turns per clean turn it
    ///    newly suppresses.
    fn sensitive_thresholds(
        &self,
        rows: &[usize],
        fallback: &[usize],
        recall: f64,
        caught: f64,
    ) -> Vec<f32> {
        let nl = self.nl;
        let mut t: Vec<f32> = (0..nl)
            .map(|l| {
                if !self.trained[l] {
                    return 1.0;
                }
                let f = |r: &[usize]| threshold_recall(&ranked(self.s, self.y, r, nl, l), recall);
                f(rows).or_else(|| f(fallback)).unwrap_or(0.5)
            })
            .collect();
        let sens: Vec<usize> = rows
            .iter()
            .copied()
            .filter(|&i| self.y[i * nl..(i + 1) * nl].iter().any(|&v| v > 0.0))
            .collect();
        let clean: Vec<usize> = rows
            .iter()
            .copied()
            .filter(|&i| self.y[i * nl..(i + 1) * nl].iter().all(|&v| v == 0.0))
            .collect();
        if sens.is_empty() {
            return t;
        }
        let fires =
            |t: &[f32], i: usize| (0..nl).any(|l| self.trained[l] && self.s[i * nl + l] >= t[l]);
        for _ in 0..rows.len() {
            let missed: Vec<usize> = sens.iter().copied().filter(|&i| !fires(&t, i)).collect();
            if (sens.len() - missed.len()) as f64 >= caught * sens.len() as f64 {
                break;
            }
            // (gain / (cost + 1), label, new threshold)
            let mut best: Option<(f64, usize, f32)> = None;
            for l in (0..nl).filter(|&l| self.trained[l]) {
                let Some(top) = missed
                    .iter()
                    .filter(|&&i| self.y[i * nl + l] > 0.0)
                    .map(|&i| self.s[i * nl + l])
                    .max_by(f32::total_cmp)
                else {
                    continue;
                };
                let gain = missed.iter().filter(|&&i| self.s[i * nl + l] >= top).count();
                let cost =
                    clean.iter().filter(|&&i| !fires(&t, i) && self.s[i * nl + l] >= top).count();
                let v = gain as f64 / (cost as f64 + 1.0);
                if best.is_none_or(|b| v > b.0) {
                    best = Some((v, l, top));
                }
            }
            let Some((_, l, top)) = best else { break };
            // Midway to the next lower score of this label on these rows.
            let next = rows
                .iter()
                .map(|&i| self.s[i * nl + l])
                .filter(|&v| v < top)
                .max_by(f32::total_cmp)
                .unwrap_or(0.0);
            t[l] = ((top + next) / 2.0).clamp(1e-4, 0.9999);
        }
        t
    }

    /// The gate on `rows` at thresholds `t`: (share of sensitive rows caught, share of clean
    /// rows suppressed).
    fn gate(&self, rows: &[usize], t: &[f32]) -> (f64, f64) {
        let nl = self.nl;
        let (mut s, mut c, mut sc, mut cs) = (0usize, 0usize, 0usize, 0usize);
        for &i in rows {
            let fired = (0..nl).any(|l| self.trained[l] && self.s[i * nl + l] >= t[l]);
            if self.y[i * nl..(i + 1) * nl].iter().any(|&v| v > 0.0) {
                s += 1;
                sc += usize::from(fired);
            } else {
                c += 1;
                cs += usize::from(fired);
            }
        }
        (sc as f64 / s.max(1) as f64, cs as f64 / c.max(1) as f64)
    }

    /// How much tuning on the same rows flatters the gate: split the rows in two halves (even
    /// and odd positions), tune on one, measure on the other, both ways; returns the pooled
    /// (caught, wrongly suppressed) over both held-out halves.
    fn cross_fit(
        &self,
        rows: &[usize],
        fallback: &[usize],
        recall: f64,
        caught: f64,
    ) -> (f64, f64) {
        let a: Vec<usize> = rows.iter().copied().step_by(2).collect();
        let b: Vec<usize> = rows.iter().copied().skip(1).step_by(2).collect();
        let (mut s, mut c, mut sc, mut cs) = (0.0, 0.0, 0.0, 0.0);
        for (tune, test) in [(&a, &b), (&b, &a)] {
            let t = self.sensitive_thresholds(tune, fallback, recall, caught);
            let (x, y) = self.gate(test, &t);
            let ns = test
                .iter()
                .filter(|&&i| self.y[i * self.nl..(i + 1) * self.nl].iter().any(|&v| v > 0.0))
                .count() as f64;
            let nc = test.len() as f64 - ns;
            s += ns;
            c += nc;
            sc += x * ns;
            cs += y * nc;
        }
        (sc / s.max(1.0), cs / c.max(1.0))
    }
}

/// Fits `p = sigmoid(a·z + b)` to (logit, label) pairs by Newton's method on the log loss, with
/// Platt's smoothed targets (`(n₊+1)/(n₊+2)`, `1/(n₋+2)`) so that a separable set does not send
/// `a` to infinity. Returns None when the fit is unusable (no positives or negatives, or `a ≤ 0`).
pub fn platt(z: &[f32], y: &[bool]) -> Option<(f32, f32)> {
    let np = y.iter().filter(|&&v| v).count() as f64;
    let nn = y.len() as f64 - np;
    if np == 0.0 || nn == 0.0 {
        return None;
    }
    let (tp, tn) = ((np + 1.0) / (np + 2.0), 1.0 / (nn + 2.0));
    let (mut a, mut b) = (1.0f64, 0.0f64);
    for _ in 0..100 {
        let (mut ga, mut gb, mut haa, mut hab, mut hbb) = (0.0, 0.0, 1e-9, 0.0, 1e-9);
        for (&zi, &yi) in z.iter().zip(y) {
            let zi = zi as f64;
            let p = 1.0 / (1.0 + (-(a * zi + b)).exp());
            let t = if yi { tp } else { tn };
            let (d, w) = (p - t, (p * (1.0 - p)).max(1e-12));
            ga += d * zi;
            gb += d;
            haa += w * zi * zi;
            hab += w * zi;
            hbb += w;
        }
        let det = haa * hbb - hab * hab;
        if det.abs() < 1e-18 {
            break;
        }
        let (da, db) = ((hbb * ga - hab * gb) / det, (haa * gb - hab * ga) / det);
        a -= da;
        b -= db;
        if da.abs() < 1e-10 && db.abs() < 1e-10 {
            break;
        }
    }
    (a.is_finite() && b.is_finite() && a > 0.0).then_some((a as f32, b as f32))
}

fn evaluate(scores: &[f32], y: &[f32], mask: &[f32], nl: usize, labels: &[LabelMeta]) -> Vec<Prf> {
    (0..nl)
        .map(|l| {
            let mut c = Prf::default();
            for i in 0..mask.len() {
                if mask[i] == 0.0 {
                    continue;
                }
                let on = labels[l].trained && scores[i * nl + l] >= labels[l].threshold;
                match (on, y[i * nl + l] > 0.0) {
                    (true, true) => c.tp += 1.0,
                    (true, false) => c.fp += 1.0,
                    (false, true) => c.fn_ += 1.0,
                    _ => {}
                }
            }
            c
        })
        .collect()
}

/// What `turnscore train-heads` was asked to do.
pub struct TrainArgs<'a> {
    pub data: &'a [PathBuf],
    pub tune: Option<&'a Path>,
    pub tune_weight: f32,
    pub sensitive_recall: f64,
    pub gate_caught: f64,
    pub out: &'a Path,
    pub cache: Option<&'a Path>,
    pub seed: u64,
    pub epochs: usize,
}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}

pub fn train(engine: &Engine, args: &TrainArgs<'_>) -> Result<()> {
    let h = engine.model().meta().architecture.hidden_size as usize;
    if !(0.0..=1.0).contains(&args.sensitive_recall) {
        bail!("--sensitive-recall must be in [0, 1], got {}", args.sensitive_recall);
    }
    if !(0.0..=1.0).contains(&args.gate_caught) {
        bail!("--gate-caught must be in [0, 1], got {}", args.gate_caught);
    }
    // The tuning dataset is trained on too (its train split); list it once.
    let mut dirs: Vec<PathBuf> = args.data.to_vec();
    if let Some(t) = args.tune {
        if !dirs.iter().any(|d| same_dir(d, t)) {
            dirs.push(t.to_path_buf());
        }
    }
    let mut train = Vec::new();
    let mut dev = Vec::new();
    let (mut train_tune, mut dev_tune) = (Vec::new(), Vec::new());
    for d in &dirs {
        let is_tune = args.tune.is_some_and(|t| same_dir(d, t));
        let (a, b) =
            (load(std::slice::from_ref(d), "train")?, load(std::slice::from_ref(d), "dev")?);
        train_tune.extend(std::iter::repeat_n(is_tune, a.len()));
        dev_tune.extend(std::iter::repeat_n(is_tune || args.tune.is_none(), b.len()));
        train.extend(a);
        dev.extend(b);
    }
    let tune_name =
        args.tune.map_or("all dev splits".to_string(), |t| format!("{} dev", t.display()));
    eprintln!(
        "turnscore: {} train rows, {} dev rows from {}; calibration and thresholds on {tune_name} ({} rows)",
        train.len(),
        dev.len(),
        dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", "),
        dev_tune.iter().filter(|&&t| t).count()
    );
    let xt = embed_cached(engine, &train, args.cache)?;
    let xd = embed_cached(engine, &dev, args.cache)?;
    let mut notes = vec![format!(
        "heads: logistic regression over frozen pooled vectors, full-batch Adam, {} epochs, seed {}; \
         {} train / {} dev rows from {}; tuning rows weighted x{}; Platt calibration and thresholds on {tune_name} \
         (topics: max F1; sensitive: recall >= {} per label, then the gate catching >= {})",
        args.epochs,
        args.seed,
        train.len(),
        dev.len(),
        dirs.iter()
            .map(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default())
            .collect::<Vec<_>>()
            .join(" + "),
        args.tune_weight,
        args.sensitive_recall,
        args.gate_caught
    )];
    let mut heads = Vec::new();
    let mut report = String::new();
    for name in ["topics", "sensitive"] {
        let vocab = if name == "topics" { &TOPICS[..] } else { &SENSITIVE[..] };
        let nl = vocab.len();
        let pick: fn(&Example) -> &Option<Vec<usize>> =
            if name == "topics" { |e| &e.topics } else { |e| &e.sensitive };
        let (y, mask) = targets(&train, nl, pick);
        let mut rw = source_weights(&train, &mask);
        for (w, &t) in rw.iter_mut().zip(&train_tune) {
            if t {
                *w *= args.tune_weight;
            }
        }
        let mut head = fit(&xt, train.len(), h, &y, &rw, nl, args.epochs);
        let (yd, maskd) = targets(&dev, nl, pick);
        let tune_rows: Vec<usize> =
            (0..dev.len()).filter(|&i| dev_tune[i] && maskd[i] > 0.0).collect();
        // Calibrate on the tuning rows, fold the map into the head.
        let zd = logits(&head, &xd, dev.len(), h, nl);
        let mut calibration = vec![None; nl];
        for l in 0..nl {
            if !head.trained[l] {
                continue;
            }
            let z: Vec<f32> = tune_rows.iter().map(|&i| zd[i * nl + l]).collect();
            let yy: Vec<bool> = tune_rows.iter().map(|&i| yd[i * nl + l] > 0.0).collect();
            if let Some((a, b)) = platt(&z, &yy) {
                head.w[l * h..(l + 1) * h].iter_mut().for_each(|w| *w *= a);
                head.b[l] = a * head.b[l] + b;
                calibration[l] = Some(turnscore::format::Calibration {
                    method: "platt".into(),
                    a,
                    b,
                    fitted_on: format!(
                        "{tune_name}, {} rows, {} positives",
                        z.len(),
                        yy.iter().filter(|&&v| v).count()
                    ),
                });
            }
        }
        let sd = predict(&head, &xd, dev.len(), h, nl);
        let all_rows: Vec<usize> = (0..dev.len()).filter(|&i| maskd[i] > 0.0).collect();
        let sc = ScoreSet { s: &sd, y: &yd, nl, trained: &head.trained };
        let thresholds = if name == "topics" {
            sc.topic_thresholds(&tune_rows, &all_rows)
        } else {
            sc.sensitive_thresholds(&tune_rows, &all_rows, args.sensitive_recall, args.gate_caught)
        };
        let labels: Vec<LabelMeta> = (0..nl)
            .map(|l| LabelMeta {
                name: vocab[l].to_string(),
                threshold: thresholds[l],
                trained: head.trained[l],
                calibration: calibration[l].clone(),
            })
            .collect();
        if name == "sensitive" {
            let (caught, wrong) = sc.gate(&tune_rows, &thresholds);
            let (hc, hw) =
                sc.cross_fit(&tune_rows, &all_rows, args.sensitive_recall, args.gate_caught);
            let line = format!(
                "gate on {tune_name}: caught {:.1}%, clean turns wrongly suppressed {:.1}% (thresholds \
                 tuned on these rows); held-out estimate (tune on one half, measure on the other, both \
                 ways): caught {:.1}%, wrongly suppressed {:.1}%",
                100.0 * caught,
                100.0 * wrong,
                100.0 * hc,
                100.0 * hw
            );
            report.push_str(&format!("\n{line}\n"));
            notes.push(line);
        }
        let tune_mask: Vec<f32> =
            (0..dev.len()).map(|i| if dev_tune[i] { maskd[i] } else { 0.0 }).collect();
        let m = evaluate(&sd, &yd, &tune_mask, nl, &labels);
        let mut micro = Prf::default();
        report.push_str(&format!(
            "\n{name} ({tune_name}; calibrated; thresholds by {})\n  {:<24} {:>6} {:>6} {:>6} {:>6} {:>7}\n",
            if name == "topics" {
                "max F1".to_string()
            } else {
                format!("recall >= {}, gate >= {}", args.sensitive_recall, args.gate_caught)
            },
            "label",
            "P",
            "R",
            "F1",
            "supp",
            "thresh"
        ));
        for (l, c) in m.iter().enumerate() {
            micro.add(c);
            let state = if labels[l].trained {
                format!("{:>7.4}", labels[l].threshold)
            } else {
                "untrained".into()
            };
            report.push_str(&format!(
                "  {:<24} {:>6.3} {:>6.3} {:>6.3} {:>6.0} {state}\n",
                vocab[l],
                c.p(),
                c.r(),
                c.f(1.0),
                c.support()
            ));
        }
        report.push_str(&format!(
            "  micro: P {:.3} R {:.3} F1 {:.3}\n",
            micro.p(),
            micro.r(),
            micro.f(1.0)
        ));
        notes.push(format!(
            "{name} on {tune_name}: micro P {:.3} R {:.3} F1 {:.3}",
            micro.p(),
            micro.r(),
            micro.f(1.0)
        ));
        let untrained: Vec<&str> =
            labels.iter().filter(|l| !l.trained).map(|l| l.name.as_str()).collect();
        if !untrained.is_empty() {
            notes.push(format!("{name}: no training data, never fire: {}", untrained.join(", ")));
        }
        heads.push(HeadFileHead {
            labels,
            weight: head.w.chunks_exact(h).map(<[f32]>::to_vec).collect(),
            bias: head.b.clone(),
        });
    }
    eprint!("{report}");
    eprintln!("turnscore: `turnscore eval` gives the full picture (gate, per source, report)");
    let sensitive = heads.pop().expect("two heads");
    let topics = heads.pop().expect("two heads");
    let hf = HeadsFile { hidden_size: h, topics, sensitive, notes };
    let out = args.out;
    let mut f =
        std::fs::File::create(out).with_context(|| format!("cannot create {}", out.display()))?;
    serde_json::to_writer(&mut f, &hf)?;
    f.write_all(b"\n")?;
    eprintln!("turnscore: wrote heads to {}", out.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platt_recovers_a_known_map() {
        // Labels drawn (deterministically) with P(y) = sigmoid(2z - 1): the fit must find a ≈ 2,
        // b ≈ -1 (smoothing moves it a little on 4,000 rows).
        let mut state = 12345u64;
        let mut z = Vec::new();
        let mut y = Vec::new();
        for i in 0..4000 {
            let zi = -3.0 + 6.0 * (i as f32) / 4000.0;
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let u = (state >> 11) as f64 / (1u64 << 53) as f64;
            z.push(zi);
            y.push(u < 1.0 / (1.0 + (-(2.0 * zi as f64 - 1.0)).exp()));
        }
        let (a, b) = platt(&z, &y).unwrap();
        assert!((a - 2.0).abs() < 0.2, "a = {a}");
        assert!((b + 1.0).abs() < 0.2, "b = {b}");
    }

    #[test]
    fn platt_refuses_one_class_and_inverted_data() {
        assert!(platt(&[0.1, 0.2], &[true, true]).is_none());
        // Higher logit, fewer positives: a would be negative.
        let z: Vec<f32> = (0..100).map(|i| i as f32 / 10.0).collect();
        let y: Vec<bool> = (0..100).map(|i| i < 50).collect();
        assert!(platt(&z, &y).is_none());
    }

    #[test]
    fn recall_threshold_keeps_the_asked_share() {
        // 10 positives among 20 rows, scores descending.
        let v: Vec<(f32, bool)> = (0..20).map(|i| (1.0 - i as f32 / 20.0, i % 2 == 0)).collect();
        let t = threshold_recall(&v, 0.9).unwrap();
        let kept = v.iter().filter(|x| x.1 && x.0 >= t).count();
        assert_eq!(kept, 9);
        // The next positive is below the threshold, and no higher one is.
        assert!(v.iter().filter(|x| x.1 && x.0 < t).count() == 1);
        let t1 = threshold_recall(&v, 1.0).unwrap();
        assert_eq!(v.iter().filter(|x| x.1 && x.0 >= t1).count(), 10);
        assert!(threshold_recall(&[(0.5, false)], 0.9).is_none());
    }
}
