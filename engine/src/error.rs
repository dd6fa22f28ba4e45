//! The engine's error type: a kind with structured context, never message text.
//!
//! Errors name the file, the offset, the tensor or the field that is wrong. They never carry the
//! text of a chat turn: turn text is personal data and must not reach logs or error output.

use std::path::PathBuf;

/// Result alias used across the engine.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every way the engine can fail.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading or mapping a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The model file is not valid: truncated, corrupted, hostile or of another kind.
    #[error("invalid model file{}: {what}", path_suffix(.path))]
    Format {
        /// The file, when known.
        path: Option<PathBuf>,
        /// What is wrong, with offsets and names where they help.
        what: String,
    },
    /// The model file is of a format version this engine does not read.
    #[error("model file format version {found} is not supported (this engine reads version {supported})")]
    UnsupportedVersion {
        /// Version found in the header.
        found: u32,
        /// Version this build reads.
        supported: u32,
    },
    /// Converting a checkpoint failed: unsupported architecture, missing tensor, bad shape.
    #[error("convert: {0}")]
    Convert(String),
    /// The tokenizer could not be loaded or failed on a batch.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// A shape does not match what an operation expects.
    #[error("shape mismatch in {op}: expected {expected}, got {got}")]
    Shape {
        /// The operation.
        op: &'static str,
        /// What was expected.
        expected: String,
        /// What was found.
        got: String,
    },
    /// Building the Arrow output failed.
    #[error("arrow: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
    /// An argument to an engine call is invalid.
    #[error("invalid argument: {0}")]
    Invalid(String),
}

fn path_suffix(p: &Option<PathBuf>) -> String {
    match p {
        Some(p) => format!(" {}", p.display()),
        None => String::new(),
    }
}

impl Error {
    pub(crate) fn format(what: impl Into<String>) -> Self {
        Error::Format { path: None, what: what.into() }
    }

    pub(crate) fn with_path(self, path: &std::path::Path) -> Self {
        match self {
            Error::Format { path: None, what } => {
                Error::Format { path: Some(path.to_path_buf()), what }
            }
            other => other,
        }
    }
}
