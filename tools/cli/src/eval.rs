//! `turnscore eval`: a model's accuracy on labeled rows, at the thresholds stored in the model.
//!
//! Per label: precision, recall, F1 and support (rows whose head is `null` are masked, not
//! negatives). Per head: micro and macro F1 (macro over labels with support). For the sensitive
//! head, what the gate does: the share of sensitive turns caught (any sensitive label fires, so
//! the turn is suppressed) and the share of clean turns wrongly suppressed, overall and by source.

use crate::cmd::{open_engine, CHUNK_ROWS};
use crate::data::{load_file, Example};
use crate::metrics::Prf;
use crate::Common;
use anyhow::{bail, Result};
use std::collections::BTreeMap;
use std::io::Write;
use turnscore::format::LabelMeta;
use turnscore::output::TurnScores;
use turnscore_io::source::{expand, InFormat};

/// Per-label counts of one head over (row, scores) pairs; rows whose head is `null` are masked.
fn head_counts<'a>(
    rows: impl Iterator<Item = (&'a Example, &'a TurnScores)>,
    labels: &[LabelMeta],
    pick: fn(&Example) -> &Option<Vec<usize>>,
    get: fn(&TurnScores) -> &[f32],
) -> (Vec<Prf>, usize) {
    let mut c = vec![Prf::default(); labels.len()];
    let mut n = 0;
    for (e, s) in rows {
        let Some(truth) = pick(e) else { continue };
        n += 1;
        for (l, lab) in labels.iter().enumerate() {
            let on = lab.trained && get(s)[l] >= lab.threshold;
            match (on, truth.contains(&l)) {
                (true, true) => c[l].tp += 1.0,
                (true, false) => c[l].fp += 1.0,
                (false, true) => c[l].fn_ += 1.0,
                _ => {}
            }
        }
    }
    (c, n)
}

fn head_json(name: &str, labels: &[LabelMeta], c: &[Prf], rows: usize) -> serde_json::Value {
    let mut micro = Prf::default();
    c.iter().for_each(|x| micro.add(x));
    let with_support: Vec<f64> = c.iter().filter(|x| x.support() > 0.0).map(|x| x.f(1.0)).collect();
    let macro_f1 = if with_support.is_empty() {
        0.0
    } else {
        with_support.iter().sum::<f64>() / with_support.len() as f64
    };
    serde_json::json!({
        "head": name,
        "rows": rows,
        "micro": {"precision": micro.p(), "recall": micro.r(), "f1": micro.f(1.0)},
        "macro_f1": macro_f1,
        "labels": labels.iter().zip(c).map(|(l, x)| serde_json::json!({
            "label": l.name, "threshold": l.threshold, "trained": l.trained,
            "precision": x.p(), "recall": x.r(), "f1": x.f(1.0), "support": x.support(),
        })).collect::<Vec<_>>(),
    })
}

/// Whether `score` would veto the turn: the gate itself, so that a NaN score or a model without
/// a sensitive head counts as suppressed here too.
fn vetoed(engine: &turnscore::Engine, s: &TurnScores) -> bool {
    let d = turnscore::gate::decide(
        engine.topic_labels(),
        engine.sensitive_labels(),
        engine.policy(),
        s,
    );
    !d.reason.ad_eligible()
}

