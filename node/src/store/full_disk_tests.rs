//! A full disk, on small tmpfs filesystems the tests mount and unmount (which needs root: CI runs
//! as root; elsewhere these tests say why they are skipped and return).
//!
//! Reproduce by hand: `cargo test -p hearth-node --lib store::full_disk_tests -- --nocapture`.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::*;

fn pass() -> Unlock {
    Unlock::Passphrase(Zeroizing::new("p".to_string()))
}

/// `n` bytes that do not compress, different for every `seed`.
fn noise(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()[0]
        })
        .collect()
}

const VALUE: usize = 64 * 1024;

/// One acknowledged write as the daemon makes them: a delta and the ledger, in one synced batch.
fn write_round(store: &Store, i: u64) -> Result<()> {
    let mut batch = store.batch();
    batch.put(Cf::Deltas, &i.to_be_bytes(), &noise(i, VALUE));
    batch.put(Cf::Ledger, b"ledger", &i.to_be_bytes());
    store.write(batch)
}

/// Every write `0..acked` is there, and nothing after it.
fn assert_acknowledged(store: &Store, acked: u64) {
    for i in 0..acked {
        assert_eq!(
            store.get(Cf::Deltas, &i.to_be_bytes()).unwrap(),
            Some(noise(i, VALUE)),
            "acknowledged write {i} of {acked} lost"
        );
    }
    assert_eq!(store.get(Cf::Deltas, &acked.to_be_bytes()).unwrap(), None);
    let ledger = store.get(Cf::Ledger, b"ledger").unwrap();
    assert_eq!(
        ledger,
        acked.checked_sub(1).map(|l| l.to_be_bytes().to_vec())
    );
}

/// A tmpfs mounted in a temporary folder, unmounted on drop.
struct Tmpfs {
    mnt: PathBuf,
    _dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts `size` (`mount -o size=`, e.g. "4m"); `None`, said on stderr, when this is not root.
    /// As root a failed mount fails the test: CI must not skip it.
    fn mount(size: &str) -> Option<Self> {
        let root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.trim_ascii() == b"0");
        if !root {
            eprintln!(
                "skipped: mounting a small tmpfs to fill needs root (CI runs these tests as root)"
            );
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&mnt)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mount -t tmpfs failed as root: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Some(Self { mnt, _dir: dir })
    }

    fn resize(&self, size: &str) {
        let ok = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.mnt)
            .status()
            .unwrap()
            .success();
        assert!(
            ok,
            "remounting {} with size {size} failed",
            self.mnt.display()
        );
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let umount = |lazy: bool| {
            let mut cmd = Command::new("umount");
            if lazy {
                cmd.arg("-l");
            }
            cmd.arg(&self.mnt).status().is_ok_and(|s| s.success())
        };
        if !umount(false) && !umount(true) {
            eprintln!("could not unmount {}", self.mnt.display());
        }
    }
}

#[test]
fn space_is_enough_at_the_reserve_and_not_one_byte_below() {
    let at = Space {
        free: 5 << 20,
        store: 3 << 20,
        floor: 2 << 20,
    };
    assert_eq!(at.needed(), 5 << 20);
    assert!(at.enough());
    assert!(
        !Space {
            free: at.free - 1,
            ..at
        }
        .enough()
    );
    assert!(
        Space {
            free: 0,
            store: 0,
            floor: 0
        }
        .enough()
    );
    assert_eq!(space::mib(3 << 19), "1.5 MiB");
}

