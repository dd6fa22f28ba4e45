//! Criterion benchmarks live in `encoder.rs`; run `cargo bench -p turnscore-benches`.
