//! The federated arms: full nodes run the real [`Community`] state machine; every member trains,
//! clips, noises (or attacks), quantizes, signs and seals a real [`DeltaSubmission`] envelope;
//! the in-memory network carries the bytes; full nodes verify, aggregate, announce and reconcile
//! exactly as the node does.
//!
//! # One round, on the virtual clock
//!
//! 1. At the scheduled start every full node opens the round ([`Community::start_round`]); a
//!    light member takes its home node's head (a sync, counted as bytes received).
//! 2. The cohort is the round's Poisson sample ([`hearth_federation::Round::in_cohort`]); a
//!    cohort member drops out or straggles with the scenario's probabilities.
//! 3. Every remaining member trains from its head, then clips and noises (charging its
//!    ledger), or crafts its attack, quantizes, builds the submission and seals it; it publishes
//!    at `start + compute time (+ straggler delay)`. A full node also feeds its own delta to
//!    [`Community::submit_own`].
//! 4. Deliveries reach full nodes in time order ([`Community::on_bytes`]). At the submit deadline
//!    every full node ticks, closes the round and publishes its version announcement; the
//!    announcements are delivered and checked until the announce deadline; a last tick applies
//!    any adoption.

use std::collections::{BTreeMap, BTreeSet};

use hearth_federation::{Community, Output, Reason, State, norm_bound};
use hearth_protocol::{
    DeltaSubmission, DpParams, Hash32, LayerDelta, Manifest, Payload, PrivacyMode, Signed, Stamp,
    encode,
};
use hearth_training::{Ledger, fit_scale, quantize_exact};

use crate::attack;
use crate::error::{Error, Result};
use crate::metrics::RoundRow;
use crate::network::{Memory, Transport};
use crate::privacy::Privacy;
use crate::rng::{derive, purpose, stream};
use crate::scenario::{Arm, AttackKind};
use crate::world::{T0, World};

/// Bytes of a version fetched by a light member, besides the values (request, framing).
const SYNC_OVERHEAD: u64 = 256;
/// Time a full node takes to aggregate and announce, ms.
const ANNOUNCE_DELAY_MS: u64 = 1000;

/// What one member did in a round.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Activity {
    pub selected: bool,
    pub dropped: bool,
    pub straggler: bool,
    pub published: bool,
}

/// A member's activity, bytes sent and bytes received in one round.
pub(crate) type MemberRound = (Activity, u64, u64);

/// The state of a federated arm across rounds.
#[derive(Debug)]
pub(crate) struct Federated<'w> {
    world: &'w World,
    arm: Arm,
    privacy: Privacy,
    manifest: Manifest,
    community: Hash32,
    nodes: Vec<Community>,
    ledgers: Vec<Ledger>,
    net: Memory,
    synced: Vec<Option<Hash32>>,
    nonces: Vec<u64>,
    bound: f64,
    train_time: std::time::Duration,
}

/// A round's tallies at the full nodes.
#[derive(Debug, Default)]
struct Tally {
    rejected: BTreeMap<&'static str, usize>,
    closed: Option<(usize, String)>,
}

impl<'w> Federated<'w> {
    /// Sets up the arm: manifest, full nodes with every certificate, ledgers, network.
    pub fn new(world: &'w World, arm: Arm) -> Result<Self> {
        let s = &world.scenario;
        let dim = world.base.elements();
        let privacy = match arm {
            Arm::FederatedDp => Privacy::for_scenario(s, dim)?,
            _ => Privacy::none(s, dim)?,
        };
        let manifest = world.manifest(&privacy);
        let signed: Signed<Manifest> = world.sign(manifest.clone())?;
        let certificates = world.certificates(&signed)?;
        let full = s.full_nodes();
        let nodes = (0..full)
            .map(|_| world.community(&signed, &certificates))
            .collect::<Result<Vec<_>>>()?;
        let ledgers = (0..s.members)
            .map(|_| privacy.ledger())
            .collect::<Result<Vec<_>>>()?;
        let bound = norm_bound(privacy.clip_norm, privacy.noise_std(), dim);
        Ok(Federated {
            world,
            arm,
            community: manifest.community_id()?,
            manifest,
            nodes,
            ledgers,
            net: Memory::new(s.seed, s.network.clone(), s.members, full),
            synced: vec![None; s.members],
            nonces: vec![0; full],
            train_time: std::time::Duration::ZERO,
            privacy,
            bound,
        })
    }

