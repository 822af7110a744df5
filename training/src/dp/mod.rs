//! Differential privacy for a member's delta: clip, noise (local or distributed mode), and charge
//! the member's [`Ledger`] — all with OpenDP mechanisms, on plain `f32` slices (the flattened
//! LoRA-B delta), so federation and simulations use the same code as the node.
//!
//! The unit of privacy is one member (user level). Two datasets are neighbours when one member's
//! whole contribution is present in one and zeroed out in the other, so after clipping to L2 norm
//! `C` the sensitivity of any sum of contributions is `C`. docs/PRIVACY.md explains the modes.

pub(crate) mod clip;
mod distributed;
mod local;
#[cfg(test)]
pub(crate) mod testutil;

use serde::{Deserialize, Serialize};

pub use clip::{Clip, clip, l2_norm};
pub use distributed::{Cohort, DistributedGaussian, TAIL_Z};
pub use local::Gaussian;

use crate::accountant::Ledger;
use crate::error::{Error, Result, positive};
use crate::quantize::Quantized;

/// Clipping norm `C` and noise multiplier `σ` (noise std is `σ·C` on the released sum).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct NoiseParams {
    /// L2 bound `C` on one member's delta.
    pub clip_norm: f64,
    /// Noise multiplier `σ`: std of the noise on the sum divided by `C`.
    pub noise_multiplier: f64,
}

impl NoiseParams {
    /// Validated parameters: both finite and > 0.
    pub fn new(clip_norm: f64, noise_multiplier: f64) -> Result<Self> {
        let p = NoiseParams {
            clip_norm,
            noise_multiplier,
        };
        p.validate()?;
        Ok(p)
    }

    /// Checks that `C` and `σ` are finite and > 0.
    pub fn validate(&self) -> Result<()> {
        positive("clipping norm", self.clip_norm)?;
        positive("noise multiplier", self.noise_multiplier)?;
        Ok(())
    }

    /// The noise multiplier that spends `rho` per release: `σ = 1/√(2ρ)`.
    pub fn noise_for_rho(rho: f64) -> Result<f64> {
        Ok(1.0 / (2.0 * positive("rho per release", rho)?).sqrt())
    }
}

/// Where the noise is added (a community manifest field).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Each member adds the full noise `σ·C`: private even if everyone else colludes.
    Local,
    /// Each member adds a share `σ·C/√(n−t)`; secure aggregation reveals only the sum.
    #[default]
    Distributed,
}

/// A release as the ledger records it: enough to rebuild the OpenDP measurement and recompute ρ.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Mechanism {
    /// Local mode: continuous Gaussian on the clipped delta ([`Gaussian`]).
    Gaussian {
        /// Delta length.
        dim: usize,
        /// `C`.
        clip_norm: f64,
        /// `σ`.
        noise_multiplier: f64,
        /// OpenDP granularity `k`.
        granularity: i32,
    },
    /// Distributed mode: a discrete Gaussian share on the quantized delta
    /// ([`DistributedGaussian`]); charged for the noise of the sum of `n − t` shares.
    DistributedDiscreteGaussian {
        /// Delta length.
        dim: usize,
        /// `C`.
        clip_norm: f64,
        /// `σ`.
        noise_multiplier: f64,
        /// Quantization scale `s`.
        scale: f32,
        /// Cohort `n` and tolerated `t`.
        cohort: Cohort,
    },
}

impl Mechanism {
    /// Rebuilds the noise this record describes (validating every parameter).
    pub fn noise(&self) -> Result<Noise> {
        Ok(match *self {
            Mechanism::Gaussian {
                dim,
                clip_norm,
                noise_multiplier,
                granularity,
            } => Noise::Local(Gaussian::with_granularity(
                dim,
                NoiseParams::new(clip_norm, noise_multiplier)?,
                granularity,
            )?),
            Mechanism::DistributedDiscreteGaussian {
                dim,
                clip_norm,
                noise_multiplier,
                scale,
                cohort,
            } => Noise::Distributed(DistributedGaussian::with_scale(
                dim,
                NoiseParams::new(clip_norm, noise_multiplier)?,
                cohort,
                scale,
            )?),
        })
    }

    /// ρ charged for this release, recomputed with OpenDP.
    pub fn rho(&self) -> Result<f64> {
        self.noise()?.rho()
    }
}

/// The noise a member adds, in either mode.
#[derive(Debug, Clone, PartialEq)]
pub enum Noise {
    /// Full Gaussian noise on the member's own delta.
    Local(Gaussian),
    /// A discrete Gaussian share on the quantized delta.
    Distributed(DistributedGaussian),
}

impl Noise {
    /// Noise for `mode` with defaults (granularity, scale); `cohort` is used in distributed mode
    /// only.
    pub fn new(mode: Mode, dim: usize, params: NoiseParams, cohort: Cohort) -> Result<Self> {
        Ok(match mode {
            Mode::Local => Noise::Local(Gaussian::new(dim, params)?),
            Mode::Distributed => Noise::Distributed(DistributedGaussian::new(dim, params, cohort)?),
        })
    }

