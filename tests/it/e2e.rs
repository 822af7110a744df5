//! End to end over real libp2p on loopback, real RocksDB stores and a tiny real model: nodes
//! (each `hearth_node::daemon::run`, as `hearth node` runs it) train, release DP deltas, run
//! rounds and must end on the same community version; a node stopped mid-run catches up by sync;
//! a stranger's and a forger's messages are rejected and not forwarded; and nothing a node sends
//! contains its private text or its personal adapter.

use std::collections::HashSet;
use std::time::Duration;

use hearth_models::{Llama, LlamaConfig, LoraConfig, Target};
use hearth_node::daemon::{Summary, run};
use hearth_node::home::{Home, unix_now};
use hearth_node::network::{self, NetConfig, Topic};
use hearth_protocol::{Envelope, Hash32, Keypair, Manifest, Payload, PrivacyMode, Stamp};

use crate::community::{
    Member, PERIOD, SECURE_PERIOD, captured, community, community_with, community_with_groups,
    tiny_model,
};

fn rejected(s: &Summary, reason: &str) -> u64 {
    s.rejected
        .iter()
        .find(|(r, _)| r == reason)
        .map_or(0, |(_, n)| *n)
}

/// A personal adapter with random `B`, stored in the member's home; returns its tensors' bytes.
fn store_personal_adapter(m: &Member, seed: u64) -> Vec<Vec<u8>> {
    let home = Home::open(&m.home(), &m.unlock()).unwrap();
    let config = LlamaConfig::tiny(320);
    let mut model = Llama::init_random(&config, 1, &burn::tensor::Device::flex()).unwrap();
    let slot = model
        .add_adapter(LoraConfig::new(4, 8.0, vec![Target::Q, Target::V]).with_seed(seed))
        .unwrap();
    let mut weights = model.adapter_weights(slot).unwrap();
    let b: Vec<f32> = hearth_models::Prng::stream(seed, 0).fill_uniform(weights.b_len(), 0.5);
    weights.set_flat_b(&b).unwrap();
    hearth_node::local::save_personal(&home, &weights).unwrap();
    weights
        .tensors
        .iter()
        .map(|t| t.values.iter().flat_map(|v| v.to_le_bytes()).collect())
        .collect()
}

/// Every `n`-byte window of every payload a member sent.
fn windows(members: &[Member], n: usize) -> HashSet<Vec<u8>> {
    let mut set = HashSet::new();
    for m in members {
        for payload in captured(&m.capture()) {
            for w in payload.windows(n) {
                set.insert(w.to_vec());
            }
        }
    }
    set
}

fn assert_nothing_private_left(members: &[Member], personal: &[Vec<Vec<u8>>]) {
    let total: usize = members.iter().map(|m| captured(&m.capture()).len()).sum();
    assert!(total > 10, "too few payloads captured ({total})");
    let sent = windows(members, 24);
    for m in members {
        for gram in m.text.as_bytes().windows(24) {
            assert!(
                !sent.contains(gram),
                "private text {:?} left a node",
                String::from_utf8_lossy(gram)
            );
        }
    }
    for tensors in personal {
        for bytes in tensors {
            for w in bytes.chunks_exact(24) {
                assert!(!sent.contains(w), "personal adapter bytes left a node");
            }
        }
    }
}

