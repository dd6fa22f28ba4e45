//! Dynamic activation quantization and the int8 GEMM epilogue: plain Rust, written so that the
//! compiler vectorizes it (no library calls in the loops, fixed evaluation order, no FMA
//! contraction in Rust), hence one implementation for every tier, identical results everywhere.
//!
//! Activations are quantized **per token** (per row), asymmetrically to unsigned bytes:
//! `scale = (max(row, 0) − min(row, 0)) / 255`, `zp = round(−min / scale)`,
//! `q = clamp(round(x / scale) + zp, 0, 255)`, rounding half to even. Including 0 in the range
//! makes 0 exact. A row of zeros gets `scale = 1`, `zp = 0`. Per token was chosen over per
//! tensor because a row's quantization then depends on that row alone: a turn's scores do not
//! depend on what else is in its batch (determinism), and one outlier token cannot coarsen the
//! grid of every other token (accuracy; see `docs/KERNELS.md` for the measurement).

use crate::kernels::wide::{gelu1, layer_norm_row, multiversion, round_even, MAGIC};

multiversion! {
/// Quantizes `m` rows of `k` floats from `x` into `q` (`m × k` bytes), with each row's scale and
/// zero point in `scale[i]`, `zp[i]`.
///
/// # Panics
/// If a slice is shorter than its shape.
pub fn quantize_rows_u8(
    x: &[f32],
    m: usize,
    k: usize,
    q: &mut [u8],
    scale: &mut [f32],
    zp: &mut [i32],
) {
    assert!(x.len() >= m * k && q.len() >= m * k && scale.len() >= m && zp.len() >= m);
    for i in 0..m {
        (scale[i], zp[i]) = quantize_row(&x[i * k..(i + 1) * k], &mut q[i * k..(i + 1) * k]);
    }
}
}

/// Quantizes one row into `q` (as long as `row`); returns its scale and zero point. Runs the
/// AVX-512 form when the process's tier allows it (the same bytes, scale and zero point:
/// tested), else [`quantize_row_generic`].
#[inline(always)]
pub fn quantize_row(row: &[f32], q: &mut [u8]) -> (f32, i32) {
    #[cfg(target_arch = "x86_64")]
    if crate::kernels::wide::level() == 2 {
        assert!(q.len() >= row.len());
        // SAFETY: level 2 means the CPU reports avx512f, avx512bw and avx512vl, which is what
        // `avx512::quantize_row` enables; `q` is at least as long as `row` (checked).
        return unsafe { avx512::quantize_row(row, q) };
    }
    quantize_row_generic(row, q)
}

/// The row's scale and zero point from its minimum and maximum (0 is always in the range).
#[inline(always)]
fn scale_zp(lo: f32, hi: f32) -> (f32, f32) {
    let (lo, hi) = (lo.min(0.0), hi.max(0.0));
    let s = if hi > lo { (hi - lo) / 255.0 } else { 1.0 };
    (s, round_even(-lo / s).clamp(0.0, 255.0))
}

