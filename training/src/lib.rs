//! Hearth training: local LoRA fine-tuning on a member's private files, and the differential
//! privacy of what a member shares.
//!
//! The fine-tuning half: [`data::ingest`] reads a folder of `.txt`, `.md` and `.jsonl` chats
//! (bad files reported, never fatal) into a [`data::Dataset`]; a [`Trainer`] runs a
//! [`TrainConfig`] (AdamW, warm-up + cosine, accumulation, step and time limits, [`Checkpoint`]s
//! that resume bit for bit, a progress bar and a [`curve`] in CSV/SVG) for
//! [`train_personal`] (standard LoRA) or [`train_community`] (FFA-LoRA, `B` only), whose
//! [`community_delta`] is what gets clipped, noised and shared.
//!
//! The privacy half works on plain `f32` slices — the flattened LoRA-B delta — so federation and
//! simulations use it without Burn:
//!
//! * [`clip()`] bounds a delta's L2 norm by `C`;
//! * [`Noise`] adds OpenDP Gaussian noise: the full `σ·C` in [`Mode::Local`], or a discrete
//!   Gaussian share on the [`quantize()`]d delta in [`Mode::Distributed`] (the default);
//! * [`Ledger`] records every release, composes ρ under zCDP and enforces the [`Budget`] with
//!   OpenDP's privacy filter;
//! * [`release`] does all three in order, refusing before any work if the budget would be
//!   exceeded.
//!
//! ```
//! use hearth_training::{Budget, Cohort, Ledger, Mode, Noise, NoiseParams, Noised, release};
//!
//! let mut ledger = Ledger::new(Budget::default())?;
//! let params = NoiseParams::new(1.0, 7.0)?;
//! let noise = Noise::new(Mode::Distributed, 4, params, Cohort::new(50, 16)?)?;
//! let mut delta = vec![0.5_f32, -2.0, 0.25, 1.0];
//! let out = release(&mut ledger, 1, &noise, 1.0, &mut delta)?;
//! assert!(matches!(out.noised, Noised::Distributed(_)));
//! assert_eq!(ledger.records().len(), 1);
//! # Ok::<(), hearth_training::Error>(())
//! ```
//!
//! docs/PRIVACY.md states what is guaranteed in each mode and how it is accounted.
#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

mod accountant;
mod base;
pub mod canary;
pub mod checkpoint;
pub mod curve;
pub mod data;
mod dp;
mod error;
mod quantize;
mod trainer;

pub use accountant::{Budget, Ledger, Record, epsilon, rho_for_epsilon, standard_epsilon};
pub use base::pretrain;
pub use checkpoint::Checkpoint;
pub use curve::CurvePoint;
pub use dp::{
    Clip, Cohort, DistributedGaussian, Gaussian, Mechanism, Mode, Noise, NoiseParams, Noised,
    Release, TAIL_Z, clip, l2_norm, release,
};
pub use error::{Error, Result};
pub use quantize::{
    MAX_QUANT, Quantized, check_scale, fit_scale, power_of_two_at_least, quantize, quantize_exact,
};
pub use trainer::{
    MAX_EXAMPLES_PER_STEP, MAX_STEPS, Outcome, Schedule, StepInfo, Stop, TrainConfig, TrainReport,
    Trainer, community_delta, train_community, train_personal,
};
