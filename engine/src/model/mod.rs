//! The BERT-family encoder and the multi-label heads, over weights viewed in the model file.
//!
//! Sequences are processed without padding: the token rows of every sequence in a batch are
//! concatenated (`cu_seqlens` style), the linear layers run once over all rows, and attention
//! runs per sequence over its own length only.

use crate::error::{Error, Result};
use crate::format::{Architecture, HeadMeta, ModelFile, Pooling, TensorData};
use crate::kernels::attention;
use crate::kernels::wide::{add_assign, gelu, layer_norm};
use crate::kernels::{scalar::quant, Kernels, PackedB};
use crate::linalg::{sgemm, sigmoid, View};

/// A weight matrix as stored: f32 used in place, f16 and i8 widened to f32 on use; packed int8
/// used in place by the int8 kernels.
#[derive(Clone, Debug)]
pub(crate) enum Store<'a> {
    F32(&'a [f32]),
    F16(&'a [half::f16]),
    I8 { q: &'a [i8], scale: &'a [f32] },
    Packed { b: PackedB<'a>, scale: &'a [f32], colsum: &'a [i32] },
}

/// A `rows × cols` row-major matrix in the model file.
#[derive(Clone, Debug)]
pub(crate) struct Mat<'a> {
    pub store: Store<'a>,
    pub rows: usize,
    pub cols: usize,
}

impl<'a> Mat<'a> {
    /// The whole matrix as f32: borrowed when stored as f32, else widened into `buf`.
    pub fn as_f32<'b>(&self, buf: &'b mut Vec<f32>) -> &'b [f32]
    where
        'a: 'b,
    {
        match &self.store {
            Store::F32(v) => v,
            Store::F16(v) => {
                buf.resize(v.len(), 0.0);
                half::slice::HalfFloatSliceExt::convert_to_f32_slice(*v, buf);
                buf
            }
            Store::I8 { q, scale } => {
                buf.resize(q.len(), 0.0);
                for (r, (dst, src)) in
                    buf.chunks_exact_mut(self.cols).zip(q.chunks_exact(self.cols)).enumerate()
                {
                    let s = scale[r];
                    for (d, &x) in dst.iter_mut().zip(src) {
                        *d = x as f32 * s;
                    }
                }
                buf
            }
            Store::Packed { b, scale, .. } => {
                buf.resize(self.rows * self.cols, 0.0);
                for (j, dst) in buf.chunks_exact_mut(self.cols).enumerate() {
                    for (l, d) in dst.iter_mut().enumerate() {
                        *d = b.get(j, l) as f32 * scale[j];
                    }
                }
                buf
            }
        }
    }

    /// Adds row `r` (as f32) into `out`.
    pub fn add_row(&self, r: usize, out: &mut [f32]) {
        let c = self.cols;
        match &self.store {
            Store::F32(v) => out.iter_mut().zip(&v[r * c..(r + 1) * c]).for_each(|(o, x)| *o += x),
            Store::F16(v) => {
                // Widened a block at a time by `half`'s slice conversion (F16C where the CPU has
                // it; exact either way), then added: a per-element `to_f32` is a call per value.
                let mut tmp = [0f32; 64];
                for (o, x) in out.chunks_mut(64).zip(v[r * c..(r + 1) * c].chunks(64)) {
                    let t = &mut tmp[..x.len()];
                    half::slice::HalfFloatSliceExt::convert_to_f32_slice(x, t);
                    o.iter_mut().zip(t.iter()).for_each(|(o, x)| *o += x);
                }
            }
            Store::I8 { q, scale } => {
                let s = scale[r];
                out.iter_mut().zip(&q[r * c..(r + 1) * c]).for_each(|(o, &x)| *o += x as f32 * s)
            }
            Store::Packed { b, scale, .. } => {
                out.iter_mut().enumerate().for_each(|(l, o)| *o += b.get(r, l) as f32 * scale[r])
            }
        }
    }
}

/// `y = x · Wᵀ + b` with `W` of shape `[out, in]` (PyTorch `nn.Linear` layout).
#[derive(Clone, Debug)]
pub(crate) struct Linear<'a> {
    pub w: Mat<'a>,
    pub b: &'a [f32],
}

