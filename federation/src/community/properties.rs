//! Property tests over random cohorts, deltas, arrival orders and drops: every honest node ends
//! with the bit-identical version, and the aggregate matches a plain `f64` reference.

use hearth_protocol::{Payload, Rule, ServerOptimizer};
use proptest::prelude::*;

use super::*;
use crate::cohort::in_cohort;
use crate::testutil::{Gen, community, delta_bytes, manifest, member, seal, start};

fn arb_rule() -> impl Strategy<Value = Rule> {
    prop_oneof![
        Just(Rule::Mean),
        Just(Rule::Median),
        (0.05f64..0.45).prop_map(|beta| Rule::TrimmedMean { beta }),
    ]
}

fn arb_optimizer() -> impl Strategy<Value = ServerOptimizer> {
    prop_oneof![
        Just(ServerOptimizer::None),
        Just(ServerOptimizer::FedAvgM {
            lr: 0.7,
            momentum: 0.9
        }),
        Just(ServerOptimizer::FedAdam {
            lr: 0.01,
            beta1: 0.9,
            beta2: 0.99,
            epsilon: 1e-3
        }),
    ]
}

/// Shuffles `items` with the generator (Fisher–Yates).
fn shuffle<T>(items: &mut [T], g: &mut Gen) {
    for i in (1..items.len()).rev() {
        let j = (g.next_u64() % (i as u64 + 1)) as usize;
        items.swap(i, j);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Three nodes get the cohort's deltas in their own random order; each misses a random
    /// subset before the deadline (those arrive late). After the announcements are exchanged and
    /// the missing deltas fetched, all three hold the same head — the most preferred version —
    /// bit for bit, including the optimizer state.
    #[test]
    fn honest_nodes_agree_after_orders_and_drops(
        members in 3u32..12,
        rate in prop_oneof![Just(1.0f64), Just(0.7)],
        rule in arb_rule(),
        optimizer in arb_optimizer(),
        seed in any::<u64>(),
        drop_rate in prop_oneof![Just(0.0f64), Just(0.3)],
    ) {
        let mut m = manifest(rule);
        m.schedule.sampling_rate = rate;
        m.aggregation.optimizer = optimizer;
        let mut nodes: Vec<Community> = (0..3).map(|_| community(&m, members)).collect();
        let parent = nodes[0].head().version();
        for node in &mut nodes {
            node.start_round(1, start(1)).unwrap();
        }
        let seed_r = nodes[0].round().unwrap().seed();
        let cohort: Vec<u32> = (1..=members)
            .filter(|i| in_cohort(&seed_r, &member(*i).member_id(), rate))
            .collect();
        let envelopes: Vec<Vec<u8>> =
            cohort.iter().map(|i| delta_bytes(&m, *i, 1, parent)).collect();
        let mut g = Gen::new(seed);
        let mut late: Vec<Vec<usize>> = Vec::new();
        let mut in_time = Vec::new();
        for node in &mut nodes {
            let mut order: Vec<usize> = (0..envelopes.len()).collect();
            shuffle(&mut order, &mut g);
            let mut missed = Vec::new();
            for (t, k) in order.into_iter().enumerate() {
                if g.uniform() < drop_rate {
                    missed.push(k);
                } else {
                    node.on_bytes(&envelopes[k], start(1) + t as u64).unwrap();
                }
            }
            in_time.push(envelopes.len() - missed.len());
            late.push(missed);
        }
        let mut announcements = Vec::new();
        for (n, node) in nodes.iter_mut().enumerate() {
            for o in node.tick(start(1) + 300) {
                if let Output::Publish { payload: Payload::Version(a), .. } = o {
                    announcements.push(seal(&m, &member(n as u32 + 1), 1, 77, &Payload::Version(a)));
                }
            }
        }
        // Late deltas arrive, then everyone hears everyone's announcement.
        for (node, missed) in nodes.iter_mut().zip(&late) {
            for k in missed {
                let r = node.on_bytes(&envelopes[*k], start(1) + 305).unwrap_err();
                prop_assert_eq!(r.reason, Reason::Late);
            }
        }
        for node in &mut nodes {
            for a in &announcements {
                // Every announcement is accepted (ours comes back as a peer's would).
                prop_assert!(node.on_bytes(a, start(1) + 310).is_ok());
            }
            node.tick(start(1) + 311);
        }
        let heads: Vec<(Hash32, Hash32, u64)> = nodes
            .iter()
            .map(|n| (n.head().version(), n.head().optimizer_hash(), n.head_round()))
            .collect();
        prop_assert!(heads.windows(2).all(|w| w[0] == w[1]), "{:?}", heads);
        // The agreed version is one with the most inputs any node had in time.
        let most = in_time.iter().copied().max().unwrap_or(0);
        let enough = most >= m.schedule.min_contributions as usize;
        prop_assert_eq!(heads[0].2, u64::from(enough));
        if enough {
            prop_assert_eq!(nodes[0].chain().last().map(|r| r.inputs.len()), Some(most));
        }
    }

    /// Through the whole pipeline (sign, decode, verify, aggregate, optimizer none), the new
    /// adapter is the plain f64 mean of the dequantized deltas, rounded to f32.
    #[test]
    fn the_mean_round_matches_the_reference(members in 2u32..10, order_seed in any::<u64>()) {
        let m = manifest(Rule::Mean);
        let mut node = community(&m, members);
        let parent = node.head().version();
        node.start_round(1, start(1)).unwrap();
        let mut order: Vec<u32> = (1..=members).collect();
        shuffle(&mut order, &mut Gen::new(order_seed));
        for (t, i) in order.iter().enumerate() {
            node.on_bytes(&delta_bytes(&m, *i, 1, parent), start(1) + t as u64).unwrap();
        }
        node.tick(start(1) + 300);
        let d = m.lora.elements() as usize;
        let mut reference = vec![0.0f64; d];
        for i in 1..=members {
            let delta = crate::testutil::honest(&m, 1, parent, u64::from(i) * 1_000 + 1);
            let values = delta.layers.iter().flat_map(|l| l.values.iter());
            for (r, q) in reference.iter_mut().zip(values) {
                *r += f64::from(*q) * f64::from(delta.scale) / f64::from(members);
            }
        }
        for (got, want) in node.head().adapter.values().zip(&reference) {
            prop_assert!((f64::from(*got) - want).abs() <= 1e-6 * want.abs().max(1e-3));
        }
    }
}
