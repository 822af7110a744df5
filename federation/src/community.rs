//! [`Community`]: the state machine a node (or a simulated member) drives — admission, rounds,
//! verification of every message, aggregation, the chain of versions.
//!
//! # Verification order
//!
//! [`Community::on_bytes`] decodes with [`decode_untrusted`] (size, envelope, version and kind,
//! canonical form, community, signature, payload limits and hash, round consistency). Then, for
//! every message ([`Community::on_message`]): community, kind and round consistency; admin objects
//! are checked by the [`Authority`]; round messages go through, in this order,
//!
//! 1. admission: the sender has a certificate, is not revoked, the certificate is valid at `now`
//!    and grants the role (contributor; announcer or contributor for version announcements);
//! 2. round: the open round's number (else stale or future round);
//! 3. kind: allowed in this round's mode (plain deltas in local mode, secure-aggregation messages
//!    in distributed mode, announcements in both);
//! 4. timing: the phase's window ([`PhaseClock::timing`]); a late delta is still checked and kept
//!    aside (never aggregated) so that a peer's version including it can be verified;
//! 5. cohort membership (not for announcements);
//! 6. replay: the [`ReplayWindow`] on (sender, round, nonce);
//! 7. for deltas: equivocation and duplicates, capacity, then the content checks of
//!    [`crate::verify`] (hash, base version, DP parameters, shape, finite values, quantization
//!    range, norm bound).
//!
//! The first failing check is the [`Reason`] of the [`Rejection`]; every outcome is counted in
//! [`Counters`].

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use hearth_protocol::{
    Authority, Certificate, DeltaSubmission, Hash32, Kind, Manifest, MemberId, Message, Payload,
    PrivacyMode, ReplayWindow, RevocationList, Role, Signed, VersionAnnouncement, decode_untrusted,
};

use crate::adapter::State;
use crate::chain::{VersionRecord, next_from_deltas, next_from_groups};
use crate::clock::{Phase, PhaseClock, Timing};
use crate::cohort::{in_cohort, round_seed};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::hooks::{GroupSum, Probe, RoundInfo, SecureAggregator};
use crate::reject::{Counters, Reason, Rejection};
use crate::round::{Accepted, FailReason, Held, Outcome, Output, Round};
use crate::verify::{Target, check_delta};

/// Certificates remembered per member (the ones expiring last).
const CERTS_PER_MEMBER: usize = 4;