/// Per-thread buffers of the linear layers (reused, grown only when a batch is larger).
#[derive(Default, Debug)]
pub(crate) struct LinBuf {
    /// Weights widened to f32 (f16 and i8 stores).
    w: Vec<f32>,
    /// Quantized activations, their per-row scales and zero points, and the i32 accumulators.
    qa: Vec<u8>,
    qs: Vec<f32>,
    qz: Vec<i32>,
    acc: Vec<i32>,
}

impl Linear<'_> {
    /// `y[m × out] = x[m × in] · Wᵀ + b`. Packed int8 weights: activations quantized per row,
    /// int8 GEMM on the process's kernel tier, exact integer correction, then scales and bias.
    pub fn forward(&self, x: &[f32], m: usize, y: &mut [f32], buf: &mut LinBuf) {
        self.forward_shared(x, m, y, buf, false)
    }

    /// As [`Linear::forward`]; with `reuse`, the activations quantized by the previous call
    /// (same `x`, same `m`) are used again: Q, K and V share one quantization of their input.
    pub fn forward_shared(
        &self,
        x: &[f32],
        m: usize,
        y: &mut [f32],
        buf: &mut LinBuf,
        reuse: bool,
    ) {
        let (n, k) = (self.w.rows, self.w.cols);
        if let Store::Packed { b, scale, colsum } = &self.w.store {
            if !reuse || buf.qa.len() != m * k {
                buf.qa.resize(m * k, 0);
                buf.qs.resize(m, 0.0);
                buf.qz.resize(m, 0);
                quant::quantize_rows_u8(x, m, k, &mut buf.qa, &mut buf.qs, &mut buf.qz);
            }
            buf.acc.resize(m * n, 0);
            Kernels::detect().gemm_u8i8_i32(&buf.qa, m, k, b, &mut buf.acc);
            quant::dequantize(&buf.acc, m, n, &buf.qs, &buf.qz, scale, colsum, self.b, y);
            return;
        }
        let w = self.w.as_f32(&mut buf.w);
        for row in y[..m * n].chunks_exact_mut(n) {
            row.copy_from_slice(self.b);
        }
        sgemm(m, n, k, View::rows(x, k), View::transposed(w, k), y, n, true);
    }

    /// As [`Linear::forward`], but each output row computed on its own with a fixed summation
    /// order, so a row's result never depends on how many rows were passed (the heads and the
    /// pooler, whose batch is the number of turns).
    pub fn forward_rows(&self, x: &[f32], m: usize, y: &mut [f32], buf: &mut LinBuf) {
        let (n, k) = (self.w.rows, self.w.cols);
        let w = self.w.as_f32(&mut buf.w);
        for i in 0..m {
            let xi = &x[i * k..(i + 1) * k];
            for j in 0..n {
                y[i * n + j] = dot(xi, &w[j * k..(j + 1) * k]) + self.b[j];
            }
        }
    }
}

/// Dot product with 16 independent partial sums (vectorizes; fixed order, so deterministic).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 16];
    let (ca, cb) = (a.chunks_exact(16), b.chunks_exact(16));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for t in 0..16 {
            acc[t] += x[t] * y[t];
        }
    }
    for (t, (x, y)) in ra.iter().zip(rb).enumerate() {
        acc[t] += x * y;
    }
    acc.iter().sum()
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct Norm<'a> {
    pub g: &'a [f32],
    pub b: &'a [f32],
}

#[derive(Clone, Debug)]
pub(crate) struct Layer<'a> {
    pub q: Linear<'a>,
    pub k: Linear<'a>,
    pub v: Linear<'a>,
    pub attn_out: Linear<'a>,
    pub ln1: Norm<'a>,
    pub ffn_in: Linear<'a>,
    pub ffn_out: Linear<'a>,
    pub ln2: Norm<'a>,
}

/// All weights of one model, viewed in its file. Built per call (a few hundred lookups).
#[derive(Clone, Debug)]
pub(crate) struct Weights<'a> {
    pub arch: &'a Architecture,
    pub word: Mat<'a>,
    pub pos: Mat<'a>,
    pub tok_type: Mat<'a>,
    pub emb_ln: Norm<'a>,
    pub layers: Vec<Layer<'a>>,
    pub pooler: Option<Linear<'a>>,
    pub topics: Option<Linear<'a>>,
    pub sensitive: Option<Linear<'a>>,
}

