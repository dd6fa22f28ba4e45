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
            std::fs::rename(&tmp, &path)
                .with_context(|| format!("cannot move output into place at {}", path.display()))?;
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
        _ => Format::Jsonl,
    })
}

pub enum Sink {
    Jsonl(arrow_json::LineDelimitedWriter<Box<dyn Write + Send>>, Option<(PathBuf, PathBuf)>),
    Parquet(ArrowWriter<Box<dyn Write + Send>>, Option<(PathBuf, PathBuf)>),
}

impl Sink {
    pub fn new(out: Out, format: Format, schema: SchemaRef) -> Result<Sink> {
        let mut out = out;
        let target = out.target.take();
        let w = std::mem::replace(&mut out.w, Box::new(std::io::sink()));
        Ok(match format {
            Format::Jsonl => {
                // Explicit nulls: every line has every column, so consumers see one shape.
                let w = arrow_json::WriterBuilder::new().with_explicit_nulls(true).build(w);
                Sink::Jsonl(w, target)
            }
            Format::Parquet => {
                let props = WriterProperties::builder()
                    .set_compression(Compression::ZSTD(ZstdLevel::default()))
                    .build();
                Sink::Parquet(ArrowWriter::try_new(w, schema, Some(props))?, target)
            }
        })
    }

    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        match self {
            Sink::Jsonl(w, _) => w.write(batch).context("cannot write JSONL output")?,
            Sink::Parquet(w, _) => w.write(batch).context("cannot write Parquet output")?,
        }
        Ok(())
    }

    pub fn finish(self) -> Result<()> {
        let (mut w, target) = match self {
            Sink::Jsonl(mut j, t) => {
                j.finish()?;
                (j.into_inner(), t)
            }
            Sink::Parquet(p, t) => (p.into_inner().context("cannot finish Parquet output")?, t),
        };
        w.flush().context("cannot write output")?;
        Out { w, target }.finish()
    }
}
