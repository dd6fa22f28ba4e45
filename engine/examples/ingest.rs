//! An ingestion service in miniature: turns arrive one by one (here from a producer thread, in a
//! real service from a queue or an RPC), and a scorer thread scores them in micro-batches. It
//! cuts a batch when it has `MAX_BATCH` turns or when the oldest waiting turn has waited
//! `BUDGET`, whichever comes first. So no turn waits longer than the budget plus one batch's
//! scoring time, and batches grow under load. Only ids, reasons and latencies are printed, never
//! text.
//!
//! Run: `cargo run --release -p turnscore-engine --example ingest [MODEL]`

use std::sync::mpsc;
use std::time::{Duration, Instant};
use turnscore::input::{parse_line, Row};
use turnscore::{Engine, EngineOptions};

const MAX_BATCH: usize = 16;
const BUDGET: Duration = Duration::from_millis(20);

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let model = std::env::args().nth(1).unwrap_or_else(|| {
        concat!(env!("CARGO_MANIFEST_DIR"), "/../models/all-minilm-l6-v2.tsm").to_string()
    });
    // One engine, shared: it is Send + Sync, and its thread budget is explicit.
    let engine = Engine::open(&model, EngineOptions { threads: 2, ..Default::default() })?;

    let (tx, rx) = mpsc::channel::<(Row, Instant)>();
    let producer = std::thread::spawn(move || {
        let texts = [
            "cheap flights from Chicago to Lisbon in May",
            "my doctor thinks I might have asthma",
            "best budget gaming laptop under 800 dollars",
            "how do I make sourdough starter",
        ];
        for i in 0..120 {
            let line = format!(
                r#"{{"id":"t{i}","text":"{}","role":"user","region":"US","consent_ads":true,"is_minor":false,"account_linked":true}}"#,
                texts[i % texts.len()]
            );
            if tx.send((parse_line(line.as_bytes(), i as u64 + 1), Instant::now())).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(3)); // ~300 turns/s arriving
        }
    });

    let mut waits = Vec::new();
    let mut batches = 0;
    let mut pending: Vec<(Row, Instant)> = Vec::new();
    loop {
        // Wait for the first turn, then fill until the batch is full or the budget runs out.
        let first = match pending.first() {
            Some((_, t)) => *t,
            None => match rx.recv() {
                Ok(item) => {
                    let t = item.1;
                    pending.push(item);
                    t
                }
                Err(_) => break, // producer done, nothing pending
            },
        };
        while pending.len() < MAX_BATCH {
            let left = BUDGET.saturating_sub(first.elapsed());
            match rx.recv_timeout(left) {
                Ok(item) => pending.push(item),
                Err(_) => break, // budget spent, or the producer is done
            }
        }
        let rows: Vec<Row> = pending.iter().map(|(r, _)| r.clone()).collect();
        let batch = engine.score_rows(&rows)?;
        let done = Instant::now();
        waits.extend(pending.iter().map(|(_, t)| (done - *t).as_secs_f64() * 1e3));
        batches += 1;
        assert_eq!(batch.num_rows(), rows.len(), "one output row per turn");
        pending.clear();
    }
    producer.join().expect("producer");
    waits.sort_by(f64::total_cmp);
    let p = |q: f64| waits[((waits.len() - 1) as f64 * q).round() as usize];
    println!(
        "{} turns in {batches} micro-batches (max {MAX_BATCH}, budget {} ms): arrival-to-score latency p50 {:.1} ms, p99 {:.1} ms",
        waits.len(),
        BUDGET.as_millis(),
        p(0.5),
        p(0.99)
    );
    Ok(())
}
