//! The chain of community adapter versions, and the computation every node repeats to get the
//! next version bit for bit.
//!
//! A version is named by its adapter hash ([`Adapter::version`](crate::Adapter::version)) and
//! recorded as a [`VersionRecord`]: round, parent version, the sorted content hashes of the
//! inputs it includes (deltas, or group sums under secure aggregation) and the hash of the
//! optimizer state after it. Given the parent [`State`] and the inputs, [`next_from_deltas`] and
//! [`next_from_groups`] compute the next state deterministically: inputs sorted by content hash,
//! norm bounding, the manifest's rule ([`crate::aggregate`]), the server optimizer
//! ([`crate::optimizer`]).

use hearth_protocol::{DeltaSubmission, Hash32, Manifest, VersionAnnouncement};

use crate::adapter::State;
use crate::aggregate::{Input, Values, aggregate, bounded_factor};
use crate::error::{Error, Result};
use crate::hooks::GroupSum;
use crate::optimizer::step;
use crate::verify::norm_bound;

/// One link of the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionRecord {
    /// The round that produced the version.
    pub round: u64,
    /// The version it started from.
    pub parent: Hash32,
    /// The new version (adapter hash).
    pub version: Hash32,
    /// Content hashes of the inputs included, strictly increasing.
    pub inputs: Vec<Hash32>,
    /// Hash of the optimizer state after the round ([`State::optimizer_hash`]).
    pub optimizer: Hash32,
}

impl VersionRecord {
    /// The fork rule (docs/PROTOCOL.md §14.8). Of two versions that follow the same ancestor on
    /// two chains (the first version after the fork point on each), whether `self` is preferred
    /// to `other`: more inputs, then the earlier round, then the smaller version hash. For two
    /// versions of one round and parent it is the preferred-version rule of §14.4. Total and the
    /// same on every node, so nodes that see both chains keep or move to the same one.
    pub fn preferred_to(&self, other: &VersionRecord) -> bool {
        let key = |r: &VersionRecord| (std::cmp::Reverse(r.inputs.len()), r.round, r.version);
        key(self) < key(other)
    }

    /// The announcement a node publishes for this version.
    pub fn announcement(&self) -> VersionAnnouncement {
        VersionAnnouncement {
            round: self.round,
            parent: self.parent,
            version: self.version,
            deltas: self.inputs.clone(),
        }
    }
}

/// The next state from checked `deltas` (any order; duplicates by hash must already be gone),
/// weighted by the manifest's [`Weighting`](hearth_protocol::Weighting).
///
/// Errors with [`Error::TooFew`] below the manifest's `min_contributions`, or when the update is
/// not finite.
pub fn next_from_deltas(
    manifest: &Manifest,
    parent: &State,
    round: u64,
    deltas: &[&DeltaSubmission],
) -> Result<(VersionRecord, State)> {
    check_count(manifest, deltas.len())?;
    let mut sorted: Vec<&DeltaSubmission> = deltas.to_vec();
    sorted.sort_by_key(|d| d.hash);
    let flat: Vec<Vec<i32>> = sorted
        .iter()
        .map(|d| {
            d.layers
                .iter()
                .flat_map(|l| l.values.iter().copied())
                .collect()
        })
        .collect();
    let d = parent.adapter.len();
    let clip = manifest.privacy.clip_norm;
    let mut inputs = Vec::with_capacity(sorted.len());
    for (delta, values) in sorted.iter().zip(&flat) {
        if values.len() != d {
            return Err(Error::Shape {
                reason: format!("delta {} has {} values, not {d}", delta.hash, values.len()),
            });
        }
        let v = Values::I32(values);
        let int_norm = v.norm().unwrap_or(f64::INFINITY);
        let bound = norm_bound(clip, delta.dp.noise_std, d);
        inputs.push(Input {
            values: v,
            factor: bounded_factor(int_norm, f64::from(delta.scale), bound),
            weight: manifest.aggregation.weighting.weight(delta.sample_count),
        });
    }
    let update = aggregate(manifest.aggregation.rule, &inputs, d);
    let hashes = sorted.iter().map(|d| d.hash).collect();
    finish(manifest, parent, round, &update, hashes)
}

