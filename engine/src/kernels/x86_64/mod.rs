//! x86-64 tiers.
pub mod avx2;
pub mod avx512vnni;
