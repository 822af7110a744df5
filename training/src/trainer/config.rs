//! [`TrainConfig`]: what a fine-tuning run does, with documented defaults and [`TrainConfig::validate`].

use burn::config::Config;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Largest `batch_size · grad_accum` accepted.
pub const MAX_EXAMPLES_PER_STEP: usize = 4096;
/// Largest `max_steps` accepted.
pub const MAX_STEPS: usize = 100_000_000;

/// Learning-rate shape after the linear warm-up.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Schedule {
    /// The peak learning rate until the end.
    Constant,
    /// Half a cosine from the peak down to `min_lr_ratio · peak` at `max_steps`.
    Cosine,
}

/// A LoRA fine-tuning run. The fields that shape the trajectory (all but `max_seconds`,
/// `checkpoint_every` and `quiet`) are part of a checkpoint's fingerprint: a checkpoint resumes only
/// the run it came from.
#[derive(Config, Debug, PartialEq)]
pub struct TrainConfig {
    /// Tokens predicted per training window (each window holds `seq_len + 1` tokens); also the
    /// evaluation window.
    #[config(default = 128)]
    pub seq_len: usize,
    /// Windows per forward pass.
    #[config(default = 1)]
    pub batch_size: usize,
    /// Forward/backward passes whose gradients are summed (each loss scaled by `1/grad_accum`)
    /// before one optimizer step: a step sees `batch_size · grad_accum` windows.
    #[config(default = 1)]
    pub grad_accum: usize,
    /// Peak learning rate of AdamW.
    #[config(default = 1e-3)]
    pub learning_rate: f64,
    /// Shape after warm-up.
    #[config(default = "Schedule::Cosine")]
    pub schedule: Schedule,
    /// Steps of linear warm-up from `peak / warmup_steps` to the peak.
    #[config(default = 10)]
    pub warmup_steps: usize,
    /// Final learning rate of the cosine schedule, as a fraction of the peak.
    #[config(default = 0.1)]
    pub min_lr_ratio: f64,
    /// AdamW's decoupled weight decay (0: none; LoRA usually trains without).
    #[config(default = 0.0)]
    pub weight_decay: f64,
    /// Clips each adapter tensor's gradient to this L2 norm before the step (burn's per-parameter
    /// gradient clipping); `None`: no clipping.
    #[config(default = "Some(1.0)")]
    pub grad_clip_norm: Option<f32>,
    /// Optimizer steps of the whole run (a resumed run counts the steps already done).
    #[config(default = 100)]
    pub max_steps: usize,
    /// Wall-clock limit of one invocation, in seconds (`None`: none). Not part of the fingerprint,
    /// and a run cut short by it is not reproducible step for step.
    #[config(default = "None")]
    pub max_seconds: Option<f64>,
    /// Seed of the example order: epoch `e` visits the windows in the order of a Fisher–Yates
    /// shuffle drawn from `Prng::stream(seed, e)`.
    #[config(default = 0)]
    pub seed: u64,
    /// Write a checkpoint every this many steps (0: only at the end), when a checkpoint folder is set.
    #[config(default = 50)]
    pub checkpoint_every: usize,
    /// Hides the progress bar (it is also hidden when standard error is not a terminal).
    #[config(default = false)]
    pub quiet: bool,
}

