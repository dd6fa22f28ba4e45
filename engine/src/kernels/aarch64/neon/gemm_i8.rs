//! int8 matrix multiply with NEON, exact: bytes widened to i16 and multiplied-accumulated into
//! i32 (`smlal` by a scalar). `vld4q_s8` de-interleaves a packed 64-byte group (16 channels × 4
//! k) into four registers, one per k, each holding the 16 channels' bytes.
//!
//! Register tile: 1 row of `A` × 16 output channels (one packed panel), 4 accumulators of 4 i32.
//! A simple tile: the tier exists so that aarch64 machines run the int8 path exactly; the dot
//! product instructions (`sdot`/`usdot`, optional extensions) are the next step for speed.
//! Overflow: as the scalar specification, `k ≤ 65 793`.
//! Must equal `scalar::gemm_i8::gemm_u8i8_i32_ref` bit for bit (tested in `kernels/tests.rs`).

use crate::kernels::PackedB;
use std::arch::aarch64::*;

/// # Safety
/// The CPU must support NEON; `a.len() >= m·k`, `c.len() >= m·n` with `n = b.n()`, and
/// `k == b.k()`.
#[target_feature(enable = "neon")]
pub unsafe fn gemm(a: &[u8], m: usize, k: usize, b: &PackedB<'_>, c: &mut [i32]) {
    let n = b.n();
    let groups = b.groups();
    let data = b.data();
    assert!(a.len() >= m * k && c.len() >= m * n && data.len() == b.panels() * groups * 64);
    for i in 0..m {
        let row = &a[i * k..(i + 1) * k];
        for p in 0..b.panels() {
            let mut acc = [vdupq_n_s32(0); 4];
            for g in 0..groups {
                // SAFETY: (p·groups + g)·64 + 64 ≤ data.len(): the group lies inside `data`.
                let bt = unsafe { vld4q_s8(data.as_ptr().add((p * groups + g) * 64)) };
                for (t, bk) in [bt.0, bt.1, bt.2, bt.3].into_iter().enumerate() {
                    let l = g * 4 + t;
                    let av = if l < k { row[l] as i16 } else { 0 };
                    let lo = vmovl_s8(vget_low_s8(bk));
                    let hi = vmovl_high_s8(bk);
                    acc[0] = vmlal_n_s16(acc[0], vget_low_s16(lo), av);
                    acc[1] = vmlal_high_n_s16(acc[1], lo, av);
                    acc[2] = vmlal_n_s16(acc[2], vget_low_s16(hi), av);
                    acc[3] = vmlal_high_n_s16(acc[3], hi, av);
                }
            }
            let mut out = [0i32; 16];
            for (q, x) in acc.iter().enumerate() {
                // SAFETY: out has 16 lanes; q·4 + 4 ≤ 16.
                unsafe { vst1q_s32(out.as_mut_ptr().add(q * 4), *x) };
            }
            let cols = (n - p * 16).min(16);
            c[i * n + p * 16..i * n + p * 16 + cols].copy_from_slice(&out[..cols]);
        }
    }
}
