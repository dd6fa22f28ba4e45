//! A directory of shards: `part-00000.<ext>`, ..., `_rejects.jsonl`, and `_manifest.json` last.
//!
//! Crash safety, step by step:
//! 1. a shard is written to a temporary name, flushed, fsynced and renamed into place;
//! 2. then `_progress.json` is rewritten (temporary file, fsync, rename) with the job's
//!    fingerprint, the committed shards, the input position after the last committed row, the
//!    counts by reason so far and the committed length of the rejects report;
//! 3. when all input is read, the last shard is committed, `_manifest.json` is written the same
//!    way, and `_progress.json` is removed.
//!
//! Started again with the same command (same fingerprint) after a kill at any point, the job
//! removes shards and temporary files written after the last progress record, truncates the
//! rejects report to its committed length, skips the input rows already committed and goes on.
//! Shard boundaries fall at fixed row counts, so the resumed job forms the same batches and writes
//! the same bytes as a job that was never killed. Started again on a completed job (its manifest
//! names the same fingerprint), it does nothing and succeeds.
//!
//! One job at a time: the directory is locked (`flock` on the directory itself) for the whole
//! job. The lock goes with the process that holds it, so a killed job leaves no stale lock.
//! A job that reads standard input never resumes: nothing proves the new stream is the old one.

use crate::sink::{Out, Sink};
use crate::Format;
use anyhow::{bail, Context, Result};
use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::{Seek, Write};
use std::path::{Path, PathBuf};

/// Where reading stands: rows taken from input `input` (0-based), all earlier inputs done.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    pub input: usize,
    pub row: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ShardInfo {
    pub file: String,
    pub rows: u64,
    /// Position after the shard's last row.
    pub end: Position,
}

/// The committed state of a running job.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Progress {
    pub fingerprint: String,
    pub shards: Vec<ShardInfo>,
    pub position: Position,
    pub by_reason: BTreeMap<String, u64>,
    /// Blank lines in the inputs before `position.input`.
    pub blank_before: u64,
    pub rejects_len: u64,
}

pub const MANIFEST: &str = "_manifest.json";
pub const PROGRESS: &str = "_progress.json";
pub const REJECTS: &str = "_rejects.jsonl";

fn ext(f: Format) -> &'static str {
    match f {
        Format::Jsonl => "jsonl",
        Format::Parquet => "parquet",
        Format::Arrow => "arrow",
    }
}

