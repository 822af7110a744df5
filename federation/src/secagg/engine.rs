//! [`Engine`]: the [`SecureAggregator`] a node installs in its
//! [`Community`](crate::Community) for `distributed` rounds, built on [`Member`] and
//! [`Aggregator`].
//!
//! At the round's start every node derives the same groups from public data
//! ([`RoundInfo::groups`]: the certified members drawn into the cohort, dealt from the round
//! seed) and, for each group, the same [`Cohort`] (seeded by [`group_seed`]) and [`Calibration`]
//! ([`calibrate`]). It then runs
//!
//! - an [`Aggregator`] for **every** group, fed with every public message, so that any node —
//!   in the cohort or not — computes every group's sum and hence the next version itself;
//! - a [`Member`] for its own group when it is in the cohort, whose secrets come from the node's
//!   secret seed through [`member_seed`] (the engine draws no randomness).
//!
//! Its own member acts at most once per phase, only inside that phase's window (by the tick's
//! phase), so a node that wakes up late drops out of the round rather than send late messages:
//!
//! | phase | the node's member |
//! |---|---|
//! | keys | publishes its [`KeyAdvertisement`](hearth_protocol::KeyAdvertisement) |
//! | shares | publishes its encrypted shares ([`Member::share`]) |
//! | submit | masks the own input when [`SecureAggregator::submit_own`] hands it over |
//! | unmask | announces its survivor set, then reveals its shares once a set is agreed |
//!
//! Each sender may send one message of each kind per round: the same one again is a
//! `duplicate`, another one an `equivocation`. A masked input is accepted only from a sender
//! whose encrypted shares were accepted (the survivors must be unmaskable).

use std::collections::BTreeMap;
use std::fmt;

use hearth_protocol::{Hash32, Hasher, Kind, Manifest, MemberId, Message, Payload};
use hearth_training::{DistributedGaussian, NoiseParams};
use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::clock::Phase;
use crate::hooks::{Calibration, GroupSum, RoundInfo, SecureAggregator};
use crate::reject::{Reason, Rejection};
use crate::secagg::{Aggregator, Cohort, Config, Error, Member};

mod own;
mod route;
#[cfg(test)]
mod tests;

use self::own::{Own, Step};
use self::route::{digest, reason, route};

/// Domain of [`group_seed`].
pub const GROUP_SEED_DOMAIN: &[u8] = b"hearth/secagg-group/v1\0";

/// HKDF `info` label of [`member_seed`].
pub const MEMBER_SEED_LABEL: &[u8] = b"hearth/secagg-member/v1";

/// The seed of one group's secure aggregation (graph, key derivation):
/// `SHA-256(GROUP_SEED_DOMAIN ‖ round seed ‖ u64 k ‖ each member)`. Naming the members makes
/// nodes that disagree on a group fail visibly instead of masking with different graphs.
pub fn group_seed(round_seed: &Hash32, group: &[MemberId]) -> Hash32 {
    let mut h = Hasher::new(GROUP_SEED_DOMAIN);
    h.hash(round_seed).u64(group.len() as u64);
    for m in group {
        h.bytes(m.as_bytes());
    }
    h.finish()
}

/// A member's per-round seed from its long-lived secret:
/// `HKDF-SHA256(salt = group seed, ikm = secret, info = MEMBER_SEED_LABEL ‖ u64be round ‖ me)`.
pub fn member_seed(secret: &[u8; 32], group_seed: &Hash32, round: u64, me: &MemberId) -> [u8; 32] {
    let hk = Hkdf::<Sha256>::new(Some(&group_seed.0), secret);
    let mut out = [0u8; 32];
    let round = round.to_be_bytes();
    let info: [&[u8]; 3] = [MEMBER_SEED_LABEL, &round, me.as_bytes()];
    // 32 bytes are far below HKDF-SHA256's output limit: expand cannot fail.
    let _ = hk.expand_multi_info(&info, &mut out);
    out
}

