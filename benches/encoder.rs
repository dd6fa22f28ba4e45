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

/// `kernel/gemm_u8i8_i32/<isa>/<m>x<k>x<n>`: every tier on the encoder's shapes (368 token rows =
/// 8 turns of 46 tokens), throughput in multiply-adds (1 MAC = 2 int8 ops); and
/// `kernel/vnni_peak`, the machine's `vpdpbusd` rate, to read the GEMM as a share of it.
fn bench_int8(c: &mut Criterion) {
    use turnscore::kernels::{Kernels, PackedB};
    let mut g = c.benchmark_group("kernel/gemm_u8i8_i32");
    for t in Kernels::all_available() {
        for &(m, k, n) in &[(368, 384, 384), (368, 384, 1536), (368, 1536, 384)] {
            if t.isa() == turnscore::kernels::Isa::Scalar && m * k * n > 100_000_000 {
                continue; // the scalar tier is the specification, far too slow for big shapes
            }
            let a: Vec<u8> = (0..m * k).map(|i| (i * 7 % 251) as u8).collect();
            let b: Vec<i8> = (0..n * k).map(|i| (i * 13 % 255) as i8).collect();
            let pb = PackedB::pack(&b, n, k);
            let mut out = vec![0i32; m * n];
            g.throughput(Throughput::Elements((m * n * k) as u64));
            g.bench_function(BenchmarkId::new(t.isa().name(), format!("{m}x{k}x{n}")), |bch| {
                bch.iter(|| {
                    t.gemm_u8i8_i32(black_box(&a), m, k, &pb, &mut out);
                    black_box(&out);
                })
            });
        }
    }
    g.finish();
    #[cfg(target_arch = "x86_64")]
    if let Some(v) = turnscore::kernels::x86_64::avx512vnni::Avx512Vnni::try_new() {
        let mut g = c.benchmark_group("kernel");
        let iters = 100_000u64;
        g.throughput(Throughput::Elements(iters * 8 * 64));
        g.bench_function("vnni_peak", |bch| bch.iter(|| black_box(v.peak_loop(black_box(iters)))));
        g.finish();
    }
}

criterion_group!(benches, bench_sgemm, bench_encoder, bench_int8);
criterion_main!(benches);
