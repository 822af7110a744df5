//! Errors of secure aggregation.

use hearth_protocol::MemberId;

/// Everything that can go wrong in a secure-aggregation round.
///
/// Messages from other members are untrusted: each way they can be wrong has its own variant, and
/// a round that cannot finish says why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The threat model is not usable.
    #[error("invalid secure-aggregation config: {0}")]
    InvalidConfig(String),
    /// The cohort is too small or too large.
    #[error("cohort of {found} members; secure aggregation needs {min} to {max}")]
    CohortSize {
        /// Members in the cohort.
        found: usize,
        /// Fewest allowed.
        min: usize,
        /// Most allowed.
        max: usize,
    },
    /// A member id appears twice in the cohort.
    #[error("member {0} appears twice in the cohort")]
    DuplicateMember(MemberId),
    /// A message came from someone outside the cohort (or this member is not in it).
    #[error("{0} is not in the cohort")]
    NotInCohort(MemberId),
    /// A message carries another round.
    #[error("message for round {found} in round {expected}")]
    WrongRound {
        /// This round.
        expected: u64,
        /// The message's round.
        found: u64,
    },
    /// A member sent a second, different message of one kind.
    #[error("{member} sent two different {what} messages")]
    Equivocation {
        /// The sender.
        member: MemberId,
        /// Which message.
        what: &'static str,
    },
    /// A message is malformed or inconsistent with the round's public data.
    #[error("bad {what} from {member}: {reason}")]
    BadMessage {
        /// The sender.
        member: MemberId,
        /// Which message.
        what: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A method was called in the wrong phase.
    #[error("{action} is not possible in phase {phase}")]
    WrongPhase {
        /// What was attempted.
        action: &'static str,
        /// The current phase.
        phase: &'static str,
    },
    /// Too many members dropped out for the round to finish.
    #[error("too many dropouts: {what}: {found}, need at least {need}")]
    TooManyDropouts {
        /// What was counted.
        what: &'static str,
        /// How many there were.
        found: usize,
        /// How many are needed.
        need: usize,
    },
    /// Not enough shares were revealed to rebuild a member's secret.
    #[error("only {found} of the {need} shares needed to rebuild the {secret} of {member}")]
    NotEnoughShares {
        /// Whose secret.
        member: MemberId,
        /// Which secret (`self-mask seed` or `mask key`).
        secret: &'static str,
        /// Shares revealed.
        found: usize,
        /// Threshold.
        need: usize,
    },
    /// Revealed shares rebuild a secret that does not match its public commitment.
    #[error("the shares of the {secret} of {member} do not match its public key")]
    InconsistentShares {
        /// Whose secret.
        member: MemberId,
        /// Which secret.
        secret: &'static str,
    },
    /// A member is asked to reveal the other kind of share for a peer it already revealed one
    /// kind for: both together would unmask that peer's input.
    #[error("refusing to reveal both the self-mask share and the key share of {0}")]
    WouldRevealBoth(MemberId),
    /// Two different survivor sets reached the quorum: at least the overlap equivocated.
    #[error("two survivor sets reached the quorum; refusing to unmask")]
    ConflictingSurvivorSets,
    /// No survivor set has reached the quorum (announcers saw different masked inputs).
    #[error("no survivor set has reached the quorum of {quorum} announcements (best: {best})")]
    NoAgreement {
        /// Announcements needed.
        quorum: usize,
        /// Announcements of the most announced set.
        best: usize,
    },
    /// Two survivors disagree on whether they masked with each other.
    #[error("{a} and {b} disagree on their pairwise mask")]
    MaskMismatch {
        /// One survivor.
        a: MemberId,
        /// The other.
        b: MemberId,
    },
    /// A message needed to compute the sum is missing.
    #[error("missing {what} of {member}")]
    Missing {
        /// Which message.
        what: &'static str,
        /// Whose.
        member: MemberId,
    },
    /// The noise of a group cannot be calibrated (the training crate refused the parameters).
    #[error("cannot calibrate the noise of a group of {size}: {reason}")]
    Calibration {
        /// Group size.
        size: usize,
        /// The training crate's reason.
        reason: String,
    },
    /// A masked input's length differs from the round's.
    #[error("masked input of {member} has {found} values, expected {expected}")]
    LengthMismatch {
        /// The sender.
        member: MemberId,
        /// Its length.
        found: usize,
        /// The round's length.
        expected: usize,
    },
}
