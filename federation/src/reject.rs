//! Why a message was rejected: one [`Reason`] per check, the [`Rejection`] handed back to the
//! caller (with the authenticated sender, so the node can penalise it), and [`Counters`].

use std::fmt;

use hearth_protocol::MemberId;

macro_rules! reasons {
    ($( $(#[$doc:meta])* $name:ident = $text:literal, $penalize:literal; )*) => {
        /// The check a message failed. Each has its own variant, its own counter and a fixed
        /// verdict on whether the sender misbehaved ([`Reason::is_misbehaviour`]).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[non_exhaustive]
        pub enum Reason {
            $( $(#[$doc])* $name, )*
        }

        impl Reason {
            /// Every reason, in declaration order (the order of the verification steps).
            pub const ALL: &'static [Reason] = &[$(Reason::$name),*];

            /// Stable `snake_case` name for logs and metrics.
            pub fn name(self) -> &'static str {
                match self { $(Reason::$name => $text,)* }
            }

            /// Whether the sender provably misbehaved (a correct node never sends such a
            /// message), as opposed to bad luck: lateness, a missed version, a duplicate path.
            pub fn is_misbehaviour(self) -> bool {
                match self { $(Reason::$name => $penalize,)* }
            }
        }
    };
}

reasons! {
    /// The bytes exceed the size limit.
    TooLarge = "too_large", true;
    /// The bytes do not decode, or a payload field is invalid.
    Malformed = "malformed", true;
    /// Unknown protocol version or message kind.
    Unsupported = "unsupported", false;
    /// The envelope signature does not verify (the claimed sender is not authenticated).
    Forged = "forged", true;
    /// The message names another community.
    WrongCommunity = "wrong_community", false;
    /// Header and payload disagree on the round.
    RoundMismatch = "round_mismatch", true;
    /// The sender has no certificate known here.
    NotMember = "not_member", false;
    /// The sender's certificate has expired or is not valid yet.
    CertificateExpired = "certificate_expired", false;
    /// The sender is revoked.
    Revoked = "revoked", true;
    /// The sender's certificate lacks the role (contributor, announcer).
    MissingRole = "missing_role", true;
    /// An admin object (certificate, revocation list, manifest) failed its checks.
    BadAdminObject = "bad_admin_object", true;
    /// An admin object that was valid once: an expired or revoked member's certificate, an
    /// older revocation list.
    StaleAdminObject = "stale_admin_object", false;
    /// The message is for a round that is over here.
    StaleRound = "stale_round", false;
    /// The message is for a round not open here yet (the node may buffer and retry).
    FutureRound = "future_round", false;
    /// This kind of message has no place in this round (e.g. a plain delta in a secure round).
    WrongKind = "wrong_kind", true;
    /// The message came before its phase opened.
    Early = "early", false;
    /// The message came at or after its phase's deadline.
    Late = "late", false;
    /// The sender is not in the round's cohort.
    NotInCohort = "not_in_cohort", true;
    /// Exactly this (sender, round, nonce) was accepted before.
    Replayed = "replayed", false;
    /// The message is behind the replay window.
    Stale = "stale", false;
    /// The delta was computed against another adapter version than the round's parent.
    WrongBase = "wrong_base", false;
    /// The delta's DP parameters differ from the community's.
    DpMismatch = "dp_mismatch", true;
    /// The delta's tensors are not the community adapter's.
    WrongShape = "wrong_shape", true;
    /// A quantized value or the scale is outside the allowed range.
    QuantizationRange = "quantization_range", true;
    /// A value is NaN or infinite (scale, or a dequantized value).
    NonFinite = "non_finite", true;
    /// The delta's L2 norm exceeds the clip bound plus the documented noise tolerance.
    OverNorm = "over_norm", true;
    /// A delta with this content hash was already accepted this round.
    Duplicate = "duplicate", false;
    /// The sender already submitted a different delta this round.
    Equivocation = "equivocation", true;
    /// A version announcement that does not verify: its inputs give another version.
    BadAnnouncement = "bad_announcement", true;
    /// A bounded table (round inputs, late deltas, announcements, members) is full.
    Full = "full", false;
    /// The secure-aggregation engine refused the message.
    SecureAggregation = "secure_aggregation", true;
}

/// A rejected message: why, and who sent it if that is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The sender, when authenticated (the envelope signature verified). `None` for bytes that
    /// did not get that far: penalise the peer that relayed them instead.
    pub sender: Option<MemberId>,
    /// The check that failed.
    pub reason: Reason,
    /// Details for the log line.
    pub detail: String,
}

impl Rejection {
    /// A rejection of a message from `sender`.
    pub fn new(sender: Option<MemberId>, reason: Reason, detail: impl Into<String>) -> Self {
        Rejection {
            sender,
            reason,
            detail: detail.into(),
        }
    }

    /// The sender to penalise: the authenticated sender, if the reason is misbehaviour.
    pub fn culprit(&self) -> Option<MemberId> {
        self.sender.filter(|_| self.reason.is_misbehaviour())
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.sender {
            Some(s) => write!(f, "{} from {s}: {}", self.reason.name(), self.detail),
            None => write!(f, "{}: {}", self.reason.name(), self.detail),
        }
    }
}

impl std::error::Error for Rejection {}

/// Messages accepted, and rejected by reason.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    accepted: u64,
    rejected: Vec<u64>,
}

impl Counters {
    /// Counts an accepted message.
    pub fn accept(&mut self) {
        self.accepted += 1;
    }

    /// Counts a rejection.
    pub fn reject(&mut self, reason: Reason) {
        if self.rejected.len() < Reason::ALL.len() {
            self.rejected.resize(Reason::ALL.len(), 0);
        }
        if let Some(i) = Reason::ALL.iter().position(|r| *r == reason) {
            self.rejected[i] += 1;
        }
    }

    /// Messages accepted.
    pub fn accepted(&self) -> u64 {
        self.accepted
    }

    /// Messages rejected for `reason`.
    pub fn rejected(&self, reason: Reason) -> u64 {
        Reason::ALL
            .iter()
            .position(|r| *r == reason)
            .and_then(|i| self.rejected.get(i).copied())
            .unwrap_or(0)
    }

    /// Messages rejected for any reason.
    pub fn rejected_total(&self) -> u64 {
        self.rejected.iter().sum()
    }

    /// Non-zero rejection counts, in [`Reason::ALL`] order.
    pub fn iter(&self) -> impl Iterator<Item = (Reason, u64)> + '_ {
        Reason::ALL
            .iter()
            .zip(&self.rejected)
            .filter(|(_, n)| **n > 0)
            .map(|(r, n)| (*r, *n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn names_are_distinct_and_counted_separately() {
        let names: HashSet<&str> = Reason::ALL.iter().map(|r| r.name()).collect();
        assert_eq!(names.len(), Reason::ALL.len());
        let mut c = Counters::default();
        c.accept();
        c.reject(Reason::OverNorm);
        c.reject(Reason::OverNorm);
        c.reject(Reason::Late);
        assert_eq!(c.accepted(), 1);
        assert_eq!(c.rejected(Reason::OverNorm), 2);
        assert_eq!(c.rejected(Reason::Late), 1);
        assert_eq!(c.rejected(Reason::Forged), 0);
        assert_eq!(c.rejected_total(), 3);
        assert_eq!(
            c.iter().collect::<Vec<_>>(),
            vec![(Reason::Late, 1), (Reason::OverNorm, 2)]
        );
    }

    #[test]
    fn culprits_only_for_misbehaviour() {
        let id = hearth_protocol::Keypair::from_seed([1; 32]).member_id();
        let late = Rejection::new(Some(id), Reason::Late, "after the deadline");
        assert_eq!(late.culprit(), None);
        let over = Rejection::new(Some(id), Reason::OverNorm, "norm 9 > 2");
        assert_eq!(over.culprit(), Some(id));
        assert_eq!(Rejection::new(None, Reason::Forged, "x").culprit(), None);
        assert!(over.to_string().starts_with("over_norm from 12D3KooW"));
    }
}
