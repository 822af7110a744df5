//! The community manifest: the admin-signed genesis document every member agrees on.
//!
//! The community id is the hash of the manifest ([`Manifest::community_id`]); every envelope
//! names it, so a message can never be taken for one of another community.

use serde::{Deserialize, Serialize};

use crate::codec::{check_limit, check_name, check_range, to_cbor};
use crate::error::Error;
use crate::hash::{Hash32, Hasher};
use crate::identity::MemberId;
use crate::limits::Limits;
use crate::signed::{Signable, Signed};

/// Domain of the community id hash.
pub const COMMUNITY_DOMAIN: &[u8] = b"hearth/community/v1\0";

/// The community's genesis document, signed by its admin key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Human-readable community name.
    pub name: String,
    /// The admin key: signs this manifest, certificates and revocation lists.
    pub admin: MemberId,
    /// Creation time, unix seconds (also makes two otherwise equal communities distinct).
    pub created: u64,
    /// The frozen base model.
    pub base_model: BaseModel,
    /// Shape of the community LoRA adapter.
    pub lora: LoraShape,
    /// Differential privacy parameters.
    pub privacy: Privacy,
    /// How deltas are combined into the next adapter version.
    pub aggregation: Aggregation,
    /// When rounds happen and who takes part.
    pub schedule: Schedule,
    /// Wire limits in force in this community.
    pub limits: Limits,
}

/// The frozen base model, pinned by the SHA-256 of its weights file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BaseModel {
    /// Name, for people (e.g. `SmolLM2-135M-Instruct`).
    pub name: String,
    /// Plain SHA-256 of the weights file.
    pub sha256: Hash32,
}

/// One LoRA target module and the dimensions of the linear layer it adapts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    /// Module name within a transformer block (e.g. `attn_q`).
    pub module: String,
    /// Input dimension of the adapted linear layer (columns of A).
    pub in_dim: u32,
    /// Output dimension of the adapted linear layer (rows of B).
    pub out_dim: u32,
}

/// Shape of the community LoRA adapter (FFA-LoRA: A frozen from `ffa_seed`, only B trained).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoraShape {
    /// LoRA rank r.
    pub rank: u32,
    /// LoRA alpha (the update is scaled by alpha / r).
    pub alpha: f32,
    /// Number of transformer layers adapted (blocks `0..layers`).
    pub layers: u32,
    /// Target modules, adapted in every layer.
    pub targets: Vec<Target>,
    /// Public seed from which every member derives the same frozen A matrices.
    pub ffa_seed: u64,
}

/// Name and shape of one B matrix of the adapter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorShape {
    /// `blk.<layer>.<module>`.
    pub name: String,
    /// Rows (the target's `out_dim`).
    pub rows: u32,
    /// Columns (the rank).
    pub cols: u32,
}

impl LoraShape {
    /// The B matrices in wire order: layer by layer, targets in manifest order within a layer.
    pub fn tensors(&self) -> Vec<TensorShape> {
        let mut out = Vec::with_capacity(self.layers as usize * self.targets.len());
        for layer in 0..self.layers {
            for target in &self.targets {
                out.push(TensorShape {
                    name: format!("blk.{layer}.{}", target.module),
                    rows: target.out_dim,
                    cols: self.rank,
                });
            }
        }
        out
    }

    /// Total number of trained values (all B matrices).
    pub fn elements(&self) -> u64 {
        let per_layer: u64 = self
            .targets
            .iter()
            .map(|t| u64::from(t.out_dim) * u64::from(self.rank))
            .sum();
        per_layer * u64::from(self.layers)
    }

    fn validate(&self, limits: &Limits) -> Result<(), Error> {
        if self.rank == 0 || self.rank > limits.max_rank {
            return Err(Error::InvalidValue {
                field: "lora.rank",
                reason: format!("{} is outside [1, {}]", self.rank, limits.max_rank),
            });
        }
        check_range("lora.alpha", self.alpha.into(), 0.0, true, 1e6)?;
        if self.layers == 0 {
            return Err(Error::InvalidValue {
                field: "lora.layers",
                reason: "must be at least 1".into(),
            });
        }
        check_limit("lora layers", self.layers as usize, limits.max_layers)?;
        if self.targets.is_empty() {
            return Err(Error::InvalidValue {
                field: "lora.targets",
                reason: "no target modules".into(),
            });
        }
        check_limit(
            "lora target modules",
            self.targets.len(),
            limits.max_targets,
        )?;
        for (i, target) in self.targets.iter().enumerate() {
            check_name("target module name", &target.module, limits.max_name_bytes)?;
            if self.targets[..i].iter().any(|t| t.module == target.module) {
                return Err(Error::InvalidValue {
                    field: "lora.targets",
                    reason: format!("module {:?} listed twice", target.module),
                });
            }
            if target.in_dim == 0 || target.out_dim == 0 {
                return Err(Error::InvalidValue {
                    field: "lora.targets",
                    reason: format!("module {:?} has a zero dimension", target.module),
                });
            }
            let elements = u64::from(target.out_dim) * u64::from(self.rank);
            check_limit(
                "tensor elements",
                elements as usize,
                limits.max_tensor_elements,
            )?;
        }
        let tensors = self.layers as usize * self.targets.len();
        check_limit("tensors", tensors, limits.max_tensors)?;
        check_limit(
            "delta elements",
            self.elements() as usize,
            limits.max_delta_elements,
        )
    }
}

