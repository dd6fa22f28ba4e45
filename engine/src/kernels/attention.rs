//! Self-attention of one sequence and one head, fused: `QKᵀ`, the softmax and `PV` in one call
//! over that sequence's own tokens (no padding, no mask), with the scores kept in a per-thread
//! buffer that stays in L1 for chat-length turns.
//!
//! Like the other element-wise kernels (`wide.rs`) it is one Rust source compiled for the
//! baseline, AVX2 + FMA and AVX-512, and every build gives the same bits: each output is a chain
//! of correctly rounded fused multiply-adds (`f32::mul_add`, one `vfmadd` per lane where the
//! build has FMA, `fmaf` where it has not) in a fixed order, whatever the register blocking.
//! [`attention_head_ref`] states that order in the plainest form; the tests hold the kernel to
//! it bit for bit.
//!
//! The kernel is written for the compiler to keep its accumulators in registers: `QKᵀ` runs over
//! a transposed copy of `K` (`d × l`, padded to 16 columns with zeros) in blocks of 4 query rows
//! × 16 keys; `PV` in blocks of 4 query rows × 32 head dimensions.

use crate::kernels::wide::{exp, multiversion};

/// Query rows per block in both products.
const R: usize = 4;
/// Head dimensions per block in `PV` (all-MiniLM-L6-v2: d = 32, one block).
const DB: usize = 32;

/// Scratch floats [`attention_head`] needs for a sequence of `l` tokens and head width `d`:
/// the transposed keys, then the probabilities.
pub fn scratch_len(l: usize, d: usize) -> usize {
    let lp = l.div_ceil(16) * 16;
    d * lp + l * lp
}

/// Attention of one head over one sequence of `l` tokens: row `i` of `q`, `k`, `v` and `out` is
/// at `i · stride`, `d` values long (the head's slice of the hidden state).
/// `out[i] = Σⱼ softmax(scale · q[i]·k[j])ⱼ · v[j]`; the operations and their order are
/// [`attention_head_ref`]'s. Runs the AVX-512 kernel when the process's tier allows it, else
/// [`attention_head_generic`] (compiled for AVX2 + FMA or the baseline).
///
/// # Panics
/// If a slice is shorter than its shape or `scratch` than [`scratch_len`].
#[allow(clippy::too_many_arguments)]
pub fn attention_head(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    out: &mut [f32],
    stride: usize,
    l: usize,
    d: usize,
    scale: f32,
    scratch: &mut [f32],
) {
    if l == 0 {
        return;
    }
    check_lengths(q, k, v, out, stride, l, d, scratch);
    #[cfg(target_arch = "x86_64")]
    if crate::kernels::wide::level() == 2 {
        // SAFETY: level 2 means the CPU reports avx512f and fma (and more), which is all
        // `avx512::attention_head` enables; the slice lengths were checked above, which is
        // what its pointer arithmetic relies on.
        unsafe { avx512::attention_head(q, k, v, out, stride, l, d, scale, scratch) };
        return;
    }
    attention_head_generic(q, k, v, out, stride, l, d, scale, scratch)
}

/// The lengths [`attention_head`] needs (`l ≥ 1`): `(l − 1) · stride + d` for the rows,
/// [`scratch_len`] for the scratch. Panics otherwise.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn check_lengths(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    out: &[f32],
    stride: usize,
    l: usize,
    d: usize,
    scratch: &[f32],
) {
    let need = (l - 1) * stride + d;
    assert!(
        q.len() >= need && k.len() >= need && v.len() >= need && out.len() >= need,
        "attention_head: a slice is shorter than {l} rows of stride {stride}"
    );
    assert!(scratch.len() >= scratch_len(l, d), "attention_head: scratch too short");
}

