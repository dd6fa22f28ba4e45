//! Compute kernels: the only place with SIMD intrinsics.
//!
//! Every kernel has a scalar specification; the integer GEMM's SIMD tiers live in
//! `<arch>/<isa>/gemm_i8.rs`, are reached only through a zero-sized ISA token that proves the
//! CPU supports it, and equal the specification bit for bit. The float work is plain Rust compiled
//! for the baseline, AVX2 and AVX-512 (`wide`), so every build gives the same bits; the two float
//! kernels where the compiler's code was not enough, the fused attention (`attention`) and the
//! row quantizer (`scalar::quant`), have an AVX-512 form beside their portable one, chosen by the
//! same process-wide level and tested bit for bit against it. The tier is chosen once per process
//! ([`Kernels::detect`]); `TURNSCORE_ISA=scalar` (or another tier name) lowers it, for tests and
//! triage; asking for a tier the CPU lacks is an error, never undefined behaviour.
//!
//! One row per kernel, with tiles, instructions, tolerances and measurements: `docs/KERNELS.md`.

#[cfg(target_arch = "aarch64")]
pub mod aarch64;
pub mod attention;
pub mod scalar;
pub mod wide;
#[cfg(target_arch = "x86_64")]
pub mod x86_64;

use std::sync::OnceLock;

/// The kernel tiers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Isa {
    /// Plain Rust, every CPU.
    Scalar,
    /// aarch64 NEON.
    Neon,
    /// x86-64 AVX2.
    Avx2,
    /// x86-64 AVX-512 F + BW + VNNI.
    Avx512Vnni,
}

impl Isa {
    /// `"scalar"`, `"x86_64/avx512vnni"`.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Neon => "aarch64/neon",
            Isa::Avx2 => "x86_64/avx2",
            Isa::Avx512Vnni => "x86_64/avx512vnni",
        }
    }
    /// Parses `scalar`, `avx2` or `avx512vnni` (with or without the `x86_64/` prefix).
    pub fn parse(s: &str) -> Option<Isa> {
        match s.trim().trim_start_matches("x86_64/").trim_start_matches("aarch64/") {
            "scalar" => Some(Isa::Scalar),
            "neon" => Some(Isa::Neon),
            "avx2" => Some(Isa::Avx2),
            "avx512vnni" => Some(Isa::Avx512Vnni),
            _ => None,
        }
    }
}

/// `B` (`n × k` signed bytes, one row per output channel) packed for the kernels: panels of 16
/// output channels; in a panel, for each group of 4 consecutive k, 16 channels × 4 bytes (64
/// bytes). `n` is padded to a multiple of 16 and `k` to a multiple of 4 with zeros.
///
/// Owned when packed here ([`PackedB::pack`]), borrowed when read in place from a model file
/// ([`PackedB::from_packed`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackedB<'a> {
    data: std::borrow::Cow<'a, [i8]>,
    n: usize,
    k: usize,
}

impl<'a> PackedB<'a> {
    /// Bytes of the packed form of an `n × k` matrix.
    pub fn packed_len(n: usize, k: usize) -> usize {
        n.div_ceil(16) * k.div_ceil(4) * 64
    }

    /// Views bytes already in the packed layout (a model file's `i8k4n16` tensor).
    ///
    /// # Errors
    /// A message if the length is not [`PackedB::packed_len`]`(n, k)` or `k` exceeds [`MAX_K`].
    pub fn from_packed(data: &'a [i8], n: usize, k: usize) -> Result<PackedB<'a>, String> {
        if data.len() != Self::packed_len(n, k) || k > MAX_K {
            return Err(format!(
                "packed int8 matrix of {} bytes does not hold {n} × {k} (want {} bytes, k ≤ {MAX_K})",
                data.len(),
                Self::packed_len(n, k)
            ));
        }
        Ok(PackedB { data: std::borrow::Cow::Borrowed(data), n, k })
    }

    /// Packs a row-major `n × k` matrix.
    ///
    /// # Panics
    /// If `b.len() != n · k`.
    pub fn pack(b: &[i8], n: usize, k: usize) -> PackedB<'static> {
        assert_eq!(b.len(), n * k, "pack: length does not match n × k");
        let groups = k.div_ceil(4);
        let panels = n.div_ceil(16);
        let mut data = vec![0i8; panels * groups * 64];
        for j in 0..n {
            for l in 0..k {
                data[Self::offset(groups, j, l)] = b[j * k + l];
            }
        }
        PackedB { data: std::borrow::Cow::Owned(data), n, k }
    }

    fn offset(groups: usize, j: usize, l: usize) -> usize {
        let (p, jj) = (j / 16, j % 16);
        let (g, t) = (l / 4, l % 4);
        (p * groups + g) * 64 + jj * 4 + t
    }

    /// Element `(j, l)` of the original matrix.
    pub fn get(&self, j: usize, l: usize) -> i8 {
        self.data[Self::offset(self.groups(), j, l)]
    }
    /// Output channels.
    pub fn n(&self) -> usize {
        self.n
    }
    /// Inner dimension.
    pub fn k(&self) -> usize {
        self.k
    }
    /// Groups of 4 along k.
    pub fn groups(&self) -> usize {
        self.k.div_ceil(4)
    }
    /// Panels of 16 channels.
    pub fn panels(&self) -> usize {
        self.n.div_ceil(16)
    }
    /// The packed bytes.
    pub fn data(&self) -> &[i8] {
        &self.data
    }
}