/// The specification of [`quantize_row`], in plain Rust.
#[inline(always)]
pub fn quantize_row_generic(row: &[f32], q: &mut [u8]) -> (f32, i32) {
    let (lo, hi) = min_max(row);
    let (s, z) = scale_zp(lo, hi);
    let inv = 1.0 / s;
    for (d, &v) in q.iter_mut().zip(row) {
        // The value is an integer in 0..=255 (NaN: 0); its low byte is read from the mantissa
        // of (value + 1.5·2²³), because float-to-int casts do not vectorize.
        let c = (round_even(v * inv) + z).clamp(0.0, 255.0);
        *d = (c + MAGIC).to_bits() as u8;
    }
    (s, z as i32)
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    /// [`super::quantize_row_generic`] with AVX-512, 16 lanes at a time, the tail masked.
    /// Minimum and maximum are exact in any order (NaN is skipped, as in the specification:
    /// `vminps` returns its second operand when the first is NaN). The conversion gives the same
    /// bytes: `vrndscaleps` rounds half to even as the specification's `round_even` does below
    /// 2²², and above that both exceed 255 after adding the zero point; the clamp sends NaN to 0
    /// (`vmaxps` with 0 second), as the specification's does.
    ///
    /// # Safety
    /// avx512f, avx512bw and avx512vl; `q.len() ≥ row.len()`.
    #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")]
    pub(super) unsafe fn quantize_row(row: &[f32], q: &mut [u8]) -> (f32, i32) {
        let n = row.len();
        let (rp, qp) = (row.as_ptr(), q.as_mut_ptr());
        let tail = (n % 16) as u32;
        let tmask: __mmask16 = ((1u32 << tail) - 1) as __mmask16;
        let body = n - n % 16;
        let mut lo = _mm512_set1_ps(f32::INFINITY);
        let mut hi = _mm512_set1_ps(f32::NEG_INFINITY);
        let mut i = 0;
        while i < body {
            // SAFETY: i + 16 ≤ body ≤ n = row.len().
            let v = unsafe { _mm512_loadu_ps(rp.add(i)) };
            lo = _mm512_min_ps(v, lo);
            hi = _mm512_max_ps(v, hi);
            i += 16;
        }
        if tail != 0 {
            // SAFETY: only the lanes body..n (< row.len()) are read.
            let v = unsafe { _mm512_maskz_loadu_ps(tmask, rp.add(body)) };
            lo = _mm512_mask_min_ps(lo, tmask, v, lo);
            hi = _mm512_mask_max_ps(hi, tmask, v, hi);
        }
        let (lo, hi) = (_mm512_reduce_min_ps(lo), _mm512_reduce_max_ps(hi));
        let (lo, hi) = if lo > hi { (0.0, 0.0) } else { (lo, hi) };
        let (s, z) = super::scale_zp(lo, hi);
        let inv = _mm512_set1_ps(1.0 / s);
        let (zv, zero, top) = (_mm512_set1_ps(z), _mm512_setzero_ps(), _mm512_set1_ps(255.0));
        let convert = |v: __m512| -> __m128i {
            let r = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
                _mm512_mul_ps(v, inv),
            );
            let c = _mm512_min_ps(_mm512_max_ps(_mm512_add_ps(r, zv), zero), top);
            _mm512_cvtepi32_epi8(_mm512_cvtps_epi32(c))
        };
        let mut i = 0;
        while i < body {
            // SAFETY: i + 16 ≤ n ≤ row.len() and ≤ q.len().
            unsafe {
                _mm_storeu_si128(qp.add(i) as *mut __m128i, convert(_mm512_loadu_ps(rp.add(i))))
            };
            i += 16;
        }
        if tail != 0 {
            // SAFETY: only the lanes body..n are read and written.
            unsafe {
                let v = _mm512_maskz_loadu_ps(tmask, rp.add(body));
                _mm_mask_storeu_epi8(qp.add(body) as *mut i8, tmask, convert(v));
            }
        }
        (s, z as i32)
    }
}

/// Row minimum and maximum with 16 independent lanes (vectorizes; the result does not depend
/// on the order, min and max being exact). Non-finite values propagate as ±∞ or are ignored
/// (NaN), never panic.
#[inline(always)]
fn min_max(row: &[f32]) -> (f32, f32) {
    let mut lo = [f32::INFINITY; 16];
    let mut hi = [f32::NEG_INFINITY; 16];
    let mut chunks = row.chunks_exact(16);
    // Compare-and-select (NaN never selected), which maps onto vector min/max; `f32::min`
    // with its NaN rules does not vectorize.
    for c in &mut chunks {
        let c: &[f32; 16] = c.try_into().unwrap();
        lo = std::array::from_fn(|t| if c[t] < lo[t] { c[t] } else { lo[t] });
        hi = std::array::from_fn(|t| if c[t] > hi[t] { c[t] } else { hi[t] });
    }
    for (t, &v) in chunks.remainder().iter().enumerate() {
        lo[t] = lo[t].min(v);
        hi[t] = hi[t].max(v);
    }
    let lo = lo.iter().fold(f32::INFINITY, |a, &b| a.min(b));
    let hi = hi.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    if lo > hi {
        (0.0, 0.0)
    } else {
        (lo, hi)
    }
}

