//! The commands. No engine logic lives here: parse flags, call the engine, write, report.

use crate::sink::{format_for, Out, Sink};
use crate::{Command, Common};
use anyhow::{bail, Context, Result};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use turnscore::format::ModelFile;
use turnscore::input::JsonlReader;
use turnscore::policy::{Missing, Policy};
use turnscore::{Engine, EngineOptions};

/// Rows read and scored per step; memory stays bounded by this, not by the input size.
const CHUNK_ROWS: usize = 4096;

pub fn run(cmd: Command) -> Result<()> {
    match cmd {
        Command::Score { input, output, format, quiet, common } => {
            score(&input, &output, format, quiet, &common)
        }
        Command::Embed { input, output, quiet, common } => embed(&input, &output, quiet, &common),
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

fn open_input(path: &Path) -> Result<Box<dyn BufRead>> {
    if path == Path::new("-") {
        return Ok(Box::new(BufReader::new(std::io::stdin())));
    }
    let f = std::fs::File::open(path)
        .with_context(|| format!("cannot open input {}", path.display()))?;
    Ok(Box::new(BufReader::with_capacity(1 << 20, f)))
}

fn input_name(path: &Path) -> String {
    if path == Path::new("-") {
        "<stdin>".into()
    } else {
        path.display().to_string()
    }
}

fn score(
    input: &Path,
    output: &Path,
    format: Option<crate::Format>,
    quiet: bool,
    c: &Common,
) -> Result<()> {
    let engine = open_engine(c)?;
    let mut reader = JsonlReader::new(open_input(input)?).max_text_bytes(c.max_bytes);
    let schema = turnscore::output::schema(engine.topic_labels(), engine.sensitive_labels());
    let mut sink = Sink::new(Out::open(output)?, format_for(output, format), schema)?;
    let mut by_reason = std::collections::BTreeMap::<String, u64>::new();
    let mut missing = Missing::default();
    let started = std::time::Instant::now();
    loop {
        let rows = reader
            .next_chunk(CHUNK_ROWS)
            .with_context(|| format!("cannot read {}", input_name(input)))?;
        if rows.is_empty() {
            break;
        }
        for t in rows.iter().filter_map(|r| r.turn.as_ref().ok()) {
            missing.count(engine.policy(), t);
        }
        let batch = engine.score_rows(&rows)?;
        for r in turnscore_reasons(&batch) {
            *by_reason.entry(r).or_default() += 1;
        }
        sink.write(&batch)?;
    }
    sink.finish()?;
    if !quiet {
        let secs = started.elapsed().as_secs_f64();
        let total: u64 = by_reason.values().sum();
        let sum = |f: &dyn Fn(&str) -> bool| -> u64 {
            by_reason.iter().filter(|(k, _)| f(k)).map(|(_, v)| v).sum()
        };
        let ok = sum(&|k| k == "ok");
        let sensitive = sum(&|k| k.starts_with("sensitive:"));
        let rejected = sum(&|k| k.starts_with("rejected:"));
        let policy = total - ok - sensitive - rejected;
        eprintln!(
            "turnscore: {total} rows: {ok} ad-eligible, {sensitive} sensitive, {policy} not admitted by policy {:?}, {rejected} rejected; {} blank lines skipped; {secs:.1}s, {:.0} rows/s",
            engine.policy().version,
            reader.blank_lines(),
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

fn turnscore_reasons(batch: &arrow_array::RecordBatch) -> Vec<String> {
    use arrow_array::cast::AsArray;
    use arrow_array::types::Int32Type;
    let col = batch.column_by_name("reason").expect("reason column");
    let dict = col.as_dictionary::<Int32Type>();
    let values = dict.values().as_string::<i32>();
    dict.keys().iter().map(|k| values.value(k.unwrap_or(0) as usize).to_string()).collect()
}

fn embed(input: &Path, output: &Path, quiet: bool, c: &Common) -> Result<()> {
    let engine = open_engine(c)?;
    let mut reader = JsonlReader::new(open_input(input)?).max_text_bytes(c.max_bytes);
    let mut out = Out::open(output)?;
    let (mut rows_n, mut rejected, mut suppressed) = (0u64, 0u64, 0u64);
    loop {
        let rows = reader
            .next_chunk(CHUNK_ROWS)
            .with_context(|| format!("cannot read {}", input_name(input)))?;
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
