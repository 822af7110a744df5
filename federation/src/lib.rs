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
mod clock;
mod cohort;
mod error;
mod reject;
pub mod secagg;
#[cfg(test)]
mod testutil;

pub use crate::{
    adapter::{Adapter, OPTIMIZER_DOMAIN, OptimizerState, State, Tensor},
    clock::{Phase, PhaseClock, Timing},
    cohort::{
        COHORT_DOMAIN, GROUP_DOMAIN, ROUND_SEED_DOMAIN, groups, in_cohort, round_seed, threshold,
    },
    error::{Error, Result},
    reject::{Counters, Reason, Rejection},
};
