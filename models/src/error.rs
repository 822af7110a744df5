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
    /// A model, adapter or generation setting is invalid.
    #[error("invalid configuration: {reason}")]
    Config {
        /// What is wrong, naming the field.
        reason: String,
    },
    /// A tensor has the wrong shape.
    #[error("tensor {name} has shape {actual:?}, expected {expected:?}")]
    Shape {
        /// The tensor's name.
        name: String,
        /// The shape the model needs.
        expected: Vec<usize>,
        /// The shape found.
        actual: Vec<usize>,
    },
    /// A sequence does not fit the model's context.
    #[error("sequence of {len} tokens exceeds the context of {limit}")]
    SequenceTooLong {
        /// Tokens requested (cached plus new).
        len: usize,
        /// The model's `max_seq_len`.
        limit: usize,
    },
    /// A token id is outside the vocabulary.
    #[error("token {token} is outside the vocabulary of {vocab}")]
    TokenOutOfRange {
        /// The token id.
        token: u32,
        /// The vocabulary size.
        vocab: usize,
    },
    /// An adapter operation does not apply to the model's current adapters.
    #[error("adapter: {reason}")]
    Adapter {
        /// What is wrong.
        reason: String,
    },
    /// Reading values back from a device tensor failed.
    #[error("tensor data: {reason}")]
    TensorData {
        /// The backend's message.
        reason: String,
    },
    /// A weight file holds a tensor in an encoding this crate cannot decode.
    #[error("unsupported tensor type {dtype} for tensor {tensor}")]
    UnsupportedTensorType {
        /// The tensor's name in the file.
        tensor: String,
        /// The encoding's name (a GGML type such as `Q6_K`, a safetensors dtype such as `I32`).
        dtype: String,
    },
    /// A weight file lacks a tensor the model needs.
    #[error("missing tensor {name}")]
    MissingTensor {
        /// The tensor's name (canonical or as in the file).
        name: String,
    },
    /// A GGUF file lacks a metadata key, or holds it with the wrong type.
    #[error("gguf metadata {key}: {reason}")]
    Metadata {
        /// The key, e.g. `llama.block_count`.
        key: String,
        /// What is wrong ("missing", "expected u32, found string", ...).
        reason: String,
    },
    /// Building or running the tokenizer failed.
    #[error("tokenizer: {reason}")]
    Tokenizer {
        /// What went wrong.
        reason: String,
    },
}

/// Shorthand for results in this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
