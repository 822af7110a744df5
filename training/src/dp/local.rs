//! `local` mode: the member adds the full Gaussian noise `N(0, (σ·C)²)` to every coordinate of
//! its clipped delta, with OpenDP's Gaussian mechanism, so its message is private on its own.

use opendp::{
    core::Measurement,
    domains::{AtomDomain, VectorDomain},
    measurements::make_gaussian,
    measures::ZeroConcentratedDivergence,
    metrics::L2Distance,
};

use super::{Mechanism, NoiseParams, check_len};
use crate::error::{Error, Result};

/// Extra L2 sensitivity allowed for OpenDP's discretization, as a fraction of `C`: `2⁻²⁰`.
const ROUNDING_SHARE_LOG2: i32 = 20;

/// The OpenDP measurement: sized `f32` vectors, L2 input distance, zCDP output.
pub(crate) type GaussianMeasurement = Measurement<
    VectorDomain<AtomDomain<f32>>,
    L2Distance<f64>,
    ZeroConcentratedDivergence,
    Vec<f32>,
>;

/// Continuous Gaussian noise of std `σ·C` on a `dim`-value delta (OpenDP `make_gaussian` over a
/// sized `VectorDomain<AtomDomain<f32>>` with `L2Distance`, zCDP).
///
/// OpenDP samples exactly: it rounds the input to multiples of `2^k` and adds discrete Gaussian
/// noise on that grid, charging the rounding as extra sensitivity `(2^k − 2⁻¹⁴⁹)·√dim`. With the
/// default granularity ([`Gaussian::default_granularity`]) that extra is at most `2⁻²⁰·C`, so the
/// charged ρ is within a factor `(1 + 2⁻²⁰)²` of `1/(2σ²)`. Fixing `k` and the vector size is also
/// what makes the sampler fast (about ten times faster than the default `k`).
#[derive(Debug, Clone, PartialEq)]
pub struct Gaussian {
    params: NoiseParams,
    dim: usize,
    granularity: i32,
}

impl Gaussian {
    /// Noise for `dim`-value deltas with the default granularity.
    pub fn new(dim: usize, params: NoiseParams) -> Result<Self> {
        params.validate()?;
        Self::with_granularity(
            dim,
            params,
            Self::default_granularity(dim, params.clip_norm)?,
        )
    }

    /// Noise with an explicit OpenDP granularity `k` (noise lives on multiples of `2^k`).
    pub fn with_granularity(dim: usize, params: NoiseParams, granularity: i32) -> Result<Self> {
        params.validate()?;
        if dim == 0 {
            return Err(Error::InvalidParameter {
                name: "delta length",
                value: "0".into(),
                rule: "must be at least 1",
            });
        }
        // Below f32's subnormal step the grid is pointless; far above C it would destroy the
        // signal. OpenDP enforces the lower end too; the upper end is ours.
        let max = params.clip_norm.log2().ceil() as i32;
        if !(-149..=max).contains(&granularity) {
            return Err(Error::InvalidParameter {
                name: "granularity k",
                value: granularity.to_string(),
                rule: "must be in -149 ..= log2(clipping norm)",
            });
        }
        Ok(Gaussian {
            params,
            dim,
            granularity,
        })
    }

    /// `k = ⌊log₂(C/√dim)⌋ − 20`: the rounding adds at most `2⁻²⁰·C` to the sensitivity.
    pub fn default_granularity(dim: usize, clip_norm: f64) -> Result<i32> {
        crate::error::positive("clipping norm", clip_norm)?;
        let per_coordinate = clip_norm / (dim.max(1) as f64).sqrt();
        Ok(((per_coordinate.log2().floor() as i32) - ROUNDING_SHARE_LOG2).max(-149))
    }

    /// Clipping norm and noise multiplier.
    pub fn params(&self) -> NoiseParams {
        self.params
    }

    /// Delta length this mechanism accepts.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// OpenDP granularity `k`.
    pub fn granularity(&self) -> i32 {
        self.granularity
    }

    /// Noise standard deviation per coordinate, `σ·C`.
    pub fn std(&self) -> f64 {
        self.params.noise_multiplier * self.params.clip_norm
    }

