//! The commands. No engine logic lives here: parse flags, call the engine, write, report.

use crate::sink::{format_for, Out, Sink};
use crate::source::{expand, Input, Source};
use crate::ReadArgs;
use crate::{Command, Common};
use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::io::Write;
use std::path::{Path, PathBuf};
use turnscore::format::ModelFile;
use turnscore::input::{FieldMap, ReadOptions};
use turnscore::policy::{Missing, Policy};
use turnscore::{Engine, EngineOptions};

/// Rows read and scored per step; memory stays bounded by this, not by the input size.
const CHUNK_ROWS: usize = 1024;

pub fn run(cmd: Command) -> Result<()> {
    match cmd {
        Command::Score { read, output, format, rejects, strict, quiet, common } => {
            score(&read, &output, format, rejects.as_deref(), strict, quiet, &common)
        }
        Command::Embed { read, output, quiet, common } => embed(&read, &output, quiet, &common),
        Command::Inspect { model, json } => inspect(model, json),
        Command::Convert {
            hf_dir,
            output,
            quant,
            heads,
            checkpoint_head,
            pooling,
            normalize,
            model_id,
        } => convert(hf_dir, output, &quant, heads, &checkpoint_head, pooling, normalize, model_id),
        Command::Policy { file } => {
            let p = load_policy(file.as_deref())?;
            println!("{}", p.to_json());
            eprintln!("turnscore: policy {:?}, sha256 {}", p.version, p.sha256());
            Ok(())
        }
        Command::TrainHeads { data, output, cache, seed, epochs, common } => {
            let engine = open_engine(&common)?;
            crate::train::train(&engine, &data, &output, cache.as_deref(), seed, epochs)
        }
    }
}

fn model_path(explicit: Option<PathBuf>) -> Option<PathBuf> {
    explicit.or_else(|| std::env::var_os("TURNSCORE_MODEL").map(PathBuf::from))
}

fn open_model_file(explicit: Option<PathBuf>) -> Result<ModelFile> {
    match model_path(explicit) {
        Some(p) => Ok(ModelFile::open(&p)?),
        None => bundled_model_file(),
    }
}

#[cfg(feature = "bundled-model")]
fn bundled_model_file() -> Result<ModelFile> {
    ModelFile::from_static(turnscore::bundled::bytes()).context("the bundled model is damaged")
}

#[cfg(not(feature = "bundled-model"))]
fn bundled_model_file() -> Result<ModelFile> {
    bail!("this build has no bundled model: pass --model PATH or set TURNSCORE_MODEL")
}

fn load_policy(path: Option<&Path>) -> Result<Policy> {
    match path {
        None => Ok(Policy::default()),
        Some(p) => {
            let b =
                std::fs::read(p).with_context(|| format!("cannot read policy {}", p.display()))?;
            Policy::from_json(&b).with_context(|| format!("invalid policy file {}", p.display()))
        }
    }
}

pub fn open_engine(c: &Common) -> Result<Engine> {
    if c.batch_tokens == 0 {
        bail!("--batch-tokens must be at least 1");
    }
    let policy = load_policy(c.policy.as_deref())?;
    let opts = EngineOptions {
        threads: c.threads,
        batch_tokens: c.batch_tokens,
        stride: c.stride,
        window: c.window,
        policy,
    };
    let e = Engine::new(open_model_file(c.model.clone())?, opts);
    e.with_context(|| match &c.policy {
        Some(p) => format!("cannot use model with policy {}", p.display()),
        None => "cannot open model".into(),
    })
}

fn read_options(r: &ReadArgs) -> ReadOptions {
    ReadOptions {
        fields: FieldMap {
            id: r.id_col.clone(),
            text: r.text_col.clone(),
            user_id: r.user_col.clone(),
            conversation_id: r.conversation_col.clone(),
            turn: r.turn_col.clone(),
            role: r.role_col.clone(),
            region: r.region_col.clone(),
            consent_ads: r.consent_col.clone(),
            is_minor: r.minor_col.clone(),
            account_linked: r.linked_col.clone(),
            ts: r.ts_col.clone(),
        },
        max_text_bytes: r.max_bytes,
    }
}

