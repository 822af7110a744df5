//! Secure rounds through the hooks, with plain group sums: an engine that adds up the members'
//! quantized inputs in the clear, grouped exactly as the real one groups them
//! ([`groups`](crate::groups)). The masking itself is the `secagg` module's; what is tested here
//! is what the round does with group sums: the secure phase clock, the noise check, norm bounding
//! of group means and the robust rule across them.

use std::collections::BTreeMap;

use hearth_protocol::{Hash32, Manifest, MemberId, Message, Payload, PrivacyMode, Rule};

use super::*;
use crate::cohort::groups;
use crate::testutil::{Gen, community, manifest, member, start};

/// Sums the inputs it was given per group, unmasked.
#[derive(Debug, Default)]
struct PlainSums {
    inputs: BTreeMap<MemberId, Vec<i32>>,
    scale: f32,
    noise_std: f64,
    phases: Vec<Phase>,
}

impl SecureAggregator for PlainSums {
    fn begin(&mut self, _info: &RoundInfo) -> Vec<Payload> {
        Vec::new()
    }

    fn submit_own(&mut self, _info: &RoundInfo, values: &[i32], scale: f32) -> Result<(), String> {
        self.inputs.insert(member(1).member_id(), values.to_vec());
        self.scale = scale;
        Ok(())
    }

    fn on_message(&mut self, _info: &RoundInfo, m: &Message, _now: u64) -> Result<(), Rejection> {
        Err(Rejection::new(
            Some(m.header.sender),
            Reason::SecureAggregation,
            "plain sums take no messages",
        ))
    }

    fn tick(&mut self, _info: &RoundInfo, phase: Phase, _now: u64) -> Vec<Payload> {
        if self.phases.last() != Some(&phase) {
            self.phases.push(phase);
        }
        Vec::new()
    }

    fn finish(&mut self, info: &RoundInfo) -> Result<Vec<GroupSum>, String> {
        let present: Vec<MemberId> = self
            .inputs
            .keys()
            .filter(|m| info.in_cohort(m))
            .copied()
            .collect();
        Ok(groups(&info.seed, &present, info.min_group_size)
            .into_iter()
            .map(|members| {
                let mut sum = vec![0i64; info.elements];
                for m in &members {
                    for (s, v) in sum.iter_mut().zip(&self.inputs[m]) {
                        *s += i64::from(*v);
                    }
                }
                GroupSum {
                    members,
                    sum,
                    scale: self.scale,
                    noise_std: self.noise_std,
                }
            })
            .collect())
    }
}

fn secure_manifest(rule: Rule) -> Manifest {
    let mut m = manifest(rule);
    m.privacy.mode = PrivacyMode::Distributed;
    m
}

/// Honest distributed-mode inputs: signal `C/2` along a shared direction plus noise of std `τ`,
/// quantized at the common scale `2⁻²⁰`.
fn inputs(m: &Manifest, members: u32, tau: f64) -> BTreeMap<MemberId, Vec<i32>> {
    let d = m.lora.elements() as usize;
    let mut shared = Gen::new(3);
    let dir: Vec<f64> = (0..d).map(|_| shared.normal()).collect();
    let len = dir.iter().map(|x| x * x).sum::<f64>().sqrt();
    (1..=members)
        .map(|i| {
            let mut g = Gen::new(u64::from(i));
            let v = dir
                .iter()
                .map(|x| ((x / len * 0.5 + tau * g.normal()) * 1_048_576.0).round() as i32)
                .collect();
            (member(i).member_id(), v)
        })
        .collect()
}

fn run(m: &Manifest, engine: PlainSums, members: u32) -> (Community, Vec<Output>) {
    let mut node = community(m, members).with_secure_aggregation(Box::new(engine));
    let mut out = node.start_round(1, start(1)).unwrap();
    for t in [74, 75, 150, 299, 300, 419] {
        out.extend(node.tick(start(1) + t));
    }
    assert!(
        !out.iter()
            .any(|o| matches!(o, Output::Closed(_) | Output::Failed { .. })),
        "closed before the unmask deadline"
    );
    out.extend(node.tick(start(1) + 420));
    (node, out)
}

fn engine(m: &Manifest, members: u32, tau: f64) -> PlainSums {
    PlainSums {
        inputs: inputs(m, members, tau),
        scale: 1.0 / 1_048_576.0,
        noise_std: tau,
        phases: Vec::new(),
    }
}

#[test]
fn a_secure_round_closes_at_the_unmask_deadline_with_the_overall_mean() {
    let m = secure_manifest(Rule::Mean);
    // Groups of 8: the share std for k = 8, t = 2 is σC/√6.
    let tau = 1.0 / 6f64.sqrt();
    let (node, out) = run(&m, engine(&m, 24, tau), 24);
    let phases: Vec<Phase> = out
        .iter()
        .filter_map(|o| match o {
            Output::Phase { phase, .. } => Some(*phase),
            _ => None,
        })
        .collect();
    assert_eq!(
        phases,
        vec![
            Phase::Keys,
            Phase::Shares,
            Phase::Submit,
            Phase::Unmask,
            Phase::Announce
        ]
    );
    let record = out
        .iter()
        .find_map(|o| match o {
            Output::Closed(r) => Some(r.clone()),
            _ => None,
        })
        .expect("closed");
    assert_eq!(record.inputs.len(), 3, "three groups of eight");
    // The mean over group means weighted by size is the mean over all members.
    let d = m.lora.elements() as usize;
    let mut want = vec![0.0f64; d];
    for v in inputs(&m, 24, tau).values() {
        for (w, q) in want.iter_mut().zip(v) {
            *w += f64::from(*q) / 1_048_576.0 / 24.0;
        }
    }
    for (got, w) in node.head().adapter.values().zip(&want) {
        assert!((f64::from(*got) - w).abs() < 1e-6, "{got} vs {w}");
    }
}

