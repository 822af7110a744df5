//! The node library's one error type.

use std::path::PathBuf;

/// Everything the node's store and services can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No store exists at the path.
    #[error("no hearth store at {0} (run `hearth init` first)")]
    NotInitialized(PathBuf),
    /// A store already exists where a new one was to be created.
    #[error("a hearth store already exists at {0}")]
    AlreadyInitialized(PathBuf),
    /// The store was written by a newer Hearth.
    #[error(
        "the store at {path} has schema version {found}, newer than this hearth understands ({supported}); upgrade hearth"
    )]
    NewerStore {
        /// The store.
        path: PathBuf,
        /// Its schema version.
        found: u32,
        /// The newest this build reads.
        supported: u32,
    },
    /// The passphrase or key file does not open the store.
    #[error("wrong passphrase or key file for the store")]
    WrongPassphrase,
    /// A key file is unreadable or has the wrong size.
    #[error("key file {path}: {reason}")]
    KeyFile {
        /// The key file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// An encrypted value failed authentication: the store was tampered with or corrupted.
    #[error("encrypted value {cf}/{key} failed authentication (corrupt or tampered store)")]
    Tampered {
        /// Column family.
        cf: &'static str,
        /// Key, hex.
        key: String,
    },
    /// A stored value does not decode.
    #[error("corrupt value in {cf}: {reason}")]
    Corrupt {
        /// Column family.
        cf: &'static str,
        /// What failed.
        reason: String,
    },
    /// RocksDB failed.
    #[error("store: {0}")]
    Db(#[from] rocksdb::Error),
    /// The disk holding the store is full, or has less free space than the store keeps free
    /// (`store::Reserve`): the write or open was refused or failed, and nothing of it was kept.
    #[error("disk full at {}: {reason}", path.display())]
    DiskFull {
        /// The store.
        path: PathBuf,
        /// How much was free and needed, or RocksDB's error.
        reason: String,
    },
    /// A write failed or was refused earlier; the store refuses further writes until reopened.
    #[error("the store refuses writes since an earlier write failed ({0}); restart the node")]
    Poisoned(String),
    /// Reading the store's folder or its disk's free space failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// What was read.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The operating system's random source failed.
    #[error("random source: {0}")]
    Random(String),
}

/// Shorthand for results in this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