/// `m` rows of `a` (`k` bytes each) with each row padded with zeros to `kp ≥ k` bytes, so the
/// SIMD tiers can read whole groups of 4; borrowed unchanged when `kp == k` (the encoder's
/// shapes). Zeros add nothing to the dot products.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(crate) fn pad_rows(a: &[u8], m: usize, k: usize, kp: usize) -> std::borrow::Cow<'_, [u8]> {
    if kp == k {
        return std::borrow::Cow::Borrowed(&a[..m * k]);
    }
    let mut v = vec![0u8; m * kp];
    for i in 0..m {
        v[i * kp..i * kp + k].copy_from_slice(&a[i * k..(i + 1) * k]);
    }
    std::borrow::Cow::Owned(v)
}

/// Largest inner dimension for which i32 accumulation of u8 × i8 cannot overflow.
pub const MAX_K: usize = 65_793;

/// The kernels of one tier.
#[derive(Clone, Copy, Debug)]
pub struct Kernels {
    isa: Isa,
    #[cfg(target_arch = "aarch64")]
    neon: Option<aarch64::neon::Neon>,
    #[cfg(target_arch = "x86_64")]
    avx2: Option<x86_64::avx2::Avx2>,
    #[cfg(target_arch = "x86_64")]
    vnni: Option<x86_64::avx512vnni::Avx512Vnni>,
}

impl Kernels {
    /// The best tier this CPU supports, lowered by `TURNSCORE_ISA` if set; chosen once per
    /// process.
    ///
    /// # Panics
    /// If `TURNSCORE_ISA` names an unknown tier or one this CPU lacks: a configuration error the
    /// process must not run past.
    pub fn detect() -> &'static Kernels {
        static K: OnceLock<Kernels> = OnceLock::new();
        K.get_or_init(|| {
            let best = *Self::all_available().last().expect("scalar is always available");
            match std::env::var("TURNSCORE_ISA") {
                Ok(s) => {
                    let isa = Isa::parse(&s).unwrap_or_else(|| {
                        panic!("TURNSCORE_ISA={s:?} is not a tier (scalar, neon, avx2, avx512vnni)")
                    });
                    Self::for_isa(isa).unwrap_or_else(|| {
                        panic!("TURNSCORE_ISA={s:?}: this CPU does not support {}", isa.name())
                    })
                }
                Err(_) => best,
            }
        })
    }

    /// The kernels of `isa`, if this CPU supports it.
    pub fn for_isa(isa: Isa) -> Option<Kernels> {
        match isa {
            Isa::Scalar => Some(Kernels {
                isa,
                #[cfg(target_arch = "aarch64")]
                neon: None,
                #[cfg(target_arch = "x86_64")]
                avx2: None,
                #[cfg(target_arch = "x86_64")]
                vnni: None,
            }),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => {
                x86_64::avx2::Avx2::try_new().map(|t| Kernels { isa, avx2: Some(t), vnni: None })
            }
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512Vnni => x86_64::avx512vnni::Avx512Vnni::try_new().map(|t| Kernels {
                isa,
                avx2: None,
                vnni: Some(t),
            }),
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => aarch64::neon::Neon::try_new().map(|t| Kernels { isa, neon: Some(t) }),
            #[cfg(not(target_arch = "aarch64"))]
            Isa::Neon => None,
            #[cfg(not(target_arch = "x86_64"))]
            Isa::Avx2 | Isa::Avx512Vnni => None,
        }
    }

    /// Every tier this CPU supports, scalar first.
    pub fn all_available() -> Vec<Kernels> {
        [Isa::Scalar, Isa::Neon, Isa::Avx2, Isa::Avx512Vnni]
            .into_iter()
            .filter_map(Self::for_isa)
            .collect()
    }

    /// This tier.
    pub fn isa(&self) -> Isa {
        self.isa
    }

    /// `c[i·n + j] = Σ_l a[i·k + l] · B[j][l]` for `m` rows of `a` (`m × k` unsigned bytes) and the
    /// packed `b` (`n` channels of `k` signed bytes), into `c` (`m × n` i32).
    ///
    /// # Panics
    /// If a slice is shorter than its shape, `k != b.k()`, or `k > MAX_K`: shapes come from
    /// validated model dimensions, so this is a bug, not bad input.
    pub fn gemm_u8i8_i32(&self, a: &[u8], m: usize, k: usize, b: &PackedB<'_>, c: &mut [i32]) {
        assert!(
            k == b.k() && k <= MAX_K,
            "gemm_u8i8_i32: k {k} does not match B or exceeds {MAX_K}"
        );
        assert!(
            a.len() >= m * k && c.len() >= m * b.n(),
            "gemm_u8i8_i32: slice shorter than its shape"
        );
        match self.isa {
            Isa::Scalar => scalar::gemm_i8::gemm_u8i8_i32(a, m, k, b, c),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => {
                self.avx2.expect("token exists for this tier").gemm_u8i8_i32(a, m, k, b, c)
            }
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512Vnni => {
                self.vnni.expect("token exists for this tier").gemm_u8i8_i32(a, m, k, b, c)
            }
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => {
                self.neon.expect("token exists for this tier").gemm_u8i8_i32(a, m, k, b, c)
            }
            #[cfg(not(target_arch = "aarch64"))]
            Isa::Neon => unreachable!("no such tier on this architecture"),
            #[cfg(not(target_arch = "x86_64"))]
            Isa::Avx2 | Isa::Avx512Vnni => unreachable!("no such tier on this architecture"),
        }
    }
}

#[cfg(test)]
mod tests;
