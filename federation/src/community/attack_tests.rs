//! Admission and attack tests over real signed envelopes: every rejection reason, certificates,
//! member limits, bounded model replacement, sign flippers under the robust rules.

use hearth_protocol::{
    DeltaSubmission, Hash32, Keypair, Payload, RevocationList, Role, Rule, Signed, SurvivorSet,
};

use super::*;
use crate::cohort::in_cohort;
use crate::testutil::{
    Gen, T0, admin, certificate, community, delta_bytes, honest, manifest, member, message, seal,
    start, submission,
};
use crate::verify::norm_bound;

fn rejected(c: &mut Community, bytes: &[u8], now: u64) -> Rejection {
    c.on_bytes(bytes, now).unwrap_err()
}

/// Every attack of the issue, each rejected with its own reason and counted.
#[test]
fn attacks_are_rejected_each_with_its_own_reason() {
    let mut m = manifest(Rule::Mean);
    m.schedule.sampling_rate = 0.5;
    let mut node = community(&m, 40);
    let parent = node.head().version();
    node.start_round(1, start(1)).unwrap();
    let seed = node.round().unwrap().seed();
    let rate = m.schedule.sampling_rate;
    let inside: Vec<u32> = (1..=40)
        .filter(|i| in_cohort(&seed, &member(*i).member_id(), rate))
        .collect();
    let outside = (1..=40)
        .find(|i| !in_cohort(&seed, &member(*i).member_id(), rate))
        .unwrap();
    assert!(inside.len() > 10, "{} in the cohort", inside.len());
    let now = start(1) + 60;
    let mut next = inside.iter().copied();
    let mut fresh = || next.next().unwrap();
    let expect = |node: &mut Community, bytes: &[u8], reason: Reason| {
        let r = rejected(node, bytes, now);
        assert_eq!(r.reason, reason, "{r}");
        r
    };

    // Forged: a flipped signature bit. The sender is not authenticated.
    let mut forged = delta_bytes(&m, inside[0], 1, parent);
    let last = forged.len() - 1;
    forged[last] ^= 1;
    assert_eq!(expect(&mut node, &forged, Reason::Forged).sender, None);

    // Replayed: the same envelope twice.
    let ok = delta_bytes(&m, fresh(), 1, parent);
    node.on_bytes(&ok, now).unwrap();
    let r = expect(&mut node, &ok, Reason::Replayed);
    assert!(r.sender.is_some() && r.culprit().is_none());

    // Out of cohort.
    let r = expect(
        &mut node,
        &delta_bytes(&m, outside, 1, parent),
        Reason::NotInCohort,
    );
    assert_eq!(r.culprit(), Some(member(outside).member_id()));

    // Not a member: a key without a certificate.
    let stranger = Keypair::from_seed([0x77; 32]);
    let d = honest(&m, 1, parent, 5);
    expect(
        &mut node,
        &seal(&m, &stranger, 1, 1, &Payload::Delta(d.clone())),
        Reason::NotMember,
    );

    // Wrong shape: a tensor renamed (the hash is recomputed, so only the shape is wrong).
    let i = fresh();
    let mut bad = honest(&m, 1, parent, 6);
    bad.layers[1].name = "blk.0.attn_k".into();
    let bad = DeltaSubmission::new(
        bad.round,
        bad.base_version,
        bad.layers,
        bad.scale,
        1,
        bad.dp,
    );
    expect(
        &mut node,
        &seal(&m, &member(i), 1, 1, &Payload::Delta(bad)),
        Reason::WrongShape,
    );

    // NaN scale: refused by the decoder's validation, reported as non-finite.
    let i = fresh();
    let mut nan = honest(&m, 1, parent, 7);
    nan.scale = f32::NAN;
    nan.hash = nan.compute_hash();
    let stamp_msg = |d: DeltaSubmission, i: u32| {
        let mut msg = message(
            &m,
            &member(i),
            1,
            9,
            &Payload::Delta(honest(&m, 1, parent, 1)),
        );
        msg.payload = Payload::Delta(d);
        msg
    };
    let r = node.on_message(&stamp_msg(nan, i), now).unwrap_err();
    assert_eq!(r.reason, Reason::NonFinite, "{r}");

    // Over norm: an honest delta scaled 10x.
    let i = fresh();
    let mut big = honest(&m, 1, parent, 8);
    big.scale *= 10.0;
    let big = DeltaSubmission::new(1, parent, big.layers, big.scale, 1, big.dp);
    expect(
        &mut node,
        &seal(&m, &member(i), 1, 1, &Payload::Delta(big)),
        Reason::OverNorm,
    );

    // Stale round, future round.
    let i = fresh();
    expect(
        &mut node,
        &delta_bytes(&m, i, 0, parent),
        Reason::StaleRound,
    );
    expect(
        &mut node,
        &delta_bytes(&m, i, 2, parent),
        Reason::FutureRound,
    );

    // Wrong base version.
    expect(
        &mut node,
        &delta_bytes(&m, i, 1, Hash32::digest(b"elsewhere")),
        Reason::WrongBase,
    );

    // DP parameters other than the community's.
    let i = fresh();
    let mut dp = honest(&m, 1, parent, 9);
    dp.dp.noise_std *= 3.0;
    let dp = DeltaSubmission::new(1, parent, dp.layers, dp.scale, 1, dp.dp);
    expect(
        &mut node,
        &seal(&m, &member(i), 1, 1, &Payload::Delta(dp)),
        Reason::DpMismatch,
    );

    // Quantization range: i32::MIN, or a scale coarse enough to hide a large norm in rounding.
    let mut q = honest(&m, 1, parent, 10);
    q.layers[0].values[0] = i32::MIN;
    q.scale = 1e-12;
    let q = DeltaSubmission::new(1, parent, q.layers, q.scale, 1, q.dp);
    expect(
        &mut node,
        &seal(&m, &member(i), 1, 2, &Payload::Delta(q)),
        Reason::QuantizationRange,
    );
    let mut coarse = honest(&m, 1, parent, 11);
    coarse.scale = 0.01;
    for v in coarse.layers.iter_mut().flat_map(|l| l.values.iter_mut()) {
        *v = (*v).signum();
    }
    let coarse = DeltaSubmission::new(1, parent, coarse.layers, coarse.scale, 1, coarse.dp);
    expect(
        &mut node,
        &seal(&m, &member(i), 1, 3, &Payload::Delta(coarse)),
        Reason::QuantizationRange,
    );

    // Duplicate: someone else's accepted delta, re-signed (not penalised: it may be a relay).
    let copied = honest(&m, 1, parent, 1_000 * u64::from(inside[0]) + 1);
    let r = expect(
        &mut node,
        &seal(&m, &member(i), 1, 4, &Payload::Delta(copied)),
        Reason::Duplicate,
    );
    assert_eq!(r.culprit(), None);

    // Equivocation: a second, different delta from a member already in; both are dropped.
    let first = inside[0];
    let before = node.round().unwrap().inputs().len();
    let second = honest(&m, 1, parent, 424_242);
    expect(
        &mut node,
        &seal(&m, &member(first), 1, 7, &Payload::Delta(second)),
        Reason::Equivocation,
    );
    assert_eq!(node.round().unwrap().inputs().len(), before - 1);
    assert_eq!(
        node.round().unwrap().equivocators().collect::<Vec<_>>(),
        vec![&member(first).member_id()]
    );

    // A secure-aggregation message in a plain round.
    let i = fresh();
    let keys = Payload::Survivors(SurvivorSet {
        round: 1,
        survivors: vec![],
    });
    expect(
        &mut node,
        &seal(&m, &member(i), 1, 1, &keys),
        Reason::WrongKind,
    );

    // Wrong community (a message built for another manifest, handed over decoded).
    let mut other = m.clone();
    other.name = "another community".into();
    let msg = message(
        &other,
        &member(i),
        1,
        1,
        &Payload::Delta(honest(&m, 1, parent, 12)),
    );
    assert_eq!(
        node.on_message(&msg, now).unwrap_err().reason,
        Reason::WrongCommunity
    );
    // Bytes for another community do not even decode here.
    let bytes = seal(
        &other,
        &member(i),
        1,
        1,
        &Payload::Delta(honest(&m, 1, parent, 12)),
    );
    assert_eq!(
        rejected(&mut node, &bytes, now).reason,
        Reason::WrongCommunity
    );

    // Early: before the round's start (beyond the 30 s skew allowance); late: at the deadline.
    let i = fresh();
    let early = delta_bytes(&m, i, 1, parent);
    assert_eq!(
        rejected(&mut node, &early, start(1) - 31).reason,
        Reason::Early
    );
    let r = rejected(&mut node, &early, start(1) + 300);
    assert_eq!(r.reason, Reason::Late);
    assert_eq!(r.culprit(), None);

    let counts = node.counters();
    for reason in [
        Reason::Forged,
        Reason::Replayed,
        Reason::NotInCohort,
        Reason::NotMember,
        Reason::WrongShape,
        Reason::NonFinite,
        Reason::OverNorm,
        Reason::StaleRound,
        Reason::FutureRound,
        Reason::WrongBase,
        Reason::DpMismatch,
        Reason::Duplicate,
        Reason::Equivocation,
        Reason::WrongKind,
        Reason::Early,
        Reason::Late,
    ] {
        assert_eq!(counts.rejected(reason), 1, "{reason:?}");
    }
    assert_eq!(counts.rejected(Reason::QuantizationRange), 2);
    assert_eq!(counts.rejected(Reason::WrongCommunity), 2);
}

