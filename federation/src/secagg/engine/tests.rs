//! The engine's pure parts: seeds, calibration, observers, groups too small to run.

use hearth_protocol::{MemberId, Payload, PrivacyMode, Rule, SurvivorSet};

use super::*;
use crate::clock::PhaseClock;
use crate::testutil::{manifest, member, message, start};

fn secure_manifest() -> Manifest {
    let mut m = manifest(Rule::Mean);
    m.privacy.mode = PrivacyMode::Distributed;
    m
}

/// Round 1 of `m` with certified members `1..=members`.
fn info(m: &Manifest, members: u32, min_group_size: usize) -> RoundInfo {
    let mut ids: Vec<MemberId> = (1..=members).map(|i| member(i).member_id()).collect();
    ids.sort();
    RoundInfo {
        community: m.community_id().unwrap(),
        round: 1,
        parent: Hash32::ZERO,
        seed: Hash32::digest(b"round seed"),
        clock: PhaseClock::new(&m.schedule, start(1), true),
        elements: m.lora.elements() as usize,
        manifest: m.clone(),
        min_group_size,
        members: ids,
    }
}

#[test]
fn seeds_bind_every_input() {
    let seed = Hash32::digest(b"s");
    let ids: Vec<MemberId> = (1..=8).map(|i| member(i).member_id()).collect();
    let g = group_seed(&seed, &ids);
    assert_eq!(g, group_seed(&seed, &ids));
    assert_ne!(g, group_seed(&Hash32::digest(b"t"), &ids));
    assert_ne!(g, group_seed(&seed, &ids[1..]));
    let me = ids[0];
    let s = member_seed(&[1; 32], &g, 1, &me);
    assert_eq!(s, member_seed(&[1; 32], &g, 1, &me));
    assert_ne!(s, member_seed(&[2; 32], &g, 1, &me));
    assert_ne!(s, member_seed(&[1; 32], &g, 2, &me));
    assert_ne!(s, member_seed(&[1; 32], &seed, 1, &me));
    assert_ne!(s, member_seed(&[1; 32], &g, 1, &ids[1]));
}

/// For every group size and several σ: `t = ⌊k/3⌋`, any `k − t` shares carry exactly `σ·C`
/// (what the round's noise check demands), the scale is a power of two, and the worst-case sum
/// of all `k` members fits in a signed 32-bit integer.
#[test]
fn calibration_gives_any_quorum_the_full_noise_and_never_wraps() {
    let mut m = secure_manifest();
    let ids: Vec<MemberId> = (1..=64).map(|i| member(i).member_id()).collect();
    for sigma in [0.5, 1.0, 6.9] {
        m.privacy.noise_multiplier = sigma;
        for k in 3..=64 {
            let cal = calibrate(&m, 184_320, &ids[..k], &Config::default()).unwrap();
            let t = cal.tolerated();
            assert_eq!(t, k / 3);
            let full = sigma * m.privacy.clip_norm;
            let quorum = ((k - t) as f64).sqrt() * cal.share_std();
            assert!((quorum - full).abs() <= full * 1e-12, "k {k}: {quorum}");
            let s = f64::from(cal.scale());
            assert_eq!(s.log2().fract(), 0.0, "k {k}: scale {s}");
            let c = m.privacy.clip_norm;
            let worst = k as f64 * (c / s + 0.5)
                + hearth_training::TAIL_Z * (full / s) * (k as f64 / (k - t) as f64).sqrt();
            assert!(worst <= f64::from(i32::MAX), "k {k}: {worst}");
            // The noise the training crate adds per share, in real units, is the declared one.
            let steps = cal.noise.share_std() * s;
            assert!((steps - cal.share_std()).abs() <= cal.share_std() * 1e-12);
        }
    }
}

#[test]
fn a_node_outside_every_group_only_observes() {
    let m = secure_manifest();
    let info = info(&m, 9, 8);
    let outsider = member(100).member_id();
    let mut engine = Engine::new(outsider, [9; 32]);
    assert!(engine.begin(&info).is_empty());
    assert!(engine.calibration(&info, &outsider).is_none());
    assert!(engine.calibration(&info, &member(1).member_id()).is_some());
    for phase in [Phase::Keys, Phase::Shares, Phase::Submit, Phase::Unmask] {
        assert!(engine.tick(&info, phase, start(1)).is_empty());
    }
    let why = engine.submit_own(&info, &[0; 28], 1.0).unwrap_err();
    assert!(why.contains("in no secure-aggregation group"), "{why}");
    assert!(engine.dropped_out().is_none());
    // Its debug output names the member, never the secret.
    let shown = format!("{engine:?}");
    assert!(
        shown.contains("Engine") && !shown.contains("secret"),
        "{shown}"
    );
}

/// A group of three can run (the smallest secure-aggregation cohort); one of two cannot, and
/// seven members with groups of at least eight form none: each case says why.
#[test]
fn groups_below_the_smallest_cohort_fail_with_a_reason() {
    let m = secure_manifest();
    let me = member(1).member_id();
    let info3 = info(&m, 3, 3);
    let mut engine = Engine::new(me, [1; 32]);
    engine.begin(&info3);
    assert_eq!(engine.calibration(&info3, &me).unwrap().group.len(), 3);
    assert_eq!(engine.tick(&info3, Phase::Keys, start(1)).len(), 1);

    let info2 = info(&m, 2, 2);
    let mut engine = Engine::new(me, [1; 32]);
    engine.begin(&info2);
    assert!(engine.calibration(&info2, &me).is_none());
    assert!(engine.tick(&info2, Phase::Keys, start(1)).is_empty());
    let other = member(2);
    let msg = message(
        &m,
        &other,
        1,
        1,
        &Payload::Survivors(SurvivorSet {
            round: 1,
            survivors: Vec::new(),
        }),
    );
    let r = engine.on_message(&info2, &msg, start(1)).unwrap_err();
    assert_eq!(r.reason, Reason::SecureAggregation);
    assert!(r.detail.contains("cohort of 2 members"), "{r}");
    let why = engine.finish(&info2).unwrap_err();
    assert!(why.contains("cohort of 2 members"), "{why}");
    assert_eq!(engine.excluded().len(), 1);
    // The round is forgotten after finishing.
    let why = engine.finish(&info2).unwrap_err();
    assert!(why.contains("no secure aggregation for round 1"), "{why}");

    let info7 = info(&m, 7, 8);
    let mut engine = Engine::new(me, [1; 32]);
    engine.begin(&info7);
    let r = engine.on_message(&info7, &msg, start(1)).unwrap_err();
    assert!(r.detail.contains("in no secure-aggregation group"), "{r}");
    let why = engine.finish(&info7).unwrap_err();
    assert!(
        why.contains("7 cohort members form no group of at least 8"),
        "{why}"
    );
}

#[test]
fn configs_are_validated() {
    let me = member(1).member_id();
    let bad = Config {
        security_bits: 129,
        ..Config::default()
    };
    assert!(Engine::with_config(me, [0; 32], bad).is_err());
    let ok = Engine::with_config(me, [0; 32], Config::default()).unwrap();
    assert_eq!(ok.config(), &Config::default());
    assert_eq!(ok.me(), &me);
}
