//! `turnscore train-heads`: logistic-regression heads over the frozen encoder.
//!
//! For each vocabulary (topics, sensitive) one linear layer `sigmoid(W · pooled + b)` is trained
//! by full-batch Adam on a weighted binary cross-entropy:
//! - a row whose head is `null` is masked out of that head's loss (not a negative);
//! - rows are weighted by source, `w = sqrt(N / (S · n_source))`, so that 15k CLINC commands do
//!   not drown the small datasets;
//! - positives of label `l` are up-weighted by `min(sqrt(neg_l / pos_l), 10)`;
//! - L2 penalty `1e-4 · |W|²`.
//!
//! Thresholds are then chosen per label on the dev split: the one that maximises F1 for topics
//! and F2 (recall counts twice) for sensitive labels. A label with no training positives is
//! stored untrained (zero weights, threshold 1): it never fires, and `inspect` says so.

use crate::data::{load_file, Example};
use crate::metrics::Prf;
use anyhow::{bail, Context, Result};
use std::io::Write;
use std::path::Path;
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

fn load(dir: &Path, split: &str) -> Result<Vec<Example>> {
    let mut subdirs: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read data directory {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join(format!("{split}.jsonl")).is_file())
        .collect();
    subdirs.sort();
    let mut out = Vec::new();
    for d in subdirs {
        out.extend(load_file(&d.join(format!("{split}.jsonl")), &TOPICS, &SENSITIVE)?);
    }
    if out.is_empty() {
        bail!("no {split}.jsonl rows under {}", dir.display());
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
        eprint!(
            "\rturnscore: embedded {done:.0}/{} ({:.0} turns/s)   ",
            ex.len(),
            done / started.elapsed().as_secs_f64()
        );
    }
    eprintln!();
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
    let mut z = vec![0f32; n * nl];
    for i in 0..n {
        z[i * nl..(i + 1) * nl].copy_from_slice(&head.b);
    }
    sgemm(n, nl, h, View::rows(x, h), View::transposed(&head.w, h), &mut z, nl, true);
    z.iter_mut().for_each(|v| *v = sigmoid(*v));
    z
}

/// Picks the threshold maximising F-beta for one label over masked dev rows.
fn pick_threshold(
    scores: &[f32],
    y: &[f32],
    mask: &[f32],
    nl: usize,
    l: usize,
    beta: f64,
) -> Option<f32> {
    let mut v: Vec<(f32, bool)> = (0..mask.len())
        .filter(|&i| mask[i] > 0.0)
        .map(|i| (scores[i * nl + l], y[i * nl + l] > 0.0))
        .collect();
    let total_pos = v.iter().filter(|x| x.1).count() as f64;
    if total_pos == 0.0 {
        return None;
    }
    v.sort_by(|a, b| b.0.total_cmp(&a.0));
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

pub fn train(
    engine: &Engine,
    data: &Path,
    out: &Path,
    cache: Option<&Path>,
    seed: u64,
    epochs: usize,
) -> Result<()> {
    let h = engine.model().meta().architecture.hidden_size as usize;
    let train = load(data, "train")?;
    let dev = load(data, "dev")?;
    eprintln!(
        "turnscore: {} train rows, {} dev rows from {}",
        train.len(),
        dev.len(),
        data.display()
    );
    let xt = embed_cached(engine, &train, cache)?;
    let xd = embed_cached(engine, &dev, cache)?;
    let mut notes = vec![format!(
        "heads: logistic regression over frozen pooled vectors, full-batch Adam, {epochs} epochs, seed {seed}; \
         {} train / {} dev rows from {}",
        train.len(),
        dev.len(),
        data.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
    )];
    let mut heads = Vec::new();
    let mut report = String::new();
    for (name, vocab, beta) in [("topics", &TOPICS[..], 1.0), ("sensitive", &SENSITIVE[..], 2.0)] {
        let nl = vocab.len();
        let pick: fn(&Example) -> &Option<Vec<usize>> =
            if name == "topics" { |e| &e.topics } else { |e| &e.sensitive };
        let (y, mask) = targets(&train, nl, pick);
        let rw = source_weights(&train, &mask);
        let head = fit(&xt, train.len(), h, &y, &rw, nl, epochs);
        let (yd, maskd) = targets(&dev, nl, pick);
        let sd = predict(&head, &xd, dev.len(), h, nl);
        let labels: Vec<LabelMeta> = (0..nl)
            .map(|l| {
                let threshold = if !head.trained[l] {
                    1.0
                } else {
                    pick_threshold(&sd, &yd, &maskd, nl, l, beta).unwrap_or(0.5)
                };
                LabelMeta { name: vocab[l].to_string(), threshold, trained: head.trained[l] }
            })
            .collect();
        let m = evaluate(&sd, &yd, &maskd, nl, &labels);
        let mut micro = Prf::default();
        report.push_str(&format!(
            "\n{name} (dev; threshold by F{beta:.0})\n  {:<24} {:>6} {:>6} {:>6} {:>6} {:>7}\n",
            "label", "P", "R", "F1", "supp", "thresh"
        ));
        for (l, c) in m.iter().enumerate() {
            micro.tp += c.tp;
            micro.fp += c.fp;
            micro.fn_ += c.fn_;
            let supp = c.tp + c.fn_;
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
                supp
            ));
        }
        report.push_str(&format!(
            "  micro: P {:.3} R {:.3} F1 {:.3}\n",
            micro.p(),
            micro.r(),
            micro.f(1.0)
        ));
        notes.push(format!(
            "{name} dev micro P {:.3} R {:.3} F1 {:.3}",
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
    let sensitive = heads.pop().expect("two heads");
    let topics = heads.pop().expect("two heads");
    let hf = HeadsFile { hidden_size: h, topics, sensitive, notes };
    let mut f =
        std::fs::File::create(out).with_context(|| format!("cannot create {}", out.display()))?;
    serde_json::to_writer(&mut f, &hf)?;
    f.write_all(b"\n")?;
    eprintln!("turnscore: wrote heads to {}", out.display());
    Ok(())
}