/// A community as one node sees it. See the [module docs](self) for the verification order.
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
        })
    }

    /// Installs the secure-aggregation engine (needed in distributed privacy mode).
    pub fn with_secure_aggregation(mut self, engine: Box<dyn SecureAggregator>) -> Self {
        self.secagg = Some(engine);
        self
    }

    /// Installs a probe-set check run on every candidate version before it is applied.
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
        let info = RoundInfo {
            community: self.id,
            round,
            parent,
            seed: round_seed(&self.id, round, &parent),
            clock: PhaseClock::new(schedule, start, self.secure()),
            elements: self.head.adapter.len(),
            manifest: self.manifest.clone(),
            min_group_size: self.config.min_group_size,
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
        let late = self.precheck(me, delta.round, Kind::Delta, now)?;
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
            engine
                .submit_own(&open.info, &values, delta.scale)
                .map_err(|why| Rejection::new(Some(me), Reason::SecureAggregation, why))?;
            return Ok(Vec::new());
        }
        self.accept_delta(me, &delta, false)?;
        Ok(vec![Output::Publish {
            round,
            payload: Payload::Delta(delta),
        }])
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

    /// Recomputes a version from the signed deltas it claims to include, as a node that missed
    /// the round does: every envelope is decoded and verified again (signature, certificate valid
    /// at `at` — the round's time, as certificates may have expired since; revocations made
    /// later are not applied retroactively —, cohort, base version, DP parameters, shape, range,
    /// norm, no duplicates), the list must equal the announcement's, and the recomputed version
    /// must equal the announced one. Returns the record and the new state for
    /// [`Community::adopt`].
    pub fn verify_version<B: AsRef<[u8]>>(
        &self,
        parent: &State,
        envelopes: &[B],
        announcement: &VersionAnnouncement,
        at: u64,
    ) -> Result<(VersionRecord, State)> {
        let parent_version = parent.version();
        if announcement.parent != parent_version {
            return Err(Error::WrongParent {
                round: announcement.round,
                parent: announcement.parent,
                expected: parent_version,
            });
        }
        let seed = round_seed(&self.id, announcement.round, &parent_version);
        let target = Target {
            manifest: &self.manifest,
            parent: parent_version,
        };
        let mut deltas: Vec<DeltaSubmission> = Vec::with_capacity(envelopes.len());
        let mut senders = BTreeSet::new();
        for (index, bytes) in envelopes.iter().enumerate() {
            let invalid = |rejection: Rejection| Error::InvalidInput {
                index,
                rejection: Box::new(rejection),
            };
            let message = decode_untrusted(bytes.as_ref(), &self.manifest.limits, &self.id)
                .map_err(|e| invalid(Rejection::new(None, protocol_reason(&e), e.to_string())))?;
            let sender = message.header.sender;
            let reject =
                |reason, detail: String| invalid(Rejection::new(Some(sender), reason, detail));
            let Payload::Delta(delta) = message.payload else {
                return Err(reject(Reason::WrongKind, "not a delta".into()));
            };
            if delta.round != announcement.round {
                return Err(reject(
                    Reason::StaleRound,
                    format!("delta for round {}", delta.round),
                ));
            }
            self.certificate_at(&sender, at, Role::Contributor, false)
                .map_err(invalid)?;
            if !in_cohort(&seed, &sender, self.manifest.schedule.sampling_rate) {
                return Err(reject(Reason::NotInCohort, "outside the cohort".into()));
            }
            check_delta(target, sender, &delta).map_err(invalid)?;
            if !senders.insert(sender) {
                return Err(reject(
                    Reason::Equivocation,
                    "second delta of the sender".into(),
                ));
            }
            if deltas.iter().any(|d| d.hash == delta.hash) {
                return Err(reject(Reason::Duplicate, format!("delta {}", delta.hash)));
            }
            deltas.push(delta);
        }
        let mut hashes: Vec<Hash32> = deltas.iter().map(|d| d.hash).collect();
        hashes.sort();
        if hashes != announcement.deltas {
            return Err(Error::InputsMismatch {
                reason: format!(
                    "{} deltas given, {} announced",
                    hashes.len(),
                    announcement.deltas.len()
                ),
            });
        }
        let refs: Vec<&DeltaSubmission> = deltas.iter().collect();
        let (record, state) = next_from_deltas(
            &self.manifest,
            self.config.weighting,
            parent,
            announcement.round,
            &refs,
        )?;
        if record.version != announcement.version {
            return Err(Error::VersionMismatch {
                announced: announcement.version,
                computed: record.version,
            });
        }
        Ok((record, state))
    }

    /// Makes a verified version (from [`Community::verify_version`] or a peer's state checked
    /// against its record) the head. It must follow the head: same parent, a later round. An open
    /// round on the old head is abandoned.
    pub fn adopt(&mut self, record: &VersionRecord, state: State) -> Result<()> {
        if record.parent != self.head.version() || record.round <= self.head_round {
            return Err(Error::WrongParent {
                round: record.round,
                parent: record.parent,
                expected: self.head.version(),
            });
        }
        state.check(&self.manifest.lora)?;
        if state.version() != record.version || state.optimizer_hash() != record.optimizer {
            return Err(Error::VersionMismatch {
                announced: record.version,
                computed: state.version(),
            });
        }
        self.head = state;
        self.head_round = record.round;
        self.last_started = self.last_started.max(record.round);
        self.push_record(record.clone());
        if self
            .round
            .as_ref()
            .is_some_and(|r| r.parent() == record.parent)
        {
            self.round = None;
        }
        Ok(())
    }

    fn handle(&mut self, message: &Message, now: u64) -> Result<Accepted, Rejection> {
        let h = &message.header;
        let sender = h.sender;
        let reject = |reason, detail: String| Err(Rejection::new(Some(sender), reason, detail));
        if h.community != self.id {
            return reject(Reason::WrongCommunity, format!("community {}", h.community));
        }
        if message.payload.kind() != h.kind {
            return reject(
                Reason::Malformed,
                format!(
                    "header kind {:?}, payload {:?}",
                    h.kind,
                    message.payload.kind()
                ),
            );
        }
        if let Some(r) = message.payload.round()
            && r != h.round
        {
            return reject(
                Reason::RoundMismatch,
                format!("header round {}, payload round {r}", h.round),
            );
        }
        match &message.payload {
            Payload::Manifest(m) => {
                if m.body == self.manifest && m.verify().is_ok() {
                    Ok(Accepted::Manifest)
                } else {
                    reject(
                        Reason::BadAdminObject,
                        "not this community's manifest".into(),
                    )
                }
            }
            Payload::Certificate(c) => match self.add_certificate(c, now) {
                Ok(()) => Ok(Accepted::Certificate {
                    member: c.body.member,
                }),
                Err(e) => reject(admin_reason(&e), e.to_string()),
            },
            Payload::Revocations(list) => match self.apply_revocations(list) {
                Ok(()) => Ok(Accepted::Revocations {
                    sequence: list.body.sequence,
                }),
                Err(e) => reject(admin_reason(&e), e.to_string()),
            },
            payload => {
                let late = self.precheck(sender, h.round, h.kind, now)?;
                if late && !matches!(payload, Payload::Delta(_)) {
                    return reject(Reason::Late, format!("{:?} after its deadline", h.kind));
                }
                if let Err(e) = self.replay.check(sender, h.round, h.nonce, h.round) {
                    let reason = match e {
                        hearth_protocol::Error::Replayed { .. } => Reason::Replayed,
                        _ => Reason::Stale,
                    };
                    return reject(reason, e.to_string());
                }
                match payload {
                    Payload::Delta(d) => self.accept_delta(sender, d, late),
                    Payload::Version(a) => self.accept_announcement(sender, a),
                    _ => {
                        let (Some(engine), Some(round)) =
                            (self.secagg.as_mut(), self.round.as_ref())
                        else {
                            return reject(Reason::WrongKind, "no secure aggregation".into());
                        };
                        engine
                            .on_message(&round.info, message, now)
                            .map(|()| Accepted::SecureAggregation { sender })
                            .map_err(|why| {
                                Rejection::new(Some(sender), Reason::SecureAggregation, why)
                            })
                    }
                }
            }
        }
    }

    /// Admission, round, kind, timing and cohort checks; returns whether the message is late.
    fn precheck(
        &self,
        sender: MemberId,
        round_number: u64,
        kind: Kind,
        now: u64,
    ) -> Result<bool, Rejection> {
        let reject = |reason, detail: String| Err(Rejection::new(Some(sender), reason, detail));
        let announcement = kind == Kind::Version;
        let role = if announcement {
            Role::Announcer
        } else {
            Role::Contributor
        };
        self.certificate_at(&sender, now, role, true)?;
        let Some(round) = self.round.as_ref() else {
            return if round_number <= self.last_started {
                reject(Reason::StaleRound, format!("round {round_number} is over"))
            } else {
                reject(
                    Reason::FutureRound,
                    format!("round {round_number} is not open"),
                )
            };
        };
        let open = round.number();
        if round_number < open {
            return reject(
                Reason::StaleRound,
                format!("round {round_number}, open is {open}"),
            );
        }
        if round_number > open {
            return reject(
                Reason::FutureRound,
                format!("round {round_number}, open is {open}"),
            );
        }
        let allowed = match kind {
            Kind::Version => true,
            Kind::Delta => !self.secure(),
            Kind::Keys | Kind::Shares | Kind::Masked | Kind::Survivors | Kind::Unmasking => {
                self.secure()
            }
            Kind::Manifest | Kind::Certificate | Kind::Revocations => false,
        };
        let Some(phase) = Phase::of_kind(kind).filter(|_| allowed) else {
            return reject(
                Reason::WrongKind,
                format!("{kind:?} has no place in this round"),
            );
        };
        let late = match round
            .info
            .clock
            .timing(phase, now, self.config.clock_skew_secs)
        {
            Timing::InTime => round.outcome.is_some() && !announcement,
            Timing::Late => true,
            Timing::Early => {
                return reject(Reason::Early, format!("{kind:?} before its phase opens"));
            }
            Timing::NoSuchPhase => {
                return reject(Reason::WrongKind, format!("{kind:?} has no phase here"));
            }
        };
        if !announcement && !round.in_cohort(&sender) {
            return reject(Reason::NotInCohort, format!("not in round {open}'s cohort"));
        }
        Ok(late)
    }

    /// Finds a certificate of `member` valid at `at` granting `role` (or contributor, for
    /// announcers); checks revocation when `revocations` is set.
    fn certificate_at(
        &self,
        member: &MemberId,
        at: u64,
        role: Role,
        revocations: bool,
    ) -> Result<(), Rejection> {
        let reject = |reason, detail: String| Err(Rejection::new(Some(*member), reason, detail));
        let Some(certs) = self.members.get(member) else {
            return reject(Reason::NotMember, "no certificate known".into());
        };
        if revocations && self.authority.is_revoked(member) {
            return reject(Reason::Revoked, "on the revocation list".into());
        }
        let Some(cert) = certs.iter().find(|c| c.issued <= at && at < c.expires) else {
            return reject(
                Reason::CertificateExpired,
                format!("no certificate valid at {at}"),
            );
        };
        let granted =
            cert.has_role(role) || (role == Role::Announcer && cert.has_role(Role::Contributor));
        if !granted {
            return reject(Reason::MissingRole, format!("lacks role {}", role.name()));
        }
        Ok(())
    }

    fn target(&self) -> Result<Target<'_>, Rejection> {
        let parent = self
            .round
            .as_ref()
            .map(Round::parent)
            .ok_or_else(|| Rejection::new(None, Reason::FutureRound, "no open round"))?;
        Ok(Target {
            manifest: &self.manifest,
            parent,
        })
    }

    fn accept_delta(
        &mut self,
        sender: MemberId,
        delta: &DeltaSubmission,
        late: bool,
    ) -> Result<Accepted, Rejection> {
        let reject = |reason, detail: String| Err(Rejection::new(Some(sender), reason, detail));
        let max_inputs = self.manifest.limits.max_cohort as usize;
        let max_late = self.config.max_late;
        let target = self.target()?;
        let Some(round) = self.round.as_ref() else {
            return reject(Reason::FutureRound, "no open round".into());
        };
        if round.equivocators.contains(&sender) {
            return reject(Reason::Equivocation, "already caught equivocating".into());
        }
        match round.by_sender.get(&sender) {
            Some(h) if *h == delta.hash => {
                return reject(Reason::Duplicate, format!("delta {} again", delta.hash));
            }
            Some(first) => {
                let first = *first;
                let Some(round) = self.round.as_mut() else {
                    return reject(Reason::FutureRound, "no open round".into());
                };
                round.deltas.remove(&first);
                round.late.remove(&first);
                round.equivocators.insert(sender);
                return reject(
                    Reason::Equivocation,
                    "a second, different delta in the same round; both are excluded".into(),
                );
            }
            None => {}
        }
        if round.deltas.contains_key(&delta.hash) || round.late.contains_key(&delta.hash) {
            return reject(
                Reason::Duplicate,
                format!("delta {} already held", delta.hash),
            );
        }
        if !late && round.deltas.len() >= max_inputs {
            return reject(Reason::Full, format!("round holds {max_inputs} deltas"));
        }
        if late && round.late.len() >= max_late {
            return reject(Reason::Full, format!("{max_late} late deltas held"));
        }
        check_delta(target, sender, delta)?;
        let Some(round) = self.round.as_mut() else {
            return reject(Reason::FutureRound, "no open round".into());
        };
        round.by_sender.insert(sender, delta.hash);
        let held = Held {
            sender,
            delta: delta.clone(),
        };
        if late {
            round.late.insert(delta.hash, held);
            self.reconcile_all();
            return reject(
                Reason::Late,
                "after the submit deadline: kept to verify peers' versions, not aggregated".into(),
            );
        }
        round.deltas.insert(delta.hash, held);
        Ok(Accepted::Delta {
            sender,
            hash: delta.hash,
        })
    }

    fn accept_announcement(
        &mut self,
        sender: MemberId,
        announcement: &VersionAnnouncement,
    ) -> Result<Accepted, Rejection> {
        let reject = |reason, detail: String| Err(Rejection::new(Some(sender), reason, detail));
        let max = self.manifest.limits.max_cohort as usize;
        let Some(round) = self.round.as_mut() else {
            return reject(Reason::FutureRound, "no open round".into());
        };
        if announcement.parent != round.parent() {
            return reject(
                Reason::WrongBase,
                format!("version on parent {}", announcement.parent.short()),
            );
        }
        match round.announcements.get(&sender) {
            Some(a) if a == announcement => {
                return reject(Reason::Duplicate, "announcement again".into());
            }
            Some(_) => {
                return reject(
                    Reason::Equivocation,
                    "a second, different announcement".into(),
                );
            }
            None => {}
        }
        if round.announcements.len() >= max {
            return reject(Reason::Full, format!("{max} announcements held"));
        }
        round.announcements.insert(sender, announcement.clone());
        if let Err(why) = self.reconcile(announcement) {
            return reject(Reason::BadAnnouncement, why);
        }
        Ok(Accepted::Announcement {
            sender,
            version: announcement.version,
        })
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
                    Ok(groups) => check_groups(&round.info, &groups).and_then(|()| {
                        next_from_groups(&self.manifest, &round.parent_state, number, &groups)
                            .map_err(fail_reason)
                    }),
                },
            }
        } else {
            let included: Vec<&DeltaSubmission> = round.deltas.values().map(|h| &h.delta).collect();
            next_from_deltas(
                &self.manifest,
                self.config.weighting,
                &round.parent_state,
                number,
                &included,
            )
            .map_err(fail_reason)
        };
        let result = result.and_then(|(record, state)| {
            match self.probe.as_mut() {
                Some(p) => p
                    .check(number, &round.parent_state.adapter, &state.adapter)
                    .map_err(FailReason::Probe),
                None => Ok(()),
            }
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

    /// Considers every announcement held, most preferred first.
    fn reconcile_all(&mut self) {
        let Some(round) = self.round.as_ref() else {
            return;
        };
        let mut candidates: Vec<(MemberId, VersionAnnouncement)> = round
            .announcements
            .iter()
            .map(|(s, a)| (*s, a.clone()))
            .collect();
        candidates.sort_by(|(_, a), (_, b)| {
            b.deltas
                .len()
                .cmp(&a.deltas.len())
                .then(a.version.cmp(&b.version))
        });
        candidates.dedup_by(|(_, a), (_, b)| a == b);
        for (sender, a) in candidates {
            if let Err(why) = self.reconcile(&a) {
                let rejection = Rejection::new(Some(sender), Reason::BadAnnouncement, why);
                self.counters.reject(rejection.reason);
                self.pending.push(Output::Failed {
                    round: a.round,
                    reason: FailReason::Update(rejection.to_string()),
                });
            }
        }
    }

    /// The late-message reconciliation rule: once our round has closed, a peer's version for the
    /// same round and parent is *preferred* over ours if it includes more inputs, or as many and
    /// its hash is smaller (any version is preferred over a failed round, given enough inputs).
    /// A preferred version whose inputs we all hold (on time or late) is recomputed and, if it
    /// checks out and passes the probe, adopted; if inputs are missing we ask for them once.
    /// `Err` means the announcement is provably wrong.
    fn reconcile(&mut self, a: &VersionAnnouncement) -> Result<(), String> {
        let secure = self.secure();
        let min = self.manifest.schedule.min_contributions as usize;
        let Some(round) = self.round.as_mut() else {
            return Ok(());
        };
        let ours = match &round.outcome {
            None => return Ok(()),
            Some(Outcome::Closed(r)) => Some((r.inputs.len(), r.version)),
            Some(Outcome::Failed(_)) => None,
        };
        let preferred = match ours {
            None => a.deltas.len() >= min,
            Some((n, v)) => {
                a.version != v && (a.deltas.len() > n || (a.deltas.len() == n && a.version < v))
            }
        };
        if secure || !preferred || a.round != round.number() || a.parent != round.parent() {
            return Ok(());
        }
        let mut held = Vec::with_capacity(a.deltas.len());
        let mut missing = Vec::new();
        for h in &a.deltas {
            match round.deltas.get(h).or_else(|| round.late.get(h)) {
                Some(d) if round.equivocators.contains(&d.sender) => return Ok(()),
                Some(d) => held.push(&d.delta),
                None => missing.push(*h),
            }
        }
        if !missing.is_empty() {
            if round.reported.insert(a.version) {
                self.pending.push(Output::Missing {
                    round: a.round,
                    version: a.version,
                    inputs: missing,
                });
            }
            return Ok(());
        }
        let (record, state) = next_from_deltas(
            &self.manifest,
            self.config.weighting,
            &round.parent_state,
            a.round,
            &held,
        )
        .map_err(|e| format!("its inputs do not make a version: {e}"))?;
        if record.version != a.version {
            return Err(format!(
                "its inputs give version {}, not {}",
                record.version, a.version
            ));
        }
        if let Some(p) = self.probe.as_mut()
            && p.check(a.round, &round.parent_state.adapter, &state.adapter)
                .is_err()
        {
            return Ok(());
        }
        let replaced = ours.map(|(_, v)| v);
        if replaced.is_some() {
            self.chain.pop_back();
        }
        round.outcome = Some(Outcome::Closed(record.clone()));
        self.head = state;
        self.head_round = a.round;
        self.push_record(record.clone());
        self.pending.push(Output::Adopted { replaced, record });
        Ok(())
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

/// Checks group sums against the round: members in the cohort, sorted, in one group only.
fn check_groups(info: &RoundInfo, groups: &[GroupSum]) -> Result<(), FailReason> {
    let mut seen = BTreeSet::new();
    for g in groups {
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

#[cfg(test)]
mod properties;
#[cfg(test)]
mod tests;