fn shape_err(name: &str, want: &[usize], got: &[u64]) -> Error {
    Error::format(format!("tensor {name:?} has shape {got:?}, expected {want:?}"))
}

impl<'a> Weights<'a> {
    /// Resolves and shape-checks every tensor the architecture needs.
    pub fn new(m: &'a ModelFile) -> Result<Weights<'a>> {
        let arch = &m.meta().architecture;
        let h = arch.hidden_size as usize;
        let inter = arch.intermediate_size as usize;
        let mat = |name: &str, rows: usize, cols: usize| -> Result<Mat<'a>> {
            let (data, shape) = m.tensor(name)?;
            if shape != [rows as u64, cols as u64] {
                return Err(shape_err(name, &[rows, cols], shape));
            }
            let store = match data {
                TensorData::F32(v) => Store::F32(v),
                TensorData::F16(v) => Store::F16(v),
                TensorData::I8(q) => {
                    let sname = format!("{name}.scale");
                    let (s, sshape) = m.tensor(&sname)?;
                    match s {
                        TensorData::F32(scale) if sshape == [rows as u64] => {
                            if let Some(bad) = scale.iter().find(|x| !x.is_finite()) {
                                return Err(Error::format(format!(
                                    "tensor {sname:?} holds a non-finite scale {bad}"
                                )));
                            }
                            Store::I8 { q, scale }
                        }
                        _ => return Err(shape_err(&sname, &[rows], sshape)),
                    }
                }
                TensorData::I8K4N16(q) => {
                    let b = PackedB::from_packed(q, rows, cols)
                        .map_err(|e| Error::format(format!("tensor {name:?}: {e}")))?;
                    let sname = format!("{name}.scale");
                    let scale = match m.tensor(&sname)? {
                        (TensorData::F32(s), sh) if sh == [rows as u64] => s,
                        (_, sh) => return Err(shape_err(&sname, &[rows], sh)),
                    };
                    if let Some(bad) = scale.iter().find(|x| !x.is_finite()) {
                        return Err(Error::format(format!(
                            "tensor {sname:?} holds a non-finite scale {bad}"
                        )));
                    }
                    let cname = format!("{name}.colsum");
                    let colsum = match m.tensor(&cname)? {
                        (TensorData::I32(s), sh) if sh == [rows as u64] => s,
                        (_, sh) => return Err(shape_err(&cname, &[rows], sh)),
                    };
                    Store::Packed { b, scale, colsum }
                }
                TensorData::I32(_) => {
                    return Err(Error::format(format!(
                        "tensor {name:?} is i32, which is not a weight matrix type"
                    )))
                }
            };
            Ok(Mat { store, rows, cols })
        };
        let vec = |name: &str, len: usize| -> Result<&'a [f32]> {
            match m.tensor(name)? {
                (TensorData::F32(v), shape) if shape == [len as u64] => Ok(v),
                (_, shape) => Err(shape_err(name, &[len], shape)),
            }
        };
        let lin = |name: &str, out: usize, inp: usize| -> Result<Linear<'a>> {
            Ok(Linear {
                w: mat(&format!("{name}.weight"), out, inp)?,
                b: vec(&format!("{name}.bias"), out)?,
            })
        };
        let norm = |name: &str| -> Result<Norm<'a>> {
            Ok(Norm { g: vec(&format!("{name}.weight"), h)?, b: vec(&format!("{name}.bias"), h)? })
        };
        // The embeddings first: a file whose first tensor is already wrong says so, rather than
        // that some later tensor is missing.
        let word = mat("embeddings.word_embeddings.weight", arch.vocab_size as usize, h)?;
        let pos =
            mat("embeddings.position_embeddings.weight", arch.max_position_embeddings as usize, h)?;
        let tok_type =
            mat("embeddings.token_type_embeddings.weight", arch.type_vocab_size as usize, h)?;
        let emb_ln = norm("embeddings.LayerNorm")?;
        let mut layers = Vec::with_capacity(arch.num_layers as usize);
        for i in 0..arch.num_layers {
            let p = format!("encoder.layer.{i}");
            layers.push(Layer {
                q: lin(&format!("{p}.attention.self.query"), h, h)?,
                k: lin(&format!("{p}.attention.self.key"), h, h)?,
                v: lin(&format!("{p}.attention.self.value"), h, h)?,
                attn_out: lin(&format!("{p}.attention.output.dense"), h, h)?,
                ln1: norm(&format!("{p}.attention.output.LayerNorm"))?,
                ffn_in: lin(&format!("{p}.intermediate.dense"), inter, h)?,
                ffn_out: lin(&format!("{p}.output.dense"), h, inter)?,
                ln2: norm(&format!("{p}.output.LayerNorm"))?,
            });
        }
        let pooler = match arch.pooling {
            Pooling::ClsPooler => Some(lin("pooler.dense", h, h)?),
            _ => None,
        };
        let head = |hm: &Option<HeadMeta>| -> Result<Option<Linear<'a>>> {
            let Some(hm) = hm else { return Ok(None) };
            let n = hm.labels.len();
            Ok(Some(Linear { w: mat(&hm.weight, n, h)?, b: vec(&hm.bias, n)? }))
        };
        Ok(Weights {
            arch,
            word,
            pos,
            tok_type,
            emb_ln,
            layers,
            pooler,
            topics: head(&m.meta().topics)?,
            sensitive: head(&m.meta().sensitive)?,
        })
    }
}