/// Writes `bytes` to `path` through a temporary file, fsync and rename, then fsyncs the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(".{}.tmp", path.file_name().unwrap_or_default().to_string_lossy()));
    let mut f =
        std::fs::File::create(&tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
    f.write_all(bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
    f.sync_all().with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    sync_dir(dir);
    Ok(())
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

fn is_ours(name: &str) -> bool {
    name.starts_with("part-")
        || name.starts_with(".part-")
        || name.starts_with("._")
        || [MANIFEST, PROGRESS, REJECTS].contains(&name)
}

/// What [`ShardDir::open`] found.
pub enum Opened {
    /// A new job, or an interrupted one to continue (`resumed`).
    Job { dir: Box<ShardDir>, resumed: bool },
    /// The same job already completed: `rows` in its manifest. Nothing to do.
    Complete { rows: u64 },
}

/// Takes the job lock on `dir`: an exclusive `flock` on the directory, held until the returned
/// handle is dropped (or the process dies).
fn lock(dir: &Path) -> Result<std::fs::File> {
    let d = std::fs::File::open(dir).with_context(|| format!("cannot open {}", dir.display()))?;
    match d.try_lock() {
        Ok(()) => Ok(d),
        Err(std::fs::TryLockError::WouldBlock) => bail!(
            "{} is in use by another turnscore job; wait for it to finish (a killed job's lock \
             goes with its process)",
            dir.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("cannot lock {}", dir.display()))
        }
    }
}

/// The shard directory of one job.
pub struct ShardDir {
    /// Held for the job's lifetime (see [`lock`]).
    _lock: std::fs::File,
    dir: PathBuf,
    format: Format,
    schema: SchemaRef,
    shard_rows: u64,
    current: Option<(Sink, u64, String)>,
    pub progress: Progress,
    rejects: std::fs::File,
    rejects_path: PathBuf,
}

impl ShardDir {
    /// Opens (or resumes) the job's directory and locks it. `stdin`: the job reads standard
    /// input, so it cannot resume or be recognised as complete.
    #[allow(clippy::too_many_arguments)]
    pub fn open(
        dir: &Path,
        format: Format,
        schema: SchemaRef,
        shard_rows: u64,
        fingerprint: &str,
        overwrite: bool,
        rejects: Option<&Path>,
        stdin: bool,
    ) -> Result<Opened> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let lock = lock(dir)?;
        let entries: Vec<String> = std::fs::read_dir(dir)
            .with_context(|| format!("cannot read {}", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect();
        let clean = |keep: &[String]| -> Result<()> {
            for n in entries.iter().filter(|n| is_ours(n) && !keep.contains(n)) {
                std::fs::remove_file(dir.join(n))
                    .with_context(|| format!("cannot remove {n} in {}", dir.display()))?;
            }
            Ok(())
        };
        let mut progress = Progress { fingerprint: fingerprint.to_string(), ..Default::default() };
        let mut resumed = false;
        if entries.iter().any(|n| n == MANIFEST) {
            if !overwrite {
                // The manifest is written last, so the job is complete; a progress record or
                // temporary file beside it is left from a kill during the final clean-up.
                for n in entries.iter().filter(|n| *n == PROGRESS || n.starts_with('.')) {
                    if is_ours(n) {
                        std::fs::remove_file(dir.join(n)).ok();
                    }
                }
                let m: serde_json::Value = std::fs::read(dir.join(MANIFEST))
                    .ok()
                    .and_then(|b| serde_json::from_slice(&b).ok())
                    .unwrap_or_default();
                if !stdin && m["fingerprint"].as_str() == Some(fingerprint) {
                    let missing = m["shards"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|s| s["file"].as_str())
                        .find(|f| !dir.join(f).is_file());
                    if let Some(f) = missing {
                        bail!(
                            "{} holds a completed job whose manifest lists {f}, which is missing; \
                             pass --overwrite to run it again",
                            dir.display()
                        );
                    }
                    return Ok(Opened::Complete { rows: m["rows"].as_u64().unwrap_or(0) });
                }
                if stdin {
                    bail!(
                        "{} holds a completed job, and a job reading standard input cannot be \
                         proved the same as it; pass --overwrite to replace it",
                        dir.display()
                    );
                }
                bail!(
                    "{} holds a completed job ({MANIFEST}) run with other inputs, model, policy \
                     or settings; pass --overwrite to replace it",
                    dir.display()
                );
            }
            clean(&[])?;
        } else if entries.iter().any(|n| n == PROGRESS) {
            let p: Progress = serde_json::from_slice(&std::fs::read(dir.join(PROGRESS))?)
                .with_context(|| format!("{}: unreadable {PROGRESS}", dir.display()))?;
            if stdin && !overwrite {
                bail!(
                    "{} holds an interrupted job, and a job reading standard input cannot resume \
                     (nothing proves the input is the same stream); pass --overwrite to start over",
                    dir.display()
                );
            } else if p.fingerprint == fingerprint && !overwrite {
                // Keep the committed shards, the progress file and the rejects report.
                let mut keep: Vec<String> = p.shards.iter().map(|s| s.file.clone()).collect();
                keep.push(PROGRESS.into());
                keep.push(REJECTS.into());
                clean(&keep)?;
                progress = p;
                resumed = true;
            } else if overwrite {
                clean(&[])?;
            } else {
                bail!(
                    "{} holds an interrupted job run with other inputs, model, policy or settings; \
                     run that command again to resume it, or pass --overwrite to start over",
                    dir.display()
                );
            }
        } else if entries.iter().any(|n| n.starts_with("part-")) {
            if !overwrite {
                bail!("{} already holds shards; pass --overwrite to replace them", dir.display());
            }
            clean(&[])?;
        } else {
            clean(&[])?;
        }
        let rejects_path = rejects.map(Path::to_path_buf).unwrap_or_else(|| dir.join(REJECTS));
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&rejects_path)
            .with_context(|| format!("cannot open {}", rejects_path.display()))?;
        f.set_len(progress.rejects_len)?;
        f.seek(std::io::SeekFrom::End(0))?;
        let sd = ShardDir {
            _lock: lock,
            dir: dir.to_path_buf(),
            format,
            schema,
            shard_rows,
            current: None,
            progress,
            rejects: f,
            rejects_path,
        };
        Ok(Opened::Job { dir: Box::new(sd), resumed })
    }

    /// Removes every file of the job (shards, progress, rejects report, temporary files):
    /// for `--strict`, whose failed job leaves no output.
    pub fn abandon(mut self) -> Result<()> {
        if let Some((sink, _, _)) = self.current.take() {
            drop(sink); // its temporary file goes with it
        }
        let entries = std::fs::read_dir(&self.dir)
            .with_context(|| format!("cannot read {}", self.dir.display()))?;
        for e in entries.filter_map(|e| e.ok()) {
            let n = e.file_name().to_string_lossy().into_owned();
            if is_ours(&n) {
                std::fs::remove_file(e.path())
                    .with_context(|| format!("cannot remove {n} in {}", self.dir.display()))?;
            }
        }
        if self.rejects_path.parent() != Some(self.dir.as_path()) {
            std::fs::remove_file(&self.rejects_path).ok();
        }
        sync_dir(&self.dir);
        Ok(())
    }

    /// The most rows the next chunk may have, so that shards end at exact row counts.
    pub fn chunk_limit(&self, max: usize) -> usize {
        let used = self.current.as_ref().map_or(0, |c| c.1);
        max.min((self.shard_rows - used) as usize).max(1)
    }

    /// The rejects report's path, for messages.
    pub fn rejects_name(&self) -> String {
        self.rejects_path.display().to_string()
    }

    /// The rejects report.
    pub fn rejects(&mut self) -> &mut std::fs::File {
        &mut self.rejects
    }

    /// Writes a batch into the current shard (opening one if needed).
    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        if self.current.is_none() {
            let name = format!("part-{:05}.{}", self.progress.shards.len(), ext(self.format));
            let sink =
                Sink::new(Out::open(&self.dir.join(&name))?, self.format, self.schema.clone())?;
            self.current = Some((sink, 0, name));
        }
        let cur = self.current.as_mut().expect("open shard");
        cur.0.write(batch)?;
        cur.1 += batch.num_rows() as u64;
        Ok(())
    }

    /// Called after each chunk with the position after it and the totals so far: commits the
    /// shard when it is full.
    pub fn after_chunk(
        &mut self,
        pos: Position,
        by_reason: &BTreeMap<String, u64>,
        blank_before: u64,
    ) -> Result<()> {
        if self.current.as_ref().is_some_and(|c| c.1 >= self.shard_rows) {
            self.commit(pos, by_reason, blank_before)?;
        }
        Ok(())
    }

    fn commit(
        &mut self,
        pos: Position,
        by_reason: &BTreeMap<String, u64>,
        blank_before: u64,
    ) -> Result<()> {
        let Some((sink, rows, name)) = self.current.take() else { return Ok(()) };
        sink.finish()?; // flushed, renamed into place
        if let Ok(f) = std::fs::File::open(self.dir.join(&name)) {
            f.sync_all()?;
        }
        let rj = || format!("cannot write {}", self.rejects_path.display());
        self.rejects.flush().with_context(rj)?;
        self.rejects.sync_data().with_context(rj)?;
        self.progress.shards.push(ShardInfo { file: name, rows, end: pos });
        self.progress.position = pos;
        self.progress.by_reason = by_reason.clone();
        self.progress.blank_before = blank_before;
        self.progress.rejects_len = self.rejects.metadata()?.len();
        write_atomic(&self.dir.join(PROGRESS), &serde_json::to_vec_pretty(&self.progress)?)
    }

    /// Commits the last shard, writes the manifest (with `shards` and counts added) last, and
    /// removes the progress record.
    pub fn finish(
        mut self,
        pos: Position,
        by_reason: &BTreeMap<String, u64>,
        blank_before: u64,
        mut manifest: serde_json::Value,
    ) -> Result<()> {
        self.commit(pos, by_reason, blank_before)?;
        manifest["shards"] = serde_json::to_value(&self.progress.shards)?;
        manifest["fingerprint"] = self.progress.fingerprint.clone().into();
        manifest["rejects_report"] = self.rejects_path.display().to_string().into();
        write_atomic(&self.dir.join(MANIFEST), &serde_json::to_vec_pretty(&manifest)?)?;
        std::fs::remove_file(self.dir.join(PROGRESS)).ok();
        sync_dir(&self.dir);
        Ok(())
    }
}
