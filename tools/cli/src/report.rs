//! `turnscore eval --report DIR`: one self-contained HTML page (`DIR/index.html`, plots inlined as
//! SVG, no scripts, no outside files) with
//! - the summary: per head micro/macro F1, the gate by source;
//! - per label: precision, recall, F1, support, threshold and calibration;
//! - precision/recall curves per label, with the model's operating point marked;
//! - a reliability (calibration) plot per head;
//! - the worst misses and false alarms per label, as ids and scores (the turn's text only with
//!   `--show-text`: message text is personal data).
//!
//! Plots are drawn with `plotters` (SVG backend).

use crate::data::Example;
use anyhow::{anyhow, Context, Result};
use plotters::prelude::*;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use turnscore::format::LabelMeta;
use turnscore::output::TurnScores;

/// One head's view of the evaluated rows: for each label, (score, truth) over annotated rows.
pub struct HeadData<'a> {
    pub name: &'a str,
    pub labels: &'a [LabelMeta],
    /// `pairs[l]` = (row index, score, positive) over rows whose head is annotated.
    pub pairs: Vec<Vec<(usize, f32, bool)>>,
}

impl<'a> HeadData<'a> {
    pub fn new(
        name: &'a str,
        labels: &'a [LabelMeta],
        ex: &[Example],
        scores: &[TurnScores],
        pick: fn(&Example) -> &Option<Vec<usize>>,
        get: fn(&TurnScores) -> &[f32],
    ) -> HeadData<'a> {
        let mut pairs = vec![Vec::new(); labels.len()];
        for (i, (e, s)) in ex.iter().zip(scores).enumerate() {
            let Some(truth) = pick(e) else { continue };
            for (l, p) in pairs.iter_mut().enumerate() {
                p.push((i, get(s)[l], truth.contains(&l)));
            }
        }
        HeadData { name, labels, pairs }
    }
}

/// Precision/recall points at every distinct score, highest score first.
pub fn pr_curve(pairs: &[(usize, f32, bool)]) -> Vec<(f32, f32, f32)> {
    let mut v: Vec<(f32, bool)> = pairs.iter().map(|&(_, s, y)| (s, y)).collect();
    v.sort_by(|a, b| b.0.total_cmp(&a.0));
    let pos = v.iter().filter(|x| x.1).count() as f32;
    let mut out = Vec::new();
    let (mut tp, mut fp) = (0f32, 0f32);
    for (k, &(s, y)) in v.iter().enumerate() {
        if y {
            tp += 1.0
        } else {
            fp += 1.0
        }
        if k + 1 < v.len() && v[k + 1].0 == s {
            continue;
        }
        if pos > 0.0 {
            out.push((tp / pos, tp / (tp + fp), s));
        }
    }
    out
}

/// Reliability bins over [0, 1] (10 equal widths), pooled over a head's trained labels:
/// (mean score, observed positive rate, rows) per non-empty bin, and the expected calibration
/// error (row-weighted mean |score − rate|).
pub fn reliability(head: &HeadData<'_>) -> (Vec<(f32, f32, usize)>, f32) {
    let mut bins = [(0f64, 0f64, 0usize); 10];
    for (l, p) in head.pairs.iter().enumerate() {
        if !head.labels[l].trained {
            continue;
        }
        for &(_, s, y) in p {
            let b = ((s * 10.0) as usize).min(9);
            bins[b].0 += s as f64;
            bins[b].1 += f64::from(u8::from(y));
            bins[b].2 += 1;
        }
    }
    let total: usize = bins.iter().map(|b| b.2).sum();
    let mut ece = 0.0;
    let out = bins
        .iter()
        .filter(|b| b.2 > 0)
        .map(|b| {
            let (m, r) = (b.0 / b.2 as f64, b.1 / b.2 as f64);
            ece += (m - r).abs() * b.2 as f64 / total.max(1) as f64;
            (m as f32, r as f32, b.2)
        })
        .collect();
    (out, ece as f32)
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn plot_err<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow!("drawing a plot: {e}")
}

