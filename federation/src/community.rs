//! [`Community`]: the state machine a node drives; see its docs for the verification order.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use hearth_protocol::{
    Authority, Certificate, DeltaSubmission, Hash32, Kind, Manifest, MemberId, Message, Payload,
    PrivacyMode, ReplayWindow, RevocationList, Role, Signed, decode_untrusted,
};

use crate::adapter::State;
use crate::chain::{VersionRecord, next_from_deltas, next_from_groups};
use crate::clock::{Phase, PhaseClock};
use crate::cohort::round_seed;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::hooks::{Calibration, GroupSum, Probe, RoundInfo, SecureAggregator};
use crate::reject::{Counters, Reason, Rejection};
use crate::round::{Accepted, FailReason, Outcome, Output, Round};

pub use self::replay::MESSAGES_PER_MEMBER;
use crate::verify::check_delta;

/// Certificates remembered per member (the ones expiring last).
const CERTS_PER_MEMBER: usize = 4;

/// A community as one node sees it: admission, rounds, verification of every message,
/// aggregation and the chain of versions.
///
/// # Verification order
///
/// [`Community::on_bytes`] decodes with [`decode_untrusted`] (size, envelope, version and kind,
/// canonical form, community, signature, payload limits and hash, round consistency). Then, for
/// every message ([`Community::on_message`]): community, kind and round consistency; admin objects
/// are checked by the [`Authority`]; round messages go through, in this order,
///
/// 1. admission: the sender has a certificate, is not revoked, the certificate is valid at `now`
///    and grants the role (contributor; announcer or contributor for version announcements);
/// 2. round: the open round's number (else stale or future round);
/// 3. kind: allowed in this round's mode (plain deltas in local mode, secure-aggregation messages
///    in distributed mode, announcements in both);
/// 4. timing: the phase's window ([`PhaseClock::timing`]); a late delta is still checked and kept
///    aside (never aggregated) so that a peer's version including it can be verified;
/// 5. cohort membership (not for announcements);
/// 6. replay: the [`ReplayWindow`] on (sender, round, nonce);
/// 7. for deltas: equivocation and duplicates, capacity, then the content checks of
///    docs/PROTOCOL.md §14.6 (hash, base version, DP parameters, shape, finite values,
///    quantization range, norm bound: [`norm_bound`](crate::norm_bound)).
///
/// The first failing check is the [`Reason`] of the [`Rejection`]; every outcome is counted in
/// [`Counters`].
#[derive(Debug)]
pub struct Community {
    manifest: Manifest,
    id: Hash32,
    authority: Authority,
    members: BTreeMap<MemberId, Vec<Certificate>>,
    config: Config,
    head: State,
    head_round: u64,
    last_started: u64,
    chain: VecDeque<VersionRecord>,
    round: Option<Round>,
    replay: ReplayWindow,
    counters: Counters,
    pending: Vec<Output>,
    secagg: Option<Box<dyn SecureAggregator>>,
    probe: Option<Box<dyn Probe>>,
    /// The probe check's memory and counts.
    probe_state: ProbeState,
}

impl Community {
    /// A community from its signed manifest (checked: admin signature, every field) and its
    /// genesis state (checked against the manifest's LoRA shape), at round 0.
    pub fn new(manifest: &Signed<Manifest>, genesis: State, config: Config) -> Result<Self> {
        let authority = Authority::from_manifest(manifest)?;
        config.validate()?;
        let m = manifest.body.clone();
        genesis.check(&m.lora)?;
        Ok(Community {
            id: authority.community(),
            replay: ReplayWindow::new(&m.limits),
            manifest: m,
            authority,
            members: BTreeMap::new(),
            config,
            head: genesis,
            head_round: 0,
            last_started: 0,
            chain: VecDeque::new(),
            round: None,
            counters: Counters::default(),
            pending: Vec::new(),
            secagg: None,
            probe: None,
            probe_state: ProbeState::default(),
        })
    }

