//! turnscore jobs: everything between files and [`turnscore::Engine`].
//!
//! - [`source`]: inputs (JSON lines, plain, gzip or zstd; Parquet; Arrow IPC, file or stream;
//!   several files or globs; standard input), read in bounded chunks of rows. Columnar files are
//!   checked against their own size before a reader allocates what their metadata declares
//!   ([`columnar`]).
//! - [`sink`]: outputs (JSON lines, Parquet, Arrow IPC) written to a temporary file and renamed
//!   into place, or streamed to standard output, a device or a FIFO.
//! - [`job`]: shard directories that survive `kill -9`: a lock, numbered shards committed by
//!   rename, a manifest, and resume from the last committed shard.
//!
//! The command-line tool is flag mapping and printing on top of this crate.
#![forbid(unsafe_code)]

pub mod columnar;
pub mod job;
pub mod sink;
pub mod source;

/// An output format.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Format {
    /// One JSON object per line.
    Jsonl,
    /// Apache Parquet (zstd).
    Parquet,
    /// Arrow IPC file format.
    Arrow,
}
