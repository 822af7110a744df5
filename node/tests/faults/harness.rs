//! A local community for process-level fault tests: the tiny model, member homes (identity
//! unlocked by a key file, private documents ingested), a manifest with a short round period and
//! a large privacy budget, certificates, free loopback ports; and `hearth node` processes whose
//! log lines are read as they come.

use std::io::{BufRead as _, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use hearth_models::{LlamaConfig, Target as LoraTarget};
use hearth_node::daemon::Summary;
use hearth_node::home::{Home, unix_now};
use hearth_node::secrets::Unlock;
use hearth_protocol::{
    Aggregation, BaseModel, Certificate, Hash32, LoraShape, Manifest, Period, Privacy, PrivacyMode,
    Role, Rule, Schedule, Signed, Target,
};
use libp2p::PeerId;

/// One member: folder, key file, port, peer id.
pub struct Member {
    pub dir: PathBuf,
    pub port: u16,
    pub peer: PeerId,
}

impl Member {
    pub fn home(&self) -> PathBuf {
        self.dir.join("home")
    }

    pub fn unlock(&self) -> Unlock {
        Unlock::KeyFile(self.dir.join("key"))
    }

    pub fn open(&self) -> Home {
        Home::open(&self.home(), &self.unlock()).unwrap()
    }

    pub fn addr(&self) -> String {
        format!("/ip4/127.0.0.1/tcp/{}/p2p/{}", self.port, self.peer)
    }

    /// `hearth node` for this member: loopback only, no mDNS, no API, one training thread,
    /// short training, stop after `rounds`, summary and capture files named by `tag`.
    pub fn node(&self, model: &Path, bootstrap: &[String], rounds: u64, tag: &str) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_hearth"));
        cmd.arg("node")
            .arg("--home")
            .arg(self.home())
            .arg("--key-file")
            .arg(self.dir.join("key"))
            .arg("--model")
            .arg(model)
            .args(["--listen", &format!("/ip4/127.0.0.1/tcp/{}", self.port)])
            .args(["--no-mdns", "--no-api", "--threads", "1", "--seq-len", "16"])
            .args(["--train-secs", "2", "--lr", "0.01"])
            .args(["--rounds", &rounds.to_string()])
            .args(["--max-runtime", "600"])
            .arg("--summary")
            .arg(self.dir.join(format!("summary-{tag}.json")))
            .arg("--capture")
            .arg(self.dir.join(format!("capture-{tag}.bin")))
            .env("RAYON_NUM_THREADS", "1")
            .env("RUST_LOG", "info,libp2p=warn,hearth_node::daemon=debug")
            .env_remove("HEARTH_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for b in bootstrap {
            cmd.args(["--bootstrap", b]);
        }
        cmd
    }

    pub fn summary(&self, tag: &str) -> Option<Summary> {
        let bytes = std::fs::read(self.dir.join(format!("summary-{tag}.json"))).ok()?;
        Some(serde_json::from_slice(&bytes).unwrap())
    }

    pub fn capture(&self, tag: &str) -> PathBuf {
        self.dir.join(format!("capture-{tag}.bin"))
    }
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The tiny model in `dir`: path and sha256.
pub fn tiny_model(dir: &Path) -> (PathBuf, Hash32) {
    let path = dir.join("tiny.gguf");
    hearth_models::tiny::write_gguf(&path, &LlamaConfig::tiny(320), 7).unwrap();
    let sha = Hash32::digest(&std::fs::read(&path).unwrap());
    (path, sha)
}

/// `n` members in `root` of a local-mode community on the tiny model with rounds every
/// `period` seconds (round 1 one period from now), everyone certified, joined, with private
/// documents. Returns the members and the manifest.
pub fn community(
    root: &Path,
    n: usize,
    model_sha: Hash32,
    period: u64,
) -> (Vec<Member>, Signed<Manifest>) {
    let mut members = Vec::new();
    let mut homes = Vec::new();
    for i in 0..n {
        let dir = root.join(format!("m{i}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("key"), [i as u8 + 1; 32]).unwrap();
        let home = Home::init(&dir.join("home"), &Unlock::KeyFile(dir.join("key"))).unwrap();
        let peer = PeerId::from_bytes(&home.member_id().to_peer_id_bytes()).unwrap();
        members.push(Member {
            dir,
            port: free_port(),
            peer,
        });
        homes.push(home);
    }
    let config = LlamaConfig::tiny(320);
    let targets = [LoraTarget::Q, LoraTarget::V]
        .iter()
        .map(|t| hearth_node::cli::membership::target_shape(*t, &config))
        .collect::<Vec<Target>>();
    let manifest = Manifest {
        name: "faults".into(),
        admin: homes[0].member_id(),
        created: unix_now(),
        base_model: BaseModel {
            name: "tiny.gguf".into(),
            sha256: model_sha,
        },
        lora: LoraShape {
            rank: 2,
            alpha: 4.0,
            layers: config.layers as u32,
            targets,
            ffa_seed: 11,
        },
        privacy: Privacy {
            mode: PrivacyMode::Local,
            noise_multiplier: 0.5,
            clip_norm: 1.0,
            budget_rho: 100_000.0,
            ..Privacy::default()
        },
        aggregation: Aggregation {
            rule: Rule::Mean,
            ..Aggregation::default()
        },
        schedule: Schedule {
            period: Period::Every { secs: period },
            submit_secs: period / 2,
            unmask_secs: period * 3 / 4,
            announce_secs: period - 1,
            sampling_rate: 1.0,
            min_contributions: 2,
        },
        limits: Default::default(),
    };
    let manifest = Signed::sign(manifest, &homes[0].key).unwrap();
    let community = manifest.verify().unwrap();
    let now = unix_now();
    for (i, home) in homes.iter().enumerate() {
        let cert = Signed::sign(
            Certificate {
                member: home.member_id(),
                community,
                issued: now - 60,
                expires: now + 86_400,
                roles: vec![Role::Contributor, Role::Announcer],
            },
            &homes[0].key,
        )
        .unwrap();
        home.set_membership(&manifest, &cert, &[]).unwrap();
        let docs = members[i].dir.join("docs");
        std::fs::create_dir_all(&docs).unwrap();
        let text: String = (0..40)
            .map(|k| format!("Member {i} line {k}: the lantern by the harbour stays lit.\n"))
            .collect();
        std::fs::write(docs.join("diary.txt"), text).unwrap();
        hearth_node::documents::ingest_folder(&home.store, &docs).unwrap();
    }
    (members, manifest)
}

/// A running `hearth node` whose stderr lines arrive on a channel (with their arrival time).
pub struct Running {
    pub child: Child,
    lines: mpsc::Receiver<(Instant, String)>,
    pub log: Vec<String>,
}

impl Running {
    pub fn start(mut cmd: Command) -> Self {
        let mut child = cmd.spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send((Instant::now(), line)).is_err() {
                    break;
                }
            }
        });
        Running {
            child,
            lines: rx,
            log: Vec::new(),
        }
    }

    /// Waits until a log line containing `needle` appears (true) or `limit` passes or the
    /// process ends (false).
    pub fn wait_for(&mut self, needle: &str, limit: Duration) -> bool {
        let end = Instant::now() + limit;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok((_, line)) => {
                    let hit = line.contains(needle);
                    self.log.push(line);
                    if hit {
                        return true;
                    }
                }
                Err(_) => return false,
            }
        }
    }

    /// Reads the remaining log lines (after the process ended).
    pub fn drain(&mut self) {
        while let Ok((_, line)) = self.lines.recv_timeout(Duration::from_millis(200)) {
            self.log.push(line);
        }
    }

    /// SIGKILL, then reap.
    pub fn kill9(mut self) -> Vec<String> {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        self.drain();
        self.log
    }

    /// SIGTERM (the daemon stops cleanly and writes its summary), then reap.
    pub fn terminate(mut self) -> Vec<String> {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        self.child.wait().unwrap();
        self.drain();
        self.log
    }

    /// Waits for the process to end by itself; whether it succeeded.
    pub fn wait(mut self) -> (bool, Vec<String>) {
        let ok = self.child.wait().unwrap().success();
        self.drain();
        (ok, self.log)
    }
}

/// Every complete length-prefixed record of a capture file (a torn last record, from a kill in
/// the middle of a write, is left out: it was never handed to the network).
pub fn captured(path: &Path) -> Vec<Vec<u8>> {
    let bytes = std::fs::read(path).unwrap_or_default();
    let mut out = Vec::new();
    let mut rest = bytes.as_slice();
    while rest.len() >= 4 {
        let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        if rest.len() < 4 + len {
            break;
        }
        out.push(rest[4..4 + len].to_vec());
        rest = &rest[4 + len..];
    }
    out
}

/// A small seeded generator (splitmix64) for the kill schedule.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}
