//! One round's state: what it started from, the inputs accepted so far, late inputs kept for
//! verification, version announcements heard, and its outcome. Driven by
//! [`Community`](crate::Community); read through [`Community::round`](crate::Community::round).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use hearth_protocol::{DeltaSubmission, Hash32, MemberId, Payload, VersionAnnouncement};

use crate::adapter::State;
use crate::chain::VersionRecord;
use crate::clock::{Phase, PhaseClock};
use crate::hooks::RoundInfo;
use crate::reject::Rejection;

/// Something the caller must act on, returned by [`Community::tick`](crate::Community::tick)
/// and friends.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// The open round entered `phase`.
    Phase {
        /// Round number.
        round: u64,
        /// The new phase.
        phase: Phase,
    },
    /// Seal `payload` in an envelope for `round` with this node's key and publish it.
    Publish {
        /// Round of the envelope.
        round: u64,
        /// What to send.
        payload: Payload,
    },
    /// The round produced a new version, now the head (persist the record and the state).
    Closed(VersionRecord),
    /// The round closed without an update.
    Failed {
        /// Round number.
        round: u64,
        /// Why.
        reason: FailReason,
    },
    /// A peer's version for the round was verified and preferred over ours (more inputs, or as
    /// many and a smaller hash); it is now the head.
    Adopted {
        /// The version we had computed (`None` if our round failed).
        replaced: Option<Hash32>,
        /// The adopted version.
        record: VersionRecord,
    },
    /// A message accepted earlier turned out to be misbehaviour once more was known (an
    /// announcement whose inputs, once all held, give another version): penalise its sender.
    Rejected(Rejection),
    /// A peer announced a version we prefer but cannot check yet: fetch these deltas (by content
    /// hash) and feed them to [`Community::on_message`](crate::Community::on_message).
    Missing {
        /// Round number.
        round: u64,
        /// The announced version.
        version: Hash32,
        /// Content hashes of the inputs we do not hold.
        inputs: Vec<Hash32>,
    },
}

/// Why a round closed without an update.
#[derive(Debug, Clone, PartialEq)]
pub enum FailReason {
    /// Fewer inputs than the manifest's `min_contributions`.
    TooFew {
        /// Inputs accepted.
        found: usize,
        /// Inputs needed.
        needed: usize,
    },
    /// Secure aggregation did not produce usable sums.
    SecureAggregation(String),
    /// The probe-set check refused the candidate.
    Probe(String),
    /// The update could not be computed (not finite, wrong shape).
    Update(String),
}

impl fmt::Display for FailReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FailReason::TooFew { found, needed } => {
                write!(f, "{found} contributions, at least {needed} needed")
            }
            FailReason::SecureAggregation(why) => write!(f, "secure aggregation failed: {why}"),
            FailReason::Probe(why) => write!(f, "probe check refused the update: {why}"),
            FailReason::Update(why) => write!(f, "update failed: {why}"),
        }
    }
}

/// What an accepted message was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Accepted {
    /// A delta, now an input of the round.
    Delta {
        /// Sender.
        sender: MemberId,
        /// Content hash.
        hash: Hash32,
    },
    /// A version announcement, recorded.
    Announcement {
        /// Sender.
        sender: MemberId,
        /// The version announced.
        version: Hash32,
    },
    /// A secure-aggregation message, handed to the engine.
    SecureAggregation {
        /// Sender.
        sender: MemberId,
    },
    /// A member certificate, now known.
    Certificate {
        /// The certified member.
        member: MemberId,
    },
    /// A revocation list, now in force.
    Revocations {
        /// Its sequence number.
        sequence: u64,
    },
    /// The community's own manifest.
    Manifest,
}

/// How a round ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// With this version.
    Closed(VersionRecord),
    /// Without an update.
    Failed(FailReason),
}

/// A delta held by the round, with its sender.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Held {
    pub sender: MemberId,
    pub delta: DeltaSubmission,
}

/// The state of one round.
#[derive(Debug)]
pub struct Round {
    pub(crate) info: RoundInfo,
    pub(crate) parent_state: State,
    pub(crate) phase: Phase,
    pub(crate) deltas: BTreeMap<Hash32, Held>,
    pub(crate) by_sender: HashMap<MemberId, Hash32>,
    pub(crate) equivocators: BTreeSet<MemberId>,
    pub(crate) late: BTreeMap<Hash32, Held>,
    pub(crate) announcements: BTreeMap<MemberId, VersionAnnouncement>,
    pub(crate) reported: BTreeSet<Hash32>,
    pub(crate) bad_announcers: BTreeSet<MemberId>,
    pub(crate) outcome: Option<Outcome>,
}

impl Round {
    pub(crate) fn new(info: RoundInfo, parent_state: State) -> Self {
        Round {
            info,
            parent_state,
            phase: Phase::Waiting,
            deltas: BTreeMap::new(),
            by_sender: HashMap::new(),
            equivocators: BTreeSet::new(),
            late: BTreeMap::new(),
            announcements: BTreeMap::new(),
            reported: BTreeSet::new(),
            bad_announcers: BTreeSet::new(),
            outcome: None,
        }
    }

    /// Round number.
    pub fn number(&self) -> u64 {
        self.info.round
    }

    /// The version the round started from.
    pub fn parent(&self) -> Hash32 {
        self.info.parent
    }

    /// The round seed.
    pub fn seed(&self) -> Hash32 {
        self.info.seed
    }

    /// Deadlines.
    pub fn clock(&self) -> &PhaseClock {
        &self.info.clock
    }

    /// Public facts of the round (as handed to the hooks).
    pub fn info(&self) -> &RoundInfo {
        &self.info
    }

    /// The phase last reached by [`Community::tick`](crate::Community::tick).
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Whether `member` is in the cohort.
    pub fn in_cohort(&self, member: &MemberId) -> bool {
        self.info.in_cohort(member)
    }

    /// Content hashes of the deltas accepted as inputs, sorted.
    pub fn inputs(&self) -> Vec<Hash32> {
        self.deltas.keys().copied().collect()
    }

    /// Members caught sending two different deltas (all their deltas are excluded).
    pub fn equivocators(&self) -> impl Iterator<Item = &MemberId> {
        self.equivocators.iter()
    }

    /// The outcome, once the round has closed.
    pub fn outcome(&self) -> Option<&Outcome> {
        self.outcome.as_ref()
    }

    /// A delta this round holds (accepted or late), by content hash.
    pub fn delta(&self, hash: &Hash32) -> Option<&DeltaSubmission> {
        self.deltas
            .get(hash)
            .or_else(|| self.late.get(hash))
            .map(|h| &h.delta)
    }
}