multiversion! {
/// The portable form of [`attention_head`], with the same operations in the same order.
///
/// Each score is `q[i][0]·k[j][0]`, then `+ q[i][t]·k[j][t]` for `t = 1 … d−1`, each step one
/// fused multiply-add; the softmax is [`softmax_row`]'s; each output value is the fused
/// multiply-add chain over `j = 0 … l−1` of `p[i][j] · v[j][t]`.
///
/// # Panics
/// If a slice is shorter than its shape or `scratch` than [`scratch_len`].
pub fn attention_head_generic(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    out: &mut [f32],
    stride: usize,
    l: usize,
    d: usize,
    scale: f32,
    scratch: &mut [f32],
) {
    if l == 0 {
        return;
    }
    check_lengths(q, k, v, out, stride, l, d, scratch);
    let lp = l.div_ceil(16) * 16;
    let (kt, p) = scratch.split_at_mut(d * lp);
    let p = &mut p[..l * lp];
    transpose_keys(k, stride, l, d, lp, kt);
    // Scores: blocks of R query rows × 16 keys, accumulated over the d head dimensions.
    let mut i = 0;
    while i + R <= l {
        for c in (0..lp).step_by(16) {
            let mut acc = [[0f32; 16]; R];
            for t in 0..d {
                let kv: &[f32; 16] = kt[t * lp + c..t * lp + c + 16].try_into().unwrap();
                for r in 0..R {
                    let qv = q[(i + r) * stride + t];
                    for x in 0..16 {
                        acc[r][x] = qv.mul_add(kv[x], acc[r][x]);
                    }
                }
            }
            for r in 0..R {
                p[(i + r) * lp + c..(i + r) * lp + c + 16].copy_from_slice(&acc[r]);
            }
        }
        i += R;
    }
    for i in i..l {
        for c in (0..lp).step_by(16) {
            let mut acc = [0f32; 16];
            for t in 0..d {
                let qv = q[i * stride + t];
                let kv = &kt[t * lp + c..t * lp + c + 16];
                for x in 0..16 {
                    acc[x] = qv.mul_add(kv[x], acc[x]);
                }
            }
            p[i * lp + c..i * lp + c + 16].copy_from_slice(&acc);
        }
    }
    for row in p.chunks_exact_mut(lp) {
        softmax_row(row, l, scale);
    }
    // Outputs: blocks of R query rows × DB head dimensions, accumulated over the l keys.
    let mut i = 0;
    while i + R <= l {
        let mut t0 = 0;
        while t0 + DB <= d {
            let mut acc = [[0f32; DB]; R];
            for j in 0..l {
                let vv: &[f32; DB] = v[j * stride + t0..j * stride + t0 + DB].try_into().unwrap();
                for r in 0..R {
                    let pv = p[(i + r) * lp + j];
                    for x in 0..DB {
                        acc[r][x] = pv.mul_add(vv[x], acc[r][x]);
                    }
                }
            }
            for r in 0..R {
                out[(i + r) * stride + t0..(i + r) * stride + t0 + DB].copy_from_slice(&acc[r]);
            }
            t0 += DB;
        }
        for r in 0..R {
            pv_tail(p, v, out, stride, lp, l, i + r, t0, d);
        }
        i += R;
    }
    for i in i..l {
        pv_tail(p, v, out, stride, lp, l, i, 0, d);
    }
}
}

