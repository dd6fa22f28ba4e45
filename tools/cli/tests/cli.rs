//! The `turnscore` binary as a user runs it: exit codes, outputs, bad input, and that message
//! text never reaches any output or error message.
#![forbid(unsafe_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn turnscore(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_turnscore"));
    c.args(args).current_dir(std::env::temp_dir()).env_remove("TURNSCORE_MODEL");
    c.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input).unwrap();
    }
    child.wait_with_output().unwrap()
}

fn lines(o: &Output) -> Vec<serde_json::Value> {
    String::from_utf8(o.stdout.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn examples() -> String {
    root().join("examples/turns.jsonl").to_string_lossy().into_owned()
}

#[test]
fn score_examples_with_the_bundled_model_from_any_directory() {
    let o = turnscore(&["score", &examples()], None);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let rows = lines(&o);
    let n_in =
        std::fs::read_to_string(root().join("examples/turns.jsonl")).unwrap().lines().count();
    assert_eq!(rows.len(), n_in, "one output row per input row");
    let ids: Vec<&str> = rows.iter().map(|r| r["id"].as_str().unwrap()).collect();
    let want: Vec<String> = (1..=n_in).map(|i| format!("t{i:02}")).collect();
    assert_eq!(ids, want, "input order kept");
    let by_id = |id: &str| rows.iter().find(|r| r["id"] == id).unwrap();
    // The hiking question shows an outdoors or travel interest and may be used for ads.
    let hike = by_id("t01");
    let ints: Vec<&str> =
        hike["interests"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert!(ints.contains(&"outdoors_hiking") || ints.contains(&"travel"), "{hike}");
    assert_eq!(hike["ad_eligible"], true);
    // The diagnosis question is health, suppressed, and its topics are withheld.
    let diag = by_id("t02");
    assert!(diag["sensitive_hits"].as_array().unwrap().iter().any(|v| v == "health"), "{diag}");
    assert_eq!(diag["ad_eligible"], false);
    assert_eq!(diag["reason"], "sensitive:health");
    assert!(diag.get("topics").is_some_and(|t| t.is_null()), "topics is an explicit null: {diag}");
    assert!(diag["interests"].as_array().unwrap().is_empty());
    assert!(diag["sensitive"]["health"].as_f64().unwrap() > 0.5);
    let summary = String::from_utf8_lossy(&o.stderr);
    assert!(summary.contains(&format!("{n_in} rows")), "{summary}");
    // The example file ends with one turn per admit rule.
    let reasons: Vec<&str> =
        rows[n_in - 5..].iter().map(|r| r["reason"].as_str().unwrap()).collect();
    assert_eq!(reasons, ["region:DE", "minor", "no_consent", "role", "region:unknown"]);
    for r in &rows[n_in - 5..] {
        assert!(r["topics"].is_null() && r["sensitive"].is_null() && r["tokens"].is_null(), "{r}");
        assert_eq!(r["ad_eligible"], false);
    }
}

#[test]
fn policy_files_are_printed_checked_and_applied() {
    let o = turnscore(&["policy"], None);
    assert!(o.status.success());
    let mut p: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(p["excluded_regions"].as_array().unwrap().iter().any(|r| r == "KR"));
    // Allow every region and role; make `travel` a proxy: it must never be emitted.
    p["excluded_regions"] = serde_json::json!([]);
    p["ad_roles"] = serde_json::json!(["user", "assistant"]);
    p["topic_proxies"] = serde_json::json!({"travel": ["religion"]});
    let dir = tempfile::tempdir().unwrap();
    let pf = dir.path().join("policy.json");
    std::fs::write(&pf, p.to_string()).unwrap();
    let o = turnscore(&["score", &examples(), "--policy", pf.to_str().unwrap()], None);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let rows = lines(&o);
    for r in &rows {
        assert!(!r["interests"].as_array().unwrap().iter().any(|v| v == "travel"), "{r}");
        if !r["topics"].is_null() {
            assert!(r["topics"]["travel"].is_null(), "proxy scores are withheld: {r}");
        }
    }
    let reason = |id: &str| rows.iter().find(|r| r["id"] == id).unwrap()["reason"].clone();
    assert_eq!(reason("t21"), "ok", "DE admitted once no region is excluded");
    assert_eq!(reason("t24"), "ok", "assistant turns admitted when configured");
    // A policy naming a label the model lacks, and a typo, are clear errors.
    p["topic_proxies"] = serde_json::json!({"astrology": ["religion"]});
    std::fs::write(&pf, p.to_string()).unwrap();
    let o = turnscore(&["score", &examples(), "--policy", pf.to_str().unwrap()], None);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("astrology"));
    std::fs::write(&pf, r#"{"version":"x","excluded_regoins":[]}"#).unwrap();
    let o = turnscore(&["policy", pf.to_str().unwrap()], None);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("excluded_regoins"));
}

#[test]
fn bad_rows_are_rejected_with_reasons_and_text_never_leaks() {
    let canary = "ZEBRA-CANARY-7731";
    let mut input = Vec::new();
    input.extend_from_slice(
        format!("{{\"id\":\"ok1\",\"text\":\"{canary} hiking trails near Boulder\"}}\n").as_bytes(),
    );
    input.extend_from_slice(
        format!("{{\"id\":\"bad\",\"text\":\"{canary} unterminated\n").as_bytes(),
    );
    input.extend_from_slice(format!("{{\"text\":\"{canary} no id\"}}\n").as_bytes());
    input.extend_from_slice(b"{\"id\":\"notext\"}\n");
    input.extend_from_slice(b"{\"id\":\"empty\",\"text\":\"\"}\n");
    input.extend_from_slice(format!("{{\"id\":\"utf\",\"text\":\"{canary} caf").as_bytes());
    input.push(0xff);
    input.extend_from_slice(b"\"}\n\n");
    input.extend_from_slice(format!("{{\"id\":\"num\",\"text\":[\"{canary}\"]}}\n").as_bytes());
    let o = turnscore(&["score", "-"], Some(&input));
    assert!(o.status.success(), "rejected rows do not fail the job");
    let rows = lines(&o);
    let reasons: Vec<&str> = rows.iter().map(|r| r["reason"].as_str().unwrap()).collect();
    assert_eq!(
        reasons,
        vec![
            reasons[0],
            "rejected:bad_json",
            "rejected:missing_id",
            "rejected:missing_text",
            "rejected:empty_text",
            "rejected:invalid_utf8",
            "rejected:type_mismatch:text"
        ]
    );
    assert!(!reasons[0].starts_with("rejected"));
    assert_eq!(rows[5]["id"], "utf", "the id of a row with invalid UTF-8 is kept for tracing");
    for out in [&o.stdout, &o.stderr] {
        assert!(!String::from_utf8_lossy(out).contains(canary), "message text leaked");
    }
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("7 rows")
            && err.contains("6 rejected")
            && err.contains("1 blank")
            && err.contains("were read strictly"),
        "{err}"
    );
}

#[test]
fn parquet_output_has_every_row_and_the_schema() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("scores.parquet");
    let o = turnscore(&["score", &examples(), "-o", out.to_str().unwrap()], None);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(leftovers.len(), 1, "no temporary file left behind");
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let r = SerializedFileReader::new(std::fs::File::open(&out).unwrap()).unwrap();
    let n_in =
        std::fs::read_to_string(root().join("examples/turns.jsonl")).unwrap().lines().count();
    assert_eq!(r.metadata().file_metadata().num_rows() as usize, n_in);
    let cols: Vec<String> = r
        .metadata()
        .file_metadata()
        .schema_descr()
        .columns()
        .iter()
        .map(|c| c.path().string())
        .collect();
    for want in [
        "id",
        "topics.travel",
        "sensitive.health",
        "interests.list.item",
        "ad_eligible",
        "reason",
        "tokens",
    ] {
        assert!(cols.iter().any(|c| c == want), "missing column {want}: {cols:?}");
    }
}

