//! [`Community::verify_secure_round`]: a node that missed a secure round recomputes the version
//! live nodes agreed on from the round's signed messages alone — with dropouts, in any order —
//! and refuses message sets that are forged, incomplete, padded or from elsewhere.

use hearth_protocol::{KeyAdvertisement, Kind, MaskedInput, Payload, Rule, VersionAnnouncement};
use proptest::prelude::*;

use super::secure_net::{Net, secure_manifest};
use super::*;
use crate::secagg::Engine;
use crate::testutil::{Gen, member, seal};

/// The secure-aggregation envelopes `net` delivered (every kind but version announcements).
fn secure_envelopes(net: &Net) -> Vec<Vec<u8>> {
    net.sent
        .iter()
        .zip(&net.envelopes)
        .filter(|((from, p), _)| {
            p.kind() != Kind::Version && !net.withhold.contains(&(*from, p.kind()))
        })
        .map(|(_, (_, bytes))| bytes.clone())
        .collect()
}

/// A node that knows the community's certificates but saw nothing of round 1. It is member 1
/// (in the cohort): its observing engine must not act as that member.
fn late_node(net: &Net) -> Community {
    let engine = Engine::new(member(1).member_id(), [0x77; 32]);
    crate::testutil::community(&net.m, net.nodes.len() as u32)
        .with_secure_aggregation(Box::new(engine))
}

fn genesis(net: &Net) -> State {
    State::genesis(crate::Adapter::zeros(&net.m.lora))
}

/// Replays `envelopes` on a late node against the version the live nodes agreed on.
fn replay(net: &Net, envelopes: &[Vec<u8>]) -> Result<(VersionRecord, State)> {
    let announcement = net.agreed().announcement();
    late_node(net).verify_secure_round(&genesis(net), envelopes, &announcement, Net::at(0))
}

/// The replay gives the live nodes' record and head, and the late node can adopt it.
fn assert_recomputed(net: &Net, envelopes: &[Vec<u8>]) {
    let live = net.agreed();
    let (record, state) = replay(net, envelopes).unwrap();
    assert_eq!(record, live);
    let up = (0..net.nodes.len())
        .find(|i| !net.down.contains(i))
        .unwrap();
    assert_eq!(&state, net.nodes[up].community.head());
    let mut late = late_node(net);
    late.adopt(&record, state).unwrap();
    assert_eq!(late.head_round(), 1);
    assert_eq!(late.head().version(), live.version);
}

fn invalid_reason(r: Result<(VersionRecord, State)>) -> (usize, Reason) {
    match r {
        Err(Error::InvalidInput { index, rejection }) => (index, rejection.reason),
        other => panic!("expected an invalid input, got {other:?}"),
    }
}

fn replay_error(r: Result<(VersionRecord, State)>) -> String {
    match r {
        Err(Error::SecureReplay { round: 1, reason }) => reason,
        other => panic!("expected a replay error, got {other:?}"),
    }
}

#[test]
fn a_missed_secure_round_is_recomputed_from_its_messages() {
    let mut net = Net::new(&secure_manifest(Rule::Mean), 10);
    net.run(&[], |_| vec![]);
    let envelopes = secure_envelopes(&net);
    assert_eq!(envelopes.len(), 10 * MESSAGES_PER_MEMBER);
    assert_recomputed(&net, &envelopes);
    // Any order.
    let mut reversed = envelopes.clone();
    reversed.reverse();
    assert_recomputed(&net, &reversed);
}

