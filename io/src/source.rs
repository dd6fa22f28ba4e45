//! Input sources: JSONL (plain, gzip, zstd), Parquet and Arrow IPC files, several files or globs,
//! or standard input, read in bounded chunks of rows.

use crate::columnar::BatchRows;
use anyhow::{bail, Context, Result};
use arrow_array::RecordBatch;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use turnscore::input::{JsonlReader, ReadOptions, Row};

/// The format of one input.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum InFormat {
    /// JSON lines; `.gz` and `.zst` files are decompressed.
    Jsonl,
    /// Apache Parquet.
    Parquet,
    /// Arrow IPC, file or stream format.
    Arrow,
}

/// One input to read.
#[derive(Clone, Debug)]
pub struct Input {
    /// The path, or `-` for standard input.
    pub path: PathBuf,
    /// Its format.
    pub format: InFormat,
    /// Its size in bytes (None for standard input).
    pub size: Option<u64>,
}

impl Input {
    /// A name for messages.
    pub fn name(&self) -> String {
        if self.is_stdin() {
            "<stdin>".into()
        } else {
            self.path.display().to_string()
        }
    }
    fn is_stdin(&self) -> bool {
        self.path == Path::new("-")
    }
}

fn format_of(path: &Path) -> InFormat {
    let name = path.file_name().map(|n| n.to_string_lossy().to_lowercase()).unwrap_or_default();
    let name = name.trim_end_matches(".gz").trim_end_matches(".zst");
    if name.ends_with(".parquet") || name.ends_with(".pq") {
        InFormat::Parquet
    } else if name.ends_with(".arrow")
        || name.ends_with(".arrows")
        || name.ends_with(".ipc")
        || name.ends_with(".feather")
    {
        InFormat::Arrow
    } else {
        InFormat::Jsonl
    }
}

/// Expands paths and globs into inputs, in the order given (each glob's matches sorted).
///
/// # Errors
/// A missing file, a glob that matches nothing, or `-` given more than once.
pub fn expand(args: &[String], forced: Option<InFormat>) -> Result<Vec<Input>> {
    let mut out = Vec::new();
    for a in args {
        if a == "-" {
            if out.iter().any(Input::is_stdin) {
                bail!("standard input (-) can be read only once");
            }
            out.push(Input {
                path: "-".into(),
                format: forced.unwrap_or(InFormat::Jsonl),
                size: None,
            });
            continue;
        }
        let paths: Vec<PathBuf> = if a.contains(['*', '?', '[']) {
            let mut v: Vec<PathBuf> = glob::glob(a)
                .with_context(|| format!("bad glob pattern {a:?}"))?
                .collect::<Result<_, _>>()
                .with_context(|| format!("cannot read a match of {a:?}"))?;
            v.sort();
            if v.is_empty() {
                bail!("no input file matches {a:?}");
            }
            v
        } else {
            vec![PathBuf::from(a)]
        };
        for p in paths {
            let md = std::fs::metadata(&p)
                .with_context(|| format!("cannot open input {}", p.display()))?;
            if md.is_dir() {
                bail!(
                    "input {} is a directory; give files or a glob such as '{}/*.jsonl'",
                    p.display(),
                    p.display()
                );
            }
            let format = forced.unwrap_or_else(|| format_of(&p));
            out.push(Input { path: p, format, size: Some(md.len()) });
        }
    }
    if out.is_empty() {
        bail!("no input given");
    }
    Ok(out)
}

/// Counts bytes read from the underlying file (compressed bytes for compressed input).
struct Counting<R> {
    inner: R,
    n: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let k = self.inner.read(buf)?;
        self.n.fetch_add(k as u64, Ordering::Relaxed);
        Ok(k)
    }
}

type Batches = Box<dyn Iterator<Item = Result<RecordBatch, arrow_schema::ArrowError>> + Send>;

enum Kind {
    Jsonl(Box<JsonlReader<Box<dyn BufRead + Send>>>),
    Batches(BatchRows<Batches>),
}

/// Reads one input in chunks of rows.
pub struct Source {
    kind: Kind,
    name: String,
    /// Bytes consumed from the file so far (for progress).
    pub bytes: Arc<AtomicU64>,
}