/// Where the differential-privacy noise is added.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PrivacyMode {
    /// Each member adds its share of the noise and the deltas are securely aggregated; only the
    /// sum (carrying the full noise) is ever visible.
    Distributed,
    /// Each member adds the full noise itself; holds even if every other member colludes.
    Local,
}

/// Differential privacy parameters of the community.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Privacy {
    /// Where noise is added. Default distributed.
    pub mode: PrivacyMode,
    /// Gaussian noise multiplier σ (noise std on the sum is σ·C). Default 1.0.
    pub noise_multiplier: f64,
    /// L2 clipping norm C of one member's delta. Default 1.0.
    pub clip_norm: f64,
    /// δ used to report (ε, δ). Default 1e-6.
    pub delta: f64,
    /// Per-member zCDP budget ρ; a node refuses to publish past it. Default 1.05 (ε ≈ 8 at δ = 1e-6).
    pub budget_rho: f64,
}

impl Default for Privacy {
    fn default() -> Self {
        Privacy {
            mode: PrivacyMode::Distributed,
            noise_multiplier: 1.0,
            clip_norm: 1.0,
            delta: 1e-6,
            budget_rho: 1.05,
        }
    }
}

impl Privacy {
    fn validate(&self) -> Result<(), Error> {
        check_range(
            "privacy.noise_multiplier",
            self.noise_multiplier,
            0.0,
            false,
            1e6,
        )?;
        check_range("privacy.clip_norm", self.clip_norm, 0.0, true, 1e9)?;
        check_range("privacy.delta", self.delta, 0.0, true, 0.1)?;
        check_range("privacy.budget_rho", self.budget_rho, 0.0, true, 1e6)
    }
}

/// How the deltas of a round are combined, coordinate by coordinate.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// Weighted mean.
    Mean,
    /// Drop the `beta` fraction of lowest and of highest values, average the rest.
    TrimmedMean {
        /// Fraction trimmed at each end, in `[0, 0.5)`.
        beta: f64,
    },
    /// Coordinate-wise median.
    Median,
}

/// Server-side optimizer applied to the aggregate (every node runs it identically).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServerOptimizer {
    /// Apply the aggregate as is (FedAvg).
    None,
    /// FedAvg with server momentum.
    FedAvgM {
        /// Server learning rate.
        lr: f64,
        /// Momentum in `[0, 1)`.
        momentum: f64,
    },
    /// FedAdam (Reddi et al. 2021).
    FedAdam {
        /// Server learning rate.
        lr: f64,
        /// First-moment decay in `[0, 1)`.
        beta1: f64,
        /// Second-moment decay in `[0, 1)`.
        beta2: f64,
        /// Adaptivity ε (> 0).
        epsilon: f64,
    },
}

/// Smallest secure-aggregation group a manifest may set (SecAgg+ needs three members: with two,
/// each would learn the other's input from the sum).
pub const MIN_GROUP_SIZE: u32 = 3;

/// Largest sample-count weight cap a manifest may set.
pub const MAX_WEIGHT_CAP: u32 = 1 << 20;

/// How the weighted mean weighs a member's delta.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Weighting {
    /// Every member counts once (default). Matches user-level DP, where one member is the unit,
    /// and gives a member nothing to gain by inflating its `sample_count`.
    #[default]
    Uniform,
    /// Weight `clamp(sample_count, 1, cap)` (FedAvg's weighting with a cap). Only for plain
    /// (local DP) rounds: under secure aggregation only unweighted sums exist. Note that
    /// `sample_count` is sent in the clear and is not covered by DP.
    SampleCount {
        /// Largest weight one member can get, `1..=`[`MAX_WEIGHT_CAP`].
        cap: u32,
    },
}

