//! int8 matrix multiply with AVX-512 VNNI: `vpdpbusd` (u8 × i8, four products summed into each
//! i32 lane).
//!
//! Register tile: up to `MR = 8` rows of `A` × `NR = 2` panels of 16 output channels, so 16 zmm
//! accumulators of 16 i32 lanes. `B` is packed (see [`crate::kernels::PackedB`]) so that one
//! 64-byte load holds 4 consecutive k-bytes for each of 16 channels, exactly the operand
//! `vpdpbusd` wants; each row of `A` contributes its 4 k-bytes as an i32 broadcast from memory.
//! Per group of 4 k: `NR` loads, `MR` broadcasts, `MR·NR` `vpdpbusd`. `A` is copied once into rows
//! padded to a multiple of 4 bytes (zeros, which add nothing) when `k % 4 != 0`; `B` is zero-padded
//! by the packing; the `n % 16` tail is stored with a mask.
//! Overflow: as the scalar specification, `k ≤ 65 793`.
//! Must equal `scalar::gemm_i8::gemm_u8i8_i32_ref` bit for bit (tested in `kernels/tests.rs`).

use crate::kernels::PackedB;
use std::arch::x86_64::*;

const MR: usize = 8;
const NR: usize = 2;

/// One register tile: rows `0..R` of `ap` (row stride `kp` bytes, `groups · 4 == kp`) times
/// panels `0..N` starting at `bp` (panel stride `pstride` bytes), into `c` (row stride `ldc`);
/// the last panel stores `last_cols` lanes.
///
/// # Safety
/// The CPU must support the enabled features; `ap` must be valid for `R · kp` bytes, `bp` for
/// `(N − 1) · pstride + groups · 64` bytes, and `c` for writes of `(R − 1) · ldc + (N − 1) · 16 +
/// last_cols` i32, with `last_cols ≤ 16`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
#[allow(clippy::too_many_arguments)]
unsafe fn tile<const R: usize, const N: usize>(
    ap: *const u8,
    kp: usize,
    groups: usize,
    bp: *const i8,
    pstride: usize,
    c: *mut i32,
    ldc: usize,
    last_cols: usize,
) {
    let mut acc = [[_mm512_setzero_si512(); N]; R];
    for g in 0..groups {
        let mut b = [_mm512_setzero_si512(); N];
        for (j, bj) in b.iter_mut().enumerate() {
            // SAFETY: j < N and g < groups, so the 64 bytes lie within the caller's `bp` range.
            *bj = unsafe { _mm512_loadu_si512(bp.add(j * pstride + g * 64).cast()) };
        }
        for (r, accr) in acc.iter_mut().enumerate() {
            // SAFETY: r < R and g·4 + 4 ≤ kp, inside the caller's `ap` range; unaligned read.
            let a4 = unsafe { ap.add(r * kp + g * 4).cast::<i32>().read_unaligned() };
            let av = _mm512_set1_epi32(a4);
            for (x, bj) in accr.iter_mut().zip(&b) {
                *x = _mm512_dpbusd_epi32(*x, av, *bj);
            }
        }
    }
    for (r, accr) in acc.iter().enumerate() {
        for (j, x) in accr.iter().enumerate() {
            let cols = if j + 1 == N { last_cols } else { 16 };
            let mask: __mmask16 = if cols >= 16 { 0xFFFF } else { (1u16 << cols) - 1 };
            // SAFETY: the mask enables `cols` lanes starting at row r, column 16·j: inside the
            // caller's `c` range.
            unsafe { _mm512_mask_storeu_epi32(c.add(r * ldc + j * 16), mask, *x) };
        }
    }
}

/// # Safety
/// The CPU must support avx512f, avx512bw and avx512vnni; `a.len() >= m·k`, `c.len() >= m·n`
/// with `n = b.n()`, and `k == b.k()`.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
pub unsafe fn gemm(a: &[u8], m: usize, k: usize, b: &PackedB<'_>, c: &mut [i32]) {
    let n = b.n();
    let groups = b.groups();
    let kp = groups * 4;
    if m == 0 || n == 0 {
        return;
    }
    // Rows padded to kp bytes (zeros add nothing to the dot products).
    let padded = crate::kernels::pad_rows(a, m, k, kp);
    let pstride = groups * 64;
    let panels = b.panels();
    let data = b.data();
    debug_assert!(data.len() == panels * pstride && c.len() >= m * n);
    let mut p = 0;
    while p < panels {
        let np = (panels - p).min(NR);
        let last_cols = (n - (p + np - 1) * 16).min(16);
        let mut i = 0;
        while i < m {
            let rows = (m - i).min(MR);
            // SAFETY (for every arm): rows i..i+rows < m and panels p..p+np < panels, so `ap`
            // covers rows·kp bytes of `padded` (m·kp long), `bp` covers (np − 1)·pstride +
            // groups·64 bytes of `data` (panels·pstride long), and the stores reach at most
            // (i + rows − 1)·n + (p + np − 1)·16 + last_cols ≤ m·n elements of `c`.
            let ap = padded[i * kp..].as_ptr();
            let bp = data[p * pstride..].as_ptr();
            let cp = c[i * n + p * 16..].as_mut_ptr();
            macro_rules! go {
                ($r:literal, $n:literal) => {
                    // SAFETY: $r == rows and $n == np (the match below), so the ranges argued
                    // above are the ones `tile` requires; this fn's own features are `tile`'s.
                    unsafe { tile::<$r, $n>(ap, kp, groups, bp, pstride, cp, n, last_cols) }
                };
            }
            match (rows, np) {
                (8, 2) => go!(8, 2),
                (7, 2) => go!(7, 2),
                (6, 2) => go!(6, 2),
                (5, 2) => go!(5, 2),
                (4, 2) => go!(4, 2),
                (3, 2) => go!(3, 2),
                (2, 2) => go!(2, 2),
                (1, 2) => go!(1, 2),
                (8, _) => go!(8, 1),
                (7, _) => go!(7, 1),
                (6, _) => go!(6, 1),
                (5, _) => go!(5, 1),
                (4, _) => go!(4, 1),
                (3, _) => go!(3, 1),
                (2, _) => go!(2, 1),
                _ => go!(1, 1),
            }
            i += rows;
        }
        p += np;
    }
}

/// The machine's `vpdpbusd` peak: `iters` rounds of 8 independent accumulators (no dependency
/// between consecutive instructions of a round), each instruction 64 multiply-adds. Returns a
/// value derived from the accumulators so the work cannot be optimised away.
///
/// # Safety
/// The CPU must support avx512f, avx512bw and avx512vnni.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
pub unsafe fn peak_loop(iters: u64) -> i32 {
    let a = _mm512_set1_epi32(0x0101_0101);
    let b = _mm512_set1_epi32(0x0102_0304);
    let mut acc = [_mm512_setzero_si512(); 8];
    for _ in 0..iters {
        for x in acc.iter_mut() {
            *x = _mm512_dpbusd_epi32(*x, a, b);
        }
    }
    let mut s = _mm512_setzero_si512();
    for x in acc {
        s = _mm512_add_epi32(s, x);
    }
    _mm512_reduce_add_epi32(s)
}