/// The next state from secure-aggregation group sums (any order).
///
/// Each group mean is norm-bounded by [`GroupSum::norm_bound`] (with the members' noise std
/// capped at the community's `σ·C`), then the rule runs across group means.
pub fn next_from_groups(
    manifest: &Manifest,
    parent: &State,
    round: u64,
    groups: &[GroupSum],
) -> Result<(VersionRecord, State)> {
    let members: usize = groups.iter().map(|g| g.members.len()).sum();
    check_count(manifest, members)?;
    let mut sorted: Vec<(Hash32, &GroupSum)> = groups.iter().map(|g| (g.hash(), g)).collect();
    sorted.sort_by_key(|(h, _)| *h);
    let d = parent.adapter.len();
    let p = &manifest.privacy;
    let full_std = p.noise_multiplier * p.clip_norm;
    let mut inputs = Vec::with_capacity(sorted.len());
    for (hash, g) in &sorted {
        if g.sum.len() != d || g.members.is_empty() {
            return Err(Error::Shape {
                reason: format!(
                    "group sum {hash} has {} values and {} members",
                    g.sum.len(),
                    g.members.len()
                ),
            });
        }
        if !(g.scale.is_finite() && g.scale > 0.0) {
            return Err(Error::NonFinite {
                what: "group sum scale",
                index: 0,
            });
        }
        let k = g.members.len() as f64;
        let v = Values::I64(&g.sum);
        let int_norm = v.norm().unwrap_or(f64::INFINITY);
        let bound = g.norm_bound(p.clip_norm, g.noise_std.clamp(0.0, full_std));
        inputs.push(Input {
            values: v,
            factor: bounded_factor(int_norm, f64::from(g.scale) / k, bound),
            weight: k,
        });
    }
    let update = aggregate(manifest.aggregation.rule, &inputs, d);
    let hashes = sorted.iter().map(|(h, _)| *h).collect();
    finish(manifest, parent, round, &update, hashes)
}

fn check_count(manifest: &Manifest, found: usize) -> Result<()> {
    let needed = manifest.schedule.min_contributions as usize;
    if found < needed {
        return Err(Error::TooFew { found, needed });
    }
    Ok(())
}

fn finish(
    manifest: &Manifest,
    parent: &State,
    round: u64,
    update: &[f64],
    inputs: Vec<Hash32>,
) -> Result<(VersionRecord, State)> {
    if let Some(index) = update.iter().position(|u| !u.is_finite()) {
        return Err(Error::NonFinite {
            what: "aggregate",
            index,
        });
    }
    let next = step(parent, update, manifest.aggregation.optimizer)?;
    let record = VersionRecord {
        round,
        parent: parent.version(),
        version: next.version(),
        inputs,
        optimizer: next.optimizer_hash(),
    };
    Ok((record, next))
}

#[cfg(test)]
mod fork_rule_tests {
    use super::*;

    fn record(round: u64, inputs: usize, version: &[u8]) -> VersionRecord {
        VersionRecord {
            round,
            parent: Hash32::ZERO,
            version: Hash32::digest(version),
            inputs: (0..inputs as u8).map(|i| Hash32::digest(&[i])).collect(),
            optimizer: Hash32::ZERO,
        }
    }

    #[test]
    fn more_inputs_then_the_earlier_round_then_the_smaller_hash() {
        let (a, b) = (record(1, 3, b"a"), record(1, 2, b"b"));
        assert!(a.preferred_to(&b) && !b.preferred_to(&a));
        let (early, late) = (record(1, 3, b"x"), record(2, 3, b"y"));
        assert!(early.preferred_to(&late) && !late.preferred_to(&early));
        let (x, y) = (record(4, 3, b"x"), record(4, 3, b"y"));
        let small = if x.version < y.version { &x } else { &y };
        let big = if x.version < y.version { &y } else { &x };
        assert!(small.preferred_to(big) && !big.preferred_to(small));
        assert!(!x.preferred_to(&x), "a version is not preferred to itself");
    }
}