    /// Installs the secure-aggregation engine (needed in distributed privacy mode; a node
    /// installs [`secagg::Engine`](crate::secagg::Engine)).
    pub fn with_secure_aggregation(mut self, engine: Box<dyn SecureAggregator>) -> Self {
        self.secagg = Some(engine);
        self
    }

    /// Installs the evaluator of the manifest's probe set, run on every candidate version before
    /// it is applied (closed rounds, adopted peer versions, verified catch-up versions). Needed
    /// when the manifest has a probe set: without one, every round fails closed rather than
    /// applying what the other nodes may refuse. Ignored when the manifest has none.
    pub fn with_probe(mut self, probe: Box<dyn Probe>) -> Self {
        self.probe = Some(probe);
        self
    }

    /// Restores a persisted head: `state` is the version produced by `round`, `recent` the last
    /// records of the chain (oldest first). The node trusts its own store here.
    pub fn restore(&mut self, round: u64, state: State, recent: Vec<VersionRecord>) -> Result<()> {
        state.check(&self.manifest.lora)?;
        self.head = state;
        self.head_round = round;
        self.last_started = self.last_started.max(round);
        self.chain = recent.into_iter().collect();
        self.trim_chain();
        self.round = None;
        Ok(())
    }

    /// The community id (manifest hash).
    pub fn id(&self) -> Hash32 {
        self.id
    }

    /// The manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The settings.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The current community adapter and optimizer state.
    pub fn head(&self) -> &State {
        &self.head
    }

    /// The round that produced the head (0 for genesis).
    pub fn head_round(&self) -> u64 {
        self.head_round
    }

    /// The most recent version records, oldest first (up to [`Config::max_chain`]).
    pub fn chain(&self) -> impl Iterator<Item = &VersionRecord> {
        self.chain.iter()
    }

    /// Accepted and rejected message counts.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// The open (or last) round.
    pub fn round(&self) -> Option<&Round> {
        self.round.as_ref()
    }

    /// Whether rounds use secure aggregation (distributed privacy mode).
    pub fn secure(&self) -> bool {
        self.manifest.privacy.mode == PrivacyMode::Distributed
    }

    /// The round a periodic schedule is in at `now` (`None` on demand).
    pub fn scheduled_round(&self, now: u64) -> Option<u64> {
        PhaseClock::round_at(&self.manifest.schedule, self.manifest.created, now)
    }

    /// Verifies a member certificate (admin signature, community, validity at `now`, not revoked)
    /// and remembers it.
    pub fn add_certificate(&mut self, certificate: &Signed<Certificate>, now: u64) -> Result<()> {
        let cert = self
            .authority
            .verify_certificate(certificate, now, &self.manifest.limits)?
            .clone();
        if !self.members.contains_key(&cert.member) && self.members.len() >= self.config.max_members
        {
            return Err(Error::MembersFull {
                max: self.config.max_members,
            });
        }
        let certs = self.members.entry(cert.member).or_default();
        if !certs.contains(&cert) {
            certs.push(cert);
            certs.sort_by_key(|c| std::cmp::Reverse(c.expires));
            certs.truncate(CERTS_PER_MEMBER);
        }
        Ok(())
    }

    /// Verifies a revocation list and puts it in force.
    pub fn apply_revocations(&mut self, list: &Signed<RevocationList>) -> Result<()> {
        self.authority
            .apply_revocations(list, &self.manifest.limits)?;
        Ok(())
    }

