//! A deterministic in-process network of [`Community`] nodes running secure rounds with the real
//! [`Engine`]: every published payload is sealed with its node's key and handed, as bytes, to
//! every other node that is up. Used by `secure_rounds`.

use std::collections::BTreeSet;

use hearth_protocol::{
    DeltaSubmission, DpParams, Hash32, Keypair, Kind, LayerDelta, Manifest, MemberId, Payload,
    PrivacyMode, Rule,
};

use super::*;
use crate::secagg::Engine;
use crate::testutil::{Gen, community, manifest, member, seal, start};

/// A distributed-mode test manifest (σ = 1, C = 1, d = 28, rounds every 600 s).
pub(super) fn secure_manifest(rule: Rule) -> Manifest {
    let mut m = manifest(rule);
    m.privacy.mode = PrivacyMode::Distributed;
    m
}

/// The secret seed of member `i`'s engine.
pub(super) fn secret(i: u32) -> [u8; 32] {
    let mut s = [0x5a; 32];
    s[..4].copy_from_slice(&i.to_be_bytes());
    s
}

/// A member's quantized input: a shared signal of norm `C/2` plus noise of the group's share
/// std, from generator seed `seed`, quantized at the group's scale.
pub(super) fn input(m: &Manifest, cal: &Calibration, seed: u64) -> Vec<i32> {
    let d = m.lora.elements() as usize;
    let mut shared = Gen::new(0x5161);
    let dir: Vec<f64> = (0..d).map(|_| shared.normal()).collect();
    let len = dir.iter().map(|x| x * x).sum::<f64>().sqrt();
    let mut g = Gen::new(seed);
    let tau = cal.share_std();
    let values: Vec<f32> = dir
        .iter()
        .map(|x| (x / len * 0.5 + tau * g.normal()) as f32)
        .collect();
    hearth_training::quantize_exact(&values, cal.scale())
        .unwrap()
        .values
}

/// A distributed-mode submission of quantized `values` at the calibration's scale and share.
pub(super) fn submission(
    m: &Manifest,
    round: u64,
    base: Hash32,
    cal: &Calibration,
    values: &[i32],
) -> DeltaSubmission {
    let mut rest = values;
    let layers = m
        .lora
        .tensors()
        .into_iter()
        .map(|t| {
            let (head, tail) = rest.split_at((t.rows * t.cols) as usize);
            rest = tail;
            LayerDelta {
                name: t.name,
                rows: t.rows,
                cols: t.cols,
                values: head.to_vec(),
            }
        })
        .collect();
    let p = &m.privacy;
    DeltaSubmission::new(
        round,
        base,
        layers,
        cal.scale(),
        1,
        DpParams {
            mode: PrivacyMode::Distributed,
            clip_norm: p.clip_norm,
            noise_multiplier: p.noise_multiplier,
            noise_std: cal.share_std(),
        },
    )
}

/// One node: its key, its community and everything it output.
pub(super) struct Node {
    pub key: Keypair,
    pub community: Community,
    pub outputs: Vec<Output>,
}

impl Node {
    pub fn id(&self) -> MemberId {
        self.key.member_id()
    }

    /// The version this node closed the round with, if it did.
    pub fn closed(&self) -> Option<&VersionRecord> {
        self.outputs.iter().find_map(|o| match o {
            Output::Closed(r) => Some(r),
            _ => None,
        })
    }

    /// Why the round failed here, if it did.
    pub fn failed(&self) -> Option<&FailReason> {
        self.outputs.iter().find_map(|o| match o {
            Output::Failed { reason, .. } => Some(reason),
            _ => None,
        })
    }
}

