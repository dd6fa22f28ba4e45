//! f32 linear algebra for the reference (f32) encoder path.
//!
//! Matrix products go through the `gemm` crate (the f32 GEMM candle uses): hand-writing an f32
//! GEMM would not beat it, and the int8 kernels that are this project's own come with the SIMD
//! work. Everything else here (LayerNorm, GELU, softmax) is plain Rust.
//!
//! This module holds one `unsafe` block, the call into `gemm::gemm`, guarded by explicit bounds
//! checks on every operand (see [`sgemm`]).

/// A strided, read-only f32 matrix view: element `(i, j)` is `data[i * rs + j * cs]`.
#[derive(Clone, Copy, Debug)]
pub struct View<'a> {
    /// Backing storage.
    pub data: &'a [f32],
    /// Row stride in elements.
    pub rs: usize,
    /// Column stride in elements.
    pub cs: usize,
}

impl<'a> View<'a> {
    /// A row-major `rows × cols` matrix (`rs = cols`, `cs = 1`).
    pub fn rows(data: &'a [f32], cols: usize) -> Self {
        View { data, rs: cols, cs: 1 }
    }
    /// The transpose of a row-major matrix with `cols` columns, without copying.
    pub fn transposed(data: &'a [f32], cols: usize) -> Self {
        View { data, rs: 1, cs: cols }
    }
}

/// Largest index touched by a `rows × cols` view with the given strides, plus one.
fn span(rows: usize, cols: usize, rs: usize, cs: usize) -> usize {
    if rows == 0 || cols == 0 {
        0
    } else {
        (rows - 1) * rs + (cols - 1) * cs + 1
    }
}

/// `c = a · b` (or `c += a · b` when `accumulate`), where `a` is `m × k`, `b` is `k × n` and `c`
/// is `m × n` row-major with row stride `c_rs` (`c_rs >= n`).
///
/// # Panics
/// If any view does not fit its slice, or `c_rs < n`: callers pass shapes they derived from
/// validated model dimensions, so a failure here is a bug in the engine, not bad input.
#[allow(clippy::too_many_arguments)]
pub fn sgemm(
    m: usize,
    n: usize,
    k: usize,
    a: View<'_>,
    b: View<'_>,
    c: &mut [f32],
    c_rs: usize,
    accumulate: bool,
) {
    assert!(span(m, k, a.rs, a.cs) <= a.data.len(), "sgemm: lhs out of bounds");
    assert!(span(k, n, b.rs, b.cs) <= b.data.len(), "sgemm: rhs out of bounds");
    assert!(span(m, n, c_rs, 1) <= c.len(), "sgemm: dst out of bounds");
    assert!(m <= 1 || c_rs >= n, "sgemm: dst rows overlap");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            for i in 0..m {
                c[i * c_rs..i * c_rs + n].fill(0.0);
            }
        }
        return;
    }
    let strides = [a.rs, a.cs, b.rs, b.cs, c_rs];
    assert!(strides.iter().all(|&s| s <= isize::MAX as usize), "sgemm: stride too large");
    // SAFETY: the asserts above prove that every element gemm reads, lhs (i, l) at
    // `i*a.rs + l*a.cs` and rhs (l, j) at `l*b.rs + j*b.cs`, and every element it writes, dst
    // (i, j) at `i*c_rs + j`, lies inside the corresponding slice; dst elements are pairwise
    // distinct because `c_rs >= n`. `c` is a unique borrow, so it cannot alias `a` or `b`.
    // Strides fit in isize. `read_dst = accumulate` only reads initialised f32 values.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            c_rs as isize,
            accumulate,
            a.data.as_ptr(),
            a.cs as isize,
            a.rs as isize,
            b.data.as_ptr(),
            b.cs as isize,
            b.rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// In place LayerNorm of each `width`-long row: `(x - mean) / sqrt(var + eps) * g + b`.