/// Checks everything the engine needs of a model beyond the file format: every tensor the
/// architecture names is present with its shape (heads with one row per label), no weight is NaN
/// or infinite, and no encoder layer exists past `num_layers`. [`crate::Engine::new`], `inspect`
/// and the converter all call this one function, so a file one of them refuses, all refuse.
///
/// # Errors
/// [`Error::Format`] naming the tensor and the problem.
pub fn validate(m: &ModelFile) -> Result<()> {
    if m.meta().tensors.iter().any(|t| t.name.is_empty()) {
        return Err(Error::format("a tensor has an empty name"));
    }
    Weights::new(m)?;
    let layers = m.meta().architecture.num_layers;
    for t in &m.meta().tensors {
        if t.name.is_empty() {
            return Err(Error::format("a tensor has an empty name"));
        }
        if let Some(rest) = t.name.strip_prefix("encoder.layer.") {
            let i: Option<u64> = rest.split('.').next().and_then(|n| n.parse().ok());
            if i.is_none_or(|i| i >= layers) {
                return Err(Error::format(format!(
                    "tensor {:?} belongs to no layer of the architecture (num_layers {layers})",
                    t.name
                )));
            }
        }
        let bad = match m.tensor(&t.name)?.0 {
            TensorData::F32(v) => v.iter().position(|x| !x.is_finite()),
            TensorData::F16(v) => v.iter().position(|x| !x.is_finite()),
            _ => None,
        };
        if let Some(i) = bad {
            return Err(Error::format(format!(
                "tensor {:?} holds a NaN or infinite value (element {i}): the model would score \
                 nonsense",
                t.name
            )));
        }
    }
    Ok(())
}

/// Reusable buffers for one thread's forward passes.
#[derive(Default, Debug)]
pub struct Scratch {
    x: Vec<f32>,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    ctx: Vec<f32>,
    tmp: Vec<f32>,
    inter: Vec<f32>,
    scores: Vec<f32>,
    wbuf: LinBuf,
    /// int8 encoders: the hidden state quantized (`qa`, valid when `qx`), a second `hidden`-wide
    /// set for the attention output, the FFN's middle quantized, the i32 accumulators, one row.
    qa: Quantized,
    qb: Quantized,
    qi: Quantized,
    qx: bool,
    acc: Vec<i32>,
    row: Vec<f32>,
}

/// Quantized activations: bytes, per-row scales and zero points.
#[derive(Default, Debug)]
struct Quantized {
    q: Vec<u8>,
    scale: Vec<f32>,
    zp: Vec<i32>,
}

impl Quantized {
    fn resize(&mut self, m: usize, k: usize) {
        self.q.resize(m * k, 0);
        self.scale.resize(m, 0.0);
        self.zp.resize(m, 0);
    }
    fn out(&mut self) -> quant::QuantOut<'_> {
        quant::QuantOut { q: &mut self.q, scale: &mut self.scale, zp: &mut self.zp }
    }
}

