//! int8 matrix multiply with AVX2, exact: bytes widened to i16 and multiplied with `vpmaddwd`
//! (i16 × i16, adjacent pairs summed into i32). The faster `vpmaddubsw` (u8 × i8 into i16) is
//! not used: its pair sums saturate (2 · 255 · 127 > 32 767), so it would not equal the
//! specification.
//!
//! Register tile: up to `MR = 4` rows of `A` × 8 output channels (half a packed panel). Per group
//! of 4 k: two 16-byte loads of `B` sign-extended to i16 (4 channels × 4 k each), per row one
//! 4-byte broadcast of `A` zero-extended to i16, and two `vpmaddwd` + two `vpaddd`. Each i32 lane
//! holds one channel's sum over half of the k positions; the halves are added once at the end
//! (`vphaddd`), then the lanes are put in channel order. `A` rows are copied once, padded to a
//! multiple of 4 bytes, when `k % 4 != 0`.
//! Overflow: as the scalar specification, `k ≤ 65 793`.
//! Must equal `scalar::gemm_i8::gemm_u8i8_i32_ref` bit for bit (tested in `kernels/tests.rs`).

use crate::kernels::PackedB;
use std::arch::x86_64::*;

const MR: usize = 4;

/// One tile: rows `0..R` of `ap` (row stride `kp`, `groups · 4 == kp`) times the 8 channels whose
/// packed bytes start at `bp` (group stride 64 bytes), into `c` (row stride `ldc`), storing the
/// first `cols` channels.
///
/// # Safety
/// The CPU must support AVX2; `ap` must be valid for `R · kp` bytes, `bp` for
/// `(groups − 1) · 64 + 32` bytes, `c` for writes of `(R − 1) · ldc + cols` i32, `cols ≤ 8`.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn tile<const R: usize>(
    ap: *const u8,
    kp: usize,
    groups: usize,
    bp: *const i8,
    c: *mut i32,
    ldc: usize,
    cols: usize,
) {
    let mut lo = [_mm256_setzero_si256(); R];
    let mut hi = [_mm256_setzero_si256(); R];
    for g in 0..groups {
        // SAFETY: g < groups, so both 16-byte reads lie within the caller's `bp` range.
        let (b0, b1) = unsafe {
            (
                _mm256_cvtepi8_epi16(_mm_loadu_si128(bp.add(g * 64).cast())),
                _mm256_cvtepi8_epi16(_mm_loadu_si128(bp.add(g * 64 + 16).cast())),
            )
        };
        for r in 0..R {
            // SAFETY: r < R and g·4 + 4 ≤ kp: inside the caller's `ap` range; unaligned read.
            let a4 = unsafe { ap.add(r * kp + g * 4).cast::<i32>().read_unaligned() };
            let av = _mm256_cvtepu8_epi16(_mm_set1_epi32(a4));
            lo[r] = _mm256_add_epi32(lo[r], _mm256_madd_epi16(av, b0));
            hi[r] = _mm256_add_epi32(hi[r], _mm256_madd_epi16(av, b1));
        }
    }
    for r in 0..R {
        // [c0 c1 c4 c5 | c2 c3 c6 c7] → channel order.
        let s = _mm256_permute4x64_epi64(_mm256_hadd_epi32(lo[r], hi[r]), 0b11_01_10_00);
        let mut out = [0i32; 8];
        // SAFETY: `out` is 32 bytes, the size of the store.
        unsafe { _mm256_storeu_si256(out.as_mut_ptr().cast(), s) };
        for (j, &x) in out.iter().enumerate().take(cols) {
            // SAFETY: j < cols: inside the caller's `c` range for row r.
            unsafe { *c.add(r * ldc + j) = x };
        }
    }
}

/// # Safety
/// The CPU must support AVX2; `a.len() >= m·k`, `c.len() >= m·n` with `n = b.n()`, and
/// `k == b.k()`.
#[target_feature(enable = "avx2")]
pub unsafe fn gemm(a: &[u8], m: usize, k: usize, b: &PackedB<'_>, c: &mut [i32]) {
    let n = b.n();
    let groups = b.groups();
    let kp = groups * 4;
    if m == 0 || n == 0 {
        return;
    }
    if groups == 0 {
        c[..m * n].fill(0);
        return;
    }
    let padded = crate::kernels::pad_rows(a, m, k, kp);
    let data = b.data();
    debug_assert!(data.len() == b.panels() * groups * 64 && c.len() >= m * n);
    for half in 0..n.div_ceil(8) {
        let (p, h) = (half / 2, half % 2);
        let cols = (n - half * 8).min(8);
        let mut i = 0;
        while i < m {
            let rows = (m - i).min(MR);
            // SAFETY (every arm): rows i..i+rows ≤ m, so `ap` covers rows·kp bytes of `padded`
            // (m·kp long); `bp` starts at panel p, half h, and reads (groups − 1)·64 + 32 bytes,
            // inside the panel's groups·64; the stores reach (i + rows − 1)·n + half·8 + cols ≤
            // m·n elements of `c`. This fn's feature is `tile`'s.
            let ap = padded[i * kp..].as_ptr();
            let bp = data[p * groups * 64 + h * 32..].as_ptr();
            let cp = c[i * n + half * 8..].as_mut_ptr();
            match rows {
                // SAFETY: rows == the tile's rows; the ranges argued above.
                4 => unsafe { tile::<4>(ap, kp, groups, bp, cp, n, cols) },
                // SAFETY: rows == the tile's rows; the ranges argued above.
                3 => unsafe { tile::<3>(ap, kp, groups, bp, cp, n, cols) },
                // SAFETY: rows == the tile's rows; the ranges argued above.
                2 => unsafe { tile::<2>(ap, kp, groups, bp, cp, n, cols) },
                // SAFETY: rows == the tile's rows; the ranges argued above.
                _ => unsafe { tile::<1>(ap, kp, groups, bp, cp, n, cols) },
            }
            i += rows;
        }
    }
}