#[test]
fn embed_writes_one_vector_per_row() {
    let ok =
        r#""role":"user","region":"US","consent_ads":true,"is_minor":false,"account_linked":true"#;
    let input = format!(
        "{{\"id\":\"a\",\"text\":\"hello there\",{ok}}}\n{{\"id\":\"b\",{ok}}}\n{{\"id\":\"c\",\"text\":\"hi\"}}\n"
    );
    let o = turnscore(&["embed", "-", "--threads", "1"], Some(input.as_bytes()));
    assert!(o.status.success());
    let rows = lines(&o);
    assert_eq!(rows.len(), 3);
    assert!(
        rows[2]["embedding"].is_null() && rows[2]["reason"] == "region:unknown",
        "the policy applies"
    );
    let v = rows[0]["embedding"].as_array().unwrap();
    assert_eq!(v.len(), 384);
    let norm: f64 = v.iter().map(|x| x.as_f64().unwrap().powi(2)).sum::<f64>().sqrt();
    assert!((norm - 1.0).abs() < 1e-4, "all-MiniLM-L6-v2 vectors are L2-normalised");
    assert!(rows[1]["embedding"].is_null() && rows[1]["reason"] == "rejected:missing_text");
}

#[test]
fn inspect_lists_and_prints_json() {
    let o = turnscore(&["inspect"], None);
    assert!(o.status.success());
    let s = String::from_utf8_lossy(&o.stdout);
    for want in ["checksums verified", "hidden 384", "health", "travel", "platt a=", "sha256"] {
        assert!(s.contains(want), "missing {want:?} in:\n{s}");
    }
    let o = turnscore(&["inspect", "--json"], None);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["architecture"]["num_layers"], 6);
    assert_eq!(v["topics"].as_array().unwrap().len(), 28);
    assert_eq!(v["sensitive"].as_array().unwrap().len(), 9);
}

#[test]
fn bad_model_files_fail_cleanly_with_exit_code_1() {
    let dir = tempfile::tempdir().unwrap();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty.tsm", vec![]),
        ("junk.tsm", b"this is not a model".to_vec()),
        (
            "truncated.tsm",
            std::fs::read(root().join("models/all-minilm-l6-v2.tsm")).unwrap()[..100_000].to_vec(),
        ),
    ];
    for (name, bytes) in cases {
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        let o = turnscore(&["score", &examples(), "--model", p.to_str().unwrap()], None);
        assert_eq!(o.status.code(), Some(1), "{name}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains(name) && err.contains("invalid model file") && !err.contains("panicked"),
            "{err}"
        );
    }
    let o = turnscore(&["score", &examples(), "--model", "/nonexistent/model.tsm"], None);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("/nonexistent/model.tsm"));
}

#[test]
fn missing_input_and_usage_errors_have_their_exit_codes() {
    let o = turnscore(&["score", "/nonexistent/turns.jsonl"], None);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("/nonexistent/turns.jsonl"));
    let o = turnscore(&["score"], None);
    assert_eq!(o.status.code(), Some(2));
    let o = turnscore(&["--help"], None);
    assert!(String::from_utf8_lossy(&o.stdout).contains("Exit codes"));
}

#[test]
fn convert_names_unsupported_architectures_and_missing_tensors() {
    let dir = tempfile::tempdir().unwrap();
    let tiny = root().join("tests/data/tiny-bert");
    // A DistilBERT-style config.
    let d = dir.path().join("gpt");
    std::fs::create_dir(&d).unwrap();
    for f in ["model.safetensors", "tokenizer.json"] {
        std::fs::copy(tiny.join(f), d.join(f)).unwrap();
    }
    std::fs::write(d.join("config.json"), r#"{"model_type":"gpt2"}"#).unwrap();
    let out = dir.path().join("x.tsm");
    let o = turnscore(&["convert", d.to_str().unwrap(), "-o", out.to_str().unwrap()], None);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("unsupported architecture \"gpt2\""));
    // Claim three layers where the checkpoint has two.
    let mut cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(tiny.join("config.json")).unwrap()).unwrap();
    cfg["num_hidden_layers"] = 3.into();
    std::fs::write(d.join("config.json"), cfg.to_string()).unwrap();
    let o = turnscore(&["convert", d.to_str().unwrap(), "-o", out.to_str().unwrap()], None);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("encoder.layer.2.attention.self.query.weight") && err.contains("missing"),
        "{err}"
    );
    assert!(!out.exists(), "a failed conversion writes nothing");
    // And the good one converts and scores.
    let o = turnscore(&["convert", tiny.to_str().unwrap(), "-o", out.to_str().unwrap()], None);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = turnscore(
        &["embed", "-", "--model", out.to_str().unwrap()],
        Some(
            br#"{"id":"1","text":"hi","role":"user","region":"US","consent_ads":true,"is_minor":false,"account_linked":true}"#,
        ),
    );
    assert!(o.status.success());
    assert_eq!(lines(&o)[0]["embedding"].as_array().unwrap().len(), 32);
}