/// `kt[t · lp + j] = k[j · stride + t]` for `j < l`, `t < d`; columns `l..lp` zero. Plain code
/// for the portable form, kept out of the AVX-512 build, where the compiler would turn it into
/// gathers or scatters (slower than scalar moves on the CPUs measured here); the AVX-512 kernel
/// transposes 16 × 16 blocks in registers instead (`avx512::transpose_keys16`).
#[inline(never)]
fn transpose_keys(k: &[f32], stride: usize, l: usize, d: usize, lp: usize, kt: &mut [f32]) {
    for t in 0..d {
        let row = &mut kt[t * lp..(t + 1) * lp];
        for (j, x) in row[..l].iter_mut().enumerate() {
            *x = k[j * stride + t];
        }
        row[l..].fill(0.0);
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    /// [`super::transpose_keys`] (`kt[t · lp + j] = k[j · stride + t]`, keys from `l` on zero)
    /// in blocks of 16 keys × 16 head dimensions, each transposed in registers: 16 masked row
    /// loads, 64 shuffles, up to 16 stores, instead of one scalar move per value. Pure data
    /// movement, so the scores are the same bits (tested with the kernel).
    ///
    /// # Safety
    /// avx512f; `k.len() ≥ (l − 1) · stride + d`, `kt.len() ≥ d · lp`, `lp` a multiple of 16,
    /// `l ≤ lp`.
    #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")]
    unsafe fn transpose_keys16(
        k: &[f32],
        stride: usize,
        l: usize,
        d: usize,
        lp: usize,
        kt: &mut [f32],
    ) {
        debug_assert!(l >= 1 && k.len() >= (l - 1) * stride + d && kt.len() >= d * lp);
        let (kp, ktp) = (k.as_ptr(), kt.as_mut_ptr());
        for tb in (0..d).step_by(16) {
            let m = lanes(d, tb);
            for jb in (0..lp).step_by(16) {
                let mut r = [_mm512_setzero_ps(); 16];
                for (x, rx) in r.iter_mut().enumerate() {
                    if jb + x < l {
                        // SAFETY: row jb + x < l; the mask enables dimensions tb..min(tb + 16,
                        // d) only, inside that row's d values, inside k (caller).
                        *rx = unsafe { _mm512_maskz_loadu_ps(m, kp.add((jb + x) * stride + tb)) };
                    }
                }
                let o = transpose16(r);
                for (t, ot) in o.iter().enumerate().take(d.saturating_sub(tb).min(16)) {
                    // SAFETY: row tb + t < d of kt, lanes jb..jb + 16 ≤ lp: inside d·lp.
                    unsafe { _mm512_storeu_ps(ktp.add((tb + t) * lp + jb), *ot) };
                }
            }
        }
    }

    /// The transpose of 16 rows of 16 floats: `out[t]` lane `x` is `r[x]` lane `t`.
    #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")]
    #[inline]
    fn transpose16(r: [__m512; 16]) -> [__m512; 16] {
        // Pairs of rows interleaved, then pairs of pairs (64-bit lanes), then 128-bit blocks
        // twice: rows of 16 become columns.
        let mut t = [_mm512_setzero_ps(); 16];
        for i in 0..8 {
            t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
            t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
        }
        let mut u = [_mm512_setzero_ps(); 16];
        for i in 0..4 {
            let b = 4 * i;
            u[b] = _mm512_shuffle_ps::<0x44>(t[b], t[b + 2]);
            u[b + 1] = _mm512_shuffle_ps::<0xEE>(t[b], t[b + 2]);
            u[b + 2] = _mm512_shuffle_ps::<0x44>(t[b + 1], t[b + 3]);
            u[b + 3] = _mm512_shuffle_ps::<0xEE>(t[b + 1], t[b + 3]);
        }
        for h in 0..2 {
            let b = 8 * h;
            for i in 0..4 {
                t[b + i] = _mm512_shuffle_f32x4::<0x88>(u[b + i], u[b + 4 + i]);
                t[b + 4 + i] = _mm512_shuffle_f32x4::<0xDD>(u[b + i], u[b + 4 + i]);
            }
        }
        let mut o = [_mm512_setzero_ps(); 16];
        for i in 0..8 {
            o[i] = _mm512_shuffle_f32x4::<0x88>(t[i], t[8 + i]);
            o[8 + i] = _mm512_shuffle_f32x4::<0xDD>(t[i], t[8 + i]);
        }
        o
    }

    /// Lanes `from..from + 16` of a width-`d` row, as a mask (0 when `from ≥ d`).
    #[inline(always)]
    fn lanes(d: usize, from: usize) -> __mmask16 {
        let n = d.saturating_sub(from).min(16);
        ((1u32 << n) - 1) as __mmask16
    }

    /// Scores of query rows `i..i + R` against all keys: R accumulators of 16 keys, chained
    /// over the `d` head dimensions.
    ///
    /// # Safety
    /// avx512f and fma; `q` holds rows `i..i + R` (`d` floats at `row · stride`), `kt` is
    /// `d × lp`, `p` holds rows `i..i + R` of `lp` floats; `lp` is a multiple of 16.
    #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")]
    #[inline]
    unsafe fn qk_rows<const R: usize>(
        q: *const f32,
        kt: *const f32,
        p: *mut f32,
        stride: usize,
        lp: usize,
        d: usize,
        i: usize,
    ) {
        for c in (0..lp).step_by(16) {
            let mut acc = [_mm512_setzero_ps(); R];
            for t in 0..d {
                // SAFETY: t < d, c + 16 ≤ lp: inside kt; (i + r)·stride + t inside q (caller).
                unsafe {
                    let kv = _mm512_loadu_ps(kt.add(t * lp + c));
                    for (r, a) in acc.iter_mut().enumerate() {
                        let qv = _mm512_set1_ps(*q.add((i + r) * stride + t));
                        *a = _mm512_fmadd_ps(qv, kv, *a);
                    }
                }
            }
            for (r, a) in acc.iter().enumerate() {
                // SAFETY: row i + r, columns c..c + 16 ≤ lp: inside p (caller).
                unsafe { _mm512_storeu_ps(p.add((i + r) * lp + c), *a) };
            }
        }
    }

    /// Outputs of query rows `i..i + R`: 2 × R accumulators of 16 head dimensions (masked at
    /// the end of the head), chained over the `l` keys.
    ///
    /// # Safety
    /// avx512f and fma; `p` holds rows `i..i + R` of `lp ≥ l` floats; `v` holds `l` rows of
    /// `d` floats at `row · stride`; `out` holds rows `i..i + R` likewise.
    #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")]
    #[inline]
    #[allow(clippy::too_many_arguments)]
    unsafe fn pv_rows<const R: usize>(
        p: *const f32,
        v: *const f32,
        out: *mut f32,
        stride: usize,
        lp: usize,
        l: usize,
        d: usize,
        i: usize,
    ) {
        for t0 in (0..d).step_by(32) {
            let (m0, m1) = (lanes(d, t0), lanes(d, t0 + 16));
            let mut a0 = [_mm512_setzero_ps(); R];
            let mut a1 = [_mm512_setzero_ps(); R];
            for j in 0..l {
                // SAFETY: j < l; the masks select only lanes t0 + x < d, so every float read is
                // at j·stride + t with t < d, inside v (masked-off lanes are not accessed; the
                // second half's address, past the end when m1 is empty, is formed with
                // wrapping_add and never read unmasked); p[(i + r)·lp + j] is inside p.
                unsafe {
                    let v0 = _mm512_maskz_loadu_ps(m0, v.add(j * stride + t0));
                    let v1 = _mm512_maskz_loadu_ps(m1, v.wrapping_add(j * stride + t0 + 16));
                    for r in 0..R {
                        let pv = _mm512_set1_ps(*p.add((i + r) * lp + j));
                        a0[r] = _mm512_fmadd_ps(pv, v0, a0[r]);
                        a1[r] = _mm512_fmadd_ps(pv, v1, a1[r]);
                    }
                }
            }
            for r in 0..R {
                // SAFETY: as the loads: only lanes t0 + x < d of row i + r are written.
                unsafe {
                    _mm512_mask_storeu_ps(out.add((i + r) * stride + t0), m0, a0[r]);
                    _mm512_mask_storeu_ps(out.wrapping_add((i + r) * stride + t0 + 16), m1, a1[r]);
                }
            }
        }
    }

    /// `v.clamp(lo, hi)` as Rust computes it (NaN stays NaN): `vminps`/`vmaxps` return their
    /// second operand when one is NaN, so the input goes second.
    #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")]
    #[inline]
    fn clamp(v: __m512, lo: f32, hi: f32) -> __m512 {
        _mm512_max_ps(_mm512_set1_ps(lo), _mm512_min_ps(_mm512_set1_ps(hi), v))
    }

    /// [`crate::kernels::wide::round_even`], 16 lanes: the same additions, the same selection.
    #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")]
    #[inline]
    fn round_even(v: __m512) -> __m512 {
        let magic = _mm512_set1_ps(crate::kernels::wide::MAGIC);
        let r = _mm512_sub_ps(_mm512_add_ps(v, magic), magic);
        let small = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(_mm512_abs_ps(v), _mm512_set1_ps(4_194_304.0));
        _mm512_mask_blend_ps(small, v, r)
    }

    /// [`crate::kernels::wide::exp`], 16 lanes: the same operations in the same order (separate
    /// multiplies and adds, no FMA), so the same bits.
    #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")]
    #[inline]
    fn exp(x: __m512) -> __m512 {
        let (mul, add, sub, set) = (_mm512_mul_ps, _mm512_add_ps, _mm512_sub_ps, _mm512_set1_ps);
        let x = clamp(x, -87.3, 88.3);
        let n = round_even(mul(x, set(std::f32::consts::LOG2_E)));
        let r = sub(sub(x, mul(n, set(0.693_359_4))), mul(n, set(-2.121_944_4e-4)));
        let z = mul(r, r);
        let mut p = add(mul(set(1.987_569_1e-4), r), set(1.398_2e-3));
        p = add(mul(p, r), set(8.333_452e-3));
        p = add(mul(p, r), set(4.166_579_6e-2));
        p = add(mul(p, r), set(1.666_666_5e-1));
        p = add(mul(p, r), set(0.5)); // Cephes' 5.0000001e-1, 0.5 in f32
        p = add(add(mul(p, z), r), set(1.0));
        let n = clamp(n, -126.0, 127.0);
        let e = add(add(n, set(127.0)), set(crate::kernels::wide::MAGIC));
        let e = _mm512_sub_epi32(_mm512_castps_si512(e), _mm512_set1_epi32(0x4B40_0000));
        mul(p, _mm512_castsi512_ps(_mm512_slli_epi32::<23>(e)))
    }

    /// [`super::softmax_row`] of `N` rows, 16 lanes: the maximum over the valid lanes (exact in any order;
    /// NaN skipped as there), the same exponentials, the lane sums in the same chunk order and
    /// the same pairwise reduction (8, 4, 2, 1 apart), so the same bits.
    ///
    /// # Safety
    /// avx512f, avx512dq, fma; `rp` points at `N` rows of `lp` floats, `lp` a multiple of 16
    /// and `l ≤ lp`.
    #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")]
    #[inline]
    unsafe fn softmax_rows<const N: usize>(rp: *mut f32, lp: usize, l: usize, scale: f32) {
        // N rows side by side, phase by phase, so their dependency chains overlap; each row's
        // operations are exactly those of one row alone.
        let chunks = lp / 16;
        let valid = |c: usize| lanes(l, c * 16);
        let mut mx = [_mm512_set1_ps(f32::NEG_INFINITY); N];
        for c in 0..chunks {
            for (r, m) in mx.iter_mut().enumerate() {
                // SAFETY: row r < N, c·16 + 16 ≤ lp: inside the N rows (caller).
                let v = unsafe { _mm512_loadu_ps(rp.add(r * lp + c * 16)) };
                *m = _mm512_mask_max_ps(*m, valid(c), v, *m);
            }
        }
        let sv = _mm512_set1_ps(scale);
        let mv: [__m512; N] =
            std::array::from_fn(|r| _mm512_set1_ps(_mm512_reduce_max_ps(mx[r]) * scale));
        let mut sum = [_mm512_setzero_ps(); N];
        for c in 0..chunks {
            for r in 0..N {
                // SAFETY: as above.
                unsafe {
                    let p = rp.add(r * lp + c * 16);
                    let v = _mm512_loadu_ps(p);
                    let e = _mm512_maskz_mov_ps(
                        valid(c),
                        exp(_mm512_sub_ps(_mm512_mul_ps(v, sv), mv[r])),
                    );
                    _mm512_storeu_ps(p, e);
                    sum[r] = _mm512_add_ps(sum[r], e);
                }
            }
        }
        for (r, sum) in sum.iter().enumerate() {
            let s8 = _mm256_add_ps(_mm512_castps512_ps256(*sum), _mm512_extractf32x8_ps::<1>(*sum));
            let s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps::<1>(s8));
            let s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
            let s1 = _mm_add_ss(s2, _mm_shuffle_ps::<1>(s2, s2));
            let inv = _mm512_set1_ps(1.0 / _mm_cvtss_f32(s1));
            for c in 0..chunks {
                // SAFETY: as above.
                unsafe {
                    let p = rp.add(r * lp + c * 16);
                    _mm512_storeu_ps(p, _mm512_mul_ps(_mm512_loadu_ps(p), inv));
                }
            }
        }
    }

    /// [`super::attention_head`] with AVX-512: the same fused multiply-add chains, 16 lanes at
    /// a time (blocks of 8 query rows × 16 keys for the scores, 4 rows × 32 head dimensions for
    /// the outputs, the rows left over as one smaller block); the softmax is
    /// [`super::softmax_row`]'s, 16 lanes wide, 4 rows at a time.
    ///
    /// # Safety
    /// The CPU must support avx512f and fma, and the slices must be as long as
    /// [`super::attention_head`] checks: `(l − 1) · stride + d` for `q`, `k`, `v`, `out`, and
    /// [`super::scratch_len`]`(l, d)` for `scratch`; `l ≥ 1`.
    #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn attention_head(
        q: &[f32],
        k: &[f32],
        v: &[f32],
        out: &mut [f32],
        stride: usize,
        l: usize,
        d: usize,
        scale: f32,
        scratch: &mut [f32],
    ) {
        let lp = l.div_ceil(16) * 16;
        let (kt, p) = scratch.split_at_mut(d * lp);
        let p = &mut p[..l * lp];
        // SAFETY: this function's features; k holds (l − 1)·stride + d floats and kt d·lp
        // (the caller's lengths).
        unsafe { transpose_keys16(k, stride, l, d, lp, kt) };
        let (qp, ktp, pp) = (q.as_ptr(), kt.as_ptr(), p.as_mut_ptr());
        let mut i = 0;
        // SAFETY (all calls): rows i..i + R with i + R ≤ l are inside q and p, whose lengths
        // the caller guarantees; kt is d × lp. The rows left after the blocks of 8 run as one
        // block of their own size, so no accumulator chain runs alone.
        while i + 8 <= l {
            // SAFETY: the "all calls" argument above.
            unsafe { qk_rows::<8>(qp, ktp, pp, stride, lp, d, i) };
            i += 8;
        }
        // SAFETY: the "all calls" argument above.
        unsafe {
            match l - i {
                0 => {}
                1 => qk_rows::<1>(qp, ktp, pp, stride, lp, d, i),
                2 => qk_rows::<2>(qp, ktp, pp, stride, lp, d, i),
                3 => qk_rows::<3>(qp, ktp, pp, stride, lp, d, i),
                4 => qk_rows::<4>(qp, ktp, pp, stride, lp, d, i),
                5 => qk_rows::<5>(qp, ktp, pp, stride, lp, d, i),
                6 => qk_rows::<6>(qp, ktp, pp, stride, lp, d, i),
                _ => qk_rows::<7>(qp, ktp, pp, stride, lp, d, i),
            }
        }
        // SAFETY (all calls): this function's features; rows i..i + N < l of p, each lp long,
        // a multiple of 16, and l ≤ lp.
        let mut i = 0;
        while i + 4 <= l {
            // SAFETY: the "all calls" argument above.
            unsafe { softmax_rows::<4>(pp.add(i * lp), lp, l, scale) };
            i += 4;
        }
        while i < l {
            // SAFETY: the "all calls" argument above.
            unsafe { softmax_rows::<1>(pp.add(i * lp), lp, l, scale) };
            i += 1;
        }
        let (pp, vp, op) = (p.as_ptr(), v.as_ptr(), out.as_mut_ptr());
        let mut i = 0;
        // SAFETY (all calls): as above, for p, v and out.
        while i + 4 <= l {
            // SAFETY: the "all calls" argument above.
            unsafe { pv_rows::<4>(pp, vp, op, stride, lp, l, d, i) };
            i += 4;
        }
        // SAFETY: the "all calls" argument above.
        unsafe {
            match l - i {
                0 => {}
                1 => pv_rows::<1>(pp, vp, op, stride, lp, l, d, i),
                2 => pv_rows::<2>(pp, vp, op, stride, lp, l, d, i),
                _ => pv_rows::<3>(pp, vp, op, stride, lp, l, d, i),
            }
        }
    }
}