impl Source {
    /// Opens an input.
    ///
    /// # Errors
    /// The file cannot be opened or is not of its format.
    pub fn open(input: &Input, opts: &ReadOptions, chunk_rows: usize) -> Result<Source> {
        let name = input.name();
        let bytes = Arc::new(AtomicU64::new(0));
        let raw: Box<dyn Read + Send> = if input.is_stdin() {
            Box::new(std::io::stdin())
        } else {
            Box::new(
                std::fs::File::open(&input.path)
                    .with_context(|| format!("cannot open input {name}"))?,
            )
        };
        let counted = Counting { inner: raw, n: bytes.clone() };
        let kind = match input.format {
            InFormat::Jsonl => {
                // Compression is told by the stream's first bytes (so gzip or zstd on standard
                // input, or under any name, is decompressed); a .gz or .zst name whose bytes
                // say otherwise is an error.
                let lower = name.to_lowercase();
                // Up to 4 bytes, however the pipe splits them, then the rest of the stream.
                let mut counted = counted;
                let mut head = Vec::with_capacity(4);
                (&mut counted)
                    .take(4)
                    .read_to_end(&mut head)
                    .with_context(|| format!("cannot read input {name}"))?;
                let gz = head.starts_with(&[0x1f, 0x8b]);
                let zst = head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]);
                let empty = head.is_empty();
                let br =
                    BufReader::with_capacity(1 << 20, std::io::Cursor::new(head).chain(counted));
                if lower.ends_with(".gz") && !gz && !empty {
                    bail!("{name}: not a gzip stream (its name ends in .gz)");
                }
                if lower.ends_with(".zst") && !zst && !empty {
                    bail!("{name}: not a zstd stream (its name ends in .zst)");
                }
                let r: Box<dyn BufRead + Send> = if gz {
                    Box::new(BufReader::new(flate2::read::MultiGzDecoder::new(br)))
                } else if zst {
                    let d = zstd::stream::read::Decoder::with_buffer(br)
                        .with_context(|| format!("{name}: not a zstd stream"))?;
                    Box::new(BufReader::with_capacity(1 << 20, d))
                } else {
                    Box::new(br)
                };
                Kind::Jsonl(Box::new(JsonlReader::new(r).with_options(opts.clone())))
            }
            InFormat::Parquet => {
                if input.is_stdin() {
                    bail!(
                        "Parquet cannot be read from standard input (it needs a file to seek in)"
                    );
                }
                let f = std::fs::File::open(&input.path)
                    .with_context(|| format!("cannot open input {name}"))?;
                bytes.store(input.size.unwrap_or(0) / 2, Ordering::Relaxed);
                let r = crate::columnar::open_parquet(f, chunk_rows, &name)?;
                Kind::Batches(BatchRows::new(Box::new(r), &name, opts.clone()))
            }
            InFormat::Arrow => {
                let mut br = BufReader::new(counted);
                let is_file = br.fill_buf().map(|b| b.starts_with(b"ARROW1")).unwrap_or(false);
                let it: Batches = if is_file {
                    if input.is_stdin() {
                        bail!("the Arrow IPC file format cannot be read from standard input; use the stream format");
                    }
                    let f = std::fs::File::open(&input.path)?;
                    let len = f.metadata()?.len();
                    Box::new(crate::columnar::open_arrow_file(f, len, &name)?)
                } else {
                    Box::new(crate::columnar::open_arrow_stream(br, &name)?)
                };
                Kind::Batches(BatchRows::new(it, &name, opts.clone()))
            }
        };
        Ok(Source { kind, name, bytes })
    }

    /// The input's name, for messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Blank lines skipped (JSONL only).
    pub fn blank_lines(&self) -> u64 {
        match &self.kind {
            Kind::Jsonl(r) => r.blank_lines(),
            Kind::Batches(..) => 0,
        }
    }

    /// The next rows, at most `max`; empty at the end of the input.
    ///
    /// # Errors
    /// An I/O or decoding error, naming the input.
    pub fn next_chunk(&mut self, max: usize) -> Result<Vec<Row>> {
        match &mut self.kind {
            Kind::Jsonl(r) => {
                r.next_chunk(max).with_context(|| format!("cannot read {}", self.name))
            }
            Kind::Batches(b) => {
                let mut out = Vec::new();
                while out.len() < max {
                    let more = b.next_rows(max - out.len())?;
                    if more.is_empty() {
                        break;
                    }
                    out.extend(more);
                }
                Ok(out)
            }
        }
    }

    /// Reads and discards `n` rows (to resume a job).
    ///
    /// # Errors
    /// As [`Source::next_chunk`]; also if the input has fewer than `n` rows (it changed).
    pub fn skip_rows(&mut self, mut n: u64) -> Result<()> {
        while n > 0 {
            let got = self.next_chunk(n.min(65_536) as usize)?.len() as u64;
            if got == 0 {
                bail!(
                    "{} has fewer rows than the interrupted job read: the input changed",
                    self.name
                );
            }
            n -= got;
        }
        Ok(())
    }
}

fn _assert_send() {
    fn is_send<T: Send>() {}
    is_send::<Source>();
}
