//! Who takes part in a round: the round seed, Poisson cohort sampling, and the deterministic
//! partition of a cohort into secure-aggregation groups.
//!
//! Everything here is a pure function of public data, so every node computes the same cohort
//! and the same groups, and any node can check that a sender belongs to the round.
//!
//! * Round seed: `H("hearth/round-seed/v1\0" ‖ community ‖ u64 round ‖ parent version)`
//!   ([`round_seed`]). It names the parent version, so future cohorts cannot be known (nor keys
//!   ground for them) before the previous round has closed.
//! * Cohort: member `m` is in round `r` iff the first 8 bytes (big-endian) of
//!   `H("hearth/cohort/v1\0" ‖ seed ‖ m)` are below `⌊q·2⁶⁴⌋`, `q` the manifest's sampling rate;
//!   with `q = 1` everyone is ([`in_cohort`]). Each member is in independently with probability
//!   `q`: Poisson sampling, as the privacy accounting assumes.
//! * Groups: cohort members sorted by `H("hearth/group/v1\0" ‖ seed ‖ m)` (ties by id), dealt
//!   into `g = max(1, ⌊n/min⌋)` contiguous groups whose sizes differ by at most one, so every
//!   group has at least `min` members when `n ≥ min` ([`groups`]).

use hearth_protocol::{Hash32, Hasher, MemberId};

/// Domain of [`round_seed`].
pub const ROUND_SEED_DOMAIN: &[u8] = b"hearth/round-seed/v1\0";
/// Domain of the cohort draw.
pub const COHORT_DOMAIN: &[u8] = b"hearth/cohort/v1\0";
/// Domain of the group order.
pub const GROUP_DOMAIN: &[u8] = b"hearth/group/v1\0";

/// The seed of round `round` of `community` started on adapter version `parent`.
pub fn round_seed(community: &Hash32, round: u64, parent: &Hash32) -> Hash32 {
    Hasher::new(ROUND_SEED_DOMAIN)
        .hash(community)
        .u64(round)
        .hash(parent)
        .finish()
}

/// The cohort threshold `⌊q·2⁶⁴⌋` for sampling rate `q`; `None` means everyone (`q ≥ 1`).
///
/// `q·2⁶⁴` is an exact multiplication by a power of two and the conversion truncates, so every
/// platform computes the same threshold. A rate that is NaN or `≤ 0` selects nobody.
pub fn threshold(sampling_rate: f64) -> Option<u64> {
    if sampling_rate >= 1.0 {
        return None;
    }
    if sampling_rate.is_nan() || sampling_rate <= 0.0 {
        return Some(0);
    }
    Some((sampling_rate * 18_446_744_073_709_551_616.0) as u64)
}

fn draw(domain: &[u8], seed: &Hash32, member: &MemberId) -> u64 {
    let h = Hasher::new(domain)
        .hash(seed)
        .bytes(member.as_bytes())
        .finish();
    let mut first = [0u8; 8];
    first.copy_from_slice(&h.0[..8]);
    u64::from_be_bytes(first)
}

/// Whether `member` is in the cohort of the round with `seed` at `sampling_rate`.
pub fn in_cohort(seed: &Hash32, member: &MemberId, sampling_rate: f64) -> bool {
    match threshold(sampling_rate) {
        None => true,
        Some(t) => draw(COHORT_DOMAIN, seed, member) < t,
    }
}