#[test]
fn certificates_expiry_revocation_and_roles() {
    let m = manifest(Rule::Mean);
    let mut node = community(&m, 3);
    let parent = node.head().version();
    node.start_round(1, start(1)).unwrap();
    let now = start(1) + 10;

    // Expired: a member whose only certificate ended before now.
    let late_key = member(50);
    let cert = certificate(&m, &late_key, T0, start(1), vec![Role::Contributor]);
    node.add_certificate(&cert, T0).unwrap();
    let bytes = seal(
        &m,
        &late_key,
        1,
        1,
        &Payload::Delta(honest(&m, 1, parent, 50)),
    );
    assert_eq!(
        rejected(&mut node, &bytes, now).reason,
        Reason::CertificateExpired
    );

    // Observer only: lacks the contributor role.
    let watcher = member(51);
    let cert = certificate(&m, &watcher, T0, T0 + 86_400 * 10, vec![Role::Observer]);
    node.add_certificate(&cert, T0).unwrap();
    let bytes = seal(
        &m,
        &watcher,
        1,
        1,
        &Payload::Delta(honest(&m, 1, parent, 51)),
    );
    assert_eq!(rejected(&mut node, &bytes, now).reason, Reason::MissingRole);

    // Revoked: via a gossiped revocation list.
    let list = RevocationList {
        community: node.id(),
        sequence: 1,
        issued: T0,
        revoked: vec![member(2).member_id()],
    };
    let list = Signed::sign(list, &admin()).unwrap();
    let relay = seal(&m, &member(1), 1, 5, &Payload::Revocations(list.clone()));
    assert_eq!(
        node.on_bytes(&relay, now),
        Ok(Accepted::Revocations { sequence: 1 })
    );
    let r = rejected(&mut node, &delta_bytes(&m, 2, 1, parent), now);
    assert_eq!(r.reason, Reason::Revoked);
    assert_eq!(r.culprit(), Some(member(2).member_id()));
    // The same list again is stale, not misbehaviour.
    let again = seal(&m, &member(1), 1, 6, &Payload::Revocations(list));
    let r = rejected(&mut node, &again, now);
    assert_eq!(r.reason, Reason::StaleAdminObject);
    assert_eq!(r.culprit(), None);

    // A certificate forged by someone else is bad; a gossiped valid one admits its member.
    let mut forged = certificate(&m, &member(60), T0, T0 + 86_400, vec![Role::Contributor]);
    forged.signature = certificate(&m, &member(61), T0, T0 + 86_400, vec![]).signature;
    let bytes = seal(&m, &member(1), 1, 7, &Payload::Certificate(forged));
    assert_eq!(
        rejected(&mut node, &bytes, now).reason,
        Reason::BadAdminObject
    );
    let good = certificate(
        &m,
        &member(60),
        T0,
        T0 + 86_400 * 10,
        vec![Role::Contributor],
    );
    let bytes = seal(&m, &member(1), 1, 8, &Payload::Certificate(good));
    assert_eq!(
        node.on_bytes(&bytes, now),
        Ok(Accepted::Certificate {
            member: member(60).member_id()
        })
    );
    assert!(node.on_bytes(&delta_bytes(&m, 60, 1, parent), now).is_ok());
}

