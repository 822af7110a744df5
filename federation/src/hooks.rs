//! Hooks around the round: secure aggregation ([`SecureAggregator`], implemented by
//! [`secagg::Engine`](crate::secagg::Engine); a node installs it with
//! [`Community::with_secure_aggregation`](crate::Community::with_secure_aggregation)) and the
//! probe-set check of a candidate version ([`Probe`]).
//!
//! # Layering robust aggregation over secure aggregation
//!
//! Under secure aggregation only sums are visible, so a member's norm cannot be checked and a
//! robust rule cannot see individual deltas. The round therefore works on *groups*: the cohort is
//! partitioned deterministically into groups of at least the manifest's
//! [`min_group_size`](hearth_protocol::Aggregation::min_group_size) members
//! ([`groups`](crate::groups), from the round seed), each group is aggregated securely, and the
//! engine hands the round one [`GroupSum`] per group. The round then
//!
//! 1. checks each sum (length, members in the cohort and in no other group, finite scale);
//! 2. bounds the norm of each group *mean* by the bound an honest group mean meets
//!    ([`GroupSum::norm_bound`]) — scaling down, not rejecting, since the culprit inside the group
//!    is unknown;
//! 3. applies the manifest's rule across the group means (the mean weights groups by size, which
//!    gives exactly the mean over all members; trimmed mean and median are unweighted), then the
//!    server optimizer — exactly as for plain deltas.
//!
//! A minority of groups holding attackers can then move a robust aggregate only as far as the
//! rule allows; an attacker inside a group is diluted by the group's honest members and bounded
//! by step 2.

use std::fmt;

use hearth_protocol::{Hash32, Hasher, Manifest, MemberId, Message, Payload};
use hearth_training::DistributedGaussian;

use crate::clock::{Phase, PhaseClock};
use crate::reject::Rejection;
use crate::verify::TAIL_U;

/// Domain of [`GroupSum::hash`].
pub const GROUP_SUM_DOMAIN: &[u8] = b"hearth/group-sum/v1\0";

/// Public facts of a round, handed to the hooks.
#[derive(Debug, Clone)]
pub struct RoundInfo {
    /// Community id.
    pub community: Hash32,
    /// Round number.
    pub round: u64,
    /// Version the round started from.
    pub parent: Hash32,
    /// The round seed ([`round_seed`](crate::round_seed)).
    pub seed: Hash32,
    /// Deadlines.
    pub clock: PhaseClock,
    /// Values in a delta (`LoraShape::elements`).
    pub elements: usize,
    /// The community manifest (privacy, schedule, limits).
    pub manifest: Manifest,
    /// Smallest group (the manifest's
    /// [`min_group_size`](hearth_protocol::Aggregation::min_group_size)).
    pub min_group_size: usize,
    /// Members holding a contributor certificate valid at the round's start and not revoked,
    /// sorted: the population the cohort is drawn from. Secure aggregation fixes its groups from
    /// it at the start, so every node must know the same certificates by then.
    pub members: Vec<MemberId>,
}

impl RoundInfo {
    /// Whether `member` is in this round's cohort.
    pub fn in_cohort(&self, member: &MemberId) -> bool {
        crate::cohort::in_cohort(&self.seed, member, self.manifest.schedule.sampling_rate)
    }

    /// The cohort: the certified [`members`](Self::members) drawn into this round, sorted.
    pub fn cohort(&self) -> Vec<MemberId> {
        self.members
            .iter()
            .filter(|m| self.in_cohort(m))
            .copied()
            .collect()
    }

    /// The secure-aggregation groups of this round: the cohort dealt by
    /// [`groups`](crate::groups) into groups of at least [`min_group_size`](Self::min_group_size).
    pub fn groups(&self) -> Vec<Vec<MemberId>> {
        crate::cohort::groups(&self.seed, &self.cohort(), self.min_group_size)
    }
}

/// How a member of a secure-aggregation group quantizes and noises its delta in a round.
///
/// Every member of a group uses the same scale, and noise shares sized for the *group*: a group
/// of `k` members of whom up to `t` may drop out (or collude) adds shares of std
/// `σ·C/√(k − t)`, so any `≥ k − t` shares in the unmasked sum carry the full `σ·C`
/// (docs/PRIVACY.md, "Group calibration").
#[derive(Debug, Clone, PartialEq)]
pub struct Calibration {
    /// The member's group, sorted.
    pub group: Vec<MemberId>,
    /// The mechanism to release the delta with: the training crate's distributed discrete
    /// Gaussian for a cohort of `(k, t)`, at the group's scale.
    pub noise: DistributedGaussian,
}

impl Calibration {
    /// The group's quantization scale (real units per step), a power of two.
    pub fn scale(&self) -> f32 {
        self.noise.scale()
    }

    /// Members that may drop out with the sum still recovered and noised, `t`.
    pub fn tolerated(&self) -> usize {
        self.noise.cohort().tolerated as usize
    }

    /// Std of one member's noise share in real units, `σ·C/√(k − t)`: the `noise_std` its delta
    /// declares, and the [`GroupSum::noise_std`] of the group.
    pub fn share_std(&self) -> f64 {
        let p = self.noise.params();
        p.noise_multiplier * p.clip_norm / f64::from(self.noise.cohort().guaranteed()).sqrt()
    }
}