/// A progress bar on stderr when it is a terminal (and not --quiet); hidden otherwise.
fn progress(inputs: &[Input], quiet: bool) -> ProgressBar {
    if quiet || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let total: Option<u64> = inputs.iter().map(|i| i.size).sum();
    let style = "{spinner} [{elapsed_precise}] {wide_bar} {percent:>3}% ETA {eta} | {msg}";
    match total {
        Some(t) => {
            ProgressBar::new(t).with_style(ProgressStyle::with_template(style).expect("template"))
        }
        None => ProgressBar::new_spinner().with_style(
            ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg}").expect("template"),
        ),
    }
}

#[allow(clippy::too_many_arguments)]
fn score(
    read: &ReadArgs,
    output: &Path,
    format: Option<crate::Format>,
    rejects: Option<&Path>,
    strict: bool,
    quiet: bool,
    c: &Common,
) -> Result<()> {
    let inputs = expand(&read.inputs, read.input_format)?;
    let engine = open_engine(c)?;
    let opts = read_options(read);
    let schema = turnscore::output::schema(engine.topic_labels(), engine.sensitive_labels());
    let mut sink = Sink::new(Out::open(output)?, format_for(output, format), schema)?;
    let mut rej_out = rejects.map(Out::open).transpose()?;
    let mut by_reason = std::collections::BTreeMap::<String, u64>::new();
    let mut missing = Missing::default();
    let mut blank = 0u64;
    let started = std::time::Instant::now();
    let bar = progress(&inputs, quiet);
    let mut done_bytes = 0u64;
    for input in &inputs {
        let mut src = Source::open(input, &opts, CHUNK_ROWS)?;
        loop {
            let rows = src.next_chunk(CHUNK_ROWS)?;
            if rows.is_empty() {
                break;
            }
            for r in &rows {
                if let Err(rej) = &r.turn {
                    if strict {
                        bar.finish_and_clear();
                        bail!(
                            "{} line {}: row rejected (rejected:{}{}); --strict stops the job, no output was written",
                            src.name(),
                            r.line,
                            rej.reason.code(),
                            rej.id.as_ref().map(|i| format!(", id {i:?}")).unwrap_or_default()
                        );
                    }
                    if let Some(w) = rej_out.as_mut() {
                        let v = serde_json::json!({
                            "input": src.name(), "line": r.line, "id": rej.id,
                            "reason": format!("rejected:{}", rej.reason.code()),
                        });
                        serde_json::to_writer(&mut w.w, &v)?;
                        w.w.write_all(b"\n")?;
                    }
                }
            }
            for t in rows.iter().filter_map(|r| r.turn.as_ref().ok()) {
                missing.count(engine.policy(), t);
            }
            let batch = engine.score_rows(&rows)?;
            for r in turnscore_reasons(&batch) {
                *by_reason.entry(r).or_default() += 1;
            }
            sink.write(&batch)?;
            let (total, ok, sens, rej) = tally(&by_reason);
            bar.set_position(done_bytes + src.bytes.load(std::sync::atomic::Ordering::Relaxed));
            bar.set_message(format!(
                "{total} rows, {:.0}/s, {ok} ad-eligible, {sens} sensitive, {} not admitted, {rej} rejected",
                total as f64 / started.elapsed().as_secs_f64().max(1e-9),
                total - ok - sens - rej
            ));
        }
        blank += src.blank_lines();
        done_bytes += input.size.unwrap_or(0);
    }
    sink.finish()?;
    if let Some(w) = rej_out {
        w.finish()?;
    }
    bar.finish_and_clear();
    if !quiet {
        let secs = started.elapsed().as_secs_f64();
        let (total, ok, sensitive, rejected) = tally(&by_reason);
        let policy = total - ok - sensitive - rejected;
        eprintln!(
            "turnscore: {total} rows from {} input(s): {ok} ad-eligible, {sensitive} sensitive, {policy} not admitted by policy {:?}, {rejected} rejected; {blank} blank lines skipped; {secs:.1}s, {:.0} rows/s",
            inputs.len(),
            engine.policy().version,
            total as f64 / secs.max(1e-9)
        );
        let detail: Vec<String> = by_reason.iter().map(|(k, v)| format!("{k} {v}")).collect();
        eprintln!("turnscore: by reason: {}", detail.join(", "));
        let miss = missing.nonzero();
        if !miss.is_empty() {
            let m: Vec<String> = miss.iter().map(|(f, n)| format!("{f} ({n} rows)")).collect();
            eprintln!(
                "turnscore: note: rows without {} were read strictly (no region = excluded, no is_minor = minor, no consent_ads = no consent, no account_linked = not linked, no role = not targeted)",
                m.join(", ")
            );
        }
    }
    Ok(())
}