async fn wait_until(unix: u64) {
    let now = unix_now();
    if unix > now {
        tokio::time::sleep(Duration::from_secs(unix - now)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_run_rounds_agree_and_leak_nothing() {
    let root = tempfile::tempdir().unwrap();
    let (model, sha) = tiny_model(root.path());
    let (members, _) = community(root.path(), 3, sha, PrivacyMode::Local);
    let personal: Vec<_> = members
        .iter()
        .enumerate()
        .map(|(i, m)| store_personal_adapter(m, 100 + i as u64))
        .collect();
    let rounds = 3;
    let boot = vec![members[0].addr()];
    // Member 1 has a memory limit far above its use; member 2 one below it (1 MiB): it follows
    // the community without training or contributing.
    let limits = [None, Some(64 << 30), Some(1 << 20)];
    let tasks: Vec<_> = members
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let b = if i == 0 { vec![] } else { boot.clone() };
            let mut opts = m.options(&model, b, rounds);
            opts.train.max_memory_bytes = limits[i];
            tokio::spawn(run(opts, std::future::pending()))
        })
        .collect();
    let mut summaries = Vec::new();
    for t in tasks {
        summaries.push(t.await.unwrap().unwrap());
    }
    for s in &summaries {
        eprintln!("{s:?}");
        assert_eq!(s.head_round, rounds, "{s:?}");
        assert!(s.bytes_sent > 0 && s.bytes_received > 0);
    }
    for s in &summaries[..2] {
        assert!(s.contributions >= 2, "{s:?}");
        assert!(s.rho_spent > 0.0 && s.epsilon > 0.0, "{s:?}");
    }
    let limited = &summaries[2];
    assert_eq!(
        (limited.contributions, limited.rho_spent),
        (0, 0.0),
        "{limited:?}"
    );
    let versions: HashSet<&str> = summaries.iter().map(|s| s.head_version.as_str()).collect();
    assert_eq!(versions.len(), 1, "nodes disagree: {versions:?}");
    assert_ne!(
        summaries[0].head_version,
        hearth_node::bridge::genesis(&manifest_of(&members[0]).lora)
            .version()
            .to_string()
    );
    assert_nothing_private_left(&members, &personal);
}

/// A community with a probe set: every node loads the base model for the probe check,
/// judges each candidate version on the text before applying it, and counts it; with the
/// largest tolerance nothing is refused and the nodes agree as without it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_judge_every_version_on_the_probe_set() {
    let root = tempfile::tempdir().unwrap();
    let (model, sha) = tiny_model(root.path());
    let (members, manifest) = community_with(root.path(), 3, sha, PrivacyMode::Local, |m| {
        m.aggregation.probe = Some(hearth_protocol::ProbeSet {
            text: "Now is the winter of our discontent made glorious summer by this sun of York. "
                .repeat(6),
            max_increase: hearth_protocol::MAX_PROBE_INCREASE,
        });
    });
    assert!(manifest.body.aggregation.probe.is_some());
    let rounds = 2;
    let boot = vec![members[0].addr()];
    let tasks: Vec<_> = members
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let b = if i == 0 { vec![] } else { boot.clone() };
            tokio::spawn(run(m.options(&model, b, rounds), std::future::pending()))
        })
        .collect();
    let mut summaries = Vec::new();
    for t in tasks {
        summaries.push(t.await.unwrap().unwrap());
    }
    for s in &summaries {
        eprintln!("{s:?}");
        assert_eq!(s.head_round, rounds, "{s:?}");
        assert!(s.probe_checked >= rounds, "{s:?}");
        assert_eq!(s.probe_refused, 0, "{s:?}");
        assert_eq!(s.rounds_failed, 0, "{s:?}");
    }
    let versions: HashSet<&str> = summaries.iter().map(|s| s.head_version.as_str()).collect();
    assert_eq!(versions.len(), 1, "nodes disagree: {versions:?}");
    assert_ne!(
        summaries[0].head_version,
        hearth_node::bridge::genesis(&manifest.body.lora)
            .version()
            .to_string()
    );
}

fn manifest_of(m: &Member) -> Manifest {
    Home::open(&m.home(), &m.unlock())
        .unwrap()
        .manifest()
        .unwrap()
        .unwrap()
        .body
}

