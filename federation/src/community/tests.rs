//! Round lifecycle, verification, reconciliation and chain tests over real signed envelopes.

use hearth_protocol::{Hash32, Payload, PrivacyMode, Role, Rule, ServerOptimizer};

use super::*;
use crate::testutil::{
    T0, certificate, community, delta_bytes, honest, manifest, member, seal, start,
};

fn closed(out: &[Output]) -> Option<&VersionRecord> {
    out.iter().find_map(|o| match o {
        Output::Closed(r) => Some(r),
        _ => None,
    })
}

fn rejected(c: &mut Community, bytes: &[u8], now: u64) -> Rejection {
    c.on_bytes(bytes, now).unwrap_err()
}

#[test]
fn a_round_closes_with_the_same_version_on_every_node() {
    let m = manifest(Rule::Mean);
    let genesis = community(&m, 5).head().version();
    let deltas: Vec<Vec<u8>> = (1..=5).map(|i| delta_bytes(&m, i, 1, genesis)).collect();
    let mut records = Vec::new();
    for order in [[0, 1, 2, 3, 4], [4, 3, 2, 1, 0], [2, 0, 4, 1, 3]] {
        let mut node = community(&m, 5);
        let out = node.start_round(1, start(1)).unwrap();
        assert!(out.contains(&Output::Phase {
            round: 1,
            phase: Phase::Submit
        }));
        for i in order {
            assert!(matches!(
                node.on_bytes(&deltas[i], start(1) + 10 + i as u64),
                Ok(Accepted::Delta { .. })
            ));
        }
        assert!(
            node.tick(start(1) + 299)
                .iter()
                .all(|o| !matches!(o, Output::Closed(_)))
        );
        let out = node.tick(start(1) + 300);
        let record = closed(&out).expect("closed").clone();
        assert!(out.contains(&Output::Publish {
            round: 1,
            payload: Payload::Version(record.announcement())
        }));
        assert_eq!(node.head().version(), record.version);
        assert_eq!(node.head_round(), 1);
        assert_eq!(record.parent, genesis);
        assert_eq!(record.inputs.len(), 5);
        assert!(record.inputs.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(node.counters().accepted(), 5);
        records.push(record);
    }
    assert!(records.windows(2).all(|w| w[0] == w[1]));
    assert_ne!(records[0].version, genesis);
}

#[test]
fn too_few_contributions_close_without_an_update() {
    let m = manifest(Rule::Mean);
    let mut node = community(&m, 3);
    let genesis = node.head().version();
    node.start_round(1, start(1)).unwrap();
    node.on_bytes(&delta_bytes(&m, 1, 1, genesis), start(1) + 5)
        .unwrap();
    let out = node.tick(start(1) + 300);
    assert!(out.contains(&Output::Failed {
        round: 1,
        reason: FailReason::TooFew {
            found: 1,
            needed: 2
        }
    }));
    assert_eq!(node.head().version(), genesis);
    assert_eq!(node.head_round(), 0);
    assert!(matches!(
        node.round().unwrap().outcome(),
        Some(Outcome::Failed(FailReason::TooFew { .. }))
    ));
    // The next round starts on the same parent.
    node.start_round(2, start(2)).unwrap();
    assert_eq!(node.round().unwrap().parent(), genesis);
}

#[test]
fn round_start_rules() {
    let m = manifest(Rule::Mean);
    let mut node = community(&m, 2);
    node.start_round(3, start(3)).unwrap();
    assert!(matches!(
        node.start_round(4, start(4)),
        Err(Error::RoundStart { round: 4, .. })
    ));
    node.tick(start(3) + 300);
    assert!(matches!(
        node.start_round(3, start(3) + 400),
        Err(Error::RoundStart { round: 3, .. })
    ));
    node.start_round(4, start(4)).unwrap();
    let mut secure = manifest(Rule::Mean);
    secure.privacy.mode = PrivacyMode::Distributed;
    let mut node = community(&secure, 2);
    assert_eq!(
        node.start_round(1, start(1)),
        Err(Error::NoSecureAggregation)
    );
}

/// A late joiner verifies the announced version from the signed deltas and adopts it;
/// tampering with any part of the claim is caught.
#[test]
fn verify_version_recomputes_from_signed_deltas() {
    let m = manifest(Rule::TrimmedMean { beta: 0.2 });
    let mut node = community(&m, 6);
    let genesis_state = node.head().clone();
    let parent = genesis_state.version();
    node.start_round(1, start(1)).unwrap();
    let envelopes: Vec<Vec<u8>> = (1..=6).map(|i| delta_bytes(&m, i, 1, parent)).collect();
    for e in &envelopes {
        node.on_bytes(e, start(1) + 1).unwrap();
    }
    let record = closed(&node.tick(start(1) + 300)).unwrap().clone();
    let announcement = record.announcement();

    let mut late = community(&m, 6);
    let (verified, state) = late
        .verify_version(&genesis_state, &envelopes, &announcement, start(1))
        .unwrap();
    assert_eq!(verified, record);
    late.adopt(&verified, state).unwrap();
    assert_eq!(late.head(), node.head());
    assert_eq!(late.head_round(), 1);
    assert_eq!(late.chain().last(), Some(&record));

    // A delta left out, a wrong version, a wrong parent, a forged envelope.
    assert!(matches!(
        late.verify_version(&genesis_state, &envelopes[1..], &announcement, start(1)),
        Err(Error::InputsMismatch { .. })
    ));
    let mut wrong = announcement.clone();
    wrong.version = Hash32::digest(b"not it");
    assert!(matches!(
        late.verify_version(&genesis_state, &envelopes, &wrong, start(1)),
        Err(Error::VersionMismatch { .. })
    ));
    assert!(matches!(
        late.verify_version(late.head(), &envelopes, &announcement, start(1)),
        Err(Error::WrongParent { .. })
    ));
    let mut forged = envelopes.clone();
    let last = forged[2].len() - 1;
    forged[2][last] ^= 1;
    match late.verify_version(&genesis_state, &forged, &announcement, start(1)) {
        Err(Error::InvalidInput { index, rejection }) => {
            assert_eq!((index, rejection.reason), (2, Reason::Forged));
        }
        other => panic!("expected a forged input, got {other:?}"),
    }
    // Certificates are checked at the round's time: after they expired, they do not verify.
    assert!(matches!(
        late.verify_version(&genesis_state, &envelopes, &announcement, T0 + 101 * 86_400),
        Err(Error::InvalidInput { .. })
    ));
    // Adopting twice, or onto another head, is refused.
    let (again, state) = community(&m, 6)
        .verify_version(&genesis_state, &envelopes, &announcement, start(1))
        .unwrap();
    assert!(matches!(
        late.adopt(&again, state),
        Err(Error::WrongParent { .. })
    ));
}

/// A node that got a delta only after its deadline closes with fewer inputs, then adopts the
/// peer's version (more inputs) once it hears the announcement; a node that never got the delta
/// asks for it, and adopts once it has it.
#[test]
fn late_deltas_are_reconciled_by_the_preference_rule() {
    let m = manifest(Rule::Mean);
    let parent = community(&m, 4).head().version();
    let envelopes: Vec<Vec<u8>> = (1..=4).map(|i| delta_bytes(&m, i, 1, parent)).collect();
    let mut a = community(&m, 4);
    let mut b = community(&m, 4);
    let mut c = community(&m, 4);
    for node in [&mut a, &mut b, &mut c] {
        node.start_round(1, start(1)).unwrap();
        for e in &envelopes[..3] {
            node.on_bytes(e, start(1) + 5).unwrap();
        }
    }
    a.on_bytes(&envelopes[3], start(1) + 299).unwrap();
    assert_eq!(
        rejected(&mut b, &envelopes[3], start(1) + 300).reason,
        Reason::Late
    );
    let ra = closed(&a.tick(start(1) + 300)).unwrap().clone();
    let rb = closed(&b.tick(start(1) + 300)).unwrap().clone();
    let rc = closed(&c.tick(start(1) + 300)).unwrap().clone();
    assert_eq!((ra.inputs.len(), rb.inputs.len()), (4, 3));
    assert_eq!(rb, rc);
    assert_ne!(ra.version, rb.version);

    // B and C hear A's announcement (A has the announcer role through contributor).
    let ann = seal(&m, &member(1), 1, 2, &Payload::Version(ra.announcement()));
    assert!(matches!(
        b.on_bytes(&ann, start(1) + 310),
        Ok(Accepted::Announcement { .. })
    ));
    let out = b.tick(start(1) + 311);
    assert!(out.contains(&Output::Adopted {
        replaced: Some(rb.version),
        record: ra.clone()
    }));
    assert_eq!(b.head(), a.head());
    assert_eq!(b.chain().last(), Some(&ra));

    c.on_bytes(&ann, start(1) + 310).unwrap();
    let out = c.tick(start(1) + 311);
    let hash = ra
        .inputs
        .iter()
        .find(|h| !rc.inputs.contains(h))
        .copied()
        .unwrap();
    assert!(out.contains(&Output::Missing {
        round: 1,
        version: ra.version,
        inputs: vec![hash]
    }));
    assert_eq!(
        rejected(&mut c, &envelopes[3], start(1) + 320).reason,
        Reason::Late
    );
    let out = c.tick(start(1) + 321);
    assert!(out.iter().any(|o| matches!(o, Output::Adopted { .. })));
    assert_eq!(c.head(), a.head());

    // A's own view does not change when it hears B's (less preferred) announcement.
    let ann_b = seal(&m, &member(2), 1, 2, &Payload::Version(rb.announcement()));
    a.on_bytes(&ann_b, start(1) + 330).unwrap();
    assert!(a.tick(start(1) + 331).is_empty());
    assert_eq!(a.head().version(), ra.version);

    // An announcement whose inputs do not give its version is misbehaviour.
    let mut lie = ra.announcement();
    lie.version = Hash32([0; 32]);
    let mut d = community(&m, 4);
    d.start_round(1, start(1)).unwrap();
    for e in &envelopes[..3] {
        d.on_bytes(e, start(1) + 5).unwrap();
    }
    d.tick(start(1) + 300);
    lie.deltas = ra.inputs.clone();
    d.on_bytes(&envelopes[3], start(1) + 301).unwrap_err();
    let r = rejected(
        &mut d,
        &seal(&m, &member(3), 1, 3, &Payload::Version(lie)),
        start(1) + 302,
    );
    assert_eq!(r.reason, Reason::BadAnnouncement);
    assert_eq!(r.culprit(), Some(member(3).member_id()));
}

/// Two rounds with FedAdam: the optimizer state is part of the chain and identical on every
/// node.
#[test]
fn optimizer_state_is_chained_identically() {
    let mut m = manifest(Rule::Median);
    m.aggregation.optimizer = ServerOptimizer::FedAdam {
        lr: 0.05,
        beta1: 0.9,
        beta2: 0.99,
        epsilon: 1e-3,
    };
    let mut a = community(&m, 5);
    let mut b = community(&m, 5);
    for r in 1..=2u64 {
        let parent = a.head().version();
        let envelopes: Vec<Vec<u8>> = (1..=5).map(|i| delta_bytes(&m, i, r, parent)).collect();
        a.start_round(r, start(r)).unwrap();
        b.start_round(r, start(r)).unwrap();
        for (k, e) in envelopes.iter().enumerate() {
            a.on_bytes(e, start(r) + k as u64).unwrap();
            b.on_bytes(&envelopes[4 - k], start(r) + k as u64).unwrap();
        }
        let ra = closed(&a.tick(start(r) + 300)).unwrap().clone();
        let rb = closed(&b.tick(start(r) + 300)).unwrap().clone();
        assert_eq!(ra, rb);
        assert_eq!(ra.optimizer, a.head().optimizer_hash());
    }
    assert!(matches!(
        a.head().optimizer,
        crate::OptimizerState::Adam { .. }
    ));
    assert_eq!(a.head(), b.head());
    assert_eq!(a.chain().count(), 2);
}

#[test]
fn own_delta_is_checked_and_published() {
    let m = manifest(Rule::Mean);
    let mut node = community(&m, 3);
    let parent = node.head().version();
    node.start_round(1, start(1)).unwrap();
    let me = member(1).member_id();
    let d = honest(&m, 1, parent, 1);
    let out = node.submit_own(me, d.clone(), start(1) + 3).unwrap();
    assert_eq!(
        out,
        vec![Output::Publish {
            round: 1,
            payload: Payload::Delta(d.clone())
        }]
    );
    assert_eq!(node.round().unwrap().inputs(), vec![d.hash]);
    let mut big = d.clone();
    big.scale *= 1e3;
    big.hash = big.compute_hash();
    assert_eq!(
        node.submit_own(member(2).member_id(), big, start(1) + 3)
            .unwrap_err()
            .reason,
        Reason::OverNorm
    );
    assert_eq!(
        node.submit_own(
            member(3).member_id(),
            honest(&m, 1, parent, 3),
            start(1) + 300
        )
        .unwrap_err()
        .reason,
        Reason::Late
    );
}

#[test]
fn input_limits_at_and_past() {
    let mut m = manifest(Rule::Mean);
    m.limits.max_cohort = 3;
    m.aggregation.min_group_size = 3;
    let mut node = Community::new(
        &crate::testutil::signed(&m),
        State::genesis(crate::Adapter::zeros(&m.lora)),
        Config {
            max_late: 1,
            ..Config::default()
        },
    )
    .unwrap();
    for i in 1..=6 {
        let cert = certificate(&m, &member(i), T0, T0 + 86_400, vec![Role::Contributor]);
        node.add_certificate(&cert, T0).unwrap();
    }
    let parent = node.head().version();
    node.start_round(1, start(1)).unwrap();
    for i in 1..=3 {
        node.on_bytes(&delta_bytes(&m, i, 1, parent), start(1) + 1)
            .unwrap();
    }
    let r = rejected(&mut node, &delta_bytes(&m, 4, 1, parent), start(1) + 1);
    assert_eq!(r.reason, Reason::Full);
    // Late deltas: one is kept, the next finds the table full.
    assert_eq!(
        rejected(&mut node, &delta_bytes(&m, 5, 1, parent), start(1) + 300).reason,
        Reason::Late
    );
    assert_eq!(
        rejected(&mut node, &delta_bytes(&m, 6, 1, parent), start(1) + 300).reason,
        Reason::Full
    );
    let record = closed(&node.tick(start(1) + 300)).unwrap().clone();
    // Announcements: three are held, the fourth finds the table full.
    for i in 1..=3 {
        let ann = seal(
            &m,
            &member(i),
            1,
            9,
            &Payload::Version(record.announcement()),
        );
        node.on_bytes(&ann, start(1) + 301).unwrap();
    }
    let ann = seal(
        &m,
        &member(4),
        1,
        9,
        &Payload::Version(record.announcement()),
    );
    assert_eq!(
        rejected(&mut node, &ann, start(1) + 301).reason,
        Reason::Full
    );
}

/// An announcement that cannot be checked when it arrives (an input is missing) and turns out to
/// be wrong once the input comes is reported for penalty then.
#[test]
fn a_wrong_announcement_is_reported_once_its_inputs_are_held() {
    let m = manifest(Rule::Mean);
    let parent = community(&m, 4).head().version();
    let envelopes: Vec<Vec<u8>> = (1..=4).map(|i| delta_bytes(&m, i, 1, parent)).collect();
    let mut full = community(&m, 4);
    let mut node = community(&m, 4);
    for n in [&mut full, &mut node] {
        n.start_round(1, start(1)).unwrap();
    }
    for e in &envelopes {
        full.on_bytes(e, start(1) + 1).unwrap();
    }
    for e in &envelopes[..3] {
        node.on_bytes(e, start(1) + 1).unwrap();
    }
    let honest_record = closed(&full.tick(start(1) + 300)).unwrap().clone();
    node.tick(start(1) + 300);
    let mut lie = honest_record.announcement();
    lie.version = Hash32::digest(b"a version nobody computed");
    let liar = member(4).member_id();
    let bytes = seal(&m, &member(4), 1, 5, &Payload::Version(lie.clone()));
    assert!(node.on_bytes(&bytes, start(1) + 301).is_ok());
    assert!(
        node.tick(start(1) + 302)
            .iter()
            .any(|o| matches!(o, Output::Missing { version, .. } if *version == lie.version))
    );
    assert_eq!(
        rejected(&mut node, &envelopes[3], start(1) + 303).reason,
        Reason::Late
    );
    let out = node.tick(start(1) + 304);
    let penalised: Vec<_> = out
        .iter()
        .filter_map(|o| match o {
            Output::Rejected(r) => r.culprit(),
            _ => None,
        })
        .collect();
    assert_eq!(penalised, vec![liar]);
    assert_eq!(node.counters().rejected(Reason::BadAnnouncement), 1);
    // The liar is not heard again this round.
    let again = seal(
        &m,
        &member(4),
        1,
        6,
        &Payload::Version(honest_record.announcement()),
    );
    assert_eq!(
        rejected(&mut node, &again, start(1) + 304).reason,
        Reason::BadAnnouncement
    );
    // The honest announcement with the same inputs is then adopted.
    let ann = seal(
        &m,
        &member(1),
        1,
        5,
        &Payload::Version(honest_record.announcement()),
    );
    node.on_bytes(&ann, start(1) + 305).unwrap();
    assert!(
        node.tick(start(1) + 306)
            .iter()
            .any(|o| matches!(o, Output::Adopted { .. }))
    );
    assert_eq!(node.head(), full.head());
}

#[test]
fn a_restored_head_is_the_next_round_parent() {
    let m = manifest(Rule::Mean);
    let mut node = community(&m, 3);
    let parent = node.head().version();
    node.start_round(1, start(1)).unwrap();
    for i in 1..=3 {
        node.on_bytes(&delta_bytes(&m, i, 1, parent), start(1) + 1)
            .unwrap();
    }
    let record = closed(&node.tick(start(1) + 300)).unwrap().clone();
    let state = node.head().clone();

    // A restarted node restores the persisted head and chain and continues from it.
    let mut restarted = community(&m, 3);
    restarted
        .restore(1, state.clone(), vec![record.clone()])
        .unwrap();
    assert_eq!(restarted.head_round(), 1);
    assert_eq!(restarted.chain().collect::<Vec<_>>(), vec![&record]);
    assert!(matches!(
        restarted.start_round(1, start(1)),
        Err(Error::RoundStart { .. })
    ));
    restarted.start_round(2, start(2)).unwrap();
    assert_eq!(restarted.round().unwrap().parent(), record.version);

    let mut wrong = state;
    wrong.optimizer = crate::OptimizerState::Momentum { m: vec![0.0; 3] };
    assert!(matches!(
        community(&m, 3).restore(1, wrong, vec![]),
        Err(Error::Shape { .. })
    ));
}