/// `(rows, ok, sensitive, rejected)` from counts by reason.
fn tally(by_reason: &std::collections::BTreeMap<String, u64>) -> (u64, u64, u64, u64) {
    let sum = |f: &dyn Fn(&str) -> bool| -> u64 {
        by_reason.iter().filter(|(k, _)| f(k)).map(|(_, v)| v).sum()
    };
    (
        by_reason.values().sum(),
        sum(&|k| k == "ok"),
        sum(&|k| k.starts_with("sensitive:")),
        sum(&|k| k.starts_with("rejected:")),
    )
}

fn turnscore_reasons(batch: &arrow_array::RecordBatch) -> Vec<String> {
    use arrow_array::cast::AsArray;
    use arrow_array::types::Int32Type;
    let col = batch.column_by_name("reason").expect("reason column");
    let dict = col.as_dictionary::<Int32Type>();
    let values = dict.values().as_string::<i32>();
    dict.keys().iter().map(|k| values.value(k.unwrap_or(0) as usize).to_string()).collect()
}

fn embed(read: &ReadArgs, output: &Path, quiet: bool, c: &Common) -> Result<()> {
    let inputs = expand(&read.inputs, read.input_format)?;
    let engine = open_engine(c)?;
    let opts = read_options(read);
    let mut out = Out::open(output)?;
    let (mut rows_n, mut rejected, mut suppressed) = (0u64, 0u64, 0u64);
    for input in &inputs {
        let mut src = Source::open(input, &opts, CHUNK_ROWS)?;
        loop {
            let rows = src.next_chunk(CHUNK_ROWS)?;
            if rows.is_empty() {
                break;
            }
            // The policy applies here too: a turn it does not admit is never tokenized.
            let admit: Vec<Option<String>> = rows
                .iter()
                .map(|r| {
                    r.turn.as_ref().ok().and_then(|t| engine.policy().admit(t)).map(|s| s.reason())
                })
                .collect();
            let texts: Vec<&str> = rows
                .iter()
                .zip(&admit)
                .filter_map(|(r, a)| {
                    r.turn.as_ref().ok().filter(|_| a.is_none()).map(|t| t.text.as_str())
                })
                .collect();
            let e = engine.embed(&texts)?;
            let mut j = 0;
            for (r, a) in rows.iter().zip(&admit) {
                rows_n += 1;
                let v = match (&r.turn, a) {
                    (Ok(t), None) => {
                        let v = serde_json::json!({"id": t.id, "embedding": e.row(j), "tokens": e.tokens[j], "windows": e.windows[j]});
                        j += 1;
                        v
                    }
                    (Ok(t), Some(reason)) => {
                        suppressed += 1;
                        serde_json::json!({"id": t.id, "embedding": null, "reason": reason})
                    }
                    (Err(rej), _) => {
                        rejected += 1;
                        serde_json::json!({"id": rej.id, "embedding": null, "reason": format!("rejected:{}", rej.reason.code())})
                    }
                };
                serde_json::to_writer(&mut out.w, &v)?;
                out.w.write_all(b"\n")?;
            }
        }
    }
    out.finish()?;
    if !quiet {
        eprintln!(
            "turnscore: {rows_n} rows: {} embedded, {suppressed} not admitted by policy {:?}, {rejected} rejected",
            rows_n - rejected - suppressed,
            engine.policy().version
        );
    }
    Ok(())
}

