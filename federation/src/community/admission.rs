//! Admission and the checks of every round message, in the order documented on
//! [`Community`](super::Community): certificate, round, kind, timing, cohort, replay, then the
//! delta and announcement rules.

use hearth_protocol::{
    DeltaSubmission, Kind, MemberId, Message, Payload, Role, VersionAnnouncement,
};

use super::{Community, admin_reason};
use crate::clock::{Phase, Timing};
use crate::reject::{Reason, Rejection};
use crate::round::{Accepted, Held, Round};
use crate::verify::{Target, check_delta};

impl Community {
    pub(super) fn handle(&mut self, message: &Message, now: u64) -> Result<Accepted, Rejection> {
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
                    }
                }
            }
        }
    }

    /// Admission, round, kind, timing and cohort checks; returns whether the message is late.
    pub(super) fn precheck(
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
    pub(super) fn certificate_at(
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

    pub(super) fn target(&self) -> Result<Target<'_>, Rejection> {
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

    pub(super) fn accept_delta(
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

    pub(super) fn accept_announcement(
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
        if round.bad_announcers.contains(&sender) {
            return reject(
                Reason::BadAnnouncement,
                "already sent a wrong announcement this round".into(),
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
            self.mark_bad_announcer(sender);
            return reject(Reason::BadAnnouncement, why);
        }
        Ok(Accepted::Announcement {
            sender,
            version: announcement.version,
        })
    }
}
