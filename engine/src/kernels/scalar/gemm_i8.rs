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

/// The scalar tier: the same result, reading `B` in its packed layout.
pub fn gemm_u8i8_i32(a: &[u8], m: usize, k: usize, b: &PackedB<'_>, c: &mut [i32]) {
    let n = b.n();
    for i in 0..m {
        for j in 0..n {
            let mut acc = 0i32;
            for l in 0..k {
                acc += a[i * k + l] as i32 * b.get(j, l) as i32;
            }
            c[i * n + j] = acc;
        }
    }
}
