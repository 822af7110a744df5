//! The tamper matrix over real libp2p: attacker peers connect to one honest node of a 3-node
//! community and, during round 1's submit window, inject one message per attack. Each must be
//! rejected by that node with its own reason, never reach the two other honest nodes (not
//! forwarded), and the community must still complete its rounds and agree.
//!
//! Misbehaviour is penalised by gossipsub scoring (three rejections graylist a peer), so every
//! penalised attack comes from its own identity; the attacks that are only ignored (replay,
//! duplicate, stale round, wrong base) share the identity of one certified member, which also
//! sends one valid delta.

use std::collections::HashSet;
use std::time::Duration;

use hearth_federation::{in_cohort, round_seed};
use hearth_node::api;
use hearth_node::daemon::{ApiOptions, run};
use hearth_node::home::{Home, unix_now};
use hearth_node::network::Topic;
use hearth_protocol::{Hash32, Keypair, Payload, RevocationList, Signed};

use crate::attack::{
    Attacker, certify, community_with, peer_of, rejected, seal, sleep_until, store_certificates,
    zero_delta,
};
use crate::community::{free_port, tiny_model};

const PERIOD: u64 = 8;
/// Sampling rate below 1 so that some key is outside a round's cohort (1 in 10,000).
const RATE: f64 = 0.9999;

/// A key whose seed starts with `tag` and whose membership in round 1's cohort is `inside`.
fn key_with(tag: u8, seed: &Hash32, inside: bool) -> Keypair {
    (0u32..1_000_000)
        .map(|i| {
            let mut s = [tag; 32];
            s[..4].copy_from_slice(&i.to_le_bytes());
            Keypair::from_seed(s)
        })
        .find(|k| in_cohort(seed, &k.member_id(), RATE) == inside)
        .unwrap()
}

