//! What every arm of a run shares: the members (keys, data, who attacks), the base model, and
//! the community's admin key, manifest and certificates.

use hearth_federation::{Adapter, Community, Config, State};
use hearth_protocol::{
    Aggregation, BaseModel, Certificate, Keypair, Limits, Manifest, MemberId, Period, Privacy,
    PrivacyMode, ProbeSet, Role, Rule, Schedule, ServerOptimizer, Signed,
};

use crate::data::Client;
use crate::error::{Error, Result};
use crate::model::Base;
use crate::privacy;
use crate::rng::{derive, purpose, stream};
use crate::scenario::{OptimizerSpec, RuleSpec, Scenario};
use crate::trace::Trace;

/// The manifest's creation time: round `r` starts at `T0 + r·period`.
pub const T0: u64 = 1_700_000_000;

/// Version records a full node keeps in memory (memory must not grow with the rounds).
const CHAIN_KEPT: usize = 8;

/// Validity of the members' certificates (a run must end before they expire).
pub const CERTIFICATE_DAYS: u64 = 300;

/// One virtual member.
#[derive(Debug)]
pub struct Member {
    /// Its identity.
    pub key: Keypair,
    /// Its data's name (`play/SPEAKER`).
    pub client: String,
    /// Training tokens.
    pub train: Vec<u32>,
    /// Held-out tokens evaluated (the start of its held-out part).
    pub held_out: Vec<u32>,
    /// Whether it attacks.
    pub attacker: bool,
}

impl Member {
    /// Its member id.
    pub fn id(&self) -> MemberId {
        self.key.member_id()
    }
}

/// Members, base model and admin key of a run.
#[derive(Debug)]
pub struct World {
    /// The scenario.
    pub scenario: Scenario,
    /// The base model.
    pub base: Base,
    /// The members, by index.
    pub members: Vec<Member>,
    /// Members evaluated, sorted.
    pub evaluated: Vec<usize>,
    /// The churn trace (empty without `churn.trace`).
    pub trace: Trace,
    /// The community probe text (`aggregation.probe`), if any.
    pub probe_text: Option<String>,
    admin: Keypair,
}

impl World {
    /// Builds the members from `clients` (one each), the base and the churn trace.
    pub fn new(
        scenario: &Scenario,
        base: Base,
        clients: Vec<Client>,
        trace: Trace,
        probe_text: Option<String>,
    ) -> Result<Self> {
        let s = scenario;
        if clients.len() != s.members {
            return Err(Error::run(format!(
                "{} clients for {} members",
                clients.len(),
                s.members
            )));
        }
        let attackers = (s.attack.fraction * s.members as f64).round() as usize;
        let mut order: Vec<usize> = (0..s.members).collect();
        stream(s.seed, &[purpose::ATTACKERS]).shuffle(&mut order);
        let mut is_attacker = vec![false; s.members];
        for &i in &order[..attackers] {
            is_attacker[i] = true;
        }
        let mut members = Vec::with_capacity(s.members);
        for (i, c) in clients.into_iter().enumerate() {
            let data = c.dataset(s.data.max_train_chars, base.encoder())?;
            if data.num_windows(s.training.seq_len) == 0 {
                return Err(Error::Data {
                    reason: format!(
                        "member {i} ({}) has {} training bytes, fewer than training.seq_len + 1",
                        c.name,
                        data.train().len()
                    ),
                });
            }
            let held = data.held_out();
            let held = held[..held.len().min(s.eval.max_tokens_per_member)].to_vec();
            members.push(Member {
                key: key(s.seed, 1 + i as u64),
                client: c.name,
                train: data.train().to_vec(),
                held_out: held,
                attacker: is_attacker[i],
            });
        }
        let mut evaluated: Vec<usize> = (0..s.members).collect();
        if let Some(k) = s.eval.members {
            stream(s.seed, &[purpose::EVAL]).shuffle(&mut evaluated);
            evaluated.truncate(k);
            evaluated.sort_unstable();
        }
        Ok(World {
            scenario: s.clone(),
            base,
            members,
            evaluated,
            trace,
            probe_text,
            admin: key(s.seed, 0),
        })
    }