    fn home(&self, member: usize) -> usize {
        member % self.nodes.len()
    }

    /// The head a member uses (its home node's).
    pub fn head_of(&self, member: usize) -> &State {
        self.nodes[self.home(member)].head()
    }

    /// Wall-clock time spent in local training since the last call.
    pub fn take_train_time(&mut self) -> std::time::Duration {
        std::mem::take(&mut self.train_time)
    }

    /// ε spent by `member`.
    pub fn epsilon(&self, member: usize) -> Result<f64> {
        self.privacy.epsilon(&self.ledgers[member])
    }

    /// Runs round `r`: returns the round's row (without evaluation) and every member's activity
    /// and bytes.
    pub fn round(&mut self, r: u64) -> Result<(RoundRow, Vec<MemberRound>)> {
        let world = self.world;
        let s = &world.scenario;
        let n = s.members;
        let start_s = T0 + r * s.schedule.period_secs;
        let start_ms = start_s * 1000;
        self.net.begin_round(r);
        self.nonces.fill(2);
        for node in &mut self.nodes {
            let out = node.start_round(r, start_s)?;
            if out.iter().any(|o| matches!(o, Output::Publish { .. })) {
                return Err(Error::run("a plain round asked to publish at its start"));
            }
        }
        // 1. Light members sync their home node's head.
        let heads: Vec<State> = self.nodes.iter().map(|c| c.head().clone()).collect();
        let versions: Vec<Hash32> = heads.iter().map(State::version).collect();
        let bytes_per_version = 4 * world.base.elements() as u64 + SYNC_OVERHEAD;
        for m in self.nodes.len()..n {
            let h = self.home(m);
            if self.synced[m] != Some(versions[h]) {
                self.net.transfer(h, m, bytes_per_version);
                self.synced[m] = Some(versions[h]);
            }
        }
        // 2. Cohort, dropouts, stragglers.
        let mut activity = vec![Activity::default(); n];
        for (m, a) in activity.iter_mut().enumerate() {
            let h = self.home(m);
            let Some(round) = self.nodes[h].round() else {
                return Err(Error::run("a full node has no open round"));
            };
            a.selected = round.in_cohort(&world.members[m].id());
            let mut rng = stream(s.seed, &[purpose::CHURN, r, m as u64]);
            a.dropped = a.selected && rng.bernoulli(s.churn.dropout);
            a.straggler = a.selected && !a.dropped && rng.bernoulli(s.churn.straggler);
        }
        // 3. Train, privatize or attack, seal, publish.
        let participants: Vec<usize> = (0..n)
            .filter(|&m| activity[m].selected && !activity[m].dropped)
            .filter(|&m| {
                world.members[m].attacker
                    || self.privacy.affordable(&self.ledgers[m]).unwrap_or(false)
            })
            .collect();
        let trained = participants.len();
        let vectors = self.local_updates(r, &participants, &heads)?;
        let receivers: Vec<usize> = (0..self.nodes.len()).collect();
        let mut own = Vec::new();
        let mut published = 0;
        for (m, values) in vectors {
            let h = self.home(m);
            let mut rng = stream(s.seed, &[purpose::COMPUTE, r, m as u64]);
            let compute = rng.range(s.churn.compute_secs[0], s.churn.compute_secs[1]) * 1000
                + rng.range(0, 999);
            let delay = if activity[m].straggler {
                s.churn.straggler_delay_secs * 1000
            } else {
                0
            };
            let send_ms = start_ms + compute + delay;
            let delta = self.submission(r, versions[h], &values, &world.members[m].train)?;
            let stamp = Stamp {
                community: self.community,
                round: r,
                nonce: 1,
                timestamp: send_ms / 1000,
            };
            let payload = Payload::Delta(delta);
            let bytes = encode(
                &world.members[m].key,
                stamp,
                &payload,
                &self.manifest.limits,
            )?;
            self.net.publish(m, send_ms, bytes, &receivers);
            activity[m].published = true;
            published += 1;
            if m < self.nodes.len()
                && let Payload::Delta(d) = payload
            {
                own.push((m, send_ms, d));
            }
        }
        // 4. Verification, aggregation, announcements.
        let mut tally = Tally::default();
        for (m, at, d) in own {
            // A late own delta is refused by the node itself, as on a real node.
            let _ = self.nodes[m].submit_own(world.members[m].id(), d, at / 1000);
        }
        let p = &s.schedule;
        let submit_end = start_ms + p.submit_secs * 1000;
        let announce_end = start_ms + p.announce_secs * 1000;
        let round_end = start_ms + p.period_secs * 1000 - 1;
        self.deliver(submit_end, &mut tally);
        self.tick_all(submit_end, r, &mut tally)?;
        self.deliver(announce_end, &mut tally);
        self.tick_all(announce_end, r, &mut tally)?;
        self.deliver(round_end, &mut tally);
        self.tick_all(round_end, r, &mut tally)?;

        let (sent, received) = self.net.take_bytes();
        let distinct: BTreeSet<Hash32> = self.nodes.iter().map(|c| c.head().version()).collect();
        let (contributions, outcome) = tally.closed.clone().unwrap_or((0, "-".into()));
        let epsilon = (0..n)
            .map(|m| self.epsilon(m))
            .collect::<Result<Vec<_>>>()?
            .into_iter()
            .fold(0.0f64, f64::max);
        let row = RoundRow {
            arm: self.arm,
            round: r,
            loss: None,
            accuracy: None,
            eval_tokens: 0,
            epsilon,
            trained,
            published,
            contributions,
            rejected: tally.rejected.values().sum(),
            over_norm: tally
                .rejected
                .get(Reason::OverNorm.name())
                .copied()
                .unwrap_or(0),
            late: tally
                .rejected
                .get(Reason::Late.name())
                .copied()
                .unwrap_or(0),
            versions: distinct.len(),
            outcome,
            version: self.nodes[0].head().version().short(),
            bytes_sent: sent.iter().sum(),
            bytes_received: received.iter().sum(),
        };
        let per_member = (0..n)
            .map(|m| (activity[m], sent[m], received[m]))
            .collect();
        Ok((row, per_member))
    }

