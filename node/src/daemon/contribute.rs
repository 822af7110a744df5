//! A member's contribution to a round, made off the event loop (on a blocking thread): FFA-LoRA
//! training of the community adapter's `B` on the member's private training split, starting from
//! the current community version, then the release — clip to `C`, the full Gaussian noise of
//! local mode with OpenDP, charged to a copy of the privacy ledger — and quantization for the
//! wire. Only the quantized, noised delta leaves this module; the event loop persists the charged
//! ledger before it publishes anything.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::Context as _;
use hearth_federation::State;
use hearth_models::{AdapterWeights, Llama};
use hearth_protocol::{Hash32, Manifest, PrivacyMode};
use hearth_training::data::Dataset;
use hearth_training::{
    Gaussian, Ledger, Noise, NoiseParams, Noised, Quantized, Schedule, TrainConfig, Trainer,
    community_delta, release, train_community,
};

use crate::bridge;

/// Local training settings of the daemon.
#[derive(Debug, Clone)]
pub struct TrainSettings {
    /// Tokens per training window.
    pub seq_len: usize,
    /// Peak learning rate.
    pub learning_rate: f64,
    /// Most optimizer steps per contribution.
    pub max_steps: usize,
    /// Most seconds of training per contribution (the round's deadline may allow less).
    pub max_seconds: f64,
    /// Fewest seconds worth starting a contribution for.
    pub min_seconds: f64,
}

impl Default for TrainSettings {
    fn default() -> Self {
        TrainSettings {
            seq_len: 128,
            learning_rate: 2e-3,
            max_steps: 10_000,
            max_seconds: 600.0,
            min_seconds: 5.0,
        }
    }
}

/// What a contribution job needs; everything is owned so the job can run on another thread.
#[derive(Debug)]
pub struct Job {
    /// The base model on an autodiff device.
    pub model: Llama,
    /// The community adapter as attached to the model (`A` from the seed).
    pub seeded: AdapterWeights,
    /// The member's training tokens (no held-out part: the daemon does not evaluate).
    pub data: Arc<Dataset>,
    /// The manifest.
    pub manifest: Manifest,
    /// The community version to train from.
    pub state: State,
    /// The round the contribution is for (charged in the ledger).
    pub round: u64,
    /// Seconds of training allowed.
    pub seconds: f64,
    /// Settings.
    pub settings: TrainSettings,
    /// A copy of the member's ledger, charged by the release.
    pub ledger: Ledger,
    /// Set to stop training early (shutdown); the job then returns an error and charges nothing.
    pub cancel: Arc<AtomicBool>,
}

/// A released contribution, ready to be submitted.
#[derive(Debug, Clone)]
pub struct Contribution {
    /// The round it is for.
    pub round: u64,
    /// The version it was trained from.
    pub base_version: Hash32,
    /// The noised delta, quantized, wire order.
    pub quantized: Quantized,
    /// Std of the noise added.
    pub noise_std: f64,
    /// Training windows behind it.
    pub sample_count: u32,
    /// The ledger with this release charged (persist before publishing).
    pub ledger: Ledger,
    /// ρ charged.
    pub rho: f64,
    /// Steps trained.
    pub steps: u64,
    /// Training tokens per second.
    pub tokens_per_sec: f64,
    /// Mean training loss of the last steps.
    pub final_loss: Option<f64>,
    /// Whether clipping scaled the delta down (private: logged locally only).
    pub clipped: bool,
}

/// Runs a job: train, release, quantize.
pub fn run(job: Job) -> anyhow::Result<Contribution> {
    let manifest = &job.manifest;
    anyhow::ensure!(
        manifest.privacy.mode == PrivacyMode::Local,
        "the daemon releases in local privacy mode only (distributed mode needs secure aggregation)"
    );
    let shape = &manifest.lora;
    let global = bridge::weights_from_state(&job.seeded, &job.state, shape)?;
    let config = TrainConfig::new()
        .with_seq_len(job.settings.seq_len)
        .with_learning_rate(job.settings.learning_rate)
        .with_schedule(Schedule::Constant)
        .with_warmup_steps(0)
        .with_max_steps(job.settings.max_steps)
        .with_max_seconds(Some(job.seconds.max(1.0)))
        .with_seed(job.round)
        .with_quiet(true);
    let trainer = Trainer::new(config)?;
    let cancel = job.cancel.clone();
    let started = Instant::now();
    let outcome = train_community(&trainer, job.model, &global, &job.data, |_| {
        if cancel.load(Ordering::Relaxed) {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })
    .context("training the contribution")?;
    anyhow::ensure!(
        !job.cancel.load(Ordering::Relaxed),
        "training was cancelled"
    );
    let model_delta = community_delta(&outcome.adapter, &global)?;
    let mut delta = bridge::wire_from_model(&model_delta, shape)?;
    let p = &manifest.privacy;
    let noise = Noise::Local(Gaussian::new(
        delta.len(),
        NoiseParams::new(p.clip_norm, p.noise_multiplier)?,
    )?);
    let mut ledger = job.ledger;
    let released = release(
        &mut ledger,
        job.round,
        &noise,
        manifest.schedule.sampling_rate,
        &mut delta,
    )?;
    let Noised::Local(noised) = released.noised else {
        anyhow::bail!("a local-mode release returned integers");
    };
    let quantized = bridge::quantize_wire(&noised)?;
    let windows = job.data.num_windows(job.settings.seq_len);
    tracing::debug!(
        secs = started.elapsed().as_secs_f64(),
        steps = outcome.report.steps,
        "contribution trained and released"
    );
    Ok(Contribution {
        round: job.round,
        base_version: job.state.version(),
        quantized,
        noise_std: p.noise_multiplier * p.clip_norm,
        sample_count: u32::try_from(windows).unwrap_or(u32::MAX),
        ledger,
        rho: released.rho,
        steps: outcome.report.steps,
        tokens_per_sec: outcome.report.tokens_per_sec,
        final_loss: outcome.report.final_loss,
        clipped: released.clip.clipped(),
    })
}