    /// The community manifest of an arm whose members add noise `sigma` (0: none).
    pub fn manifest(&self, privacy: &privacy::Privacy) -> Manifest {
        let s = &self.scenario;
        let a = &s.aggregation;
        let rule = match a.rule {
            RuleSpec::Mean => Rule::Mean,
            RuleSpec::TrimmedMean => Rule::TrimmedMean { beta: a.trim_beta },
            RuleSpec::Median => Rule::Median,
        };
        let optimizer = match a.optimizer {
            OptimizerSpec::None => ServerOptimizer::None,
            OptimizerSpec::Fedavgm => ServerOptimizer::FedAvgM {
                lr: a.server_lr,
                momentum: a.momentum,
            },
            OptimizerSpec::Fedadam => ServerOptimizer::FedAdam {
                lr: a.server_lr,
                beta1: 0.9,
                beta2: 0.99,
                epsilon: 1e-3,
            },
        };
        let cohort = (s.members as u32).max(Limits::default().max_cohort);
        Manifest {
            name: s.name.chars().take(100).collect(),
            admin: self.admin.member_id(),
            created: T0,
            base_model: BaseModel {
                name: "hearth-sim tiny byte llama".into(),
                sha256: self.base.id(),
            },
            lora: self.base.shape().clone(),
            privacy: Privacy {
                mode: if privacy.distributed() {
                    PrivacyMode::Distributed
                } else {
                    PrivacyMode::Local
                },
                noise_multiplier: privacy.sigma,
                clip_norm: privacy.clip_norm,
                delta: privacy.budget.delta,
                budget_rho: privacy.budget.rho.min(1e6),
            },
            aggregation: Aggregation {
                rule,
                optimizer,
                probe: self.probe_text.as_ref().map(|text| ProbeSet {
                    text: text.clone(),
                    max_increase: a.probe.max_increase,
                }),
                ..Aggregation::default()
            },
            schedule: Schedule {
                period: Period::Every {
                    secs: s.schedule.period_secs,
                },
                submit_secs: s.schedule.submit_secs,
                unmask_secs: s.schedule.unmask_secs,
                announce_secs: s.schedule.announce_secs,
                sampling_rate: s.schedule.sampling_rate,
                min_contributions: s.schedule.min_contributions,
            },
            limits: Limits {
                max_cohort: cohort,
                replay_senders: cohort,
                ..Limits::default()
            },
        }
    }

    /// Signs the manifest with the admin key.
    pub fn sign(&self, manifest: Manifest) -> Result<Signed<Manifest>> {
        Ok(Signed::sign(manifest, &self.admin)?)
    }

    /// Every member's certificate for `manifest`'s community, signed by the admin.
    pub fn certificates(&self, manifest: &Signed<Manifest>) -> Result<Vec<Signed<Certificate>>> {
        let community = manifest.body.community_id()?;
        self.members
            .iter()
            .map(|member| {
                let cert = Certificate {
                    member: member.id(),
                    community,
                    issued: T0,
                    expires: T0 + CERTIFICATE_DAYS * 86_400,
                    roles: vec![Role::Contributor],
                };
                Ok(Signed::sign(cert, &self.admin)?)
            })
            .collect()
    }

    /// A full node's community: the genesis (zero) adapter and every member's certificate.
    pub fn community(
        &self,
        manifest: &Signed<Manifest>,
        certificates: &[Signed<Certificate>],
    ) -> Result<Community> {
        let m = &manifest.body;
        let mut c = Community::new(
            manifest,
            State::genesis(Adapter::zeros(&m.lora)),
            Config {
                max_chain: CHAIN_KEPT,
                max_members: self.members.len().max(1),
                max_late: self.members.len().max(1),
                ..Config::default()
            },
        )?;
        for cert in certificates {
            c.add_certificate(cert, T0)?;
        }
        Ok(c)
    }
}

impl World {
    /// Member `i`'s secure-aggregation secret seed (a node draws it from the OS).
    pub fn secret(&self, i: usize) -> [u8; 32] {
        key(self.scenario.seed, 1_000_000 + i as u64).seed()
    }
}

/// Member `i`'s key (0 is the admin's), from the run seed.
fn key(seed: u64, i: u64) -> Keypair {
    let mut bytes = [0u8; 32];
    for (k, chunk) in bytes.chunks_exact_mut(8).enumerate() {
        chunk.copy_from_slice(&derive(seed, &[purpose::KEYS, i, k as u64]).to_le_bytes());
    }
    Keypair::from_seed(bytes)
}
