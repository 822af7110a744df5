//! Secure rounds end to end: in-process nodes, each a [`Community`] with the real
//! [`Engine`](crate::secagg::Engine), exchange signed envelopes through every phase and must
//! all close with the same version — the plain mean of the inputs up to `f32` rounding.

use hearth_protocol::{MaskedInput, Payload, Rule};

use super::secure_net::{Net, plain_mean, secure_manifest};
use super::*;
use crate::testutil::{member, seal};

/// Each node's head must equal the plain mean of `deltas` (exact in the quantized values; only
/// the final `f32` rounding differs).
fn assert_mean(net: &Net, deltas: &[&DeltaSubmission]) {
    let want = plain_mean(deltas);
    for i in 0..net.nodes.len() {
        if net.down.contains(&i) {
            continue;
        }
        let head = net.nodes[i].community.head();
        for (got, w) in head.adapter.values().zip(&want) {
            assert!(
                (f64::from(*got) - w).abs() <= w.abs() * 1e-7 + 1e-12,
                "node {i}: {got} vs {w}"
            );
        }
    }
}

#[test]
fn ten_nodes_agree_on_the_plain_mean() {
    let m = secure_manifest(Rule::Mean);
    let mut net = Net::new(&m, 10);
    let deltas = net.run(&[], |_| vec![]);
    let record = net.agreed();
    assert_eq!(record.inputs.len(), 1, "one group of ten");
    let all: Vec<&DeltaSubmission> = deltas.iter().map(|(_, d)| d).collect();
    assert_mean(&net, &all);
    assert!(net.rejections.is_empty(), "{:?}", net.rejections);
    // Every node published its keys, shares, masked input, survivor set, unmasking shares and
    // version announcement: six messages each.
    for i in 0..10 {
        let kinds: Vec<_> = net
            .sent
            .iter()
            .filter(|(from, _)| *from == i)
            .map(|(_, p)| p.kind())
            .collect();
        assert_eq!(kinds.len(), 6, "node {i}: {kinds:?}");
    }
}

/// Seventeen nodes form two groups (8 and 9): every node computes both group sums, and the
/// size-weighted mean of the group means is the mean over all members.
#[test]
fn two_groups_sum_separately_and_average_to_the_plain_mean() {
    let m = secure_manifest(Rule::Mean);
    let mut net = Net::new(&m, 17);
    let deltas = net.run(&[], |_| vec![]);
    let record = net.agreed();
    assert_eq!(record.inputs.len(), 2);
    let all: Vec<&DeltaSubmission> = deltas.iter().map(|(_, d)| d).collect();
    assert_mean(&net, &all);
    let sizes: Vec<usize> = net.nodes[0]
        .community
        .round()
        .unwrap()
        .info()
        .groups()
        .iter()
        .map(Vec::len)
        .collect();
    let mut sorted = sizes.clone();
    sorted.sort();
    assert_eq!(sorted, vec![8, 9]);
    assert!(net.rejections.is_empty(), "{:?}", net.rejections);
}

/// A group of nine tolerates three dropouts (`t = ⌊9/3⌋`). Members that drop after masking are
/// still in the sum (their inputs arrived); members that drop before are not.
#[test]
fn dropouts_up_to_the_threshold_still_give_a_version() {
    let m = secure_manifest(Rule::Mean);
    // After masking: three of nine never announce or unmask.
    let mut net = Net::new(&m, 9);
    let deltas = net.run(&[], |p| {
        if p == Phase::Unmask {
            vec![0, 4, 8]
        } else {
            vec![]
        }
    });
    net.agreed();
    let all: Vec<&DeltaSubmission> = deltas.iter().map(|(_, d)| d).collect();
    assert_eq!(all.len(), 9);
    assert_mean(&net, &all);

    // Before masking: three go down after sending their shares; the sum has the other six.
    let mut net = Net::new(&m, 9);
    let deltas = net.run(&[], |p| {
        if p == Phase::Submit {
            vec![1, 2, 7]
        } else {
            vec![]
        }
    });
    net.agreed();
    let all: Vec<&DeltaSubmission> = deltas.iter().map(|(_, d)| d).collect();
    assert_eq!(all.len(), 6);
    assert_mean(&net, &all);

    // A member that is up but never submits an input drops out the same way.
    let mut net = Net::new(&m, 9);
    let deltas = net.run(&[3], |_| vec![]);
    net.agreed();
    let all: Vec<&DeltaSubmission> = deltas.iter().map(|(_, d)| d).collect();
    assert_eq!(all.len(), 8);
    assert_mean(&net, &all);
}

