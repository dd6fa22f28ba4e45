//! NEON tier (aarch64 Advanced SIMD, present on every aarch64 CPU).
pub mod gemm_i8;

/// Proof that this CPU has NEON: only [`Neon::try_new`] makes one.
#[derive(Clone, Copy, Debug)]
pub struct Neon {
    _private: (),
}

impl Neon {
    /// `Some` when the CPU supports the tier.
    pub fn try_new() -> Option<Self> {
        std::arch::is_aarch64_feature_detected!("neon").then_some(Neon { _private: () })
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
        // SAFETY: a Neon value exists only if try_new() observed NEON on this CPU; the shapes
        // were checked by the caller (Kernels::gemm_u8i8_i32), which is what gemm_i8::gemm
        // requires of its slices.
        unsafe { gemm_i8::gemm(a, m, k, b, c) }
    }
}
