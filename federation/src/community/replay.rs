//! Recomputing a secure round a node missed from the round's signed public messages.
//!
//! In a secure round no signed delta exists: a version lists the hashes of its group sums, and
//! the sums can only be rebuilt from the secure-aggregation messages every member gossiped (key
//! advertisements, encrypted shares, masked inputs, survivor sets, unmasking shares). A node that
//! missed the round fetches them from a peer and replays them through an observing copy of its
//! engine ([`SecureAggregator::observer`](crate::SecureAggregator::observer)), exactly as a live
//! observer outside the cohort computes the round — the same groups, aggregators, checks on each
//! message, noise check of each group sum and aggregation. Nothing is trusted but signatures.

use hearth_protocol::{Kind, Role, VersionAnnouncement, decode_untrusted};

use super::{Community, protocol_reason, usable_groups};
use crate::adapter::State;
use crate::chain::{VersionRecord, next_from_groups};
use crate::clock::PhaseClock;
use crate::cohort::round_seed;
use crate::error::{Error, Result};
use crate::hooks::RoundInfo;
use crate::reject::{Reason, Rejection};
use crate::round::FailReason;

/// Secure-aggregation messages one cohort member sends in a round: keys, shares, masked input,
/// survivor set, unmasking shares.
pub const MESSAGES_PER_MEMBER: usize = 5;

impl Community {
    /// Recomputes the version of secure round `announcement.round` from its signed
    /// secure-aggregation `envelopes`, as a node that missed the round does, and returns the
    /// record and the new state for [`Community::adopt`] only if they match the announcement.
    ///
    /// The round is set up as it was live: the population is the members holding a contributor
    /// certificate valid at `at` (the round's start; revocations made later are not applied
    /// retroactively, as in [`Community::verify_version`]), from which the round seed deals the
    /// cohort and its groups. Every envelope is then decoded and checked again (size, signature,
    /// community, a secure-aggregation kind, the round, certificate valid at `at`, cohort) and
    /// handed to an observing engine, which rejects duplicates, equivocation, wrong shapes and
    /// messages that do not fit the group. Each group's sum is rebuilt from the agreed survivor
    /// set, the unmasked sums must carry the full noise, and the version computed from them must
    /// list the announced group-sum hashes and have the announced hash.
    ///
    /// Errors: [`Error::InvalidInput`] names the first bad envelope and its [`Reason`] (forged,
    /// not a member, another round, out of the cohort, duplicate...); [`Error::SecureReplay`]
    /// says what is missing (a masked input, shares, survivor announcements) or that there are
    /// more envelopes than the cohort can have sent; [`Error::InputsMismatch`] and
    /// [`Error::VersionMismatch`] that the messages give another version. Extra messages that are
    /// valid (shares beyond the threshold, inputs of members outside the agreed survivor set)
    /// do not change the result: the sum depends only on the agreed set.
    pub fn verify_secure_round<B: AsRef<[u8]>>(
        &self,
        parent: &State,
        envelopes: &[B],
        announcement: &VersionAnnouncement,
        at: u64,
    ) -> Result<(VersionRecord, State)> {
        let round = announcement.round;
        let replay_error = |reason: String| Error::SecureReplay { round, reason };
        if !self.secure() {
            return Err(replay_error(
                "the community's rounds are plain: use verify_version".into(),
            ));
        }
        let parent_version = parent.version();
        if announcement.parent != parent_version {
            return Err(Error::WrongParent {
                round,
                parent: announcement.parent,
                expected: parent_version,
            });
        }
        let mut engine = self
            .secagg
            .as_ref()
            .and_then(|e| e.observer())
            .ok_or(Error::NoSecureAggregation)?;
        let members = self
            .members
            .keys()
            .filter(|m| self.certificate_at(m, at, Role::Contributor, false).is_ok())
            .copied()
            .collect();
        let info = RoundInfo {
            community: self.id,
            round,
            parent: parent_version,
            seed: round_seed(&self.id, round, &parent_version),
            clock: PhaseClock::new(&self.manifest.schedule, at, true),
            elements: parent.adapter.len(),
            manifest: self.manifest.clone(),
            min_group_size: self.manifest.aggregation.min_group_size as usize,
            members,
        };
        let most = MESSAGES_PER_MEMBER * info.cohort().len();
        if envelopes.len() > most {
            return Err(replay_error(format!(
                "{} messages, a cohort of {} sends at most {most}",
                envelopes.len(),
                most / MESSAGES_PER_MEMBER
            )));
        }
        engine.begin(&info);
        let mut messages = Vec::with_capacity(envelopes.len());
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
            let kind = message.payload.kind();
            if !matches!(
                kind,
                Kind::Keys | Kind::Shares | Kind::Masked | Kind::Survivors | Kind::Unmasking
            ) {
                return Err(reject(
                    Reason::WrongKind,
                    format!("{kind:?} is not a secure-aggregation message"),
                ));
            }
            if message.header.round != round {
                return Err(reject(
                    Reason::StaleRound,
                    format!("a message of round {}", message.header.round),
                ));
            }
            self.certificate_at(&sender, at, Role::Contributor, false)
                .map_err(invalid)?;
            if !info.in_cohort(&sender) {
                return Err(reject(Reason::NotInCohort, "outside the cohort".into()));
            }
            messages.push((phase_rank(kind), index, message));
        }
        // In phase order, as they were sent (a masked input needs its sender's shares first).
        messages.sort_by_key(|(rank, index, _)| (*rank, *index));
        for (_, index, message) in &messages {
            engine
                .on_message(&info, message, at)
                .map_err(|rejection| Error::InvalidInput {
                    index: *index,
                    rejection: Box::new(rejection),
                })?;
        }
        let groups = engine.finish(&info).map_err(replay_error)?;
        let excluded = engine.excluded();
        let groups = usable_groups(&info, groups).map_err(|r| replay_error(r.to_string()))?;
        let (record, state) =
            next_from_groups(&self.manifest, parent, round, &groups).map_err(|e| match e {
                Error::TooFew { found, needed } => replay_error(
                    FailReason::TooFew { found, needed }.to_string() + &excluded_note(&excluded),
                ),
                other => other,
            })?;
        if record.inputs != announcement.deltas {
            return Err(Error::InputsMismatch {
                reason: format!(
                    "the messages give {} group sums, {} announced{}",
                    record.inputs.len(),
                    announcement.deltas.len(),
                    excluded_note(&excluded)
                ),
            });
        }
        if record.version != announcement.version {
            return Err(Error::VersionMismatch {
                announced: announcement.version,
                computed: record.version,
            });
        }
        self.check_probe(round, parent, &state)?;
        Ok((record, state))
    }
}

/// The phase a secure-aggregation message belongs to, in order.
fn phase_rank(kind: Kind) -> u8 {
    match kind {
        Kind::Keys => 0,
        Kind::Shares => 1,
        Kind::Masked => 2,
        Kind::Survivors => 3,
        _ => 4,
    }
}

/// `"; left out: …"` when groups were left out of the replay.
fn excluded_note(excluded: &[String]) -> String {
    if excluded.is_empty() {
        String::new()
    } else {
        format!("; left out: {}", excluded.join("; "))
    }
}