#[test]
fn broken_pipe_is_not_an_error() {
    let mut big = Vec::new();
    for i in 0..3000 {
        big.extend_from_slice(
            format!("{{\"id\":\"{i}\",\"text\":\"short turn {i}\"}}\n").as_bytes(),
        );
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_turnscore"))
        .args(["score", "-", "--quiet"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    std::thread::spawn(move || {
        let _ = stdin.write_all(&big);
    });
    drop(child.stdout.take()); // the reader goes away, like `| head -0`
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
}

/// Six turns (one bad) as JSON lines, with the admit fields under their default names.
fn six_turns() -> Vec<serde_json::Value> {
    let ok = serde_json::json!({"role":"user","region":"US","consent_ads":true,"is_minor":false,"account_linked":true});
    let texts = [
        "cheap flights to Lisbon in May",
        "my doctor thinks I have asthma",
        "",
        "best budget gaming laptop",
        "how to make sourdough bread",
        "which credit card has no annual fee",
    ];
    texts
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let mut v = ok.clone();
            v["msg_id"] = format!("m{i}").into();
            v["message"] = (*t).into();
            v
        })
        .collect()
}

fn write_jsonl(rows: &[serde_json::Value]) -> Vec<u8> {
    rows.iter().map(|r| format!("{r}\n")).collect::<String>().into_bytes()
}

fn batch_of(rows: &[serde_json::Value]) -> arrow_array::RecordBatch {
    use arrow_array::{ArrayRef, BooleanArray, StringArray};
    use std::sync::Arc;
    let s = |k: &str| -> ArrayRef {
        Arc::new(StringArray::from(
            rows.iter().map(|r| r[k].as_str().map(str::to_string)).collect::<Vec<_>>(),
        ))
    };
    let b = |k: &str| -> ArrayRef {
        Arc::new(BooleanArray::from(rows.iter().map(|r| r[k].as_bool()).collect::<Vec<_>>()))
    };
    arrow_array::RecordBatch::try_from_iter(vec![
        ("msg_id", s("msg_id")),
        ("message", s("message")),
        ("role", s("role")),
        ("region", s("region")),
        ("consent_ads", b("consent_ads")),
        ("is_minor", b("is_minor")),
        ("account_linked", b("account_linked")),
    ])
    .unwrap()
}

#[test]
fn every_input_format_gives_the_same_rows() {
    let dir = tempfile::tempdir().unwrap();
    let rows = six_turns();
    let plain = write_jsonl(&rows);
    let d = |n: &str| dir.path().join(n);
    std::fs::write(d("a.jsonl"), &plain).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&plain).unwrap();
    std::fs::write(d("b.jsonl.gz"), gz.finish().unwrap()).unwrap();
    std::fs::write(d("c.jsonl.zst"), zstd::encode_all(&plain[..], 3).unwrap()).unwrap();
    let batch = batch_of(&rows);
    let mut pq = parquet::arrow::ArrowWriter::try_new(
        std::fs::File::create(d("d.parquet")).unwrap(),
        batch.schema(),
        None,
    )
    .unwrap();
    pq.write(&batch).unwrap();
    pq.close().unwrap();
    let mut f = arrow_ipc::writer::FileWriter::try_new(
        std::fs::File::create(d("e.arrow")).unwrap(),
        &batch.schema(),
    )
    .unwrap();
    f.write(&batch).unwrap();
    f.finish().unwrap();
    let mut st = arrow_ipc::writer::StreamWriter::try_new(
        std::fs::File::create(d("f.arrows")).unwrap(),
        &batch.schema(),
    )
    .unwrap();
    st.write(&batch).unwrap();
    st.finish().unwrap();
    let map = ["--id-col", "msg_id", "--text-col", "message", "--threads", "1"];
    let run = |inputs: &[&str]| {
        let mut args = vec!["score"];
        args.extend_from_slice(inputs);
        args.extend_from_slice(&map);
        let o = turnscore(&args, None);
        assert!(o.status.success(), "{inputs:?}: {}", String::from_utf8_lossy(&o.stderr));
        lines(&o)
    };
    let want = run(&[d("a.jsonl").to_str().unwrap()]);
    assert_eq!(want.len(), 6);
    assert_eq!(want[2]["reason"], "rejected:empty_text");
    assert_eq!(want[0]["id"], "m0");
    for f in ["b.jsonl.gz", "c.jsonl.zst", "d.parquet", "e.arrow", "f.arrows"] {
        assert_eq!(run(&[d(f).to_str().unwrap()]), want, "{f} differs from plain JSONL");
    }
    // A glob reads its matches in sorted order; several inputs are read in turn.
    let glob = format!("{}/*.jsonl*", dir.path().display());
    let all = run(&[&glob, d("d.parquet").to_str().unwrap()]);
    assert_eq!(all.len(), 24);
    assert_eq!(&all[18..], &want[..]);
    let o = turnscore(&["score", &format!("{}/*.nothing", dir.path().display())], None);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no input file matches"));
    // A mapped column of the wrong type is an error naming it.
    let o = turnscore(
        &[
            "score",
            d("d.parquet").to_str().unwrap(),
            "--id-col",
            "msg_id",
            "--text-col",
            "consent_ads",
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("\"consent_ads\""),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn rejects_report_and_strict_mode() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    std::fs::write(&input, write_jsonl(&six_turns())).unwrap();
    let rej = dir.path().join("rejects.jsonl");
    let out = dir.path().join("out.jsonl");
    let map = ["--id-col", "msg_id", "--text-col", "message"];
    let mut args = vec![
        "score",
        input.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--rejects",
        rej.to_str().unwrap(),
    ];
    args.extend_from_slice(&map);
    let o = turnscore(&args, None);
    assert!(o.status.success());
    let report: Vec<serde_json::Value> = std::fs::read_to_string(&rej)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(report.len(), 1);
    assert_eq!((report[0]["line"].as_u64(), report[0]["id"].as_str()), (Some(3), Some("m2")));
    assert_eq!(report[0]["reason"], "rejected:empty_text");
    assert!(report[0]["input"].as_str().unwrap().ends_with("in.jsonl"));
    // --strict: the first bad row fails the job, naming file and line; no output is left.
    let out2 = dir.path().join("strict.jsonl");
    let mut args = vec!["score", input.to_str().unwrap(), "-o", out2.to_str().unwrap(), "--strict"];
    args.extend_from_slice(&map);
    let o = turnscore(&args, None);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("in.jsonl line 3") && err.contains("rejected:empty_text"), "{err}");
    assert!(!out2.exists(), "a failed job leaves no output");
    let leftovers = std::fs::read_dir(dir.path()).unwrap().count();
    assert_eq!(leftovers, 3, "no temporary files are left behind");
}

/// A deterministic input of `n` rows with bad rows, blank lines and rows the policy suppresses.
fn job_input(n: usize) -> Vec<u8> {
    let words =
        "the a trip flight doctor game bank loan hike dog cat music film book school job car house";
    let words: Vec<&str> = words.split(' ').collect();
    let mut seed = 7u64;
    let mut next = || {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (seed >> 33) as usize
    };
    let mut out = String::new();
    for i in 0..n {
        if i % 97 == 5 {
            out.push_str("{bad json\n");
            continue;
        }
        if i % 211 == 7 {
            out.push('\n');
        }
        let len = 3 + next() % 30;
        let text: Vec<&str> = (0..len).map(|_| words[next() % words.len()]).collect();
        let region = if i % 13 == 0 { "DE" } else { "US" };
        out.push_str(&format!(
            "{{\"id\":\"r{i}\",\"text\":\"{}\",\"role\":\"user\",\"region\":\"{region}\",\"consent_ads\":true,\"is_minor\":false,\"account_linked\":true,\"conversation_id\":\"c{}\",\"turn\":{}}}\n",
            text.join(" "),
            // 3 turns per conversation, so that shard boundaries (700 rows) split
            // conversations and a resumed job must rebuild their context.
            i / 3,
            i % 3
        ));
    }
    out.into_bytes()
}

fn read_dir_output(dir: &Path) -> (String, String, serde_json::Value) {
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("_manifest.json")).unwrap()).unwrap();
    let mut all = String::new();
    for s in m["shards"].as_array().unwrap() {
        all.push_str(&std::fs::read_to_string(dir.join(s["file"].as_str().unwrap())).unwrap());
    }
    let rejects = std::fs::read_to_string(dir.join("_rejects.jsonl")).unwrap();
    (all, rejects, m)
}