/// Statistics are accumulated in f64.
pub fn layer_norm(x: &mut [f32], width: usize, g: &[f32], b: &[f32], eps: f64) {
    debug_assert!(g.len() == width && b.len() == width && x.len().is_multiple_of(width));
    for row in x.chunks_exact_mut(width) {
        let mean = row.iter().map(|&v| v as f64).sum::<f64>() / width as f64;
        let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / width as f64;
        let inv = 1.0 / (var + eps).sqrt();
        for ((v, &gi), &bi) in row.iter_mut().zip(g).zip(b) {
            *v = (((*v as f64 - mean) * inv) as f32) * gi + bi;
        }
    }
}

/// GELU, erf form (Hugging Face `gelu`): `0.5 · x · (1 + erf(x / √2))`.
pub fn gelu(x: &mut [f32]) {
    for v in x {
        *v = 0.5 * *v * (1.0 + libm::erff(*v * std::f32::consts::FRAC_1_SQRT_2));
    }
}

/// Numerically stable softmax of one row, in place, after multiplying by `scale`.
pub fn softmax_scaled(row: &mut [f32], scale: f32) {
    let max = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v * scale));
    let mut sum = 0f32;
    for v in row.iter_mut() {
        *v = (*v * scale - max).exp();
        sum += *v;
    }
    let inv = 1.0 / sum;
    for v in row.iter_mut() {
        *v *= inv;
    }
}

/// Logistic sigmoid.
pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(m: usize, n: usize, k: usize, a: View<'_>, b: View<'_>) -> Vec<f32> {
        let mut c = vec![0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                let mut s = 0f64;
                for l in 0..k {
                    s += a.data[i * a.rs + l * a.cs] as f64 * b.data[l * b.rs + j * b.cs] as f64;
                }
                c[i * n + j] = s as f32;
            }
        }
        c
    }

    #[test]
    fn sgemm_matches_naive_over_odd_shapes_and_strides() {
        let mut seed = 1u32;
        let mut rnd = || {
            seed = seed.wrapping_mul(1664525).wrapping_add(1013904223);
            (seed >> 8) as f32 / (1u32 << 24) as f32 - 0.5
        };
        for &(m, n, k) in &[(1, 1, 1), (3, 5, 7), (17, 33, 65), (64, 1, 384), (2, 70, 3)] {
            let a: Vec<f32> = (0..m * k).map(|_| rnd()).collect();
            let bt: Vec<f32> = (0..n * k).map(|_| rnd()).collect(); // n × k, used transposed
            let av = View::rows(&a, k);
            let bv = View::transposed(&bt, k);
            let want = naive(m, n, k, av, bv);
            let mut got = vec![0f32; m * n];
            sgemm(m, n, k, av, bv, &mut got, n, false);
            for (g, w) in got.iter().zip(&want) {
                assert!((g - w).abs() <= 1e-5 * (k as f32).sqrt(), "{m}x{n}x{k}: {g} vs {w}");
            }
            // Accumulate adds on top.
            sgemm(m, n, k, av, bv, &mut got, n, true);
            for (g, w) in got.iter().zip(&want) {
                assert!((g - 2.0 * w).abs() <= 1e-4 * (k as f32).sqrt());
            }
        }
    }

    #[test]
    #[should_panic(expected = "rhs out of bounds")]
    fn sgemm_rejects_short_operand() {
        let a = [0f32; 6];
        let b = [0f32; 5];
        let mut c = [0f32; 4];
        sgemm(2, 2, 3, View::rows(&a, 3), View::rows(&b, 2), &mut c, 2, false);
    }

    #[test]
    fn softmax_sums_to_one_and_handles_large_values() {
        let mut r = [1000.0f32, 1001.0, -5.0, 3.0];
        softmax_scaled(&mut r, 1.0);
        assert!((r.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(r.iter().all(|v| v.is_finite() && *v >= 0.0));
    }

    #[test]
    fn gelu_known_values() {
        let mut x = [0.0f32, 1.0, -1.0, 3.0];
        gelu(&mut x);
        let want = [0.0f32, 0.841_344_7, -0.158_655_26, 2.995_950_5];
        for (g, w) in x.iter().zip(want) {
            assert!((g - w).abs() < 1e-6, "{g} vs {w}");
        }
    }
}