#[test]
fn too_many_dropouts_fail_the_round_with_a_reason() {
    let m = secure_manifest(Rule::Mean);
    for phase in [Phase::Shares, Phase::Submit, Phase::Unmask] {
        let mut net = Net::new(&m, 9);
        net.run(&[], |p| if p == phase { vec![0, 2, 4, 6] } else { vec![] });
        for (i, node) in net.nodes.iter().enumerate() {
            if net.down.contains(&i) {
                continue;
            }
            match node.failed() {
                Some(FailReason::SecureAggregation(why)) => {
                    assert!(why.contains("too many dropouts"), "{phase:?}: {why}");
                }
                other => panic!("{phase:?}, node {i}: {other:?}"),
            }
            assert_eq!(node.community.head_round(), 0);
            assert_eq!(node.community.excluded_groups().len(), 1);
        }
    }
}

/// Masked inputs naming peers of another group, of the wrong length, sent twice or changed are
/// each rejected with their own reason; the round still closes on every node.
#[test]
fn bad_masked_inputs_are_rejected_with_a_reason() {
    let m = secure_manifest(Rule::Mean);
    let mut net = Net::new(&m, 17);
    net.start(Net::at(0));
    net.tick(Net::at(75));
    net.tick(Net::at(150));
    let now = Net::at(151);
    let groups = net.nodes[0].community.round().unwrap().info().groups();
    let ids: Vec<MemberId> = net.nodes.iter().map(|n| n.id()).collect();
    let index = |id: &MemberId| ids.iter().position(|i| i == id).unwrap();
    let a = index(&groups[0][0]);
    let stranger = groups[1][0];
    // Node `a` masks its input; we hold its payload back and craft variants of it.
    let (delta, _) = net.own_delta(a, 7);
    let me = net.nodes[a].id();
    let out = net.nodes[a].community.submit_own(me, delta, now).unwrap();
    let Some(Output::Publish {
        payload: Payload::Masked(real),
        ..
    }) = out.first().cloned()
    else {
        panic!("no masked input: {out:?}");
    };
    let receiver = index(&groups[0][1]);
    let key = member(a as u32 + 1);
    let mut nonce = 10_000;
    let mut send = |net: &mut Net, y: &MaskedInput| {
        nonce += 1;
        let bytes = seal(&m, &key, 1, nonce, &Payload::Masked(y.clone()));
        (net.nodes[receiver].community.on_bytes(&bytes, now), bytes)
    };
    let mut wrong_group = real.clone();
    wrong_group.peers.push(stranger);
    wrong_group.peers.sort();
    let (r, _) = send(&mut net, &wrong_group);
    let r = r.unwrap_err();
    assert_eq!(r.reason, Reason::SecureAggregation, "{r}");
    assert!(r.detail.contains("not a neighbour"), "{r}");
    let mut short = real.clone();
    short.values.pop();
    assert_eq!(
        send(&mut net, &short).0.unwrap_err().reason,
        Reason::WrongShape
    );
    // The real one is accepted; the same payload again (new envelope) is a duplicate, the same
    // envelope is a replay, another masked input is equivocation.
    let (r, bytes) = send(&mut net, &real);
    assert_eq!(r, Ok(Accepted::SecureAggregation { sender: me }));
    assert_eq!(
        send(&mut net, &real).0.unwrap_err().reason,
        Reason::Duplicate
    );
    assert_eq!(
        net.nodes[receiver]
            .community
            .on_bytes(&bytes, now)
            .unwrap_err()
            .reason,
        Reason::Replayed
    );
    let mut other = real.clone();
    other.values[0] ^= 1;
    assert_eq!(
        send(&mut net, &other).0.unwrap_err().reason,
        Reason::Equivocation
    );
    // A member of the other group masking "into" the first: its peers are not its neighbours.
    let b = index(&groups[1][1]);
    let (b_delta, _) = net.own_delta(b, 8);
    let b_id = net.nodes[b].id();
    let b_out = net.nodes[b]
        .community
        .submit_own(b_id, b_delta, now)
        .unwrap();
    let Some(Output::Publish {
        payload: Payload::Masked(mut b_masked),
        ..
    }) = b_out.first().cloned()
    else {
        panic!("no masked input");
    };
    b_masked.peers = groups[0][..2].to_vec();
    let bytes = seal(
        &m,
        &member(b as u32 + 1),
        1,
        20_000,
        &Payload::Masked(b_masked),
    );
    assert_eq!(
        net.nodes[receiver]
            .community
            .on_bytes(&bytes, now)
            .unwrap_err()
            .reason,
        Reason::SecureAggregation
    );
    // Now publish the real inputs to everyone and finish: all nodes agree.
    net.deliver(a, out, now);
    net.deliver(b, b_out, now);
    net.submit(Net::at(152), &[a, b]);
    net.tick(Net::at(300));
    net.tick(Net::at(301));
    net.tick(Net::at(420));
    let record = net.agreed();
    assert_eq!(record.inputs.len(), 2);
    // The receiver already held a's masked input: the broadcast copy is a duplicate there.
    assert!(
        net.rejections
            .iter()
            .all(|(j, r)| *j == receiver && r.reason == Reason::Duplicate),
        "{:?}",
        net.rejections
    );
}