    /// Delta length accepted.
    pub fn dim(&self) -> usize {
        match self {
            Noise::Local(g) => g.dim(),
            Noise::Distributed(g) => g.dim(),
        }
    }

    /// `C` and `σ`.
    pub fn params(&self) -> NoiseParams {
        match self {
            Noise::Local(g) => g.params(),
            Noise::Distributed(g) => g.params(),
        }
    }

    /// The ledger's description.
    pub fn mechanism(&self) -> Mechanism {
        match self {
            Noise::Local(g) => g.mechanism(),
            Noise::Distributed(g) => g.mechanism(),
        }
    }

    /// ρ charged per release (see [`Gaussian::rho`], [`DistributedGaussian::rho`]).
    pub fn rho(&self) -> Result<f64> {
        match self {
            Noise::Local(g) => g.rho(),
            Noise::Distributed(g) => g.rho(),
        }
    }

    /// Noises an already clipped delta.
    pub fn privatize(&self, clipped: &[f32]) -> Result<Noised> {
        Ok(match self {
            Noise::Local(g) => Noised::Local(g.privatize(clipped)?),
            Noise::Distributed(g) => Noised::Distributed(g.privatize(clipped)?),
        })
    }
}

/// A noised delta, ready to be signed (local) or masked and signed (distributed).
#[derive(Debug, Clone, PartialEq)]
pub enum Noised {
    /// Real values with full noise.
    Local(Vec<f32>),
    /// Integers with a noise share, for secure aggregation modulo `2³²`.
    Distributed(Quantized),
}

/// The result of [`release`].
#[derive(Debug, Clone, PartialEq)]
pub struct Release {
    /// What may be published.
    pub noised: Noised,
    /// Norm before clipping and the factor applied (private: log locally only).
    pub clip: Clip,
    /// ρ charged to the ledger.
    pub rho: f64,
}

/// Clips `delta` in place to `C`, charges the ledger, and noises it: the only way a delta should
/// leave the member.
///
/// The budget is checked before any work: a release that would exceed it returns
/// [`Error::BudgetExceeded`] and leaves both `delta` and the ledger untouched. A release is charged
/// only once the noised output exists, and the output is returned only if OpenDP's privacy filter
/// accepts the charge. The caller must persist the ledger before publishing the output.
pub fn release(
    ledger: &mut Ledger,
    round: u64,
    noise: &Noise,
    sampling_rate: f64,
    delta: &mut [f32],
) -> Result<Release> {
    check_len(noise.dim(), delta)?;
    clip::check_finite(delta)?;
    crate::accountant::check_sampling_rate(sampling_rate)?;
    let rho = noise.rho()?;
    ledger.check(rho)?;
    let clip = clip::clip(delta, noise.params().clip_norm)?;
    let noised = noise.privatize(delta)?;
    ledger.charge(round, noise.mechanism(), sampling_rate)?;
    Ok(Release { noised, clip, rho })
}

/// Chunks below this length are not worth a thread.
const MIN_CHUNK: usize = 8192;

/// Runs `noise` (which builds an OpenDP vector measurement for its chunk's length and invokes it)
/// over `input` split into one chunk per available core, and concatenates the outputs in order.
///
/// OpenDP's samplers cost microseconds per coordinate, and its measurements are not `Send`, so
/// each thread builds its own. This is the same mechanism as one full-length invocation: both
/// Gaussian mechanisms used here transform each coordinate independently with a function that
/// does not depend on the vector's length (round to the `2^k` grid, add an independent sample,
/// convert back); the length only enters the privacy map, which is always taken from the
/// full-length measurement.
pub(crate) fn par_invoke<T, F>(input: &[T], noise: F) -> Result<Vec<T>>
where
    T: Send + Sync,
    F: Fn(&[T]) -> Result<Vec<T>> + Sync,
{
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = input.len().div_ceil(threads).max(MIN_CHUNK);
    if input.len() <= chunk {
        return noise(input);
    }
    let parts: Vec<Result<Vec<T>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = input
            .chunks(chunk)
            .map(|part| scope.spawn(|| noise(part)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(Error::OpenDp("a noise thread panicked".into())))
            })
            .collect()
    });
    let mut out = Vec::with_capacity(input.len());
    for part in parts {
        out.extend(part?);
    }
    Ok(out)
}

