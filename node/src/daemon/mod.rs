//! `hearth node`: the peer daemon. One tokio task drives the `federation` state machine from a
//! timer, gossip and sync events; training and DP release run on a blocking thread between rounds.
//!
//! # A round, as this node lives it
//!
//! 1. Between rounds (no round open, or the open one closed) and with budget left, a
//!    [`contribute::Job`] trains FFA-LoRA `B` from the current head on the member's private
//!    training split until shortly before the next round's submit deadline, then clips, noises
//!    (OpenDP) and quantizes the delta, charging a copy of the ledger.
//! 2. At the scheduled start (`created + r·period`) the node opens round `r`. When it is in the
//!    cohort and its contribution was trained from the round's parent, it persists the charged
//!    ledger (synced) and only then publishes the signed delta.
//! 3. Every gossip message is decoded and checked by `federation` before it is reported to
//!    gossipsub (accepted, rejected — not forwarded, the sender's score drops — or ignored).
//! 4. At the submit deadline the round closes: the next version is computed from the accepted
//!    deltas, persisted with its record in one batch, and announced.
//! 5. A node that was away learns the community head from peers (`Hello` on every connection)
//!    and fetches each missed round's record and signed deltas over `/hearth/sync/1`, recomputes
//!    the version and adopts it only if it matches.
//!
//! Both privacy modes run here, on periodic schedules. In the distributed mode the node installs
//! the secure-aggregation engine (`federation::secagg::Engine`, with a fresh secret at every
//! start): between rounds it trains; in the round it releases its delta with its group's noise
//! share, masks it, and takes part in every phase (keys, shares, masked input, survivors,
//! unmasking); the round closes at the unmask deadline on the unmasked group sums. It keeps every
//! secure-aggregation message it accepted, and a node that missed a secure round fetches them
//! (`round_messages`) and recomputes the version from them (`Community::verify_secure_round`).

pub mod contribute;
mod event_loop;
pub mod fork;
pub mod persist;
mod serving;
pub mod sync;

use std::path::PathBuf;
use std::time::Duration;

use libp2p::Multiaddr;
use serde::{Deserialize, Serialize};

pub use contribute::TrainSettings;
pub use event_loop::run;
pub use serving::ApiOptions;

use crate::secrets::Unlock;

/// How `hearth node` runs.
#[derive(Debug)]
pub struct Options {
    /// The member's data directory.
    pub home: PathBuf,
    /// How to unlock its store.
    pub unlock: Unlock,
    /// Addresses to listen on.
    pub listen: Vec<Multiaddr>,
    /// Peers to dial besides the invite's.
    pub bootstrap: Vec<Multiaddr>,
    /// mDNS discovery on the local network.
    pub mdns: bool,
    /// The base model (default: the fetched SmolLM2).
    pub model: Option<PathBuf>,
    /// Train and contribute (off: follow the community only).
    pub contribute: bool,
    /// Local training settings.
    pub train: TrainSettings,
    /// Stop after the announce phase of this round.
    pub rounds: Option<u64>,
    /// Stop after this long in any case.
    pub max_runtime: Option<Duration>,
    /// Write a JSON summary here when stopping.
    pub summary: Option<PathBuf>,
    /// Append every payload this node hands to the network (gossip data, sync requests and
    /// responses) to this file, each as a 4-byte little-endian length and the bytes (for tests
    /// that check what leaves a node).
    pub capture: Option<PathBuf>,
    /// Serve the local API (models, `/status`, `/metrics`) next to the daemon.
    pub api: Option<ApiOptions>,
}

/// What a node did, printed and written as JSON when it stops.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// This member.
    pub member: String,
    /// The community id.
    pub community: String,
    /// Round of the head.
    pub head_round: u64,
    /// The head version.
    pub head_version: String,
    /// Versions this node computed itself.
    pub rounds_closed: u64,
    /// Versions this node adopted (fetched and verified, or a peer's preferred version).
    pub rounds_adopted: u64,
    /// Rounds that closed without an update.
    pub rounds_failed: u64,
    /// Times this node left its chain for a preferred fork (docs/PROTOCOL.md §14.8).
    #[serde(default)]
    pub forks_left: u64,
    /// Candidate versions judged by the community's probe check (docs/PROTOCOL.md §14.9).
    #[serde(default)]
    pub probe_checked: u64,
    /// Of those, refused (the round closed without an update, or the peer's version was not
    /// taken).
    #[serde(default)]
    pub probe_refused: u64,
    /// Deltas this node published.
    pub contributions: u64,
    /// zCDP ρ spent in total.
    pub rho_spent: f64,
    /// ε spent at the ledger's δ.
    pub epsilon: f64,
    /// The ledger's δ.
    pub delta: f64,
    /// Bytes this node sent (gossip published and sync).
    pub bytes_sent: u64,
    /// Bytes it received (gossip and sync).
    pub bytes_received: u64,
    /// Messages accepted.
    pub accepted: u64,
    /// Messages rejected, by reason.
    pub rejected: Vec<(String, u64)>,
}
