//! AVX2 tier (`avx2`): the int8 GEMM for x86-64 CPUs without AVX-512 VNNI.
pub mod gemm_i8;

/// Proof that this CPU has AVX2: only [`Avx2::try_new`] makes one.
#[derive(Clone, Copy, Debug)]
pub struct Avx2 {
    _private: (),
}

impl Avx2 {
    /// `Some` when the CPU supports the tier.
    pub fn try_new() -> Option<Self> {
        std::arch::is_x86_feature_detected!("avx2").then_some(Avx2 { _private: () })
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
        // SAFETY: an Avx2 value exists only if try_new() observed avx2 on this CPU; the shapes
        // were checked by the caller (Kernels::gemm_u8i8_i32), which is what gemm_i8::gemm
        // requires of its slices.
        unsafe { gemm_i8::gemm(a, m, k, b, c) }
    }
}
