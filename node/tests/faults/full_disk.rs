//! A full disk under a running `hearth node`: its home is on a small tmpfs (mounting it needs
//! root: CI runs as root; elsewhere the test says why it is skipped and returns). Once it has
//! committed a version, a filler leaves less free space than the store keeps (64 MiB besides its
//! own size): the node must stop by itself with exit code 1 and a "disk full" message (no abort),
//! and, with the filler gone, start again and keep following the community.
//!
//! `cargo test -p hearth-node --test faults full_disk -- --nocapture`

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use hearth_node::home::unix_now;
use hearth_node::store::{DEFAULT_FLOOR, free_space};

use crate::harness::{Running, community, tiny_model};

const PERIOD: u64 = 6;

/// A tmpfs mounted at an existing folder, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Option<Self> {
        let root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.trim_ascii() == b"0");
        if !root {
            eprintln!("skipped: mounting a small tmpfs to fill needs root (CI runs as root)");
            return None;
        }
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mount -t tmpfs failed as root: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Some(Self(at.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        for lazy in [false, true] {
            let mut cmd = Command::new("umount");
            if lazy {
                cmd.arg("-l");
            }
            if cmd.arg(&self.0).status().is_ok_and(|s| s.success()) {
                return;
            }
        }
        eprintln!("could not unmount {}", self.0.display());
    }
}

/// Waits up to `limit` for the process to end by itself; its status, or `None` (killed then).
fn wait_exit(p: &mut Running, limit: Duration) -> Option<std::process::ExitStatus> {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if let Some(status) = p.child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = p.child.kill();
    let _ = p.child.wait();
    None
}

#[test]
fn a_full_disk_stops_the_node_with_a_clear_error_and_it_starts_again() {
    let root = tempfile::tempdir().unwrap();
    let (model, sha) = tiny_model(root.path());
    let victim_dir = root.path().join("m0");
    std::fs::create_dir_all(&victim_dir).unwrap();
    let Some(_fs) = Tmpfs::mount(&victim_dir, "384m") else {
        return;
    };
    let (members, signed) = community(root.path(), 2, sha, PERIOD);
    let created = signed.body.created;
    let [victim, peer] = &members[..] else {
        unreachable!()
    };
    let peer_run = Running::start(peer.node(&model, &[victim.addr()], 100_000, "peer"));
    let mut run = Running::start(victim.node(&model, &[peer.addr()], 100_000, "full"));
    assert!(
        run.wait_for(
            "round closed: new community version",
            Duration::from_secs(60)
        ),
        "the node committed no version:\n{}",
        run.log.join("\n")
    );

    // Leave 32 MiB free: half the floor, whatever the store holds.
    let free = free_space(&victim.home()).unwrap().unwrap();
    let filler = victim_dir.join("filler");
    let fill = free - DEFAULT_FLOOR / 2;
    std::fs::write(&filler, vec![0u8; usize::try_from(fill).unwrap()]).unwrap();
    let filled = Instant::now();
    let status = wait_exit(&mut run, Duration::from_secs(60));
    eprintln!(
        "stopped {:.1} s after the filler",
        filled.elapsed().as_secs_f64()
    );
    run.drain();
    let log = run.log.join("\n");
    let status = status.unwrap_or_else(|| panic!("the node kept running on a full disk:\n{log}"));
    assert_eq!(status.code(), Some(1), "{status}:\n{log}");
    let last = run.log.last().map(String::as_str).unwrap_or_default();
    assert!(
        last.starts_with("error: ") && last.contains("disk full at "),
        "the node's last words are not a disk-full error: {last}\n{log}"
    );
    eprintln!("{last}");

    // Space back: the node starts again, on everything it had, and follows the community.
    std::fs::remove_file(&filler).unwrap();
    let target = (unix_now() - created) / PERIOD + 2;
    let again = Running::start(victim.node(&model, &[peer.addr()], target, "again"));
    let (ok, log) = again.wait();
    assert!(ok, "the node did not start again:\n{}", log.join("\n"));
    assert!(
        log.iter()
            .any(|l| l.contains("restored the community head")),
        "{}",
        log.join("\n")
    );
    let summary = victim.summary("again").unwrap();
    assert!(summary.head_round >= 1, "{summary:?}");
    peer_run.terminate();
}