/// A node outside the community that connects to `target` and publishes `n` messages: envelopes
/// signed by its own key (not a member), and envelopes claiming to be from `victim` with its
/// own signature (forged).
async fn stranger(target: &Member, manifest: &Manifest, victim: &Home, round: u64) {
    let community = manifest.community_id().unwrap();
    let mut config = NetConfig::loopback();
    config.bootstrap = vec![target.addr()];
    config.max_transmit_size = manifest.limits.message_bytes();
    let own = Keypair::from_seed([0x5a; 32]);
    let (client, mut events, _task) = network::spawn(
        libp2p::identity::Keypair::ed25519_from_bytes(own.seed()).unwrap(),
        &community.to_string(),
        config,
    )
    .unwrap();
    // A version announcement from a non-member, and the same claimed from the victim.
    let announcement = Payload::Version(hearth_protocol::VersionAnnouncement {
        round,
        parent: Hash32::ZERO,
        version: Hash32::digest(b"not a version"),
        deltas: vec![],
    });
    let stamp = |nonce| Stamp {
        community,
        round,
        nonce,
        timestamp: unix_now(),
    };
    let not_member =
        hearth_protocol::encode(&own, stamp(1), &announcement, &manifest.limits).unwrap();
    let mut forged = Envelope::seal(&own, stamp(2), &announcement).unwrap();
    forged.header.sender = victim.member_id();
    let forged = forged.to_bytes().unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(4);
    let mut sent = [false, false];
    while tokio::time::Instant::now() < deadline && !(sent[0] && sent[1]) {
        while let Ok(ev) = events.try_recv() {
            drop(ev);
        }
        for (i, bytes) in [&not_member, &forged].into_iter().enumerate() {
            if !sent[i] && client.publish(Topic::Versions, bytes.clone()).await.is_ok() {
                sent[i] = true;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(sent[0] && sent[1], "the stranger could not publish");
    tokio::time::sleep(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stopped_node_catches_up_and_strangers_are_rejected() {
    let root = tempfile::tempdir().unwrap();
    let (model, sha) = tiny_model(root.path());
    let (members, manifest) = community(root.path(), 3, sha, PrivacyMode::Local);
    let t0 = manifest.body.created;
    let rounds = 5;
    let boot = vec![members[0].addr()];
    let a = tokio::spawn(run(
        members[0].options(&model, vec![], rounds),
        std::future::pending(),
    ));
    let b = tokio::spawn(run(
        members[1].options(&model, boot.clone(), rounds),
        std::future::pending(),
    ));
    // Member 2 takes part in round 1 only, then stops.
    let first = run(
        members[2].options(&model, boot.clone(), 1),
        std::future::pending(),
    )
    .await
    .unwrap();
    assert_eq!(first.head_round, 1, "{first:?}");
    // While it is away, a stranger speaks in round 2.
    let victim = Home::open(&members[2].home(), &members[2].unlock()).unwrap();
    wait_until(t0 + 2 * PERIOD).await;
    stranger(&members[0], &manifest.body, &victim, 2).await;
    drop(victim);
    // Back after round 3 has closed: it must fetch rounds 2 and 3, verify and adopt them.
    wait_until(t0 + 3 * PERIOD + PERIOD / 2 + 1).await;
    let back = run(
        members[2].options(&model, boot, rounds),
        std::future::pending(),
    )
    .await
    .unwrap();
    let (a, b) = (a.await.unwrap().unwrap(), b.await.unwrap().unwrap());
    for s in [&a, &b, &back] {
        eprintln!("{s:?}");
        assert_eq!(s.head_round, rounds, "{s:?}");
    }
    assert!(
        back.rounds_adopted >= 2,
        "did not catch up by sync: {back:?}"
    );
    assert_eq!(a.head_version, b.head_version);
    assert_eq!(a.head_version, back.head_version);
    // Member 0 saw and rejected both; members 1 and 2 never got them (not forwarded).
    assert!(rejected(&a, "not_member") >= 1, "{a:?}");
    assert!(rejected(&a, "forged") >= 1, "{a:?}");
    for s in [&b, &back] {
        assert_eq!(rejected(s, "not_member"), 0, "forwarded: {s:?}");
        assert_eq!(rejected(s, "forged"), 0, "forwarded: {s:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_nodes_run_secure_rounds_and_agree() {
    let root = tempfile::tempdir().unwrap();
    let (model, sha) = tiny_model(root.path());
    let (members, manifest) = community(root.path(), 8, sha, PrivacyMode::Distributed);
    let rounds = 2;
    let boot = vec![members[0].addr()];
    let tasks: Vec<_> = members
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let b = if i == 0 { vec![] } else { boot.clone() };
            let opts = m.options_with_period(&model, b, rounds, SECURE_PERIOD);
            tokio::spawn(run(opts, std::future::pending()))
        })
        .collect();
    let mut summaries = Vec::new();
    for t in tasks {
        summaries.push(t.await.unwrap().unwrap());
    }
    for s in &summaries {
        eprintln!("{s:?}");
        assert_eq!(s.head_round, rounds, "{s:?}");
        assert!(s.contributions >= 1, "{s:?}");
    }
    let versions: HashSet<&str> = summaries.iter().map(|s| s.head_version.as_str()).collect();
    assert_eq!(versions.len(), 1, "nodes disagree: {versions:?}");
    let genesis = hearth_node::bridge::genesis(&manifest.body.lora).version();
    assert_ne!(summaries[0].head_version, genesis.to_string());
    // Masked inputs only: no payload carries a member's private text.
    assert_nothing_private_left(&members, &[]);
}

/// Distributed mode, four members in one group of at least three (`t = 1`): member 3 takes part
/// in round 1 and stops; rounds 2 and 3 run without it (a dropout). It comes back during round
/// 3's unmask phase, fetches the secure-aggregation messages of the rounds it missed over
/// `/hearth/sync/1`, recomputes each version from them (`Community::verify_secure_round`),
/// adopts it, and ends on the community's version.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stopped_node_catches_up_on_secure_rounds() {
    let root = tempfile::tempdir().unwrap();
    let (model, sha) = tiny_model(root.path());
    let (members, manifest) =
        community_with_groups(root.path(), 4, sha, PrivacyMode::Distributed, 3);
    let t0 = manifest.body.created;
    let rounds = 4;
    let boot = vec![members[0].addr()];
    let live: Vec<_> = members[..3]
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let b = if i == 0 { vec![] } else { boot.clone() };
            let opts = m.options_with_period(&model, b, rounds, SECURE_PERIOD);
            tokio::spawn(run(opts, std::future::pending()))
        })
        .collect();
    let first = run(
        members[3].options_with_period(&model, boot.clone(), 1, SECURE_PERIOD),
        std::future::pending(),
    )
    .await
    .unwrap();
    assert_eq!(first.head_round, 1, "{first:?}");
    // Back in round 3's unmask phase: round 2 is to be fetched.
    wait_until(t0 + 3 * SECURE_PERIOD + SECURE_PERIOD * 3 / 4 - 2).await;
    let back = run(
        members[3].options_with_period(&model, boot, rounds, SECURE_PERIOD),
        std::future::pending(),
    )
    .await
    .unwrap();
    let mut summaries = Vec::new();
    for t in live {
        summaries.push(t.await.unwrap().unwrap());
    }
    for s in summaries.iter().chain([&back]) {
        eprintln!("{s:?}");
        assert_eq!(s.head_round, rounds, "{s:?}");
    }
    assert!(
        back.rounds_adopted >= 1,
        "did not catch up by sync: {back:?}"
    );
    let versions: HashSet<&str> = summaries
        .iter()
        .chain([&back])
        .map(|s| s.head_version.as_str())
        .collect();
    assert_eq!(versions.len(), 1, "nodes disagree: {versions:?}");
    // The live nodes computed every round themselves.
    for s in &summaries {
        assert!(s.rounds_closed >= rounds - 1, "{s:?}");
    }
}