#[test]
fn member_table_limit_at_and_past() {
    let m = manifest(Rule::Mean);
    let mut node = Community::new(
        &crate::testutil::signed(&m),
        State::genesis(crate::Adapter::zeros(&m.lora)),
        Config {
            max_members: 2,
            ..Config::default()
        },
    )
    .unwrap();
    for i in 1..=2 {
        let cert = certificate(&m, &member(i), T0, T0 + 86_400, vec![Role::Contributor]);
        node.add_certificate(&cert, T0).unwrap();
    }
    // A renewal of a known member still fits; a third member does not.
    let renewal = certificate(&m, &member(1), T0, T0 + 2 * 86_400, vec![Role::Contributor]);
    node.add_certificate(&renewal, T0).unwrap();
    let third = certificate(&m, &member(3), T0, T0 + 86_400, vec![Role::Contributor]);
    assert_eq!(
        node.add_certificate(&third, T0),
        Err(Error::MembersFull { max: 2 })
    );
}

/// The largest delta that passes verification moves the mean by at most `B/n` (B the norm
/// bound); a scaled-up one is rejected outright.
#[test]
fn model_replacement_is_bounded_by_the_norm_bound() {
    let m = manifest(Rule::Mean);
    let n_honest = 9u32;
    let mut node = community(&m, n_honest + 1);
    let mut honest_only = community(&m, n_honest + 1);
    let parent = node.head().version();
    node.start_round(1, start(1)).unwrap();
    honest_only.start_round(1, start(1)).unwrap();
    for i in 1..=n_honest {
        let bytes = delta_bytes(&m, i, 1, parent);
        node.on_bytes(&bytes, start(1) + 1).unwrap();
        honest_only.on_bytes(&bytes, start(1) + 1).unwrap();
    }
    let d = m.lora.elements() as usize;
    let bound = norm_bound(m.privacy.clip_norm, m.privacy.noise_multiplier, d);
    // The attacker's target: one coordinate pushed as far as the bound allows.
    let attacker = member(n_honest + 1);
    let mut target = vec![0.0f32; d];
    target[0] = (bound * 0.999_999) as f32;
    let replacement = submission(&m, 1, parent, &target);
    let mut scaled = vec![0.0f32; d];
    scaled[0] = (bound * 100.0) as f32;
    let too_big = submission(&m, 1, parent, &scaled);
    let r = rejected(
        &mut node,
        &seal(&m, &attacker, 1, 1, &Payload::Delta(too_big)),
        start(1) + 2,
    );
    assert_eq!(r.reason, Reason::OverNorm);
    node.on_bytes(
        &seal(&m, &attacker, 1, 2, &Payload::Delta(replacement)),
        start(1) + 2,
    )
    .unwrap();
    node.tick(start(1) + 300);
    honest_only.tick(start(1) + 300);
    let with = node.head().adapter.to_flat();
    let without = honest_only.head().adapter.to_flat();
    // The honest mean over 9 vs the mean over 10 with the attacker: the shift is at most B/10
    // plus the dilution of the honest mean.
    let shift = with
        .iter()
        .zip(&without)
        .map(|(a, b)| (f64::from(*a) - f64::from(*b)).powi(2))
        .sum::<f64>()
        .sqrt();
    let honest_norm = without
        .iter()
        .map(|x| f64::from(*x).powi(2))
        .sum::<f64>()
        .sqrt();
    let n = f64::from(n_honest + 1);
    assert!(
        shift <= bound / n + honest_norm / n + 1e-5,
        "shift {shift}, bound/n {}",
        bound / n
    );
    assert!(
        shift > bound / n * 0.5,
        "the attack does move the mean: {shift}"
    );
}

