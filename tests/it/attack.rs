//! Attacker tooling for the tamper, fault and load tests: a community whose schedule the test
//! chooses, attacker identities (certified or not) that connect to one honest node over real
//! libp2p and publish whatever bytes they like, and hand-made deltas and envelopes.

use std::path::Path;
use std::time::Duration;

use hearth_node::daemon::Summary;
use hearth_node::home::{Home, unix_now};
use hearth_node::network::Topic;
use hearth_protocol::{
    Certificate, DeltaSubmission, DpParams, Envelope, Hash32, Keypair, LayerDelta, Manifest,
    Payload, Period, PrivacyMode, Role, Signed, Stamp,
};
use libp2p::futures::StreamExt;
use libp2p::gossipsub::{self, IdentTopic};
use libp2p::{Multiaddr, PeerId, noise, tcp, yamux};
use tokio::sync::{mpsc, oneshot};

use crate::community::{Member, certificate, community};

/// A community of `n` members (see [`community`]) re-signed with another round period and
/// sampling rate; returns the members, the manifest and the admin's key. The first round starts
/// one period after the manifest's creation.
pub fn community_with(
    root: &Path,
    n: usize,
    model_sha: Hash32,
    period: u64,
    sampling_rate: f64,
) -> (Vec<Member>, Signed<Manifest>, Keypair) {
    let (members, original) = community(root, n, model_sha, PrivacyMode::Local);
    let admin = Home::open(&members[0].home(), &members[0].unlock()).unwrap();
    let admin_key = Keypair::from_seed(admin.key.seed());
    drop(admin);
    let mut body = original.body;
    body.created = unix_now();
    let s = &mut body.schedule;
    s.period = Period::Every { secs: period };
    s.submit_secs = period / 2;
    s.unmask_secs = period * 3 / 4;
    s.announce_secs = period - 1;
    s.sampling_rate = sampling_rate;
    let manifest = Signed::sign(body, &admin_key).unwrap();
    let id = manifest.verify().unwrap();
    let homes: Vec<Home> = members
        .iter()
        .map(|m| Home::open(&m.home(), &m.unlock()).unwrap())
        .collect();
    for home in &homes {
        let cert = certificate(&homes[0], id, home);
        home.set_membership(&manifest, &cert, &[]).unwrap();
    }
    (members, manifest, admin_key)
}

/// An admin-signed contributor certificate for `member`.
pub fn certify(admin: &Keypair, community: Hash32, member: &Keypair) -> Signed<Certificate> {
    let now = unix_now();
    Signed::sign(
        Certificate {
            member: member.member_id(),
            community,
            issued: now - 60,
            expires: now + 86_400,
            roles: vec![Role::Contributor, Role::Announcer],
        },
        admin,
    )
    .unwrap()
}

/// Stores `certs` in the homes of `members` (as if learned from peers before the run).
pub fn store_certificates(members: &[Member], certs: &[Signed<Certificate>]) {
    for m in members {
        let home = Home::open(&m.home(), &m.unlock()).unwrap();
        for c in certs {
            hearth_node::daemon::persist::put_certificate(&home.store, c).unwrap();
        }
    }
}

/// A zero delta for `round` on `base` that passes every content check of `manifest`
/// (`tag` makes the content, hence the hash, distinct).
pub fn zero_delta(manifest: &Manifest, round: u64, base: Hash32, tag: u32) -> DeltaSubmission {
    let d = manifest.lora.elements() as usize;
    let scale = (hearth_federation::max_scale(manifest.privacy.clip_norm, d) / 2.0) as f32;
    let layers = manifest
        .lora
        .tensors()
        .into_iter()
        .map(|t| LayerDelta {
            name: t.name,
            rows: t.rows,
            cols: t.cols,
            values: vec![0; (t.rows * t.cols) as usize],
        })
        .collect();
    let p = &manifest.privacy;
    DeltaSubmission::new(
        round,
        base,
        layers,
        scale,
        1 + tag,
        DpParams {
            mode: p.mode,
            clip_norm: p.clip_norm,
            noise_multiplier: p.noise_multiplier,
            noise_std: p.noise_multiplier * p.clip_norm,
        },
    )
}

/// A signed envelope of `payload`, without any validation of the payload (so it may be
/// malformed, oversized or carry non-finite values).
pub fn seal(
    key: &Keypair,
    community: Hash32,
    round: u64,
    nonce: u64,
    timestamp: u64,
    payload: &Payload,
) -> Vec<u8> {
    let stamp = Stamp {
        community,
        round,
        nonce,
        timestamp,
    };
    Envelope::seal(key, stamp, payload)
        .unwrap()
        .to_bytes()
        .unwrap()
}

/// The libp2p peer id of a member key.
pub fn peer_of(key: &Keypair) -> PeerId {
    PeerId::from_bytes(&key.member_id().to_peer_id_bytes()).unwrap()
}

