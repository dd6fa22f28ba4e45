//! Output sinks: Arrow record batches to JSONL or Parquet, on a file or standard output.

use anyhow::{Context, Result};
use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::Format;

/// Where output goes: a file written to a temporary name and renamed when complete, or stdout.
pub struct Out {
    pub w: Box<dyn Write + Send>,
    target: Option<(PathBuf, PathBuf)>,
}

impl Out {
    pub fn open(path: &Path) -> Result<Out> {
        if path == Path::new("-") {
            return Ok(Out { w: Box::new(BufWriter::new(std::io::stdout())), target: None });
        }
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let tmp = dir.join(format!(".{name}.{}.partial", std::process::id()));
        let f = std::fs::File::create(&tmp)
            .with_context(|| format!("cannot create output {}", path.display()))?;
        Ok(Out { w: Box::new(BufWriter::new(f)), target: Some((tmp, path.to_path_buf())) })
    }

    /// Flushes and, for a file, renames it into place: a failed job leaves no half output.
    pub fn finish(mut self) -> Result<()> {
        self.w.flush().context("cannot write output")?;
        drop(std::mem::replace(&mut self.w, Box::new(std::io::sink())));
        if let Some((tmp, path)) = self.target.take() {
            if let Err(e) = std::fs::rename(&tmp, &path) {
                let _ = std::fs::remove_file(&tmp);
                return Err(e).with_context(|| {
                    format!("cannot move output into place at {}", path.display())
                });
            }
        }
        Ok(())
    }
}

impl Drop for Out {
    fn drop(&mut self) {
        if let Some((tmp, _)) = &self.target {
            let _ = std::fs::remove_file(tmp);
        }
    }
}

pub fn format_for(path: &Path, format: Option<Format>) -> Format {
    format.unwrap_or_else(|| match path.extension().and_then(|e| e.to_str()) {
        Some("parquet") | Some("pq") => Format::Parquet,
        Some("arrow") | Some("ipc") | Some("feather") => Format::Arrow,
        _ => Format::Jsonl,
    })
}

/// Deletes a temporary output file unless the job finished: a failed job leaves nothing behind.
struct Guard(Option<(PathBuf, PathBuf)>);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some((tmp, _)) = &self.0 {
            let _ = std::fs::remove_file(tmp);
        }
    }
}

enum Writer {
    Jsonl(arrow_json::LineDelimitedWriter<Box<dyn Write + Send>>),
    Parquet(ArrowWriter<Box<dyn Write + Send>>),
    Arrow(arrow_ipc::writer::FileWriter<Box<dyn Write + Send>>),
}

/// Record batches to JSONL or Parquet.
pub struct Sink {
    w: Writer,
    guard: Guard,
}

impl Sink {
    pub fn new(out: Out, format: Format, schema: SchemaRef) -> Result<Sink> {
        let mut out = out;
        let target = out.target.take();
        let guard = Guard(target);
        let w = std::mem::replace(&mut out.w, Box::new(std::io::sink()));
        let w = match format {
            // Explicit nulls: every line has every column, so consumers see one shape.
            Format::Jsonl => {
                Writer::Jsonl(arrow_json::WriterBuilder::new().with_explicit_nulls(true).build(w))
            }
            Format::Parquet => {
                let props = WriterProperties::builder()
                    .set_compression(Compression::ZSTD(ZstdLevel::default()))
                    .build();
                Writer::Parquet(ArrowWriter::try_new(w, schema, Some(props))?)
            }
            Format::Arrow => Writer::Arrow(arrow_ipc::writer::FileWriter::try_new(w, &schema)?),
        };
        Ok(Sink { w, guard })
    }

    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        match &mut self.w {
            Writer::Jsonl(w) => w.write(batch).context("cannot write JSONL output")?,
            Writer::Parquet(w) => w.write(batch).context("cannot write Parquet output")?,
            Writer::Arrow(w) => w.write(batch).context("cannot write Arrow output")?,
        }
        Ok(())
    }

    pub fn finish(self) -> Result<()> {
        let Sink { w, mut guard } = self;
        let mut w = match w {
            Writer::Jsonl(mut j) => {
                j.finish()?;
                j.into_inner()
            }
            Writer::Parquet(p) => p.into_inner().context("cannot finish Parquet output")?,
            Writer::Arrow(mut a) => {
                a.finish().context("cannot finish Arrow output")?;
                a.into_inner().context("cannot finish Arrow output")?
            }
        };
        w.flush().context("cannot write output")?;
        // Out::finish renames into place, and removes the temporary file if that fails.
        Out { w, target: guard.0.take() }.finish()
    }
}
