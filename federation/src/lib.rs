//! Hearth federation: the round state machine, verification of every delta, aggregation and
//! the chain of community adapter versions — with no IO.
//!
//! The crate is a pure state machine: callers pass messages, the time (`now`, unix seconds) and
//! seeds; it returns outputs. It never reads a clock, spawns a thread, draws randomness or touches
//! the network, so the node and the simulation harness drive the same code and rounds are
//! reproducible.
//!
//! - [`round_seed`], [`in_cohort`], [`groups`]: who takes part in a round, verifiable by anyone.
//! - [`PhaseClock`] / [`Phase`]: a round's phases and deadlines from the manifest's schedule.
//! - [`Adapter`] / [`State`]: the community adapter (FFA-LoRA `B` matrices) and optimizer state.
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
    community::Community,
    config::{Config, Weighting},
    error::{Error, Result},
    hooks::{GROUP_SUM_DOMAIN, GroupSum, Probe, RoundInfo, SecureAggregator},
    optimizer::step,
    reject::{Counters, Reason, Rejection},
    round::{Accepted, FailReason, Outcome, Output, Round},
    verify::{TAIL_U, max_scale, norm_bound, quantized_norm},
};
