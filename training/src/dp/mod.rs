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
