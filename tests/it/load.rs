//! Load over real libp2p on loopback: 20+ nodes in one process (4 contributing, the others
//! following and verifying every message) run rounds while an attacker floods member 0 with
//! invalid messages (forged envelopes, then truncated ones) at a high rate, bounded in count and
//! time. Honest rounds must still complete by their deadlines and agree; gossip peer scoring
//! must push the attacker out (member 0 hears only a small fraction of the flood); and the
//! process's peak resident memory is reported.
//!
//! Short form (CI): `cargo test -p hearth-tests --test it load` (8 nodes). Load forms, run alone:
//! `cargo test -p hearth-tests --features load-tests --test it load -- --nocapture
//! --test-threads 1` (20 nodes, 4,000 messages, 3 rounds of 10 s and of 20 s; 30 nodes, 20,000
//! messages, 5 rounds).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use hearth_node::daemon::run;
use hearth_node::network::Topic;
use hearth_protocol::{Envelope, Hash32, Keypair, Payload, VersionAnnouncement};

use crate::attack::{Attacker, community_with, peer_of, rejected, sleep_until};
use crate::community::tiny_model;

const PERIOD: u64 = 10;

/// A field of `/proc/self/status` in KiB (`VmHWM`: peak resident set; `VmRSS`: now).
fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix(field)?
                .trim()
                .strip_suffix("kB")?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

/// `nodes` nodes (`contributors` of them training) run `rounds` measured rounds of `period`
/// seconds while `flood` invalid messages go to member 0; with `strict`, no node may fail a
/// round (every round closes with a version on every node, by its deadline).
async fn flood_while_rounds_run(
    nodes: usize,
    contributors: usize,
    flood: u64,
    rounds: u64,
    period: u64,
    strict: bool,
) {
    let base_rss = status_kib("VmRSS:");
    let root = tempfile::tempdir().unwrap();
    let (model, sha) = tiny_model(root.path());
    let (members, signed, _) = community_with(root.path(), nodes, sha, period, 1.0);
    let community = signed.verify().unwrap();
    let t0 = signed.body.created;
    let boot = vec![members[0].addr()];
    let tasks: Vec<_> = members
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let b = if i == 0 { vec![] } else { boot.clone() };
            // One round more than measured: a node that closed the last measured round without
            // a delta that came late repairs it by adopting the community's version (§14.4)
            // during the next one.
            let mut opts = m.options_with_period(&model, b, rounds + 1, period);
            opts.contribute = i < contributors;
            opts.capture = None;
            tokio::spawn(run(opts, std::future::pending()))
        })
        .collect();

    // The attacker, on its own thread and runtime (the nodes' runtime is busy): forged
    // announcements (a member's id, the attacker's signature) and truncated envelopes, each one
    // distinct, made in advance; half during round 1, half during round 2.
    let own = Keypair::from_seed([0x66; 32]);
    let victim = Keypair::from_seed([0x77; 32]);
    let messages: Vec<Vec<u8>> = (0..flood)
        .map(|i| {
            let p = Payload::Version(VersionAnnouncement {
                round: 1,
                parent: Hash32::ZERO,
                version: Hash32::digest(&i.to_le_bytes()),
                deltas: vec![],
            });
            let mut e = Envelope::seal(&own, stamp(community, i), &p).unwrap();
            if i % 2 == 0 {
                e.header.sender = victim.member_id();
                e.to_bytes().unwrap()
            } else {
                let mut b = e.to_bytes().unwrap();
                b.truncate(b.len() - 7);
                b
            }
        })
        .collect();
    let target = members[0].peer;
    assert_ne!(peer_of(&own), target);
    let flooding = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            sleep_until(t0 + 3, 0).await;
            let attacker = Attacker::spawn(own, community, boot, 1 << 20);
            assert!(attacker.wait_for(target, Duration::from_secs(30)).await);
            let started = Instant::now();
            let mut published = 0u64;
            let mut messages = messages.into_iter();
            for phase in 1..=2u64 {
                sleep_until(t0 + phase * period, 500).await;
                let end = Instant::now() + Duration::from_secs(PERIOD.min(period) / 2);
                for bytes in messages.by_ref().take((flood / 2) as usize) {
                    if Instant::now() >= end {
                        break;
                    }
                    if attacker.publish(Topic::Versions, bytes).await.is_ok() {
                        published += 1;
                    }
                }
            }
            let secs = started.elapsed().as_secs_f64() - period as f64;
            let still = attacker.peers().await.contains(&target);
            attacker.stop();
            (published, secs, still)
        })
    });
    let (published, flood_secs, still_heard) =
        tokio::task::spawn_blocking(move || flooding.join().unwrap())
            .await
            .unwrap();

    let mut summaries = Vec::new();
    for (i, t) in tasks.into_iter().enumerate() {
        summaries.push(
            t.await
                .unwrap()
                .unwrap_or_else(|e| panic!("node {i} failed: {e:#}")),
        );
    }
    let peak = status_kib("VmHWM:");
    let versions: HashSet<&str> = summaries.iter().map(|s| s.head_version.as_str()).collect();
    let heard = rejected(&summaries[0], "forged") + rejected(&summaries[0], "malformed");
    let elsewhere: u64 = summaries[1..]
        .iter()
        .map(|s| rejected(s, "forged") + rejected(s, "malformed"))
        .sum();
    eprintln!(
        "load: {nodes} nodes ({contributors} contributing), {rounds} rounds; flood {published} \
         messages in {flood_secs:.1} s ({:.0}/s), member 0 validated {heard} of them ({:.2} %), \
         other nodes {elsewhere}; failed rounds {}; peak RSS {} MiB for the process \
         ({:.1} MiB per node above the {} MiB before start); attacker still subscribed at the \
         end: {still_heard}",
        published as f64 / flood_secs,
        100.0 * heard as f64 / published.max(1) as f64,
        summaries.iter().map(|s| s.rounds_failed).sum::<u64>(),
        peak / 1024,
        (peak.saturating_sub(base_rss)) as f64 / 1024.0 / nodes as f64,
        base_rss / 1024,
    );
    // Every node holds one and the same version for the last measured round. On a busy 2-core
    // machine a node may close a round without deltas that came `late` and then adopt the
    // community's version (docs/PROTOCOL.md §14.4): counted above as failed rounds, repaired by
    // the next round.
    for s in &summaries {
        assert!(s.head_round >= rounds, "{s:?}");
    }
    let at_last: HashSet<String> = members
        .iter()
        .map(|m| {
            let home = hearth_node::home::Home::open(&m.home(), &m.unlock()).unwrap();
            let record = hearth_node::daemon::persist::record(&home.store, rounds).unwrap();
            record.map_or_else(|| "none".into(), |r| r.version.to_string())
        })
        .collect();
    assert_eq!(
        at_last.len(),
        1,
        "nodes disagree on round {rounds}: {at_last:?} (heads {versions:?})"
    );
    assert!(
        !at_last.contains("none"),
        "a node has no version for round {rounds}"
    );
    assert!(
        published >= flood / 2,
        "the flood was too slow: {published}"
    );
    assert!(heard >= 1, "member 0 never saw the flood");
    assert!(
        heard * 20 < published,
        "scoring did not push the attacker out: {heard} of {published} validated"
    );
    assert_eq!(elsewhere, 0, "flood forwarded");
    if strict {
        for (i, s) in summaries.iter().enumerate() {
            assert_eq!(s.rounds_failed, 0, "node {i} failed a round: {s:?}");
        }
    }
}