#[test]
fn writes_stop_at_the_reserve_with_a_clear_error_and_keep_what_was_acknowledged() {
    let Some(fs) = Tmpfs::mount("16m") else {
        return;
    };
    let floor = 2 << 20;
    let path = fs.mnt.join("store");
    let store = Store::create_with(&path, &pass(), Reserve::Keep { floor }).unwrap();
    let mut acked = 0u64;
    let (refused, space) = loop {
        assert!(acked < 1000, "16 MiB never ran out");
        let space = Space {
            free: free_space(&path).unwrap().unwrap(),
            store: store_size(&path).unwrap(),
            floor,
        };
        match write_round(&store, acked) {
            Ok(()) => {
                assert!(
                    space.enough(),
                    "write {acked} accepted below the reserve: {space:?}"
                );
                acked += 1;
            }
            Err(e) => break (e, space),
        }
    };
    eprintln!("{acked} writes acknowledged, then refused at {space:?}: {refused}");
    // Writes went through while the disk had the reserve, and stopped once it did not: before
    // RocksDB met a full disk (most of the floor is still free).
    assert!(acked >= 20, "only {acked} writes on 16 MiB");
    assert!(!space.enough(), "refused with the reserve free: {space:?}");
    assert!(space.free > floor / 2, "{space:?}");
    assert!(matches!(refused, Error::DiskFull { .. }), "{refused:?}");
    let msg = refused.to_string();
    assert!(
        msg.starts_with("disk full at ")
            && msg.contains("the store keeps free")
            && msg.contains("free some space"),
        "{msg}"
    );
    // Poisoned: later writes are refused with the cause, reads go on.
    let later = write_round(&store, acked).unwrap_err();
    assert!(matches!(later, Error::Poisoned(_)), "{later:?}");
    assert!(later.to_string().contains("disk full at"), "{later}");
    assert!(matches!(store.check_writable(), Err(Error::Poisoned(_))));
    assert_acknowledged(&store, acked);
    drop(store);

    // Opening is refused the same way below the reserve. Closing gave back what RocksDB had
    // preallocated for its log (megabytes on this tmpfs): a filler takes the disk below again.
    let filler = fs.mnt.join("filler");
    let free = free_space(&path).unwrap().unwrap();
    let needed = floor + store_size(&path).unwrap();
    let fill = free.saturating_sub(needed) + floor / 2;
    std::fs::write(&filler, vec![1u8; usize::try_from(fill).unwrap()]).unwrap();
    let reopen = Store::open_with(&path, &pass(), Reserve::Keep { floor }).unwrap_err();
    assert!(matches!(reopen, Error::DiskFull { .. }), "{reopen:?}");

    // With space freed, everything acknowledged is there and the store writes again.
    std::fs::remove_file(&filler).unwrap();
    fs.resize("64m");
    let store = Store::open_with(&path, &pass(), Reserve::Keep { floor }).unwrap();
    assert_acknowledged(&store, acked);
    write_round(&store, acked).unwrap();
    assert_acknowledged(&store, acked + 1);
}

const CHILD_ENV: &str = "HEARTH_TEST_FULL_DISK_CHILD";
const CHILD_WBUF_ENV: &str = "HEARTH_TEST_FULL_DISK_WRITE_BUFFER";

/// Without the reserve, RocksDB itself meets the full disk: in its log (default memtables) or in
/// a table file it flushes (small memtables). Either must be an error, not an abort. Each case
/// runs in a child process (this test binary, this test) so that an abort fails the test with a
/// message and the tmpfs is still unmounted.
#[test]
fn rocksdb_meeting_a_full_disk_is_an_error_not_an_abort() {
    if let Some(mnt) = std::env::var_os(CHILD_ENV) {
        let buffer = std::env::var(CHILD_WBUF_ENV)
            .ok()
            .and_then(|v| v.parse().ok());
        return full_disk_child(Path::new(&mnt), buffer);
    }
    for buffer in [None, Some(256 * 1024)] {
        let Some(fs) = Tmpfs::mount("4m") else {
            return;
        };
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.args([
            "store::full_disk_tests::rocksdb_meeting_a_full_disk_is_an_error_not_an_abort",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, &fs.mnt);
        if let Some(b) = buffer {
            cmd.env(CHILD_WBUF_ENV, b.to_string());
        }
        let out = cmd.output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "write buffer {buffer:?}: the child ended with {} (an abort is signal 6):\n{stdout}\n{stderr}",
            out.status
        );
        let acked: u64 = stdout
            .split_once("full-disk child acked=")
            .and_then(|(_, rest)| rest.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("the child did not report:\n{stdout}\n{stderr}"));
        assert!(acked >= 10, "only {acked} writes on 4 MiB");
        eprintln!(
            "write buffer {buffer:?}: {acked} writes acknowledged; the child said:\n{stderr}"
        );
        fs.resize("64m");
        let store = Store::open_with(
            &fs.mnt.join("store"),
            &pass(),
            Reserve::Keep { floor: 1 << 20 },
        )
        .unwrap();
        assert_acknowledged(&store, acked);
    }
}

fn full_disk_child(mnt: &Path, write_buffer: Option<usize>) {
    let path = mnt.join("store");
    let tuning = Tuning { write_buffer };
    let store = Store::create_tuned(&path, &pass(), Reserve::Off, tuning).unwrap();
    let mut acked = 0u64;
    let failed = loop {
        assert!(acked < 1000, "4 MiB never ran out");
        match write_round(&store, acked) {
            Ok(()) => acked += 1,
            Err(e) => break e,
        }
    };
    eprintln!("write {acked} failed: {failed}");
    assert!(matches!(failed, Error::DiskFull { .. }), "{failed:?}");
    assert!(
        failed.to_string().contains("No space left on device"),
        "{failed}"
    );
    let later = write_round(&store, acked).unwrap_err();
    assert!(matches!(later, Error::Poisoned(_)), "{later:?}");
    assert_acknowledged(&store, acked);
    drop(store);
    // Reopening on the full disk fails (RocksDB replays its log into a table file) but does not
    // abort either.
    let reopen = Store::open_tuned(&path, &pass(), Reserve::Off, tuning).unwrap_err();
    eprintln!("reopening on the full disk: {reopen}");
    assert!(matches!(reopen, Error::DiskFull { .. }), "{reopen:?}");
    println!("full-disk child acked={acked}");
}