/// Runs the encoder over `seqs` (token ids with special tokens, each at most `max_seq_len`
/// long and non-empty) and returns the pooled vectors, `seqs.len() × hidden`, row-major.
///
/// # Errors
/// [`Error::Invalid`] for an empty or too long sequence or an out-of-vocabulary id.
///
/// `segb[i] = Some(b)` makes sequence `i` a sentence pair whose second segment starts at token
/// `b`: those tokens get token type 1, and mean pooling covers them only (the turn, read in the
/// light of the context before it). `segb` may be empty (no pairs).
pub(crate) fn encode(
    w: &Weights<'_>,
    seqs: &[&[u32]],
    segb: &[Option<usize>],
    s: &mut Scratch,
) -> Result<Vec<f32>> {
    let a = w.arch;
    let h = a.hidden_size as usize;
    let inter = a.intermediate_size as usize;
    let eps = a.layer_norm_eps;
    for (i, seq) in seqs.iter().enumerate() {
        if seq.is_empty() || seq.len() as u64 > a.max_seq_len {
            return Err(Error::Invalid(format!(
                "sequence {i} has {} tokens (allowed 1..={})",
                seq.len(),
                a.max_seq_len
            )));
        }
        if let Some(&bad) = seq.iter().find(|&&t| t as u64 >= a.vocab_size) {
            return Err(Error::Invalid(format!("token id {bad} is outside the vocabulary")));
        }
    }
    let m: usize = seqs.iter().map(|s| s.len()).sum();
    let seg = |i: usize| segb.get(i).copied().flatten();
    if w.arch.type_vocab_size < 2 && (0..seqs.len()).any(|i| seg(i).is_some()) {
        return Err(Error::Invalid(
            "this model has no second token type for sentence pairs".into(),
        ));
    }
    // Embeddings: word + position + token type (0, or 1 for a pair's second segment), then
    // LayerNorm.
    s.x.clear();
    s.x.resize(m * h, 0.0);
    let mut row = 0;
    for (i, seq) in seqs.iter().enumerate() {
        let b = seg(i).unwrap_or(usize::MAX);
        for (p, &t) in seq.iter().enumerate() {
            let out = &mut s.x[row * h..(row + 1) * h];
            w.word.add_row(t as usize, out);
            w.pos.add_row(p, out);
            w.tok_type.add_row(usize::from(p >= b), out);
            row += 1;
        }
    }
    layer_norm(&mut s.x, h, w.emb_ln.g, w.emb_ln.b, eps);
    s.qx = false;

    for buf in [&mut s.q, &mut s.k, &mut s.v, &mut s.ctx, &mut s.tmp] {
        buf.resize(m * h, 0.0);
    }
    s.inter.resize(m * inter, 0.0);
    let lens: Vec<usize> = seqs.iter().map(|q| q.len()).collect();
    for layer in &w.layers {
        layer_forward(a, layer, &lens, s);
    }

    // Pooling.
    let mut pooled = vec![0f32; seqs.len() * h];
    let mut start = 0;
    for (i, seq) in seqs.iter().enumerate() {
        let out = &mut pooled[i * h..(i + 1) * h];
        let rows = &s.x[start * h..(start + seq.len()) * h];
        match a.pooling {
            Pooling::Mean => {
                let from = seg(i).unwrap_or(0).min(seq.len() - 1);
                for r in rows.chunks_exact(h).skip(from) {
                    out.iter_mut().zip(r).for_each(|(o, x)| *o += x);
                }
                let inv = 1.0 / (seq.len() - from) as f32;
                out.iter_mut().for_each(|o| *o *= inv);
            }
            Pooling::Cls | Pooling::ClsPooler => out.copy_from_slice(&rows[..h]),
        }
        start += seq.len();
    }
    if let Some(p) = &w.pooler {
        let mut t = vec![0f32; pooled.len()];
        p.forward_rows(&pooled, seqs.len(), &mut t, &mut s.wbuf);
        t.iter_mut().for_each(|v| *v = v.tanh());
        pooled = t;
    }
    if a.normalize {
        for v in pooled.chunks_exact_mut(h) {
            let norm = v.iter().map(|&x| x as f64 * x as f64).sum::<f64>().sqrt().max(1e-12);
            v.iter_mut().for_each(|x| *x = (*x as f64 / norm) as f32);
        }
    }
    Ok(pooled)
}