    /// Opens round `round` on the current head. Its start is the schedule's
    /// (`created + round·secs`) or, on demand, `now`.
    pub fn start_round(&mut self, round: u64, now: u64) -> Result<Vec<Output>> {
        let fail = |reason: String| Err(Error::RoundStart { round, reason });
        if let Some(open) = &self.round
            && open.outcome.is_none()
        {
            return fail(format!("round {} has not closed", open.number()));
        }
        if round <= self.last_started {
            return fail(format!("round {} was already started", self.last_started));
        }
        if self.secure() && self.secagg.is_none() {
            return Err(Error::NoSecureAggregation);
        }
        let schedule = &self.manifest.schedule;
        let start =
            PhaseClock::scheduled_start(schedule, self.manifest.created, round).unwrap_or(now);
        let parent = self.head.version();
        let members = self
            .members
            .keys()
            .filter(|m| {
                self.certificate_at(m, start, Role::Contributor, true)
                    .is_ok()
            })
            .copied()
            .collect();
        let info = RoundInfo {
            community: self.id,
            round,
            parent,
            seed: round_seed(&self.id, round, &parent),
            clock: PhaseClock::new(schedule, start, self.secure()),
            elements: self.head.adapter.len(),
            manifest: self.manifest.clone(),
            min_group_size: self.manifest.aggregation.min_group_size as usize,
            members,
        };
        let mut out = Vec::new();
        if let Some(engine) = self.secagg.as_mut() {
            out.extend(
                engine
                    .begin(&info)
                    .into_iter()
                    .map(|payload| Output::Publish { round, payload }),
            );
        }
        self.replay.prune(round);
        self.last_started = round;
        self.round = Some(Round::new(info, self.head.clone()));
        out.extend(self.tick(now));
        Ok(out)
    }

    /// Decodes untrusted bytes ([`decode_untrusted`] with the manifest's limits) and handles the
    /// message. A decoding failure has no authenticated sender.
    pub fn on_bytes(&mut self, bytes: &[u8], now: u64) -> Result<Accepted, Rejection> {
        match decode_untrusted(bytes, &self.manifest.limits, &self.id) {
            Ok(message) => self.on_message(&message, now),
            Err(e) => {
                let rejection = Rejection::new(None, protocol_reason(&e), e.to_string());
                self.counters.reject(rejection.reason);
                Err(rejection)
            }
        }
    }

    /// Handles a decoded message (from [`decode_untrusted`], which checked its signature) that
    /// arrived at `now`.
    pub fn on_message(&mut self, message: &Message, now: u64) -> Result<Accepted, Rejection> {
        let result = self.handle(message, now);
        match &result {
            Ok(_) => self.counters.accept(),
            Err(r) => self.counters.reject(r.reason),
        }
        result
    }

    /// Feeds this node's own delta into the open round. In plain rounds it is checked like any
    /// other (except for the envelope) and returned as a payload to publish; in secure rounds it
    /// goes to the engine, which publishes the masked input itself.
    pub fn submit_own(
        &mut self,
        me: MemberId,
        delta: DeltaSubmission,
        now: u64,
    ) -> Result<Vec<Output>, Rejection> {
        let kind = if self.secure() {
            Kind::Masked
        } else {
            Kind::Delta
        };
        let late = self.precheck(me, delta.round, kind, now)?;
        let round = delta.round;
        if late {
            return Err(Rejection::new(
                Some(me),
                Reason::Late,
                "own delta after the deadline",
            ));
        }
        if self.secure() {
            let target = self.target()?;
            check_delta(target, me, &delta)?;
            let values: Vec<i32> = delta
                .layers
                .iter()
                .flat_map(|l| l.values.iter().copied())
                .collect();
            let (Some(engine), Some(open)) = (self.secagg.as_mut(), self.round.as_ref()) else {
                return Err(Rejection::new(Some(me), Reason::WrongKind, "no round"));
            };
            if let Some(cal) = engine.calibration(&open.info, &me) {
                check_calibration(&cal, me, &delta)?;
            }
            engine
                .submit_own(&open.info, &values, delta.scale)
                .map_err(|why| Rejection::new(Some(me), Reason::SecureAggregation, why))?;
            let phase = open.info.clock.phase_at(now);
            return Ok(engine
                .tick(&open.info, phase, now)
                .into_iter()
                .map(|payload| Output::Publish { round, payload })
                .collect());
        }
        self.accept_delta(me, &delta, false)?;
        Ok(vec![Output::Publish {
            round,
            payload: Payload::Delta(delta),
        }])
    }