#[test]
fn under_noised_groups_are_not_used() {
    let m = secure_manifest(Rule::Mean);
    // Shares calibrated to a cohort of 24 instead of a group of 8: each group sum carries only
    // √8·σC/√16 < σC, so no group is usable and the round fails.
    let (node, out) = run(&m, engine(&m, 24, 1.0 / 16f64.sqrt()), 24);
    assert!(out.iter().any(|o| matches!(
        o,
        Output::Failed {
            reason: FailReason::TooFew { found: 0, .. },
            ..
        }
    )));
    assert_eq!(node.head_round(), 0);
    // Fewer than eight members form no group at all.
    let (_, out) = run(&m, engine(&m, 7, 1.0), 7);
    assert!(out.iter().any(|o| matches!(o, Output::Failed { .. })));
}

/// One member of one group sends a huge input (nothing checks it under masking). Its group's
/// mean is norm-bounded, and the median across the three group means stays with the honest ones.
#[test]
fn a_poisoned_group_is_bounded_and_outvoted() {
    let m = secure_manifest(Rule::Median);
    let tau = 1.0 / 6f64.sqrt();
    let (honest, _) = run(&m, engine(&m, 24, tau), 24);
    let mut poisoned = engine(&m, 24, tau);
    let attacker = member(5).member_id();
    for v in poisoned.inputs.get_mut(&attacker).unwrap() {
        *v = i32::MAX / 2;
    }
    let (node, out) = run(&m, poisoned, 24);
    assert!(out.iter().any(|o| matches!(o, Output::Closed(_))));
    let dist = |a: &State, b: &State| {
        a.adapter
            .values()
            .zip(b.adapter.values())
            .map(|(x, y)| (f64::from(*x) - f64::from(*y)).powi(2))
            .sum::<f64>()
            .sqrt()
    };
    let genesis = State::genesis(crate::Adapter::zeros(&m.lora));
    let honest_norm = dist(honest.head(), &genesis);
    let shift = dist(node.head(), honest.head());
    // The attacker's raw input has norm ~ 2^30·2^-20·√28 ≈ 5,400; the update moves by less than
    // the honest update itself.
    assert!(shift < honest_norm, "shift {shift}, honest {honest_norm}");

    // With the mean instead of the median the bounded group still gets its full vote, so the
    // shift is larger but never more than the group bound over the number of groups.
    let m = secure_manifest(Rule::Mean);
    let mut poisoned = engine(&m, 24, tau);
    for v in poisoned.inputs.get_mut(&attacker).unwrap() {
        *v = i32::MAX / 2;
    }
    let (node, _) = run(&m, poisoned, 24);
    let (clean, _) = run(&m, engine(&m, 24, tau), 24);
    let shift_mean = dist(node.head(), clean.head());
    let d = m.lora.elements() as f64;
    let group_bound = (1.0 + tau / 8f64.sqrt() * (d.sqrt() + crate::TAIL_U)) * 1.001;
    assert!(shift_mean <= 2.0 * group_bound / 3.0 + 1e-3, "{shift_mean}");
    assert!(shift_mean > shift, "{shift_mean} vs {shift}");
}

#[test]
fn secure_rounds_refuse_plain_deltas_and_take_the_own_input() {
    let m = secure_manifest(Rule::Mean);
    let mut node = community(&m, 3).with_secure_aggregation(Box::new(PlainSums::default()));
    let parent = node.head().version();
    node.start_round(1, start(1)).unwrap();
    let mut d = crate::testutil::honest(&m, 1, parent, 1);
    d.dp.mode = PrivacyMode::Distributed;
    d.dp.noise_std = 0.5;
    d.hash = d.compute_hash();
    let bytes = crate::testutil::seal(&m, &member(2), 1, 1, &Payload::Delta(d.clone()));
    assert_eq!(
        node.on_bytes(&bytes, start(1) + 200).unwrap_err().reason,
        Reason::WrongKind
    );
    // The own input goes to the engine during the submit phase, checked like a delta first.
    assert_eq!(
        node.submit_own(member(1).member_id(), d.clone(), start(1) + 10)
            .unwrap_err()
            .reason,
        Reason::Early
    );
    assert_eq!(
        node.submit_own(member(1).member_id(), d.clone(), start(1) + 200),
        Ok(vec![])
    );
    let mut loud = d.clone();
    loud.dp.noise_std = 2.0;
    loud.hash = loud.compute_hash();
    assert_eq!(
        node.submit_own(member(1).member_id(), loud, start(1) + 200)
            .unwrap_err()
            .reason,
        Reason::DpMismatch
    );
    assert_ne!(parent, Hash32::ZERO);
}