/// The unmasked sum of one secure-aggregation group.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupSum {
    /// Members whose inputs are in the sum, sorted, no duplicates.
    pub members: Vec<MemberId>,
    /// Signed sum of their quantized inputs (wraparound modulo 2³² already resolved).
    pub sum: Vec<i64>,
    /// Real value of one integer step (the common quantization scale).
    pub scale: f32,
    /// Std of the noise each member added (its share), real units.
    pub noise_std: f64,
}

impl GroupSum {
    /// Content hash: [`GROUP_SUM_DOMAIN`], member count and ids, the sum (`u64` count then each
    /// `i64` big-endian), scale bits, noise std. This is what a version lists as its inputs for
    /// a secure round.
    pub fn hash(&self) -> Hash32 {
        let mut h = Hasher::new(GROUP_SUM_DOMAIN);
        h.u64(self.members.len() as u64);
        for m in &self.members {
            h.bytes(m.as_bytes());
        }
        h.u64(self.sum.len() as u64);
        for v in &self.sum {
            h.u64(*v as u64);
        }
        h.u32(self.scale.to_bits()).f64(self.noise_std);
        h.finish()
    }

    /// The L2 bound an honest group mean meets: `k` members, each `‖clip‖ ≤ C`, noise std `τ`
    /// each (so `τ/√k` on the mean), rounding `s/2` per value:
    /// `(C + (τ/√k)·(√d + 9) + (s/2)·√d)·(1 + 2⁻²⁰)`.
    pub fn norm_bound(&self, clip_norm: f64, noise_std: f64) -> f64 {
        let k = (self.members.len().max(1)) as f64;
        let d = self.sum.len() as f64;
        let rounding = f64::from(self.scale) / 2.0 * d.sqrt();
        (clip_norm + noise_std / k.sqrt() * (d.sqrt() + TAIL_U) + rounding)
            * (1.0 + 1.0 / (1u64 << 20) as f64)
    }
}

/// A secure-aggregation engine, driven by the round.
///
/// The round does the common checks on every secure-aggregation message first (envelope,
/// certificate, round, phase deadline, cohort membership, replay) and only then calls
/// [`on_message`](Self::on_message). All methods get the same [`RoundInfo`]; none may read a
/// clock or draw randomness other than from seeds it was given.
pub trait SecureAggregator: fmt::Debug + Send {
    /// A round starts. Returns payloads this node must publish (e.g. its key advertisement).
    fn begin(&mut self, info: &RoundInfo) -> Vec<Payload>;

    /// Hands over this node's own clipped, noised, quantized input for the round.
    fn submit_own(&mut self, info: &RoundInfo, values: &[i32], scale: f32) -> Result<(), String>;

    /// A checked message of kind keys, shares, masked input, survivors or unmasking shares.
    /// A [`Rejection`] is handed back to the caller as is (its own reason: duplicate,
    /// equivocation, wrong shape, or `secure_aggregation` for the rest).
    fn on_message(
        &mut self,
        info: &RoundInfo,
        message: &Message,
        now: u64,
    ) -> Result<(), Rejection>;

    /// Called on every tick with the current phase (and right after
    /// [`submit_own`](Self::submit_own)). Returns payloads to publish.
    fn tick(&mut self, info: &RoundInfo, phase: Phase, now: u64) -> Vec<Payload>;

    /// After the unmask deadline: the unmasked sum of every group that completed. An `Err`
    /// (no group completed) fails the round with that reason.
    fn finish(&mut self, info: &RoundInfo) -> Result<Vec<GroupSum>, String>;

    /// How `member` must quantize and noise its delta this round, if it takes part (`None`:
    /// not in the cohort, in no group, or no calibration is imposed). The round checks the own
    /// delta against it before [`submit_own`](Self::submit_own).
    fn calibration(&self, info: &RoundInfo, member: &MemberId) -> Option<Calibration> {
        let _ = (info, member);
        None
    }

    /// Groups left out of the last [`finish`](Self::finish), one line each saying why (empty by
    /// default).
    fn excluded(&self) -> Vec<String> {
        Vec::new()
    }

    /// A fresh engine with the same settings that only observes (no member of its own, nothing
    /// published), to recompute a past round from its public messages
    /// ([`Community::verify_secure_round`](crate::Community::verify_secure_round)). `None` (the
    /// default) if the engine cannot replay.
    fn observer(&self) -> Option<Box<dyn SecureAggregator>> {
        None
    }
}

/// The evaluator behind the community's probe-set check
/// ([`ProbeSet`](hearth_protocol::ProbeSet) in the manifest): the mean loss, in nats per token, of
/// the base model with a given community adapter on the manifest's probe text. The community
/// compares a candidate's loss with its parent's and refuses a candidate that raises it by more
/// than the manifest's `max_increase` (closing the round without an update).
///
/// Every node must reach the same verdict for versions to stay in agreement, so the loss must be
/// a deterministic function of the adapter (same text, same tokenizer, same windows, same
/// arithmetic). Implementations own any caches behind a lock: the check also runs from `&self`
/// verification paths.
pub trait Probe: fmt::Debug + Send {
    /// Mean loss of the base model with `adapter` on the probe text, nats per token, or why it
    /// could not be computed.
    fn loss(&self, adapter: &crate::Adapter) -> Result<f64, String>;
}