    /// How `me` must quantize and noise its delta in the open secure round (its group, the
    /// group's scale and noise share): release the delta with [`Calibration::noise`] and hand it
    /// to [`Community::submit_own`] in the submit phase. `None` outside secure rounds, or when
    /// `me` is not in the cohort or in no group.
    pub fn calibration(&self, me: &MemberId) -> Option<Calibration> {
        let (engine, open) = (self.secagg.as_ref()?, self.round.as_ref()?);
        if !self.secure() || open.outcome.is_some() {
            return None;
        }
        engine.calibration(&open.info, me)
    }

    /// The probe check of a version being verified (catch-up): `ProbeRefused` if the community's
    /// probe set refuses it.
    fn check_probe(&self, round: u64, parent: &State, candidate: &State) -> Result<()> {
        probe_check(
            &self.manifest,
            self.probe.as_deref(),
            &self.probe_state,
            parent,
            candidate,
        )
        .map_err(|reason| Error::ProbeRefused { round, reason })
    }

    /// Candidate versions the probe check has judged, and how many of them it refused (both 0
    /// without a probe set in the manifest).
    pub fn probe_counts(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (
            self.probe_state.checked.load(Relaxed),
            self.probe_state.refused.load(Relaxed),
        )
    }

    /// Secure-aggregation groups left out of the last closed secure round, with why (for the
    /// log; the round used the others).
    pub fn excluded_groups(&self) -> Vec<String> {
        self.secagg
            .as_ref()
            .map(|e| e.excluded())
            .unwrap_or_default()
    }

    /// Advances the open round to `now`: phase changes, the engine's messages, closing the round
    /// at its deadline (submit in plain rounds, unmask in secure ones), and outputs queued since
    /// the last tick.
    pub fn tick(&mut self, now: u64) -> Vec<Output> {
        let mut out = std::mem::take(&mut self.pending);
        let secure = self.secure();
        let Some(round) = self.round.as_mut() else {
            return out;
        };
        let number = round.number();
        let phase = round.info.clock.phase_at(now);
        if phase != round.phase {
            round.phase = phase;
            out.push(Output::Phase {
                round: number,
                phase,
            });
        }
        if let Some(engine) = self.secagg.as_mut()
            && secure
            && phase < Phase::Announce
            && round.outcome.is_none()
        {
            out.extend(
                engine
                    .tick(&round.info, phase, now)
                    .into_iter()
                    .map(|payload| Output::Publish {
                        round: number,
                        payload,
                    }),
            );
        }
        let clock = round.info.clock;
        let close_at = if secure {
            clock.unmask_end
        } else {
            clock.submit_end
        };
        if round.outcome.is_none() && now >= close_at {
            out.extend(self.close());
        }
        out.append(&mut self.pending);
        out
    }