multiversion! {
/// The epilogue of `y = x · Wᵀ + b` in int8: `y[i][j] = (acc[i][j] − zp[i] · colsum[j]) ·
/// (ascale[i] · wscale[j]) + bias[j]`, for `m` rows of `n` outputs. The integer correction is
/// exact (`|zp · colsum| ≤ 255 · 127 · k`, inside i32 for `k ≤ MAX_K`).
pub fn dequantize(
    acc: &[i32],
    m: usize,
    n: usize,
    ascale: &[f32],
    zp: &[i32],
    wscale: &[f32],
    colsum: &[i32],
    bias: &[f32],
    y: &mut [f32],
) {
    assert!(acc.len() >= m * n && y.len() >= m * n && ascale.len() >= m && zp.len() >= m);
    assert!(wscale.len() == n && colsum.len() == n && bias.len() == n);
    for i in 0..m {
        dequantize_row(&acc[i * n..(i + 1) * n], ascale[i], zp[i], wscale, colsum, bias, &mut y[i * n..(i + 1) * n]);
    }
}
}

/// One row of [`dequantize`].
#[inline(always)]
fn dequantize_row(
    a: &[i32],
    sa: f32,
    z: i32,
    wscale: &[f32],
    colsum: &[i32],
    bias: &[f32],
    out: &mut [f32],
) {
    let n = out.len();
    let (a, wscale, colsum, bias) = (&a[..n], &wscale[..n], &colsum[..n], &bias[..n]);
    for j in 0..n {
        out[j] = (a[j] - z * colsum[j]) as f32 * (sa * wscale[j]) + bias[j];
    }
}

/// The activations of a linear layer's output, quantized for the next int8 GEMM, with their
/// per-row scales and zero points (`m × n` bytes).
pub struct QuantOut<'a> {
    /// `m × n` bytes.
    pub q: &'a mut [u8],
    /// `m` scales.
    pub scale: &'a mut [f32],
    /// `m` zero points.
    pub zp: &'a mut [i32],
}

/// The int8 GEMM's accumulators and what [`dequantize`] needs to turn them into floats.
#[derive(Clone, Copy)]
pub struct Acc<'a> {
    /// `m × n` i32.
    pub acc: &'a [i32],
    /// Per input row: activation scale and zero point.
    pub ascale: &'a [f32],
    /// As above.
    pub zp: &'a [i32],
    /// Per output channel: weight scale, column sum, bias.
    pub wscale: &'a [f32],
    /// As above.
    pub colsum: &'a [i32],
    /// As above.
    pub bias: &'a [f32],
}

multiversion! {
/// The FFN's middle, fused per row: [`dequantize`], then GELU ([`gelu1`]), then
/// [`quantize_rows_u8`] into `out`, for `m` rows of `n`; `tmp` holds one row (`n` floats).
/// The same operations as the three passes, so the same bits (tested), with one pass over
/// memory instead of four.
pub fn dequantize_gelu_quantize(a: Acc<'_>, m: usize, n: usize, tmp: &mut [f32], out: QuantOut<'_>) {
    assert!(a.acc.len() >= m * n && out.q.len() >= m * n && out.scale.len() >= m && out.zp.len() >= m);
    assert!(a.ascale.len() >= m && a.zp.len() >= m && tmp.len() >= n);
    let tmp = &mut tmp[..n];
    for i in 0..m {
        dequantize_row(&a.acc[i * n..(i + 1) * n], a.ascale[i], a.zp[i], a.wscale, a.colsum, a.bias, tmp);
        for v in tmp.iter_mut() {
            *v = gelu1(*v);
        }
        (out.scale[i], out.zp[i]) = quantize_row(tmp, &mut out.q[i * n..(i + 1) * n]);
    }
}
}

