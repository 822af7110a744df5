//! The node's local store: RocksDB with one column family per kind of record, secrets sealed at
//! rest, synced atomic write batches, and a poisoned state after a failed write.
//!
//! Layout (schema version [`SCHEMA_VERSION`]):
//!
//! | family | holds | sealed |
//! |---|---|---|
//! | `meta` | schema version, key-derivation parameters, an unlock check value | no |
//! | `identity` | the member's signing key, certificates | yes |
//! | `documents` | the private data index and text | yes |
//! | `adapters` | personal adapter (sealed), community versions (public) | per key |
//! | `deltas` | received signed deltas, by round | no |
//! | `ledger` | the privacy ledger | no |
//! | `rounds` | round state and the version chain | no |
//! | `peers` | known peers and addresses | no |
//!
//! Every write is synced before it returns, so what was acknowledged survives a crash; multi-key
//! updates go through one [`Batch`], which RocksDB applies atomically.
//!
//! A full disk is an error, never an abort: the store refuses to open or write while its disk has
//! less free space than [`Reserve`] keeps ([`Error::DiskFull`]), and a write that still meets a full
//! disk returns that error too; after either, the store refuses writes until reopened
//! ([`Error::Poisoned`]). What was acknowledged before stays (see `space` and the tests).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use rocksdb::{
    ColumnFamilyDescriptor, DB, Direction, IteratorMode, LogLevel, Options, WriteBatch,
    WriteOptions,
};
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::secrets::{KdfParams, SealKey, Unlock};

/// The newest store layout this build reads and writes.
pub const SCHEMA_VERSION: u32 = 1;

const META_SCHEMA: &[u8] = b"schema";
const META_KDF: &[u8] = b"kdf";
const META_CHECK: &[u8] = b"unlock-check";
const CHECK_PLAINTEXT: &[u8] = b"hearth store unlock check v1";

/// A column family of the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Cf {
    /// Store metadata.
    Meta,
    /// Identity key and certificates.
    Identity,
    /// Private documents.
    Documents,
    /// Adapters.
    Adapters,
    /// Received deltas.
    Deltas,
    /// The privacy ledger.
    Ledger,
    /// Round state and version chain.
    Rounds,
    /// Known peers.
    Peers,
}

impl Cf {
    /// Every family, in creation order.
    pub const ALL: [Cf; 8] = [
        Cf::Meta,
        Cf::Identity,
        Cf::Documents,
        Cf::Adapters,
        Cf::Deltas,
        Cf::Ledger,
        Cf::Rounds,
        Cf::Peers,
    ];

    /// The family's name in RocksDB.
    pub fn name(self) -> &'static str {
        match self {
            Cf::Meta => "meta",
            Cf::Identity => "identity",
            Cf::Documents => "documents",
            Cf::Adapters => "adapters",
            Cf::Deltas => "deltas",
            Cf::Ledger => "ledger",
            Cf::Rounds => "rounds",
            Cf::Peers => "peers",
        }
    }
}

mod space;

pub use space::{DEFAULT_FLOOR, Reserve, Space, free_space, store_size};

/// The open store.
pub struct Store {
    db: DB,
    path: PathBuf,
    key: SealKey,
    reserve: Reserve,
    /// The first failed or refused write: set once, the store refuses writes from then on.
    poisoned: OnceLock<String>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn db_options(create: bool) -> Options {
    let mut opts = Options::default();
    opts.create_if_missing(create);
    opts.create_missing_column_families(create);
    opts.set_paranoid_checks(true);
    // RocksDB's own `LOG` keeps only its header (the options in force). Debian's librocksdb is
    // built with assertions on and aborts the process when it appends to a log file whose earlier
    // write failed, which is what its error handler does on a full disk (see `space`).
    opts.set_log_level(LogLevel::Header);
    opts.set_stats_dump_period_sec(0);
    opts
}

fn descriptors(tuning: Tuning) -> Vec<ColumnFamilyDescriptor> {
    Cf::ALL
        .iter()
        .map(|cf| {
            let mut opts = Options::default();
            if let Some(bytes) = tuning.write_buffer {
                opts.set_write_buffer_size(bytes);
            }
            ColumnFamilyDescriptor::new(cf.name(), opts)
        })
        .collect()
}

/// RocksDB settings the tests change (memtables small enough to flush on a small disk).
#[derive(Debug, Clone, Copy, Default)]
struct Tuning {
    write_buffer: Option<usize>,
}

/// A RocksDB error, as [`Error::DiskFull`] when the disk was full.
fn db_error(path: &Path, e: rocksdb::Error) -> Error {
    if e.to_string().contains("No space left on device") {
        Error::DiskFull {
            path: path.to_path_buf(),
            reason: format!("{e}; free some space"),
        }
    } else {
        Error::Db(e)
    }
}

fn context(cf: Cf, key: &[u8]) -> Vec<u8> {
    let mut c = Vec::with_capacity(cf.name().len() + 1 + key.len());
    c.extend_from_slice(cf.name().as_bytes());
    c.push(0);
    c.extend_from_slice(key);
    c
}

impl Store {
    /// Creates a new store at `path`, sealed with `unlock`, keeping the default [`Reserve`].
    /// Fails if one exists there.
    pub fn create(path: &Path, unlock: &Unlock) -> Result<Self> {
        Self::create_with(path, unlock, Reserve::default())
    }