    /// Closes the open round: aggregates its inputs, runs the probe check, and makes the result
    /// the head — or records why not.
    fn close(&mut self) -> Vec<Output> {
        let Some(round) = self.round.as_mut() else {
            return Vec::new();
        };
        let number = round.number();
        let result = if self.manifest.privacy.mode == PrivacyMode::Distributed {
            match self.secagg.as_mut() {
                None => Err(FailReason::SecureAggregation("no engine".into())),
                Some(engine) => match engine.finish(&round.info) {
                    Err(why) => Err(FailReason::SecureAggregation(why)),
                    Ok(groups) => usable_groups(&round.info, groups).and_then(|groups| {
                        next_from_groups(&self.manifest, &round.parent_state, number, &groups)
                            .map_err(fail_reason)
                    }),
                },
            }
        } else {
            let included: Vec<&DeltaSubmission> = round.deltas.values().map(|h| &h.delta).collect();
            next_from_deltas(&self.manifest, &round.parent_state, number, &included)
                .map_err(fail_reason)
        };
        let result = result.and_then(|(record, state)| {
            probe_check(
                &self.manifest,
                self.probe.as_deref(),
                &self.probe_state,
                &round.parent_state,
                &state,
            )
            .map_err(FailReason::Probe)
            .map(|()| (record, state))
        });
        let mut out = Vec::new();
        match result {
            Ok((record, state)) => {
                round.outcome = Some(Outcome::Closed(record.clone()));
                self.head = state;
                self.head_round = number;
                self.push_record(record.clone());
                out.push(Output::Closed(record.clone()));
                out.push(Output::Publish {
                    round: number,
                    payload: Payload::Version(record.announcement()),
                });
            }
            Err(reason) => {
                round.outcome = Some(Outcome::Failed(reason.clone()));
                out.push(Output::Failed {
                    round: number,
                    reason,
                });
            }
        }
        self.reconcile_all();
        out
    }

    fn push_record(&mut self, record: VersionRecord) {
        self.chain.push_back(record);
        self.trim_chain();
    }

    fn trim_chain(&mut self) {
        while self.chain.len() > self.config.max_chain {
            self.chain.pop_front();
        }
    }
}

/// What the probe check remembers (the last parent's loss: a round's parent is evaluated once)
/// and counts. Behind a lock and atomics: the check also runs from `&self` verification.
#[derive(Debug, Default)]
pub(crate) struct ProbeState {
    parent: std::sync::Mutex<Option<(Hash32, f64)>>,
    checked: std::sync::atomic::AtomicU64,
    refused: std::sync::atomic::AtomicU64,
}

/// The manifest's probe-set check of `candidate` over `parent` (`Ok` when the manifest has no
/// probe set): refused if the candidate's probe loss is not finite or exceeds the parent's by
/// more than `max_increase`, or if no evaluator is installed.
pub(crate) fn probe_check(
    manifest: &Manifest,
    probe: Option<&dyn Probe>,
    state: &ProbeState,
    parent: &State,
    candidate: &State,
) -> Result<(), String> {
    use std::sync::atomic::Ordering::Relaxed;
    if manifest.aggregation.probe.is_none() {
        return Ok(());
    }
    state.checked.fetch_add(1, Relaxed);
    let verdict = probe_verdict(manifest, probe, &state.parent, parent, candidate);
    if verdict.is_err() {
        state.refused.fetch_add(1, Relaxed);
    }
    verdict
}

fn probe_verdict(
    manifest: &Manifest,
    probe: Option<&dyn Probe>,
    cache: &std::sync::Mutex<Option<(Hash32, f64)>>,
    parent: &State,
    candidate: &State,
) -> Result<(), String> {
    let Some(set) = &manifest.aggregation.probe else {
        return Ok(());
    };
    let probe = probe.ok_or("the manifest has a probe set and this node has no evaluator")?;
    let parent_version = parent.version();
    let cached = *cache
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let before = match cached {
        Some((v, loss)) if v == parent_version => loss,
        _ => {
            let loss = probe.loss(&parent.adapter)?;
            *cache
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some((parent_version, loss));
            loss
        }
    };
    let after = probe.loss(&candidate.adapter)?;
    if !after.is_finite() || !before.is_finite() {
        return Err(format!("probe loss not finite ({before} → {after})"));
    }
    if after - before > set.max_increase {
        return Err(format!(
            "probe loss {after:.4} against its parent's {before:.4}: +{:.4} nats/token, more than \
             the {} allowed",
            after - before,
            set.max_increase
        ));
    }
    Ok(())
}

