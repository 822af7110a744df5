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
    /// Resident memory of the node above which it does not train (checked before a job and after
    /// every step; a job over the limit is abandoned, nothing released). `None`: no limit.
    pub max_memory_bytes: Option<u64>,
}

impl Default for TrainSettings {
    fn default() -> Self {
        TrainSettings {
            seq_len: 128,
            learning_rate: 2e-3,
            max_steps: 10_000,
            max_seconds: 600.0,
            min_seconds: 5.0,
            max_memory_bytes: None,
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
    /// The delta's L2 norm before clipping (private: logged locally only, at debug level).
    pub norm: f64,
    /// Seconds the release took (clip, noise, quantize).
    pub release_secs: f64,
}

/// A job was abandoned because the node used more memory than allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("training stopped: the node uses {rss} bytes of memory, over its limit")]
pub struct MemoryLimit {
    /// Resident bytes when it stopped.
    pub rss: u64,
}

/// This process's resident memory (Linux `/proc/self/statm`; `None` elsewhere).
pub fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// A trained, not yet released delta. It holds the member's raw update: it stays in memory and
/// only [`release_trained`] turns it into something that may leave.
pub struct Trained {
    /// The round it is meant for.
    pub round: u64,
    /// The version it was trained from.
    pub base_version: Hash32,
    /// `B_local − B_global`, wire order.
    delta: Vec<f32>,
    /// Training windows behind it.
    pub sample_count: u32,
    /// Steps trained.
    pub steps: u64,
    /// Training tokens per second.
    pub tokens_per_sec: f64,
    /// Mean training loss of the last steps.
    pub final_loss: Option<f64>,
}

impl std::fmt::Debug for Trained {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trained")
            .field("round", &self.round)
            .field("base_version", &self.base_version)
            .field("values", &self.delta.len())
            .finish_non_exhaustive()
    }
}

/// Trains a job's contribution (FFA-LoRA `B` from the job's community version).
pub fn train(job: Job) -> anyhow::Result<Trained> {
    let shape = &job.manifest.lora;
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
    let budget = job.seconds.max(1.0);
    let mut last = started;
    let limit = job.settings.max_memory_bytes;
    let mut over_memory = None;
    // Stop before a step that would end past the budget (a step can take seconds on a busy
    // machine), so the release still makes the round's deadline.
    let outcome = train_community(&trainer, job.model, &global, &job.data, |_| {
        let now = Instant::now();
        let step = now.duration_since(last).as_secs_f64();
        last = now;
        if let Some(max) = limit
            && let Some(rss) = resident_bytes()
            && rss > max
        {
            over_memory = Some(rss);
            return ControlFlow::Break(());
        }
        if cancel.load(Ordering::Relaxed) || started.elapsed().as_secs_f64() + step > budget {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })
    .context("training the contribution")?;
    if let Some(rss) = over_memory {
        anyhow::bail!(MemoryLimit { rss });
    }
    anyhow::ensure!(
        !job.cancel.load(Ordering::Relaxed),
        "training was cancelled"
    );
    let model_delta = community_delta(&outcome.adapter, &global)?;
    let delta = bridge::wire_from_model(&model_delta, shape)?;
    let windows = job.data.num_windows(job.settings.seq_len);
    tracing::debug!(
        secs = started.elapsed().as_secs_f64(),
        steps = outcome.report.steps,
        "contribution trained"
    );
    Ok(Trained {
        round: job.round,
        base_version: job.state.version(),
        delta,
        sample_count: u32::try_from(windows).unwrap_or(u32::MAX),
        steps: outcome.report.steps,
        tokens_per_sec: outcome.report.tokens_per_sec,
        final_loss: outcome.report.final_loss,
    })
}

/// The noise of a local-mode release: the full `σ·C`.
pub fn local_noise(manifest: &Manifest) -> anyhow::Result<Noise> {
    let p = &manifest.privacy;
    Ok(Noise::Local(Gaussian::new(
        manifest.lora.elements() as usize,
        NoiseParams::new(p.clip_norm, p.noise_multiplier)?,
    )?))
}

/// Releases a trained delta for `round`: clip, noise (`noise`: local, or the distributed share of
/// the member's secure-aggregation group), charge a copy of `ledger`, quantize.
pub fn release_trained(
    mut trained: Trained,
    round: u64,
    noise: &Noise,
    sampling_rate: f64,
    mut ledger: Ledger,
) -> anyhow::Result<Contribution> {
    let started = Instant::now();
    let released = release(&mut ledger, round, noise, sampling_rate, &mut trained.delta)?;
    let (quantized, noise_std) = match (released.noised, noise) {
        (Noised::Local(values), Noise::Local(g)) => (bridge::quantize_wire(&values)?, g.std()),
        (Noised::Distributed(q), Noise::Distributed(g)) => {
            // Real units, computed as the federation's calibration does (bit for bit).
            let p = g.params();
            let std = p.noise_multiplier * p.clip_norm / f64::from(g.cohort().guaranteed()).sqrt();
            (q, std)
        }
        _ => anyhow::bail!("the release does not match its noise"),
    };
    Ok(Contribution {
        round,
        base_version: trained.base_version,
        quantized,
        noise_std,
        sample_count: trained.sample_count,
        ledger,
        rho: released.rho,
        steps: trained.steps,
        tokens_per_sec: trained.tokens_per_sec,
        final_loss: trained.final_loss,
        norm: released.clip.norm,
        release_secs: started.elapsed().as_secs_f64(),
    })
}

/// Runs a local-mode job: train, then release at once.
pub fn run_local(job: Job) -> anyhow::Result<Contribution> {
    anyhow::ensure!(
        job.manifest.privacy.mode == PrivacyMode::Local,
        "an immediate release is for the local privacy mode"
    );
    let noise = local_noise(&job.manifest)?;
    let (round, rate, ledger) = (
        job.round,
        job.manifest.schedule.sampling_rate,
        job.ledger.clone(),
    );
    let trained = train(job)?;
    release_trained(trained, round, &noise, rate, ledger)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resident_memory_is_read_on_linux() {
        if cfg!(target_os = "linux") {
            let rss = resident_bytes().unwrap();
            assert!(rss > 1 << 20, "{rss}");
            assert!(rss < 1 << 40, "{rss}");
        }
    }
}