    /// Every participant's published vector (wire layout), in member order.
    fn local_updates(
        &mut self,
        r: u64,
        participants: &[usize],
        heads: &[State],
    ) -> Result<Vec<(usize, Vec<f32>)>> {
        let world = self.world;
        let s = &world.scenario;
        let base = &world.base;
        let mut out = Vec::with_capacity(participants.len());
        let mut alie_honest = Vec::new();
        for &m in participants {
            let member = &world.members[m];
            let head = &heads[self.home(m)];
            let start = base.from_wire(&head.adapter.to_flat());
            let seed = derive(s.seed, &[purpose::TRAIN, r, m as u64]);
            let t = std::time::Instant::now();
            let trained = base.train(s, &start, &member.train, s.training.local_steps, seed)?;
            self.train_time += t.elapsed();
            let raw: Vec<f32> = trained.iter().zip(&start).map(|(a, b)| a - b).collect();
            let mut raw = base.to_wire(&raw);
            let mut noise_rng = stream(s.seed, &[purpose::NOISE, r, m as u64]);
            let kind = s.attack.kind;
            if member.attacker && !attack::follows_protocol(kind) {
                let mut rng = stream(s.seed, &[purpose::ATTACK, r, m as u64]);
                out.push((
                    m,
                    attack::craft(kind, s.attack.boost, &raw, self.bound, &mut rng),
                ));
                continue;
            }
            if member.attacker && kind == AttackKind::SignFlip {
                let mut rng = stream(s.seed, &[purpose::ATTACK, r, m as u64]);
                raw = attack::craft(kind, s.attack.boost, &raw, self.bound, &mut rng);
            }
            let Some(v) =
                self.privacy
                    .release(&mut self.ledgers[m], r, &mut raw, &mut noise_rng)?
            else {
                continue;
            };
            if member.attacker && kind == AttackKind::Alie {
                alie_honest.push((m, v));
            } else {
                out.push((m, v));
            }
        }
        if !alie_honest.is_empty() {
            let honest: Vec<Vec<f32>> = alie_honest.iter().map(|(_, v)| v.clone()).collect();
            let crafted = attack::alie(&honest, participants.len(), self.bound);
            out.extend(alie_honest.into_iter().map(|(m, _)| (m, crafted.clone())));
            out.sort_by_key(|(m, _)| *m);
        }
        Ok(out)
    }