multiversion! {
/// A sublayer's end, fused per row: [`dequantize`], plus the residual `x`, then LayerNorm
/// ([`layer_norm_row`]) written back into `x`, then [`quantize_rows_u8`] of that into `out`, for
/// `m` rows of `n`; `tmp` holds one row. The same operations as the separate passes, so the same
/// bits (tested).
#[allow(clippy::too_many_arguments)]
pub fn dequantize_residual_norm_quantize(
    a: Acc<'_>,
    m: usize,
    n: usize,
    x: &mut [f32],
    g: &[f32],
    b: &[f32],
    eps: f64,
    tmp: &mut [f32],
    out: QuantOut<'_>,
) {
    assert!(a.acc.len() >= m * n && x.len() >= m * n && out.q.len() >= m * n);
    assert!(out.scale.len() >= m && out.zp.len() >= m && a.ascale.len() >= m && a.zp.len() >= m);
    assert!(tmp.len() >= n && g.len() == n && b.len() == n);
    let tmp = &mut tmp[..n];
    for i in 0..m {
        dequantize_row(&a.acc[i * n..(i + 1) * n], a.ascale[i], a.zp[i], a.wscale, a.colsum, a.bias, tmp);
        let xr = &mut x[i * n..(i + 1) * n];
        for (t, r) in tmp.iter_mut().zip(xr.iter()) {
            *t += r;
        }
        layer_norm_row(tmp, g, b, eps);
        xr.copy_from_slice(tmp);
        (out.scale[i], out.zp[i]) = quantize_row(tmp, &mut out.q[i * n..(i + 1) * n]);
    }
}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantization_round_trips_within_half_a_step() {
        let k = 37;
        let x: Vec<f32> =
            (0..3 * k).map(|i| ((i * 7919) % 101) as f32 / 13.0 - 3.0 + (i / k) as f32).collect();
        let (mut q, mut s, mut z) = (vec![0u8; 3 * k], vec![0f32; 3], vec![0i32; 3]);
        quantize_rows_u8(&x, 3, k, &mut q, &mut s, &mut z);
        for i in 0..3 {
            for l in 0..k {
                let back = (q[i * k + l] as i32 - z[i]) as f32 * s[i];
                assert!((back - x[i * k + l]).abs() <= 0.5 * s[i] + 1e-6, "row {i} col {l}");
            }
        }
    }

    #[test]
    fn zeros_and_constant_rows_are_exact() {
        let x = [0.0f32; 8].iter().chain([2.5f32; 8].iter()).copied().collect::<Vec<_>>();
        let (mut q, mut s, mut z) = (vec![0u8; 16], vec![0f32; 2], vec![0i32; 2]);
        quantize_rows_u8(&x, 2, 8, &mut q, &mut s, &mut z);
        assert_eq!((s[0], z[0]), (1.0, 0));
        assert!(q[..8].iter().all(|&v| v == 0));
        assert!(q[8..].iter().all(|&v| (v as i32 - z[1]) as f32 * s[1] == 2.5));
    }

    /// The dispatched row quantizer (AVX-512 where the CPU has it) against the plain one: every
    /// length 0..=70 and a few long ones, ordinary, tiny, huge, constant and non-finite rows.
    #[test]
    fn row_quantizer_equals_the_specification() {
        let mut seed = 11u64;
        let mut next = move || {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((seed >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        };
        let lens = (0..=70).chain([383, 384, 385, 1536]);
        for n in lens {
            for kind in 0..7 {
                let row: Vec<f32> = (0..n)
                    .map(|i| match kind {
                        0 => next() * 4.0,
                        1 => next() * 1e-30,
                        2 => next() * 3e38,
                        3 => 2.5,
                        4 => next().abs() + 0.5,
                        5 => [f32::NAN, f32::INFINITY, -1.0, 0.0, -0.0, 7.0][i % 6],
                        _ => (next() * 8.0).round() * 0.5 + 4_194_304.0 * (i % 3) as f32,
                    })
                    .collect();
                let (mut a, mut b) = (vec![1u8; n], vec![2u8; n]);
                let (sa, za) = quantize_row(&row, &mut a);
                let (sb, zb) = quantize_row_generic(&row, &mut b);
                assert_eq!(a, b, "len {n} kind {kind}");
                assert_eq!((sa.to_bits(), za), (sb.to_bits(), zb), "len {n} kind {kind}");
            }
        }
    }

    /// Inputs for the fused epilogues: accumulators, activation and weight parameters.
    struct Case {
        acc: Vec<i32>,
        ascale: Vec<f32>,
        zp: Vec<i32>,
        wscale: Vec<f32>,
        colsum: Vec<i32>,
        bias: Vec<f32>,
    }

    impl Case {
        fn new(m: usize, n: usize, seed: u64) -> Case {
            let mut r = seed;
            let mut next = move || {
                r = r.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                (r >> 33) as i64
            };
            Case {
                acc: (0..m * n).map(|_| (next() % 200_001 - 100_000) as i32).collect(),
                ascale: (0..m).map(|_| (next() % 1000 + 1) as f32 * 1e-4).collect(),
                zp: (0..m).map(|_| (next() % 256) as i32).collect(),
                wscale: (0..n).map(|_| (next() % 1000 + 1) as f32 * 1e-5).collect(),
                colsum: (0..n).map(|_| (next() % 20_001 - 10_000) as i32).collect(),
                bias: (0..n).map(|_| (next() % 2001 - 1000) as f32 * 1e-3).collect(),
            }
        }
        fn acc(&self) -> Acc<'_> {
            Acc {
                acc: &self.acc,
                ascale: &self.ascale,
                zp: &self.zp,
                wscale: &self.wscale,
                colsum: &self.colsum,
                bias: &self.bias,
            }
        }
        /// The unfused first step.
        fn dequantize(&self, m: usize, n: usize) -> Vec<f32> {
            let mut y = vec![0f32; m * n];
            let (a, b) = (&self.ascale, &self.zp);
            dequantize(&self.acc, m, n, a, b, &self.wscale, &self.colsum, &self.bias, &mut y);
            y
        }
    }

    /// Bytes, scales and zero points of `m` rows.
    struct Q(Vec<u8>, Vec<f32>, Vec<i32>);
    impl Q {
        fn zeros(m: usize, n: usize) -> Q {
            Q(vec![0u8; m * n], vec![0f32; m], vec![0i32; m])
        }
        fn of(y: &[f32], m: usize, n: usize) -> Q {
            let mut q = Q::zeros(m, n);
            quantize_rows_u8(y, m, n, &mut q.0, &mut q.1, &mut q.2);
            q
        }
        fn out(&mut self) -> QuantOut<'_> {
            QuantOut { q: &mut self.0, scale: &mut self.1, zp: &mut self.2 }
        }
        fn assert_eq(&self, other: &Q, what: &str) {
            assert_eq!(self.0, other.0, "{what}");
            assert_eq!(self.2, other.2, "{what}");
            assert!(self.1.iter().zip(&other.1).all(|(a, b)| a.to_bits() == b.to_bits()), "{what}");
        }
    }

    #[test]
    fn fused_gelu_epilogue_equals_the_three_passes() {
        for &(m, n) in &[(1, 1), (3, 17), (5, 1536), (2, 33), (7, 384)] {
            let c = Case::new(m, n, (m * 31 + n) as u64);
            let mut y = c.dequantize(m, n);
            crate::kernels::wide::gelu(&mut y);
            let want = Q::of(&y, m, n);
            let mut got = Q::zeros(m, n);
            dequantize_gelu_quantize(c.acc(), m, n, &mut vec![0f32; n], got.out());
            got.assert_eq(&want, &format!("{m}x{n}"));
        }
    }

    #[test]
    fn fused_norm_epilogue_equals_the_separate_passes() {
        for &(m, n) in &[(1, 1), (3, 17), (5, 384), (2, 33)] {
            let c = Case::new(m, n, (m * 7 + n) as u64);
            let x: Vec<f32> = (0..m * n).map(|i| ((i * 7919) % 97) as f32 / 9.0 - 5.0).collect();
            let g: Vec<f32> = (0..n).map(|i| 0.5 + (i % 5) as f32 * 0.25).collect();
            let b: Vec<f32> = (0..n).map(|i| (i % 3) as f32 * 0.1 - 0.1).collect();
            let mut y = c.dequantize(m, n);
            crate::kernels::wide::add_assign(&mut y, &x);
            crate::kernels::wide::layer_norm(&mut y, n, &g, &b, 1e-12);
            let want = Q::of(&y, m, n);
            let (mut x2, mut got) = (x.clone(), Q::zeros(m, n));
            let tmp = &mut vec![0f32; n];
            dequantize_residual_norm_quantize(
                c.acc(),
                m,
                n,
                &mut x2,
                &g,
                &b,
                1e-12,
                tmp,
                got.out(),
            );
            assert!(y.iter().zip(&x2).all(|(a, b)| a.to_bits() == b.to_bits()), "{m}x{n}");
            got.assert_eq(&want, &format!("{m}x{n}"));
        }
    }

    #[test]
    fn extreme_values_saturate_instead_of_panicking() {
        let x = [f32::MAX, -f32::MAX, 1.0, f32::NAN, f32::INFINITY, 0.0, -1.0, 3.0];
        let (mut q, mut s, mut z) = (vec![0u8; 8], vec![0f32; 1], vec![0i32; 1]);
        quantize_rows_u8(&x, 1, 8, &mut q, &mut s, &mut z);
        // Order is kept (monotone), whatever the scale became.
        assert!(q[6] <= q[5] && q[5] <= q[2] && q[2] <= q[7] && q[7] <= q[0] && q[1] <= q[6]);
    }
}
