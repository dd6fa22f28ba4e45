//! Integration tests live in `tests.rs` and its modules; this library is empty.