/// Nodes `1..=n`, all certified members, round 1 at [`start`]`(1)`.
pub(super) struct Net {
    pub m: Manifest,
    pub nodes: Vec<Node>,
    /// Nodes that neither send, receive nor tick.
    pub down: BTreeSet<usize>,
    /// Nodes that receive but do not tick (their clocks are not looked at).
    pub asleep: BTreeSet<usize>,
    /// Every rejection a node returned for a delivered message.
    pub rejections: Vec<(usize, Rejection)>,
    /// Every payload published, by sender index.
    pub sent: Vec<(usize, Payload)>,
    /// Bytes of every sealed envelope, by sender index.
    pub bytes: Vec<usize>,
    /// Every sealed envelope published, with its sender index, in order.
    pub envelopes: Vec<(usize, Vec<u8>)>,
    /// Payloads of these (sender, kind) are recorded but never delivered.
    pub withhold: Vec<(usize, Kind)>,
    nonce: u64,
}

impl Net {
    /// `n` nodes with engines seeded by [`secret`].
    pub fn new(m: &Manifest, n: u32) -> Net {
        Net::with_secrets(m, n, secret)
    }

    pub fn with_secrets(m: &Manifest, n: u32, secret: impl Fn(u32) -> [u8; 32]) -> Net {
        Net::build(m, n, None, secret)
    }

    /// `n` nodes of a community whose manifest sets another smallest group.
    pub fn with_min_group(m: &Manifest, n: u32, min_group_size: usize) -> Net {
        Net::build(m, n, Some(min_group_size), secret)
    }

    fn build(
        m: &Manifest,
        n: u32,
        min_group_size: Option<usize>,
        secret: impl Fn(u32) -> [u8; 32],
    ) -> Net {
        let mut m = m.clone();
        if let Some(min) = min_group_size {
            m.aggregation.min_group_size = min as u32;
        }
        let nodes = (1..=n)
            .map(|i| {
                let engine = Engine::new(member(i).member_id(), secret(i));
                let c = community(&m, n);
                Node {
                    key: member(i),
                    community: c.with_secure_aggregation(Box::new(engine)),
                    outputs: Vec::new(),
                }
            })
            .collect();
        Net {
            m,
            nodes,
            down: BTreeSet::new(),
            asleep: BTreeSet::new(),
            rejections: Vec::new(),
            sent: Vec::new(),
            bytes: vec![0; n as usize],
            envelopes: Vec::new(),
            withhold: Vec::new(),
            nonce: 0,
        }
    }

    /// Time `t` seconds into round 1.
    pub fn at(t: u64) -> u64 {
        start(1) + t
    }

