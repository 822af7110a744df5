//! The phase clock of a round: which phase a given time falls in, and each phase's deadline.
//!
//! Times are unix seconds (`u64`), passed in by the caller; the crate never reads a clock.
//!
//! A round starts at `start` (for [`Period::Every`]: `manifest.created + round·secs`; on demand:
//! when the caller starts it). Deadlines are the manifest's [`Schedule`] offsets from `start`:
//!
//! | phase      | plain rounds (local DP)          | secure aggregation (distributed DP) |
//! |------------|----------------------------------|-------------------------------------|
//! | `Keys`     | —                                | `[start, start + submit/4)`         |
//! | `Shares`   | —                                | `[start + submit/4, start + submit/2)` |
//! | `Submit`   | `[start, start + submit)`        | `[start + submit/2, start + submit)` |
//! | `Unmask`   | —                                | `[start + submit, start + unmask)`  |
//! | `Announce` | `[start + submit, start + announce)` | `[start + unmask, start + announce)` |
//! | `Closed`   | from `start + announce`          | from `start + announce`             |
//!
//! Late-message rule: a message belonging to a phase is accepted iff `now < deadline(phase)` by
//! the receiving node's clock, and not before the phase opens by more than the configured clock
//! skew allowance. Anything later is rejected as late — never silently included — so a node's
//! inputs are fixed once its deadline has passed.

use hearth_protocol::{Kind, Period, Schedule};

/// A phase of a round.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Phase {
    /// Before the round's start.
    Waiting,
    /// Secure aggregation: members advertise their ephemeral keys.
    Keys,
    /// Secure aggregation: members send encrypted shares of their mask secrets.
    Shares,
    /// Deltas (plain) or masked inputs (secure aggregation) are collected.
    Submit,
    /// Secure aggregation: survivor set and unmasking shares.
    Unmask,
    /// The round's result is known; version announcements are collected.
    Announce,
    /// The round is over.
    Closed,
}

impl Phase {
    /// Lower-case name for logs and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Waiting => "waiting",
            Phase::Keys => "keys",
            Phase::Shares => "shares",
            Phase::Submit => "submit",
            Phase::Unmask => "unmask",
            Phase::Announce => "announce",
            Phase::Closed => "closed",
        }
    }

    /// The phase in which messages of `kind` belong, or `None` for kinds that are not round
    /// messages (manifest, certificates, revocations).
    pub fn of_kind(kind: Kind) -> Option<Phase> {
        match kind {
            Kind::Manifest | Kind::Certificate | Kind::Revocations => None,
            Kind::Keys => Some(Phase::Keys),
            Kind::Shares => Some(Phase::Shares),
            Kind::Delta | Kind::Masked => Some(Phase::Submit),
            Kind::Survivors | Kind::Unmasking => Some(Phase::Unmask),
            Kind::Version => Some(Phase::Announce),
        }
    }
}

/// Deadlines of one round (all absolute unix seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PhaseClock {
    /// Round start.
    pub start: u64,
    /// Whether the round runs secure aggregation (adds the keys, shares and unmask phases).
    pub secure: bool,
    /// End of the keys phase (secure aggregation).
    pub keys_end: u64,
    /// End of the shares phase (secure aggregation).
    pub shares_end: u64,
    /// Deltas / masked inputs are due.
    pub submit_end: u64,
    /// Unmasking shares are due (secure aggregation; equals `submit_end` otherwise).
    pub unmask_end: u64,
    /// Version announcements are due; the round is closed from here on.
    pub announce_end: u64,
}

impl PhaseClock {
    /// The clock of a round starting at `start` under `schedule`. Offsets saturate instead of
    /// overflowing.
    pub fn new(schedule: &Schedule, start: u64, secure: bool) -> Self {
        let at = |secs: u64| start.saturating_add(secs);
        let submit = schedule.submit_secs;
        PhaseClock {
            start,
            secure,
            keys_end: at(if secure { submit / 4 } else { 0 }),
            shares_end: at(if secure { submit / 2 } else { 0 }),
            submit_end: at(submit),
            unmask_end: at(if secure { schedule.unmask_secs } else { submit }),
            announce_end: at(schedule.announce_secs),
        }
    }

    /// Start of round `round` for a periodic schedule (`created + round·secs`), or `None` on
    /// demand.
    pub fn scheduled_start(schedule: &Schedule, created: u64, round: u64) -> Option<u64> {
        match schedule.period {
            Period::Every { secs } => Some(created.saturating_add(round.saturating_mul(secs))),
            Period::OnDemand => None,
        }
    }

    /// The round a periodic schedule is in at `now` (`None` before `created` or on demand).
    pub fn round_at(schedule: &Schedule, created: u64, now: u64) -> Option<u64> {
        match schedule.period {
            Period::Every { secs } if secs > 0 && now >= created => Some((now - created) / secs),
            _ => None,
        }
    }

    /// When `phase` opens (`None` for phases this round does not have).
    pub fn opens(&self, phase: Phase) -> Option<u64> {
        match (phase, self.secure) {
            (Phase::Waiting, _) => None,
            (Phase::Keys | Phase::Shares | Phase::Unmask, false) => None,
            (Phase::Keys, true) => Some(self.start),
            (Phase::Shares, true) => Some(self.keys_end),
            (Phase::Submit, false) => Some(self.start),
            (Phase::Submit, true) => Some(self.shares_end),
            (Phase::Unmask, true) => Some(self.submit_end),
            (Phase::Announce, _) => Some(self.unmask_end),
            (Phase::Closed, _) => Some(self.announce_end),
        }
    }