#[test]
fn own_deltas_must_use_the_group_calibration() {
    let m = secure_manifest(Rule::Mean);
    let mut net = Net::new(&m, 9);
    net.start(Net::at(0));
    net.tick(Net::at(75));
    net.tick(Net::at(150));
    let (delta, cal) = net.own_delta(0, 1);
    assert_eq!(cal.group.len(), 9);
    assert_eq!(cal.tolerated(), 3);
    // √(k − t)·τ is exactly σ·C: any quorum of shares carries the full noise.
    let p = &m.privacy;
    assert!((6f64.sqrt() * cal.share_std() - p.noise_multiplier * p.clip_norm).abs() < 1e-12);
    let me = net.nodes[0].id();
    let parent = delta.base_version;
    let values: Vec<i32> = delta.layers.iter().flat_map(|l| l.values.clone()).collect();
    // Shares sized for a cohort of 17 instead of the group: too little noise.
    let mut under = super::secure_net::submission(&m, 1, parent, &cal, &values);
    under.dp.noise_std = p.noise_multiplier * p.clip_norm / (17.0 - 5.0f64).sqrt();
    under.hash = under.compute_hash();
    let r = net.nodes[0]
        .community
        .submit_own(me, under, Net::at(151))
        .unwrap_err();
    assert_eq!(r.reason, Reason::DpMismatch, "{r}");
    // Another scale.
    let mut coarse = delta.clone();
    coarse.scale *= 2.0;
    coarse.hash = coarse.compute_hash();
    let r = net.nodes[0]
        .community
        .submit_own(me, coarse, Net::at(151))
        .unwrap_err();
    assert_eq!(r.reason, Reason::DpMismatch, "{r}");
    // The calibrated one goes through, once.
    assert!(
        net.nodes[0]
            .community
            .submit_own(me, delta.clone(), Net::at(151))
            .is_ok()
    );
    let r = net.nodes[0]
        .community
        .submit_own(me, delta, Net::at(152))
        .unwrap_err();
    assert_eq!(r.reason, Reason::SecureAggregation, "{r}");
    assert!(r.detail.contains("already masked"), "{r}");
}

/// Same secrets and inputs, same messages bit for bit and the same version; another secret
/// changes that node's masks (and its neighbours') but not the version.
#[test]
fn rounds_are_deterministic_from_the_seeds() {
    let m = secure_manifest(Rule::Mean);
    let run = |secret: fn(u32) -> [u8; 32]| {
        let mut net = Net::with_secrets(&m, 9, secret);
        net.run(&[], |_| vec![]);
        (net.agreed(), net.sent)
    };
    let (a, sent_a) = run(super::secure_net::secret);
    let (b, sent_b) = run(super::secure_net::secret);
    assert_eq!(a, b);
    assert_eq!(sent_a, sent_b);
    let (c, sent_c) = run(|i| {
        let mut s = super::secure_net::secret(i);
        if i == 4 {
            s[31] ^= 1;
        }
        s
    });
    assert_eq!(a, c);
    let masked = |sent: &[(usize, Payload)], node: usize| {
        sent.iter()
            .find_map(|(from, p)| match p {
                Payload::Masked(y) if *from == node => Some(y.values.clone()),
                _ => None,
            })
            .unwrap()
    };
    assert_ne!(masked(&sent_a, 3), masked(&sent_c, 3), "node 4's own masks");
}

