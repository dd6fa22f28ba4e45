//! The model file: open and validate arbitrary bytes. Never a panic, never an allocation past
//! the run's limit (`-malloc_limit_mb`), whatever the file says about itself.
//!
//! Random bytes stop at the header's checksum, so the first input byte picks one of two modes:
//! odd, the rest is a whole file; even, the rest is `metadata JSON \0 data region` and the
//! target frames it as a file with every checksum right (the header's, the metadata's and each
//! tensor's that lies inside the data), so that mutations reach the semantic validation.
#![no_main]

use libfuzzer_sys::fuzz_target;
use turnscore::format::{Header, ModelFile, ALIGN, FORMAT_VERSION, HEADER_LEN, MAGIC};

fn framed(meta: &[u8], data: &[u8]) -> Vec<u8> {
    let mut meta = meta.to_vec();
    if let Ok(mut v) = serde_json::from_slice::<serde_json::Value>(&meta) {
        let crc = |off: u64, len: u64| -> Option<u32> {
            let end = off.checked_add(len)?;
            (end <= data.len() as u64).then(|| crc32fast::hash(&data[off as usize..end as usize]))
        };
        if let Some(ts) = v.get_mut("tensors").and_then(|t| t.as_array_mut()) {
            for t in ts {
                let (o, l) = (t["offset"].as_u64(), t["len"].as_u64());
                if let (Some(o), Some(l)) = (o, l) {
                    if let Some(c) = crc(o, l) {
                        t["crc32"] = c.into();
                    }
                }
            }
        }
        if let Some(tk) = v.get_mut("tokenizer") {
            if let (Some(o), Some(l)) = (tk["offset"].as_u64(), tk["len"].as_u64()) {
                if let Some(c) = crc(o, l) {
                    tk["crc32"] = c.into();
                }
            }
        }
        meta = serde_json::to_vec(&v).unwrap_or(meta);
    }
    let data_offset = (HEADER_LEN as u64 + meta.len() as u64).next_multiple_of(ALIGN);
    let h = Header {
        magic: MAGIC,
        version: FORMAT_VERSION,
        header_len: HEADER_LEN as u32,
        file_len: data_offset + data.len() as u64,
        meta_offset: HEADER_LEN as u64,
        meta_len: meta.len() as u64,
        data_offset,
        data_len: data.len() as u64,
        meta_crc32: crc32fast::hash(&meta),
        header_crc32: 0,
    };
    let mut out = h.to_bytes().to_vec();
    out.extend_from_slice(&meta);
    out.resize(data_offset as usize, 0);
    out.extend_from_slice(data);
    out
}

fuzz_target!(|input: &[u8]| {
    let Some((&mode, rest)) = input.split_first() else { return };
    let bytes = if mode & 1 == 1 {
        rest.to_vec()
    } else {
        let cut = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        framed(&rest[..cut], rest.get(cut + 1..).unwrap_or(&[]))
    };
    if let Ok(m) = ModelFile::from_bytes(&bytes) {
        let _ = turnscore::validate_model(&m);
    }
});