/// The noise calibration of a group of `k` members: `t = ⌊δ·k⌋` (the [`Config`]'s
/// `max_dropout`, the same `t` that sets the survivor quorum `k − t`), and the training crate's
/// [`DistributedGaussian`] for a cohort `(k, t)` over `elements` values at its default scale.
pub fn calibrate(
    manifest: &Manifest,
    elements: usize,
    group: &[MemberId],
    config: &Config,
) -> Result<Calibration, Error> {
    let size = group.len();
    let fail = |reason: String| Error::Calibration { size, reason };
    let tolerated = config.max_dropout.floor_of(size);
    let k = u32::try_from(size).map_err(|e| fail(e.to_string()))?;
    let t = u32::try_from(tolerated).map_err(|e| fail(e.to_string()))?;
    let p = &manifest.privacy;
    let noise = NoiseParams::new(p.clip_norm, p.noise_multiplier)
        .and_then(|params| {
            let cohort = hearth_training::Cohort::new(k, t)?;
            DistributedGaussian::new(elements, params, cohort)
        })
        .map_err(|e| fail(e.to_string()))?;
    Ok(Calibration {
        group: group.to_vec(),
        noise,
    })
}

/// Secure aggregation for one node, round after round.
///
/// ```no_run
/// # use hearth_federation::{Community, secagg::Engine};
/// # fn node(community: Community, me: hearth_protocol::MemberId) {
/// let secret: [u8; 32] = [7; 32]; // the node draws it from the OS at start
/// let community = community.with_secure_aggregation(Box::new(Engine::new(me, secret)));
/// # }
/// ```
pub struct Engine {
    me: MemberId,
    /// Only observes: never runs a member of its own (replays of past rounds).
    observer: bool,
    secret: Zeroizing<[u8; 32]>,
    config: Config,
    round: Option<RoundState>,
    excluded: Vec<String>,
}

/// One group of the open round.
struct Group {
    members: Vec<MemberId>,
    /// The aggregator and calibration, or why the group cannot run.
    ready: Result<Ready, String>,
}

struct Ready {
    aggregator: Aggregator,
    calibration: Calibration,
}

/// The engine's state for the open round.
struct RoundState {
    round: u64,
    groups: Vec<Group>,
    group_of: BTreeMap<MemberId, usize>,
    own: Option<Own>,
    /// Digest of the accepted message of each (sender, kind).
    seen: BTreeMap<(MemberId, Kind), Hash32>,
    outbox: Vec<Payload>,
}

impl fmt::Debug for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine")
            .field("me", &self.me)
            .field("config", &self.config)
            .field("round", &self.round.as_ref().map(|r| r.round))
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// The engine of member `me` (a node that is not a member may pass any id: it then only
    /// observes), with its secret seed and the default [`Config`].
    pub fn new(me: MemberId, secret: [u8; 32]) -> Engine {
        Engine {
            me,
            observer: false,
            secret: Zeroizing::new(secret),
            config: Config::default(),
            round: None,
            excluded: Vec::new(),
        }
    }

    /// The same with another threat model (every node of a community must use the same).
    pub fn with_config(me: MemberId, secret: [u8; 32], config: Config) -> Result<Engine, Error> {
        config.validate()?;
        Ok(Engine {
            config,
            ..Engine::new(me, secret)
        })
    }

    /// An engine with the same threat model that only observes: it runs every group's
    /// [`Aggregator`] and no member of its own, holds no secret, and publishes nothing. Used to
    /// recompute a past round from its public messages
    /// ([`Community::verify_secure_round`](crate::Community::verify_secure_round)).
    pub fn observer(&self) -> Engine {
        Engine {
            me: self.me,
            observer: true,
            secret: Zeroizing::new([0; 32]),
            config: self.config,
            round: None,
            excluded: Vec::new(),
        }
    }

    /// The node's member id.
    pub fn me(&self) -> &MemberId {
        &self.me
    }

    /// The threat model.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Why the node's own member left the open round early (missed a phase, no input, too few
    /// neighbours...), if it did.
    pub fn dropped_out(&self) -> Option<&str> {
        match &self.round.as_ref()?.own.as_ref()?.step {
            Step::Out(why) => Some(why.as_str()),
            _ => None,
        }
    }

    fn state(&mut self, info: &RoundInfo) -> Option<&mut RoundState> {
        self.round.as_mut().filter(|r| r.round == info.round)
    }
}

