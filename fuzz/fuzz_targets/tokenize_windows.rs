//! Text to token windows with the bundled model's tokenizer: any bytes (as text) tokenize, and
//! every window fits the model's window with its special tokens, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use turnscore::{Engine, EngineOptions};

static ENGINE: OnceLock<Engine> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let e = ENGINE.get_or_init(|| {
        Engine::bundled(EngineOptions { threads: 1, window: Some(16), stride: Some(4), ..Default::default() })
            .expect("the bundled model opens")
    });
    let text = String::from_utf8_lossy(data);
    let (a, b) = text.split_at(text.char_indices().nth(text.chars().count() / 2).map_or(0, |c| c.0));
    if let Ok(t) = e.tokenize(&[&text]) {
        for w in &t[0].windows {
            assert!(w.len() <= e.window(), "a window of {} tokens", w.len());
        }
    }
    let _ = e.tokenize_in_context(&[b], &[Some(a)]);
});
