//! `turnscore compare`: a model against a reference model on the same texts (typically int8
//! against f32 of the same checkpoint and heads): pooled-vector cosine, per-label decision
//! agreement, and per-label F1 of both against the labels where rows carry them.

use crate::cmd::{open_engine, CHUNK_ROWS};
use crate::data::{load_file, Example};
use crate::metrics::Prf;
use crate::Common;
use anyhow::{bail, Result};
use std::io::Write;
use std::path::Path;
use turnscore::format::LabelMeta;
use turnscore_io::source::{expand, InFormat};

struct Side {
    vecs: Vec<f32>,
    topics: Vec<f32>,
    sensitive: Vec<f32>,
}

fn run(engine: &turnscore::Engine, ex: &[Example]) -> Result<Side> {
    let (mut vecs, mut topics, mut sensitive) = (Vec::new(), Vec::new(), Vec::new());
    for chunk in ex.chunks(CHUNK_ROWS) {
        let texts: Vec<&str> = chunk.iter().map(|e| e.text.as_str()).collect();
        vecs.extend(engine.embed(&texts)?.data);
        for s in engine.score_texts(&texts)? {
            topics.extend(s.topics);
            sensitive.extend(s.sensitive);
        }
    }
    Ok(Side { vecs, topics, sensitive })
}

fn prf(
    ex: &[Example],
    scores: &[f32],
    labels: &[LabelMeta],
    pick: fn(&Example) -> &Option<Vec<usize>>,
) -> Vec<Prf> {
    let n = labels.len();
    let mut c = vec![Prf::default(); n];
    for (i, e) in ex.iter().enumerate() {
        let Some(truth) = pick(e) else { continue };
        for (l, lab) in labels.iter().enumerate() {
            let on = lab.trained && scores[i * n + l] >= lab.threshold;
            match (on, truth.contains(&l)) {
                (true, true) => c[l].tp += 1.0,
                (true, false) => c[l].fp += 1.0,
                (false, true) => c[l].fn_ += 1.0,
                _ => {}
            }
        }
    }
    c
}

fn pick_topics(e: &Example) -> &Option<Vec<usize>> {
    &e.topics
}

fn pick_sensitive(e: &Example) -> &Option<Vec<usize>> {
    &e.sensitive
}