#[test]
fn secure_rounds_with_dropouts_are_recomputed() {
    let m = secure_manifest(Rule::Median);
    // Three of nine drop after masking (in the sum, no unmasking shares of theirs), three
    // before (out of the sum), one never submits.
    for (phase, down) in [
        (Phase::Unmask, vec![0, 4, 8]),
        (Phase::Submit, vec![1, 2, 7]),
    ] {
        let mut net = Net::new(&m, 9);
        net.run(&[], |p| if p == phase { down.clone() } else { vec![] });
        assert_recomputed(&net, &secure_envelopes(&net));
    }
    let mut net = Net::new(&m, 9);
    net.run(&[3], |_| vec![]);
    assert_recomputed(&net, &secure_envelopes(&net));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, ..ProptestConfig::default() })]

    /// Random dropouts (up to the tolerated three of nine, at a random phase) and a random order
    /// of the messages: the replay always gives what the live nodes computed.
    #[test]
    fn replays_agree_with_live_nodes(phase in 0usize..3, drop in proptest::collection::btree_set(0usize..9, 0..=3), order in any::<u64>()) {
        let phase = [Phase::Shares, Phase::Submit, Phase::Unmask][phase];
        let drop: Vec<usize> = drop.into_iter().collect();
        let mut net = Net::new(&secure_manifest(Rule::Mean), 9);
        net.run(&[], |p| if p == phase { drop.clone() } else { vec![] });
        let mut envelopes = secure_envelopes(&net);
        let mut g = Gen::new(order);
        for i in (1..envelopes.len()).rev() {
            envelopes.swap(i, (g.next_u64() % (i as u64 + 1)) as usize);
        }
        let live = net.agreed();
        let (record, _) = replay(&net, &envelopes).unwrap();
        prop_assert_eq!(record, live);
    }
}

/// Nine members, no dropouts: 45 messages.
fn full_round() -> (Net, Vec<Vec<u8>>) {
    let mut net = Net::new(&secure_manifest(Rule::Mean), 9);
    net.run(&[], |_| vec![]);
    let envelopes = secure_envelopes(&net);
    (net, envelopes)
}

/// The index of the first envelope of `kind` sent by node `from`, and its payload.
fn find(net: &Net, kind: Kind, from: usize) -> (usize, Payload) {
    let secure: Vec<&(usize, Payload)> = net
        .sent
        .iter()
        .filter(|(_, p)| p.kind() != Kind::Version)
        .collect();
    let i = secure
        .iter()
        .position(|(f, p)| *f == from && p.kind() == kind)
        .unwrap();
    (i, secure[i].1.clone())
}

#[test]
fn forged_foreign_and_repeated_messages_are_rejected_with_their_reason() {
    let (net, envelopes) = full_round();
    // At the limit: every member's five messages.
    assert_eq!(envelopes.len(), 9 * MESSAGES_PER_MEMBER);
    assert_recomputed(&net, &envelopes);
    let with = |index: usize, bytes: Vec<u8>| {
        let mut e = envelopes.clone();
        e[index] = bytes;
        e
    };
    // Forged: one bit of a signature flipped.
    let mut forged = envelopes[7].clone();
    let last = forged.len() - 1;
    forged[last] ^= 1;
    assert_eq!(
        invalid_reason(replay(&net, &with(7, forged))),
        (7, Reason::Forged)
    );
    // A non-member's key advertisement.
    let (i, keys) = find(&net, Kind::Keys, 2);
    let stranger = seal(&net.m, &member(99), 1, 5, &keys);
    assert_eq!(
        invalid_reason(replay(&net, &with(i, stranger))),
        (i, Reason::NotMember)
    );
    // A message of another round.
    let Payload::Keys(k) = keys else { panic!() };
    let other = Payload::Keys(KeyAdvertisement { round: 2, ..k });
    let stale = seal(&net.m, &member(3), 2, 5, &other);
    assert_eq!(
        invalid_reason(replay(&net, &with(i, stale))),
        (i, Reason::StaleRound)
    );
    // Not a secure-aggregation message: the version announcement.
    let version = seal(
        &net.m,
        &member(3),
        1,
        6,
        &Payload::Version(net.agreed().announcement()),
    );
    assert_eq!(
        invalid_reason(replay(&net, &with(i, version))),
        (i, Reason::WrongKind)
    );
    // The same message twice (dropping another to stay within the count), re-sealed or not.
    let (j, masked) = find(&net, Kind::Masked, 4);
    let (u, _) = find(&net, Kind::Unmasking, 0);
    let again = with(u, envelopes[j].clone());
    let (_, reason) = invalid_reason(replay(&net, &again));
    assert_eq!(reason, Reason::Duplicate);
    let resealed = with(u, seal(&net.m, &member(5), 1, 77, &masked));
    assert_eq!(invalid_reason(replay(&net, &resealed)).1, Reason::Duplicate);
    // Another masked input from the same member: equivocation.
    let Payload::Masked(y) = masked else { panic!() };
    let mut values = y.values.clone();
    values[0] ^= 1;
    let changed = Payload::Masked(MaskedInput { values, ..y });
    let equivocation = with(u, seal(&net.m, &member(5), 1, 78, &changed));
    assert_eq!(
        invalid_reason(replay(&net, &equivocation)).1,
        Reason::Equivocation
    );
    // Past the limit: 46 messages from a cohort of nine.
    let mut padded = envelopes.clone();
    padded.push(envelopes[0].clone());
    let why = replay_error(replay(&net, &padded));
    assert!(
        why.contains("46 messages") && why.contains("at most 45"),
        "{why}"
    );
}

