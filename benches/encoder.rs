//! Criterion benchmarks: the f32 GEMM on the encoder's shapes, and the whole encoder on the
//! bundled all-MiniLM-L6-v2 (throughput in tokens).
//!
//! `cargo bench -p turnscore-benches`. Ids: `linalg/sgemm/<m>x<k>x<n>` (throughput in
//! multiply-adds), `e2e/all-minilm-l6-v2/b<batch>_s<seq>` (throughput in tokens).
#![forbid(unsafe_code)]

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::path::Path;
use turnscore::linalg::{sgemm, View};
use turnscore::{Engine, EngineOptions};

fn bench_sgemm(c: &mut Criterion) {
    let mut g = c.benchmark_group("linalg/sgemm");
    // Token rows × hidden → {hidden, ffn} and ffn → hidden, for all-MiniLM-L6-v2 (h 384, ffn 1536).
    for &(m, k, n) in &[(64, 384, 384), (64, 384, 1536), (64, 1536, 384), (368, 384, 1536)] {
        let a: Vec<f32> = (0..m * k).map(|i| (i % 13) as f32 * 0.01).collect();
        let w: Vec<f32> = (0..n * k).map(|i| (i % 7) as f32 * 0.01).collect();
        let mut out = vec![0f32; m * n];
        g.throughput(Throughput::Elements((m * n * k) as u64));
        g.bench_function(BenchmarkId::from_parameter(format!("{m}x{k}x{n}")), |b| {
            b.iter(|| {
                sgemm(m, n, k, View::rows(&a, k), View::transposed(&w, k), &mut out, n, false);
                black_box(&out);
            })
        });
    }
    g.finish();
}

fn bench_encoder(c: &mut Criterion) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/all-minilm-l6-v2.tsm");
    let e = Engine::open(
        &path,
        EngineOptions { threads: 1, batch_tokens: 1 << 20, ..Default::default() },
    )
    .unwrap();
    let mut g = c.benchmark_group("e2e/all-minilm-l6-v2");
    g.sample_size(10);
    for &(batch, seq) in &[(1, 16), (8, 46), (8, 128)] {
        // Token ids inside the vocabulary; [CLS] … [SEP].
        let seqs: Vec<Vec<u32>> = (0..batch)
            .map(|b| {
                let mut s = vec![101u32];
                s.extend((0..seq - 2).map(|i| 2000 + ((b * 31 + i * 7) % 5000) as u32));
                s.push(102);
                s
            })
            .collect();
        g.throughput(Throughput::Elements((batch * seq) as u64));
        g.bench_function(BenchmarkId::from_parameter(format!("b{batch}_s{seq}")), |b| {
            b.iter(|| black_box(e.embed_ids(&seqs).unwrap()))
        });
    }
    g.finish();
}

criterion_group!(benches, bench_sgemm, bench_encoder);
criterion_main!(benches);