/// Errors unless `values` has `expected` entries.
pub(crate) fn check_len(expected: usize, values: &[f32]) -> Result<()> {
    if values.len() != expected {
        return Err(Error::Length {
            expected,
            actual: values.len(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accountant::{Budget, rho_for_epsilon};

    #[test]
    fn release_clips_noises_and_charges() {
        let mut ledger = Ledger::new(Budget::default()).unwrap();
        let params = NoiseParams::new(1.0, 7.0).unwrap();
        for mode in [Mode::Local, Mode::Distributed] {
            let noise = Noise::new(mode, 1000, params, Cohort::new(10, 3).unwrap()).unwrap();
            let mut delta = vec![0.1f32; 1000]; // norm √10 > C
            let out = release(&mut ledger, 1, &noise, 0.5, &mut delta).unwrap();
            assert!((out.clip.norm - 10f64.sqrt()).abs() < 1e-6);
            assert!(l2_norm(&delta) <= 1.0);
            assert_eq!(out.rho, noise.rho().unwrap());
            let values = match out.noised {
                Noised::Local(v) => v,
                Noised::Distributed(q) => q.dequantize().unwrap(),
            };
            assert_eq!(values.len(), 1000);
        }
        assert_eq!(ledger.records().len(), 2);
        assert_eq!(ledger.records()[0].sampling_rate, 0.5);
    }

    #[test]
    fn refused_release_leaves_delta_and_ledger_untouched() {
        let params = NoiseParams::new(1.0, 1.0).unwrap();
        let noise = Noise::new(Mode::Local, 10, params, Cohort::new(10, 3).unwrap()).unwrap();
        let mut ledger = Ledger::new(Budget {
            rho: 0.4,
            delta: 1e-6,
        })
        .unwrap();
        let mut delta = vec![5.0f32; 10];
        let e = release(&mut ledger, 1, &noise, 1.0, &mut delta).unwrap_err();
        assert!(matches!(e, Error::BudgetExceeded { .. }), "{e}");
        assert!(e.to_string().contains("budget rho 0.4"), "{e}");
        assert_eq!(delta, vec![5.0f32; 10]);
        assert!(ledger.records().is_empty());
        // Bad inputs are refused before anything is charged too.
        let mut ledger = Ledger::new(Budget::default()).unwrap();
        let mut short = vec![0.0f32; 9];
        assert!(matches!(
            release(&mut ledger, 1, &noise, 1.0, &mut short),
            Err(Error::Length { .. })
        ));
        assert!(release(&mut ledger, 1, &noise, 0.0, &mut delta).is_err());
        delta[3] = f32::NAN;
        assert!(matches!(
            release(&mut ledger, 1, &noise, 1.0, &mut delta),
            Err(Error::NonFinite { index: 3, .. })
        ));
        assert!(ledger.records().is_empty());
    }

    #[test]
    fn mechanism_records_rebuild_the_same_noise() {
        let params = NoiseParams::new(0.3, 4.0).unwrap();
        for mode in [Mode::Local, Mode::Distributed] {
            let noise = Noise::new(mode, 512, params, Cohort::new(20, 6).unwrap()).unwrap();
            let m = noise.mechanism();
            let json = serde_json::to_string(&m).unwrap();
            let back: Mechanism = serde_json::from_str(&json).unwrap();
            assert_eq!(back.noise().unwrap(), noise);
            assert_eq!(back.rho().unwrap(), noise.rho().unwrap());
        }
        assert!(NoiseParams::noise_for_rho(0.0).is_err());
        assert!((NoiseParams::noise_for_rho(0.5).unwrap() - 1.0).abs() < 1e-12);
    }

    /// docs/PRIVACY.md's anchor: 50 members, 100 rounds, ε = 8 at δ = 10⁻⁶.
    #[test]
    fn local_puts_about_six_times_more_noise_on_the_sum() {
        let (n, t) = (50u32, 16u32);
        let total = rho_for_epsilon(8.0, 1e-6).unwrap();
        assert!((total - 1.0524).abs() < 5e-4, "{total}");
        let sigma = NoiseParams::noise_for_rho(total / 100.0).unwrap();
        assert!((sigma - 6.893).abs() < 1e-3, "{sigma}");
        let p = NoiseParams::new(1.0, sigma).unwrap();
        let local = Gaussian::new(184_320, p).unwrap();
        let dist = DistributedGaussian::new(184_320, p, Cohort::new(n, t).unwrap()).unwrap();
        // Both modes charge the member the same per round.
        let (rl, rd) = (local.rho().unwrap(), dist.rho().unwrap());
        assert!((rl / rd - 1.0).abs() < 1e-4, "{rl} {rd}");
        let s = f64::from(dist.scale());
        let local_sum = local.std() * f64::from(n).sqrt();
        let dist_all = dist.share_std() * s * f64::from(n).sqrt();
        let dist_min = dist.sum_std() * s;
        assert!((local_sum - 48.74).abs() < 0.01, "{local_sum}");
        assert!((dist_all - 8.36).abs() < 0.01, "{dist_all}");
        assert!((dist_min - sigma).abs() < 1e-9, "{dist_min}");
        let ratio = local_sum / dist_all;
        assert!(
            (ratio - 34f64.sqrt()).abs() < 1e-9 && (5.8..5.9).contains(&ratio),
            "{ratio}"
        );
        let local_min = local.std() * f64::from(n - t).sqrt();
        assert!((local_min / dist_min - ratio).abs() < 1e-9);
    }
}
