//! Free space on the store's disk: the store refuses to open or write while the disk has less free
//! than [`Reserve`] keeps, so that RocksDB never meets a full disk mid-write.
//!
//! Why: Debian's librocksdb 7.8.3 (what the `rocksdb` crate links here) is built with its debug
//! assertions on. When a write to a file fails with ENOSPC, RocksDB marks that file's writer as
//! failed; the next append to the same writer trips `assert(sync_without_flush_called_)` in
//! `WritableFileWriter::AssertFalseAndGetStatusForPrevError` and aborts the whole process. Its info
//! `LOG` file is the writer that gets appended to again (the error handler and the free-space
//! recovery thread log the failure), so the store also keeps that log to its header
//! ([`super::db_options`]). The reserve below keeps RocksDB away from ENOSPC in the first place.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The default [`Reserve::Keep`] floor: 64 MiB besides the store's own size.
pub const DEFAULT_FLOOR: u64 = 64 << 20;

/// How much free space the store keeps on its disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reserve {
    /// Opening the store and every write are refused with [`Error::DiskFull`] while the disk has
    /// less free than `floor` bytes plus the store's own size (its files: room for RocksDB to
    /// flush and compact all of it, and for the write itself within the floor).
    Keep {
        /// Bytes kept free besides the store's size.
        floor: u64,
    },
    /// No check: RocksDB itself meets a full disk (for tests of that path).
    Off,
}

impl Default for Reserve {
    fn default() -> Self {
        Reserve::Keep {
            floor: DEFAULT_FLOOR,
        }
    }
}

/// What a check measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Space {
    /// Bytes free for unprivileged users on the store's disk.
    pub free: u64,
    /// Bytes the store's files hold.
    pub store: u64,
    /// The floor in force.
    pub floor: u64,
}

impl Space {
    /// Bytes the store keeps free: the floor plus its own size.
    pub fn needed(&self) -> u64 {
        self.floor.saturating_add(self.store)
    }

    /// Whether a write may go ahead: free space at or above [`Space::needed`].
    pub fn enough(&self) -> bool {
        self.free >= self.needed()
    }
}

/// Checks the disk of the store at `path` (which may not exist yet) against `reserve`.
pub(super) fn check(path: &Path, reserve: Reserve) -> Result<()> {
    let Reserve::Keep { floor } = reserve else {
        return Ok(());
    };
    let Some(free) = free_space(path)? else {
        return Ok(());
    };
    let space = Space {
        free,
        store: store_size(path)?,
        floor,
    };
    if space.enough() {
        return Ok(());
    }
    Err(Error::DiskFull {
        path: path.to_path_buf(),
        reason: format!(
            "{} ({} bytes) free, less than the {} ({} bytes) the store keeps free ({} plus its \
             own {}); free some space",
            mib(space.free),
            space.free,
            mib(space.needed()),
            space.needed(),
            mib(space.floor),
            mib(space.store)
        ),
    })
}

/// Bytes free for unprivileged users on the disk holding `path`, or its nearest existing parent;
/// `None` where the platform has no `statvfs`.
pub fn free_space(path: &Path) -> Result<Option<u64>> {
    let mut at = path;
    while !at.exists() {
        match at.parent() {
            Some(p) if !p.as_os_str().is_empty() => at = p,
            _ => {
                at = Path::new(".");
                break;
            }
        }
    }
    statvfs_free(at)
}

#[cfg(unix)]
fn statvfs_free(at: &Path) -> Result<Option<u64>> {
    let s = nix::sys::statvfs::statvfs(at).map_err(|e| Error::Io {
        path: at.to_path_buf(),
        source: e.into(),
    })?;
    #[allow(clippy::useless_conversion)] // the field types differ between platforms
    let (blocks, size) = (
        u64::from(s.blocks_available()),
        u64::from(s.fragment_size()),
    );
    Ok(Some(blocks.saturating_mul(size)))
}

#[cfg(not(unix))]
fn statvfs_free(_at: &Path) -> Result<Option<u64>> {
    Ok(None)
}

/// Bytes held by the files of the store's folder (RocksDB keeps them all at its top level); 0 when
/// it does not exist yet.
pub fn store_size(path: &Path) -> Result<u64> {
    let io = |source| Error::Io {
        path: PathBuf::from(path),
        source,
    };
    let entries = match std::fs::read_dir(path) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(io(e)),
    };
    let mut total = 0u64;
    for entry in entries {
        let entry = entry.map_err(io)?;
        // A file RocksDB deletes between the listing and here is not counted.
        if let Ok(meta) = entry.metadata()
            && meta.is_file()
        {
            total = total.saturating_add(meta.len());
        }
    }
    Ok(total)
}

/// `bytes` in MiB with one decimal, for messages.
pub fn mib(bytes: u64) -> String {
    #[allow(clippy::cast_precision_loss)] // one decimal shown
    let m = bytes as f64 / f64::from(1u32 << 20);
    format!("{m:.1} MiB")
}
