//! x86-64 tiers.
pub mod avx512vnni;
