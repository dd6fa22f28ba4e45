//! The turnscore model file: one self-describing, memory-mapped file per model.
//!
//! Layout (little-endian; the full specification is `docs/FORMAT.md`):
//!
//! ```text
//! [0, 64)                 Header (repr(C), 64 bytes, see `Header`)
//! [meta_offset, +len)     metadata: UTF-8 JSON (architecture, labels, thresholds, tensor table,
//!                         tokenizer reference, provenance)
//! [data_offset, file_len) data region: tensors and blobs, each at a 64-byte aligned offset
//! ```
//!
//! Everything is validated once in [`ModelFile::from_source`]: magic, version, every offset and
//! length against the file size, alignment, shapes against dtypes, and a CRC-32 over the header,
//! the metadata and every tensor and blob. After that, typed views into the data are handed out
//! without copies. A file that fails any check gives [`Error::Format`] naming what is wrong.

mod meta;
mod writer;

pub use meta::{
    Architecture, BlobMeta, Calibration, DType, HeadMeta, LabelMeta, Meta, Pooling, Provenance,
    TensorMeta,
};
pub use writer::{quantize_rows, write_atomic, ModelWriter};

use crate::error::{Error, Result};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

#[cfg(target_endian = "big")]
compile_error!("the turnscore model format is little-endian; big-endian targets are not supported");

/// The magic bytes a model file starts with.
pub const MAGIC: [u8; 8] = *b"TRNSCORE";
/// The format version this engine reads and writes.
pub const FORMAT_VERSION: u32 = 1;
/// Alignment of every tensor and blob in the data region, in bytes.
pub const ALIGN: u64 = 64;
/// Size of the fixed header.
pub const HEADER_LEN: usize = 64;
/// Upper bound on the metadata size; a larger value is treated as hostile.
pub const MAX_META_LEN: u64 = 64 << 20;

/// The fixed header at offset 0.
///
/// Byte layout: `magic[0..8] version[8..12] header_len[12..16] file_len[16..24]
/// meta_offset[24..32] meta_len[32..40] data_offset[40..48] data_len[48..56]
/// meta_crc32[56..60] header_crc32[60..64]`; `header_crc32` covers bytes `0..60`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// `b"TRNSCORE"`.
    pub magic: [u8; 8],
    /// Format version, [`FORMAT_VERSION`].
    pub version: u32,
    /// Length of this header, 64.
    pub header_len: u32,
    /// Total file length in bytes.
    pub file_len: u64,
    /// Offset of the JSON metadata.
    pub meta_offset: u64,
    /// Length of the JSON metadata.
    pub meta_len: u64,
    /// Offset of the data region (a multiple of [`ALIGN`]).
    pub data_offset: u64,
    /// Length of the data region; `data_offset + data_len == file_len`.
    pub data_len: u64,
    /// CRC-32 (IEEE) of the metadata bytes.
    pub meta_crc32: u32,
    /// CRC-32 (IEEE) of header bytes `0..60`.
    pub header_crc32: u32,
}
const _: () = assert!(std::mem::size_of::<Header>() == HEADER_LEN);

impl Header {
    /// Serialises the header to its 64 little-endian bytes (computing `header_crc32`).
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..8].copy_from_slice(&self.magic);
        b[8..12].copy_from_slice(&self.version.to_le_bytes());
        b[12..16].copy_from_slice(&self.header_len.to_le_bytes());
        b[16..24].copy_from_slice(&self.file_len.to_le_bytes());
        b[24..32].copy_from_slice(&self.meta_offset.to_le_bytes());
        b[32..40].copy_from_slice(&self.meta_len.to_le_bytes());
        b[40..48].copy_from_slice(&self.data_offset.to_le_bytes());
        b[48..56].copy_from_slice(&self.data_len.to_le_bytes());
        b[56..60].copy_from_slice(&self.meta_crc32.to_le_bytes());
        let crc = crc32fast::hash(&b[0..60]);
        b[60..64].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Parses and checks the header's own fields (magic, version, length, CRC).
    pub fn parse(bytes: &[u8]) -> Result<Header> {
        if bytes.len() < HEADER_LEN {
            return Err(Error::format(format!(
                "file is {} bytes, shorter than the {HEADER_LEN}-byte header (empty or truncated)",
                bytes.len()
            )));
        }
        let b = &bytes[..HEADER_LEN];
        let u32_at = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap());
        let u64_at = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap());
        let mut magic = [0u8; 8];
        magic.copy_from_slice(&b[0..8]);
        if magic != MAGIC {
            return Err(Error::format(
                "bad magic: not a turnscore model file (expected \"TRNSCORE\" at offset 0)",
            ));
        }
        let h = Header {
            magic,
            version: u32_at(8),
            header_len: u32_at(12),
            file_len: u64_at(16),
            meta_offset: u64_at(24),
            meta_len: u64_at(32),
            data_offset: u64_at(40),
            data_len: u64_at(48),
            meta_crc32: u32_at(56),
            header_crc32: u32_at(60),
        };
        let crc = crc32fast::hash(&b[0..60]);
        if crc != h.header_crc32 {
            return Err(Error::format(format!(
                "header checksum mismatch (stored {:#010x}, computed {crc:#010x}): the header is corrupted",
                h.header_crc32
            )));
        }
        if h.version != FORMAT_VERSION {
            return Err(Error::UnsupportedVersion { found: h.version, supported: FORMAT_VERSION });
        }
        if h.header_len as usize != HEADER_LEN {
            return Err(Error::format(format!(
                "header_len is {}, expected {HEADER_LEN}",
                h.header_len
            )));
        }
        Ok(h)
    }
}