/// Outputs `t0..d` of row `i`, one at a time (the same chains as the blocked loop).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn pv_tail(
    p: &[f32],
    v: &[f32],
    out: &mut [f32],
    stride: usize,
    lp: usize,
    l: usize,
    i: usize,
    t0: usize,
    d: usize,
) {
    for t in t0..d {
        let mut acc = 0f32;
        for j in 0..l {
            acc = p[i * lp + j].mul_add(v[j * stride + t], acc);
        }
        out[i * stride + t] = acc;
    }
}

/// Softmax of `row[..l]` after multiplying by `scale > 0`, in place; `row` is a multiple of 16
/// long and its entries from `l` on are set to 0. The maximum and the sum run over 16 lanes
/// (lane `x` takes entries `x, x + 16, …`) and are then reduced pairwise (8, 4, 2, 1 apart).
#[inline(always)]
pub fn softmax_row(row: &mut [f32], l: usize, scale: f32) {
    let mut mx = [f32::NEG_INFINITY; 16];
    for (c, ch) in row.chunks_exact(16).enumerate() {
        for x in 0..16 {
            let keep = c * 16 + x < l && ch[x] > mx[x];
            mx[x] = if keep { ch[x] } else { mx[x] };
        }
    }
    let max = tree16(mx, |a, b| if b > a { b } else { a }) * scale;
    let mut sum = [0f32; 16];
    for (c, ch) in row.chunks_exact_mut(16).enumerate() {
        for x in 0..16 {
            let e = exp(ch[x] * scale - max);
            ch[x] = if c * 16 + x < l { e } else { 0.0 };
            sum[x] += ch[x];
        }
    }
    let inv = 1.0 / tree16(sum, |a, b| a + b);
    for v in row.iter_mut() {
        *v *= inv;
    }
}