impl Weighting {
    /// The weight of a delta with `sample_count` examples.
    pub fn weight(self, sample_count: u32) -> f64 {
        match self {
            Weighting::Uniform => 1.0,
            Weighting::SampleCount { cap } => f64::from(sample_count.clamp(1, cap.max(1))),
        }
    }
}

/// Aggregation rule, weighting, server optimizer and secure-aggregation group size: everything
/// that decides the next version, so that every node of the community computes the same.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Aggregation {
    /// Combination rule. Default mean.
    pub rule: Rule,
    /// Server optimizer. Default none.
    pub optimizer: ServerOptimizer,
    /// Weighting of [`Rule::Mean`] over plain (local-DP) deltas. Default uniform.
    pub weighting: Weighting,
    /// Smallest secure-aggregation group (distributed mode): the cohort is dealt into groups of
    /// at least this many members, `MIN_GROUP_SIZE..=max_cohort`. Default 8.
    pub min_group_size: u32,
    /// The community probe set every candidate version is checked on before it is applied
    /// (absent: no check). Absent fields are not encoded, so manifests without one keep their
    /// bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe: Option<ProbeSet>,
}

/// Most bytes of probe text a manifest may carry (about 4,000 tokens for a BPE vocabulary: every
/// node evaluates it once per round).
pub const MAX_PROBE_BYTES: u32 = 16 * 1024;

/// The probe text is evaluated in consecutive windows of this many tokens (or the base model's
/// context, if shorter), so that every node computes the same loss.
pub const PROBE_WINDOW_TOKENS: usize = 128;

/// Largest probe tolerance a manifest may set, nats per token.
pub const MAX_PROBE_INCREASE: f64 = 10.0;

/// The community probe set: public text, the same for every node, on which each candidate
/// version is evaluated with the base model before it is applied. A candidate whose mean loss on
/// the text exceeds its parent's by more than `max_increase` nats per token is refused, and the
/// round closes without an update (the last layer of the robust aggregation in DESIGN.md:
/// poisoned aggregates that slip through the norm bound and the rule are caught by what they do
/// to the model, not by how they look).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeSet {
    /// The text, UTF-8, `1..=`[`MAX_PROBE_BYTES`] bytes. Public: never a member's data.
    pub text: String,
    /// Largest rise of the probe loss a round may cause, nats per token, in
    /// `(0, `[`MAX_PROBE_INCREASE`]`]`.
    pub max_increase: f64,
}

impl ProbeSet {
    fn validate(&self) -> Result<(), Error> {
        check_limit("probe text bytes", self.text.len(), MAX_PROBE_BYTES)?;
        if self.text.trim().is_empty() {
            return Err(Error::InvalidValue {
                field: "aggregation.probe.text",
                reason: "empty".into(),
            });
        }
        check_range(
            "aggregation.probe.max_increase",
            self.max_increase,
            0.0,
            true,
            MAX_PROBE_INCREASE,
        )
    }
}

impl Default for Aggregation {
    fn default() -> Self {
        Aggregation {
            rule: Rule::Mean,
            optimizer: ServerOptimizer::None,
            weighting: Weighting::Uniform,
            min_group_size: 8,
            probe: None,
        }
    }
}

impl Aggregation {
    fn validate(&self, mode: PrivacyMode, limits: &Limits) -> Result<(), Error> {
        if let Some(probe) = &self.probe {
            probe.validate()?;
        }
        if let Rule::TrimmedMean { beta } = self.rule {
            check_range("aggregation.rule.beta", beta, 0.0, false, 0.499_999)?;
        }
        if self.min_group_size < MIN_GROUP_SIZE || self.min_group_size > limits.max_cohort {
            return Err(Error::InvalidValue {
                field: "aggregation.min_group_size",
                reason: format!(
                    "{} is outside [{MIN_GROUP_SIZE}, {}]",
                    self.min_group_size, limits.max_cohort
                ),
            });
        }
        if let Weighting::SampleCount { cap } = self.weighting {
            if cap == 0 || cap > MAX_WEIGHT_CAP {
                return Err(Error::InvalidValue {
                    field: "aggregation.weighting",
                    reason: format!("cap {cap} is outside [1, {MAX_WEIGHT_CAP}]"),
                });
            }
            if mode == PrivacyMode::Distributed {
                return Err(Error::InvalidValue {
                    field: "aggregation.weighting",
                    reason: "secure aggregation only has unweighted sums: use uniform".into(),
                });
            }
        }
        match self.optimizer {
            ServerOptimizer::None => Ok(()),
            ServerOptimizer::FedAvgM { lr, momentum } => {
                check_range("optimizer.lr", lr, 0.0, true, 1e6)?;
                check_range("optimizer.momentum", momentum, 0.0, false, 0.999_999)
            }
            ServerOptimizer::FedAdam {
                lr,
                beta1,
                beta2,
                epsilon,
            } => {
                check_range("optimizer.lr", lr, 0.0, true, 1e6)?;
                check_range("optimizer.beta1", beta1, 0.0, false, 0.999_999)?;
                check_range("optimizer.beta2", beta2, 0.0, false, 0.999_999)?;
                check_range("optimizer.epsilon", epsilon, 0.0, true, 1.0)
            }
        }
    }
}

