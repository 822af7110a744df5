//! Whole rounds among simulated members: exact sums, dropouts at every phase, clean failures,
//! uniformity of masked inputs, and the never-both-shares rule.

use std::collections::BTreeSet;

use hearth_protocol::{Hash32, MemberId, SurvivorSet};
use proptest::prelude::*;
use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};

use super::*;

/// Phases at which a member can drop: it sends nothing from that phase on.
const KEYS: usize = 0;
const SHARES: usize = 1;
const MASK: usize = 2;
const ANNOUNCE: usize = 3;
const UNMASK: usize = 4;

fn ids(n: usize, salt: u64) -> Vec<MemberId> {
    let mut rng = ChaCha20Rng::seed_from_u64(salt);
    (0..n)
        .map(|_| {
            let mut b = [0u8; 32];
            rng.fill_bytes(&mut b);
            MemberId(b)
        })
        .collect()
}

fn random_inputs(n: usize, len: usize, rng: &mut ChaCha20Rng) -> Vec<Vec<u32>> {
    (0..n)
        .map(|_| (0..len).map(|_| rng.next_u32()).collect())
        .collect()
}

fn shuffled(n: usize, rng: &mut ChaCha20Rng) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        order.swap(i, (rng.next_u64() % (i as u64 + 1)) as usize);
    }
    order
}

/// The observer's result: the sum and the survivors, or why not.
type Outcome = Result<(Vec<u32>, Vec<MemberId>), Error>;

/// A round among `inputs.len()` members; `drop_at[i]` is the phase at which member `i` (in
/// sorted-cohort order) stops. Messages reach every live member in a shuffled order. Returns the
/// observer's result and the plain sum of the inputs of members that published a masked input.
fn run(inputs: &[Vec<u32>], drop_at: &[Option<usize>], seed: u64) -> (Outcome, Vec<u32>) {
    let n = inputs.len();
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let cohort = Cohort::new(
        9,
        Hash32([seed as u8; 32]),
        &ids(n, seed),
        &Config::default(),
    )
    .expect("cohort");
    let ids = cohort.members().to_vec();
    let mut drop_at = drop_at.to_vec();
    let alive = |d: &[Option<usize>], i: usize, phase: usize| d[i].is_none_or(|p| p > phase);
    let mut observer = Aggregator::new(cohort.clone());
    let mut members = Vec::new();
    let mut keys = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let mut s = [0u8; 32];
        rng.fill_bytes(&mut s);
        let (m, k) = Member::new(cohort.clone(), id, s).expect("member");
        members.push(m);
        if alive(&drop_at, i, KEYS) {
            keys.push((i, k));
        }
    }
    macro_rules! deliver {
        ($msgs:expr, $phase:expr, |$m:ident, $from:ident, $msg:ident| $body:expr) => {
            for r in shuffled(n, &mut rng) {
                if !alive(&drop_at, r, $phase) {
                    continue;
                }
                for k in shuffled($msgs.len(), &mut rng) {
                    let (i, $msg) = &$msgs[k];
                    let $from = &ids[*i];
                    let $m = &mut members[r];
                    $body.expect("deliver");
                }
            }
        };
    }
    for (i, k) in &keys {
        observer.on_keys(&ids[*i], k).expect("observer keys");
    }
    deliver!(keys, SHARES, |m, from, msg| m.on_keys(from, msg));
    let mut shares = Vec::new();
    for i in 0..n {
        if alive(&drop_at, i, SHARES) {
            // A member with too few neighbours left cannot share: it drops out.
            match members[i].share() {
                Ok(s) => shares.push((i, s)),
                Err(Error::TooManyDropouts { .. }) => drop_at[i] = Some(SHARES),
                Err(e) => panic!("share: {e}"),
            }
        }
    }
    deliver!(shares, MASK, |m, from, msg| m.on_shares(from, msg));
    let mut masked = Vec::new();
    let mut expected = vec![0u32; inputs.first().map_or(0, Vec::len)];
    for i in 0..n {
        if alive(&drop_at, i, MASK) {
            masked.push((i, members[i].mask(&inputs[i]).expect("mask")));
            for (e, x) in expected.iter_mut().zip(&inputs[i]) {
                *e = e.wrapping_add(*x);
            }
        }
    }
    for (i, y) in &masked {
        observer
            .on_masked_input(&ids[*i], y.clone())
            .expect("observer input");
    }
    deliver!(masked, ANNOUNCE, |m, from, msg| m
        .on_masked_input(from, msg));
    let mut sets = Vec::new();
    for (i, m) in members.iter_mut().enumerate() {
        if alive(&drop_at, i, ANNOUNCE) {
            sets.push((i, m.announce().expect("announce")));
        }
    }
    for (i, s) in &sets {
        observer.on_survivor_set(&ids[*i], s).expect("observer set");
    }
    deliver!(sets, UNMASK, |m, from, msg| m.on_survivor_set(from, msg));
    for i in shuffled(n, &mut rng) {
        if alive(&drop_at, i, UNMASK) {
            match members[i].unmask() {
                Ok(u) => observer.on_unmasking(&ids[i], &u).expect("observer unmask"),
                Err(e) => return (Err(e), expected),
            }
        }
    }
    (observer.sum(), expected)
}