    /// When `phase` ends (its deadline, exclusive); `None` for phases this round does not have
    /// and for `Closed`.
    pub fn deadline(&self, phase: Phase) -> Option<u64> {
        match (phase, self.secure) {
            (Phase::Waiting, _) => Some(self.start),
            (Phase::Keys | Phase::Shares | Phase::Unmask, false) => None,
            (Phase::Keys, true) => Some(self.keys_end),
            (Phase::Shares, true) => Some(self.shares_end),
            (Phase::Submit, _) => Some(self.submit_end),
            (Phase::Unmask, true) => Some(self.unmask_end),
            (Phase::Announce, _) => Some(self.announce_end),
            (Phase::Closed, _) => None,
        }
    }

    /// The phase at time `now`.
    pub fn phase_at(&self, now: u64) -> Phase {
        if now < self.start {
            Phase::Waiting
        } else if self.secure && now < self.keys_end {
            Phase::Keys
        } else if self.secure && now < self.shares_end {
            Phase::Shares
        } else if now < self.submit_end {
            Phase::Submit
        } else if self.secure && now < self.unmask_end {
            Phase::Unmask
        } else if now < self.announce_end {
            Phase::Announce
        } else {
            Phase::Closed
        }
    }

    /// Whether a message of phase `phase` arriving at `now` is in time: the phase exists, opens
    /// no later than `now + skew`, and its deadline has not passed.
    pub fn timing(&self, phase: Phase, now: u64, skew: u64) -> Timing {
        match (self.opens(phase), self.deadline(phase)) {
            (Some(open), Some(close)) => {
                if now >= close {
                    Timing::Late
                } else if now.saturating_add(skew) < open {
                    Timing::Early
                } else {
                    Timing::InTime
                }
            }
            _ => Timing::NoSuchPhase,
        }
    }
}

/// How a message's arrival relates to its phase's window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timing {
    /// Within the window.
    InTime,
    /// Before the window opens (beyond the skew allowance).
    Early,
    /// At or after the deadline.
    Late,
    /// The round has no such phase (e.g. secure-aggregation messages in a plain round).
    NoSuchPhase,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule() -> Schedule {
        Schedule {
            period: Period::Every { secs: 600 },
            submit_secs: 300,
            unmask_secs: 420,
            announce_secs: 540,
            sampling_rate: 1.0,
            min_contributions: 2,
        }
    }

    #[test]
    fn plain_phases_at_their_edges() {
        let c = PhaseClock::new(&schedule(), 1000, false);
        assert_eq!(c.phase_at(999), Phase::Waiting);
        assert_eq!(c.phase_at(1000), Phase::Submit);
        assert_eq!(c.phase_at(1299), Phase::Submit);
        assert_eq!(c.phase_at(1300), Phase::Announce);
        assert_eq!(c.phase_at(1539), Phase::Announce);
        assert_eq!(c.phase_at(1540), Phase::Closed);
        assert_eq!(c.timing(Phase::Submit, 1299, 0), Timing::InTime);
        assert_eq!(c.timing(Phase::Submit, 1300, 0), Timing::Late);
        assert_eq!(c.timing(Phase::Submit, 999, 0), Timing::Early);
        assert_eq!(c.timing(Phase::Submit, 990, 10), Timing::InTime);
        assert_eq!(c.timing(Phase::Submit, 989, 10), Timing::Early);
        assert_eq!(c.timing(Phase::Keys, 1100, 0), Timing::NoSuchPhase);
        assert_eq!(c.timing(Phase::Announce, 1299, 0), Timing::Early);
        assert_eq!(c.timing(Phase::Announce, 1300, 0), Timing::InTime);
        assert_eq!(c.timing(Phase::Announce, 1540, 0), Timing::Late);
    }

    #[test]
    fn secure_phases_at_their_edges() {
        let c = PhaseClock::new(&schedule(), 1000, true);
        let expect = [
            (1000, Phase::Keys),
            (1074, Phase::Keys),
            (1075, Phase::Shares),
            (1149, Phase::Shares),
            (1150, Phase::Submit),
            (1299, Phase::Submit),
            (1300, Phase::Unmask),
            (1419, Phase::Unmask),
            (1420, Phase::Announce),
            (1540, Phase::Closed),
        ];
        for (t, p) in expect {
            assert_eq!(c.phase_at(t), p, "t = {t}");
        }
        assert_eq!(c.timing(Phase::Keys, 1075, 0), Timing::Late);
        assert_eq!(c.timing(Phase::Submit, 1149, 0), Timing::Early);
        assert_eq!(c.timing(Phase::Unmask, 1419, 0), Timing::InTime);
        assert_eq!(Phase::of_kind(Kind::Masked), Some(Phase::Submit));
        assert_eq!(Phase::of_kind(Kind::Certificate), None);
    }

    #[test]
    fn periodic_starts_and_round_numbers() {
        let s = schedule();
        assert_eq!(PhaseClock::scheduled_start(&s, 10_000, 3), Some(11_800));
        assert_eq!(PhaseClock::round_at(&s, 10_000, 11_800), Some(3));
        assert_eq!(PhaseClock::round_at(&s, 10_000, 11_799), Some(2));
        assert_eq!(PhaseClock::round_at(&s, 10_000, 9_999), None);
        let on_demand = Schedule {
            period: Period::OnDemand,
            ..s
        };
        assert_eq!(PhaseClock::scheduled_start(&on_demand, 10_000, 3), None);
        assert_eq!(PhaseClock::round_at(&on_demand, 10_000, 20_000), None);
        // Far-future rounds saturate instead of overflowing.
        let far = PhaseClock::new(&s, u64::MAX - 10, true);
        assert_eq!(far.announce_end, u64::MAX);
        assert_eq!(
            PhaseClock::scheduled_start(&s, 10_000, u64::MAX),
            Some(u64::MAX)
        );
    }
}
