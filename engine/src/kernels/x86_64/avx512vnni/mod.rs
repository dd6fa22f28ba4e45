//! AVX-512 VNNI tier (`avx512f`, `avx512bw`, `avx512vnni`).
pub mod gemm_i8;

/// Proof that this CPU has AVX-512 F, BW and VNNI: only [`Avx512Vnni::try_new`] makes one.
#[derive(Clone, Copy, Debug)]
pub struct Avx512Vnni {
    _private: (),
}

impl Avx512Vnni {
    /// `Some` when the CPU supports the tier.
    pub fn try_new() -> Option<Self> {
        let ok = std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512vnni");
        ok.then_some(Avx512Vnni { _private: () })
    }

    /// `iters · 8 · 64` multiply-adds of `vpdpbusd` with no dependencies between them: the peak
    /// int8 rate, for benchmarks to report their share of.
    pub fn peak_loop(self, iters: u64) -> i32 {
        // SAFETY: the token proves the CPU supports the features peak_loop enables.
        unsafe { gemm_i8::peak_loop(iters) }
    }

    /// See [`crate::kernels::Kernels::gemm_u8i8_i32`].
    pub fn gemm_u8i8_i32(
        self,
        a: &[u8],
        m: usize,
        k: usize,
        b: &crate::kernels::PackedB<'_>,
        c: &mut [i32],
    ) {
        // SAFETY: an Avx512Vnni value exists only if try_new() observed avx512f, avx512bw and
        // avx512vnni on this CPU; the shapes were checked by the caller (Kernels::gemm_u8i8_i32),
        // which is what gemm_i8::gemm requires of its slices.
        unsafe { gemm_i8::gemm(a, m, k, b, c) }
    }
}