/// For benchmarks (`benches/`): runs encoder layer `layer` of `model` over `x` (hidden states
/// of sequences of lengths `lens`, concatenated, `Σ lens × hidden`), in place, with `scratch`.
///
/// # Errors
/// [`Error::Invalid`] for a layer index out of range or `x` of the wrong length; format errors
/// of [`Weights::new`].
#[doc(hidden)]
pub fn bench_layer(
    model: &ModelFile,
    layer: usize,
    x: &mut Vec<f32>,
    lens: &[usize],
    scratch: &mut Scratch,
) -> Result<()> {
    let w = Weights::new(model)?;
    let a = w.arch;
    let h = a.hidden_size as usize;
    let m: usize = lens.iter().sum();
    let l = w.layers.get(layer).ok_or_else(|| Error::Invalid(format!("no layer {layer}")))?;
    if x.len() != m * h {
        return Err(Error::Invalid(format!("x has {} values, expected {}", x.len(), m * h)));
    }
    std::mem::swap(&mut scratch.x, x);
    for buf in [&mut scratch.q, &mut scratch.k, &mut scratch.v, &mut scratch.ctx, &mut scratch.tmp]
    {
        buf.resize(m * h, 0.0);
    }
    scratch.inter.resize(m * a.intermediate_size as usize, 0.0);
    scratch.qx = false;
    layer_forward(a, l, lens, scratch);
    std::mem::swap(&mut scratch.x, x);
    Ok(())
}

/// One encoder layer over the hidden states in `s.x` (`Σ lens × hidden`, sequences
/// concatenated), in place; `s`'s other buffers must hold at least as many rows.
fn layer_forward(a: &Architecture, layer: &Layer<'_>, lens: &[usize], s: &mut Scratch) {
    if layer_forward_int8(a, layer, lens, s) {
        return;
    }
    s.qx = false;
    let h = a.hidden_size as usize;
    let inter = a.intermediate_size as usize;
    let eps = a.layer_norm_eps;
    let m: usize = lens.iter().sum();
    layer.q.forward_shared(&s.x, m, &mut s.q, &mut s.wbuf, false);
    layer.k.forward_shared(&s.x, m, &mut s.k, &mut s.wbuf, true);
    layer.v.forward_shared(&s.x, m, &mut s.v, &mut s.wbuf, true);
    attention_all(a, lens, s);
    layer.attn_out.forward(&s.ctx, m, &mut s.tmp, &mut s.wbuf);
    add_assign(&mut s.tmp[..m * h], &s.x[..m * h]);
    layer_norm(&mut s.tmp, h, layer.ln1.g, layer.ln1.b, eps);
    std::mem::swap(&mut s.x, &mut s.tmp);
    layer.ffn_in.forward(&s.x, m, &mut s.inter, &mut s.wbuf);
    gelu(&mut s.inter[..m * inter]);
    layer.ffn_out.forward(&s.inter, m, &mut s.tmp, &mut s.wbuf);
    add_assign(&mut s.tmp[..m * h], &s.x[..m * h]);
    layer_norm(&mut s.tmp, h, layer.ln2.g, layer.ln2.b, eps);
    std::mem::swap(&mut s.x, &mut s.tmp);
}

/// Self-attention of every sequence and head: `s.q`, `s.k`, `s.v` into `s.ctx`.
fn attention_all(a: &Architecture, lens: &[usize], s: &mut Scratch) {
    let h = a.hidden_size as usize;
    let nh = a.num_heads as usize;
    let d = h / nh;
    let scale = 1.0 / (d as f32).sqrt();
    let mut start = 0;
    for &l in lens {
        s.scores.resize(attention::scratch_len(l, d), 0.0);
        for hd in 0..nh {
            let off = start * h + hd * d;
            attention::attention_head(
                &s.q[off..],
                &s.k[off..],
                &s.v[off..],
                &mut s.ctx[off..],
                h,
                l,
                d,
                scale,
                &mut s.scores,
            );
        }
        start += l;
    }
}