/// The attacks, each with the reason the node must give.
const MATRIX: [(&str, &str); 15] = [
    ("forged signature", "forged"),
    (
        "wrong key (another member's envelope, other publisher)",
        "wrong_source",
    ),
    ("replayed message (same sender, round, nonce)", "replayed"),
    ("stale round", "stale_round"),
    ("out-of-cohort member", "not_in_cohort"),
    ("non-member", "not_member"),
    ("revoked member", "revoked"),
    ("oversized message", "too_large"),
    ("truncated CBOR", "malformed"),
    ("wrong tensor shape", "wrong_shape"),
    ("NaN scale", "non_finite"),
    ("infinite scale", "non_finite"),
    ("over-norm delta", "over_norm"),
    ("wrong base version", "wrong_base"),
    ("duplicate delta", "duplicate"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tamper_matrix_each_attack_rejected_with_its_reason_and_not_forwarded() {
    let root = tempfile::tempdir().unwrap();
    let (model, sha) = tiny_model(root.path());
    let (members, signed, admin) = community_with(root.path(), 3, sha, PERIOD, RATE);
    let manifest = signed.body.clone();
    let community = signed.verify().unwrap();
    let t0 = manifest.created;
    let genesis = hearth_node::bridge::genesis(&manifest.lora).version();
    let seed = round_seed(&community, 1, &genesis);
    let honest: Vec<Keypair> = members
        .iter()
        .map(|m| Keypair::from_seed(Home::open(&m.home(), &m.unlock()).unwrap().key.seed()))
        .collect();
    for k in &honest {
        assert!(in_cohort(&seed, &k.member_id(), RATE), "unlucky draw");
    }

    // Identities: certified members in round 1's cohort, one outside it, one without a
    // certificate.
    let a = key_with(0xa0, &seed, true); // ignored attacks + one valid delta
    let forger = key_with(0xa1, &seed, true);
    let relay = key_with(0xa2, &seed, true);
    let outsider = key_with(0xa3, &seed, false);
    let stranger = key_with(0xa4, &seed, true);
    let revoked = key_with(0xa5, &seed, true);
    let big = key_with(0xa6, &seed, true);
    let cutter = key_with(0xa7, &seed, true);
    let shaper = key_with(0xa8, &seed, true);
    let nan = key_with(0xa9, &seed, true);
    let norm = key_with(0xaa, &seed, true);
    let inf = key_with(0xab, &seed, true);
    let certified = [
        &a, &forger, &relay, &outsider, &revoked, &big, &cutter, &shaper, &nan, &norm, &inf,
    ];
    let certs: Vec<_> = certified
        .iter()
        .map(|k| certify(&admin, community, k))
        .collect();
    store_certificates(&members, &certs);

    let rounds = 2;
    let boot = vec![members[0].addr()];
    let api_port = free_port();
    let nodes: Vec<_> = members
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let b = if i == 0 { vec![] } else { boot.clone() };
            let mut opts = m.options_with_period(&model, b, rounds, PERIOD);
            if i == 0 {
                opts.api = Some(ApiOptions {
                    config: api::Config {
                        addr: format!("127.0.0.1:{api_port}").parse().unwrap(),
                        ..api::Config::default()
                    },
                    context: 32,
                });
            }
            tokio::spawn(run(opts, std::future::pending()))
        })
        .collect();

    // Attackers connect to member 0 only.
    sleep_until(t0 + 2, 0).await;
    let target = peer_of(&honest[0]);
    let spawn = |k: &Keypair| Attacker::spawn(k.clone(), community, boot.clone(), 8 << 20);
    let attackers: Vec<Attacker> = [
        &a, &forger, &relay, &outsider, &stranger, &revoked, &big, &cutter, &shaper, &nan, &norm,
        &inf,
    ]
    .into_iter()
    .map(spawn)
    .collect();
    for at in &attackers {
        assert!(
            at.wait_for(target, Duration::from_secs(4)).await,
            "attacker not connected"
        );
    }
    let by = |k: &Keypair| attackers.iter().find(|x| x.key.seed() == k.seed()).unwrap();

    // Round 1 is open from t0 + PERIOD (its submit window lasts PERIOD / 2 seconds).
    sleep_until(t0 + PERIOD, 300).await;
    let now = unix_now();
    let env =
        |k: &Keypair, round: u64, nonce: u64, p: &Payload| seal(k, community, round, nonce, now, p);
    let delta = |tag| zero_delta(&manifest, 1, genesis, tag);
    let mut sent: Vec<(&Attacker, Topic, Vec<u8>)> = Vec::new();

    // The admin's revocation of `revoked`, relayed by `a` (a valid admin object).
    let list = Signed::sign(
        RevocationList {
            community,
            sequence: 1,
            issued: now,
            revoked: vec![revoked.member_id()],
        },
        &admin,
    )
    .unwrap();
    by(&a)
        .publish(Topic::Rounds, env(&a, 1, 100, &Payload::Revocations(list)))
        .await
        .unwrap();

    // Forged signature: the last byte of the envelope is the signature's.
    let mut forged = env(&forger, 1, 1, &Payload::Delta(delta(1)));
    *forged.last_mut().unwrap() ^= 1;
    sent.push((by(&forger), Topic::Deltas, forged));
    // Wrong key: a valid envelope signed by honest member 1, published by another peer.
    let theirs = env(&honest[1], 1, 7, &Payload::Delta(delta(2)));
    sent.push((by(&relay), Topic::Deltas, theirs));
    // Out of the cohort, not a member, revoked: otherwise valid deltas.
    sent.push((
        by(&outsider),
        Topic::Deltas,
        env(&outsider, 1, 1, &Payload::Delta(delta(3))),
    ));
    sent.push((
        by(&stranger),
        Topic::Deltas,
        env(&stranger, 1, 1, &Payload::Delta(delta(4))),
    ));
    // Oversized: 16 KiB over the limit (gossip itself carries up to 64 KiB more).
    let mut huge = delta(5);
    let n = (manifest.limits.message_bytes() + (16 << 10)) / 4;
    huge.layers[0].values = vec![1; n];
    huge.hash = huge.compute_hash();
    let huge = env(&big, 1, 1, &Payload::Delta(huge));
    assert!(huge.len() > manifest.limits.message_bytes());
    sent.push((by(&big), Topic::Deltas, huge));
    // Truncated CBOR.
    let mut cut = env(&cutter, 1, 1, &Payload::Delta(delta(6)));
    cut.truncate(cut.len() / 2);
    sent.push((by(&cutter), Topic::Deltas, cut));
    // Wrong tensor shape: one row fewer in the first tensor.
    let mut shape = delta(7);
    shape.layers[0].rows -= 1;
    let cols = shape.layers[0].cols as usize;
    let len = shape.layers[0].values.len();
    shape.layers[0].values.truncate(len - cols);
    shape.hash = shape.compute_hash();
    sent.push((
        by(&shaper),
        Topic::Deltas,
        env(&shaper, 1, 1, &Payload::Delta(shape)),
    ));
    // NaN scale.
    let mut not_finite = delta(8);
    not_finite.scale = f32::NAN;
    not_finite.hash = not_finite.compute_hash();
    sent.push((
        by(&nan),
        Topic::Deltas,
        env(&nan, 1, 1, &Payload::Delta(not_finite)),
    ));
    let mut infinite = delta(14);
    infinite.scale = f32::INFINITY;
    infinite.hash = infinite.compute_hash();
    sent.push((
        by(&inf),
        Topic::Deltas,
        env(&inf, 1, 1, &Payload::Delta(infinite)),
    ));
    // Over the norm bound: every value 2^20 at the coarsest allowed scale.
    let mut over = delta(9);
    for l in &mut over.layers {
        l.values.iter_mut().for_each(|v| *v = 1 << 20);
    }
    over.hash = over.compute_hash();
    sent.push((
        by(&norm),
        Topic::Deltas,
        env(&norm, 1, 1, &Payload::Delta(over)),
    ));
    // `a`: wrong base, then a valid delta, the same delta again (duplicate), the valid
    // envelope's (sender, round, nonce) again with a new timestamp (replay), and a delta for
    // round 0 (stale round).
    let mut wrong_base = delta(10);
    wrong_base.base_version = Hash32::digest(b"another version");
    wrong_base.hash = wrong_base.compute_hash();
    let valid = delta(11);
    sent.push((
        by(&a),
        Topic::Deltas,
        env(&a, 1, 1, &Payload::Delta(wrong_base)),
    ));
    sent.push((
        by(&a),
        Topic::Deltas,
        env(&a, 1, 2, &Payload::Delta(valid.clone())),
    ));
    sent.push((
        by(&a),
        Topic::Deltas,
        env(&a, 1, 3, &Payload::Delta(valid.clone())),
    ));
    let replay = seal(&a, community, 1, 2, now + 1, &Payload::Delta(valid));
    sent.push((by(&a), Topic::Deltas, replay));
    let stale = zero_delta(&manifest, 0, genesis, 12);
    sent.push((by(&a), Topic::Deltas, env(&a, 0, 1, &Payload::Delta(stale))));

    // The revocation first, then every attack in order.
    tokio::time::sleep(Duration::from_millis(300)).await;
    sent.push((
        by(&revoked),
        Topic::Deltas,
        env(&revoked, 1, 1, &Payload::Delta(delta(13))),
    ));
    for (at, topic, bytes) in sent {
        at.publish(topic, bytes).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        unix_now() < t0 + PERIOD + PERIOD / 2,
        "injection overran the submit window"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    for at in attackers {
        at.stop();
    }
    // Member 0's Prometheus counters, while it runs.
    let metrics = tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .into();
        agent
            .get(format!("http://127.0.0.1:{api_port}/metrics"))
            .call()
            .unwrap()
            .body_mut()
            .read_to_string()
            .unwrap()
    })
    .await
    .unwrap();

    let mut summaries = Vec::new();
    for t in nodes {
        summaries.push(t.await.unwrap().unwrap());
    }
    for s in &summaries {
        eprintln!("{s:?}");
        assert_eq!(s.head_round, rounds, "{s:?}");
    }
    let versions: HashSet<&str> = summaries.iter().map(|s| s.head_version.as_str()).collect();
    assert_eq!(versions.len(), 1, "nodes disagree: {versions:?}");

    eprintln!("| attack | reason | member 0 | members 1, 2 |");
    for (attack, reason) in MATRIX {
        let at0 = rejected(&summaries[0], reason);
        let others: Vec<u64> = summaries[1..].iter().map(|s| rejected(s, reason)).collect();
        eprintln!("| {attack} | `{reason}` | {at0} | {others:?} |");
        let expected = MATRIX.iter().filter(|(_, r)| *r == reason).count() as u64;
        assert_eq!(
            at0, expected,
            "{attack}: {reason} counted {at0} times at member 0"
        );
        assert_eq!(
            others,
            [0, 0],
            "{attack}: forwarded ({reason} seen further)"
        );
        let line = format!("hearth_deltas_rejected_total{{reason=\"{reason}\"}} {expected}");
        assert!(
            metrics.lines().any(|l| l == line),
            "{attack}: /metrics lacks `{line}`:\n{metrics}"
        );
    }
}
