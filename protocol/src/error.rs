//! The crate's one error type.

use crate::hash::Hash32;
use crate::identity::MemberId;
use crate::payload::Kind;

/// Everything that can go wrong while building, encoding, decoding or checking a Hearth message.
///
/// Each rejection reason has its own variant so that callers can count and log them separately
/// (a forged signature is not a truncated message is not a replay).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The encoded message is larger than [`Limits::max_message_bytes`](crate::Limits).
    #[error("message of {len} bytes exceeds the limit of {max} bytes")]
    MessageTooLarge {
        /// Size of the rejected message.
        len: usize,
        /// The limit in force.
        max: usize,
    },
    /// The bytes end in the middle of a CBOR item.
    #[error("{what} truncated: input ended after {len} bytes")]
    Truncated {
        /// What was being decoded.
        what: &'static str,
        /// How many bytes there were.
        len: usize,
    },
    /// The bytes are not a valid CBOR encoding of the expected structure.
    #[error("malformed {what}: {reason}")]
    Malformed {
        /// What was being decoded.
        what: &'static str,
        /// The decoder's explanation.
        reason: String,
    },
    /// The bytes decode, but are not the canonical encoding of what they decode to.
    #[error("{what} is not canonically encoded")]
    NonCanonical {
        /// What was being decoded.
        what: &'static str,
    },
    /// The envelope carries a protocol version this implementation does not speak.
    #[error("unsupported protocol version {found} (supported: {supported})")]
    UnsupportedVersion {
        /// Version found in the envelope.
        found: u16,
        /// The version this implementation speaks.
        supported: u16,
    },
    /// The envelope carries a message kind this implementation does not know.
    #[error("unknown message kind {0}")]
    UnknownKind(u16),
    /// The envelope or object belongs to another community.
    #[error("wrong community: expected {expected}, found {found}")]
    WrongCommunity {
        /// The community the caller is in.
        expected: Hash32,
        /// The community named by the message.
        found: Hash32,
    },
    /// The 32 bytes of a member id are not a valid ed25519 public key.
    #[error("member id {0} is not a valid ed25519 public key")]
    InvalidKey(MemberId),
    /// An ed25519 signature does not verify.
    #[error("bad signature on {what} from {signer}")]
    BadSignature {
        /// What was signed.
        what: &'static str,
        /// The key the signature was checked against.
        signer: MemberId,
    },
    /// A text form of a member id (libp2p PeerId) could not be parsed.
    #[error("invalid peer id: {reason}")]
    InvalidPeerId {
        /// Why it was rejected.
        reason: String,
    },
    /// A hex string could not be parsed as a 32-byte hash.
    #[error("invalid hash: {reason}")]
    InvalidHash {
        /// Why it was rejected.
        reason: String,
    },
    /// A size or count is over its limit.
    #[error("{what}: {found} exceeds the limit of {max}")]
    LimitExceeded {
        /// Which limit.
        what: &'static str,
        /// The size or count found.
        found: u64,
        /// The limit in force.
        max: u64,
    },
    /// A field has a value outside its allowed range.
    #[error("invalid {field}: {reason}")]
    InvalidValue {
        /// The offending field.
        field: &'static str,
        /// Why it was rejected.
        reason: String,
    },
    /// A tensor's shape does not match its data or the community's LoRA shape.
    #[error("shape mismatch in {layer}: {reason}")]
    ShapeMismatch {
        /// Name of the tensor.
        layer: String,
        /// What does not match.
        reason: String,
    },
    /// A content hash carried in a message does not match the recomputed hash.
    #[error("{what} hash mismatch: claimed {claimed}, computed {computed}")]
    HashMismatch {
        /// What was hashed.
        what: &'static str,
        /// Hash carried by the message.
        claimed: Hash32,
        /// Hash recomputed from the contents.
        computed: Hash32,
    },
    /// The round inside a payload differs from the round in its envelope header.
    #[error("round mismatch: header says {header}, payload says {payload}")]
    RoundMismatch {
        /// Round in the envelope header.
        header: u64,
        /// Round in the payload.
        payload: u64,
    },
    /// The envelope's kind does not match the payload it is asked to carry.
    #[error("kind mismatch: header says {header:?}, payload is {payload:?}")]
    KindMismatch {
        /// Kind in the header.
        header: Kind,
        /// Kind of the payload.
        payload: Kind,
    },
    /// A certificate is presented for a different member than the message sender.
    #[error("certificate is for {certificate}, not for sender {sender}")]
    CertificateMismatch {
        /// Member named by the certificate.
        certificate: MemberId,
        /// Member that sent the message.
        sender: MemberId,
    },
    /// A certificate's validity has not started yet.
    #[error("certificate of {member} is not valid before {issued} (now {now})")]
    CertificateNotYetValid {
        /// Certified member.
        member: MemberId,
        /// Start of validity, unix seconds.
        issued: u64,
        /// The caller's clock, unix seconds.
        now: u64,
    },
    /// A certificate has expired.
    #[error("certificate of {member} expired at {expires} (now {now})")]
    CertificateExpired {
        /// Certified member.
        member: MemberId,
        /// End of validity, unix seconds.
        expires: u64,
        /// The caller's clock, unix seconds.
        now: u64,
    },
    /// The member is on the community's revocation list.
    #[error("member {0} is revoked")]
    Revoked(MemberId),
    /// A revocation list is not newer than the one already applied.
    #[error("revocation list sequence {found} is not newer than {current}")]
    StaleRevocations {
        /// Sequence number of the offered list.
        found: u64,
        /// Sequence number already applied.
        current: u64,
    },
    /// The member lacks the role the action needs.
    #[error("member {member} lacks role {role}")]
    MissingRole {
        /// The member.
        member: MemberId,
        /// Name of the missing role.
        role: &'static str,
    },
    /// This exact (sender, round, nonce) was already accepted.
    #[error("replayed message from {sender}: round {round}, nonce {nonce}")]
    Replayed {
        /// Sender of the message.
        sender: MemberId,
        /// Round in the header.
        round: u64,
        /// Nonce in the header.
        nonce: u64,
    },
    /// The message is older than the replay window remembers, so it is refused.
    #[error(
        "stale message from {sender}: round {round}, nonce {nonce} is behind the replay window"
    )]
    Stale {
        /// Sender of the message.
        sender: MemberId,
        /// Round in the header.
        round: u64,
        /// Nonce in the header.
        nonce: u64,
    },
    /// Encoding a value failed (should not happen for well-formed values).
    #[error("encoding {what} failed: {reason}")]
    Encode {
        /// What was being encoded.
        what: &'static str,
        /// The encoder's explanation.
        reason: String,
    },
}