/// The int8 layer (every linear layer packed int8), with the work between the GEMMs fused:
/// the hidden state arrives quantized from the previous layer's last LayerNorm (`s.qa`, when
/// `s.qx`), the attention output's LayerNorm quantizes the FFN's input, and the FFN's middle
/// goes from accumulators through GELU to bytes in one pass. Returns false, having done
/// nothing, when a linear layer is not packed int8.
fn layer_forward_int8(
    a: &Architecture,
    layer: &Layer<'_>,
    lens: &[usize],
    s: &mut Scratch,
) -> bool {
    type Packed<'b, 'w> = (&'b PackedB<'w>, &'b [f32], &'b [i32], &'b [f32]);
    fn packed<'b, 'w>(l: &'b Linear<'w>) -> Option<Packed<'b, 'w>> {
        match &l.w.store {
            Store::Packed { b, scale, colsum } => Some((b, scale, colsum, l.b)),
            _ => None,
        }
    }
    let (Some(pq), Some(pk), Some(pv), Some(po), Some(pi), Some(pf)) = (
        packed(&layer.q),
        packed(&layer.k),
        packed(&layer.v),
        packed(&layer.attn_out),
        packed(&layer.ffn_in),
        packed(&layer.ffn_out),
    ) else {
        return false;
    };
    let h = a.hidden_size as usize;
    let inter = a.intermediate_size as usize;
    let eps = a.layer_norm_eps;
    let m: usize = lens.iter().sum();
    let kern = Kernels::detect();
    fn acc_of<'b>(acc: &'b [i32], q: &'b Quantized, p: Packed<'b, '_>) -> quant::Acc<'b> {
        quant::Acc { acc, ascale: &q.scale, zp: &q.zp, wscale: p.1, colsum: p.2, bias: p.3 }
    }
    s.acc.resize(m * h.max(inter), 0);
    s.row.resize(h.max(inter), 0.0);
    s.qa.resize(m, h);
    s.qb.resize(m, h);
    s.qi.resize(m, inter);
    if !s.qx {
        quant::quantize_rows_u8(&s.x, m, h, &mut s.qa.q, &mut s.qa.scale, &mut s.qa.zp);
    }
    // Q, K, V from one quantization of the hidden state.
    for (p, out) in [(pq, &mut s.q), (pk, &mut s.k), (pv, &mut s.v)] {
        kern.gemm_u8i8_i32(&s.qa.q, m, h, p.0, &mut s.acc);
        quant::dequantize(&s.acc, m, h, &s.qa.scale, &s.qa.zp, p.1, p.2, p.3, out);
    }
    attention_all(a, lens, s);
    quant::quantize_rows_u8(&s.ctx, m, h, &mut s.qb.q, &mut s.qb.scale, &mut s.qb.zp);
    kern.gemm_u8i8_i32(&s.qb.q, m, h, po.0, &mut s.acc);
    quant::dequantize_residual_norm_quantize(
        acc_of(&s.acc, &s.qb, po),
        m,
        h,
        &mut s.x,
        layer.ln1.g,
        layer.ln1.b,
        eps,
        &mut s.row,
        s.qa.out(),
    );
    kern.gemm_u8i8_i32(&s.qa.q, m, h, pi.0, &mut s.acc);
    quant::dequantize_gelu_quantize(acc_of(&s.acc, &s.qa, pi), m, inter, &mut s.row, s.qi.out());
    kern.gemm_u8i8_i32(&s.qi.q, m, inter, pf.0, &mut s.acc);
    quant::dequantize_residual_norm_quantize(
        acc_of(&s.acc, &s.qi, pf),
        m,
        h,
        &mut s.x,
        layer.ln2.g,
        layer.ln2.b,
        eps,
        &mut s.row,
        s.qa.out(),
    );
    s.qx = true;
    true
}

/// Applies a head to pooled vectors: sigmoid scores, `n × labels`, row-major.
pub(crate) fn head_scores(
    head: &Linear<'_>,
    pooled: &[f32],
    n: usize,
    buf: &mut LinBuf,
) -> Vec<f32> {
    let mut out = vec![0f32; n * head.w.rows];
    head.forward_rows(pooled, n, &mut out, buf);
    out.iter_mut().for_each(|v| *v = sigmoid(*v));
    out
}
