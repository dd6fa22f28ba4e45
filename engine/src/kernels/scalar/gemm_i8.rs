//! The scalar specification of the int8 matrix multiply, and the scalar tier over the packed
//! layout. Plain loops, explicit widening: this is what every SIMD tier must equal, bit for bit.
//!
//! `C[i][j] = Σ_l A[i][l] · B[j][l]` with `A` unsigned bytes (quantized activations, `m × k`
//! row-major) and `B` signed bytes (weights, one row per output channel, `n × k` row-major),
//! accumulated in i32. Overflow bound: `|A·B| ≤ 255 · 128`, so `k ≤ 65 793` keeps every sum inside
//! i32 (`k · 255 · 128 ≤ 2³¹ − 1`); callers check it at the op boundary.

use crate::kernels::PackedB;

/// The specification: `c[i·n + j] = Σ_l a[i·k + l] · b[j·k + l]`.
pub fn gemm_u8i8_i32_ref(a: &[u8], m: usize, k: usize, b: &[i8], n: usize, c: &mut [i32]) {
    for i in 0..m {
        for j in 0..n {
            let mut acc = 0i32;
            for l in 0..k {
                acc += a[i * k + l] as i32 * b[j * k + l] as i32;
            }
            c[i * n + j] = acc;
        }
    }
}

/// The scalar tier: the same result, reading `B` in its packed layout one panel of 16 channels
/// at a time (plain integer code the compiler vectorizes for the baseline target; the products
/// and sums are exact, so the order does not matter).
pub fn gemm_u8i8_i32(a: &[u8], m: usize, k: usize, b: &PackedB<'_>, c: &mut [i32]) {
    let n = b.n();
    let groups = b.groups();
    let data = b.data();
    for i in 0..m {
        let row = &a[i * k..(i + 1) * k];
        for p in 0..b.panels() {
            let mut acc = [0i32; 16];
            let panel = &data[p * groups * 64..(p + 1) * groups * 64];
            for (g, blk) in panel.chunks_exact(64).enumerate() {
                for t in 0..4 {
                    let l = g * 4 + t;
                    let av = if l < k { row[l] as i32 } else { 0 };
                    for (jj, x) in acc.iter_mut().enumerate() {
                        *x += av * blk[jj * 4 + t] as i32;
                    }
                }
            }
            let cols = (n - p * 16).min(16);
            c[i * n + p * 16..i * n + p * 16 + cols].copy_from_slice(&acc[..cols]);
        }
    }
}
