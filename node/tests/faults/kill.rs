//! kill -9 at random (seeded) points of a `hearth node` process in a 3-member community whose
//! two other members keep running rounds: at start-up, during training, around the ledger
//! write and publication, around the round's commit, during catch-up, and after a publication.
//! After every kill the store must open, its head must match its last version record, its chain
//! must link up from genesis, and its ledger must hold every release the node handed to the
//! network. Finally the node runs to a given round: it must catch up by sync and end on the
//! community's version, its chain must equal its peers', and every delta of it that the peers
//! hold must be in its ledger.
//!
//! Short form (CI): 20 kills, rounds every 6 s, under 3 minutes. Long form:
//! `FAULTS_KILLS=200 FAULTS_SEED=7 cargo test -p hearth-node --test faults -- --nocapture`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use hearth_node::daemon::persist;
use hearth_node::home::unix_now;
use hearth_protocol::{Hash32, Manifest, MemberId, Payload, decode_untrusted};
use hearth_training::Budget;

use crate::harness::{Member, Rng, Running, captured, community, tiny_model};

const PERIOD: u64 = 6;

/// Where a kill lands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Point {
    /// 0–1.5 s after the process started (store opening, model loading, dialing).
    Startup,
    /// 0–1.5 s after a training job started.
    Training,
    /// 0–1.5 s after the round opened, once a contribution is ready: the ledger is written
    /// (synced) and the delta published in that window.
    Ledger,
    /// 3–5 s after the round opened: around its close and the version's commit.
    Commit,
    /// 0–300 ms after catch-up started (the node was away for more than a round first).
    Sync,
    /// 0–2 s after a contribution was published.
    Published,
}

const POINTS: [Point; 6] = [
    Point::Startup,
    Point::Training,
    Point::Ledger,
    Point::Commit,
    Point::Sync,
    Point::Published,
];

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Runs the victim until the kill point, then kills it; whether the awaited moment was seen.
fn run_and_kill(mut p: Running, point: Point, rng: &mut Rng) -> (bool, Vec<String>) {
    let s = Duration::from_secs;
    let ms = |n: u64| Duration::from_millis(n);
    let seen = match point {
        Point::Startup => true,
        Point::Training => p.wait_for("training a contribution", s(15)),
        Point::Ledger => {
            p.wait_for("contribution ready", s(25)) && p.wait_for("round started", s(10))
        }
        Point::Commit => p.wait_for("round started", s(10)),
        Point::Sync => p.wait_for("catching up", s(6)),
        Point::Published => p.wait_for("contribution submitted", s(20)),
    };
    let delay = match point {
        Point::Startup | Point::Training | Point::Ledger => ms(rng.below(1500)),
        Point::Commit => ms(3000 + rng.below(2000)),
        Point::Sync => ms(rng.below(300)),
        Point::Published => ms(rng.below(2000)),
    };
    std::thread::sleep(delay);
    (seen, p.kill9())
}

/// Rounds of the delta envelopes `member` sent, from its capture files.
fn published_rounds(victim: &Member, tags: &[String], m: &Manifest, id: &Hash32) -> BTreeSet<u64> {
    let me = victim.open().member_id();
    let mut rounds = BTreeSet::new();
    for tag in tags {
        for bytes in captured(&victim.capture(tag)) {
            if let Ok(msg) = decode_untrusted(&bytes, &m.limits, id)
                && msg.header.sender == me
                && matches!(msg.payload, Payload::Delta(_))
            {
                rounds.insert(msg.header.round);
            }
        }
    }
    rounds
}

/// What a store holds after a crash: the chain (round → (parent, version)) from genesis to the
/// head, checked to link up, and the rounds of the ledger's releases.
struct Recovered {
    head_round: u64,
    chain: BTreeMap<u64, (Hash32, Hash32)>,
    ledger: BTreeSet<u64>,
}

fn recover(member: &Member, m: &Manifest, genesis: Hash32) -> Recovered {
    let home = member.open();
    let head = persist::load_head(&home.store, &m.lora, usize::MAX)
        .expect("the head and its last record agree");
    let mut chain = BTreeMap::new();
    let mut head_round = 0;
    if let Some((round, state, records)) = head {
        let mut prev = genesis;
        for r in &records {
            assert_eq!(
                r.parent, prev,
                "round {} does not link to its parent",
                r.round
            );
            prev = r.version;
            chain.insert(r.round, (r.parent, r.version));
        }
        assert_eq!(prev, state.version(), "the head is not the chain's end");
        head_round = round;
    }
    let budget = Budget {
        rho: m.privacy.budget_rho,
        delta: m.privacy.delta,
    };
    let ledger = persist::load_ledger(&home.store, budget)
        .expect("the ledger loads")
        .records()
        .iter()
        .map(|r| r.round)
        .collect();
    Recovered {
        head_round,
        chain,
        ledger,
    }
}

