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

use hearth_federation::secagg::Engine;
use hearth_federation::{Community, Output, Reason, State, norm_bound};
use hearth_protocol::{
    DeltaSubmission, DpParams, Hash32, LayerDelta, Manifest, Payload, PrivacyMode, Signed, Stamp,
    encode,
};
use hearth_training::{Ledger, fit_scale, quantize_exact};

use crate::attack;
use crate::error::{Error, Result};
use crate::metrics::RoundRow;
use crate::network::{self, Transport};
use crate::privacy::Privacy;
use crate::rng::{derive, purpose, stream};
use crate::scenario::{Arm, AttackKind};
use crate::trace::State as TraceState;
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
    net: Box<dyn Transport>,
    synced: Vec<Option<Hash32>>,
    nonces: Vec<u64>,
    down: Vec<bool>,
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
        let probe = match &world.probe_text {
            Some(text) => Some(crate::model::SharedProbe::new(&world.base, text)?),
            None => None,
        };
        let nodes = (0..full)
            .map(|i| {
                let mut c = world.community(&signed, &certificates)?;
                if let Some(p) = &probe {
                    c = c.with_probe(Box::new(p.clone()));
                }
                Ok(if privacy.distributed() {
                    let engine = Engine::new(world.members[i].id(), world.secret(i));
                    c.with_secure_aggregation(Box::new(engine))
                } else {
                    c
                })
            })
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
            net: network::build(s.seed, &s.network, s.members, full)?,
            synced: vec![None; s.members],
            nonces: vec![0; full],
            down: vec![false; full],
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
        let secure = self.privacy.distributed();
        let p = &s.schedule;
        let start_s = T0 + r * p.period_secs;
        let start_ms = start_s * 1000;
        self.net.begin_round(r);
        self.nonces.fill(2);
        let mut tally = Tally::default();
        self.catch_up()?;
        for i in 0..self.nodes.len() {
            let out = self.nodes[i].start_round(r, start_s)?;
            self.publish_outputs(i, out, start_ms, r, &mut tally)?;
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
            // The trace decides the pairs it names; the probabilities the others.
            let mut rng = stream(s.seed, &[purpose::CHURN, r, m as u64]);
            let (down, slow) = match world.trace.state(r, m) {
                Some(state) => (state == TraceState::Down, state == TraceState::Slow),
                None => {
                    let down = rng.bernoulli(s.churn.dropout);
                    (down, !down && rng.bernoulli(s.churn.straggler))
                }
            };
            a.dropped = a.selected && down;
            a.straggler = a.selected && !a.dropped && slow;
        }
        let clock = *self.nodes[0]
            .round()
            .ok_or_else(|| Error::run("no open round"))?
            .clock();
        if secure {
            // Keys and shares; then the members that drop out go down before submitting.
            let keys_end = clock.keys_end * 1000;
            let shares_end = clock.shares_end * 1000;
            self.deliver(keys_end, &mut tally);
            self.tick_all(keys_end, r, &mut tally)?;
            self.deliver(shares_end, &mut tally);
            self.tick_all(shares_end, r, &mut tally)?;
            for (m, a) in activity.iter().enumerate() {
                self.down[m] = a.dropped;
            }
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
        let vectors = self.local_updates(r, &participants, &heads, !secure)?;
        let receivers: Vec<usize> = (0..self.nodes.len()).collect();
        let mut own = Vec::new();
        let mut published = 0;
        for (m, values, crafted) in vectors {
            let h = self.home(m);
            let mut rng = stream(s.seed, &[purpose::COMPUTE, r, m as u64]);
            let compute = rng.range(s.churn.compute_secs[0], s.churn.compute_secs[1]) * 1000
                + rng.range(0, 999);
            let delay = if activity[m].straggler {
                s.churn.straggler_delay_secs * 1000
            } else {
                0
            };
            let mut send_ms = start_ms + compute + delay;
            if secure {
                // A member holds its masked input until the submit phase opens.
                send_ms = send_ms.max(clock.shares_end * 1000 + compute % 1000 + delay);
                let id = world.members[m].id();
                let Some(cal) = self.nodes[m].calibration(&id) else {
                    continue;
                };
                let ints = if crafted {
                    quantize_exact(&values, cal.scale())?.values
                } else {
                    let mut v = values;
                    let mut noise_rng = stream(s.seed, &[purpose::NOISE, r, m as u64]);
                    let released = self.privacy.release_share(
                        &mut self.ledgers[m],
                        r,
                        &mut v,
                        &cal,
                        &mut noise_rng,
                    )?;
                    let Some(ints) = released else { continue };
                    ints
                };
                let dp = DpParams {
                    mode: PrivacyMode::Distributed,
                    clip_norm: self.privacy.clip_norm,
                    noise_multiplier: self.privacy.sigma,
                    noise_std: cal.share_std(),
                };
                let delta = self.layered(r, versions[h], ints, cal.scale(), dp, m)?;
                // A late or refused own input leaves the member out, as on a real node.
                if let Ok(out) = self.nodes[m].submit_own(id, delta, send_ms / 1000) {
                    if out.iter().any(|o| {
                        matches!(
                            o,
                            Output::Publish {
                                payload: Payload::Masked(_),
                                ..
                            }
                        )
                    }) {
                        activity[m].published = true;
                        published += 1;
                    }
                    self.publish_outputs(m, out, send_ms, r, &mut tally)?;
                }
                continue;
            }
            let delta = self.submission(r, versions[h], &values, m)?;
            let stamp = Stamp {
                community: self.community,
                round: r,
                nonce: 1,
                timestamp: send_ms / 1000,
            };
            let payload = Payload::Delta(delta);
            let key = &world.members[m].key;
            let bytes = encode(key, stamp, &payload, &self.manifest.limits)?;
            self.net.publish(m, send_ms, bytes, &receivers);
            activity[m].published = true;
            published += 1;
            if m < self.nodes.len()
                && let Payload::Delta(d) = payload
            {
                own.push((m, send_ms, d));
            }
        }
        for (m, at, d) in own {
            // A late own delta is refused by the node itself, as on a real node.
            let _ = self.nodes[m].submit_own(world.members[m].id(), d, at / 1000);
        }
        // 4. Verification, (un)masking, aggregation, announcements.
        let submit_end = clock.submit_end * 1000;
        let unmask_end = clock.unmask_end * 1000;
        let mut ticks = vec![submit_end];
        if secure {
            ticks.extend([(submit_end + unmask_end) / 2, unmask_end]);
        }
        ticks.extend([
            clock.announce_end * 1000,
            start_ms + p.period_secs * 1000 - 1,
        ]);
        for at in ticks {
            self.deliver(at, &mut tally);
            self.tick_all(at, r, &mut tally)?;
        }

        let (sent, received) = self.net.take_bytes();
        let distinct: BTreeSet<Hash32> = (0..self.nodes.len())
            .filter(|&i| !self.down[i])
            .map(|i| self.nodes[i].head().version())
            .collect();
        let (contributions, outcome) = tally.closed.clone().unwrap_or((0, "-".into()));
        let epsilon = (0..n)
            .map(|m| self.epsilon(m))
            .collect::<Result<Vec<_>>>()?
            .into_iter()
            .fold(0.0f64, f64::max);
        let count = |reason: Reason| tally.rejected.get(reason.name()).copied().unwrap_or(0);
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
            over_norm: count(Reason::OverNorm),
            late: count(Reason::Late),
            versions: distinct.len(),
            outcome,
            version: self.nodes[self.live()].head().version().short(),
            bytes_sent: sent.iter().sum(),
            bytes_received: received.iter().sum(),
            backdoor_loss: None,
            backdoor_accuracy: None,
        };
        let per_member = (0..n)
            .map(|m| (activity[m], sent[m], received[m]))
            .collect();
        Ok((row, per_member))
    }

    /// The first node that is up.
    fn live(&self) -> usize {
        self.down.iter().position(|d| !d).unwrap_or(0)
    }

    /// Nodes that were down during the last round fetch the version of a live node (the node's
    /// catch-up over `/hearth/sync/1`; counted as bytes, trusted here) and come back up.
    fn catch_up(&mut self) -> Result<()> {
        if !self.down.iter().any(|d| *d) {
            return Ok(());
        }
        let live = self.live();
        let (round, state) = (
            self.nodes[live].head_round(),
            self.nodes[live].head().clone(),
        );
        let recent: Vec<_> = self.nodes[live].chain().cloned().collect();
        let bytes = 4 * self.world.base.elements() as u64 + SYNC_OVERHEAD;
        for i in 0..self.nodes.len() {
            if self.down[i] {
                // Restoring also ends the round the node left open when it went down.
                if self.nodes[i].head().version() != state.version() {
                    self.net.transfer(live, i, bytes);
                }
                self.nodes[i].restore(round, state.clone(), recent.clone())?;
                self.down[i] = false;
            }
        }
        Ok(())
    }

    /// Every participant's vector (wire layout), in member order, and whether it was crafted by
    /// an attacker (sent as is). With `release`, honest vectors are clipped and noised here
    /// (local mode); otherwise they are returned raw, for the group's release (distributed).
    fn local_updates(
        &mut self,
        r: u64,
        participants: &[usize],
        heads: &[State],
        release: bool,
    ) -> Result<Vec<(usize, Vec<f32>, bool)>> {
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
            let poisoned;
            let data = if member.attacker && s.attack.kind == AttackKind::Backdoor {
                let a = &s.attack;
                poisoned = attack::poison(
                    &member.train,
                    &crate::backdoor::tokens(&a.trigger),
                    &crate::backdoor::tokens(&a.target),
                    a.poison_every,
                );
                &poisoned
            } else {
                &member.train
            };
            let trained = base.train(s, &start, data, s.training.local_steps, seed)?;
            self.train_time += t.elapsed();
            let raw: Vec<f32> = trained.iter().zip(&start).map(|(a, b)| a - b).collect();
            let mut raw = base.to_wire(&raw);
            let kind = s.attack.kind;
            if member.attacker && !attack::follows_protocol(kind) {
                let mut rng = stream(s.seed, &[purpose::ATTACK, r, m as u64]);
                let v = attack::craft(kind, s.attack.boost, &raw, self.bound, &mut rng);
                out.push((m, v, true));
                continue;
            }
            let v = if release {
                let mut noise_rng = stream(s.seed, &[purpose::NOISE, r, m as u64]);
                match self
                    .privacy
                    .release(&mut self.ledgers[m], r, &mut raw, &mut noise_rng)?
                {
                    Some(v) => v,
                    None => continue,
                }
            } else if member.attacker {
                hearth_training::clip(&mut raw, self.privacy.clip_norm)?;
                raw
            } else {
                raw
            };
            if member.attacker && kind == AttackKind::Alie {
                alie_honest.push((m, v));
            } else {
                out.push((m, v, false));
            }
        }
        if !alie_honest.is_empty() {
            let honest: Vec<Vec<f32>> = alie_honest.iter().map(|(_, v)| v.clone()).collect();
            let crafted = attack::alie(&honest, participants.len(), self.bound);
            out.extend(
                alie_honest
                    .into_iter()
                    .map(|(m, _)| (m, crafted.clone(), true)),
            );
            out.sort_by_key(|(m, _, _)| *m);
        }
        Ok(out)
    }

    /// A local-mode submission of `values` (wire layout) on `parent`, from member `m`.
    fn submission(
        &self,
        r: u64,
        parent: Hash32,
        values: &[f32],
        m: usize,
    ) -> Result<DeltaSubmission> {
        let scale = fit_scale(values)?;
        let q = quantize_exact(values, scale)?;
        let dp = DpParams {
            mode: PrivacyMode::Local,
            clip_norm: self.privacy.clip_norm,
            noise_multiplier: self.privacy.sigma,
            noise_std: self.privacy.noise_std(),
        };
        self.layered(r, parent, q.values, scale, dp, m)
    }

    /// Cuts quantized values (wire order) into the manifest's tensors.
    fn layered(
        &self,
        r: u64,
        parent: Hash32,
        values: Vec<i32>,
        scale: f32,
        dp: DpParams,
        m: usize,
    ) -> Result<DeltaSubmission> {
        let mut rest = values.as_slice();
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
        let train = self.world.members[m].train.len();
        let samples = (train / windows).clamp(1, u32::MAX as usize) as u32;
        Ok(DeltaSubmission::new(r, parent, layers, scale, samples, dp))
    }

    /// Delivers everything due by `until_ms` to the full nodes.
    fn deliver(&mut self, until_ms: u64, tally: &mut Tally) {
        while let Some(d) = self.net.next_until(until_ms) {
            if self.down.get(d.to).copied().unwrap_or(true) {
                continue;
            }
            let Some(node) = self.nodes.get_mut(d.to) else {
                continue;
            };
            if let Err(rejection) = node.on_bytes(&d.bytes, d.at_ms / 1000) {
                *tally.rejected.entry(rejection.reason.name()).or_default() += 1;
            }
        }
    }

    /// Ticks every full node that is up at `at_ms`, publishing what they ask to publish.
    fn tick_all(&mut self, at_ms: u64, r: u64, tally: &mut Tally) -> Result<()> {
        for i in 0..self.nodes.len() {
            if self.down[i] {
                continue;
            }
            let outputs = self.nodes[i].tick(at_ms / 1000);
            self.publish_outputs(i, outputs, at_ms + ANNOUNCE_DELAY_MS, r, tally)?;
        }
        Ok(())
    }

    /// Seals and publishes what node `i` asks to publish (at `at_ms`), and tallies the rest.
    fn publish_outputs(
        &mut self,
        i: usize,
        outputs: Vec<Output>,
        at_ms: u64,
        r: u64,
        tally: &mut Tally,
    ) -> Result<()> {
        let receivers: Vec<usize> = (0..self.nodes.len()).collect();
        for o in outputs {
            match o {
                Output::Publish { round, payload } => {
                    let stamp = Stamp {
                        community: self.community,
                        round,
                        nonce: self.nonces[i],
                        timestamp: at_ms / 1000,
                    };
                    self.nonces[i] += 1;
                    let key = &self.world.members[i].key;
                    let bytes = encode(key, stamp, &payload, &self.manifest.limits)?;
                    self.net.publish(i, at_ms, bytes, &receivers);
                }
                Output::Closed(record) if i == self.live() && record.round == r => {
                    tally.closed = Some((record.inputs.len(), "closed".into()));
                }
                Output::Failed { round, reason } if i == self.live() && round == r => {
                    tally.closed = Some((0, format!("failed: {reason}")));
                }
                Output::Rejected(rejection) => {
                    *tally.rejected.entry(rejection.reason.name()).or_default() += 1;
                }
                _ => {}
            }
        }
        Ok(())
    }
}
