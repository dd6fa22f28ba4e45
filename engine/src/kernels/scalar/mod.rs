//! The scalar tier: the specification of every kernel, always compiled, never "optimized".
pub mod gemm_i8;
pub mod quant;
