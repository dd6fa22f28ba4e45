//! The commands. No engine logic lives here: parse flags, call the engine, write, report.

use crate::Format;
use crate::ReadArgs;
use crate::{Command, Common};
use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::io::Write;
use std::path::{Path, PathBuf};
use turnscore::format::ModelFile;
use turnscore::input::Row;
use turnscore::input::{FieldMap, ReadOptions};
use turnscore::policy::{Missing, Policy};
use turnscore::{Engine, EngineOptions};
use turnscore_io::job::{Position, ShardDir};
use turnscore_io::sink::{format_for, Out, Sink};
use turnscore_io::source::{expand, Input, Source};

/// Rows read and scored per step; memory stays bounded by this, not by the input size.
pub const CHUNK_ROWS: usize = 1024;

pub fn run(cmd: Command) -> Result<()> {
    match cmd {
        Command::Score {
            read,
            output,
            format,
            rejects,
            strict,
            quiet,
            overwrite,
            shard_rows,
            context,
            common,
        } => {
            let dir = is_dir_target(&output);
            let settings = ScoreSettings {
                output: &output,
                format: format.unwrap_or_else(|| {
                    if dir {
                        Format::Parquet
                    } else {
                        format_for(&output, None)
                    }
                }),
                rejects: rejects.as_deref(),
                strict,
                quiet,
                overwrite,
                shard_rows: shard_rows.max(1),
                context,
            };
            score(&read, &settings, &common)
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
        Command::Eval { inputs, json, report, show_text, context, common } => {
            crate::eval::eval(&inputs, json, context, report.as_deref(), show_text, &common)
        }
        Command::Compare { against, inputs, json, common } => {
            crate::compare::compare(&against, &inputs, json, &common)
        }
        Command::Bench { corpus, repeat, latency, no_baseline, ort_model, same_work, common } => {
            if latency {
                crate::bench::latency(corpus, &common)
            } else {
                let baseline = (!no_baseline).then_some(ort_model);
                crate::bench::bench(corpus, repeat, baseline, same_work, &common)
            }
        }
        Command::Policy { file } => {
            let p = load_policy(file.as_deref())?;
            println!("{}", p.to_json());
            eprintln!("turnscore: policy {:?}, sha256 {}", p.version, p.sha256());
            Ok(())
        }
        Command::TrainHeads {
            data,
            tune,
            tune_weight,
            sensitive_recall,
            gate_caught,
            output,
            cache,
            seed,
            epochs,
            common,
        } => {
            let engine = open_engine(&common)?;
            crate::train::train(
                &engine,
                &crate::train::TrainArgs {
                    data: &data,
                    tune: tune.as_deref(),
                    tune_weight,
                    sensitive_recall,
                    gate_caught,
                    out: &output,
                    cache: cache.as_deref(),
                    seed,
                    epochs,
                },
            )
        }
    }
}

fn model_path(explicit: Option<PathBuf>) -> Result<Option<PathBuf>> {
    if explicit.is_some() {
        return Ok(explicit);
    }
    match std::env::var_os("TURNSCORE_MODEL") {
        Some(v) if v.is_empty() => crate::usage!(
            "TURNSCORE_MODEL is set but empty: set it to a model file, or unset it to use the \
             bundled model"
        ),
        v => Ok(v.map(PathBuf::from)),
    }
}

fn open_model_file(explicit: Option<PathBuf>) -> Result<ModelFile> {
    match model_path(explicit)? {
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
    select_isa(c.isa.as_deref())?;
    let policy = load_policy(c.policy.as_deref())?;
    let model = open_model_file(c.model.clone())?;
    let max = model.meta().architecture.max_seq_len as usize;
    let window = c.window.map(|w| w as usize);
    if let Some(w) = window.filter(|&w| w > max) {
        crate::usage!("--window {w} is over the model's window ({max} tokens)");
    }
    if let Some(st) = c.stride.filter(|&st| st.saturating_add(2) >= window.unwrap_or(max)) {
        crate::usage!(
            "--stride {st} must be smaller than the window ({} tokens) minus its 2 special tokens",
            window.unwrap_or(max)
        );
    }
    let opts = EngineOptions {
        threads: usize::from(c.threads),
        batch_tokens: c.batch_tokens,
        stride: c.stride,
        window,
        policy,
    };
    let e = Engine::new(model, opts);
    e.with_context(|| match &c.policy {
        Some(p) => format!("cannot use model with policy {}", p.display()),
        None => "cannot open model".into(),
    })
}

pub fn read_options(r: &ReadArgs) -> ReadOptions {
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

/// Where `score` writes.
enum Dest {
    /// One file or stdout, and an optional rejects report.
    Single(Sink, Option<Out>),
    /// A directory of shards (resumable).
    Dir(ShardDir),
}

fn is_dir_target(output: &Path) -> bool {
    output.to_string_lossy().ends_with('/') || output.is_dir()
}

/// What identifies a job for resuming: inputs (path, size, modification time), model, policy and
/// every setting that changes the output.
fn fingerprint(
    inputs: &[Input],
    engine: &Engine,
    opts: &ReadOptions,
    s: &ScoreSettings<'_>,
) -> String {
    let ins: Vec<serde_json::Value> = inputs
        .iter()
        .map(|i| {
            let mtime = std::fs::metadata(&i.path)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_nanos().to_string());
            serde_json::json!({"path": i.path.display().to_string(), "bytes": i.size, "mtime": mtime})
        })
        .collect();
    let v = serde_json::json!({
        "engine": env!("CARGO_PKG_VERSION"),
        "inputs": ins,
        "model": engine.model().sha256(),
        "policy": engine.policy().sha256(),
        "read": format!("{opts:?}"),
        "window": engine.window(),
        "stride": engine.stride(),
        "context": s.context,
        "shard_rows": s.shard_rows,
        "format": format!("{:?}", s.format),
        "strict": s.strict,
        "rejects": s.rejects.map(|p| p.display().to_string()),
        "gate": GATE_VERSION,
    });
    turnscore::format::hex_sha256(v.to_string().as_bytes())
}

/// Changes when the gate's rules change (a completed job from before is then not "the same job").
const GATE_VERSION: u32 = 2;

/// Whether `score` writes this output through a temporary file (not stdout, a device or a pipe).
fn is_file_target(output: &Path) -> bool {
    output != Path::new("-") && !turnscore_io::sink::is_stream(output)
}

/// Settings of one `score` job.
pub struct ScoreSettings<'a> {
    pub output: &'a Path,
    pub format: crate::Format,
    pub rejects: Option<&'a Path>,
    pub strict: bool,
    pub quiet: bool,
    pub overwrite: bool,
    pub shard_rows: u64,
    /// `--context N`: score each turn with the previous N admitted turns of its conversation.
    pub context: usize,
}

fn manifest(
    engine: &Engine,
    inputs: &[Input],
    by_reason: &BTreeMap<String, u64>,
    blank: u64,
    context: usize,
) -> serde_json::Value {
    let m = engine.model();
    let p = engine.policy();
    serde_json::json!({
        "engine": format!("turnscore {}", env!("CARGO_PKG_VERSION")),
        "model": {
            "id": m.meta().model_id,
            "sha256": m.sha256(),
            "quantization": m.meta().quantization,
            "kernels": turnscore::kernels::Kernels::detect().isa().name(),
            "format_version": turnscore::format::FORMAT_VERSION,
            "tokenizer_sha256": m.meta().tokenizer.sha256,
        },
        "labels": {"topics": engine.topic_labels(), "sensitive": engine.sensitive_labels()},
        "policy": {"version": p.version, "sha256": p.sha256(), "config": p},
        "window": engine.window(),
        "stride": engine.stride(),
        "context": context,
        "inputs": inputs.iter().map(|i| serde_json::json!({"path": i.name(), "bytes": i.size})).collect::<Vec<_>>(),
        "rows": by_reason.values().sum::<u64>(),
        "counts_by_reason": by_reason,
        "blank_lines_skipped": blank,
    })
}

pub fn score(read: &ReadArgs, s: &ScoreSettings<'_>, c: &Common) -> Result<()> {
    let inputs = expand(&read.inputs, read.input_format)?;
    let engine = open_engine(c)?;
    let opts = read_options(read);
    let schema = turnscore::output::schema(engine.topic_labels(), engine.sensitive_labels());
    let mut by_reason = BTreeMap::<String, u64>::new();
    let mut start = Position::default();
    let mut blank_before = 0u64;
    if !engine.sensitive_labels().iter().any(|l| l.trained) && !s.quiet {
        eprintln!(
            "turnscore: warning: model {} has no trained sensitive label, so nothing can veto a turn: {}",
            engine.model().meta().model_id,
            if engine.policy().require_sensitive_head {
                "no turn will be ad-eligible (reason no_sensitive_head); a policy with \"require_sensitive_head\": false allows it"
            } else {
                "the policy allows it (\"require_sensitive_head\": false)"
            }
        );
    }
    // Standard input, and any input that is not a regular file (a FIFO, /dev/stdin, a process
    // substitution): nothing proves a second reading gives the same rows.
    let stdin = inputs
        .iter()
        .any(|i| i.name() == "<stdin>" || !std::fs::metadata(&i.path).is_ok_and(|m| m.is_file()));
    let mut dest = if is_dir_target(s.output) {
        let fp = fingerprint(&inputs, &engine, &opts, s);
        let opened = ShardDir::open(
            s.output,
            s.format,
            schema,
            s.shard_rows,
            &fp,
            s.overwrite,
            s.rejects,
            stdin,
        )?;
        let (dir, resumed) = match opened {
            turnscore_io::job::Opened::Job { dir, resumed } => (*dir, resumed),
            turnscore_io::job::Opened::Complete { rows } => {
                if !s.quiet {
                    eprintln!(
                        "turnscore: {} already holds this job, complete ({rows} rows); nothing to do (--overwrite runs it again)",
                        s.output.display()
                    );
                }
                return Ok(());
            }
        };
        if resumed {
            start = dir.progress.position;
            by_reason = dir.progress.by_reason.clone();
            blank_before = dir.progress.blank_before;
            if !s.quiet {
                eprintln!(
                    "turnscore: resuming the interrupted job in {}: {} shards, {} rows already committed",
                    s.output.display(),
                    dir.progress.shards.len(),
                    by_reason.values().sum::<u64>()
                );
            }
        }
        Dest::Dir(dir)
    } else {
        if s.output != Path::new("-")
            && s.output.exists()
            && !turnscore_io::sink::is_stream(s.output)
            && !s.overwrite
        {
            bail!("{} exists; pass --overwrite to replace it", s.output.display());
        }
        let sink = Sink::new(Out::open(s.output)?, s.format, schema)?;
        Dest::Single(sink, s.rejects.map(Out::open).transpose()?)
    };
    let mut missing = Missing::default();
    let started = std::time::Instant::now();
    let bar = progress(&inputs, s.quiet);
    let mut done_bytes: u64 =
        inputs[..start.input.min(inputs.len())].iter().filter_map(|i| i.size).sum();
    let mut pos = start;
    let mut scored_now = 0u64;
    let mut ctx = (s.context > 0).then(|| crate::context::ContextBuf::new(s.context));
    // With --context, a resumed job re-reads the rows before its resume point to rebuild each
    // conversation's context (reading is cheap next to scoring); without, it skips them.
    let first = if ctx.is_some() { 0 } else { start.input };
    for (ii, input) in inputs.iter().enumerate().skip(first) {
        let mut src = Source::open(input, &opts, CHUNK_ROWS)?;
        if let Some(cb) = ctx.as_mut().filter(|_| ii <= start.input) {
            let mut left = if ii < start.input { u64::MAX } else { start.row };
            while left > 0 {
                let rows = src.next_chunk(left.min(CHUNK_ROWS as u64) as usize)?;
                if rows.is_empty() {
                    if ii == start.input {
                        bail!(
                            "{} has fewer rows than the interrupted job read: the input changed",
                            src.name()
                        );
                    }
                    break;
                }
                left = left.saturating_sub(rows.len() as u64);
                cb.replay(&rows, &admitted_mask(&engine, &rows));
            }
            if ii < start.input {
                continue;
            }
        } else if ii == start.input && start.row > 0 {
            src.skip_rows(start.row)?;
        }
        pos = Position { input: ii, row: if ii == start.input { start.row } else { 0 } };
        // Reading and parsing overlap scoring and writing: a reader thread stays up to two
        // chunks ahead (bounded, so memory stays flat). It is an I/O thread outside the
        // --threads budget, idle whenever it is ahead.
        let name = src.name().to_string();
        let bytes = src.bytes.clone();
        let (tx, rx) = std::sync::mpsc::sync_channel::<Result<Vec<Row>>>(2);
        let reader =
            std::thread::Builder::new().name("turnscore-read".into()).spawn(move || -> u64 {
                let mut src = src;
                loop {
                    match src.next_chunk(CHUNK_ROWS) {
                        Ok(rows) => {
                            let end = rows.is_empty();
                            if tx.send(Ok(rows)).is_err() || end {
                                break;
                            }
                        }
                        Err(e) => {
                            let _ = tx.send(Err(e));
                            break;
                        }
                    }
                }
                src.blank_lines()
            })?;
        let mut pending: Vec<Row> = Vec::new();
        let mut eof = false;
        loop {
            let limit = match &dest {
                Dest::Dir(d) => d.chunk_limit(CHUNK_ROWS),
                Dest::Single(..) => CHUNK_ROWS,
            };
            while pending.len() < limit && !eof {
                match rx.recv() {
                    Ok(Ok(r)) if !r.is_empty() => pending.extend(r),
                    Ok(Ok(_)) | Err(_) => eof = true,
                    Ok(Err(e)) => return Err(e),
                }
            }
            let rows: Vec<Row> = pending.drain(..limit.min(pending.len())).collect();
            if rows.is_empty() {
                break;
            }
            pos.row += rows.len() as u64;
            for r in &rows {
                if let Err(rej) = &r.turn {
                    if s.strict {
                        bar.finish_and_clear();
                        let after = match &dest {
                            Dest::Dir(_) => ", no output was written (its shards were removed)",
                            Dest::Single(..) if is_file_target(s.output) => {
                                ", no output was written"
                            }
                            Dest::Single(..) => {
                                ", after earlier rows had been written to the stream"
                            }
                        };
                        if let Dest::Dir(d) = dest {
                            d.abandon()?;
                        }
                        bail!(
                            "{} line {}: row rejected (rejected:{}{}); --strict stops the job{after}",
                            name,
                            r.line,
                            rej.reason.code(),
                            rej.id.as_ref().map(|i| format!(", id {i:?}")).unwrap_or_default(),
                        );
                    }
                    let w: Option<(&mut dyn Write, String)> = match &mut dest {
                        Dest::Dir(d) => {
                            let n = d.rejects_name();
                            Some((d.rejects(), n))
                        }
                        Dest::Single(_, Some(o)) => Some((&mut o.w, o.name.clone())),
                        Dest::Single(_, None) => None,
                    };
                    if let Some((w, wname)) = w {
                        let v = serde_json::json!({
                            "input": name, "line": r.line, "id": rej.id,
                            "reason": format!("rejected:{}", rej.reason.code()),
                        });
                        serde_json::to_writer(&mut *w, &v)
                            .map_err(std::io::Error::from)
                            .and_then(|()| w.write_all(b"\n"))
                            .with_context(|| format!("cannot write {wname}"))?;
                    }
                }
            }
            for t in rows.iter().filter_map(|r| r.turn.as_ref().ok()) {
                missing.count(engine.policy(), t);
            }
            let batch = match ctx.as_mut() {
                Some(cb) => {
                    let texts = cb.contexts(&rows, &admitted_mask(&engine, &rows));
                    let refs: Vec<Option<&str>> = texts.iter().map(|c| c.as_deref()).collect();
                    engine.score_rows_in_context(&rows, &refs)?
                }
                None => engine.score_rows(&rows)?,
            };
            for r in turnscore_reasons(&batch) {
                *by_reason.entry(r).or_default() += 1;
            }
            scored_now += rows.len() as u64;
            match &mut dest {
                Dest::Single(sink, _) => sink.write(&batch)?,
                Dest::Dir(d) => {
                    d.write(&batch)?;
                    d.after_chunk(pos, &by_reason, blank_before)?;
                }
            }
            let (total, ok, sens, rej) = tally(&by_reason);
            bar.set_position(done_bytes + bytes.load(std::sync::atomic::Ordering::Relaxed));
            bar.set_message(format!(
                "{total} rows, {:.0}/s, {ok} ad-eligible, {sens} sensitive, {} not admitted, {rej} rejected",
                scored_now as f64 / started.elapsed().as_secs_f64().max(1e-9),
                total - ok - sens - rej
            ));
        }
        blank_before +=
            reader.join().map_err(|_| anyhow::anyhow!("the reader thread of {name} panicked"))?;
        done_bytes += input.size.unwrap_or(0);
        // The next input starts at its row 0.
        pos = Position { input: ii + 1, row: 0 };
    }
    match dest {
        Dest::Single(sink, rej) => {
            sink.finish()?;
            if let Some(w) = rej {
                w.finish()?;
            }
        }
        Dest::Dir(d) => d.finish(
            pos,
            &by_reason,
            blank_before,
            manifest(&engine, &inputs, &by_reason, blank_before, s.context),
        )?,
    }
    bar.finish_and_clear();
    if !s.quiet {
        let secs = started.elapsed().as_secs_f64();
        let (total, ok, sensitive, rejected) = tally(&by_reason);
        let policy = total - ok - sensitive - rejected;
        eprintln!(
            "turnscore: {total} rows from {} input(s): {ok} ad-eligible, {sensitive} vetoed by the gate (sensitive or unsure), {policy} not admitted by policy {:?}, {rejected} rejected; {blank_before} blank lines skipped; {secs:.1}s, {:.0} rows/s",
            inputs.len(),
            engine.policy().version,
            scored_now as f64 / secs.max(1e-9)
        );
        let detail: Vec<String> = by_reason.iter().map(|(k, v)| format!("{k} {v}")).collect();
        eprintln!("turnscore: by reason: {}", detail.join(", "));
        eprintln!(
            "turnscore: model {} ({}), kernels {}",
            engine.model().meta().model_id,
            engine.model().meta().quantization.split(' ').next().unwrap_or(""),
            turnscore::kernels::Kernels::detect().isa().name()
        );
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

/// Applies `--isa` (or `TURNSCORE_ISA`) before the kernels are first chosen, with a clear error
/// for an unknown tier or one this CPU lacks (the engine would otherwise refuse to start).
fn select_isa(flag: Option<&str>) -> Result<()> {
    use turnscore::kernels::{Isa, Kernels};
    if let Some(v) = flag {
        // Before any kernel runs and before worker threads exist.
        std::env::set_var("TURNSCORE_ISA", v);
    }
    if let Ok(v) = std::env::var("TURNSCORE_ISA") {
        let Some(isa) = Isa::parse(&v) else {
            bail!(
                "--isa / TURNSCORE_ISA {v:?} is not a kernel tier (scalar, neon, avx2, avx512vnni)"
            )
        };
        if Kernels::for_isa(isa).is_none() {
            bail!("--isa / TURNSCORE_ISA {v:?}: this CPU does not support {}", isa.name());
        }
    }
    Kernels::detect();
    Ok(())
}

/// Which rows will be scored (valid and admitted by the policy): only those may be context.
fn admitted_mask(engine: &Engine, rows: &[turnscore::input::Row]) -> Vec<bool> {
    engine.admit(rows).iter().zip(rows).map(|(a, r)| a.is_none() && r.turn.is_ok()).collect()
}

/// `(rows, ok, vetoed after inference, rejected)` from counts by reason.
fn tally(by_reason: &std::collections::BTreeMap<String, u64>) -> (u64, u64, u64, u64) {
    use turnscore::gate::Class;
    let sum = |c: Class| -> u64 {
        by_reason.iter().filter(|(k, _)| Class::of_reason(k) == c).map(|(_, v)| v).sum()
    };
    (by_reason.values().sum(), sum(Class::Ok), sum(Class::Vetoed), sum(Class::Rejected))
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
    if output != Path::new("-") && format_for(output, None) != Format::Jsonl {
        crate::usage!(
            "embed writes JSON lines only; {} names another format (use a .jsonl path or -)",
            output.display()
        );
    }
    let inputs = expand(&read.inputs, read.input_format)?;
    let engine = open_engine(c)?;
    let opts = read_options(read);
    let mut out = Out::open(output)?;
    let (mut rows_n, mut rejected, mut suppressed, mut vetoed) = (0u64, 0u64, 0u64, 0u64);
    let (topics, sensitive) = (engine.topic_labels(), engine.sensitive_labels());
    for input in &inputs {
        let mut src = Source::open(input, &opts, CHUNK_ROWS)?;
        loop {
            let rows = src.next_chunk(CHUNK_ROWS)?;
            if rows.is_empty() {
                break;
            }
            // The policy applies here too: a turn it does not admit is never tokenized. An
            // embedded turn goes through the same gate as in `score`.
            let admit = engine.admit(&rows);
            let texts = Engine::admitted_texts(&rows, &admit);
            let (e, scores) = engine.embed_scored(&texts)?;
            let mut j = 0;
            for (r, a) in rows.iter().zip(&admit) {
                rows_n += 1;
                let v = match (&r.turn, a) {
                    (Ok(t), None) => {
                        let d =
                            turnscore::gate::decide(topics, sensitive, engine.policy(), &scores[j]);
                        vetoed += u64::from(!d.reason.ad_eligible());
                        let v = serde_json::json!({
                            "id": t.id, "embedding": e.row(j), "tokens": e.tokens[j],
                            "windows": e.windows[j], "ad_eligible": d.reason.ad_eligible(),
                            "reason": d.reason.to_string(),
                        });
                        j += 1;
                        v
                    }
                    (Ok(t), Some(reason)) => {
                        suppressed += 1;
                        serde_json::json!({"id": t.id, "embedding": null, "ad_eligible": false, "reason": reason.reason()})
                    }
                    (Err(rej), _) => {
                        rejected += 1;
                        serde_json::json!({"id": rej.id, "embedding": null, "ad_eligible": false, "reason": format!("rejected:{}", rej.reason.code())})
                    }
                };
                serde_json::to_writer(&mut out.w, &v)
                    .map_err(std::io::Error::from)
                    .and_then(|()| out.w.write_all(b"\n"))
                    .with_context(|| format!("cannot write {}", out.name))?;
            }
        }
    }
    out.finish()?;
    if !quiet {
        eprintln!(
            "turnscore: {rows_n} rows: {} embedded ({} ad-eligible, {vetoed} vetoed by the gate), {suppressed} not admitted by policy {:?}, {rejected} rejected",
            rows_n - rejected - suppressed,
            rows_n - rejected - suppressed - vetoed,
            engine.policy().version
        );
    }
    Ok(())
}

fn inspect(model: Option<PathBuf>, json: bool) -> Result<()> {
    let m = open_model_file(model.clone())?;
    // The validation `score` runs: a file it would refuse, inspect refuses too.
    turnscore::validate_model(&m).context("the model cannot be used")?;
    let meta = m.meta();
    let a = &meta.architecture;
    let where_ = match (m.path(), model_path(model)?) {
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
                writeln!(
                    o,
                    "{name:<12} {} labels (label  threshold  calibration)",
                    h.labels.len()
                )?;
                for l in &h.labels {
                    let note = match (&l.calibration, l.trained) {
                        (_, false) => "  untrained: never fires".to_string(),
                        (Some(c), true) => format!("  {} a={:.3} b={:.3}", c.method, c.a, c.b),
                        (None, true) => "  uncalibrated".to_string(),
                    };
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
            "int8" => Quant::Int8,
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