/// `count` distinct members dropped at `phase`.
fn drops(n: usize, count: usize, phase: usize, rng: &mut ChaCha20Rng) -> Vec<Option<usize>> {
    let mut d = vec![None; n];
    for &i in shuffled(n, rng).iter().take(count) {
        d[i] = Some(phase);
    }
    d
}

#[test]
fn sum_is_exact_without_dropouts() {
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    for n in [3, 4, 5, 8, 13, 40] {
        let inputs = random_inputs(n, 257, &mut rng);
        let (result, expected) = run(&inputs, &vec![None; n], n as u64);
        let (sum, survivors) = result.expect("sum");
        assert_eq!(sum, expected, "n = {n}");
        assert_eq!(survivors.len(), n);
    }
}

#[test]
fn a_third_dropped_at_each_phase_is_recovered() {
    let mut rng = ChaCha20Rng::seed_from_u64(2);
    for n in [3, 6, 8, 12, 24, 39] {
        for phase in [KEYS, SHARES, MASK, ANNOUNCE, UNMASK] {
            let inputs = random_inputs(n, 33, &mut rng);
            let d = drops(n, n / 3, phase, &mut rng);
            let (result, expected) = run(&inputs, &d, 100 + n as u64);
            let (sum, survivors) = result.unwrap_or_else(|e| panic!("n = {n}, phase {phase}: {e}"));
            assert_eq!(sum, expected, "n = {n}, phase {phase}");
            let in_sum = if phase <= MASK { n - n / 3 } else { n };
            assert_eq!(survivors.len(), in_sum);
        }
    }
}

#[test]
fn more_than_a_third_dropped_fails_cleanly() {
    let mut rng = ChaCha20Rng::seed_from_u64(3);
    for n in [3, 6, 9, 24] {
        for phase in [KEYS, SHARES, MASK, ANNOUNCE] {
            let inputs = random_inputs(n, 5, &mut rng);
            let d = drops(n, n / 3 + 1, phase, &mut rng);
            let (result, _) = run(&inputs, &d, 200 + n as u64);
            match result {
                Err(Error::TooManyDropouts { found, need, .. }) => {
                    // Fewer if a member also could not share for lack of neighbours.
                    assert!(found < n - n / 3 && need == n - n / 3, "{found} {need}");
                }
                other => panic!("n = {n}, phase {phase}: {other:?}"),
            }
        }
    }
    // After agreement, the round fails only when a secret lacks shares; on the complete graph
    // of 5 (t = 4) losing 2 of 5 share holders always does.
    let inputs = random_inputs(5, 5, &mut rng);
    let d = drops(5, 2, UNMASK, &mut rng);
    let (result, _) = run(&inputs, &d, 7);
    assert!(
        matches!(
            result,
            Err(Error::NotEnoughShares {
                found: 3,
                need: 4,
                ..
            })
        ),
        "{result:?}"
    );
}

/// Pearson's chi-square of byte counts against uniform.
fn chi_square_uniform(bytes: &[u8]) -> f64 {
    let mut counts = [0f64; 256];
    for &b in bytes {
        counts[b as usize] += 1.0;
    }
    let e = bytes.len() as f64 / 256.0;
    counts.iter().map(|c| (c - e) * (c - e) / e).sum()
}

/// Chi-square of homogeneity between the byte histograms of two samples of equal size.
fn chi_square_two_samples(a: &[u8], b: &[u8]) -> f64 {
    let (mut ca, mut cb) = ([0f64; 256], [0f64; 256]);
    a.iter().for_each(|&x| ca[x as usize] += 1.0);
    b.iter().for_each(|&x| cb[x as usize] += 1.0);
    ca.iter()
        .zip(&cb)
        .filter(|(x, y)| *x + *y > 0.0)
        .map(|(x, y)| (x - y) * (x - y) / (x + y))
        .sum()
}