impl SecureAggregator for Engine {
    fn begin(&mut self, info: &RoundInfo) -> Vec<Payload> {
        self.excluded.clear();
        let mut groups = Vec::new();
        let mut group_of = BTreeMap::new();
        for (g, members) in info.groups().into_iter().enumerate() {
            let seed = group_seed(&info.seed, &members);
            let ready = Cohort::new(info.round, seed, &members, &self.config)
                .and_then(|cohort| {
                    let calibration =
                        calibrate(&info.manifest, info.elements, &members, &self.config)?;
                    Ok(Ready {
                        aggregator: Aggregator::new(cohort),
                        calibration,
                    })
                })
                .map_err(|e| e.to_string());
            for m in &members {
                group_of.insert(*m, g);
            }
            groups.push(Group { members, ready });
        }
        let own = group_of
            .get(&self.me)
            .filter(|_| !self.observer)
            .and_then(|&g| {
                let ready = groups[g].ready.as_ref().ok()?;
                let cohort = ready.aggregator.cohort().clone();
                let seed = member_seed(
                    &self.secret,
                    &Hash32(cohort.ctx().seed),
                    info.round,
                    &self.me,
                );
                let (member, keys) = Member::new(cohort, &self.me, seed).ok()?;
                Some(Own::new(g, member, keys))
            });
        // Dropping the previous round's state wipes its member's secrets.
        self.round = Some(RoundState {
            round: info.round,
            groups,
            group_of,
            own,
            seen: BTreeMap::new(),
            outbox: Vec::new(),
        });
        Vec::new()
    }

    fn submit_own(&mut self, info: &RoundInfo, values: &[i32], scale: f32) -> Result<(), String> {
        let elements = info.elements;
        let Some(st) = self.state(info) else {
            return Err(format!("no secure aggregation for round {}", info.round));
        };
        let Some(own) = st.own.as_mut() else {
            return Err("this node is in no secure-aggregation group this round".into());
        };
        if values.len() != elements {
            return Err(format!("{} values, the round has {elements}", values.len()));
        }
        let Ok(ready) = st.groups[own.group].ready.as_mut() else {
            return Err("the group could not be set up".into());
        };
        let want = ready.calibration.scale();
        if scale.to_bits() != want.to_bits() {
            return Err(format!("scale {scale}, the group uses {want}"));
        }
        own.mask(values, &mut ready.aggregator, &mut st.outbox)
    }