    /// The ledger's description of this mechanism.
    pub fn mechanism(&self) -> Mechanism {
        Mechanism::Gaussian {
            dim: self.dim,
            clip_norm: self.params.clip_norm,
            noise_multiplier: self.params.noise_multiplier,
            granularity: self.granularity,
        }
    }

    /// Builds the OpenDP measurement for the full delta.
    pub(crate) fn measurement(&self) -> Result<GaussianMeasurement> {
        self.measurement_of(self.dim)
    }

    /// The same mechanism over `len` values (see [`super::par_invoke`]).
    fn measurement_of(&self, len: usize) -> Result<GaussianMeasurement> {
        let domain = VectorDomain::new(AtomDomain::<f32>::new_non_nan()).with_size(len);
        Ok(make_gaussian::<_, _, ZeroConcentratedDivergence>(
            domain,
            L2Distance::default(),
            self.std(),
            Some(self.granularity),
        )?)
    }

    /// ρ (zCDP) of one release against a change of one member (L2 distance `C`), from OpenDP's
    /// privacy map, discretization included.
    pub fn rho(&self) -> Result<f64> {
        Ok(self.measurement()?.map(&self.params.clip_norm)?)
    }

    /// Adds the noise to an already clipped delta (norm ≤ `C`; see [`super::clip()`]).
    ///
    /// Prefer [`super::release`], which clips, charges the ledger and noises in one step.
    pub fn privatize(&self, clipped: &[f32]) -> Result<Vec<f32>> {
        check_len(self.dim, clipped)?;
        super::clip::check_finite(clipped)?;
        super::par_invoke(clipped, |part| {
            Ok(self.measurement_of(part.len())?.invoke(&part.to_vec())?)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dp::testutil::assert_std;

    #[test]
    fn rho_is_the_closed_form_up_to_discretization() {
        for sigma in [0.5, 1.0, 6.9, 20.0] {
            for c in [1e-3, 0.1, 1.0, 30.0] {
                let g = Gaussian::new(184_320, NoiseParams::new(c, sigma).unwrap()).unwrap();
                let rho = g.rho().unwrap();
                let closed = 1.0 / (2.0 * sigma * sigma);
                assert!(rho >= closed, "sigma {sigma} C {c}: {rho} < {closed}");
                assert!(rho <= closed * (1.0 + 3e-6), "sigma {sigma} C {c}: {rho}");
            }
        }
    }

    #[test]
    fn empirical_std_matches_sigma_c() {
        // 100k noise values on a zero vector; the std estimate has relative std ≈ 1/√(2N).
        let params = NoiseParams::new(0.5, 1.3).unwrap();
        let g = Gaussian::new(100_000, params).unwrap();
        let out = g.privatize(&vec![0.0; 100_000]).unwrap();
        let noise: Vec<f64> = out.iter().map(|&x| f64::from(x)).collect();
        assert_std(&noise, 0.65);
    }

    #[test]
    fn noise_is_added_to_the_input_in_order() {
        // Long enough to be split across threads: every coordinate must stay in place.
        let n = 50_000;
        let params = NoiseParams::new(1.0, 1e-4).unwrap();
        let g = Gaussian::new(n, params).unwrap();
        let x: Vec<f32> = (0..n).map(|i| (i as f32 - 25_000.0) * 1e-7).collect();
        let out = g.privatize(&x).unwrap();
        assert_eq!(out.len(), n);
        let diff: Vec<f64> = x.iter().zip(&out).map(|(a, b)| f64::from(b - a)).collect();
        assert!(diff.iter().all(|d| d.abs() < 1e-4 * 7.0));
        assert_std(&diff, 1e-4);
    }

    #[test]
    fn bad_parameters_and_inputs() {
        let p = NoiseParams::new(1.0, 1.0).unwrap();
        assert!(Gaussian::new(0, p).is_err());
        assert!(Gaussian::with_granularity(10, p, -150).is_err());
        assert!(Gaussian::with_granularity(10, p, 1).is_err());
        assert!(Gaussian::with_granularity(10, p, 0).is_ok());
        let g = Gaussian::new(3, p).unwrap();
        assert!(matches!(
            g.privatize(&[0.0; 4]),
            Err(Error::Length {
                expected: 3,
                actual: 4
            })
        ));
        assert!(matches!(
            g.privatize(&[0.0, f32::INFINITY, 0.0]),
            Err(Error::NonFinite { index: 1, .. })
        ));
    }
}
