//! turnscore integration tests (one binary, ripgrep style). Each module says what it proves.
#![forbid(unsafe_code)]

/// Shared helpers: fixture paths, converting the tiny checkpoints.
mod util;

/// Encoder parity: transformers fixtures and candle-transformers, max abs error ≤ 1e-4.
mod parity;

/// Model-file validation: missing, empty, truncated, bit-flipped and hostile files.
mod format;

/// The engine API: one row per input in order, rejections, truncation, batch and thread invariance.
mod api;

/// Fuzz regressions and seeds replayed on stable: a clean error, never a panic.
mod fuzz_regressions;
