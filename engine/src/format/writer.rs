//! Writes model files (used by the converter and the tests).

use super::{
    hex_sha256, Architecture, BlobMeta, DType, HeadMeta, Header, Meta, Provenance, TensorMeta,
    ALIGN, FORMAT_VERSION, HEADER_LEN, MAGIC,
};
use crate::error::{Error, Result};
use std::io::Write;
use std::path::Path;

/// Builds a model file in memory and writes it atomically.
#[derive(Debug)]
pub struct ModelWriter {
    meta: Meta,
    blobs: Vec<Vec<u8>>,
}

impl ModelWriter {
    /// Starts a model with its id, quantization description, architecture and provenance.
    pub fn new(
        model_id: &str,
        quantization: &str,
        architecture: Architecture,
        provenance: Provenance,
    ) -> Self {
        let meta = Meta {
            format: "turnscore-model".into(),
            model_id: model_id.into(),
            quantization: quantization.into(),
            architecture,
            tokenizer: BlobMeta { offset: 0, len: 0, crc32: 0, sha256: String::new() },
            topics: None,
            sensitive: None,
            tensors: Vec::new(),
            provenance,
        };
        ModelWriter { meta, blobs: vec![Vec::new()] }
    }

    /// Sets the Hugging Face `tokenizer.json` bytes.
    pub fn set_tokenizer(&mut self, json: Vec<u8>) {
        self.blobs[0] = json;
    }

    /// Sets the topic head (its tensors must be added too).
    pub fn set_topics(&mut self, head: Option<HeadMeta>) {
        self.meta.topics = head;
    }

    /// Sets the sensitive head (its tensors must be added too).
    pub fn set_sensitive(&mut self, head: Option<HeadMeta>) {
        self.meta.sensitive = head;
    }

    /// Adds a tensor from raw little-endian bytes.
    ///
    /// # Errors
    /// [`Error::Invalid`] if the byte length does not match the shape and dtype.
    pub fn add_raw(
        &mut self,
        name: &str,
        dtype: DType,
        shape: &[u64],
        bytes: Vec<u8>,
    ) -> Result<()> {
        let want = dtype.byte_len(shape);
        if want != Some(bytes.len() as u64) {
            return Err(Error::Invalid(format!(
                "tensor {name:?}: {} bytes for shape {shape:?} of {}",
                bytes.len(),
                dtype.name()
            )));
        }
        self.meta.tensors.push(TensorMeta {
            name: name.into(),
            dtype,
            shape: shape.to_vec(),
            offset: 0,
            len: bytes.len() as u64,
            crc32: 0,
        });
        self.blobs.push(bytes);
        Ok(())
    }

    /// Adds an f32 tensor.
    ///
    /// # Errors
    /// As [`ModelWriter::add_raw`].
    pub fn add_f32(&mut self, name: &str, shape: &[u64], v: &[f32]) -> Result<()> {
        self.add_raw(name, DType::F32, shape, bytemuck::cast_slice(v).to_vec())
    }

    /// Adds an f32 tensor rounded to f16.
    ///
    /// # Errors
    /// As [`ModelWriter::add_raw`].
    pub fn add_f16(&mut self, name: &str, shape: &[u64], v: &[f32]) -> Result<()> {
        let h: Vec<half::f16> = v.iter().map(|&x| half::f16::from_f32(x)).collect();
        self.add_raw(name, DType::F16, shape, bytemuck::cast_slice(&h).to_vec())
    }

    /// Adds a `[rows, cols]` f32 matrix quantized to i8 with one symmetric scale per row
    /// (`scale = max|row| / 127`), as `name` (i8) and `name.scale` (f32).
    ///
    /// # Errors
    /// As [`ModelWriter::add_raw`].
    pub fn add_i8_rows(&mut self, name: &str, shape: &[u64], v: &[f32]) -> Result<()> {
        let [rows, cols] = shape else {
            return Err(Error::Invalid(format!("tensor {name:?}: i8 rows need a 2-d shape")));
        };
        let (q, s) = quantize_rows(v, *rows as usize, *cols as usize);
        self.add_raw(name, DType::I8, shape, bytemuck::cast_slice(&q).to_vec())?;
        self.add_f32(&format!("{name}.scale"), &[*rows], &s)
    }

