//! Building a local community for end-to-end tests: a tiny model file, homes with identities,
//! a signed manifest with a short round period, certificates, private documents, free loopback
//! ports.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hearth_models::LlamaConfig;
use hearth_node::daemon::{Options, TrainSettings};
use hearth_node::home::{Home, unix_now};
use hearth_node::secrets::Unlock;
use hearth_protocol::{
    Aggregation, BaseModel, Certificate, Hash32, LoraShape, Manifest, Period, Privacy, PrivacyMode,
    Role, Rule, Schedule, Signed, Target,
};
use libp2p::{Multiaddr, PeerId};

/// Seconds between rounds.
pub const PERIOD: u64 = 6;

/// One member's folder, key file and listen port.
pub struct Member {
    pub dir: PathBuf,
    pub key_file: PathBuf,
    pub port: u16,
    pub peer: PeerId,
    pub text: String,
}

impl Member {
    pub fn home(&self) -> PathBuf {
        self.dir.join("home")
    }

    pub fn unlock(&self) -> Unlock {
        Unlock::KeyFile(self.key_file.clone())
    }

    pub fn addr(&self) -> Multiaddr {
        format!("/ip4/127.0.0.1/tcp/{}/p2p/{}", self.port, self.peer)
            .parse()
            .unwrap()
    }

    pub fn capture(&self) -> PathBuf {
        self.dir.join("capture.bin")
    }

    pub fn summary(&self) -> PathBuf {
        self.dir.join("summary.json")
    }

    /// Daemon options: loopback only, no mDNS, short training, stop after `rounds`.
    pub fn options(&self, model: &Path, bootstrap: Vec<Multiaddr>, rounds: u64) -> Options {
        self.options_with_period(model, bootstrap, rounds, PERIOD)
    }

