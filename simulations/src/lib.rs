//! The Hearth simulation harness: many virtual members running the real federation state
//! machine, real local training of the same Llama code, real clipping, privacy accounting and
//! signed envelopes, over a seeded in-memory network, to answer "what happens to the community
//! model if ...".
//!
//! - [`Scenario`]: a run, read from TOML (`simulations/scenarios/*.toml`); [`sweep`] expands
//!   `[sweep]` tables into variants.
//! - [`run()`]: prepares the [`data`] (LEAF-style Shakespeare clients or Dirichlet splits), the
//!   base model ([`model`], optionally [`pretrain`]ed), then runs every [`Arm`] round by round:
//!   the federated arms through [`hearth_federation::Community`] full nodes and the
//!   [`network::Memory`] transport, the baselines ([`Arm::Local`], [`Arm::Centralized`]) on
//!   the same data and budget; writes [`metrics`] (CSV, JSON) and [`plot`]s.
//!   `network.transport = "libp2p"` runs real libp2p nodes on loopback instead ([`p2p`]).
//! - [`attack`]: sign flip, scaling (model replacement), noise, ALIE and backdoor attackers;
//!   [`backdoor`] measures a backdoor's success.
//! - [`trace`]: churn traces (which members are down or slow in which rounds).
//!
//! Same scenario, same seed: the same CSV files, bit for bit (wall-clock times go to
//! `timing.csv` and `summary.json` only). docs/SIMULATIONS.md describes the scenarios and shows
//! their figures.
//!
//! ```no_run
//! use hearth_simulations::{Quiet, Scenario, run};
//!
//! let scenario = Scenario::load("simulations/scenarios/smoke.toml".as_ref())?;
//! let report = run(&scenario, "runs/smoke".as_ref(), &mut Quiet)?;
//! println!("{:?}", report.last(hearth_simulations::Arm::Federated));
//! # Ok::<(), hearth_simulations::Error>(())
//! ```
#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod attack;
pub mod backdoor;
mod baselines;
pub mod data;
mod error;
mod federated;
pub mod metrics;
pub mod model;
pub mod network;
pub mod p2p;
pub mod plot;
pub mod png;
pub mod pretrain;
mod privacy;
pub mod rng;
mod run;
pub mod scenario;
pub mod sweep;
pub mod trace;
mod world;

pub use crate::{
    error::{Error, Result},
    metrics::{MemberRow, RoundRow},
    privacy::Privacy,
    run::{Observer, Quiet, Report, peak_rss, run},
    scenario::{Arm, AttackKind, Scenario},
    world::{T0, World},
};
