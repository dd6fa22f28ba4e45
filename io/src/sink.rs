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

/// Temporary files not yet renamed into place. SIGINT and SIGTERM remove them before
/// the process exits (see [`install_signal_cleanup`]); a kill -9 cannot, and a resumed shard job
/// removes what such a kill left.
static TEMPORARY: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());

fn temporary(path: &Path, add: bool) {
    let mut t = TEMPORARY.lock().unwrap_or_else(|e| e.into_inner());
    if add {
        t.push(path.to_path_buf());
    } else {
        t.retain(|p| p != path);
    }
}

/// On SIGINT or SIGTERM: remove the temporary files of outputs being written, then exit with
/// 130 (the shell's code for an interrupted command). Committed shards and progress records
/// stay, so the same command resumes the job. The handlers are installed whatever the signals'
/// inherited disposition (a job started in the background of a script inherits an ignored
/// SIGINT); SIGHUP is left alone, so `nohup` keeps working.
pub fn install_signal_cleanup() {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = match signal_hook::iterator::Signals::new([SIGINT, SIGTERM]) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("turnscore: warning: cannot watch SIGINT/SIGTERM ({e}); an interrupted job may leave a .partial file");
            return;
        }
    };
    let spawned = std::thread::Builder::new().name("turnscore-signals".into()).spawn(move || {
        if signals.forever().next().is_some() {
            let t = TEMPORARY.lock().unwrap_or_else(|e| e.into_inner());
            for p in t.iter() {
                let _ = std::fs::remove_file(p);
            }
            eprintln!("turnscore: interrupted; unfinished output removed");
            std::process::exit(130);
        }
    });
    if let Err(e) = spawned {
        eprintln!("turnscore: warning: cannot watch SIGINT/SIGTERM ({e})");
    }
}

/// Where output goes: a regular file written to a temporary name and renamed when complete;
/// stdout; or a device, FIFO or socket (`/dev/null`, a named pipe), written as a stream in place
/// and never renamed over.
pub struct Out {
    pub w: Box<dyn Write + Send>,
    target: Option<(PathBuf, PathBuf)>,
    /// For messages: the path, or `<stdout>`.
    pub name: String,
}

impl Out {
    pub fn open(path: &Path) -> Result<Out> {
        if path == Path::new("-") {
            return Ok(Out {
                w: Box::new(BufWriter::new(std::io::stdout())),
                target: None,
                name: "<stdout>".into(),
            });
        }
        let shown = path.display().to_string();
        if is_stream(path) {
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(path)
                .with_context(|| format!("cannot open output {shown}"))?;
            return Ok(Out { w: Box::new(BufWriter::new(f)), target: None, name: shown });
        }
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let tmp = dir.join(format!(".{name}.{}.partial", std::process::id()));
        temporary(&tmp, true);
        let f =
            std::fs::File::create(&tmp).with_context(|| format!("cannot create output {shown}"))?;
        Ok(Out {
            w: Box::new(BufWriter::new(f)),
            target: Some((tmp, path.to_path_buf())),
            name: shown,
        })
    }

    /// Flushes and, for a file, renames it into place: a failed job leaves no half output.
    pub fn finish(mut self) -> Result<()> {
        let name = self.name.clone();
        self.w.flush().with_context(|| format!("cannot write {name}"))?;
        drop(std::mem::replace(&mut self.w, Box::new(std::io::sink())));
        if let Some((tmp, path)) = self.target.take() {
            // Only a regular file (or nothing) is ever replaced by the rename.
            if is_stream(&path) {
                let _ = std::fs::remove_file(&tmp);
                temporary(&tmp, false);
                anyhow::bail!(
                    "{} became a device or pipe while the job ran; not replaced",
                    path.display()
                );
            }
            let r = std::fs::rename(&tmp, &path);
            temporary(&tmp, false);
            if let Err(e) = r {
                let _ = std::fs::remove_file(&tmp);
                return Err(e).with_context(|| {
                    format!("cannot move output into place at {}", path.display())
                });
            }
        }
        Ok(())
    }
}

/// Whether `path` exists and is not a regular file or directory: a device, FIFO or socket,
/// which is written in place as a stream.
pub fn is_stream(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| !m.is_file() && !m.is_dir())
}

impl Drop for Out {
    fn drop(&mut self) {
        if let Some((tmp, _)) = &self.target {
            let _ = std::fs::remove_file(tmp);
            temporary(tmp, false);
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
            temporary(tmp, false);
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
    name: String,
}

impl Sink {
    pub fn new(out: Out, format: Format, schema: SchemaRef) -> Result<Sink> {
        let mut out = out;
        let target = out.target.take();
        let guard = Guard(target);
        let name = out.name.clone();
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
        Ok(Sink { w, guard, name })
    }

    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        match &mut self.w {
            Writer::Jsonl(w) => {
                w.write(batch).with_context(|| format!("cannot write {}", self.name))?
            }
            Writer::Parquet(w) => {
                w.write(batch).with_context(|| format!("cannot write {}", self.name))?
            }
            Writer::Arrow(w) => {
                w.write(batch).with_context(|| format!("cannot write {}", self.name))?
            }
        }
        Ok(())
    }

    pub fn finish(self) -> Result<()> {
        let Sink { w, mut guard, name } = self;
        let fail = || format!("cannot write {name}");
        let mut w = match w {
            Writer::Jsonl(mut j) => {
                j.finish().with_context(fail)?;
                j.into_inner()
            }
            Writer::Parquet(p) => p.into_inner().with_context(fail)?,
            Writer::Arrow(mut a) => {
                a.finish().with_context(fail)?;
                a.into_inner().with_context(fail)?
            }
        };
        w.flush().with_context(fail)?;
        // Out::finish renames into place, and removes the temporary file if that fails.
        Out { w, target: guard.0.take(), name }.finish()
    }
}