/// Where the bytes of a model file live. All variants are immutable for the model's lifetime.
enum Source {
    Mmap(memmap2::Mmap),
    Static(&'static [u8]),
    Owned(Vec<u128>, usize),
}

impl Source {
    fn bytes(&self) -> &[u8] {
        match self {
            Source::Mmap(m) => m,
            Source::Static(s) => s,
            Source::Owned(v, len) => &bytemuck::cast_slice::<u128, u8>(v)[..*len],
        }
    }
}

/// A validated model file: header, metadata and typed, zero-copy views of its tensors.
pub struct ModelFile {
    source: Source,
    path: Option<PathBuf>,
    meta: Meta,
    data_offset: usize,
    index: HashMap<String, usize>,
}

impl std::fmt::Debug for ModelFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelFile")
            .field("path", &self.path)
            .field("model_id", &self.meta.model_id)
            .field("bytes", &self.source.bytes().len())
            .finish()
    }
}

/// A typed view of one tensor's data.
#[derive(Clone, Copy, Debug)]
pub enum TensorData<'a> {
    /// 32-bit floats.
    F32(&'a [f32]),
    /// IEEE half floats.
    F16(&'a [half::f16]),
    /// Signed 8-bit integers (paired with a per-row scale tensor, see [`ModelFile::weight`]).
    I8(&'a [i8]),
    /// Signed bytes in the int8 kernels' packed layout (see [`DType::I8K4N16`]).
    I8K4N16(&'a [i8]),
    /// Signed 32-bit integers.
    I32(&'a [i32]),
}

impl ModelFile {
    /// Memory-maps and validates a model file.
    ///
    /// The mapping is shared by every process on the machine through the page cache and no weight
    /// is copied.
    ///
    /// # Errors
    /// [`Error::Io`] if the file cannot be opened or mapped; [`Error::Format`] or
    /// [`Error::UnsupportedVersion`] if it is not a valid model file.
    pub fn open(path: impl AsRef<Path>) -> Result<ModelFile> {
        let path = path.as_ref();
        let io = |source| Error::Io { path: path.to_path_buf(), source };
        // Look before opening: opening a FIFO blocks until a writer comes, and a directory or a
        // device "opens" and then fails with a misleading OS error.
        let md = std::fs::metadata(path).map_err(io)?;
        if !md.is_file() {
            let kind = if md.is_dir() { "a directory" } else { "not a regular file" };
            return Err(Error::format(format!("{kind}, not a model file")).with_path(path));
        }
        let file = std::fs::File::open(path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        if len == 0 {
            // mmap of an empty file fails on some platforms; give the real reason instead.
            return Err(Error::format("file is empty (0 bytes)").with_path(path));
        }
        // SAFETY: a memory map is only sound while nobody truncates or rewrites the file. Model
        // files are immutable artifacts: `ModelWriter` and the converter write to a temporary name
        // and rename over the target, which replaces the directory entry and leaves an existing
        // mapping of the old inode intact. Editing a model file in place while a process maps it
        // is outside the contract (documented in docs/FORMAT.md). Every byte read through the map
        // is bounds-checked and validated below, so hostile contents cannot cause UB.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
        Self::from_source(Source::Mmap(map), Some(path.to_path_buf()))
            .map_err(|e| e.with_path(path))
    }

    /// Reads a model file into memory (no mapping) and validates it.
    ///
    /// # Errors
    /// As [`ModelFile::open`].
    pub fn open_read(path: impl AsRef<Path>) -> Result<ModelFile> {
        let path = path.as_ref();
        let md = std::fs::metadata(path)
            .map_err(|source| Error::Io { path: path.to_path_buf(), source })?;
        if !md.is_file() {
            return Err(Error::format("not a regular file, not a model file").with_path(path));
        }
        let bytes =
            std::fs::read(path).map_err(|source| Error::Io { path: path.to_path_buf(), source })?;
        Self::from_bytes(&bytes).map_err(|e| e.with_path(path))
    }

    /// Validates a model held in static memory (for example a model embedded in a binary).
    /// The slice must start at an address aligned to 4 bytes or more.
    ///
    /// # Errors
    /// As [`ModelFile::open`].
    pub fn from_static(bytes: &'static [u8]) -> Result<ModelFile> {
        Self::from_source(Source::Static(bytes), None)
    }

    /// Copies `bytes` into an aligned buffer and validates them.
    ///
    /// # Errors
    /// As [`ModelFile::open`].
    pub fn from_bytes(bytes: &[u8]) -> Result<ModelFile> {
        let mut v = vec![0u128; bytes.len().div_ceil(16)];
        bytemuck::cast_slice_mut::<u128, u8>(&mut v)[..bytes.len()].copy_from_slice(bytes);
        Self::from_source(Source::Owned(v, bytes.len()), None)
    }

    fn from_source(source: Source, path: Option<PathBuf>) -> Result<ModelFile> {
        let bytes = source.bytes();
        let h = Header::parse(bytes)?;
        let actual = bytes.len() as u64;
        if h.file_len != actual {
            return Err(Error::format(format!(
                "file is {actual} bytes but the header says {} (truncated or padded)",
                h.file_len
            )));
        }
        let meta_end = h
            .meta_offset
            .checked_add(h.meta_len)
            .ok_or_else(|| Error::format("metadata range overflows"))?;
        if h.meta_offset < HEADER_LEN as u64 || meta_end > actual {
            return Err(Error::format(format!(
                "metadata range {}..{meta_end} lies outside the file ({actual} bytes)",
                h.meta_offset
            )));
        }
        if h.meta_len > MAX_META_LEN {
            return Err(Error::format(format!("metadata is {} bytes, over the limit", h.meta_len)));
        }
        if h.data_offset % ALIGN != 0 {
            return Err(Error::format(format!(
                "data offset {} is not {ALIGN}-byte aligned",
                h.data_offset
            )));
        }
        if h.data_offset < meta_end || h.data_offset.checked_add(h.data_len) != Some(actual) {
            return Err(Error::format(format!(
                "data region {}+{} does not end the file ({actual} bytes) or overlaps the metadata",
                h.data_offset, h.data_len
            )));
        }
        let meta_bytes = &bytes[h.meta_offset as usize..meta_end as usize];
        let crc = crc32fast::hash(meta_bytes);
        if crc != h.meta_crc32 {
            return Err(Error::format(format!(
                "metadata checksum mismatch (stored {:#010x}, computed {crc:#010x})",
                h.meta_crc32
            )));
        }
        let meta: Meta = serde_json::from_slice(meta_bytes)
            .map_err(|e| Error::format(format!("metadata is not valid: {e}")))?;
        let data = &bytes[h.data_offset as usize..];
        let mut index = HashMap::with_capacity(meta.tensors.len());
        for (i, t) in meta.tensors.iter().enumerate() {
            check_range(data, t.offset, t.len, &format!("tensor {:?}", t.name))?;
            let want = t.dtype.byte_len(&t.shape);
            if want != Some(t.len) {
                return Err(Error::format(format!(
                    "tensor {:?}: shape {:?} of {} does not match its length {}",
                    t.name,
                    t.shape,
                    t.dtype.name(),
                    t.len
                )));
            }
            let c = crc32fast::hash(&data[t.offset as usize..(t.offset + t.len) as usize]);
            if c != t.crc32 {
                return Err(Error::format(format!(
                    "tensor {:?}: checksum mismatch (stored {:#010x}, computed {c:#010x}): data corrupted",
                    t.name, t.crc32
                )));
            }
            if index.insert(t.name.clone(), i).is_some() {
                return Err(Error::format(format!("tensor {:?} appears twice", t.name)));
            }
        }
        let tk = &meta.tokenizer;
        check_range(data, tk.offset, tk.len, "tokenizer blob")?;
        let c = crc32fast::hash(&data[tk.offset as usize..(tk.offset + tk.len) as usize]);
        if c != tk.crc32 {
            return Err(Error::format(format!(
                "tokenizer blob: checksum mismatch (stored {:#010x}, computed {c:#010x})",
                tk.crc32
            )));
        }
        // Every byte not covered by a checksum (padding) must be zero, and no two ranges may
        // overlap: together with the CRCs this makes every single-bit flip in the file an error.
        let mut ranges: Vec<(u64, u64, &str)> =
            meta.tensors.iter().map(|t| (t.offset, t.len, t.name.as_str())).collect();
        ranges.push((tk.offset, tk.len, "tokenizer blob"));
        ranges.sort_unstable();
        let mut pos = 0u64;
        for &(off, len, name) in &ranges {
            if off < pos {
                return Err(Error::format(format!("{name:?} overlaps the previous entry")));
            }
            if data[pos as usize..off as usize].iter().any(|&b| b != 0) {
                return Err(Error::format(format!(
                    "non-zero padding before {name:?}: data corrupted"
                )));
            }
            pos = off + len;
        }
        if data[pos as usize..].iter().any(|&b| b != 0) {
            return Err(Error::format("non-zero padding at the end of the data region"));
        }
        if bytes[meta_end as usize..h.data_offset as usize].iter().any(|&b| b != 0) {
            return Err(Error::format("non-zero padding after the metadata: data corrupted"));
        }
        meta.validate()?;
        let data_offset = h.data_offset as usize;
        Ok(ModelFile { source, path, meta, data_offset, index })
    }

    /// The parsed, validated metadata.
    pub fn meta(&self) -> &Meta {
        &self.meta
    }

    /// The path the model was opened from, if any.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The whole file's bytes.
    pub fn bytes(&self) -> &[u8] {
        self.source.bytes()
    }

    /// SHA-256 of the whole file, hex: the model's content hash for manifests.
    pub fn sha256(&self) -> String {
        hex_sha256(self.bytes())
    }

    /// The tokenizer JSON stored in the file.
    pub fn tokenizer_json(&self) -> &[u8] {
        let t = &self.meta.tokenizer;
        let s = self.data_offset + t.offset as usize;
        &self.bytes()[s..s + t.len as usize]
    }

    /// Looks up a tensor's entry.
    pub fn tensor_meta(&self, name: &str) -> Option<&TensorMeta> {
        self.index.get(name).map(|&i| &self.meta.tensors[i])
    }

    /// A typed view of a tensor, with its shape.
    ///
    /// # Errors
    /// [`Error::Format`] if the tensor is missing or its bytes are misaligned for its type.
    pub fn tensor(&self, name: &str) -> Result<(TensorData<'_>, &[u64])> {
        let t = self
            .tensor_meta(name)
            .ok_or_else(|| Error::format(format!("tensor {name:?} is missing")))?;
        let s = self.data_offset + t.offset as usize;
        let raw = &self.bytes()[s..s + t.len as usize];
        let misaligned = |_| Error::format(format!("tensor {name:?} is misaligned in memory"));
        let data = match t.dtype {
            DType::F32 => TensorData::F32(bytemuck::try_cast_slice(raw).map_err(misaligned)?),
            DType::F16 => TensorData::F16(bytemuck::try_cast_slice(raw).map_err(misaligned)?),
            DType::I8 => TensorData::I8(bytemuck::cast_slice(raw)),
            DType::I8K4N16 => TensorData::I8K4N16(bytemuck::cast_slice(raw)),
            DType::I32 => TensorData::I32(bytemuck::try_cast_slice(raw).map_err(misaligned)?),
        };
        Ok((data, &t.shape))
    }
}

fn check_range(data: &[u8], offset: u64, len: u64, what: &str) -> Result<()> {
    let end = offset.checked_add(len);
    match end {
        Some(end) if end <= data.len() as u64 => {}
        _ => {
            return Err(Error::format(format!(
                "{what}: range {offset}+{len} lies outside the data region ({} bytes)",
                data.len()
            )))
        }
    }
    if !offset.is_multiple_of(ALIGN) {
        return Err(Error::format(format!("{what}: offset {offset} is not {ALIGN}-byte aligned")));
    }
    Ok(())
}

/// Hex SHA-256 of bytes.
pub fn hex_sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(bytes);
    d.iter().map(|b| format!("{b:02x}")).collect()
}
