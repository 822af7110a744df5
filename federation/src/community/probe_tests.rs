//! The probe-set check: a candidate that raises the probe loss by more than the manifest allows
//! is not applied — when closing a round, adopting a peer's version or verifying one in catch-up.

use hearth_protocol::{Payload, ProbeSet, Rule};

use super::*;
use crate::testutil::{Gen, community, delta_bytes, manifest, member, seal, start, submission};

/// A stand-in for the model's loss that the honest deltas lower: minus the adapter's projection
/// on the direction their shared signal follows (`testutil::honest`).
#[derive(Debug)]
struct Along {
    dir: Vec<f64>,
    calls: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Along {
    fn new(m: &Manifest) -> (Self, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        (
            Along {
                dir: unit_direction(m),
                calls: calls.clone(),
            },
            calls,
        )
    }
}

impl Probe for Along {
    fn loss(&self, adapter: &crate::Adapter) -> Result<f64, String> {
        self.calls
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(-adapter
            .values()
            .zip(&self.dir)
            .map(|(&v, &d)| f64::from(v) * d)
            .sum::<f64>())
    }
}

/// The shared signal's direction (`testutil::honest`), unit length.
fn unit_direction(m: &Manifest) -> Vec<f64> {
    let d = m.lora.elements() as usize;
    let mut shared = Gen::new(0xd1ec);
    let dir: Vec<f64> = (0..d).map(|_| shared.normal()).collect();
    let len = dir.iter().map(|x| x * x).sum::<f64>().sqrt();
    dir.into_iter().map(|x| x / len).collect()
}

fn probed(rule: Rule, max_increase: f64) -> Manifest {
    let mut m = manifest(rule);
    m.aggregation.probe = Some(ProbeSet {
        text: "To be, or not to be, that is the question.".into(),
        max_increase,
    });
    m
}

/// Member `i`'s sign-flip delta: the whole norm an honest noised delta may have (`σ·C·√d`),
/// spent against the shared direction. It passes verification.
fn flipper_bytes(m: &Manifest, i: u32, round: u64, base: Hash32) -> Vec<u8> {
    let dir = unit_direction(m);
    let p = &m.privacy;
    // Each flipper a little shorter than the last, so that no two deltas are the same bytes.
    let norm =
        p.noise_multiplier * p.clip_norm * (dir.len() as f64).sqrt() * (1.0 - 0.01 * f64::from(i));
    let values: Vec<f32> = dir.iter().map(|d| (-d * norm) as f32).collect();
    let d = submission(m, round, base, &values);
    seal(m, &member(i), round, 1, &Payload::Delta(d))
}

fn run_round(node: &mut Community, envelopes: &[Vec<u8>]) -> Vec<Output> {
    node.start_round(1, start(1)).unwrap();
    for (k, e) in envelopes.iter().enumerate() {
        node.on_bytes(e, start(1) + 1 + k as u64).unwrap();
    }
    node.tick(start(1) + 300)
}

#[test]
fn honest_rounds_pass_the_probe_and_poisoned_ones_are_refused() {
    let m = probed(Rule::Mean, 0.01);
    let mut node = community(&m, 5);
    let (probe, calls) = Along::new(&m);
    node = node.with_probe(Box::new(probe));
    let genesis = node.head().version();
    let honest: Vec<Vec<u8>> = (1..=5).map(|i| delta_bytes(&m, i, 1, genesis)).collect();
    let out = run_round(&mut node, &honest);
    assert!(
        out.iter().any(|o| matches!(o, Output::Closed(_))),
        "{out:?}"
    );
    assert_ne!(node.head().version(), genesis);
    assert_eq!(calls.load(std::sync::atomic::Ordering::Relaxed), 2);
    assert_eq!(node.probe_counts(), (1, 0));

    // Two of five flip: every rule's aggregate leans against the direction; refused, and the
    // head stays where it was.
    let mut node = community(&m, 5).with_probe(Box::new(Along::new(&m).0));
    let out = run_round(&mut node, &poisoned_round(&m, genesis));
    let reason = out
        .iter()
        .find_map(|o| match o {
            Output::Failed {
                reason: FailReason::Probe(why),
                ..
            } => Some(why.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("expected a probe refusal, got {out:?}"));
    assert!(reason.contains("more than the 0.01 allowed"), "{reason}");
    assert_eq!(node.probe_counts(), (1, 1));
    assert_eq!(node.head().version(), genesis);
    assert_eq!(node.head_round(), 0);

    // The same round without the probe set in the manifest applies the poisoned aggregate.
    let plain = manifest(Rule::Mean);
    let mut node = community(&plain, 5);
    let genesis = node.head().version();
    let out = run_round(&mut node, &poisoned_round(&plain, genesis));
    assert!(out.iter().any(|o| matches!(o, Output::Closed(_))));
    let (probe, _) = Along::new(&plain);
    assert!(probe.loss(&node.head().adapter).unwrap() > 0.0);
}

/// The five deltas of a round in which members 4 and 5 flip, sealed for `m`.
fn poisoned_round(m: &Manifest, genesis: Hash32) -> Vec<Vec<u8>> {
    (1..=3)
        .map(|i| delta_bytes(m, i, 1, genesis))
        .chain((4..=5).map(|i| flipper_bytes(m, i, 1, genesis)))
        .collect()
}

#[test]
fn the_tolerance_is_a_limit_at_and_past() {
    // The poisoned round raises the loss by R (measured with a probe that never objects); a
    // tolerance of R lets it through, one just under R refuses it.
    let m = probed(Rule::Mean, 0.01);
    let genesis = community(&m, 5).head().version();
    let mut maker = community(&m, 5).with_probe(Box::new(Accept));
    run_round(&mut maker, &poisoned_round(&m, genesis));
    let rise = Along::new(&m).0.loss(&maker.head().adapter).unwrap();
    assert!(rise > 0.0);
    let outcome = |max_increase: f64| {
        let m = probed(Rule::Mean, max_increase);
        let mut node = community(&m, 5).with_probe(Box::new(Along::new(&m).0));
        let out = run_round(&mut node, &poisoned_round(&m, genesis));
        out.into_iter()
            .find(|o| matches!(o, Output::Closed(_) | Output::Failed { .. }))
            .unwrap()
    };
    assert!(matches!(outcome(rise * (1.0 + 1e-9)), Output::Closed(_)));
    assert!(matches!(
        outcome(rise * (1.0 - 1e-6)),
        Output::Failed {
            reason: FailReason::Probe(_),
            ..
        }
    ));
}

#[test]
fn a_probe_set_without_an_evaluator_fails_closed() {
    let m = probed(Rule::Mean, 0.5);
    let mut node = community(&m, 3);
    let genesis = node.head().version();
    let honest: Vec<Vec<u8>> = (1..=3).map(|i| delta_bytes(&m, i, 1, genesis)).collect();
    let out = run_round(&mut node, &honest);
    assert!(
        out.iter().any(|o| matches!(
            o,
            Output::Failed { reason: FailReason::Probe(why), .. } if why.contains("no evaluator")
        )),
        "{out:?}"
    );
    assert_eq!(node.head().version(), genesis);
}

#[test]
fn catch_up_refuses_a_version_the_probe_refuses() {
    // A version made of real signed deltas, announced by a node without the probe (as a
    // dishonest peer would), is refused by a catching-up node that checks it.
    let m = probed(Rule::Mean, 0.01);
    let mut maker = community(&m, 5).with_probe(Box::new(Accept));
    let genesis_state = maker.head().clone();
    let genesis = genesis_state.version();
    let poisoned = poisoned_round(&m, genesis);
    let out = run_round(&mut maker, &poisoned);
    let record = out
        .iter()
        .find_map(|o| match o {
            Output::Closed(r) => Some(r.clone()),
            _ => None,
        })
        .expect("the permissive maker closes");
    let late = community(&m, 5).with_probe(Box::new(Along::new(&m).0));
    match late.verify_version(&genesis_state, &poisoned, &record.announcement(), start(1)) {
        Err(Error::ProbeRefused { round: 1, reason }) => assert!(reason.contains("allowed")),
        other => panic!("expected a probe refusal, got {other:?}"),
    }
    // An honest version passes the same check.
    let honest: Vec<Vec<u8>> = (1..=5).map(|i| delta_bytes(&m, i, 1, genesis)).collect();
    let mut maker = community(&m, 5).with_probe(Box::new(Accept));
    let out = run_round(&mut maker, &honest);
    let record = out
        .iter()
        .find_map(|o| match o {
            Output::Closed(r) => Some(r.clone()),
            _ => None,
        })
        .unwrap();
    late.verify_version(&genesis_state, &honest, &record.announcement(), start(1))
        .unwrap();
}

/// A probe that never objects (a constant loss).
#[derive(Debug)]
struct Accept;

impl Probe for Accept {
    fn loss(&self, _: &crate::Adapter) -> Result<f64, String> {
        Ok(0.0)
    }
}
