//! The training loop of [`Trainer::train`].

use std::io::IsTerminal;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use burn::module::Module;
use burn::optim::{
    AdamWConfig, GradientsAccumulator, GradientsParams, ModuleOptimizer, OptimizerRecord,
    grad_clipping::GradientClippingConfig,
};
use burn::tensor::{Bytes, Int, Tensor, TensorData};
use hearth_models::{AdapterWeights, Llama, Prng, evaluate};
use indicatif::{ProgressBar, ProgressStyle};
use sha2::{Digest, Sha256};

use super::{Outcome, StepInfo, Stop, TrainConfig, TrainReport, params};
use crate::checkpoint::Checkpoint;
use crate::curve::{self, CurvePoint};
use crate::data::Dataset;
use crate::error::{Error, Result};

/// Steps averaged into [`TrainReport::final_loss`].
const FINAL_LOSS_STEPS: usize = 10;

/// Runs a [`TrainConfig`]: optionally checkpointing into a folder (and resuming from it), and
/// writing the loss curve (`loss.csv`, `loss.svg`) into another.
#[derive(Debug, Clone)]
pub struct Trainer {
    config: TrainConfig,
    checkpoint_dir: Option<PathBuf>,
    curve_dir: Option<PathBuf>,
    title: String,
}

impl Trainer {
    /// A trainer for a validated `config`.
    pub fn new(config: TrainConfig) -> Result<Self> {
        config.validate()?;
        Ok(Self {
            config,
            checkpoint_dir: None,
            curve_dir: None,
            title: "fine-tuning".into(),
        })
    }

