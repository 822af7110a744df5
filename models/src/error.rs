//! The models crate's one error type.

use std::path::PathBuf;

/// Everything that can go wrong loading, running or saving a model or adapter.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A model or adapter file is malformed.
    #[error("malformed {what}: {reason}")]
    Format {
        /// Which kind of file ("gguf", "safetensors", "config.json", ...).
        what: &'static str,
        /// What is wrong, naming the field or tensor.
        reason: String,
    },
}

/// Shorthand for results in this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
