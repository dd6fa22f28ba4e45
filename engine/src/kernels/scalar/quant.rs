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

use crate::kernels::wide::{multiversion, round_even, MAGIC};

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
        let row = &x[i * k..(i + 1) * k];
        let (lo, hi) = min_max(row);
        let (lo, hi) = (lo.min(0.0), hi.max(0.0));
        let s = if hi > lo { (hi - lo) / 255.0 } else { 1.0 };
        let z = round_even(-lo / s).clamp(0.0, 255.0);
        let inv = 1.0 / s;
        for (d, &v) in q[i * k..(i + 1) * k].iter_mut().zip(row) {
            // The value is an integer in 0..=255 (NaN: 0); its low byte is read from the
            // mantissa of (value + 1.5·2²³), because float-to-int casts do not vectorize.
            let c = (round_even(v * inv) + z).clamp(0.0, 255.0);
            *d = (c + MAGIC).to_bits() as u8;
        }
        scale[i] = s;
        zp[i] = z as i32;
    }
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
        for t in 0..16 {
            lo[t] = if c[t] < lo[t] { c[t] } else { lo[t] };
            hi[t] = if c[t] > hi[t] { c[t] } else { hi[t] };
        }
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
        let (sa, z) = (ascale[i], zp[i]);
        let out = &mut y[i * n..(i + 1) * n];
        let a = &acc[i * n..(i + 1) * n];
        for j in 0..n {
            out[j] = (a[j] - z * colsum[j]) as f32 * (sa * wscale[j]) + bias[j];
        }
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

    #[test]
    fn extreme_values_saturate_instead_of_panicking() {
        let x = [f32::MAX, -f32::MAX, 1.0, f32::NAN, f32::INFINITY, 0.0, -1.0, 3.0];
        let (mut q, mut s, mut z) = (vec![0u8; 8], vec![0f32; 1], vec![0i32; 1]);
        quantize_rows_u8(&x, 1, 8, &mut q, &mut s, &mut z);
        // Order is kept (monotone), whatever the scale became.
        assert!(q[6] <= q[5] && q[5] <= q[2] && q[2] <= q[7] && q[7] <= q[0] && q[1] <= q[6]);
    }
}