fn stamp(community: Hash32, nonce: u64) -> hearth_protocol::Stamp {
    hearth_protocol::Stamp {
        community,
        round: 1,
        nonce,
        timestamp: nonce,
    }
}

/// The short form CI runs next to the other tests: 8 nodes, 1,000 messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_nodes_complete_rounds_while_an_attacker_floods() {
    flood_while_rounds_run(8, 3, 1_000, 2, PERIOD, false).await;
}

/// 20 nodes in one process on two cores is more than the machine gives while other tests run
/// beside it: run it alone (`--features load-tests ... -- --test-threads 1 twenty`), as docs/SECURITY.md says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(feature = "load-tests"),
    ignore = "load form: 20 nodes, 4,000 messages, 3 rounds of 10 s (about 60 s); run alone with --features load-tests"
)]
async fn twenty_nodes_complete_rounds_while_an_attacker_floods() {
    flood_while_rounds_run(20, 4, 4_000, 3, PERIOD, false).await;
}

/// The same with 20 s rounds (the flood still in the first 5 s of each submit window), where
/// every node must close every round: what 20 nodes on two cores need to keep their deadlines.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(feature = "load-tests"),
    ignore = "load form: 20 nodes, 4,000 messages, 3 rounds of 20 s, no failed round (about 100 s); run alone with --features load-tests"
)]
async fn twenty_nodes_keep_every_deadline_with_twenty_second_rounds() {
    flood_while_rounds_run(20, 4, 4_000, 3, 2 * PERIOD, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(feature = "load-tests"),
    ignore = "long form: 30 nodes, 20,000 messages, 5 rounds (about 70 s); run alone with --features load-tests"
)]
async fn thirty_nodes_complete_rounds_while_an_attacker_floods_long() {
    flood_while_rounds_run(30, 6, 20_000, 5, PERIOD, false).await;
}