    fn up(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|i| !self.down.contains(i))
            .collect()
    }

    /// Opens round 1 on every node that is up and awake, at `now`.
    pub fn start(&mut self, now: u64) {
        // Every node opens the round before anything is delivered (a message for a round not
        // yet open would be refused as `future_round`).
        let outs: Vec<(usize, Vec<Output>)> = self
            .awake()
            .into_iter()
            .map(|i| (i, self.nodes[i].community.start_round(1, now).unwrap()))
            .collect();
        for (i, out) in outs {
            self.deliver(i, out, now);
        }
    }

    /// Records `outputs` of node `from` and delivers what it publishes to every other node up.
    pub fn deliver(&mut self, from: usize, outputs: Vec<Output>, now: u64) {
        for o in outputs {
            if let Output::Publish { round, payload } = &o {
                self.nonce += 1;
                let bytes = seal(&self.m, &self.nodes[from].key, *round, self.nonce, payload);
                self.bytes[from] += bytes.len();
                self.sent.push((from, payload.clone()));
                if !self.withhold.contains(&(from, payload.kind())) {
                    self.send(from, &bytes, now);
                }
                self.envelopes.push((from, bytes));
            }
            self.nodes[from].outputs.push(o);
        }
    }

    /// Hands sealed `bytes` to every node up but `from`, recording rejections.
    pub fn send(&mut self, from: usize, bytes: &[u8], now: u64) {
        for j in self.up() {
            if j == from {
                continue;
            }
            if let Err(r) = self.nodes[j].community.on_bytes(bytes, now) {
                self.rejections.push((j, r));
            }
        }
    }

    fn awake(&self) -> Vec<usize> {
        let up = self.up();
        up.into_iter()
            .filter(|i| !self.asleep.contains(i))
            .collect()
    }

    /// Ticks every node up and awake at `now`, delivering what they publish.
    pub fn tick(&mut self, now: u64) {
        for i in self.awake() {
            let out = self.nodes[i].community.tick(now);
            self.deliver(i, out, now);
        }
    }

    /// Node `i`'s own delta for round 1, calibrated for its group, from input seed `seed`.
    pub fn own_delta(&self, i: usize, seed: u64) -> (DeltaSubmission, Calibration) {
        let node = &self.nodes[i];
        let cal = node.community.calibration(&node.id()).expect("in a group");
        let parent = node.community.round().unwrap().parent();
        let values = input(&self.m, &cal, seed);
        (submission(&self.m, 1, parent, &cal, &values), cal)
    }

    /// Every node up and in a group (except `skip`) submits its own delta at `now`; returns
    /// the deltas by node.
    pub fn submit(&mut self, now: u64, skip: &[usize]) -> Vec<(usize, DeltaSubmission)> {
        self.submit_with(now, skip, |net, i| net.own_delta(i, 1_000 + i as u64).0)
    }

    /// [`Net::submit`] with the deltas made by `make(net, node)`.
    pub fn submit_with(
        &mut self,
        now: u64,
        skip: &[usize],
        mut make: impl FnMut(&Net, usize) -> DeltaSubmission,
    ) -> Vec<(usize, DeltaSubmission)> {
        let mut deltas = Vec::new();
        for i in self.awake() {
            let node = &self.nodes[i];
            if skip.contains(&i) || node.community.calibration(&node.id()).is_none() {
                continue;
            }
            let delta = make(self, i);
            let me = self.nodes[i].id();
            let out = self.nodes[i]
                .community
                .submit_own(me, delta.clone(), now)
                .unwrap();
            assert!(
                out.iter().any(|o| matches!(
                    o,
                    Output::Publish {
                        payload: Payload::Masked(_),
                        ..
                    }
                )),
                "node {i} published no masked input"
            );
            self.deliver(i, out, now);
            deltas.push((i, delta));
        }
        deltas
    }

    /// Drives a whole round: keys, shares, submit (all but `skip`), survivors and unmasking, and
    /// the close at the unmask deadline. `drop_at(phase)` names nodes that go down when
    /// `phase` starts.
    pub fn run(
        &mut self,
        skip: &[usize],
        drop_at: impl Fn(Phase) -> Vec<usize>,
    ) -> Vec<(usize, DeltaSubmission)> {
        self.start(Net::at(0));
        self.down.extend(drop_at(Phase::Shares));
        self.tick(Net::at(75));
        self.down.extend(drop_at(Phase::Submit));
        self.tick(Net::at(150));
        let deltas = self.submit(Net::at(151), skip);
        self.down.extend(drop_at(Phase::Unmask));
        self.tick(Net::at(300));
        self.tick(Net::at(301));
        self.tick(Net::at(420));
        deltas
    }

    /// The single version every node up closed with (panics if they differ or one failed).
    pub fn agreed(&self) -> VersionRecord {
        let mut records = self.up().into_iter().map(|i| {
            self.nodes[i]
                .closed()
                .unwrap_or_else(|| panic!("node {i} did not close: {:?}", self.nodes[i].failed()))
                .clone()
        });
        let first = records.next().expect("a node up");
        for r in records {
            assert_eq!(r, first, "nodes disagree");
        }
        first
    }
}

/// `Σ q·s / n` over `deltas`, per coordinate, in `f64`: the plain mean of the inputs.
pub(super) fn plain_mean(deltas: &[&DeltaSubmission]) -> Vec<f64> {
    let n = deltas.len() as f64;
    let d = deltas[0].elements();
    let mut mean = vec![0.0; d];
    for delta in deltas {
        let values = delta.layers.iter().flat_map(|l| l.values.iter());
        for (m, q) in mean.iter_mut().zip(values) {
            *m += f64::from(*q) * f64::from(delta.scale) / n;
        }
    }
    mean
}