/// The masked input member 0 publishes in a full round where it holds `input`.
fn masked_input_of(input: Vec<u32>, seed: u64) -> Vec<u8> {
    let n = 8;
    let cohort = Cohort::new(1, Hash32([3; 32]), &ids(n, 5), &Config::default()).expect("cohort");
    let ids = cohort.members().to_vec();
    let (mut members, keys): (Vec<_>, Vec<_>) = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let mut s = [0u8; 32];
            s[..8].copy_from_slice(&(seed + i as u64).to_le_bytes());
            Member::new(cohort.clone(), id, s).expect("member")
        })
        .unzip();
    for (from, k) in ids.iter().zip(&keys) {
        members
            .iter_mut()
            .for_each(|m| m.on_keys(from, k).expect("keys"));
    }
    let shares: Vec<_> = members
        .iter_mut()
        .map(|m| m.share().expect("share"))
        .collect();
    for (from, s) in ids.iter().zip(&shares) {
        members
            .iter_mut()
            .for_each(|m| m.on_shares(from, s).expect("shares"));
    }
    let y = members[0].mask(&input).expect("mask");
    assert_eq!(y.peers.len(), cohort.params().degree);
    y.values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

#[test]
fn masked_inputs_look_uniform_and_indistinguishable() {
    // 255 degrees of freedom: the 0.999 quantile is 330.5.
    const LIMIT: f64 = 330.5;
    let len = 65_536;
    let zeros = masked_input_of(vec![0; len], 10);
    let constant = masked_input_of(vec![7; len], 20);
    let ramp = masked_input_of((0..len as u32).collect(), 30);
    for (name, bytes) in [("zeros", &zeros), ("constant", &constant), ("ramp", &ramp)] {
        let chi = chi_square_uniform(bytes);
        assert!(chi < LIMIT, "{name}: chi-square {chi}");
    }
    let chi = chi_square_two_samples(&zeros, &ramp);
    assert!(chi < LIMIT, "zeros vs ramp: {chi}");
    // The test has power: the unmasked inputs fail it.
    let plain: Vec<u8> = (0..len as u32).flat_map(|v| v.to_le_bytes()).collect();
    assert!(chi_square_uniform(&plain) > 10.0 * LIMIT);
}

#[test]
fn a_member_never_reveals_both_shares_of_a_peer() {
    let n = 6;
    let cohort = Cohort::new(4, Hash32([4; 32]), &ids(n, 4), &Config::default()).expect("cohort");
    let ids = cohort.members().to_vec();
    let (mut members, keys): (Vec<_>, Vec<_>) = ids
        .iter()
        .enumerate()
        .map(|(i, id)| Member::new(cohort.clone(), id, [i as u8; 32]).expect("member"))
        .unzip();
    for (from, k) in ids.iter().zip(&keys) {
        members
            .iter_mut()
            .for_each(|m| m.on_keys(from, k).expect("keys"));
    }
    let shares: Vec<_> = members
        .iter_mut()
        .map(|m| m.share().expect("share"))
        .collect();
    for (from, s) in ids.iter().zip(&shares) {
        members
            .iter_mut()
            .for_each(|m| m.on_shares(from, s).expect("shares"));
    }
    let me = &mut members[0];
    me.mask(&[1, 2, 3]).expect("mask");
    // Unmasking needs an agreed set first.
    assert!(matches!(me.unmask(), Err(Error::WrongPhase { .. })));
    let own = me.announce().expect("announce");
    assert!(matches!(
        me.unmask(),
        Err(Error::TooManyDropouts {
            what: "survivor-set announcements",
            ..
        })
    ));
    let everyone = SurvivorSet {
        round: 4,
        survivors: ids.clone(),
    };
    let first = me.reveal(&everyone.survivors).expect("reveal");
    assert!(first.key_shares.is_empty() && !first.self_mask_shares.is_empty());
    // Claiming afterwards that a neighbour dropped must not yield its key share.
    let neighbour = cohort.neighbours(&ids[0]).expect("neighbours")[0];
    let without: Vec<_> = ids.iter().copied().filter(|id| *id != neighbour).collect();
    assert_eq!(me.reveal(&without), Err(Error::WouldRevealBoth(neighbour)));
    // Nor the other way round, for a member first revealed as dropped.
    let mut other = members.remove(1);
    other.mask(&[0, 0, 0]).expect("mask");
    other.announce().expect("announce");
    other.reveal(&without).expect("reveal as dropped");
    assert_eq!(
        other.reveal(&everyone.survivors),
        Err(Error::WouldRevealBoth(neighbour))
    );
    // The same set again is fine (a retransmission).
    assert_eq!(other.reveal(&without).map(|u| u.key_shares.len()), Ok(1));
    // An announcer cannot change its announcement.
    let mut me = members.remove(0);
    let mut changed = own.clone();
    changed.survivors.clear();
    assert!(matches!(
        me.on_survivor_set(&ids[0], &changed),
        Err(Error::Equivocation { .. })
    ));
}