    /// [`Member::options`] for a community with another round period.
    pub fn options_with_period(
        &self,
        model: &Path,
        bootstrap: Vec<Multiaddr>,
        rounds: u64,
        period: u64,
    ) -> Options {
        Options {
            home: self.home(),
            unlock: self.unlock(),
            listen: vec![format!("/ip4/127.0.0.1/tcp/{}", self.port).parse().unwrap()],
            bootstrap,
            mdns: false,
            model: Some(model.to_path_buf()),
            contribute: true,
            train: TrainSettings {
                seq_len: 16,
                learning_rate: 1e-2,
                max_steps: 40,
                max_seconds: 2.0,
                min_seconds: 0.5,
                max_memory_bytes: None,
            },
            rounds: Some(rounds),
            max_runtime: Some(Duration::from_secs(period * (rounds + 4))),
            summary: Some(self.summary()),
            capture: Some(self.capture()),
            api: None,
        }
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

/// Distinct private text per member: a few long sentences with member-specific words.
pub fn private_text(i: usize) -> String {
    let words = [
        ["amber", "harbour", "lantern", "quince"],
        ["cobalt", "meadow", "thimble", "walnut"],
        ["saffron", "glacier", "parchment", "heron"],
    ];
    let w = &words[i % words.len()];
    (0..40)
        .map(|k| {
            format!(
                "Member {i} writes line {k}: the {} {} kept the {} near the {}.\n",
                w[k % 4],
                w[(k + 1) % 4],
                w[(k + 2) % 4],
                w[(k + 3) % 4]
            )
        })
        .collect()
}

/// A tiny model file in `dir`; returns its path and sha256.
pub fn tiny_model(dir: &Path) -> (PathBuf, Hash32) {
    let path = dir.join("tiny.gguf");
    hearth_models::tiny::write_gguf(&path, &LlamaConfig::tiny(320), 7).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    (path, Hash32::digest(&bytes))
}

/// Seconds between rounds of a secure-aggregation community (its phases need more room).
pub const SECURE_PERIOD: u64 = 12;

/// The manifest of a community on the tiny model, created `created`: local mode with
/// [`PERIOD`], or distributed mode (secure aggregation) with [`SECURE_PERIOD`].
pub fn manifest(
    admin: &Home,
    model_sha: Hash32,
    created: u64,
    mode: PrivacyMode,
) -> Signed<Manifest> {
    let period = match mode {
        PrivacyMode::Local => PERIOD,
        PrivacyMode::Distributed => SECURE_PERIOD,
    };
    let config = LlamaConfig::tiny(320);
    let targets = [hearth_models::Target::Q, hearth_models::Target::V]
        .iter()
        .map(|t| hearth_node::cli::membership::target_shape(*t, &config))
        .collect::<Vec<Target>>();
    let m = Manifest {
        name: "e2e".into(),
        admin: admin.member_id(),
        created,
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
            mode,
            noise_multiplier: 0.5,
            clip_norm: 1.0,
            budget_rho: 40.0,
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
    Signed::sign(m, &admin.key).unwrap()
}

/// A certificate for `member`, signed by the admin.
pub fn certificate(admin: &Home, community: Hash32, member: &Home) -> Signed<Certificate> {
    let now = unix_now();
    Signed::sign(
        Certificate {
            member: member.member_id(),
            community,
            issued: now - 60,
            expires: now + 86_400,
            roles: vec![Role::Contributor, Role::Announcer],
        },
        &admin.key,
    )
    .unwrap()
}

/// `n` members in `root`: homes initialised, member 0 the admin, everyone certified and joined,
/// private documents ingested; the first round starts two periods from now.
pub fn community(
    root: &Path,
    n: usize,
    model_sha: Hash32,
    mode: PrivacyMode,
) -> (Vec<Member>, Signed<Manifest>) {
    community_with_groups(root, n, model_sha, mode, 8)
}

/// [`community`] whose secure-aggregation groups have at least `min_group_size` members.
pub fn community_with_groups(
    root: &Path,
    n: usize,
    model_sha: Hash32,
    mode: PrivacyMode,
    min_group_size: u32,
) -> (Vec<Member>, Signed<Manifest>) {
    community_with(root, n, model_sha, mode, |m| {
        m.aggregation.min_group_size = min_group_size;
    })
}

/// [`community`] with its manifest changed by `edit` before the admin signs it.
pub fn community_with(
    root: &Path,
    n: usize,
    model_sha: Hash32,
    mode: PrivacyMode,
    edit: impl FnOnce(&mut Manifest),
) -> (Vec<Member>, Signed<Manifest>) {
    let mut members = Vec::new();
    let mut homes = Vec::new();
    for i in 0..n {
        let dir = root.join(format!("m{i}"));
        std::fs::create_dir_all(&dir).unwrap();
        let key_file = dir.join("key");
        std::fs::write(&key_file, [i as u8 + 1; 32]).unwrap();
        let home = Home::init(&dir.join("home"), &Unlock::KeyFile(key_file.clone())).unwrap();
        let peer = PeerId::from_bytes(&home.member_id().to_peer_id_bytes()).unwrap();
        members.push(Member {
            dir,
            key_file,
            port: free_port(),
            peer,
            text: private_text(i),
        });
        homes.push(home);
    }
    let created = unix_now(); // round 1 starts one period from now
    let mut body = manifest(&homes[0], model_sha, created, mode).body;
    edit(&mut body);
    let manifest = Signed::sign(body, &homes[0].key).unwrap();
    let community = manifest.verify().unwrap();
    let certs: Vec<_> = homes
        .iter()
        .map(|h| certificate(&homes[0], community, h))
        .collect();
    for ((member, home), cert) in members.iter().zip(&homes).zip(&certs) {
        home.set_membership(&manifest, cert, &[]).unwrap();
        if mode == PrivacyMode::Distributed {
            // Secure rounds need every node to know the same members at the round's start: the
            // admin hands out the roster with the invites.
            for c in &certs {
                hearth_node::daemon::persist::put_certificate(&home.store, c).unwrap();
            }
        }
        let docs = member.dir.join("docs");
        std::fs::create_dir_all(&docs).unwrap();
        std::fs::write(docs.join("diary.txt"), &member.text).unwrap();
        hearth_node::documents::ingest_folder(&home.store, &docs).unwrap();
    }
    (members, manifest)
}

/// Every length-prefixed payload in a capture file.
pub fn captured(path: &Path) -> Vec<Vec<u8>> {
    let bytes = std::fs::read(path).unwrap_or_default();
    let mut out = Vec::new();
    let mut rest = bytes.as_slice();
    while rest.len() >= 4 {
        let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        assert!(rest.len() >= 4 + len, "truncated capture record");
        out.push(rest[4..4 + len].to_vec());
        rest = &rest[4 + len..];
    }
    assert!(rest.is_empty(), "trailing capture bytes");
    out
}
