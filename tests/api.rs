//! The engine API on the bundled model: exact row accounting, order, rejection reasons,
//! truncation, and results that do not depend on batch composition or thread count.

use crate::util::*;
use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, UInt32Type};
use arrow_array::Array;
use turnscore::input::{parse_line, JsonlReader};
use turnscore::{Engine, EngineOptions};

fn engine(threads: usize, batch_tokens: usize) -> Engine {
    Engine::open(bundled_path(), EngineOptions { threads, batch_tokens, ..Default::default() })
        .unwrap()
}

/// The policy fields of a turn that the default policy admits.
const ADMIT: &str =
    r#""role":"user","region":"US","consent_ads":true,"is_minor":false,"account_linked":true"#;

#[test]
fn engine_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Engine>();
}

#[test]
fn one_output_row_per_input_row_in_order_with_reasons() {
    let e = engine(2, 2048);
    let mut lines: Vec<Vec<u8>> = vec![
        format!(r#"{{"id":"a","text":"best hiking boots for wide feet?",{ADMIT}}}"#).into_bytes(),
        br#"{"id":"b","text":""}"#.to_vec(),
        br#"not json"#.to_vec(),
        br#"{"text":"no id here"}"#.to_vec(),
        br#"{"id":"e"}"#.to_vec(),
        format!(r#"{{"id":"f","text":"how do I compute a mortgage payment","user_id":"u1","conversation_id":"c1",{ADMIT}}}"#).into_bytes(),
    ];
    let mut bad = br#"{"id":"g","text":"caf"#.to_vec();
    bad.push(0xe9);
    bad.extend_from_slice(br#""}"#);
    lines.push(bad);
    let rows: Vec<_> = lines.iter().enumerate().map(|(i, l)| parse_line(l, i as u64 + 1)).collect();
    let batch = e.score_rows(&rows).unwrap();
    assert_eq!(batch.num_rows(), rows.len());
    let ids = batch.column_by_name("id").unwrap().as_string::<i32>();
    let got: Vec<Option<&str>> =
        (0..ids.len()).map(|i| ids.is_valid(i).then(|| ids.value(i))).collect();
    assert_eq!(got, vec![Some("a"), Some("b"), None, None, Some("e"), Some("f"), Some("g")]);
    let reason = batch.column_by_name("reason").unwrap().as_dictionary::<Int32Type>();
    let vals = reason.values().as_string::<i32>();
    let reasons: Vec<&str> =
        reason.keys().iter().map(|k| vals.value(k.unwrap() as usize)).collect();
    assert_eq!(
        &reasons[1..5],
        &[
            "rejected:empty_text",
            "rejected:bad_json",
            "rejected:missing_id",
            "rejected:missing_text"
        ]
    );
    assert_eq!(reasons[6], "rejected:invalid_utf8");
    assert!(!reasons[0].starts_with("rejected") && !reasons[5].starts_with("rejected"));
    let tokens = batch.column_by_name("tokens").unwrap().as_primitive::<UInt32Type>();
    assert!(tokens.is_valid(0) && tokens.is_null(1) && tokens.value(0) > 2);
    let conv = batch.column_by_name("conversation_id").unwrap().as_string::<i32>();
    assert_eq!(conv.value(5), "c1");
    let elig = batch.column_by_name("ad_eligible").unwrap().as_boolean();
    assert!((1..5).all(|i| !elig.value(i)), "rejected rows are never ad-eligible");
    let topics = batch.column_by_name("topics").unwrap();
    assert!(topics.is_null(1) && topics.is_null(2));
}

#[test]
fn long_turns_are_scored_in_windows_and_nothing_is_cut_off() {
    // A health disclosure after ~640 tokens of small talk: truncation would never see it.
    let filler =
        "we talked about the weather and the traffic on the way to the office today. ".repeat(40);
    let long = format!(
        "{filler} By the way, I was diagnosed with HIV last week and I am scared about starting antiretroviral treatment."
    );
    let texts = [long.as_str(), filler.as_str(), "short"];
    let e = engine(2, 2048);
    let max = e.model().meta().architecture.max_seq_len as usize;
    assert_eq!(e.window(), max, "the default window is the model's");
    let emb = e.embed(&texts).unwrap();
    assert!(emb.tokens[0] as usize > 2 * max, "the test text must need several windows");
    assert!(emb.windows[0] >= 3 && emb.windows[2] == 1, "{:?}", emb.windows);
    let toks = e.tokenize(&texts).unwrap();
    assert!(toks[0].windows.iter().all(|w| w.len() <= max));
    let health = e.sensitive_labels().iter().position(|l| l.name == "health").unwrap();
    let t = e.sensitive_labels()[health].threshold;
    let s = e.score_texts(&texts).unwrap();
    assert_eq!(s[0].windows, emb.windows[0]);
    // Max pooling over windows: the long turn scores at least what its last window scores,
    // which is above what the first (truncated) window alone would give.
    let last = toks[0].windows.last().unwrap().clone();
    let first = toks[0].windows[0].clone();
    let per = e.embed_ids(&[first, last]).unwrap();
    let (_, ws) = e.head_scores(&per, 2).unwrap();
    let ns = e.sensitive_labels().len();
    let (first_h, last_h) = (ws[health], ws[ns + health]);
    assert!(s[0].sensitive[health] >= last_h && last_h > first_h, "{first_h} {last_h}");
    // Shorter windows dilute the disclosure less: with 64-token windows it is caught.
    let e64 =
        Engine::open(bundled_path(), EngineOptions { window: Some(64), ..Default::default() })
            .unwrap();
    let s64 = e64.score_texts(&texts).unwrap();
    assert!(s64[0].sensitive[health] >= t, "caught with 64-token windows");
    assert!(s64[1].sensitive[health] < t, "the small talk alone is not health");
    assert!(Engine::open(
        bundled_path(),
        EngineOptions { window: Some(max + 1), ..Default::default() }
    )
    .is_err());
}

#[test]
fn truncation_point_is_where_a_truncating_runtime_stops_reading() {
    let e = engine(1, 2048);
    let long = "the quick brown fox jumps over the lazy dog, unbelievably. ".repeat(30);
    let n = |t: &str| e.tokenize(&[t]).unwrap()[0].tokens as usize;
    assert!(n(&long) > 128, "the test text must be longer than 128 tokens");
    let cut = e.truncation_point(&long, 128).unwrap().expect("a long text is cut");
    // What is kept tokenizes to exactly 128 tokens ([CLS] + 126 + [SEP]), ends on a token
    // boundary (the first dropped token starts at or after the cut), and one more token would
    // have been too many.
    assert_eq!(n(&long[..cut]), 128);
    assert!(long.is_char_boundary(cut));
    let next = e.truncation_point(&long, 129).unwrap().unwrap();
    assert!(next > cut && n(&long[..next]) == 129);
    // A text that fits is read whole; so is one of exactly 128 tokens.
    assert_eq!(e.truncation_point("short", 128).unwrap(), None);
    assert_eq!(e.truncation_point(&long[..cut], 128).unwrap(), None);
}

#[test]
fn scores_do_not_depend_on_batch_neighbours_or_threads() {
    let texts = [
        "whats the weather in Lisbon this weekend",
        "I was just diagnosed with celiac disease, what can I eat?",
        "Write a python function that merges two sorted lists and explain its complexity in detail please",
        "hi",
    ];
    let alone: Vec<Vec<f32>> =
        texts.iter().map(|t| engine(1, 2048).embed(&[t]).unwrap().data).collect();
    let bits = |s: &turnscore::output::TurnScores| -> Vec<u32> {
        s.topics.iter().chain(&s.sensitive).map(|x| x.to_bits()).collect()
    };
    let scores_alone: Vec<Vec<u32>> =
        texts.iter().map(|t| bits(&engine(1, 2048).score_texts(&[t]).unwrap()[0])).collect();
    for (threads, budget) in [(1, 4096), (2, 16), (2, 2048)] {
        let e = engine(threads, budget);
        let together = e.embed(&texts).unwrap();
        for (i, a) in alone.iter().enumerate() {
            // Bit for bit: the int8 path quantizes per token, attends per sequence and applies
            // the heads row by row, so nothing depends on the batch.
            let same = a.iter().zip(together.row(i)).all(|(x, y)| x.to_bits() == y.to_bits());
            assert!(same, "turn {i} changed with threads={threads}, budget={budget}");
        }
        for (i, s) in e.score_texts(&texts).unwrap().iter().enumerate() {
            assert_eq!(
                bits(s),
                scores_alone[i],
                "scores of turn {i} changed with threads={threads}"
            );
        }
    }
}

#[test]
fn jsonl_reader_streams_in_chunks() {
    let mut data = Vec::new();
    for i in 0..10 {
        data.extend_from_slice(format!("{{\"id\":\"{i}\",\"text\":\"t{i}\"}}\n").as_bytes());
    }
    let mut r = JsonlReader::new(&data[..]);
    let sizes: Vec<usize> =
        std::iter::from_fn(|| Some(r.next_chunk(4).unwrap().len()).filter(|&n| n > 0)).collect();
    assert_eq!(sizes, vec![4, 4, 2]);
}

#[test]
fn suppressed_turns_are_never_scored_and_proxies_never_emitted() {
    use turnscore::policy::Policy;
    let mut policy = Policy::default();
    policy.topic_proxies.insert("travel".into(), vec!["religion".into()]);
    let e =
        Engine::open(bundled_path(), EngineOptions { threads: 1, policy, ..Default::default() })
            .unwrap();
    let text = "cheap flights from Chicago to Lisbon and a hotel near the old town";
    let lines = [
        format!(r#"{{"id":"ok","text":"{text}",{ADMIT}}}"#),
        format!(r#"{{"id":"eu","text":"{text}",{}}}"#, ADMIT.replace("US", "FR")),
        format!(
            r#"{{"id":"kid","text":"{text}",{}}}"#,
            ADMIT.replace(r#""is_minor":false"#, r#""is_minor":true"#)
        ),
        format!(
            r#"{{"id":"bot","text":"{text}",{}}}"#,
            ADMIT.replace(r#""role":"user""#, r#""role":"assistant""#)
        ),
    ];
    let rows: Vec<_> =
        lines.iter().enumerate().map(|(i, l)| parse_line(l.as_bytes(), i as u64 + 1)).collect();
    let b = e.score_rows(&rows).unwrap();
    let reason = b.column_by_name("reason").unwrap().as_dictionary::<Int32Type>();
    let vals = reason.values().as_string::<i32>();
    let reasons: Vec<&str> =
        reason.keys().iter().map(|k| vals.value(k.unwrap() as usize)).collect();
    assert_eq!(reasons, ["ok", "region:FR", "minor", "role"]);
    let tokens = b.column_by_name("tokens").unwrap().as_primitive::<UInt32Type>();
    assert!(
        tokens.is_valid(0) && (1..4).all(|i| tokens.is_null(i)),
        "suppressed turns are not tokenized"
    );
    let topics = b.column_by_name("topics").unwrap().as_struct();
    assert!(topics.is_valid(0) && (1..4).all(|i| topics.is_null(i)));
    let travel = topics.column_by_name("travel").unwrap();
    assert_eq!(travel.null_count(), 4, "a proxy topic's score is withheld in every row");
    assert!(topics.column_by_name("food_drink").unwrap().is_valid(0));
    let ints = b.column_by_name("interests").unwrap().as_list::<i32>();
    let first = ints.value(0);
    let first = first.as_string::<i32>();
    assert!(
        (0..first.len()).all(|i| first.value(i) != "travel"),
        "a proxy topic is never an interest"
    );
    let mut bad = Policy::default();
    bad.topic_proxies.insert("astrology".into(), vec!["religion".into()]);
    let err = Engine::open(bundled_path(), EngineOptions { policy: bad, ..Default::default() })
        .unwrap_err();
    assert!(err.to_string().contains("astrology"), "{err}");
}

#[test]
fn context_makes_a_sentence_pair_and_changes_only_turns_that_have_one() {
    let e = engine(1, 2048);
    let texts = ["what should I eat to keep my strength up?", "hi"];
    let ctx = [Some("I got my HIV test results back today and they were positive."), None];
    let alone = e.tokenize(&texts).unwrap();
    let paired = e.tokenize_in_context(&texts, &ctx).unwrap();
    let (a, p) = (&alone[0].windows[0], &paired[0].windows[0]);
    let start = paired[0].pair_start.expect("a pair") as usize;
    // [CLS] context [SEP] turn [SEP]: the turn's own ids follow the context's [SEP].
    assert_eq!(p[0], a[0]);
    assert_eq!(&p[start..], &a[1..]);
    assert_eq!(p[start - 1], *a.last().unwrap(), "the context ends with [SEP]");
    assert!(start > 3);
    assert_eq!(paired[0].tokens, alone[0].tokens, "tokens counts the turn only");
    assert_eq!(paired[1], alone[1], "no context: unchanged");
    let s_alone = e.score_texts(&texts).unwrap();
    let s_ctx = e.score_texts_in_context(&texts, &ctx).unwrap();
    assert_ne!(s_alone[0].sensitive, s_ctx[0].sensitive, "the context is seen");
    assert_eq!(s_alone[1].sensitive, s_ctx[1].sensitive);
    // A context longer than the window keeps its most recent tokens.
    let long = "word ".repeat(2000);
    let t = e.tokenize_in_context(&texts[..1], &[Some(long.as_str())]).unwrap();
    assert_eq!(t[0].windows[0].len(), e.window());
    // A turn too long to leave room is scored alone, in windows.
    let big = "health ".repeat(600);
    let t = e.tokenize_in_context(&[big.as_str()], &[Some("context")]).unwrap();
    assert_eq!(t[0].pair_start, None);
    assert!(t[0].windows.len() > 1);
}

/// Thread counts past the cap are refused at once (not minutes spent starting threads), and the
/// library's readers reject over-long texts by default, as the CLI does.
#[test]
fn thread_cap_and_default_text_limit() {
    let t0 = std::time::Instant::now();
    let e = Engine::bundled(EngineOptions { threads: 100_000, ..Default::default() })
        .expect_err("refused");
    assert!(e.to_string().contains("over the limit of 256"), "{e}");
    assert!(t0.elapsed() < std::time::Duration::from_secs(10));
    let big = "a".repeat(1_500_000);
    let b = arrow_array::RecordBatch::try_from_iter(vec![
        ("id", std::sync::Arc::new(arrow_array::StringArray::from(vec!["x"])) as _),
        ("text", std::sync::Arc::new(arrow_array::StringArray::from(vec![big.as_str()])) as _),
    ])
    .unwrap();
    let rows = turnscore::input::rows_from_batch(&b, 1, &turnscore::input::ReadOptions::default())
        .unwrap();
    assert_eq!(rows[0].turn.as_ref().unwrap_err().reason.code(), "too_long");
}