/// A node asleep through the keys phase cannot take part, but still computes the version from
/// the public messages it received.
#[test]
fn a_node_asleep_through_the_keys_phase_observes_and_agrees() {
    let m = secure_manifest(Rule::Mean);
    let mut net = Net::new(&m, 10);
    let late = 9;
    let out = net.nodes[late]
        .community
        .start_round(1, Net::at(0) - 10)
        .unwrap();
    net.deliver(late, out, Net::at(0) - 10);
    net.asleep.insert(late);
    net.start(Net::at(0));
    net.tick(Net::at(75));
    net.asleep.remove(&late);
    let out = net.nodes[late].community.tick(Net::at(80));
    assert!(
        !out.iter().any(|o| matches!(o, Output::Publish { .. })),
        "published late: {out:?}"
    );
    net.tick(Net::at(150));
    let deltas = net.submit(Net::at(151), &[late]);
    net.tick(Net::at(300));
    net.tick(Net::at(301));
    net.tick(Net::at(420));
    net.agreed();
    let all: Vec<&DeltaSubmission> = deltas.iter().map(|(_, d)| d).collect();
    assert_eq!(all.len(), 9);
    assert_mean(&net, &all);
    assert!(net.rejections.is_empty(), "{:?}", net.rejections);
}

/// With sampling, certified members outside the cohort observe: they compute every group's sum
/// from the public messages and reach the same version.
#[test]
fn members_outside_the_cohort_observe_and_agree() {
    let mut m = secure_manifest(Rule::Median);
    m.schedule.sampling_rate = 0.6;
    let mut net = Net::new(&m, 30);
    let deltas = net.run(&[], |_| vec![]);
    let info = net.nodes[0].community.round().unwrap().info().clone();
    let cohort = info.cohort();
    assert!(cohort.len() >= 16 && cohort.len() < 30, "{}", cohort.len());
    assert_eq!(deltas.len(), cohort.len());
    let record = net.agreed();
    assert_eq!(record.inputs.len(), info.groups().len());
    assert!(record.inputs.len() >= 2);
    let outside = net
        .nodes
        .iter()
        .filter(|n| !info.in_cohort(&n.id()))
        .count();
    assert_eq!(outside, 30 - cohort.len());
    assert!(net.rejections.is_empty(), "{:?}", net.rejections);
}

/// The node's real release path: each member clips its update and releases it through the
/// training crate with its group's calibration (OpenDP's discrete Gaussian share, the ledger
/// charged); the round's version is the plain mean of the released deltas.
#[test]
fn deltas_released_with_the_calibration_aggregate_exactly() {
    use hearth_training::{Budget, Ledger, Noise, Noised, release};
    let m = secure_manifest(Rule::Mean);
    let mut net = Net::new(&m, 9);
    net.start(Net::at(0));
    net.tick(Net::at(75));
    net.tick(Net::at(150));
    let d = m.lora.elements() as usize;
    let deltas = net.submit_with(Net::at(151), &[], |net, i| {
        let node = &net.nodes[i];
        let cal = node.community.calibration(&node.id()).unwrap();
        let mut update: Vec<f32> = (0..d).map(|j| ((i + j) % 5) as f32 * 0.3).collect();
        let mut ledger = Ledger::new(Budget::default()).unwrap();
        let out = release(
            &mut ledger,
            1,
            &Noise::Distributed(cal.noise.clone()),
            1.0,
            &mut update,
        )
        .unwrap();
        let Noised::Distributed(q) = out.noised else {
            panic!("not distributed");
        };
        assert_eq!(q.scale, cal.scale());
        let parent = node.community.round().unwrap().parent();
        super::secure_net::submission(&net.m, 1, parent, &cal, &q.values)
    });
    net.tick(Net::at(300));
    net.tick(Net::at(301));
    net.tick(Net::at(420));
    net.agreed();
    let all: Vec<&DeltaSubmission> = deltas.iter().map(|(_, d)| d).collect();
    assert_eq!(all.len(), 9);
    assert_mean(&net, &all);
}

/// Three members (the smallest secure-aggregation cohort) can run a round when the manifest
/// allows groups that small; two cannot, and the round fails saying so (a manifest cannot even
/// ask for groups of two: see the protocol crate's `aggregation_limits_at_and_past`).
#[test]
fn the_smallest_group_at_and_below_the_limit() {
    let m = secure_manifest(Rule::Mean);
    let mut net = Net::with_min_group(&m, 3, 3);
    let deltas = net.run(&[], |_| vec![]);
    net.agreed();
    let all: Vec<&DeltaSubmission> = deltas.iter().map(|(_, d)| d).collect();
    assert_mean(&net, &all);

    let mut net = Net::with_min_group(&m, 2, 3);
    net.start(Net::at(0));
    net.tick(Net::at(420));
    for node in &net.nodes {
        match node.failed() {
            Some(FailReason::SecureAggregation(why)) => {
                assert!(
                    why.contains("2 cohort members form no group of at least 3"),
                    "{why}"
                )
            }
            other => panic!("{other:?}"),
        }
    }
}