/// Issue 5's robustness check through whole rounds: 20 % sign-flipping attackers (two of ten,
/// each sending the honest direction negated and scaled up to the norm bound, so every delta is
/// accepted) move the plain mean much farther from its honest-only result than they move the
/// trimmed mean (β = 0.2) and the median from theirs.
#[test]
fn sign_flippers_move_robust_rounds_less_than_the_mean() {
    let honest_ids: Vec<u32> = (1..=8).collect();
    let run = |rule: Rule, with_attackers: bool| {
        let m = manifest(rule);
        let mut node = community(&m, 10);
        let parent = node.head().version();
        node.start_round(1, start(1)).unwrap();
        for &i in &honest_ids {
            node.on_bytes(&delta_bytes(&m, i, 1, parent), start(1) + 1)
                .unwrap();
        }
        if with_attackers {
            let d = m.lora.elements() as usize;
            let bound = norm_bound(m.privacy.clip_norm, m.privacy.noise_multiplier, d);
            // The honest direction (the shared signal of `honest`), negated, at 0.99·B and 0.98·B.
            let mut shared = Gen::new(0xd1ec);
            let dir: Vec<f64> = (0..d).map(|_| shared.normal()).collect();
            let len = dir.iter().map(|x| x * x).sum::<f64>().sqrt();
            for (i, k) in [(9u32, 0.99), (10, 0.98)] {
                let flipped: Vec<f32> = dir.iter().map(|x| (-x / len * bound * k) as f32).collect();
                let delta = submission(&m, 1, parent, &flipped);
                node.on_bytes(
                    &seal(&m, &member(i), 1, 1, &Payload::Delta(delta)),
                    start(1) + 1,
                )
                .unwrap();
            }
        }
        node.tick(start(1) + 300);
        assert_eq!(node.head_round(), 1);
        node.head().adapter.to_flat()
    };
    // How far the attackers move each rule's result from that rule on the honest deltas alone.
    let shift = |rule: Rule| {
        let (with, without) = (run(rule, true), run(rule, false));
        with.iter()
            .zip(&without)
            .map(|(a, b)| (f64::from(*a) - f64::from(*b)).powi(2))
            .sum::<f64>()
            .sqrt()
    };
    let mean = shift(Rule::Mean);
    let trimmed = shift(Rule::TrimmedMean { beta: 0.2 });
    let median = shift(Rule::Median);
    eprintln!("shift: mean {mean:.3}, trimmed mean {trimmed:.3}, median {median:.3}");
    assert!(mean > 1.0, "the attack moves the mean: {mean}");
    assert!(trimmed < mean * 0.75, "trimmed {trimmed} vs mean {mean}");
    assert!(median < mean * 0.75, "median {median} vs mean {mean}");
}