#[test]
fn a_job_killed_at_random_points_resumes_to_the_same_output() {
    kill_and_resume(&[]);
}

#[test]
fn a_job_with_context_killed_at_random_points_resumes_to_the_same_output() {
    // The per-conversation context is rebuilt on resume: a turn right after a resume point
    // still sees the turns before it.
    kill_and_resume(&["--context", "2"]);
}

fn kill_and_resume(extra: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("tiny.tsm");
    let tiny = root().join("tests/data/tiny-bert-cls");
    assert!(turnscore(&["convert", tiny.to_str().unwrap(), "-o", model.to_str().unwrap()], None)
        .status
        .success());
    let input = dir.path().join("in.jsonl");
    std::fs::write(&input, job_input(40_000)).unwrap();
    let args = |out: &Path| -> Vec<String> {
        [
            "score",
            input.to_str().unwrap(),
            "--model",
            model.to_str().unwrap(),
            "--format",
            "jsonl",
            "--shard-rows",
            "700",
            "--quiet",
        ]
        .iter()
        .chain(extra)
        .map(|s| s.to_string())
        .chain(["-o".to_string(), format!("{}/", out.display())])
        .collect()
    };
    let reference = dir.path().join("ref");
    let started = std::time::Instant::now();
    let o = Command::new(env!("CARGO_BIN_EXE_turnscore")).args(args(&reference)).output().unwrap();
    // Kill delays are fractions of this run's time, so that the test interrupts the job on a
    // fast machine as on a slow or loaded one.
    let whole = started.elapsed();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let want = read_dir_output(&reference);
    assert_eq!(want.2["rows"], 40_000);

    let out = dir.path().join("out");
    let mut seed = 42u64;
    let (mut kills, mut finished) = (0, false);
    // Resume points as (input, row): the last commit of a job moves past its last input, to
    // (1, 0) here, so the row alone is not monotonic.
    let mut committed: Vec<(u64, u64)> = Vec::new();
    for attempt in 0..60u64 {
        let mut child = Command::new(env!("CARGO_BIN_EXE_turnscore"))
            .args(args(&out))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        // 3–15% of an uninterrupted run, plus a little more per attempt so that a run always
        // gets past start-up and commits shards eventually.
        let frac = 0.03 + 0.12 * ((seed >> 33) % 1000) as f64 / 1000.0;
        std::thread::sleep(whole.mul_f64(frac) + std::time::Duration::from_millis(3 * attempt));
        if let Some(status) = child.try_wait().unwrap() {
            // Also when the kill before it landed after the manifest (the commit point) was
            // written: the same command on a completed job succeeds.
            assert!(status.success(), "a resumed run failed: {status}");
            finished = true;
            break;
        }
        child.kill().unwrap(); // SIGKILL: no chance to clean up
        child.wait().unwrap();
        kills += 1;
        if let Ok(p) = std::fs::read(out.join("_progress.json")) {
            let p: serde_json::Value = serde_json::from_slice(&p).unwrap();
            let at = &p["position"];
            committed.push((at["input"].as_u64().unwrap(), at["row"].as_u64().unwrap()));
        }
    }
    if !finished {
        let o = Command::new(env!("CARGO_BIN_EXE_turnscore")).args(args(&out)).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    assert!(kills >= 5, "the job must actually be interrupted (killed {kills} times in {whole:?})");
    committed.dedup();
    assert!(
        committed.len() >= 3 && committed.windows(2).all(|w| w[0] < w[1]),
        "killed runs must commit shards and later runs resume from them: {committed:?}"
    );
    eprintln!(
        "killed {kills} times, {} resume points, uninterrupted run {whole:?}",
        committed.len()
    );
    let got = read_dir_output(&out);
    assert!(got.0 == want.0, "rows differ after {kills} kills");
    assert_eq!(got.1, want.1, "rejects report differs");
    for k in ["rows", "counts_by_reason", "blank_lines_skipped", "shards"] {
        assert_eq!(got.2[k], want.2[k], "manifest {k}");
    }
    let left: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(left.iter().all(|n| !n.starts_with('.') && n != "_progress.json"), "{left:?}");
    eprintln!("resumed after {kills} kills (committed rows seen: {committed:?}): identical output");
}

#[test]
fn a_resumed_job_refuses_other_settings_and_completed_output() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    std::fs::write(&input, job_input(50)).unwrap();
    let model = dir.path().join("tiny.tsm");
    let tiny = root().join("tests/data/tiny-bert-cls");
    assert!(turnscore(&["convert", tiny.to_str().unwrap(), "-o", model.to_str().unwrap()], None)
        .status
        .success());
    let out = format!("{}/out/", dir.path().display());
    // A fake interrupted job with another fingerprint.
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(format!("{out}_progress.json"), r#"{"fingerprint":"other","shards":[],"position":{"input":0,"row":0},"by_reason":{},"blank_before":0,"rejects_len":0}"#).unwrap();
    let base = ["score", input.to_str().unwrap(), "--model", model.to_str().unwrap(), "-o", &out];
    let o = turnscore(&base, None);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("interrupted job"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let mut ow = base.to_vec();
    ow.push("--overwrite");
    assert!(turnscore(&ow, None).status.success());
    let o = turnscore(&base, None);
    assert_eq!(o.status.code(), Some(0), "the same command on a completed job succeeds");
    assert!(String::from_utf8_lossy(&o.stderr).contains("already holds this job"));
    // Another command on it (here: another shard size) is refused.
    let mut other = base.to_vec();
    other.extend(["--shard-rows", "7"]);
    let o = turnscore(&other, None);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--overwrite"));
    // A kill between writing the manifest (the commit point) and removing the progress record
    // leaves both: the job is complete, and the stale record is cleaned up.
    // The same command on it is a no-op success.
    let manifest = std::fs::read(format!("{out}_manifest.json")).unwrap();
    std::fs::write(format!("{out}_progress.json"), b"{}").unwrap();
    let o = turnscore(&base, None);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("nothing to do"));
    assert!(!Path::new(&format!("{out}_progress.json")).exists());
    assert_eq!(std::fs::read(format!("{out}_manifest.json")).unwrap(), manifest);
    // Single files too.
    let f = dir.path().join("single.jsonl");
    std::fs::write(&f, "old").unwrap();
    let o = turnscore(
        &[
            "score",
            input.to_str().unwrap(),
            "--model",
            model.to_str().unwrap(),
            "-o",
            f.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(std::fs::read_to_string(&f).unwrap(), "old");
}

#[test]
fn bench_prints_engine_and_pipeline_rates_and_their_ratio() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("c.jsonl");
    let lines: Vec<String> = six_turns()
        .iter()
        .map(|r| {
            let mut r = r.clone();
            r["id"] = r["msg_id"].clone();
            r["text"] = r["message"].clone();
            r.to_string()
        })
        .collect();
    std::fs::write(&corpus, lines.join("\n")).unwrap();
    let o = turnscore(
        &[
            "bench",
            "--corpus",
            corpus.to_str().unwrap(),
            "--repeat",
            "1",
            "--threads",
            "1",
            "--no-baseline",
        ],
        None,
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8_lossy(&o.stdout);
    let median = out.lines().find(|l| l.starts_with("median")).unwrap();
    let cols: Vec<f64> = median.split_whitespace().skip(1).map(|x| x.parse().unwrap()).collect();
    assert_eq!(cols.len(), 4, "{median}");
    assert!(cols.iter().all(|&x| x > 0.0), "{median}");
    assert!((cols[3] - cols[2] / cols[0]).abs() < 0.01, "ratio = pipeline / engine: {median}");

    // --same-work: a turn longer than the baseline's 128 tokens is cut where it stops reading,
    // so the engine reads 128 tokens of it instead of all of them (in windows).
    let mut lines = lines;
    let long = "tell me about the history of the bicycle and its inventors. ".repeat(40);
    lines.push(serde_json::json!({"id": "long", "text": long}).to_string());
    std::fs::write(&corpus, lines.join("\n")).unwrap();
    let run = |extra: &[&str]| {
        let c = corpus.to_str().unwrap();
        let mut args = vec!["bench", "--corpus", c, "--repeat", "1", "--threads", "1"];
        args.extend_from_slice(&["--no-baseline"]);
        args.extend_from_slice(extra);
        let o = turnscore(&args, None);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let err = String::from_utf8_lossy(&o.stderr).to_string();
        let tokens: u64 = err
            .split(" rows (")
            .nth(1)
            .and_then(|s| s.split(' ').next())
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no token count in: {err}"));
        (err, tokens)
    };
    let (_, whole) = run(&[]);
    let (err, same) = run(&["--same-work"]);
    assert!(err.contains("1 turns cut at 128 tokens"), "{err}");
    assert!(whole > same + 300, "the long turn is read whole by default, cut with --same-work");
    assert!(!err.contains("bicycle"), "message text never reaches the log");
}

#[test]
fn eval_masks_null_heads_and_counts_the_gate() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("dev.jsonl");
    std::fs::write(
        &data,
        [
            r#"{"id":"a","text":"my doctor says I have type 2 diabetes","topics":null,"sensitive":["health"],"source":"s1"}"#,
            r#"{"id":"b","text":"cheap flights to Lisbon in May","topics":["travel"],"sensitive":[],"source":"s1"}"#,
            r#"{"id":"c","text":"write a haiku about rain","topics":[],"sensitive":[],"source":"s2"}"#,
            r#"{"id":"d","text":"best credit card for travel rewards","topics":["personal_finance"],"sensitive":null,"source":"s2"}"#,
        ]
        .join("\n"),
    )
    .unwrap();
    let o = turnscore(&["eval", data.to_str().unwrap(), "--json", "--threads", "1"], None);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(r["rows"], 4);
    assert_eq!(r["topics"]["rows"], 3, "the row with topics: null is masked");
    assert_eq!(r["sensitive"]["rows"], 3, "the row with sensitive: null is masked");
    let label = |head: &str, name: &str| {
        r[head]["labels"].as_array().unwrap().iter().find(|l| l["label"] == name).unwrap().clone()
    };
    assert_eq!(label("topics", "travel")["support"], 1.0);
    assert_eq!(label("sensitive", "health")["support"], 1.0);
    assert_eq!(r["gate"]["(all)"]["sensitive_turns"], 1);
    assert_eq!(r["gate"]["(all)"]["clean_turns"], 2);
    assert_eq!(r["gate"]["s1"]["clean_turns"], 1);
    assert_eq!(r["gate"]["(all)"]["caught"], 1.0, "the diabetes turn is suppressed");
    // Figures by input file: each file's own, so that a test split stands beside dev.
    let b = &r["by_input"].as_array().unwrap()[0];
    assert_eq!((b["rows"].clone(), b["caught"].clone()), (4.into(), 1.0.into()));
    assert_eq!(b["sensitive_recall"]["health"], 1.0);
    // A label the model does not have is an error naming file and line.
    std::fs::write(&data, r#"{"text":"x","topics":["astrology"],"sensitive":[]}"#).unwrap();
    let o = turnscore(&["eval", data.to_str().unwrap()], None);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("dev.jsonl:1") && err.contains("astrology"), "{err}");
}

#[test]
fn eval_report_is_one_page_with_plots_and_no_text_unless_asked() {
    // 30 rows of the chat corpus' dev split: ids and scores in the report, never the text,
    // unless --show-text.
    let dir = tempfile::tempdir().unwrap();
    let rows: Vec<String> = std::fs::read_to_string(root().join("data/chat/dev.jsonl"))
        .unwrap()
        .lines()
        .step_by(29)
        .map(str::to_string)
        .collect();
    let texts: Vec<String> = rows
        .iter()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["text"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let data = dir.path().join("dev.jsonl");
    std::fs::write(&data, rows.join("\n")).unwrap();
    let rep = dir.path().join("rep");
    let o = turnscore(
        &["eval", data.to_str().unwrap(), "--report", rep.to_str().unwrap(), "--threads", "1"],
        None,
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let html = std::fs::read_to_string(rep.join("index.html")).unwrap();
    // Two heads, each a PR grid and a reliability plot; nothing fetched from elsewhere.
    assert_eq!(html.matches("<svg").count(), 4, "four inline plots");
    assert!(!html.contains("<script") && !html.contains("src=\"http"), "self-contained");
    for want in ["Precision/recall per label", "reliability (ECE", "health", "travel", "The gate"] {
        assert!(html.contains(want), "missing {want:?}");
    }
    let stdout = String::from_utf8_lossy(&o.stdout);
    for t in &texts {
        let esc = t.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
        assert!(!html.contains(&esc) && !stdout.contains(t.as_str()), "a turn's text leaked");
    }
    // With --show-text, the listed misses and false alarms carry their text, and a warning.
    let o = turnscore(
        &["eval", data.to_str().unwrap(), "--report", rep.to_str().unwrap(), "--show-text"],
        None,
    );
    assert!(o.status.success());
    let html = std::fs::read_to_string(rep.join("index.html")).unwrap();
    assert!(html.contains("contains message text"));
    let listed = html.matches(">miss<").count() + html.matches(">false alarm<").count();
    let shown = texts
        .iter()
        .filter(|t| {
            html.contains(&t.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;"))
        })
        .count();
    assert!(listed == 0 || shown > 0, "{listed} rows listed, no text shown");
}

#[test]
fn every_kernel_tier_gives_the_same_scores_bit_for_bit() {
    // The scalar tier (plain integer GEMM, element-wise work built for the baseline target)
    // against the best tier of this CPU, through the whole CLI, on the bundled int8 model.
    // `None` when this CPU lacks the tier.
    let run = |isa: Option<&str>| {
        let mut args = vec!["score", "--format", "jsonl", "-o", "-", "--quiet"];
        let ex = examples();
        args.insert(1, &ex);
        if let Some(i) = isa {
            args.extend(["--isa", i]);
        }
        let o = turnscore(&args, None);
        let err = String::from_utf8_lossy(&o.stderr);
        if err.contains("this CPU does not support") {
            eprintln!("skipped {isa:?}: {}", err.trim());
            return None;
        }
        assert!(o.status.success(), "{err}");
        Some(o.stdout)
    };
    let best = run(None).unwrap();
    assert!(!best.is_empty());
    let mut compared = 0;
    for tier in ["scalar", "avx2", "avx512vnni"] {
        if let Some(out) = run(Some(tier)) {
            assert!(out == best, "the {tier} tier's scores differ from the best tier's");
            compared += 1;
        }
    }
    assert!(compared >= 1, "the scalar tier runs everywhere");
    let bad = turnscore(&["score", &examples(), "--isa", "sse9"], None);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("is not a kernel tier"));
}

/// The tiny checkpoint converted with its head as the sensitive head (so the gate can veto).
fn tiny_model(dir: &Path) -> PathBuf {
    let model = dir.join("tiny.tsm");
    let tiny = root().join("tests/data/tiny-bert-cls");
    let o = turnscore(
        &[
            "convert",
            tiny.to_str().unwrap(),
            "-o",
            model.to_str().unwrap(),
            "--checkpoint-head",
            "sensitive",
        ],
        None,
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    model
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Two jobs on one output directory: the second is refused while the first holds the lock, and
/// the lock goes with a killed process (no stale lock).
#[test]
fn a_second_job_on_the_same_directory_is_refused_and_a_dead_jobs_lock_is_not_stale() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let out = format!("{}/out/", dir.path().display());
    let input = dir.path().join("in.jsonl");
    std::fs::write(&input, job_input(300)).unwrap();
    // The first job reads standard input, which stays open: it holds the lock until killed.
    let mut first = Command::new(env!("CARGO_BIN_EXE_turnscore"))
        .args(["score", "-", "--model", model.to_str().unwrap(), "-o", &out, "--quiet"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut pipe = first.stdin.take().unwrap();
    pipe.write_all(&job_input(10)).unwrap();
    // The rejects report is opened right after the lock is taken.
    let t0 = std::time::Instant::now();
    while !Path::new(&format!("{out}_rejects.jsonl")).exists() {
        assert!(t0.elapsed() < std::time::Duration::from_secs(60), "the first job never started");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let second = turnscore(
        &["score", input.to_str().unwrap(), "--model", model.to_str().unwrap(), "-o", &out],
        None,
    );
    assert_eq!(second.status.code(), Some(1), "{}", err(&second));
    assert!(err(&second).contains("in use by another turnscore job"), "{}", err(&second));
    first.kill().unwrap();
    first.wait().unwrap();
    drop(pipe);
    // The dead job's lock is gone with it: the next job on the directory is not refused as
    // "in use" (it committed no shard, so there is nothing to resume either way).
    let base = [
        "score",
        input.to_str().unwrap(),
        "--model",
        model.to_str().unwrap(),
        "-o",
        &out,
        "--quiet",
    ];
    let o = turnscore(&base, None);
    assert!(!err(&o).contains("in use"), "{}", err(&o));
    let mut ow = base.to_vec();
    ow.push("--overwrite");
    let o = turnscore(&ow, None);
    assert!(o.status.success(), "{}", err(&o));
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(format!("{out}_manifest.json")).unwrap()).unwrap();
    assert_eq!(m["rows"], 300);
}

/// A job reading standard input cannot resume: nothing proves the new stream is the old one.
#[test]
fn a_stdin_job_cannot_resume_or_count_as_complete() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let out = format!("{}/out/", dir.path().display());
    let base = ["score", "-", "--model", model.to_str().unwrap(), "-o", &out, "--quiet"];
    let first = job_input(40);
    let o = turnscore(&base, Some(&first));
    assert!(o.status.success(), "{}", err(&o));
    // Completed, then run again with other stdin: refused, not a silent no-op.
    let o = turnscore(&base, Some(&job_input(80)));
    assert_eq!(o.status.code(), Some(1));
    assert!(err(&o).contains("standard input"), "{}", err(&o));
    // Interrupted (a progress record left by a kill): refused as well.
    std::fs::remove_file(format!("{out}_manifest.json")).unwrap();
    std::fs::write(format!("{out}_progress.json"), r#"{"fingerprint":"x","shards":[],"position":{"input":0,"row":0},"by_reason":{},"blank_before":0,"rejects_len":0}"#).unwrap();
    let o = turnscore(&base, Some(&job_input(80)));
    assert_eq!(o.status.code(), Some(1));
    assert!(err(&o).contains("cannot resume"), "{}", err(&o));
    let mut ow = base.to_vec();
    ow.push("--overwrite");
    assert!(turnscore(&ow, Some(&job_input(80))).status.success());
}

/// Devices and pipes are written as streams, never renamed over; a full disk names the file.
#[test]
fn devices_are_written_in_place_and_a_full_disk_names_the_file() {
    let o = turnscore(&["score", &examples(), "-o", "/dev/null", "--overwrite"], None);
    assert!(o.status.success(), "{}", err(&o));
    let md = std::fs::metadata("/dev/null").unwrap();
    assert!(!md.is_file(), "/dev/null is still a device");
    if Path::new("/dev/full").exists() {
        let o = turnscore(&["score", &examples(), "-o", "/dev/full"], None);
        assert_eq!(o.status.code(), Some(1));
        assert!(err(&o).contains("/dev/full") && err(&o).contains("No space left"), "{}", err(&o));
        assert_eq!(err(&o).matches("No space left").count(), 1, "the OS error once: {}", err(&o));
    }
}

/// `embed` applies the gate of `score`: a sensitive turn's vector says it is not ad-eligible.
#[test]
fn embed_says_whether_each_vector_is_ad_eligible_and_why() {
    let rows = [
        r#"{"id":"h","text":"my doctor says I have type 2 diabetes, what should I eat","role":"user","region":"US","consent_ads":true,"is_minor":false,"account_linked":true}"#,
        r#"{"id":"t","text":"cheap flights to Lisbon in May","role":"user","region":"US","consent_ads":true,"is_minor":false,"account_linked":true}"#,
        r#"{"id":"d","text":"cheap flights to Lisbon in May","role":"user","region":"DE","consent_ads":true,"is_minor":false,"account_linked":true}"#,
    ]
    .join("\n");
    let o = turnscore(&["embed", "-"], Some(rows.as_bytes()));
    assert!(o.status.success(), "{}", err(&o));
    let v = lines(&o);
    assert_eq!(v[0]["ad_eligible"], false);
    assert_eq!(v[0]["reason"], "sensitive:health");
    assert_eq!(v[0]["embedding"].as_array().unwrap().len(), 384, "the vector is still written");
    assert_eq!((v[1]["ad_eligible"].clone(), v[1]["reason"].clone()), (true.into(), "ok".into()));
    assert_eq!(
        (v[2]["ad_eligible"].clone(), v[2]["reason"].clone()),
        (false.into(), "region:DE".into())
    );
    assert!(v[2]["embedding"].is_null());
    // Only JSON lines: a Parquet path is a usage error, not JSONL under a .parquet name.
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x.parquet");
    let o = turnscore(&["embed", &examples(), "-o", p.to_str().unwrap()], None);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(!p.exists());
}

/// Out-of-range settings are usage errors (exit 2) that say what is wrong.
#[test]
fn out_of_range_settings_are_usage_errors() {
    for (args, want) in [
        (vec!["score", "-", "--threads", "100000"], "100000"),
        (vec!["score", "-", "--shard-rows", "0", "-o", "/tmp/x/"], "0"),
        (vec!["score", "-", "--window", "0"], "0"),
        (vec!["score", "-", "--window", "100000"], "over the model's window"),
        (vec!["score", "-", "--stride", "254"], "--stride 254"),
    ] {
        let o = turnscore(&args, Some(b"{\"id\":\"1\",\"text\":\"hi\"}\n"));
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", err(&o));
        assert!(err(&o).contains(want), "{args:?}: {}", err(&o));
    }
    let mut c = Command::new(env!("CARGO_BIN_EXE_turnscore"));
    let o = c.args(["score", &examples()]).env("TURNSCORE_MODEL", "").output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(err(&o).contains("TURNSCORE_MODEL is set but empty"), "{}", err(&o));
}

/// Model paths that are not model files fail at once with one clear message.
#[test]
fn a_model_path_that_is_a_directory_or_missing_says_so_once() {
    let dir = tempfile::tempdir().unwrap();
    let o = turnscore(&["score", &examples(), "--model", dir.path().to_str().unwrap()], None);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        err(&o).contains("a directory, not a model file") && !err(&o).contains("No such device"),
        "{}",
        err(&o)
    );
    let o = turnscore(&["score", &examples(), "--model", "/nonexistent/m.tsm"], None);
    assert_eq!(err(&o).matches("No such file or directory").count(), 1, "{}", err(&o));
}

/// `inspect` refuses what `score` refuses (one validation).
#[test]
fn inspect_refuses_a_model_that_score_refuses() {
    use turnscore::format::{ModelFile, ModelWriter, TensorData};
    let dir = tempfile::tempdir().unwrap();
    let good = ModelFile::open(tiny_model(dir.path())).unwrap();
    let meta = good.meta();
    let mut w = ModelWriter::new(
        &meta.model_id,
        &meta.quantization,
        meta.architecture.clone(),
        meta.provenance.clone(),
    );
    w.set_tokenizer(good.tokenizer_json().to_vec());
    w.set_topics(meta.topics.clone());
    w.set_sensitive(meta.sensitive.clone());
    let nan_in = &meta.sensitive.as_ref().unwrap().bias;
    for t in &meta.tensors {
        let (data, shape) = good.tensor(&t.name).unwrap();
        let mut bytes: Vec<u8> = match data {
            TensorData::F32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            TensorData::F16(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            TensorData::I8(v) | TensorData::I8K4N16(v) => v.iter().map(|&x| x as u8).collect(),
            TensorData::I32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        };
        if &t.name == nan_in {
            bytes[..4].copy_from_slice(&f32::NAN.to_le_bytes());
        }
        w.add_raw(&t.name, t.dtype, shape, bytes).unwrap();
    }
    let bad = dir.path().join("nan.tsm");
    w.write(&bad).unwrap();
    for cmd in [
        vec!["inspect", bad.to_str().unwrap()],
        vec!["score", &examples(), "--model", bad.to_str().unwrap()],
    ] {
        let o = turnscore(&cmd, None);
        assert_eq!(o.status.code(), Some(1), "{cmd:?}");
        assert!(err(&o).contains("NaN or infinite"), "{cmd:?}: {}", err(&o));
    }
}

/// Compressed JSON lines on standard input are decompressed (told by their first bytes).
#[test]
fn gzip_and_zstd_on_stdin_are_decompressed() {
    use std::io::Write as _;
    let rows = std::fs::read(examples()).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&rows).unwrap();
    let gz = gz.finish().unwrap();
    let zst = zstd::encode_all(&rows[..], 3).unwrap();
    let want = turnscore(&["score", "-"], Some(&rows)).stdout;
    for (name, bytes) in [("gzip", gz), ("zstd", zst)] {
        let o = turnscore(&["score", "-"], Some(&bytes));
        assert!(o.status.success(), "{name}: {}", err(&o));
        assert!(o.stdout == want, "{name}: same rows as the plain input");
    }
}

/// --strict into a directory leaves nothing behind, as it does for a file.
#[test]
fn strict_into_a_directory_leaves_no_shards() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let input = dir.path().join("in.jsonl");
    std::fs::write(&input, job_input(400)).unwrap(); // row 5 is bad JSON
    let out = dir.path().join("out");
    let o = turnscore(
        &[
            "score",
            input.to_str().unwrap(),
            "--model",
            model.to_str().unwrap(),
            "--strict",
            "--shard-rows",
            "2",
            "-o",
            &format!("{}/", out.display()),
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(err(&o).contains("line 6") && err(&o).contains("no output was written"), "{}", err(&o));
    let left: Vec<_> = std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(left.is_empty(), "{left:?}");
}

/// SIGTERM and SIGINT remove the unfinished output: no .partial file is left.
#[test]
fn sigterm_leaves_no_partial_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("o.jsonl");
    for sig in ["TERM", "INT"] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_turnscore"))
            .args(["score", "-", "-o", out.to_str().unwrap(), "--quiet"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut pipe = child.stdin.take().unwrap();
        pipe.write_all(&std::fs::read(examples()).unwrap()).unwrap();
        let partial = || {
            std::fs::read_dir(dir.path())
                .unwrap()
                .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().ends_with(".partial"))
                .count()
        };
        let t0 = std::time::Instant::now();
        while partial() == 0 && t0.elapsed() < std::time::Duration::from_secs(60) {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert_eq!(partial(), 1, "the job writes to a temporary file");
        let k = Command::new("kill").args([format!("-{sig}"), child.id().to_string()]).status();
        assert!(k.unwrap().success());
        let o = child.wait_with_output().unwrap();
        drop(pipe);
        assert_eq!(o.status.code(), Some(130), "SIG{sig}: {}", err(&o));
        assert_eq!(partial(), 0, "SIG{sig}: the temporary file is removed");
        assert!(!out.exists());
    }
}

/// `score --help` lists every reason a row can get.
#[test]
fn score_help_lists_every_reason() {
    let o = turnscore(&["score", "--help"], None);
    let h = String::from_utf8_lossy(&o.stdout);
    for r in [
        "not_object",
        "too_long",
        "duplicate_key",
        "score_not_finite",
        "no_sensitive_head",
        "bad_json",
        "type_mismatch",
        "bad_value",
        "region:unknown",
    ] {
        assert!(h.contains(r), "{r} missing from score --help");
    }
}

/// Progress rewritten with \r is for a terminal: a log file gets none.
#[test]
fn eval_writes_no_carriage_returns_to_a_log() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("dev.jsonl");
    std::fs::write(
        &data,
        r#"{"id":"a","text":"cheap flights to Lisbon","topics":["travel"],"sensitive":[]}"#,
    )
    .unwrap();
    let o = turnscore(&["eval", data.to_str().unwrap(), "--threads", "1"], None);
    assert!(o.status.success(), "{}", err(&o));
    assert!(!o.stderr.contains(&b'\r'), "{}", err(&o));
}

/// Files on which the Parquet and Arrow readers panic (found by fuzzing, in fuzz/regressions/)
/// fail the job with an error naming the file, not a crash.
#[test]
fn damaged_parquet_and_arrow_files_that_crash_their_readers_are_errors() {
    for (dir, name) in [
        ("arrow_rows", "buffer_offset_past_end.arrows"),
        ("parquet_rows", "bitmap_range_out_of_bounds.parquet"),
    ] {
        let p = root().join("fuzz/regressions").join(dir).join(name);
        let o = turnscore(&["score", p.to_str().unwrap()], None);
        assert_eq!(o.status.code(), Some(1), "{name}: {}", err(&o));
        assert!(err(&o).contains(name) && err(&o).contains("damaged"), "{name}: {}", err(&o));
        assert!(!err(&o).contains("panicked"), "{name}: {}", err(&o));
    }
}