/// An attacker peer: a raw libp2p swarm under `key` with gossipsub only (no identify, no
/// Kademlia: nobody else can discover it, so it speaks to its targets alone), that publishes
/// raw bytes on the community's topics. Gossip it receives is never forwarded on purpose.
pub struct Attacker {
    pub key: Keypair,
    commands: mpsc::Sender<Command>,
    task: tokio::task::JoinHandle<()>,
}

enum Command {
    Publish(Topic, Vec<u8>, oneshot::Sender<Result<(), String>>),
    /// Peers subscribed to the deltas topic, with their score.
    Peers(oneshot::Sender<Vec<(PeerId, f64)>>),
}

impl Attacker {
    /// Starts the swarm and dials `targets`; it publishes messages up to `max_transmit` bytes.
    pub fn spawn(
        key: Keypair,
        community: Hash32,
        targets: Vec<Multiaddr>,
        max_transmit: usize,
    ) -> Self {
        let hex = community.to_string();
        let config = gossipsub::ConfigBuilder::default()
            .validation_mode(gossipsub::ValidationMode::Strict)
            .max_transmit_size(max_transmit)
            .heartbeat_interval(Duration::from_millis(100))
            .message_id_fn(|m: &gossipsub::Message| {
                gossipsub::MessageId::from(Hash32::digest(&m.data).0.to_vec())
            })
            .build()
            .unwrap();
        let identity = libp2p::identity::Keypair::ed25519_from_bytes(key.seed()).unwrap();
        let mut swarm = libp2p::SwarmBuilder::with_existing_identity(identity)
            .with_tokio()
            .with_tcp(
                tcp::Config::default().nodelay(true),
                noise::Config::new,
                yamux::Config::default,
            )
            .unwrap()
            .with_behaviour(|k| {
                gossipsub::Behaviour::<
                    gossipsub::IdentityTransform,
                    gossipsub::AllowAllSubscriptionFilter,
                >::new(gossipsub::MessageAuthenticity::Signed(k.clone()), config)
                .unwrap()
            })
            .unwrap()
            .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
            .build();
        for t in Topic::ALL {
            swarm
                .behaviour_mut()
                .subscribe(&IdentTopic::new(t.name(&hex)))
                .unwrap();
        }
        for addr in targets {
            swarm.dial(addr).unwrap();
        }
        let (tx, mut rx) = mpsc::channel::<Command>(64);
        let deltas = IdentTopic::new(Topic::Deltas.name(&hex)).hash();
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = swarm.select_next_some() => {}
                    command = rx.recv() => match command {
                        None => break,
                        Some(Command::Publish(topic, bytes, reply)) => {
                            let r = swarm
                                .behaviour_mut()
                                .publish(IdentTopic::new(topic.name(&hex)), bytes)
                                .map(|_| ())
                                .map_err(|e| e.to_string());
                            let _ = reply.send(r);
                        }
                        Some(Command::Peers(reply)) => {
                            let g = swarm.behaviour();
                            let peers = g
                                .all_peers()
                                .filter(|(_, topics)| topics.contains(&&deltas))
                                .map(|(p, _)| (*p, g.peer_score(p).unwrap_or(0.0)))
                                .collect();
                            let _ = reply.send(peers);
                        }
                    },
                }
            }
        });
        Attacker {
            key,
            commands: tx,
            task,
        }
    }

    /// Peers subscribed to the community's deltas topic (a publish reaches them).
    pub async fn peers(&self) -> Vec<PeerId> {
        let (tx, rx) = oneshot::channel();
        if self.commands.send(Command::Peers(tx)).await.is_err() {
            return Vec::new();
        }
        rx.await
            .unwrap_or_default()
            .into_iter()
            .map(|(p, _)| p)
            .collect()
    }

    /// Waits (at most `limit`) until `peer` is subscribed to the deltas topic here; returns
    /// whether it is.
    pub async fn wait_for(&self, peer: PeerId, limit: Duration) -> bool {
        let end = tokio::time::Instant::now() + limit;
        while tokio::time::Instant::now() < end {
            if self.peers().await.contains(&peer) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }

    /// Publishes `bytes` on `topic`.
    pub async fn publish(&self, topic: Topic, bytes: Vec<u8>) -> Result<(), String> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Publish(topic, bytes, tx))
            .await
            .map_err(|_| "attacker stopped".to_string())?;
        rx.await.map_err(|_| "attacker stopped".to_string())?
    }

    /// Stops the swarm (its connections close).
    pub fn stop(self) {
        self.task.abort();
    }
}

/// The count of rejections for `reason` in a summary.
pub fn rejected(s: &Summary, reason: &str) -> u64 {
    s.rejected
        .iter()
        .find(|(r, _)| r == reason)
        .map_or(0, |(_, n)| *n)
}

/// Sleeps until unix time `unix` (seconds, plus `extra_ms`).
pub async fn sleep_until(unix: u64, extra_ms: u64) {
    let target =
        std::time::UNIX_EPOCH + Duration::from_secs(unix) + Duration::from_millis(extra_ms);
    if let Ok(left) = target.duration_since(std::time::SystemTime::now()) {
        tokio::time::sleep(left).await;
    }
}
