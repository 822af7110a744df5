//! LoRA fine-tuning on a member's data: the [`Trainer`] loop (AdamW from `burn::optim`, linear
//! warm-up then cosine or constant learning rate, gradient accumulation, limits by steps or
//! wall-clock, checkpoint and resume, progress bar and loss curve), and its two uses:
//!
//! * [`train_personal`]: a personal adapter, standard LoRA (`A` and `B` train), on all of the
//!   member's data; it never leaves the machine;
//! * [`train_community`]: a contribution to the community adapter, FFA-LoRA (`A` frozen from the
//!   public seed, only `B` trains), starting from the current community weights; what is shared
//!   is [`community_delta`] = `B_local − B_global`, flat in the deterministic key order.
//!
//! Only the adapter being trained receives gradients: the base is frozen by the model, and every
//! other adapter slot is frozen here. A run is deterministic given its [`TrainConfig`] (example
//! order from the seed), the model and the data — also across a crash and resume (see
//! [`crate::checkpoint`]).
//!
//! ```
//! use std::ops::ControlFlow;
//! use burn::tensor::Device;
//! use hearth_models::{Llama, LlamaConfig, LoraConfig, Target};
//! use hearth_training::data::{ByteEncoder, Dataset};
//! use hearth_training::{TrainConfig, Trainer, train_personal};
//!
//! let device = Device::flex().autodiff();
//! let model = Llama::init_random(&LlamaConfig::tiny(ByteEncoder::VOCAB), 1, &device)?;
//! let data = Dataset::from_split_text(&"abcd".repeat(40), "abcdabcd", &ByteEncoder)?;
//! let config = TrainConfig::new().with_seq_len(16).with_max_steps(3).with_quiet(true);
//! let lora = LoraConfig::new(4, 8.0, vec![Target::Q, Target::V]);
//! let out = train_personal(&Trainer::new(config)?, model, lora, &data, |_| ControlFlow::Continue(()))?;
//! assert_eq!(out.report.steps, 3);
//! # Ok::<(), hearth_training::Error>(())
//! ```

mod config;
mod params;
mod run;

#[cfg(test)]
mod tests;

use std::ops::ControlFlow;
use std::time::Duration;

use hearth_models::{AdapterWeights, Factor, Llama, LoraConfig};

pub use config::{MAX_EXAMPLES_PER_STEP, MAX_STEPS, Schedule, TrainConfig};
pub use run::Trainer;
pub(crate) use run::{Order, held_out_loss};

use crate::curve::CurvePoint;
use crate::data::Dataset;
use crate::error::{Error, Result};

/// Why a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// `max_steps` reached (also when a resumed run had already reached it).
    MaxSteps,
    /// `max_seconds` of wall-clock time used.
    MaxDuration,
    /// The step callback returned [`ControlFlow::Break`].
    Callback,
}

/// What the step callback sees after each optimizer step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepInfo {
    /// The step's point of the loss curve.
    pub point: CurvePoint,
    /// Training tokens predicted so far.
    pub tokens: u64,
    /// The run's `max_steps`.
    pub max_steps: u64,
}

/// Figures of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainReport {
    /// Optimizer steps done in total (a resumed run counts the steps before the resume).
    pub steps: u64,
    /// The step the run resumed from, if it did.
    pub resumed_from: Option<u64>,
    /// Training tokens predicted in total.
    pub tokens: u64,
    /// Training loss of the first step (nats per token).
    pub initial_loss: Option<f64>,
    /// Mean training loss of the last (up to) 10 steps.
    pub final_loss: Option<f64>,
    /// Mean held-out loss before the first step (`None` without held-out data).
    pub held_out_before: Option<f64>,
    /// Mean held-out loss after the last step.
    pub held_out_after: Option<f64>,
    /// Training tokens per second in this invocation.
    pub tokens_per_sec: f64,
    /// Wall-clock time of this invocation's steps.
    pub elapsed: Duration,
    /// Why the run ended.
    pub stop: Stop,
}

/// The result of a run.
#[derive(Debug)]
pub struct Outcome {
    /// The model with the trained adapter (still on the autodiff device).
    pub model: Llama,
    /// The trained adapter's slot.
    pub slot: usize,
    /// The trained adapter's factors.
    pub adapter: AdapterWeights,
    /// Figures.
    pub report: TrainReport,
    /// The loss curve of the whole run (resumed steps included).
    pub curve: Vec<CurvePoint>,
}

/// Attaches a personal adapter (standard LoRA: `lora` with `ffa` off, `A` from its seed, `B`
/// zero) on top of `model`'s adapters and trains it on `data`.
pub fn train_personal(
    trainer: &Trainer,
    mut model: Llama,
    lora: LoraConfig,
    data: &Dataset,
    on_step: impl FnMut(&StepInfo) -> ControlFlow<()>,
) -> Result<Outcome> {
    let slot = model.add_adapter(lora.with_ffa(false))?;
    trainer.train(model, slot, data, on_step)
}

/// Attaches the community adapter `global` (FFA-LoRA) on top of `model`'s adapters and trains its
/// `B` on `data`. `global`'s `A` must be the one its seed derives; it stays frozen. The caller
/// shares [`community_delta`]`(&outcome.adapter, global)`.
pub fn train_community(
    trainer: &Trainer,
    mut model: Llama,
    global: &AdapterWeights,
    data: &Dataset,
    on_step: impl FnMut(&StepInfo) -> ControlFlow<()>,
) -> Result<Outcome> {
    if !global.config.ffa {
        return Err(Error::Config {
            reason: "the community adapter must be ffa-lora (A frozen from the seed)".into(),
        });
    }
    let slot = model.add_adapter(global.config.clone())?;
    let seeded = model.adapter_weights(slot)?;
    seeded.check_same_layout(global)?;
    let a_matches = seeded
        .tensors
        .iter()
        .zip(&global.tensors)
        .filter(|(s, _)| s.key.factor == Factor::A)
        .all(|(s, g)| s.values == g.values);
    if !a_matches {
        return Err(Error::Config {
            reason: format!(
                "the community adapter's A matrices are not those of its seed {}",
                global.config.seed
            ),
        });
    }
    model.set_adapter_weights(slot, global)?;
    trainer.train(model, slot, data, on_step)
}

/// The FFA-LoRA delta a member shares: `B_local − B_global`, flat in key order (layer, target,
/// then row-major), checked for identical layouts.
pub fn community_delta(local: &AdapterWeights, global: &AdapterWeights) -> Result<Vec<f32>> {
    if local.config.seed != global.config.seed {
        return Err(Error::Config {
            reason: format!(
                "adapters have different A seeds ({} and {})",
                local.config.seed, global.config.seed
            ),
        });
    }
    Ok(local.delta_b(global)?)
}