    /// [`Store::create`] keeping `reserve` free on the disk.
    pub fn create_with(path: &Path, unlock: &Unlock, reserve: Reserve) -> Result<Self> {
        Self::create_tuned(path, unlock, reserve, Tuning::default())
    }

    fn create_tuned(
        path: &Path,
        unlock: &Unlock,
        reserve: Reserve,
        tuning: Tuning,
    ) -> Result<Self> {
        if path.join("CURRENT").exists() {
            return Err(Error::AlreadyInitialized(path.to_path_buf()));
        }
        // The key file must be valid before anything is written.
        let kdf = KdfParams::new_random()?;
        let key = SealKey::derive(unlock, &kdf)?;
        space::check(path, reserve)?;
        let db = DB::open_cf_descriptors(&db_options(true), path, descriptors(tuning))
            .map_err(|e| db_error(path, e))?;
        let store = Self {
            db,
            path: path.to_path_buf(),
            key,
            reserve,
            poisoned: OnceLock::new(),
        };
        let mut batch = store.batch();
        batch.put(Cf::Meta, META_KDF, &cbor(&kdf)?);
        batch.put(
            Cf::Meta,
            META_CHECK,
            &store
                .key
                .seal(&context(Cf::Meta, META_CHECK), CHECK_PLAINTEXT)?,
        );
        batch.put(Cf::Meta, META_SCHEMA, &SCHEMA_VERSION.to_be_bytes());
        store.write(batch)?;
        Ok(store)
    }

    /// Opens the store at `path` with `unlock`, keeping the default [`Reserve`].
    pub fn open(path: &Path, unlock: &Unlock) -> Result<Self> {
        Self::open_with(path, unlock, Reserve::default())
    }

    /// [`Store::open`] keeping `reserve` free on the disk: refused with [`Error::DiskFull`] while
    /// the disk has less (opening writes too: RocksDB replays its log into a table file).
    pub fn open_with(path: &Path, unlock: &Unlock, reserve: Reserve) -> Result<Self> {
        Self::open_tuned(path, unlock, reserve, Tuning::default())
    }

    fn open_tuned(path: &Path, unlock: &Unlock, reserve: Reserve, tuning: Tuning) -> Result<Self> {
        if !path.join("CURRENT").exists() {
            return Err(Error::NotInitialized(path.to_path_buf()));
        }
        space::check(path, reserve)?;
        let db = DB::open_cf_descriptors(&db_options(false), path, descriptors(tuning))
            .map_err(|e| db_error(path, e))?;
        let meta = db.cf_handle(Cf::Meta.name()).ok_or(Error::Corrupt {
            cf: "meta",
            reason: "missing".into(),
        })?;
        let schema = db.get_cf(meta, META_SCHEMA)?.ok_or(Error::Corrupt {
            cf: "meta",
            reason:
                "no schema version (an interrupted `hearth init`? remove the folder and init again)"
                    .into(),
        })?;
        let schema: [u8; 4] = schema.as_slice().try_into().map_err(|_| Error::Corrupt {
            cf: "meta",
            reason: "schema version is not 4 bytes".into(),
        })?;
        let found = u32::from_be_bytes(schema);
        if found > SCHEMA_VERSION {
            return Err(Error::NewerStore {
                path: path.to_path_buf(),
                found,
                supported: SCHEMA_VERSION,
            });
        }
        let kdf: KdfParams = decode(Cf::Meta, &db.get_cf(meta, META_KDF)?.unwrap_or_default())?;
        let key = SealKey::derive(unlock, &kdf)?;
        let check = db.get_cf(meta, META_CHECK)?.unwrap_or_default();
        if key
            .open(&context(Cf::Meta, META_CHECK), &check)
            .as_deref()
            .map(Vec::as_slice)
            != Some(CHECK_PLAINTEXT)
        {
            return Err(Error::WrongPassphrase);
        }
        Ok(Self {
            db,
            path: path.to_path_buf(),
            key,
            reserve,
            poisoned: OnceLock::new(),
        })
    }

    /// Where the store lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The free space this store keeps on its disk.
    pub fn reserve(&self) -> Reserve {
        self.reserve
    }

    /// Fails with [`Error::Poisoned`] (carrying the first failure) once a write failed or was
    /// refused: a long-running caller stops on it instead of going on without its writes.
    pub fn check_writable(&self) -> Result<()> {
        match self.poisoned.get() {
            Some(cause) => Err(Error::Poisoned(cause.clone())),
            None => Ok(()),
        }
    }