/// When rounds start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Period {
    /// Round r starts at `created + r * secs`.
    Every {
        /// Round length in seconds.
        secs: u64,
    },
    /// Rounds start when a member asks (tests, demos).
    OnDemand,
}

/// The round schedule. Phase deadlines are seconds after the round's start and increase.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    /// Round period. Default every 600 s.
    pub period: Period,
    /// Deltas and masked inputs are due. Default 300 s.
    pub submit_secs: u64,
    /// Unmasking shares are due. Default 420 s.
    pub unmask_secs: u64,
    /// Version announcements are due. Default 540 s.
    pub announce_secs: u64,
    /// Poisson cohort sampling rate q in `(0, 1]`. Default 1.0 (everyone).
    pub sampling_rate: f64,
    /// Fewest contributions for a round to produce a version. Default 2.
    pub min_contributions: u32,
}

impl Default for Schedule {
    fn default() -> Self {
        Schedule {
            period: Period::Every { secs: 600 },
            submit_secs: 300,
            unmask_secs: 420,
            announce_secs: 540,
            sampling_rate: 1.0,
            min_contributions: 2,
        }
    }
}

impl Schedule {
    fn validate(&self, limits: &Limits) -> Result<(), Error> {
        let deadlines = [self.submit_secs, self.unmask_secs, self.announce_secs];
        if deadlines[0] == 0 || deadlines.windows(2).any(|w| w[0] >= w[1]) {
            return Err(Error::InvalidValue {
                field: "schedule deadlines",
                reason: format!("{deadlines:?} must be positive and increasing"),
            });
        }
        if let Period::Every { secs } = self.period
            && self.announce_secs > secs
        {
            return Err(Error::InvalidValue {
                field: "schedule.period",
                reason: format!(
                    "announce deadline {} is after the period {secs}",
                    self.announce_secs
                ),
            });
        }
        check_range("schedule.sampling_rate", self.sampling_rate, 0.0, true, 1.0)?;
        if self.min_contributions == 0 || self.min_contributions > limits.max_cohort {
            return Err(Error::InvalidValue {
                field: "schedule.min_contributions",
                reason: format!(
                    "{} is outside [1, {}]",
                    self.min_contributions, limits.max_cohort
                ),
            });
        }
        Ok(())
    }
}

impl Manifest {
    /// The community id: SHA-256 over [`COMMUNITY_DOMAIN`] and the canonical CBOR of the manifest.
    pub fn community_id(&self) -> Result<Hash32, Error> {
        let bytes = to_cbor("manifest", self)?;
        let mut hasher = Hasher::new(COMMUNITY_DOMAIN);
        hasher.bytes(&bytes);
        Ok(hasher.finish())
    }

    /// Checks every field against the manifest's own limits (which must themselves be valid).
    pub fn validate(&self) -> Result<(), Error> {
        self.limits.validate()?;
        check_name("community name", &self.name, self.limits.max_name_bytes)?;
        check_name(
            "base model name",
            &self.base_model.name,
            self.limits.max_name_bytes,
        )?;
        self.lora.validate(&self.limits)?;
        self.privacy.validate()?;
        self.aggregation.validate(self.privacy.mode, &self.limits)?;
        self.schedule.validate(&self.limits)
    }
}

impl Signable for Manifest {
    const DOMAIN: &'static [u8] = b"hearth/manifest/v1\0";
    const WHAT: &'static str = "manifest";
}

impl Signed<Manifest> {
    /// Checks the admin's self-signature and the manifest's fields; returns the community id.
    pub fn verify(&self) -> Result<Hash32, Error> {
        self.verify_signature(&self.body.admin)?;
        self.body.validate()?;
        self.body.community_id()
    }
}

#[cfg(test)]
mod tests;