    /// A submission of `values` (wire layout) on `parent`.
    fn submission(
        &self,
        r: u64,
        parent: Hash32,
        values: &[f32],
        train: &[u32],
    ) -> Result<DeltaSubmission> {
        let scale = fit_scale(values)?;
        let q = quantize_exact(values, scale)?;
        let mut rest = q.values.as_slice();
        let mut layers = Vec::new();
        for t in self.manifest.lora.tensors() {
            let k = (t.rows * t.cols) as usize;
            if rest.len() < k {
                return Err(Error::run("delta shorter than the adapter"));
            }
            let (head, tail) = rest.split_at(k);
            rest = tail;
            layers.push(LayerDelta {
                name: t.name,
                rows: t.rows,
                cols: t.cols,
                values: head.to_vec(),
            });
        }
        let windows = self.world.scenario.training.seq_len + 1;
        let samples = (train.len() / windows).clamp(1, u32::MAX as usize) as u32;
        Ok(DeltaSubmission::new(
            r,
            parent,
            layers,
            scale,
            samples,
            DpParams {
                mode: PrivacyMode::Local,
                clip_norm: self.privacy.clip_norm,
                noise_multiplier: self.privacy.sigma,
                noise_std: self.privacy.noise_std(),
            },
        ))
    }

    /// Delivers everything due by `until_ms` to the full nodes.
    fn deliver(&mut self, until_ms: u64, tally: &mut Tally) {
        while let Some(d) = self.net.next_until(until_ms) {
            let Some(node) = self.nodes.get_mut(d.to) else {
                continue;
            };
            if let Err(rejection) = node.on_bytes(&d.bytes, d.at_ms / 1000) {
                *tally.rejected.entry(rejection.reason.name()).or_default() += 1;
            }
        }
    }

    /// Ticks every full node at `at_ms`, publishing what they ask to publish.
    fn tick_all(&mut self, at_ms: u64, r: u64, tally: &mut Tally) -> Result<()> {
        let receivers: Vec<usize> = (0..self.nodes.len()).collect();
        for i in 0..self.nodes.len() {
            let outputs = self.nodes[i].tick(at_ms / 1000);
            for o in outputs {
                match o {
                    Output::Publish { round, payload } => {
                        let stamp = Stamp {
                            community: self.community,
                            round,
                            nonce: self.nonces[i],
                            timestamp: (at_ms + ANNOUNCE_DELAY_MS) / 1000,
                        };
                        self.nonces[i] += 1;
                        let key = &self.world.members[i].key;
                        let bytes = encode(key, stamp, &payload, &self.manifest.limits)?;
                        self.net
                            .publish(i, at_ms + ANNOUNCE_DELAY_MS, bytes, &receivers);
                    }
                    Output::Closed(record) if i == 0 && record.round == r => {
                        tally.closed = Some((record.inputs.len(), "closed".into()));
                    }
                    Output::Failed { round, reason } if i == 0 && round == r => {
                        tally.closed = Some((0, format!("failed: {reason}")));
                    }
                    Output::Rejected(rejection) => {
                        *tally.rejected.entry(rejection.reason.name()).or_default() += 1;
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }
}
