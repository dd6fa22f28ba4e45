//! The default model, embedded in the binary (feature `bundled-model`).
//!
//! The bytes live in the executable's read-only data, which the OS maps from the executable file
//! like any memory map: no copy, shared through the page cache.

#[repr(C, align(64))]
struct Aligned<B: ?Sized>(B);

static BYTES: &Aligned<[u8]> = &Aligned(*include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../models/all-minilm-l6-v2.tsm"
)));

/// The bundled model file's bytes (64-byte aligned).
pub fn bytes() -> &'static [u8] {
    &BYTES.0
}

/// The bundled model's file name, for messages.
pub const NAME: &str = "models/all-minilm-l6-v2.tsm (bundled)";