pub fn compare(against: &Path, inputs: &[String], json: bool, common: &Common) -> Result<()> {
    let cand = open_engine(common)?;
    let mut rc = common.clone();
    rc.model = Some(against.to_path_buf());
    let refe = open_engine(&rc)?;
    let (tl, sl) = (cand.topic_labels().to_vec(), cand.sensitive_labels().to_vec());
    let names = |l: &[LabelMeta]| l.iter().map(|x| x.name.clone()).collect::<Vec<_>>();
    if names(&tl) != names(refe.topic_labels()) || names(&sl) != names(refe.sensitive_labels()) {
        bail!("the two models have different label vocabularies; compare needs the same heads");
    }
    let tn: Vec<&str> = tl.iter().map(|l| l.name.as_str()).collect();
    let sn: Vec<&str> = sl.iter().map(|l| l.name.as_str()).collect();
    let files = expand(inputs, Some(InFormat::Jsonl))?;
    let mut report = Vec::new();
    let mut out = std::io::stdout().lock();
    if !json {
        writeln!(
            out,
            "{:<48} {:>6} {:>8} {:>8} {:>10} {:>10}",
            "file", "rows", "cos mean", "cos min", "agree min", "agree all"
        )?;
    }
    let (mut all_cos, mut all_rows, mut all_min) = (0f64, 0usize, 1f64);
    let mut worst_agree = 1f64;
    // Per label over all rows of all files: rows where both models decide the same.
    let mut same_all = vec![0usize; tl.len() + sl.len()];
    for f in &files {
        let ex = load_file(&f.path, &tn, &sn)?;
        if ex.is_empty() {
            continue;
        }
        let (a, b) = (run(&cand, &ex)?, run(&refe, &ex)?);
        let h = a.vecs.len() / ex.len();
        let cos: Vec<f64> = (0..ex.len())
            .map(|i| {
                let (x, y) = (&a.vecs[i * h..(i + 1) * h], &b.vecs[i * h..(i + 1) * h]);
                let dot: f64 = x.iter().zip(y).map(|(p, q)| *p as f64 * *q as f64).sum();
                let nx: f64 = x.iter().map(|p| (*p as f64).powi(2)).sum::<f64>().sqrt();
                let ny: f64 = y.iter().map(|p| (*p as f64).powi(2)).sum::<f64>().sqrt();
                dot / (nx * ny).max(1e-30)
            })
            .collect();
        let mean = cos.iter().sum::<f64>() / cos.len() as f64;
        let min = cos.iter().cloned().fold(1.0, f64::min);
        all_cos += cos.iter().sum::<f64>();
        all_rows += cos.len();
        all_min = all_min.min(min);
        // Decision agreement per label (same thresholds: the heads are the same).
        let mut labels = Vec::new();
        let mut agree_rows = 0usize;
        let (mut min_agree, mut min_label) = (1f64, String::new());
        for (head, labs, sa, sb, pick) in [
            (
                "topics",
                &tl,
                &a.topics,
                &b.topics,
                pick_topics as fn(&Example) -> &Option<Vec<usize>>,
            ),
            ("sensitive", &sl, &a.sensitive, &b.sensitive, pick_sensitive),
        ] {
            let n = labs.len();
            let (pa, pb) = (prf(&ex, sa, labs, pick), prf(&ex, sb, labs, pick));
            for (l, lab) in labs.iter().enumerate() {
                let same = (0..ex.len())
                    .filter(|&i| {
                        (sa[i * n + l] >= lab.threshold) == (sb[i * n + l] >= lab.threshold)
                    })
                    .count();
                same_all[if head == "topics" { l } else { tl.len() + l }] += same;
                let ag = same as f64 / ex.len() as f64;
                if ag < min_agree {
                    (min_agree, min_label) = (ag, format!("{head}/{}", lab.name));
                }
                labels.push(serde_json::json!({
                    "head": head, "label": lab.name, "agreement": ag,
                    "f1": pa[l].f(1.0), "f1_reference": pb[l].f(1.0),
                    "f1_diff": pa[l].f(1.0) - pb[l].f(1.0), "support": pa[l].support(),
                }));
            }
            let _ = n;
        }
        for i in 0..ex.len() {
            let row_same = tl.iter().enumerate().all(|(l, lab)| {
                let n = tl.len();
                (a.topics[i * n + l] >= lab.threshold) == (b.topics[i * n + l] >= lab.threshold)
            }) && sl.iter().enumerate().all(|(l, lab)| {
                let n = sl.len();
                (a.sensitive[i * n + l] >= lab.threshold)
                    == (b.sensitive[i * n + l] >= lab.threshold)
            });
            agree_rows += row_same as usize;
        }
        worst_agree = worst_agree.min(min_agree);
        let all_agree = agree_rows as f64 / ex.len() as f64;
        let name = f.path.display().to_string();
        if !json {
            writeln!(
                out,
                "{:<48} {:>6} {:>8.5} {:>8.5} {:>10.4} {:>10.4}   (lowest: {min_label})",
                name,
                ex.len(),
                mean,
                min,
                min_agree,
                all_agree
            )?;
        }
        report.push(serde_json::json!({
            "file": name, "rows": ex.len(), "cos_mean": mean, "cos_min": min,
            "agreement_min_label": min_agree, "agreement_min_label_name": min_label,
            "rows_all_decisions_agree": all_agree, "labels": labels,
        }));
    }
    if all_rows == 0 {
        bail!("no labeled rows in the inputs");
    }
    let mean = all_cos / all_rows as f64;
    let (mut pooled_min, mut pooled_label) = (1f64, String::new());
    for (i, &s) in same_all.iter().enumerate() {
        let ag = s as f64 / all_rows as f64;
        if ag < pooled_min {
            let name = if i < tl.len() {
                format!("topics/{}", tl[i].name)
            } else {
                format!("sensitive/{}", sl[i - tl.len()].name)
            };
            (pooled_min, pooled_label) = (ag, name);
        }
    }
    if json {
        serde_json::to_writer_pretty(
            &mut out,
            &serde_json::json!({
                "model": cand.model().meta().model_id, "quantization": cand.model().meta().quantization,
                "reference": refe.model().meta().quantization, "rows": all_rows,
                "cos_mean": mean, "cos_min": all_min,
                "agreement_min_label_per_file": worst_agree,
                "agreement_min_label_all_rows": pooled_min, "agreement_min_label_all_rows_name": pooled_label,
                "files": report,
            }),
        )?;
        writeln!(out)?;
    } else {
        writeln!(
            out,
            "{:<48} {:>6} {:>8.5} {:>8.5} {:>10.4}   (lowest over all rows: {pooled_label})",
            "all", all_rows, mean, all_min, pooled_min
        )?;
    }
    Ok(())
}
