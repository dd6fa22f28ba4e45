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

/// `layer/all-minilm-l6-v2/<i>/b8_s46`: each encoder layer of the bundled model alone (8 turns of
/// 46 tokens: the corpus average), throughput in tokens.
fn bench_layers(c: &mut Criterion) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/all-minilm-l6-v2.tsm");
    let model = turnscore::format::ModelFile::open(&path).unwrap();
    let a = model.meta().architecture.clone();
    let lens = vec![46usize; 8];
    let m: usize = lens.iter().sum();
    let h = a.hidden_size as usize;
    let x0: Vec<f32> = (0..m * h).map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.02).collect();
    let mut scratch = turnscore::Scratch::default();
    let mut g = c.benchmark_group("layer/all-minilm-l6-v2");
    g.throughput(Throughput::Elements(m as u64));
    for layer in 0..a.num_layers as usize {
        g.bench_function(BenchmarkId::new(layer.to_string(), "b8_s46"), |bch| {
            bch.iter(|| {
                let mut x = x0.clone();
                turnscore::bench_layer(&model, layer, &mut x, &lens, &mut scratch).unwrap();
                black_box(x)
            })
        });
    }
    g.finish();
}

/// `kernel/<op>/<shape>`: the element-wise kernels on the encoder's shapes (368 token rows), at
/// the build this process picked (see `kernels::wide`), throughput in elements.
fn bench_elementwise(c: &mut Criterion) {
    use turnscore::kernels::attention::{attention_head, scratch_len};
    use turnscore::kernels::scalar::quant::{
        dequantize, dequantize_gelu_quantize, quantize_rows_u8, Acc, QuantOut,
    };
    use turnscore::kernels::wide::{gelu, layer_norm};
    let (m, h, f) = (368usize, 384usize, 1536usize);
    let x: Vec<f32> = (0..m * f).map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.05).collect();
    let mut g = c.benchmark_group("kernel");
    g.throughput(Throughput::Elements((m * h) as u64));
    let (mut q, mut s, mut z) = (vec![0u8; m * f], vec![0f32; m], vec![0i32; m]);
    g.bench_function(BenchmarkId::new("quantize_rows_u8", format!("{m}x{h}")), |b| {
        b.iter(|| quantize_rows_u8(black_box(&x[..m * h]), m, h, &mut q, &mut s, &mut z))
    });
    let mut y = x.clone();
    g.bench_function(BenchmarkId::new("layer_norm", format!("{m}x{h}")), |b| {
        let (gm, bt) = (vec![1.0f32; h], vec![0.0f32; h]);
        b.iter(|| layer_norm(black_box(&mut y[..m * h]), h, &gm, &bt, 1e-12))
    });
    g.throughput(Throughput::Elements((m * f) as u64));
    let acc: Vec<i32> = (0..m * f).map(|i| (i as i32 % 2001) - 1000).collect();
    let (ws, cs, bias) = (vec![0.01f32; f], vec![3i32; f], vec![0.5f32; f]);
    g.bench_function(BenchmarkId::new("dequantize", format!("{m}x{f}")), |b| {
        b.iter(|| dequantize(black_box(&acc), m, f, &s, &z, &ws, &cs, &bias, &mut y))
    });
    g.bench_function(BenchmarkId::new("gelu", format!("{m}x{f}")), |b| {
        b.iter(|| {
            y.copy_from_slice(&x);
            gelu(black_box(&mut y))
        })
    });
    // The FFN's fused epilogue (dequantize + GELU + quantize) on the same shape.
    let mut row = vec![0f32; f];
    let (mut qi, mut si, mut zi) = (vec![0u8; m * f], vec![0f32; m], vec![0i32; m]);
    g.bench_function(BenchmarkId::new("dequantize_gelu_quantize", format!("{m}x{f}")), |b| {
        b.iter(|| {
            let a = Acc { acc: &acc, ascale: &s, zp: &z, wscale: &ws, colsum: &cs, bias: &bias };
            let out = QuantOut { q: &mut qi, scale: &mut si, zp: &mut zi };
            dequantize_gelu_quantize(black_box(a), m, f, &mut row, out)
        })
    });
    // Attention of 8 turns of 46 tokens × 12 heads of 32 (throughput in score elements).
    let (l, nh, d) = (46usize, 12usize, 32usize);
    g.throughput(Throughput::Elements((8 * nh * l * l) as u64));
    let mut scratch = vec![0f32; scratch_len(l, d)];
    let mut ctx = vec![0f32; m * h];
    g.bench_function(BenchmarkId::new("attention_head", format!("8x{nh}x{l}x{d}")), |b| {
        b.iter(|| {
            for t in 0..8 {
                for hd in 0..nh {
                    let off = t * l * h + hd * d;
                    let (q, k, v) = (&x[off..], &x[off + 7..], &x[off + 13..]);
                    let out = &mut ctx[off..];
                    attention_head(q, k, v, out, h, l, d, 0.17, &mut scratch);
                }
            }
            black_box(&ctx);
        })
    });
    g.finish();
}

criterion_group!(benches, bench_sgemm, bench_encoder, bench_int8, bench_layers, bench_elementwise);
criterion_main!(benches);