/// Rounds of the deltas from `sender` that `peer` included in its versions up to `last`.
fn included_from(
    peer: &Member,
    sender: MemberId,
    last: u64,
    m: &Manifest,
    id: &Hash32,
) -> BTreeSet<u64> {
    let home = peer.open();
    let mut rounds = BTreeSet::new();
    for round in 1..=last {
        let Some(record) = persist::record(&home.store, round).unwrap() else {
            continue;
        };
        for hash in &record.inputs {
            let Some(bytes) = persist::delta(&home.store, round, hash).unwrap() else {
                continue;
            };
            let msg = decode_untrusted(&bytes, &m.limits, id).unwrap();
            if msg.header.sender == sender {
                rounds.insert(round);
            }
        }
    }
    rounds
}

#[test]
fn kill_nine_at_random_points_and_the_node_recovers() {
    let kills = env_u64("FAULTS_KILLS", 20);
    let mut rng = Rng(env_u64("FAULTS_SEED", 2024));
    let root = tempfile::tempdir().unwrap();
    let (model, sha) = tiny_model(root.path());
    let (members, signed) = community(root.path(), 3, sha, PERIOD);
    let m = signed.body.clone();
    let id = signed.verify().unwrap();
    let genesis = hearth_node::bridge::genesis(&m.lora).version();
    let boot = |i: usize| -> Vec<String> {
        (0..members.len())
            .filter(|j| *j != i)
            .map(|j| members[j].addr())
            .collect()
    };
    let started = Instant::now();
    let peers: Vec<Running> = (0..2)
        .map(|i| Running::start(members[i].node(&model, &boot(i), 100_000, "peer")))
        .collect();
    let victim = &members[2];
    let victim_id = victim.open().member_id();

    let mut tags = Vec::new();
    let mut outcomes: BTreeMap<Point, (u64, u64)> = BTreeMap::new();
    let mut caught_up = 0;
    for k in 0..kills {
        let tag = format!("run{k}");
        let point = POINTS[rng.below(POINTS.len() as u64) as usize];
        if point == Point::Sync {
            // Away for more than a round, so that it has versions to fetch when it is back.
            std::thread::sleep(Duration::from_secs(PERIOD + 2));
        }
        let p = Running::start(victim.node(&model, &boot(2), 100_000, &tag));
        let (seen, log) = run_and_kill(p, point, &mut rng);
        tags.push(tag);
        caught_up += log
            .iter()
            .filter(|l| l.contains("caught up: version fetched and verified"))
            .count();
        let got = recover(victim, &m, genesis);
        let published = published_rounds(victim, &tags, &m, &id);
        let missing: Vec<_> = published.difference(&got.ledger).collect();
        assert!(
            missing.is_empty(),
            "kill {k} ({point:?}): releases of rounds {missing:?} published but not in the ledger {:?}",
            got.ledger
        );
        let e = outcomes.entry(point).or_default();
        e.0 += 1;
        e.1 += u64::from(seen);
        eprintln!(
            "kill {k:>3} {point:<9?} seen={seen:<5} head={:>3} chain={:>3} ledger={:>3} published={:>3} t={:.0}s",
            got.head_round,
            got.chain.len(),
            got.ledger.len(),
            published.len(),
            started.elapsed().as_secs_f64()
        );
    }

    // Back for good: run to a round a little ahead and end on the community's version.
    let now = unix_now();
    let target = (now - m.created) / PERIOD + 3;
    let last = Running::start(victim.node(&model, &boot(2), target, "final"));
    let (ok, log) = last.wait();
    assert!(ok, "the final run failed:\n{}", log.join("\n"));
    caught_up += log
        .iter()
        .filter(|l| l.contains("caught up: version fetched and verified"))
        .count();
    let summary = victim.summary("final").unwrap();
    for p in peers {
        p.terminate();
    }
    eprintln!("final: {summary:?}");
    assert_eq!(summary.head_round, target, "{summary:?}");

    let mine = recover(victim, &m, genesis);
    tags.push("final".into());
    let published = published_rounds(victim, &tags, &m, &id);
    for peer in &members[..2] {
        let theirs = recover(peer, &m, genesis);
        let upto: BTreeMap<_, _> = theirs
            .chain
            .iter()
            .filter(|(r, _)| **r <= target)
            .map(|(r, v)| (*r, *v))
            .collect();
        assert_eq!(mine.chain, upto, "the victim's chain differs from a peer's");
        let included = included_from(peer, victim_id, target, &m, &id);
        let missing: Vec<_> = included.difference(&mine.ledger).collect();
        assert!(
            missing.is_empty(),
            "a peer holds the victim's deltas of rounds {missing:?}, its ledger does not"
        );
        assert!(included.is_subset(&published));
    }
    let (_, head_version) = mine.chain[&target];
    assert_eq!(summary.head_version, head_version.to_string());
    assert!(caught_up >= 1, "never caught up by sync");
    eprintln!(
        "{kills} kills in {:.0} s; by point (kills, moment seen): {outcomes:?}; versions fetched \
         and verified by sync: {caught_up}; releases in the ledger: {}, published: {}, included \
         by peers: {}; final head round {target}",
        started.elapsed().as_secs_f64(),
        mine.ledger.len(),
        published.len(),
        included_from(&members[0], victim_id, target, &m, &id).len(),
    );
}
