//! Agreement between nodes: the reconciliation rule for versions announced by peers, and
//! verification and adoption of a version a node fetched.

use std::collections::BTreeSet;

use hearth_protocol::{
    DeltaSubmission, Hash32, MemberId, Payload, Role, VersionAnnouncement, decode_untrusted,
};

use super::{Community, probe_check, protocol_reason};
use crate::adapter::State;
use crate::chain::{VersionRecord, next_from_deltas};
use crate::cohort::{in_cohort, round_seed};
use crate::error::{Error, Result};
use crate::reject::{Reason, Rejection};
use crate::round::{Outcome, Output};
use crate::verify::{Target, check_delta};

impl Community {
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
        let (record, state) = next_from_deltas(&self.manifest, parent, announcement.round, &refs)?;
        if record.version != announcement.version {
            return Err(Error::VersionMismatch {
                announced: announcement.version,
                computed: record.version,
            });
        }
        self.check_probe(announcement.round, parent, &state)?;
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

    /// Considers every announcement held, most preferred first.
    pub(super) fn reconcile_all(&mut self) {
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
                self.mark_bad_announcer(sender);
                self.pending.push(Output::Rejected(rejection));
            }
        }
    }

    /// The late-message reconciliation rule: once our round has closed, a peer's version for the
    /// same round and parent is *preferred* over ours if it includes more inputs, or as many and
    /// its hash is smaller (any version is preferred over a failed round, given enough inputs).
    /// A preferred version whose inputs we all hold (on time or late) is recomputed and, if it
    /// checks out and passes the probe, adopted; if inputs are missing we ask for them once.
    /// `Err` means the announcement is provably wrong.
    pub(super) fn reconcile(&mut self, a: &VersionAnnouncement) -> Result<(), String> {
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
        let (record, state) = next_from_deltas(&self.manifest, &round.parent_state, a.round, &held)
            .map_err(|e| format!("its inputs do not make a version: {e}"))?;
        if record.version != a.version {
            return Err(format!(
                "its inputs give version {}, not {}",
                record.version, a.version
            ));
        }
        if probe_check(
            &self.manifest,
            self.probe.as_deref(),
            &self.probe_state,
            &round.parent_state,
            &state,
        )
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

    /// Forgets a provably wrong announcement and refuses any further one from its sender this
    /// round, so that it is never recomputed twice.
    pub(super) fn mark_bad_announcer(&mut self, sender: MemberId) {
        if let Some(round) = self.round.as_mut() {
            round.announcements.remove(&sender);
            round.bad_announcers.insert(sender);
        }
    }
}