    fn on_message(
        &mut self,
        info: &RoundInfo,
        message: &Message,
        _now: u64,
    ) -> Result<(), Rejection> {
        let sender = message.header.sender;
        let reject = |reason, detail: String| Rejection::new(Some(sender), reason, detail);
        let elements = info.elements;
        let Some(st) = self.state(info) else {
            return Err(reject(
                Reason::SecureAggregation,
                format!("no secure aggregation for round {}", info.round),
            ));
        };
        let Some(&g) = st.group_of.get(&sender) else {
            return Err(reject(
                Reason::SecureAggregation,
                "in no secure-aggregation group this round".into(),
            ));
        };
        let Some((kind, digest)) = digest(&message.payload) else {
            return Err(reject(
                Reason::WrongKind,
                "not a secure-aggregation message".into(),
            ));
        };
        match st.seen.get(&(sender, kind)) {
            Some(d) if *d == digest => {
                return Err(reject(
                    Reason::Duplicate,
                    format!("{kind:?} already received"),
                ));
            }
            Some(_) => {
                return Err(reject(
                    Reason::Equivocation,
                    format!("a second, different {kind:?} message"),
                ));
            }
            None => {}
        }
        // Only members that shared their secrets can be unmasked: a masked input from a member
        // whose encrypted shares were not accepted here (never sent, or not decryptable — e.g.
        // it masked on another parent) would make the survivors' sum impossible to unmask.
        if kind == Kind::Masked && !st.seen.contains_key(&(sender, Kind::Shares)) {
            return Err(reject(
                Reason::SecureAggregation,
                "a masked input without accepted encrypted shares".into(),
            ));
        }
        let ready = match st.groups[g].ready.as_mut() {
            Ok(ready) => ready,
            Err(why) => {
                return Err(reject(
                    Reason::SecureAggregation,
                    format!("its group cannot run: {why}"),
                ));
            }
        };
        let member = st
            .own
            .as_mut()
            .filter(|o| o.group == g)
            .map(|o| &mut o.member);
        route(
            &mut ready.aggregator,
            member,
            &sender,
            &message.payload,
            elements,
        )
        .map_err(|e| reject(reason(&e), e.to_string()))?;
        st.seen.insert((sender, kind), digest);
        Ok(())
    }

    fn tick(&mut self, info: &RoundInfo, phase: Phase, _now: u64) -> Vec<Payload> {
        let Some(st) = self.state(info) else {
            return Vec::new();
        };
        if let Some(own) = st.own.as_mut()
            && let Ok(ready) = st.groups[own.group].ready.as_mut()
        {
            own.advance(phase, &mut ready.aggregator, &mut st.outbox);
        }
        std::mem::take(&mut st.outbox)
    }

    fn finish(&mut self, info: &RoundInfo) -> Result<Vec<GroupSum>, String> {
        self.excluded.clear();
        let Some(st) = self.state(info) else {
            return Err(format!("no secure aggregation for round {}", info.round));
        };
        if st.groups.is_empty() {
            return Err(format!(
                "{} cohort members form no group of at least {}",
                info.cohort().len(),
                info.min_group_size
            ));
        }
        let mut sums = Vec::new();
        let mut excluded = Vec::new();
        for (g, group) in st.groups.iter().enumerate() {
            let k = group.members.len();
            let result = group
                .ready
                .as_ref()
                .map_err(Clone::clone)
                .and_then(|ready| {
                    let (sum, members) = ready.aggregator.sum().map_err(|e| e.to_string())?;
                    Ok(GroupSum {
                        members,
                        // The scale rule keeps the signed sum within ±(2³¹ − 1): read it back.
                        sum: sum.iter().map(|&v| i64::from(v as i32)).collect(),
                        scale: ready.calibration.scale(),
                        noise_std: ready.calibration.share_std(),
                    })
                });
            match result {
                Ok(sum) => sums.push(sum),
                Err(why) => excluded.push(format!("group {g} of {k} members: {why}")),
            }
        }
        // The round is over for this engine: drop the member's secrets and the masked inputs.
        self.round = None;
        self.excluded = excluded;
        if sums.is_empty() {
            return Err(self.excluded.join("; "));
        }
        Ok(sums)
    }

    fn calibration(&self, info: &RoundInfo, member: &MemberId) -> Option<Calibration> {
        let st = self.round.as_ref().filter(|r| r.round == info.round)?;
        let g = *st.group_of.get(member)?;
        Some(st.groups[g].ready.as_ref().ok()?.calibration.clone())
    }

    fn excluded(&self) -> Vec<String> {
        self.excluded.clone()
    }

    fn observer(&self) -> Option<Box<dyn SecureAggregator>> {
        Some(Box::new(Engine::observer(self)))
    }
}