fn inspect(model: Option<PathBuf>, json: bool) -> Result<()> {
    let m = open_model_file(model.clone())?;
    let meta = m.meta();
    let a = &meta.architecture;
    let where_ = match (m.path(), model_path(model)) {
        (Some(p), _) => p.display().to_string(),
        (None, _) => "models/all-minilm-l6-v2.tsm (bundled in this binary)".into(),
    };
    let mut by_dtype = std::collections::BTreeMap::<&str, (usize, u64)>::new();
    for t in &meta.tensors {
        let e = by_dtype.entry(t.dtype.name()).or_default();
        e.0 += 1;
        e.1 += t.len;
    }
    let sha = m.sha256();
    if json {
        let heads = |h: &Option<turnscore::format::HeadMeta>| {
            h.as_ref().map(|h| serde_json::to_value(&h.labels).unwrap_or_default())
        };
        let v = serde_json::json!({
            "path": where_,
            "format_version": turnscore::format::FORMAT_VERSION,
            "file_bytes": m.bytes().len(),
            "file_sha256": sha,
            "model_id": meta.model_id,
            "quantization": meta.quantization,
            "architecture": a,
            "tokenizer_sha256": meta.tokenizer.sha256,
            "topics": heads(&meta.topics),
            "sensitive": heads(&meta.sensitive),
            "tensors": meta.tensors.len(),
            "tensor_bytes_by_dtype": by_dtype.iter().map(|(k, v)| (k.to_string(), v.1)).collect::<std::collections::BTreeMap<_, _>>(),
            "provenance": meta.provenance,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let mut o = std::io::stdout().lock();
    writeln!(o, "model        {}", meta.model_id)?;
    writeln!(o, "file         {where_}")?;
    writeln!(
        o,
        "format       turnscore-model v{} ({} bytes, checksums verified)",
        turnscore::format::FORMAT_VERSION,
        m.bytes().len()
    )?;
    writeln!(o, "sha256       {sha}")?;
    writeln!(o, "quantization {}", meta.quantization)?;
    for (k, (n, b)) in &by_dtype {
        writeln!(o, "  {k:<10} {n} tensors, {b} bytes")?;
    }
    writeln!(
        o,
        "architecture {} | hidden {} | layers {} | heads {} | ffn {} | vocab {} | positions {}",
        a.model_type,
        a.hidden_size,
        a.num_layers,
        a.num_heads,
        a.intermediate_size,
        a.vocab_size,
        a.max_position_embeddings
    )?;
    writeln!(
        o,
        "pooling      {:?}{} | max_seq_len {}",
        a.pooling,
        if a.normalize { " + L2 normalise" } else { "" },
        a.max_seq_len
    )?;
    writeln!(o, "tokenizer    sha256 {}", meta.tokenizer.sha256)?;
    for (name, head) in [("topics", &meta.topics), ("sensitive", &meta.sensitive)] {
        match head {
            None => writeln!(o, "{name:<12} (no head)")?,
            Some(h) => {
                writeln!(o, "{name:<12} {} labels (label  threshold)", h.labels.len())?;
                for l in &h.labels {
                    let note = if l.trained { "" } else { "  untrained: never fires" };
                    writeln!(o, "  {:<24} {:.4}{note}", l.name, l.threshold)?;
                }
            }
        }
    }
    let p = &meta.provenance;
    writeln!(o, "source       {} (converted by {})", p.source, p.converter)?;
    for (f, h) in &p.source_sha256 {
        writeln!(o, "  {f:<18} sha256 {h}")?;
    }
    for n in &p.notes {
        writeln!(o, "note         {n}")?;
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn convert(
    dir: PathBuf,
    out: PathBuf,
    quant: &str,
    heads: Option<PathBuf>,
    checkpoint_head: &str,
    pooling: Option<String>,
    normalize: Option<bool>,
    model_id: Option<String>,
) -> Result<()> {
    use turnscore::convert::{ConvertOptions, HeadKind, Quant};
    use turnscore::format::Pooling;
    let opts = ConvertOptions {
        quant: match quant {
            "f16" => Quant::F16,
            "f16-emb8" => Quant::F16Emb8,
            _ => Quant::F32,
        },
        heads,
        checkpoint_head: if checkpoint_head == "sensitive" {
            HeadKind::Sensitive
        } else {
            HeadKind::Topics
        },
        pooling: pooling.map(|p| match p.as_str() {
            "cls" => Pooling::Cls,
            "cls-pooler" => Pooling::ClsPooler,
            _ => Pooling::Mean,
        }),
        normalize,
        model_id,
    };
    turnscore::convert::convert(&dir, &out, &opts)
        .with_context(|| format!("cannot convert {}", dir.display()))?;
    let m = ModelFile::open(&out)?;
    eprintln!(
        "turnscore: wrote {} ({} bytes, {}, sha256 {})",
        out.display(),
        m.bytes().len(),
        m.meta().quantization,
        m.sha256()
    );
    Ok(())
}