    /// Checkpoints into `dir` every `checkpoint_every` steps and at the end, and resumes from the
    /// newest checkpoint there.
    pub fn with_checkpoint_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.checkpoint_dir = Some(dir.into());
        self
    }

    /// Writes `loss.csv` and `loss.svg` into `dir` at the end of the run.
    pub fn with_curve_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.curve_dir = Some(dir.into());
        self
    }

    /// The title of the plotted curve.
    pub fn with_title(mut self, title: impl Into<String>) -> Self {
        self.title = title.into();
        self
    }

    /// The configuration.
    pub fn config(&self) -> &TrainConfig {
        &self.config
    }

    /// Trains adapter `slot` of `model` (on an autodiff device) on `data`; every other parameter
    /// is frozen. `on_step` is called after each step (and its checkpoint, if one is due);
    /// [`ControlFlow::Break`] stops the run at once, as a crash would: nothing more is written.
    pub fn train(
        &self,
        mut model: Llama,
        slot: usize,
        data: &Dataset,
        mut on_step: impl FnMut(&StepInfo) -> ControlFlow<()>,
    ) -> Result<Outcome> {
        let c = &self.config;
        if !model.device().is_autodiff() {
            return Err(Error::Config {
                reason: "the model must be on an autodiff device (Device::flex().autodiff())"
                    .into(),
            });
        }
        let max_seq = model.config().max_seq_len;
        if c.seq_len > max_seq {
            return Err(Error::Config {
                reason: format!(
                    "seq_len {} exceeds the model's context {max_seq}",
                    c.seq_len
                ),
            });
        }
        data.check_vocab(model.config().vocab)?;
        let windows = data.num_windows(c.seq_len);
        if windows == 0 {
            return Err(Error::Data {
                reason: format!(
                    "{} training tokens make no window of {} tokens",
                    data.train().len(),
                    c.seq_len + 1
                ),
            });
        }
        params::prepare(&mut model, slot)?;
        let fingerprint = fingerprint(c, slot, data, &model.adapter_weights(slot)?);
        let mut optim: ModuleOptimizer = AdamWConfig::new()
            .with_weight_decay(c.weight_decay as f32)
            .with_grad_clipping(c.grad_clip_norm.map(GradientClippingConfig::Norm))
            .init();

        let mut run = RunState {
            step: 0,
            tokens: 0,
            points: Vec::new(),
            held_out_before: None,
            fingerprint,
        };
        let latest = match &self.checkpoint_dir {
            Some(dir) => Checkpoint::latest(dir)?,
            None => None,
        };
        let mut resumed_from = None;
        if let Some(path) = latest {
            let ck = Checkpoint::load(&path)?;
            if ck.fingerprint != run.fingerprint {
                return Err(Error::Checkpoint {
                    path,
                    reason: "it belongs to a different run (configuration, data or starting adapter changed): use another checkpoint folder".into(),
                });
            }
            model.set_adapter_weights(slot, &ck.adapter)?;
            let record =
                OptimizerRecord::from_bytes(Bytes::from_bytes_vec(ck.optimizer)).map_err(|e| {
                    Error::Checkpoint {
                        path: path.clone(),
                        reason: format!("optimizer state: {e}"),
                    }
                })?;
            optim = optim.load_record(record);
            run.step = ck.step;
            run.tokens = ck.tokens;
            run.points = ck.curve;
            run.held_out_before = ck.held_out_before;
            resumed_from = Some(ck.step);
        } else {
            run.held_out_before = held_out_loss(&model, data, c.seq_len)?;
        }

        let bar = progress_bar(c);
        bar.set_position(run.step);
        let start = Instant::now();
        let start_tokens = run.tokens;
        let mut order = Order::new(c.seed, windows);
        let (batch, accum) = (c.batch_size as u64, c.grad_accum as u64);
        let per_step = batch * accum * c.seq_len as u64;
        let mut saved = resumed_from;
        let device = model.device();
        let stop = loop {
            if run.step >= c.max_steps as u64 {
                break Stop::MaxSteps;
            }
            if c.max_seconds
                .is_some_and(|s| start.elapsed().as_secs_f64() >= s)
            {
                break Stop::MaxDuration;
            }
            let t = Instant::now();
            let mut grads_sum = GradientsAccumulator::<Llama>::new();
            let mut loss_sum = 0.0;
            for micro in 0..accum {
                let mut ids = Vec::with_capacity(c.batch_size * (c.seq_len + 1));
                for j in 0..batch {
                    let pos = (run.step * accum + micro) * batch + j;
                    let window = data.window(c.seq_len, order.get(pos)).ok_or(Error::Data {
                        reason: "window index out of range".into(),
                    })?;
                    ids.extend(window.iter().map(|&t| i64::from(t)));
                }
                let tokens = Tensor::<2, Int>::from_data(
                    TensorData::new(ids, [c.batch_size, c.seq_len + 1]),
                    &device,
                );
                let loss = model.next_token_loss(tokens);
                loss_sum += f64::from(loss.clone().into_scalar::<f32>());
                let grads = loss.mul_scalar(1.0 / accum as f64).backward();
                grads_sum.accumulate(&model, GradientsParams::from_grads(grads, &model));
            }
            let loss = loss_sum / accum as f64;
            if !loss.is_finite() {
                return Err(Error::Data {
                    reason: format!("training loss became {loss} at step {}", run.step + 1),
                });
            }
            let lr = c.lr_at(run.step as usize);
            model = optim.step(lr, model, grads_sum.grads());
            run.step += 1;
            run.tokens += per_step;
            let point = CurvePoint {
                step: run.step,
                loss,
                lr,
                tokens_per_sec: per_step as f64 / t.elapsed().as_secs_f64().max(1e-9),
            };
            run.points.push(point);
            bar.set_position(run.step);
            bar.set_message(format!(
                "loss {loss:.3} · {:.0} tok/s",
                point.tokens_per_sec
            ));
            if c.checkpoint_every > 0 && run.step.is_multiple_of(c.checkpoint_every as u64) {
                self.save(&model, slot, &optim, &run)?;
                saved = Some(run.step);
            }
            let info = StepInfo {
                point,
                tokens: run.tokens,
                max_steps: c.max_steps as u64,
            };
            if on_step(&info).is_break() {
                break Stop::Callback;
            }
        };
        let elapsed = start.elapsed();
        bar.finish_and_clear();
        if stop != Stop::Callback && saved != Some(run.step) {
            self.save(&model, slot, &optim, &run)?;
        }
        let held_out_after = held_out_loss(&model, data, c.seq_len)?;
        let points = run.points;
        if let Some(dir) = &self.curve_dir
            && !points.is_empty()
        {
            let held = run.held_out_before.zip(held_out_after);
            write_curve(dir, &self.title, &points, held)?;
        }
        let tail = &points[points.len().saturating_sub(FINAL_LOSS_STEPS)..];
        let report = TrainReport {
            steps: run.step,
            resumed_from,
            tokens: run.tokens,
            initial_loss: points.first().map(|p| p.loss),
            final_loss: (!tail.is_empty())
                .then(|| tail.iter().map(|p| p.loss).sum::<f64>() / tail.len() as f64),
            held_out_before: run.held_out_before,
            held_out_after,
            tokens_per_sec: (run.tokens - start_tokens) as f64 / elapsed.as_secs_f64().max(1e-9),
            elapsed,
            stop,
        };
        let adapter = model.adapter_weights(slot)?;
        Ok(Outcome {
            model,
            slot,
            adapter,
            report,
            curve: points,
        })
    }

    /// Saves the run's state after `step` steps into the checkpoint folder.
    fn save(
        &self,
        model: &Llama,
        slot: usize,
        optim: &ModuleOptimizer,
        run: &RunState,
    ) -> Result<()> {
        let Some(dir) = &self.checkpoint_dir else {
            return Ok(());
        };
        let optimizer = optim
            .to_record()
            .into_bytes()
            .map_err(|e| Error::Checkpoint {
                path: dir.clone(),
                reason: format!("cannot encode the optimizer state: {e}"),
            })?;
        Checkpoint {
            step: run.step,
            tokens: run.tokens,
            fingerprint: run.fingerprint.clone(),
            adapter: model.adapter_weights(slot)?,
            optimizer: optimizer.to_vec(),
            curve: run.points.clone(),
            held_out_before: run.held_out_before,
        }
        .save(dir)?;
        Ok(())
    }
}