fn pr_svg(head: &HeadData<'_>) -> Result<String> {
    let n = head.labels.len();
    let cols = 4usize.min(n.max(1));
    let rows = n.div_ceil(cols);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (cols as u32 * 240, rows as u32 * 200))
            .into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        for (l, area) in root.split_evenly((rows, cols)).iter().enumerate().take(n) {
            let lab = &head.labels[l];
            let pts = pr_curve(&head.pairs[l]);
            let support = head.pairs[l].iter().filter(|x| x.2).count();
            let mut chart = ChartBuilder::on(area)
                .caption(format!("{} (n+={support})", lab.name), ("sans-serif", 13))
                .margin(6)
                .x_label_area_size(34)
                .y_label_area_size(30)
                .build_cartesian_2d(0f32..1.0f32, 0f32..1.02f32)
                .map_err(plot_err)?;
            chart
                .configure_mesh()
                .x_labels(3)
                .y_labels(3)
                .x_desc("recall")
                .y_desc("precision")
                .label_style(("sans-serif", 10))
                .draw()
                .map_err(plot_err)?;
            if !lab.trained || pts.is_empty() {
                continue;
            }
            let mut line = vec![(0f32, pts[0].1)];
            line.extend(pts.iter().map(|&(r, p, _)| (r, p)));
            chart.draw_series(LineSeries::new(line, &BLUE)).map_err(plot_err)?;
            // The operating point: the lowest score still at or above the threshold.
            if let Some(&(r, p, _)) = pts.iter().rev().find(|x| x.2 >= lab.threshold) {
                chart
                    .draw_series(std::iter::once(Circle::new((r, p), 4, RED.filled())))
                    .map_err(plot_err)?;
            }
        }
        root.present().map_err(plot_err)?;
    }
    Ok(svg)
}

fn reliability_svg(head: &HeadData<'_>) -> Result<(String, f32)> {
    let (bins, ece) = reliability(head);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (420, 380)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(format!("{}: reliability (ECE {ece:.3})", head.name), ("sans-serif", 15))
            .margin(10)
            .x_label_area_size(36)
            .y_label_area_size(44)
            .build_cartesian_2d(0f32..1.0f32, 0f32..1.0f32)
            .map_err(plot_err)?;
        chart
            .configure_mesh()
            .x_desc("mean score in bin")
            .y_desc("share positive")
            .label_style(("sans-serif", 11))
            .draw()
            .map_err(plot_err)?;
        chart
            .draw_series(LineSeries::new(vec![(0.0, 0.0), (1.0, 1.0)], &BLACK.mix(0.4)))
            .map_err(plot_err)?;
        chart
            .draw_series(LineSeries::new(bins.iter().map(|b| (b.0, b.1)), &BLUE))
            .map_err(plot_err)?;
        // Point area grows with the bin's row count (log scale).
        chart
            .draw_series(bins.iter().map(|b| {
                let r = 2 + ((b.2 as f32).ln().max(0.0) as i32);
                Circle::new((b.0, b.1), r, BLUE.filled())
            }))
            .map_err(plot_err)?;
        root.present().map_err(plot_err)?;
    }
    Ok((svg, ece))
}

fn pct(x: Option<f64>) -> String {
    x.map_or("–".into(), |v| format!("{:.1}%", 100.0 * v))
}