#[test]
fn missing_messages_and_wrong_announcements_are_rejected() {
    let (net, envelopes) = full_round();
    let without = |kind: Kind, from: &[usize]| {
        let drop: Vec<usize> = from.iter().map(|f| find(&net, kind, *f).0).collect();
        envelopes
            .iter()
            .enumerate()
            .filter(|(i, _)| !drop.contains(i))
            .map(|(_, e)| e.clone())
            .collect::<Vec<_>>()
    };
    // A survivor's masked input missing.
    let why = replay_error(replay(&net, &without(Kind::Masked, &[6])));
    assert!(why.contains("masked input"), "{why}");
    // Too few survivor-set announcements for the quorum (six of nine).
    let why = replay_error(replay(&net, &without(Kind::Survivors, &[0, 1, 2, 3])));
    assert!(why.contains("survivor-set announcements"), "{why}");
    // Too few unmasking shares to rebuild the self-masks.
    let why = replay_error(replay(
        &net,
        &without(Kind::Unmasking, &[0, 1, 2, 3, 4, 5, 6]),
    ));
    assert!(why.contains("shares"), "{why}");
    // One revealer's shares are not needed: the others reach the threshold, same version.
    assert_recomputed(&net, &without(Kind::Unmasking, &[3]));

    // The announcement must be the one the messages give.
    let a = net.agreed().announcement();
    let late = late_node(&net);
    let parent = genesis(&net);
    let check =
        |a: &VersionAnnouncement| late.verify_secure_round(&parent, &envelopes, a, Net::at(0));
    let other_version = VersionAnnouncement {
        version: Hash32::digest(b"another version"),
        ..a.clone()
    };
    assert!(matches!(
        check(&other_version),
        Err(Error::VersionMismatch { .. })
    ));
    let other_inputs = VersionAnnouncement {
        deltas: vec![Hash32::digest(b"a group sum")],
        ..a.clone()
    };
    assert!(matches!(
        check(&other_inputs),
        Err(Error::InputsMismatch { .. })
    ));
    let other_parent = VersionAnnouncement {
        parent: Hash32::digest(b"another parent"),
        ..a.clone()
    };
    assert!(matches!(
        check(&other_parent),
        Err(Error::WrongParent { .. })
    ));
    // A plain community has no secure rounds to replay.
    let plain = crate::testutil::community(&crate::testutil::manifest(Rule::Mean), 9);
    let why = replay_error(plain.verify_secure_round(&parent, &envelopes, &a, Net::at(0)));
    assert!(why.contains("plain"), "{why}");
}

/// A member whose encrypted shares never arrive (as when no one can decrypt them: a node that
/// masked on a stale parent) but whose masked input does: its input is refused by every node,
/// it is no survivor, and the round still closes — live and in the replay.
#[test]
fn a_masked_input_without_its_shares_is_refused_and_the_round_completes() {
    let mut net = Net::new(&secure_manifest(Rule::Mean), 9);
    net.withhold.push((4, Kind::Shares));
    net.run(&[], |_| vec![]);
    let record = net.agreed();
    assert_eq!(record.inputs.len(), 1);
    let refused: Vec<usize> = net
        .rejections
        .iter()
        .filter(|(_, r)| r.detail.contains("without accepted encrypted shares"))
        .map(|(j, _)| *j)
        .collect();
    assert_eq!(
        refused,
        vec![0, 1, 2, 3, 5, 6, 7, 8],
        "{:?}",
        net.rejections
    );
    // Peers keep only what they accepted: the refused masked input is not served either.
    net.withhold.push((4, Kind::Masked));
    assert_recomputed(&net, &secure_envelopes(&net));
}