    /// Adds a `[n, k]` f32 weight matrix (one row per output channel) quantized to int8 with one
    /// symmetric scale per output channel, packed for the int8 kernels: `name` (`i8k4n16`),
    /// `name.scale` (f32) and `name.colsum` (i32).
    ///
    /// # Errors
    /// As [`ModelWriter::add_raw`].
    pub fn add_i8_packed(&mut self, name: &str, shape: &[u64], v: &[f32]) -> Result<()> {
        let [n, k] = shape else {
            return Err(Error::Invalid(format!("tensor {name:?}: packed int8 needs a 2-d shape")));
        };
        let (n, k) = (*n as usize, *k as usize);
        let (q, s) = quantize_rows(v, n, k);
        let colsum: Vec<i32> =
            q.chunks_exact(k).map(|r| r.iter().map(|&x| x as i32).sum()).collect();
        let packed = crate::kernels::PackedB::pack(&q, n, k);
        self.add_raw(name, DType::I8K4N16, shape, bytemuck::cast_slice(packed.data()).to_vec())?;
        self.add_f32(&format!("{name}.scale"), &[n as u64], &s)?;
        self.add_raw(
            &format!("{name}.colsum"),
            DType::I32,
            &[n as u64],
            bytemuck::cast_slice(&colsum).to_vec(),
        )
    }

    /// Serialises the model to bytes.
    ///
    /// # Errors
    /// [`Error::Invalid`] if no tokenizer was set.
    pub fn to_bytes(mut self) -> Result<Vec<u8>> {
        if self.blobs[0].is_empty() {
            return Err(Error::Invalid("model has no tokenizer".into()));
        }
        // Lay out the data region: tokenizer first, then tensors, each 64-aligned.
        let mut offset = 0u64;
        let mut offsets = Vec::with_capacity(self.blobs.len());
        for b in &self.blobs {
            offsets.push(offset);
            offset = (offset + b.len() as u64).next_multiple_of(ALIGN);
        }
        let data_len = offset;
        let tk = &self.blobs[0];
        self.meta.tokenizer = BlobMeta {
            offset: 0,
            len: tk.len() as u64,
            crc32: crc32fast::hash(tk),
            sha256: hex_sha256(tk),
        };
        for (i, t) in self.meta.tensors.iter_mut().enumerate() {
            t.offset = offsets[i + 1];
            t.crc32 = crc32fast::hash(&self.blobs[i + 1]);
        }
        let meta = serde_json::to_vec_pretty(&self.meta)
            .map_err(|e| Error::Invalid(format!("metadata: {e}")))?;
        let meta_offset = HEADER_LEN as u64;
        let data_offset = (meta_offset + meta.len() as u64).next_multiple_of(ALIGN);
        let header = Header {
            magic: MAGIC,
            version: FORMAT_VERSION,
            header_len: HEADER_LEN as u32,
            file_len: data_offset + data_len,
            meta_offset,
            meta_len: meta.len() as u64,
            data_offset,
            data_len,
            meta_crc32: crc32fast::hash(&meta),
            header_crc32: 0,
        };
        let mut out = Vec::with_capacity(header.file_len as usize);
        out.extend_from_slice(&header.to_bytes());
        out.extend_from_slice(&meta);
        out.resize(data_offset as usize, 0);
        for (b, &o) in self.blobs.iter().zip(&offsets) {
            out.resize(data_offset as usize + o as usize, 0);
            out.extend_from_slice(b);
        }
        out.resize(header.file_len as usize, 0);
        Ok(out)
    }

    /// Writes the model to `path` atomically: a temporary file in the same directory, fsync,
    /// then rename over `path`. A process that has the old file mapped keeps its mapping intact.
    ///
    /// # Errors
    /// [`Error::Io`] on any file-system failure.
    pub fn write(self, path: &Path) -> Result<()> {
        write_atomic(path, &self.to_bytes()?)
    }
}

/// Writes `bytes` to `path` atomically: a temporary file in the same directory, fsync, rename.
///
/// # Errors
/// [`Error::Io`] on any file-system failure.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    {
        let io = |source| Error::Io { path: path.to_path_buf(), source };
        let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
        let result = (|| {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(bytes)?;
            f.sync_all()?;
            std::fs::rename(&tmp, path)
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result.map_err(io)
    }
}

/// Symmetric per-row int8 quantization: `q = round(v / scale)`, `scale = max|row| / 127`
/// (a zero row gets scale 0 and all-zero values).
pub fn quantize_rows(v: &[f32], rows: usize, cols: usize) -> (Vec<i8>, Vec<f32>) {
    assert_eq!(v.len(), rows * cols, "quantize_rows: length does not match shape");
    let mut q = vec![0i8; v.len()];
    let mut scales = vec![0f32; rows];
    for r in 0..rows {
        let row = &v[r * cols..(r + 1) * cols];
        let amax = row.iter().fold(0f32, |m, x| m.max(x.abs()));
        let scale = amax / 127.0;
        scales[r] = scale;
        if scale > 0.0 {
            for (d, &x) in q[r * cols..(r + 1) * cols].iter_mut().zip(row) {
                *d = (x / scale).round().clamp(-127.0, 127.0) as i8;
            }
        }
    }
    (q, scales)
}