/// Reduces 16 lanes pairwise (8, 4, 2, 1 apart).
#[inline(always)]
fn tree16(mut a: [f32; 16], f: impl Fn(f32, f32) -> f32) -> f32 {
    for w in [8, 4, 2, 1] {
        for t in 0..w {
            a[t] = f(a[t], a[t + w]);
        }
    }
    a[0]
}

/// The specification of [`attention_head`], written as plainly as possible: the same
/// operations in the same order, no blocking, no transposed copy.
#[allow(clippy::too_many_arguments)]
pub fn attention_head_ref(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    out: &mut [f32],
    stride: usize,
    l: usize,
    d: usize,
    scale: f32,
) {
    let lp = l.div_ceil(16) * 16;
    let mut row = vec![0f32; lp];
    for i in 0..l {
        row.fill(0.0);
        for (j, s) in row[..l].iter_mut().enumerate() {
            let mut acc = 0f32;
            for t in 0..d {
                acc = q[i * stride + t].mul_add(k[j * stride + t], acc);
            }
            *s = acc;
        }
        softmax_row(&mut row, l, scale);
        for t in 0..d {
            let mut acc = 0f32;
            for j in 0..l {
                acc = row[j].mul_add(v[j * stride + t], acc);
            }
            out[i * stride + t] = acc;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rng(seed: &mut u64) -> f32 {
        *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((*seed >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    /// Every length from 1 to 70 (tails of the 4-row blocks and the 16-key chunks), head widths
    /// around the 32-wide block, strides wider than the head, large and tiny magnitudes.
    #[test]
    fn equals_the_specification_bit_for_bit() {
        let mut seed = 7u64;
        for &(d, stride) in &[(32, 384), (32, 32), (1, 3), (31, 40), (33, 33), (64, 100), (7, 7)] {
            for l in 1..=70 {
                for &mag in &[1.0f32, 30.0, 1e-6] {
                    let n = (l - 1) * stride + d;
                    let mk = |s: &mut u64| (0..n).map(|_| rng(s) * mag).collect::<Vec<f32>>();
                    let (q, k, v) = (mk(&mut seed), mk(&mut seed), mk(&mut seed));
                    let mut got = vec![f32::NAN; n];
                    let mut want = vec![f32::NAN; n];
                    let mut scratch = vec![f32::NAN; scratch_len(l, d)];
                    let scale = 1.0 / (d as f32).sqrt();
                    attention_head(&q, &k, &v, &mut got, stride, l, d, scale, &mut scratch);
                    attention_head_ref(&q, &k, &v, &mut want, stride, l, d, scale);
                    for i in 0..l {
                        for t in 0..d {
                            let (g, w) = (got[i * stride + t], want[i * stride + t]);
                            assert_eq!(
                                g.to_bits(),
                                w.to_bits(),
                                "d {d} l {l} mag {mag} [{i}][{t}]"
                            );
                        }
                    }
                }
            }
        }
    }

    /// Against a plain f64 attention: the probabilities sum to 1 and the outputs are close.
    #[test]
    fn close_to_f64_attention() {
        let mut seed = 3u64;
        let (l, d) = (46, 32);
        let n = l * d;
        let mk = |s: &mut u64| (0..n).map(|_| rng(s) * 3.0).collect::<Vec<f32>>();
        let (q, k, v) = (mk(&mut seed), mk(&mut seed), mk(&mut seed));
        let mut got = vec![0f32; n];
        let mut scratch = vec![0f32; scratch_len(l, d)];
        let scale = 1.0 / (d as f32).sqrt();
        attention_head(&q, &k, &v, &mut got, d, l, d, scale, &mut scratch);
        for i in 0..l {
            let s: Vec<f64> = (0..l)
                .map(|j| (0..d).map(|t| q[i * d + t] as f64 * k[j * d + t] as f64).sum::<f64>())
                .map(|x| x * scale as f64)
                .collect();
            let mx = s.iter().cloned().fold(f64::MIN, f64::max);
            let e: Vec<f64> = s.iter().map(|x| (x - mx).exp()).collect();
            let z: f64 = e.iter().sum();
            for t in 0..d {
                let want: f64 = (0..l).map(|j| e[j] / z * v[j * d + t] as f64).sum();
                let g = got[i * d + t] as f64;
                assert!((g - want).abs() <= 1e-5, "[{i}][{t}] {g} vs {want}");
            }
        }
    }
}