pub fn eval(
    inputs: &[String],
    json: bool,
    context: usize,
    report_dir: Option<&std::path::Path>,
    show_text: bool,
    common: &Common,
) -> Result<()> {
    let engine = open_engine(common)?;
    let tn: Vec<&str> = engine.topic_labels().iter().map(|l| l.name.as_str()).collect();
    let sn: Vec<&str> = engine.sensitive_labels().iter().map(|l| l.name.as_str()).collect();
    let mut ex = Vec::new();
    let files = expand(inputs, Some(InFormat::Jsonl))?;
    // Rows of each input file, as a range of `ex`: the figures by input (dev beside test).
    let mut ranges = Vec::with_capacity(files.len());
    for f in &files {
        if f.size.is_none() {
            bail!("eval reads files (labeled rows), not standard input");
        }
        let start = ex.len();
        ex.extend(load_file(&f.path, &tn, &sn)?);
        ranges.push(start..ex.len());
    }
    if ex.is_empty() {
        bail!("no labeled rows in the inputs");
    }
    let started = std::time::Instant::now();
    let mut scores = Vec::with_capacity(ex.len());
    let mut ctx = crate::context::ContextBuf::new(context);
    for chunk in ex.chunks(CHUNK_ROWS) {
        let texts: Vec<&str> = chunk.iter().map(|e| e.text.as_str()).collect();
        if context > 0 {
            let c: Vec<Option<String>> = chunk
                .iter()
                .map(|e| ctx.next(e.conversation_id.as_deref(), e.turn, &e.text, true))
                .collect();
            let refs: Vec<Option<&str>> = c.iter().map(|x| x.as_deref()).collect();
            scores.extend(engine.score_texts_in_context(&texts, &refs)?);
        } else {
            scores.extend(engine.score_texts(&texts)?);
        }
        // A progress line rewritten with \r is for a terminal only: a log file gets none.
        if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            eprint!(
                "\rturnscore: scored {}/{} rows ({:.0}/s)   ",
                scores.len(),
                ex.len(),
                scores.len() as f64 / started.elapsed().as_secs_f64()
            );
        }
    }
    if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        eprintln!();
    }
    let pairs = || ex.iter().zip(&scores);
    let (tc, trows) = head_counts(pairs(), engine.topic_labels(), |e| &e.topics, |s| &s.topics);
    let (sc, srows) =
        head_counts(pairs(), engine.sensitive_labels(), |e| &e.sensitive, |s| &s.sensitive);
    // Topics on clean turns only (rows annotated clean for the sensitive head): the turns whose
    // topics may be used at all.
    let (tcc, tcrows) = head_counts(
        pairs().filter(|(e, _)| e.sensitive.as_ref().is_some_and(|s| s.is_empty())),
        engine.topic_labels(),
        |e| &e.topics,
        |s| &s.topics,
    );
    // The gate: a turn is suppressed when any trained sensitive label fires.
    let mut gate: BTreeMap<String, [u64; 4]> = BTreeMap::new(); // source -> [sensitive, caught, clean, wrongly suppressed]
    for (e, s) in ex.iter().zip(&scores) {
        let Some(truth) = &e.sensitive else { continue };
        let fired = vetoed(&engine, s);
        for key in ["(all)", e.source.as_str()] {
            let g = gate.entry(key.to_string()).or_default();
            if truth.is_empty() {
                g[2] += 1;
                g[3] += u64::from(fired);
            } else {
                g[0] += 1;
                g[1] += u64::from(fired);
            }
        }
    }
    // Worst misses (sensitive turns with the lowest top score among their true labels) and worst
    // false alarms (clean turns with the highest sensitive score): ids and scores, never text.
    let mut misses: Vec<(f32, &Example, String)> = Vec::new();
    let mut alarms: Vec<(f32, &Example, String)> = Vec::new();
    let slabels = engine.sensitive_labels();
    for (e, s) in ex.iter().zip(&scores) {
        let Some(truth) = &e.sensitive else { continue };
        if turnscore::output::hits(slabels, &s.sensitive).is_empty() && !truth.is_empty() {
            let (l, sc) = truth
                .iter()
                .map(|&l| (l, s.sensitive[l]))
                .max_by(|a, b| a.1.total_cmp(&b.1))
                .unwrap_or((0, 0.0));
            misses.push((sc, e, slabels[l].name.clone()));
        } else if truth.is_empty() {
            if let Some((l, sc)) = s
                .sensitive
                .iter()
                .enumerate()
                .filter(|(l, _)| slabels[*l].trained && s.sensitive[*l] >= slabels[*l].threshold)
                .map(|(l, &v)| (l, v))
                .max_by(|a, b| a.1.total_cmp(&b.1))
            {
                alarms.push((sc, e, slabels[l].name.clone()));
            }
        }
    }
    misses.sort_by(|a, b| a.0.total_cmp(&b.0));
    alarms.sort_by(|a, b| b.0.total_cmp(&a.0));
    let listing = |v: &[(f32, &Example, String)]| -> Vec<serde_json::Value> {
        v.iter()
            .take(10)
            .map(|(s, e, l)| {
                let mut j = serde_json::json!({"id": e.id, "label": l, "score": s});
                if show_text {
                    j["text"] = e.text.clone().into();
                }
                j
            })
            .collect()
    };
    let share = |a: u64, b: u64| if b > 0 { Some(a as f64 / b as f64) } else { None };
    let gate_json: serde_json::Value = gate
        .iter()
        .map(|(k, g)| {
            (
                k.clone(),
                serde_json::json!({
                    "sensitive_turns": g[0], "caught": share(g[1], g[0]),
                    "clean_turns": g[2], "wrongly_suppressed": share(g[3], g[2]),
                }),
            )
        })
        .collect::<serde_json::Map<_, _>>()
        .into();
    // The headline figures of each input on its own: with `eval dev.jsonl test.jsonl`, the split
    // nothing was tuned on stands beside the one the thresholds were chosen on.
    let by_input: Vec<serde_json::Value> = files
        .iter()
        .zip(&ranges)
        .map(|(f, r)| {
            let part = || ex[r.clone()].iter().zip(&scores[r.clone()]);
            let (sc, _) = head_counts(
                part(),
                engine.sensitive_labels(),
                |e| &e.sensitive,
                |s| &s.sensitive,
            );
            let (tcc, tcrows) = head_counts(
                part().filter(|(e, _)| e.sensitive.as_ref().is_some_and(|s| s.is_empty())),
                engine.topic_labels(),
                |e| &e.topics,
                |s| &s.topics,
            );
            let mut g = [0u64; 4];
            for (e, s) in part() {
                let Some(truth) = &e.sensitive else { continue };
                let fired = vetoed(&engine, s);
                let k = if truth.is_empty() { 2 } else { 0 };
                g[k] += 1;
                g[k + 1] += u64::from(fired);
            }
            let recall: serde_json::Map<String, serde_json::Value> = engine
                .sensitive_labels()
                .iter()
                .zip(&sc)
                .filter(|(_, c)| c.support() > 0.0)
                .map(|(l, c)| (l.name.clone(), c.r().into()))
                .collect();
            let micro = tcc.iter().fold(Prf::default(), |mut a, c| {
                a.add(c);
                a
            });
            serde_json::json!({
                "input": f.name(), "rows": r.len(),
                "sensitive_turns": g[0], "caught": share(g[1], g[0]),
                "clean_turns": g[2], "wrongly_suppressed": share(g[3], g[2]),
                "sensitive_recall": recall,
                "topics_on_clean_turns_micro_f1": micro.f(1.0), "topics_on_clean_turns_rows": tcrows,
            })
        })
        .collect();
    let report = serde_json::json!({
        "model": engine.model().meta().model_id,
        "model_sha256": engine.model().sha256(),
        "inputs": files.iter().map(|f| f.name()).collect::<Vec<_>>(),
        "rows": ex.len(),
        "window": engine.window(),
        "topics": head_json("topics", engine.topic_labels(), &tc, trows),
        "sensitive": head_json("sensitive", engine.sensitive_labels(), &sc, srows),
        "topics_on_clean_turns": head_json("topics", engine.topic_labels(), &tcc, tcrows),
        "gate": gate_json,
        "worst_misses": listing(&misses),
        "worst_false_alarms": listing(&alarms),
        "by_input": by_input,
    });
    if let Some(dir) = report_dir {
        let heads = [
            crate::report::HeadData::new(
                "topics",
                engine.topic_labels(),
                &ex,
                &scores,
                |e| &e.topics,
                |s| &s.topics,
            ),
            crate::report::HeadData::new(
                "sensitive",
                engine.sensitive_labels(),
                &ex,
                &scores,
                |e| &e.sensitive,
                |s| &s.sensitive,
            ),
        ];
        let path = crate::report::write(dir, &report, &heads, &ex, show_text)?;
        eprintln!("turnscore: wrote the report to {}", path.display());
    }
    let mut o = std::io::stdout().lock();
    if json {
        writeln!(o, "{}", serde_json::to_string_pretty(&report)?)?;
        return Ok(());
    }
    writeln!(
        o,
        "model {} on {} rows from {} file(s)",
        report["model"].as_str().unwrap_or(""),
        ex.len(),
        files.len()
    )?;
    for head in ["topics", "sensitive"] {
        let h = &report[head];
        writeln!(
            o,
            "\n{head}: {} annotated rows; micro P {:.3} R {:.3} F1 {:.3}; macro F1 {:.3}",
            h["rows"],
            h["micro"]["precision"].as_f64().unwrap_or(0.0),
            h["micro"]["recall"].as_f64().unwrap_or(0.0),
            h["micro"]["f1"].as_f64().unwrap_or(0.0),
            h["macro_f1"].as_f64().unwrap_or(0.0)
        )?;
        writeln!(
            o,
            "  {:<24} {:>6} {:>6} {:>6} {:>7} {:>9}",
            "label", "P", "R", "F1", "support", "threshold"
        )?;
        for l in h["labels"].as_array().into_iter().flatten() {
            let t = if l["trained"].as_bool().unwrap_or(false) {
                format!("{:.4}", l["threshold"].as_f64().unwrap_or(0.0))
            } else {
                "untrained".into()
            };
            writeln!(
                o,
                "  {:<24} {:>6.3} {:>6.3} {:>6.3} {:>7} {:>9}",
                l["label"].as_str().unwrap_or(""),
                l["precision"].as_f64().unwrap_or(0.0),
                l["recall"].as_f64().unwrap_or(0.0),
                l["f1"].as_f64().unwrap_or(0.0),
                l["support"].as_f64().unwrap_or(0.0) as u64,
                t
            )?;
        }
    }
    let tc = &report["topics_on_clean_turns"];
    writeln!(
        o,
        "\ntopics on clean turns (sensitive annotated and empty): {} rows; micro P {:.3} R {:.3} F1 {:.3}",
        tc["rows"],
        tc["micro"]["precision"].as_f64().unwrap_or(0.0),
        tc["micro"]["recall"].as_f64().unwrap_or(0.0),
        tc["micro"]["f1"].as_f64().unwrap_or(0.0)
    )?;
    writeln!(o, "\ngate (a turn is suppressed when any sensitive label fires)")?;
    writeln!(
        o,
        "  {:<24} {:>10} {:>8} {:>8} {:>10}",
        "source", "sensitive", "caught", "clean", "wrongly"
    )?;
    for (k, g) in &gate {
        let pct = |x: Option<f64>| x.map_or("-".to_string(), |v| format!("{:.1}%", 100.0 * v));
        writeln!(
            o,
            "  {:<24} {:>10} {:>8} {:>8} {:>10}",
            k,
            g[0],
            pct(share(g[1], g[0])),
            g[2],
            pct(share(g[3], g[2]))
        )?;
    }
    writeln!(o, "\nby input: sensitive turns caught, clean turns wrongly suppressed, the lowest sensitive label recall, topic micro-F1 on clean turns")?;
    writeln!(
        o,
        "  {:<32} {:>6} {:>8} {:>8} {:>30} {:>8}",
        "input", "rows", "caught", "wrongly", "lowest recall", "topic F1"
    )?;
    for b in report["by_input"].as_array().into_iter().flatten() {
        let pct = |x: &serde_json::Value| {
            x.as_f64().map_or("-".to_string(), |v| format!("{:.1}%", 100.0 * v))
        };
        let low = b["sensitive_recall"]
            .as_object()
            .and_then(|m| {
                m.iter().min_by(|a, b| {
                    a.1.as_f64().unwrap_or(0.0).total_cmp(&b.1.as_f64().unwrap_or(0.0))
                })
            })
            .map_or("-".to_string(), |(l, v)| format!("{l} {:.3}", v.as_f64().unwrap_or(0.0)));
        let name = b["input"].as_str().unwrap_or("");
        // The end of a long path, cut at a character boundary.
        let cut = name.char_indices().rev().nth(31).map_or(0, |(i, _)| i);
        let name = &name[cut..];
        writeln!(
            o,
            "  {:<32} {:>6} {:>8} {:>8} {:>30} {:>8.3}",
            name,
            b["rows"].as_u64().unwrap_or(0),
            pct(&b["caught"]),
            pct(&b["wrongly_suppressed"]),
            low,
            b["topics_on_clean_turns_micro_f1"].as_f64().unwrap_or(0.0)
        )?;
    }
    for (title, key) in [
        ("worst misses (sensitive turns not suppressed)", "worst_misses"),
        ("worst false alarms (clean turns suppressed)", "worst_false_alarms"),
    ] {
        writeln!(o, "\n{title}: id, label, score")?;
        for m in report[key].as_array().into_iter().flatten() {
            writeln!(
                o,
                "  {:<40} {:<24} {:.4}{}",
                m["id"].as_str().unwrap_or(""),
                m["label"].as_str().unwrap_or(""),
                m["score"].as_f64().unwrap_or(0.0),
                m["text"].as_str().map_or(String::new(), |t| format!("  {t}"))
            )?;
        }
    }
    Ok(())
}