#[test]
fn differing_views_give_no_agreement() {
    // Half the cohort sees a late masked input, half does not: neither set has a quorum.
    let n = 8;
    let cohort = Cohort::new(2, Hash32([2; 32]), &ids(n, 2), &Config::default()).expect("cohort");
    let ids = cohort.members().to_vec();
    let mut observer = Aggregator::new(cohort.clone());
    let mut all = ids.clone();
    let mut some = ids.clone();
    some.pop();
    all.sort();
    for (k, id) in ids.iter().enumerate() {
        let set = SurvivorSet {
            round: 2,
            survivors: if k % 2 == 0 {
                all.clone()
            } else {
                some.clone()
            },
        };
        observer.on_survivor_set(id, &set).expect("set");
    }
    assert_eq!(observer.agreed_survivors(), Ok(None));
    assert_eq!(
        observer.sum().map(|_| ()),
        Err(Error::NoAgreement { quorum: 6, best: 4 })
    );
}

#[test]
fn observer_rejects_bad_messages() {
    let n = 12;
    let cohort = Cohort::new(2, Hash32([6; 32]), &ids(n, 6), &Config::default()).expect("cohort");
    assert!(!cohort.params().is_complete());
    let ids = cohort.members().to_vec();
    let mut observer = Aggregator::new(cohort.clone());
    let neighbours: BTreeSet<_> = cohort.neighbours(&ids[0]).expect("n").into_iter().collect();
    let stranger = *ids[1..]
        .iter()
        .find(|id| !neighbours.contains(id))
        .expect("stranger");
    let y = hearth_protocol::MaskedInput {
        round: 2,
        values: vec![1],
        peers: vec![stranger],
    };
    assert!(matches!(
        observer.on_masked_input(&ids[0], y.clone()),
        Err(Error::BadMessage { .. })
    ));
    let outsider = MemberId([0xff; 32]);
    assert_eq!(
        observer.on_masked_input(&outsider, y.clone()),
        Err(Error::NotInCohort(outsider))
    );
    let wrong_round = hearth_protocol::MaskedInput { round: 3, ..y };
    assert!(matches!(
        observer.on_masked_input(&ids[0], wrong_round),
        Err(Error::WrongRound {
            expected: 2,
            found: 3
        })
    ));
    let share = hearth_protocol::MemberShare {
        member: ids[0],
        share: vec![1; 32],
    };
    let both = hearth_protocol::UnmaskingShares {
        round: 2,
        self_mask_shares: vec![share.clone()],
        key_shares: vec![share.clone()],
    };
    assert!(matches!(
        observer.on_unmasking(&ids[0], &both),
        Err(Error::BadMessage { .. })
    ));
    let not_held = hearth_protocol::UnmaskingShares {
        round: 2,
        self_mask_shares: vec![],
        key_shares: vec![share],
    };
    assert!(matches!(
        observer.on_unmasking(&stranger, &not_held),
        Err(Error::BadMessage { .. })
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn random_cohorts_drops_and_orders(
        n in 3usize..40,
        len in 1usize..24,
        seed in any::<u64>(),
        phases in proptest::collection::vec(0usize..5, 0..13),
    ) {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let inputs = random_inputs(n, len, &mut rng);
        let order = shuffled(n, &mut rng);
        let mut d = vec![None; n];
        for (&i, &p) in order.iter().zip(phases.iter().take(n / 3)) {
            d[i] = Some(p);
        }
        let (result, expected) = run(&inputs, &d, seed);
        let (sum, survivors) = result.map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(sum, expected);
        let masked = d.iter().filter(|p| p.is_none_or(|p| p > MASK)).count();
        prop_assert_eq!(survivors.len(), masked);
    }
}
