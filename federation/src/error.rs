//! The crate's one error type.

use hearth_protocol::{Hash32, MemberId};

use crate::reject::Rejection;

/// Everything that can go wrong while setting up a community, driving a round or verifying a
/// version. Rejected *messages* are not errors of the node: they are [`Rejection`]s, returned
/// by [`Community::on_message`](crate::Community::on_message) and counted.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A protocol object (manifest, certificate, revocation list, envelope) failed its checks.
    #[error("protocol: {0}")]
    Protocol(#[from] hearth_protocol::Error),
    /// A configuration value is out of range.
    #[error("invalid config {field}: {reason}")]
    Config {
        /// The offending field.
        field: &'static str,
        /// Why it was rejected.
        reason: String,
    },
    /// An adapter or optimizer state does not have the community's LoRA shape.
    #[error("adapter shape mismatch: {reason}")]
    Shape {
        /// What does not match.
        reason: String,
    },
    /// An adapter or update holds a NaN or an infinity.
    #[error("{what} value at index {index} is not finite")]
    NonFinite {
        /// What was checked.
        what: &'static str,
        /// Position of the first offending value.
        index: usize,
    },
    /// A round cannot start: one is still open, or its number does not follow the head's.
    #[error("cannot start round {round}: {reason}")]
    RoundStart {
        /// The round asked for.
        round: u64,
        /// Why not.
        reason: String,
    },
    /// The community's privacy mode needs secure aggregation, but no engine was installed.
    #[error("distributed privacy mode needs a secure-aggregation engine")]
    NoSecureAggregation,
    /// No round is open.
    #[error("no round is open")]
    NoRound,
    /// The member table is full (see [`Config::max_members`](crate::Config)).
    #[error("member table is full ({max} certificates)")]
    MembersFull {
        /// The limit in force.
        max: usize,
    },
    /// A delta offered to [`verify_version`](crate::Community::verify_version), or a message
    /// offered to [`verify_secure_round`](crate::Community::verify_secure_round), was rejected.
    #[error("input {index} of the version is invalid: {rejection}")]
    InvalidInput {
        /// Position in the list given.
        index: usize,
        /// Why it was rejected.
        rejection: Box<Rejection>,
    },
    /// The deltas given are not the ones the announcement lists.
    #[error("announced inputs do not match the deltas given: {reason}")]
    InputsMismatch {
        /// What differs.
        reason: String,
    },
    /// The announcement is for another round or parent than the state given.
    #[error("announcement is for round {round} on {parent}, expected parent {expected}")]
    WrongParent {
        /// Round of the announcement.
        round: u64,
        /// Parent named by the announcement.
        parent: Hash32,
        /// Version of the state given.
        expected: Hash32,
    },
    /// Recomputing the version gave another hash than announced.
    #[error("version mismatch: announced {announced}, recomputed {computed}")]
    VersionMismatch {
        /// The announced version.
        announced: Hash32,
        /// What the deltas give.
        computed: Hash32,
    },
    /// The version checks out but the community's probe-set check refuses it: honest nodes
    /// would not have applied it.
    #[error("round {round}: the probe check refuses the version: {reason}")]
    ProbeRefused {
        /// The round of the version.
        round: u64,
        /// Why.
        reason: String,
    },
    /// Too few inputs for a version (the manifest's `min_contributions`).
    #[error("{found} contributions, the community needs at least {needed}")]
    TooFew {
        /// Inputs found.
        found: usize,
        /// `min_contributions`.
        needed: usize,
    },
    /// A secure round could not be recomputed from the messages given (one is missing, a group
    /// did not complete, too many messages, or the community's rounds are not secure).
    #[error("secure round {round} cannot be recomputed: {reason}")]
    SecureReplay {
        /// The round.
        round: u64,
        /// Why.
        reason: String,
    },
    /// A member is referred to that has no certificate here.
    #[error("no certificate for member {0}")]
    UnknownMember(MemberId),
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