/// Partitions `members` (any order; duplicates are ignored) into secure-aggregation groups of at
/// least `min_size` members each, deterministically from the round `seed`.
///
/// Returns no group when there are fewer than `min_size` members (a `min_size` of 0 counts as
/// 1). Each group is sorted by member id bytes.
pub fn groups(seed: &Hash32, members: &[MemberId], min_size: usize) -> Vec<Vec<MemberId>> {
    let min_size = min_size.max(1);
    let mut keyed: Vec<(u64, MemberId)> = members
        .iter()
        .map(|m| (draw(GROUP_DOMAIN, seed, m), *m))
        .collect();
    keyed.sort();
    keyed.dedup();
    let n = keyed.len();
    if n < min_size {
        return Vec::new();
    }
    let count = n / min_size;
    let (base, extra) = (n / count, n % count);
    let mut out = Vec::with_capacity(count);
    let mut members = keyed.into_iter().map(|(_, m)| m);
    for g in 0..count {
        let size = base + usize::from(g < extra);
        let mut group: Vec<MemberId> = members.by_ref().take(size).collect();
        group.sort();
        out.push(group);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use hearth_protocol::Keypair;
    use proptest::prelude::*;

    fn ids(n: usize) -> Vec<MemberId> {
        (0..n)
            .map(|i| {
                let mut seed = [0u8; 32];
                seed[..8].copy_from_slice(&(i as u64 + 1).to_le_bytes());
                Keypair::from_seed(seed).member_id()
            })
            .collect()
    }

    #[test]
    fn seed_depends_on_every_input() {
        let c = Hash32::digest(b"community");
        let p = Hash32::digest(b"parent");
        let s = round_seed(&c, 5, &p);
        assert_eq!(s, round_seed(&c, 5, &p));
        assert_ne!(s, round_seed(&c, 6, &p));
        assert_ne!(s, round_seed(&Hash32::digest(b"other"), 5, &p));
        assert_ne!(s, round_seed(&c, 5, &Hash32::ZERO));
    }

    #[test]
    fn threshold_edges() {
        assert_eq!(threshold(1.0), None);
        assert_eq!(threshold(2.0), None);
        assert_eq!(threshold(0.0), Some(0));
        assert_eq!(threshold(-1.0), Some(0));
        assert_eq!(threshold(f64::NAN), Some(0));
        assert_eq!(threshold(0.5), Some(1 << 63));
        assert_eq!(threshold(0.25), Some(1 << 62));
        // The largest rate below one stays below 2^64 (no wrap to zero).
        assert!(threshold(1.0 - f64::EPSILON / 2.0).unwrap() > u64::MAX - 4096);
    }

    #[test]
    fn everyone_at_rate_one_and_about_q_otherwise() {
        let seed = round_seed(&Hash32::digest(b"c"), 1, &Hash32::ZERO);
        let members = ids(4000);
        assert!(members.iter().all(|m| in_cohort(&seed, m, 1.0)));
        assert!(!members.iter().any(|m| in_cohort(&seed, m, 0.0)));
        for q in [0.05, 0.3, 0.7] {
            let k = members.iter().filter(|m| in_cohort(&seed, m, q)).count() as f64;
            // Binomial(4000, q): 6 standard deviations.
            let sd = (4000.0 * q * (1.0 - q)).sqrt();
            assert!((k - 4000.0 * q).abs() < 6.0 * sd, "q {q}: {k}");
        }
        // Cohorts at increasing rates are nested (same draw, higher threshold).
        let small: Vec<_> = members
            .iter()
            .filter(|m| in_cohort(&seed, m, 0.1))
            .collect();
        assert!(small.iter().all(|m| in_cohort(&seed, m, 0.2)));
        // Another round draws another cohort.
        let next = round_seed(&Hash32::digest(b"c"), 2, &Hash32::ZERO);
        let other: Vec<_> = members
            .iter()
            .filter(|m| in_cohort(&next, m, 0.1))
            .collect();
        assert_ne!(small, other);
    }

    #[test]
    fn group_sizes_at_and_below_the_minimum() {
        let seed = Hash32::digest(b"s");
        assert!(groups(&seed, &ids(7), 8).is_empty());
        let g = groups(&seed, &ids(8), 8);
        assert_eq!(g.len(), 1);
        assert_eq!(g[0].len(), 8);
        let g = groups(&seed, &ids(15), 8);
        assert_eq!(g.iter().map(Vec::len).collect::<Vec<_>>(), vec![15]);
        let g = groups(&seed, &ids(16), 8);
        assert_eq!(g.iter().map(Vec::len).collect::<Vec<_>>(), vec![8, 8]);
        let g = groups(&seed, &ids(3), 0);
        assert_eq!(g.len(), 3);
    }

    proptest! {
        #[test]
        fn groups_partition_deterministically(
            n in 0usize..200,
            min in 1usize..20,
            rotate in 0usize..200,
            seed in any::<[u8; 32]>(),
        ) {
            let seed = Hash32(seed);
            let members = ids(n);
            let g = groups(&seed, &members, min);
            // Independent of the order the members are given in, and of duplicates.
            let mut shuffled = members.clone();
            if n > 0 {
                shuffled.rotate_left(rotate % n);
                shuffled.reverse();
                shuffled.push(members[0]);
            }
            prop_assert_eq!(&g, &groups(&seed, &shuffled, min));
            if n < min {
                prop_assert!(g.is_empty());
            } else {
                prop_assert_eq!(g.len(), n / min);
                let sizes: Vec<usize> = g.iter().map(Vec::len).collect();
                prop_assert!(sizes.iter().all(|&s| s >= min));
                prop_assert!(sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1);
                let mut all: Vec<MemberId> = g.concat();
                all.sort();
                let mut want = members.clone();
                want.sort();
                prop_assert_eq!(all, want);
            }
        }
    }
}