/// Writes `dir/index.html` and returns its path.
pub fn write(
    dir: &Path,
    summary: &serde_json::Value,
    heads: &[HeadData<'_>],
    ex: &[Example],
    show_text: bool,
) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut h = String::new();
    let model = summary["model"].as_str().unwrap_or("");
    write!(
        h,
        "<!doctype html><html lang=en><head><meta charset=utf-8><title>turnscore eval: {m}</title>\
         <style>body{{font-family:sans-serif;margin:24px;max-width:1100px;color:#222}}\
         table{{border-collapse:collapse;margin:8px 0 20px}}td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right;font-size:13px}}\
         td:first-child,th:first-child{{text-align:left}}h2{{margin-top:32px}}.warn{{background:#fee;padding:8px;border:1px solid #c66}}\
         .small{{color:#666;font-size:12px}}</style></head><body>\
         <h1>turnscore eval</h1><p>model <b>{m}</b><br><span class=small>sha256 {sha}<br>inputs: {inp}; {rows} rows</span></p>",
        m = esc(model),
        sha = esc(summary["model_sha256"].as_str().unwrap_or("")),
        inp = esc(&summary["inputs"].as_array().map_or(String::new(), |a| a
            .iter()
            .filter_map(|x| x.as_str())
            .collect::<Vec<_>>()
            .join(", "))),
        rows = summary["rows"]
    )?;
    if show_text {
        h.push_str(
            "<p class=warn>This report was made with --show-text: it contains message text, which \
             is personal data. Do not share it beyond the people allowed to read the inputs.</p>",
        );
    }
    // Summary.
    h.push_str("<h2>Summary</h2><table><tr><th>head</th><th>annotated rows</th><th>micro P</th><th>micro R</th><th>micro F1</th><th>macro F1</th></tr>");
    for head in ["topics", "sensitive"] {
        let s = &summary[head];
        write!(
            h,
            "<tr><td>{head}</td><td>{}</td><td>{:.3}</td><td>{:.3}</td><td>{:.3}</td><td>{:.3}</td></tr>",
            s["rows"],
            s["micro"]["precision"].as_f64().unwrap_or(0.0),
            s["micro"]["recall"].as_f64().unwrap_or(0.0),
            s["micro"]["f1"].as_f64().unwrap_or(0.0),
            s["macro_f1"].as_f64().unwrap_or(0.0)
        )?;
    }
    h.push_str("</table>");
    if let Some(f1) = summary["topics_on_clean_turns"]["micro"]["f1"].as_f64() {
        write!(h, "<p>Topic micro F1 on clean turns (no sensitive label): <b>{f1:.3}</b></p>")?;
    }
    h.push_str("<h3>The gate: a turn is suppressed when any sensitive label fires</h3><table><tr><th>source</th><th>sensitive turns</th><th>caught</th><th>clean turns</th><th>wrongly suppressed</th></tr>");
    if let Some(g) = summary["gate"].as_object() {
        for (k, v) in g {
            write!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(k),
                v["sensitive_turns"],
                pct(v["caught"].as_f64()),
                v["clean_turns"],
                pct(v["wrongly_suppressed"].as_f64())
            )?;
        }
    }
    h.push_str("</table>");
    for head in heads {
        write!(h, "<h2>{} head</h2>", head.name)?;
        h.push_str("<table><tr><th>label</th><th>P</th><th>R</th><th>F1</th><th>support</th><th>threshold</th><th>calibration</th></tr>");
        for l in summary[head.name]["labels"].as_array().into_iter().flatten() {
            let name = l["label"].as_str().unwrap_or("");
            let cal = head
                .labels
                .iter()
                .find(|x| x.name == name)
                .and_then(|x| x.calibration.as_ref())
                .map_or("none".to_string(), |c| format!("{} a={:.3} b={:.3}", c.method, c.a, c.b));
            let t = if l["trained"].as_bool().unwrap_or(false) {
                format!("{:.4}", l["threshold"].as_f64().unwrap_or(0.0))
            } else {
                "untrained".into()
            };
            write!(
                h,
                "<tr><td>{}</td><td>{:.3}</td><td>{:.3}</td><td>{:.3}</td><td>{}</td><td>{t}</td><td>{}</td></tr>",
                esc(name),
                l["precision"].as_f64().unwrap_or(0.0),
                l["recall"].as_f64().unwrap_or(0.0),
                l["f1"].as_f64().unwrap_or(0.0),
                l["support"].as_f64().unwrap_or(0.0) as u64,
                esc(&cal)
            )?;
        }
        h.push_str("</table>");
        write!(
            h,
            "<h3>Precision/recall per label</h3><p class=small>Blue: the curve over every \
             threshold; red: the model's threshold. n+ = positives.</p>{}",
            pr_svg(head)?
        )?;
        let (svg, _) = reliability_svg(head)?;
        write!(
            h,
            "<h3>Reliability</h3><p class=small>Scores of every trained label, in 10 bins: a \
             calibrated head follows the diagonal (a score of 0.8 is right about 80% of the \
             time). Dot size grows with the bin's row count.</p>{svg}"
        )?;
        write!(
            h,
            "<h3>Worst misses and false alarms per label</h3><p class=small>Misses: positives \
             below the threshold, lowest score first. False alarms: negatives at or above it, \
             highest first. Five of each per label.{}</p><table><tr><th>label</th><th>kind</th><th>id</th><th>score</th>{}</tr>",
            if show_text { "" } else { " Ids only: add --show-text to see the turns." },
            if show_text { "<th>text</th>" } else { "" }
        )?;
        for (l, lab) in head.labels.iter().enumerate() {
            if !lab.trained {
                continue;
            }
            let mut miss: Vec<_> =
                head.pairs[l].iter().filter(|x| x.2 && x.1 < lab.threshold).collect();
            miss.sort_by(|a, b| a.1.total_cmp(&b.1));
            let mut alarm: Vec<_> =
                head.pairs[l].iter().filter(|x| !x.2 && x.1 >= lab.threshold).collect();
            alarm.sort_by(|a, b| b.1.total_cmp(&a.1));
            for (kind, v) in [("miss", &miss), ("false alarm", &alarm)] {
                for &&(i, s, _) in v.iter().take(5) {
                    write!(
                        h,
                        "<tr><td>{}</td><td>{kind}</td><td>{}</td><td>{s:.4}</td>{}</tr>",
                        esc(&lab.name),
                        esc(&ex[i].id),
                        if show_text {
                            format!("<td>{}</td>", esc(&ex[i].text))
                        } else {
                            String::new()
                        }
                    )?;
                }
            }
        }
        h.push_str("</table>");
    }
    h.push_str("<p class=small>Written by turnscore eval --report.</p></body></html>\n");
    let path = dir.join("index.html");
    std::fs::write(&path, h).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pr_curve_counts() {
        // Scores 0.9 (pos), 0.8 (neg), 0.7 (pos), 0.1 (neg).
        let p = [(0, 0.9, true), (1, 0.8, false), (2, 0.7, true), (3, 0.1, false)];
        let c = pr_curve(&p);
        assert_eq!(
            c,
            vec![(0.5, 1.0, 0.9), (0.5, 0.5, 0.8), (1.0, 2.0 / 3.0, 0.7), (1.0, 0.5, 0.1)]
        );
    }
}