/// Checks group sums against the round — members sorted, in the cohort, in one group only —
/// and keeps those whose noise is enough for central DP: the shares of the members present must
/// add up to the community's `σ·C` (`√k·τ ≥ σ·C`), otherwise the sum was under-noised (too many
/// dropouts or shares calibrated to the cohort instead of the group) and is not used.
fn usable_groups(info: &RoundInfo, groups: Vec<GroupSum>) -> Result<Vec<GroupSum>, FailReason> {
    let mut seen = BTreeSet::new();
    for g in &groups {
        if g.members.windows(2).any(|w| w[0] >= w[1]) {
            return Err(FailReason::SecureAggregation(
                "group members not sorted".into(),
            ));
        }
        for m in &g.members {
            if !info.in_cohort(m) {
                return Err(FailReason::SecureAggregation(format!(
                    "{m} is not in the cohort"
                )));
            }
            if !seen.insert(*m) {
                return Err(FailReason::SecureAggregation(format!(
                    "{m} is in two groups"
                )));
            }
        }
    }
    let p = &info.manifest.privacy;
    let needed = p.noise_multiplier * p.clip_norm * (1.0 - 1e-9);
    Ok(groups
        .into_iter()
        .filter(|g| (g.members.len() as f64).sqrt() * g.noise_std >= needed)
        .collect())
}

/// Relative tolerance when comparing an own delta's noise std with its group's share std.
const SHARE_TOLERANCE: f64 = 1e-9;

/// Checks an own delta against its group's calibration: the group's scale exactly, and a noise
/// std equal to the group's share std.
fn check_calibration(
    cal: &Calibration,
    me: MemberId,
    delta: &DeltaSubmission,
) -> Result<(), Rejection> {
    let share = cal.share_std();
    if delta.scale.to_bits() != cal.scale().to_bits()
        || (delta.dp.noise_std - share).abs() > SHARE_TOLERANCE * share
    {
        return Err(Rejection::new(
            Some(me),
            Reason::DpMismatch,
            format!(
                "scale {} and noise std {}; the group of {} uses scale {} and share std {share}",
                delta.scale,
                delta.dp.noise_std,
                cal.group.len(),
                cal.scale()
            ),
        ));
    }
    Ok(())
}

fn fail_reason(e: Error) -> FailReason {
    match e {
        Error::TooFew { found, needed } => FailReason::TooFew { found, needed },
        other => FailReason::Update(other.to_string()),
    }
}

/// The rejection reason for a decoding failure.
fn protocol_reason(e: &hearth_protocol::Error) -> Reason {
    use hearth_protocol::Error as P;
    match e {
        P::MessageTooLarge { .. } | P::LimitExceeded { .. } => Reason::TooLarge,
        P::UnsupportedVersion { .. } | P::UnknownKind(_) => Reason::Unsupported,
        P::WrongCommunity { .. } => Reason::WrongCommunity,
        P::BadSignature { .. } | P::InvalidKey(_) => Reason::Forged,
        P::RoundMismatch { .. } => Reason::RoundMismatch,
        P::ShapeMismatch { .. } => Reason::WrongShape,
        P::InvalidValue {
            field: "delta.scale",
            ..
        } => Reason::NonFinite,
        _ => Reason::Malformed,
    }
}

/// The rejection reason for a failed certificate or revocation list.
fn admin_reason(e: &Error) -> Reason {
    use hearth_protocol::Error as P;
    match e {
        Error::Protocol(
            P::CertificateExpired { .. }
            | P::CertificateNotYetValid { .. }
            | P::Revoked(_)
            | P::StaleRevocations { .. },
        ) => Reason::StaleAdminObject,
        Error::MembersFull { .. } => Reason::Full,
        _ => Reason::BadAdminObject,
    }
}

mod admission;
#[cfg(test)]
mod attack_tests;
#[cfg(test)]
mod probe_tests;
#[cfg(test)]
mod properties;
mod reconcile;
mod replay;
#[cfg(test)]
mod secure_net;
#[cfg(test)]
mod secure_replay;
#[cfg(test)]
mod secure_rounds;
#[cfg(test)]
mod secure_tests;
#[cfg(test)]
mod tests;