/// Where a run is.
struct RunState {
    step: u64,
    tokens: u64,
    points: Vec<CurvePoint>,
    held_out_before: Option<f64>,
    fingerprint: String,
}

/// Writes `loss.csv` and `loss.svg` into `dir`.
fn write_curve(
    dir: &Path,
    title: &str,
    points: &[CurvePoint],
    held_out: Option<(f64, f64)>,
) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    curve::write_csv(&dir.join("loss.csv"), points)?;
    curve::plot_svg(&dir.join("loss.svg"), title, points, held_out)
}

/// Mean held-out loss, `None` without held-out data.
pub(crate) fn held_out_loss(model: &Llama, data: &Dataset, seq_len: usize) -> Result<Option<f64>> {
    if data.held_out().len() < 2 {
        return Ok(None);
    }
    let eval = evaluate(&model.valid(), data.held_out(), seq_len + 1, |_| {})?;
    Ok((eval.tokens > 0).then(|| eval.mean_nll()))
}

/// SHA-256 over everything that shapes the run's trajectory.
fn fingerprint(c: &TrainConfig, slot: usize, data: &Dataset, start: &AdapterWeights) -> String {
    let mut h = Sha256::new();
    h.update(c.trajectory_json().as_bytes());
    h.update((slot as u64).to_le_bytes());
    for stream in [data.train(), data.held_out()] {
        h.update((stream.len() as u64).to_le_bytes());
        for t in stream {
            h.update(t.to_le_bytes());
        }
    }
    h.update(format!("{:?}", start.config).as_bytes());
    for t in &start.tensors {
        h.update(t.key.name().as_bytes());
        for v in &t.values {
            h.update(v.to_le_bytes());
        }
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

fn progress_bar(c: &TrainConfig) -> ProgressBar {
    if c.quiet || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(c.max_steps as u64);
    if let Ok(style) = ProgressStyle::with_template(
        "{elapsed_precise} [{bar:30}] step {pos}/{len} {msg} (eta {eta})",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.enable_steady_tick(Duration::from_millis(500));
    bar
}

/// The example order: epoch `e` is a Fisher–Yates shuffle of the window indices drawn from
/// `Prng::stream(seed, e)`; position `p` of the run is index `p mod n` of epoch `p / n`.
#[derive(Debug)]
pub(crate) struct Order {
    seed: u64,
    epoch: Option<u64>,
    perm: Vec<usize>,
}

impl Order {
    pub(crate) fn new(seed: u64, n: usize) -> Self {
        Self {
            seed,
            epoch: None,
            perm: (0..n).collect(),
        }
    }

    pub(crate) fn get(&mut self, pos: u64) -> usize {
        let n = self.perm.len() as u64;
        let epoch = pos / n;
        if self.epoch != Some(epoch) {
            self.perm.sort_unstable();
            let mut rng = Prng::stream(self.seed, epoch);
            for i in (1..self.perm.len()).rev() {
                let j = (rng.next_u64() % (i as u64 + 1)) as usize;
                self.perm.swap(i, j);
            }
            self.epoch = Some(epoch);
        }
        self.perm[(pos % n) as usize]
    }
}
