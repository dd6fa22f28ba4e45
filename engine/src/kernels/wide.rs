//! Element-wise work compiled three times: for the baseline of the target, with AVX2 (x86-64
//! tier `avx2`), and with AVX-512 (tier `avx512vnni`), so the compiler vectorizes 4, 8 or 16
//! lanes wide. The builds run the same Rust code: Rust never contracts `a * b + c` into an FMA
//! and the loops use no library calls, so all give the same bits (tested through the CLI,
//! `every_kernel_tier_gives_the_same_scores_bit_for_bit`). `TURNSCORE_ISA=scalar` selects the
//! baseline build.

/// Defines `pub fn $name(args)`: the body compiled for the baseline and for the wide tier,
/// chosen at run time.
macro_rules! multiversion {
    ($(#[$m:meta])* pub fn $name:ident($($arg:ident : $ty:ty),* $(,)?) $body:block) => {
        $(#[$m])*
        #[allow(clippy::too_many_arguments)]
        pub fn $name($($arg: $ty),*) {
            #[inline(always)]
            #[allow(clippy::too_many_arguments)]
            fn body($($arg: $ty),*) $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn wide($($arg: $ty),*) {
                    body($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn avx2($($arg: $ty),*) {
                    body($($arg),*)
                }
                match $crate::kernels::wide::level() {
                    // SAFETY: level 2 only when the CPU reports every feature enabled on `wide`.
                    2 => return unsafe { wide($($arg),*) },
                    // SAFETY: level 1 only when the CPU reports avx2 and fma.
                    1 => return unsafe { avx2($($arg),*) },
                    _ => {}
                }
            }
            body($($arg),*)
        }
    };
}
pub(crate) use multiversion;

/// Which build may run, decided once: 2 (AVX-512) when the process tier is AVX-512 VNNI and the
/// CPU reports every feature that build enables; 1 (AVX2) when the tier is at least AVX2 and
/// the CPU reports avx2 and fma; else 0 (baseline).
pub fn level() -> u8 {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        static LEVEL: std::sync::OnceLock<u8> = std::sync::OnceLock::new();
        *LEVEL.get_or_init(|| {
            let isa = super::Kernels::detect().isa();
            let avx2 = has!("avx2") && has!("fma");
            let avx512 =
                avx2 && has!("avx512f") && has!("avx512bw") && has!("avx512dq") && has!("avx512vl");
            if isa >= super::Isa::Avx512Vnni && avx512 {
                2
            } else if isa >= super::Isa::Avx2 && avx2 {
                1
            } else {
                0
            }
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    0
}

/// 1.5 · 2²³: adding it to a float of magnitude below 2²² rounds it to an integer (ties to
/// even), which then sits in the low mantissa bits.
pub const MAGIC: f32 = 12_582_912.0;

/// Rounds to the nearest integer, ties to even, for `|x| < 2²²` (larger values are returned
/// unchanged, being integers already; NaN and ±∞ pass through). No library call, so it
/// vectorizes on every target.
#[inline(always)]
pub fn round_even(x: f32) -> f32 {
    if x.abs() < 4_194_304.0 {
        (x + MAGIC) - MAGIC
    } else {
        x
    }
}

/// `eˣ` without library calls: Cody–Waite reduction by ln 2 and the Cephes degree-6 polynomial;
/// max relative error 2e-7 on `[-87, 88]` (tested). Inputs are clamped to `[-87.3, 88.3]`, so
/// very negative inputs give ~1e-38 instead of 0, and NaN gives NaN.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    let x = x.clamp(-87.3, 88.3);
    let n = round_even(x * std::f32::consts::LOG2_E);
    let r = (x - n * 0.693_359_4) - n * -2.121_944_4e-4;
    let z = r * r;
    let p = (((((1.987_569_1e-4 * r + 1.398_2e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r
        + 1.666_666_5e-1)
        * r
        + 0.5) // Cephes' 5.0000001e-1, which is 0.5 in f32
        * z
        + r
        + 1.0;
    // 2ⁿ from the exponent bits, n ∈ [−126, 127]; the biased exponent n + 127 is read from the
    // mantissa of (n + 127 + 1.5·2²³) rather than by a float-to-int cast, which does not
    // vectorize. NaN gives some exponent here, and the NaN in `p` propagates.
    let n = n.clamp(-126.0, 127.0);
    let e = (n + 127.0 + MAGIC).to_bits().wrapping_sub(0x4B40_0000);
    p * f32::from_bits(e << 23)
}

/// `erf(x)` without library calls: a rational approximation (odd degree-13 numerator, even
/// degree-8 denominator, the one Eigen and XLA use), inputs clamped to `[-4, 4]`; max absolute
/// error against `libm::erff` 4.2e-7 (tested).
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let mut p = x2 * -2.726_142_3e-10 + 2.770_681_4e-8;
    p = x2 * p + -2.101_024e-6;
    p = x2 * p + -5.692_506_4e-5;
    p = x2 * p + -7.349_906_3e-4;
    p = x2 * p + -2.954_6e-3;
    p = x2 * p + -1.609_603_3e-2;
    p *= x;
    let mut q = x2 * -1.456_607_2e-5 + -2.133_740_6e-4;
    q = x2 * q + -1.682_827e-3;
    q = x2 * q + -7.373_329e-3;
    q = x2 * q + -1.426_474e-2;
    p / q
}

/// GELU of one value, erf form (Hugging Face `gelu`): `0.5 · x · (1 + erf(x / √2))`.
#[inline(always)]
pub fn gelu1(v: f32) -> f32 {
    0.5 * v * (1.0 + erf(v * std::f32::consts::FRAC_1_SQRT_2))
}

multiversion! {
    /// [`gelu1`] over a slice, in place.
    pub fn gelu(x: &mut [f32]) {
        for v in x.iter_mut() {
            *v = gelu1(*v);
        }
    }
}

/// LayerNorm of one row, in place: `(x − mean) / √(var + eps) · g + b`, the statistics
/// accumulated in f64 over 8 fixed lanes.
#[inline(always)]
pub fn layer_norm_row(row: &mut [f32], g: &[f32], b: &[f32], eps: f64) {
    let width = row.len();
    let mut s = [0f64; 8];
    let mut c = row.chunks_exact(8);
    for ch in &mut c {
        for t in 0..8 {
            s[t] += ch[t] as f64;
        }
    }
    for (t, &v) in c.remainder().iter().enumerate() {
        s[t] += v as f64;
    }
    let mean = s.iter().sum::<f64>() / width as f64;
    let mut q = [0f64; 8];
    let mut c = row.chunks_exact(8);
    for ch in &mut c {
        for t in 0..8 {
            let d = ch[t] as f64 - mean;
            q[t] += d * d;
        }
    }
    for (t, &v) in c.remainder().iter().enumerate() {
        let d = v as f64 - mean;
        q[t] += d * d;
    }
    let var = q.iter().sum::<f64>() / width as f64;
    let inv = 1.0 / (var + eps).sqrt();
    for ((v, &gi), &bi) in row.iter_mut().zip(g).zip(b) {
        *v = (((*v as f64 - mean) * inv) as f32) * gi + bi;
    }
}

multiversion! {
    /// [`layer_norm_row`] over each `width`-long row, in place.
    pub fn layer_norm(x: &mut [f32], width: usize, g: &[f32], b: &[f32], eps: f64) {
        for row in x.chunks_exact_mut(width) {
            layer_norm_row(row, g, b, eps);
        }
    }
}

multiversion! {
    /// `y[i] += x[i]` (residual connections).
    pub fn add_assign(y: &mut [f32], x: &[f32]) {
        for (a, b) in y.iter_mut().zip(x) {
            *a += b;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid(lo: f32, hi: f32, n: usize) -> impl Iterator<Item = f32> {
        (0..=n).map(move |i| lo + (hi - lo) * i as f32 / n as f32)
    }

    #[test]
    fn erf_within_5e7_of_libm() {
        let worst =
            grid(-6.0, 6.0, 200_000).map(|x| (erf(x) - libm::erff(x)).abs()).fold(0f32, f32::max);
        assert!(worst <= 5e-7, "max abs error {worst}");
    }

    #[test]
    fn exp_within_2e7_relative_of_libm() {
        let worst = grid(-87.0, 88.0, 200_000)
            .map(|x| ((exp(x) as f64 - (x as f64).exp()) / (x as f64).exp()).abs())
            .fold(0f64, f64::max);
        assert!(worst <= 2e-7, "max relative error {worst}");
        assert!(exp(f32::NAN).is_nan());
        assert!(exp(-1000.0) < 1e-37 && exp(-1000.0) >= 0.0);
    }

    #[test]
    fn round_even_ties_to_even() {
        for (x, r) in
            [(0.5f32, 0.0f32), (1.5, 2.0), (2.5, 2.0), (-0.5, -0.0), (-1.5, -2.0), (3.2, 3.0)]
        {
            assert_eq!(round_even(x), r, "{x}");
            assert_eq!(round_even(x), x.round_ties_even());
        }
        assert_eq!(round_even(1e9), 1e9);
    }
}
