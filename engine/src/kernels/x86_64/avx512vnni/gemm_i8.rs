//! int8 matrix multiply with AVX-512 VNNI: `vpdpbusd` (u8 × i8, four products summed into each
//! i32 lane).
//!
//! Tile: `MR = 4` rows of `A` × one 16-channel panel of `B`. `B` is packed (see
//! [`crate::kernels::PackedB`]) so that one 64-byte load holds 4 consecutive k-bytes for each of
//! 16 output channels, exactly the operand `vpdpbusd` wants; each row of `A` contributes its 4
//! k-bytes as a broadcast i32. Accumulators: 4 zmm registers of 16 i32 lanes, one per row.
//! Overflow: as the scalar specification, `k ≤ 65 793`. The `k % 4` tail of `A` is read through a
//! zero-padded copy; `B` is zero-padded by the packing; the `n % 16` tail is stored with a mask.
//! Must equal `scalar::gemm_i8::gemm_u8i8_i32_ref` bit for bit.

use crate::kernels::PackedB;
use std::arch::x86_64::*;

const MR: usize = 4;

/// Four k-bytes of row `i` of `A` at group `g`, as a little-endian i32 (zero-padded at the tail).
#[inline(always)]
fn a_group(a: &[u8], k: usize, i: usize, g: usize) -> i32 {
    let row = &a[i * k..(i + 1) * k];
    let s = g * 4;
    if s + 4 <= k {
        i32::from_le_bytes([row[s], row[s + 1], row[s + 2], row[s + 3]])
    } else {
        let mut b = [0u8; 4];
        b[..k - s].copy_from_slice(&row[s..]);
        i32::from_le_bytes(b)
    }
}

/// # Safety
/// The CPU must support avx512f, avx512bw and avx512vnni; `a.len() >= m·k`, `c.len() >= m·n`
/// with `n = b.n()`, and `k == b.k()`.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
pub unsafe fn gemm(a: &[u8], m: usize, k: usize, b: &PackedB, c: &mut [i32]) {
    let n = b.n();
    let groups = b.groups();
    let data = b.data();
    for p in 0..b.panels() {
        let cols = (n - p * 16).min(16);
        let mask: __mmask16 = if cols == 16 { 0xFFFF } else { (1u16 << cols) - 1 };
        let panel = &data[p * groups * 64..(p + 1) * groups * 64];
        let mut i = 0;
        while i < m {
            let rows = (m - i).min(MR);
            let mut acc = [_mm512_setzero_si512(); MR];
            for g in 0..groups {
                // SAFETY: `panel` holds `groups` blocks of 64 bytes; block g is in bounds.
                let bv = unsafe { _mm512_loadu_si512(panel.as_ptr().add(g * 64).cast()) };
                for (r, accr) in acc.iter_mut().enumerate().take(rows) {
                    let av = _mm512_set1_epi32(a_group(a, k, i + r, g));
                    *accr = _mm512_dpbusd_epi32(*accr, av, bv);
                }
            }
            for (r, accr) in acc.iter().enumerate().take(rows) {
                let dst = &mut c[(i + r) * n + p * 16..(i + r) * n + p * 16 + cols];
                // SAFETY: the mask enables exactly `cols` lanes, and `dst` has `cols` elements.
                unsafe { _mm512_mask_storeu_epi32(dst.as_mut_ptr(), mask, *accr) };
            }
            i += rows;
        }
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