impl TrainConfig {
    /// Checks every field and the cross-field rules.
    pub fn validate(&self) -> Result<()> {
        let bad = |reason: String| Err(Error::Config { reason });
        for (name, v) in [
            ("seq_len", self.seq_len),
            ("batch_size", self.batch_size),
            ("grad_accum", self.grad_accum),
        ] {
            if v == 0 {
                return bad(format!("{name} is zero"));
            }
        }
        match self.batch_size.checked_mul(self.grad_accum) {
            Some(n) if n <= MAX_EXAMPLES_PER_STEP => {}
            _ => {
                return bad(format!(
                    "batch_size {} × grad_accum {} exceeds {MAX_EXAMPLES_PER_STEP} windows per step",
                    self.batch_size, self.grad_accum
                ));
            }
        }
        if self.max_steps > MAX_STEPS {
            return bad(format!("max_steps {} exceeds {MAX_STEPS}", self.max_steps));
        }
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            return bad(format!(
                "learning_rate {} is not positive",
                self.learning_rate
            ));
        }
        if !(0.0..=1.0).contains(&self.min_lr_ratio) {
            return bad(format!(
                "min_lr_ratio {} is not in [0, 1]",
                self.min_lr_ratio
            ));
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return bad(format!("weight_decay {} is negative", self.weight_decay));
        }
        if let Some(c) = self.grad_clip_norm
            && !(c.is_finite() && c > 0.0)
        {
            return bad(format!("grad_clip_norm {c} is not positive"));
        }
        if let Some(s) = self.max_seconds
            && !(s.is_finite() && s > 0.0)
        {
            return bad(format!("max_seconds {s} is not positive"));
        }
        Ok(())
    }

    /// The learning rate of optimizer step `step` (0-based).
    pub fn lr_at(&self, step: usize) -> f64 {
        let peak = self.learning_rate;
        if step < self.warmup_steps {
            return peak * (step + 1) as f64 / self.warmup_steps as f64;
        }
        match self.schedule {
            Schedule::Constant => peak,
            Schedule::Cosine => {
                let span = self.max_steps.saturating_sub(self.warmup_steps).max(1);
                let progress = ((step - self.warmup_steps) as f64 / span as f64).min(1.0);
                let floor = peak * self.min_lr_ratio;
                floor + (peak - floor) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
            }
        }
    }

    /// The fields that shape the trajectory, as canonical JSON (see the type's docs).
    pub(crate) fn trajectory_json(&self) -> String {
        let trajectory = Self {
            max_seconds: None,
            checkpoint_every: 0,
            quiet: false,
            ..self.clone()
        };
        // Serializing plain numbers, enums and options cannot fail.
        serde_json::to_string(&trajectory).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_json_round_trips() {
        let c = TrainConfig::new();
        c.validate().unwrap();
        let back: TrainConfig = serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
        assert_eq!(c, back);
        assert_eq!(c.grad_clip_norm, Some(1.0));
        assert_eq!(c.max_seconds, None);
    }

    #[test]
    fn validation_limits_at_and_past() {
        let ok = TrainConfig::new();
        assert!(ok.clone().with_seq_len(0).validate().is_err());
        assert!(ok.clone().with_batch_size(0).validate().is_err());
        assert!(ok.clone().with_grad_accum(0).validate().is_err());
        let at = ok.clone().with_batch_size(64).with_grad_accum(64);
        assert!(at.validate().is_ok());
        assert!(at.with_grad_accum(65).validate().is_err());
        assert!(
            ok.clone()
                .with_batch_size(usize::MAX)
                .with_grad_accum(2)
                .validate()
                .is_err()
        );
        assert!(ok.clone().with_max_steps(MAX_STEPS).validate().is_ok());
        assert!(ok.clone().with_max_steps(MAX_STEPS + 1).validate().is_err());
        assert!(ok.clone().with_learning_rate(0.0).validate().is_err());
        assert!(ok.clone().with_learning_rate(f64::NAN).validate().is_err());
        assert!(ok.clone().with_min_lr_ratio(1.0).validate().is_ok());
        assert!(ok.clone().with_min_lr_ratio(1.01).validate().is_err());
        assert!(ok.clone().with_weight_decay(-0.1).validate().is_err());
        assert!(
            ok.clone()
                .with_grad_clip_norm(Some(0.0))
                .validate()
                .is_err()
        );
        assert!(ok.clone().with_grad_clip_norm(None).validate().is_ok());
        assert!(ok.clone().with_max_seconds(Some(-1.0)).validate().is_err());
        let err = ok
            .with_max_seconds(Some(f64::INFINITY))
            .validate()
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "training config: max_seconds inf is not positive"
        );
    }

    #[test]
    fn warmup_then_cosine_or_constant() {
        let c = TrainConfig::new()
            .with_learning_rate(1.0)
            .with_warmup_steps(4)
            .with_max_steps(14)
            .with_min_lr_ratio(0.1);
        assert_eq!(c.lr_at(0), 0.25);
        assert_eq!(c.lr_at(3), 1.0);
        assert_eq!(c.lr_at(4), 1.0);
        assert!((c.lr_at(9) - 0.55).abs() < 1e-12);
        assert!((c.lr_at(14) - 0.1).abs() < 1e-12);
        assert!((c.lr_at(100) - 0.1).abs() < 1e-12);
        let flat = c.with_schedule(Schedule::Constant).with_warmup_steps(0);
        assert_eq!(flat.lr_at(0), 1.0);
        assert_eq!(flat.lr_at(1000), 1.0);
    }

    #[test]
    fn trajectory_ignores_runtime_fields() {
        let a = TrainConfig::new();
        let b = a
            .clone()
            .with_max_seconds(Some(5.0))
            .with_checkpoint_every(3)
            .with_quiet(true);
        assert_eq!(a.trajectory_json(), b.trajectory_json());
        assert_ne!(
            a.trajectory_json(),
            a.clone().with_seed(1).trajectory_json()
        );
    }
}
