//! Hearth federation: the round state machine, verification of every delta, aggregation and
//! the chain of community adapter versions — with no IO.
//!
//! The crate is a pure state machine: callers pass messages, the time (`now`, unix seconds) and
//! seeds; it returns outputs. It never reads a clock, spawns a thread, draws randomness or touches
//! the network, so the node and the simulation harness drive the same code and rounds are
//! reproducible.
//!
//! - [`Community`]: the state machine a node drives. [`Community::new`] from the signed manifest
//!   and a genesis [`State`]; [`Community::add_certificate`]; [`Community::start_round`];
//!   [`Community::on_bytes`] / [`Community::on_message`] for everything received (each message is
//!   [`Accepted`] or a [`Rejection`] with its [`Reason`], counted in [`Counters`]);
//!   [`Community::submit_own`]; [`Community::tick`] returns [`Output`]s (phase changes, payloads to
//!   publish, [`Output::Closed`] with the new [`VersionRecord`], [`Output::Failed`] with its
//!   [`FailReason`], adoption of a peer's preferred version); [`Community::verify_version`] (plain
//!   rounds, from the signed deltas), [`Community::verify_secure_round`] (secure rounds, from the
//!   signed secure-aggregation messages) and [`Community::adopt`] for a node that missed a round.
//! - [`round_seed`], [`in_cohort`], [`groups`]: who takes part in a round, verifiable by anyone.
//! - [`PhaseClock`] / [`Phase`]: a round's phases and deadlines from the manifest's schedule.
//! - [`Adapter`] / [`State`]: the community adapter (FFA-LoRA `B` matrices) and optimizer state;
//!   [`next_from_deltas`] / [`next_from_groups`]: the deterministic next version, through
//!   [`aggregate()`] (mean, trimmed mean, median, norm bounding) and [`step`] (FedAvgM, FedAdam).
//! - [`norm_bound`], [`max_scale`]: the documented verification bounds of a delta.
//! - Secure rounds (`distributed` mode): install [`secagg::Engine`] with
//!   [`Community::with_secure_aggregation`]; [`Community::calibration`] gives the node its
//!   group's [`Calibration`] (scale and noise share to release its delta with) for
//!   [`Community::submit_own`]. [`SecureAggregator`] / [`GroupSum`] / [`Probe`] are the hooks
//!   (secure aggregation, probe-set check).
//!
//! Rules (round seed, cohort, phases, late messages, version chain, verification order) are
//! specified in docs/PROTOCOL.md §14; the threat model is in docs/PRIVACY.md.
//!
//! ```
//! use hearth_federation::{Phase, PhaseClock, in_cohort, round_seed};
//! use hearth_protocol::{Hash32, Keypair, Schedule};
//!
//! let community = Hash32::digest(b"a manifest");
//! let seed = round_seed(&community, 7, &Hash32::ZERO); // round 7 on the genesis version
//! let member = Keypair::from_seed([3; 32]).member_id();
//! // Every node draws the same cohort; at rate 1 everyone is in.
//! assert!(in_cohort(&seed, &member, 1.0));
//! assert_ne!(seed, round_seed(&community, 8, &Hash32::ZERO)); // each round draws anew
//!
//! let clock = PhaseClock::new(&Schedule::default(), 1_700_000_000, false);
//! assert_eq!(clock.phase_at(1_700_000_000 + 299), Phase::Submit);
//! assert_eq!(clock.phase_at(1_700_000_000 + 300), Phase::Announce); // deltas are now late
//! ```
#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

mod adapter;
mod aggregate;
mod chain;
mod clock;
mod cohort;
mod community;
mod config;
mod error;
mod hooks;
mod optimizer;
mod reject;
mod round;
pub mod secagg;
#[cfg(test)]
mod testutil;
mod verify;

pub use crate::{
    adapter::{Adapter, OPTIMIZER_DOMAIN, OptimizerState, State, Tensor},
    aggregate::{Input, Values, aggregate, bounded_factor, trim_count},
    chain::{VersionRecord, next_from_deltas, next_from_groups},
    clock::{Phase, PhaseClock, Timing},
    cohort::{
        COHORT_DOMAIN, GROUP_DOMAIN, ROUND_SEED_DOMAIN, groups, in_cohort, round_seed, threshold,
    },
    community::{Community, MESSAGES_PER_MEMBER},
    config::Config,
    error::{Error, Result},
    hooks::{Calibration, GROUP_SUM_DOMAIN, GroupSum, Probe, RoundInfo, SecureAggregator},
    optimizer::step,
    reject::{Counters, Reason, Rejection},
    round::{Accepted, FailReason, Outcome, Output, Round},
    verify::{TAIL_U, max_scale, norm_bound, quantized_norm},
};