    fn cf(&self, cf: Cf) -> Result<&rocksdb::ColumnFamily> {
        self.db.cf_handle(cf.name()).ok_or(Error::Corrupt {
            cf: cf.name(),
            reason: "column family missing".into(),
        })
    }

    /// Reads a public value.
    pub fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.db.get_cf(self.cf(cf)?, key)?)
    }

    /// Reads and unseals a secret value; a value that fails authentication is an error.
    pub fn get_secret(&self, cf: Cf, key: &[u8]) -> Result<Option<Zeroizing<Vec<u8>>>> {
        match self.get(cf, key)? {
            None => Ok(None),
            Some(sealed) => self
                .key
                .open(&context(cf, key), &sealed)
                .map(Some)
                .ok_or_else(|| Error::Tampered {
                    cf: cf.name(),
                    key: hex_key(key),
                }),
        }
    }

    /// Writes one public value (synced).
    pub fn put(&self, cf: Cf, key: &[u8], value: &[u8]) -> Result<()> {
        let mut batch = self.batch();
        batch.put(cf, key, value);
        self.write(batch)
    }

    /// Seals and writes one secret value (synced).
    pub fn put_secret(&self, cf: Cf, key: &[u8], value: &[u8]) -> Result<()> {
        let mut batch = self.batch();
        batch.put_secret(cf, key, value)?;
        self.write(batch)
    }

    /// All entries of `cf` whose key starts with `prefix`, in key order.
    pub fn scan_prefix(&self, cf: Cf, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut out = Vec::new();
        for item in self
            .db
            .iterator_cf(self.cf(cf)?, IteratorMode::From(prefix, Direction::Forward))
        {
            let (k, v) = item?;
            if !k.starts_with(prefix) {
                break;
            }
            out.push((k.to_vec(), v.to_vec()));
        }
        Ok(out)
    }

    /// Starts an atomic multi-key update.
    pub fn batch(&self) -> Batch<'_> {
        Batch {
            store: self,
            ops: Vec::new(),
        }
    }

    /// Applies a batch atomically and syncs it. It is refused with [`Error::DiskFull`] while the
    /// disk has less free space than the store's [`Reserve`]. After a failed or refused write the
    /// store is poisoned: every later write fails with [`Error::Poisoned`] until the store is
    /// reopened, so nothing is written on top of a half-known state (a caller that went on after
    /// a refused batch would store later ones without it).
    pub fn write(&self, batch: Batch<'_>) -> Result<()> {
        self.check_writable()?;
        let mut wb = WriteBatch::default();
        for op in batch.ops {
            match op {
                Op::Put(cf, k, v) => wb.put_cf(self.cf(cf)?, k, v),
                Op::Delete(cf, k) => wb.delete_cf(self.cf(cf)?, k),
            }
        }
        let mut opts = WriteOptions::default();
        opts.set_sync(true);
        space::check(&self.path, self.reserve)
            .and_then(|()| {
                self.db
                    .write_opt(wb, &opts)
                    .map_err(|e| db_error(&self.path, e))
            })
            .inspect_err(|e| {
                let _ = self.poisoned.set(e.to_string());
            })
    }
}

enum Op {
    Put(Cf, Vec<u8>, Vec<u8>),
    Delete(Cf, Vec<u8>),
}

/// An atomic multi-key update, applied by [`Store::write`].
pub struct Batch<'a> {
    store: &'a Store,
    ops: Vec<Op>,
}

impl std::fmt::Debug for Batch<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batch")
            .field("ops", &self.ops.len())
            .finish()
    }
}

impl Batch<'_> {
    /// Adds a public value.
    pub fn put(&mut self, cf: Cf, key: &[u8], value: &[u8]) {
        self.ops.push(Op::Put(cf, key.to_vec(), value.to_vec()));
    }

    /// Adds a sealed secret value.
    pub fn put_secret(&mut self, cf: Cf, key: &[u8], value: &[u8]) -> Result<()> {
        let sealed = self.store.key.seal(&context(cf, key), value)?;
        self.ops.push(Op::Put(cf, key.to_vec(), sealed));
        Ok(())
    }

    /// Removes a key.
    pub fn delete(&mut self, cf: Cf, key: &[u8]) {
        self.ops.push(Op::Delete(cf, key.to_vec()));
    }
}

fn hex_key(key: &[u8]) -> String {
    key.iter().map(|b| format!("{b:02x}")).collect()
}

fn cbor<T: serde::Serialize>(value: &T) -> Result<Vec<u8>> {
    serde_cbor::to_vec(value).map_err(|e| Error::Corrupt {
        cf: "meta",
        reason: e.to_string(),
    })
}

fn decode<T: serde::de::DeserializeOwned>(cf: Cf, bytes: &[u8]) -> Result<T> {
    serde_cbor::from_slice(bytes).map_err(|e| Error::Corrupt {
        cf: cf.name(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod full_disk_tests;
#[cfg(test)]
mod tests;
