//! `distributed` mode (the default): the member quantizes its clipped delta to integers and adds
//! only its *share* of discrete Gaussian noise; secure aggregation then reveals only the sum, whose
//! noise is the sum of at least `n − t` shares (Kairouz, Liu & Steinke 2021, "The Distributed
//! Discrete Gaussian Mechanism for Federated Learning with Secure Aggregation").
//!
//! Units: a real value `x` becomes the integer `round(x/s)`; the share's noise std is
//! `σ·C / (s·√(n−t))` integer steps, so `n − t` shares sum to std `σ·C/s` steps, i.e. `σ·C` in
//! real units. docs/PRIVACY.md has the derivation of the scale rule and of the rounding bound.

use opendp::{
    core::Measurement,
    domains::{AtomDomain, VectorDomain},
    measurements::make_gaussian,
    measures::ZeroConcentratedDivergence,
    metrics::L2Distance,
};
use serde::{Deserialize, Serialize};

use super::{Mechanism, NoiseParams, check_len};
use crate::error::{Error, Result};
use crate::quantize::{Quantized, power_of_two_at_least, quantize_exact};

/// Tail bound used for the wraparound rule: the noise of the cohort sum stays within `Z` standard
/// deviations on every coordinate except with probability `2·d·exp(−Z²/2)` (< 10⁻³⁶ for
/// d = 184,320), since the discrete Gaussian is sub-Gaussian with the same parameter.
pub const TAIL_Z: f64 = 14.0;

/// Largest magnitude the signed cohort sum may reach without wrapping modulo `2³²`.
const LIMIT: f64 = i32::MAX as f64;

/// Secure-aggregation cohort: `size` members, of whom up to `tolerated` may drop out or collude.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cohort {
    /// Members in the round, `n`.
    pub size: u32,
    /// Dropouts/colluders tolerated, `t`; at least `n − t` noise shares reach the sum.
    pub tolerated: u32,
}

impl Cohort {
    /// A cohort; errors unless `size > tolerated`.
    pub fn new(size: u32, tolerated: u32) -> Result<Self> {
        let c = Cohort { size, tolerated };
        c.validate()?;
        Ok(c)
    }

    /// The default tolerance of the design: up to a third of the cohort, `t = ⌊n/3⌋`.
    pub fn with_third_tolerated(size: u32) -> Result<Self> {
        Self::new(size, size / 3)
    }

    /// Checks `size > tolerated`.
    pub fn validate(&self) -> Result<()> {
        if self.size <= self.tolerated {
            return Err(Error::Cohort {
                size: self.size,
                tolerated: self.tolerated,
            });
        }
        Ok(())
    }

    /// Shares guaranteed to reach the sum, `n − t` (≥ 1).
    pub fn guaranteed(&self) -> u32 {
        self.size - self.tolerated
    }
}

/// The OpenDP measurement: sized `i64` vectors, L2 input distance, zCDP output.
type IntMeasurement = Measurement<
    VectorDomain<AtomDomain<i64>>,
    L2Distance<f64>,
    ZeroConcentratedDivergence,
    Vec<i64>,
>;

/// One member's share of the distributed discrete Gaussian for `dim`-value deltas.
#[derive(Debug, Clone, PartialEq)]
pub struct DistributedGaussian {
    params: NoiseParams,
    dim: usize,
    cohort: Cohort,
    scale: f32,
}

impl DistributedGaussian {
    /// Picks the finest power-of-two scale that keeps the cohort sum inside `±(2³¹ − 1)`.
    pub fn new(dim: usize, params: NoiseParams, cohort: Cohort) -> Result<Self> {
        let needed = Self::min_scale(params, cohort)?;
        let scale = power_of_two_at_least(needed)?;
        Self::with_scale(dim, params, cohort, scale)
    }

    /// Uses a given scale (e.g. from the community manifest); errors with [`Error::Headroom`] if
    /// the scale is finer than [`Self::min_scale`], since the sum could then wrap.
    pub fn with_scale(dim: usize, params: NoiseParams, cohort: Cohort, scale: f32) -> Result<Self> {
        params.validate()?;
        cohort.validate()?;
        crate::quantize::check_scale(scale)?;
        if dim == 0 {
            return Err(Error::InvalidParameter {
                name: "delta length",
                value: "0".into(),
                rule: "must be at least 1",
            });
        }
        let needed = Self::min_scale(params, cohort)?;
        if f64::from(scale) < needed {
            return Err(Error::Headroom {
                size: cohort.size,
                needed,
            });
        }
        Ok(DistributedGaussian {
            params,
            dim,
            cohort,
            scale,
        })
    }

    /// The smallest scale `s` for which the worst-case cohort sum fits in a signed 32-bit integer:
    ///
    /// `n·(C/s + ½) + Z·(σ·C/s)·√(n/(n−t)) ≤ 2³¹ − 1`, i.e.
    /// `s ≥ C·(n + Z·σ·√(n/(n−t))) / (2³¹ − 1 − n/2)`.
    ///
    /// Each clipped coordinate is at most `C` in magnitude, rounding adds at most ½ step, and when
    /// nobody drops out all `n` shares (std `σC/(s√(n−t))` each) are in the sum.
    pub fn min_scale(params: NoiseParams, cohort: Cohort) -> Result<f64> {
        params.validate()?;
        cohort.validate()?;
        let n = f64::from(cohort.size);
        let spread = (n / f64::from(cohort.guaranteed())).sqrt();
        let room = LIMIT - n / 2.0;
        let need = params.clip_norm * (n + TAIL_Z * params.noise_multiplier * spread) / room;
        if !(need.is_finite() && need > 0.0) {
            return Err(Error::Headroom {
                size: cohort.size,
                needed: need,
            });
        }
        Ok(need)
    }

    /// Clipping norm and noise multiplier.
    pub fn params(&self) -> NoiseParams {
        self.params
    }

    /// Delta length this mechanism accepts.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The cohort the share is sized for.
    pub fn cohort(&self) -> Cohort {
        self.cohort
    }

    /// Quantization scale `s` (real units per integer step), a power of two.
    pub fn scale(&self) -> f32 {
        self.scale
    }

    /// Std of this member's noise share in integer steps, `σ·C/(s·√(n−t))`.
    pub fn share_std(&self) -> f64 {
        self.sum_std() / f64::from(self.cohort.guaranteed()).sqrt()
    }

    /// Std of the noise in a sum of `n − t` shares, in integer steps: `σ·C/s`.
    pub fn sum_std(&self) -> f64 {
        self.params.noise_multiplier * self.params.clip_norm / f64::from(self.scale)
    }

    /// L2 sensitivity of one member's quantized contribution, in integer steps: `C/s + √d/2`
    /// (rounding to nearest moves each coordinate by at most ½), rounded up.
    pub fn sensitivity(&self) -> f64 {
        let exact = self.params.clip_norm / f64::from(self.scale) + (self.dim as f64).sqrt() / 2.0;
        exact * (1.0 + 1e-12)
    }

    /// The ledger's description of this mechanism.
    pub fn mechanism(&self) -> Mechanism {
        Mechanism::DistributedDiscreteGaussian {
            dim: self.dim,
            clip_norm: self.params.clip_norm,
            noise_multiplier: self.params.noise_multiplier,
            scale: self.scale,
            cohort: self.cohort,
        }
    }

    fn measurement(&self, std: f64) -> Result<IntMeasurement> {
        self.measurement_of(self.dim, std)
    }

    /// The same mechanism over `len` values (see [`super::par_invoke`]).
    fn measurement_of(&self, len: usize, std: f64) -> Result<IntMeasurement> {
        let domain = VectorDomain::new(AtomDomain::<i64>::default()).with_size(len);
        Ok(make_gaussian::<_, _, ZeroConcentratedDivergence>(
            domain,
            L2Distance::default(),
            std,
            None,
        )?)
    }

    /// `τ = 10·Σ_{k=1}^{m−1} exp(−2π²σ²·k/(k+1))` for `m = n − t` shares of std `σ` (KLS21): how
    /// far the sum of discrete Gaussians is from one discrete Gaussian. Negligible (it underflows to
    /// 0) once the share std is a few steps, which the scale rule guarantees in practice.
    pub fn tau(&self) -> f64 {
        let s2 = self.share_std().powi(2);
        let tau: f64 = (1..self.cohort.guaranteed())
            .map(|k| {
                let k = f64::from(k);
                (-2.0 * std::f64::consts::PI.powi(2) * s2 * k / (k + 1.0)).exp()
            })
            .sum();
        10.0 * tau
    }

    /// ρ the member's ledger is charged: the zCDP of the *sum* of `n − t` shares against one
    /// member's change, i.e. OpenDP's discrete Gaussian privacy map at scale `√(n−t)·share std`
    /// (= `σC/s`) and sensitivity [`Self::sensitivity`], plus KLS21's correction
    /// `ρ = min(ρ₀ + τ·d, (√(2ρ₀) + τ√d)²/2)` for the sum not being exactly discrete Gaussian.
    pub fn rho(&self) -> Result<f64> {
        // The accounting scale is rounded down so it never exceeds the real sum's scale.
        let std = self.share_std() * f64::from(self.cohort.guaranteed()).sqrt() * (1.0 - 1e-12);
        let rho0 = self.measurement(std)?.map(&self.sensitivity())?;
        let tau = self.tau();
        if tau == 0.0 {
            return Ok(rho0);
        }
        let d = self.dim as f64;
        let a = rho0 + tau * d;
        let b = ((2.0 * rho0).sqrt() + tau * d.sqrt()).powi(2) / 2.0;
        Ok(a.min(b).next_up())
    }

    /// ρ if this member's share were seen on its own (secure aggregation broken, or more than `t`
    /// colluders): OpenDP's map for one share, `(n − t)` times [`Self::rho`] up to rounding.
    pub fn rho_exposed(&self) -> Result<f64> {
        Ok(self
            .measurement(self.share_std())?
            .map(&self.sensitivity())?)
    }

    /// Quantizes an already clipped delta (norm ≤ `C`) at [`Self::scale`] and adds this member's
    /// noise share with OpenDP's discrete Gaussian.
    ///
    /// Prefer [`super::release`], which clips, charges the ledger and noises in one step.
    pub fn privatize(&self, clipped: &[f32]) -> Result<Quantized> {
        check_len(self.dim, clipped)?;
        let q = quantize_exact(clipped, self.scale)?;
        let wide: Vec<i64> = q.values.iter().map(|&v| i64::from(v)).collect();
        let std = self.share_std();
        let noised = super::par_invoke(&wide, |part| {
            Ok(self
                .measurement_of(part.len(), std)?
                .invoke(&part.to_vec())?)
        })?;
        let out_of_range = noised
            .iter()
            .filter(|&&v| v.unsigned_abs() > i32::MAX as u64)
            .count();
        if out_of_range > 0 {
            return Err(Error::Saturated {
                count: out_of_range,
                len: noised.len(),
                scale: self.scale,
            });
        }
        Ok(Quantized {
            values: noised.into_iter().map(|v| v as i32).collect(),
            scale: self.scale,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dp::testutil::assert_std;

    fn params(c: f64, sigma: f64) -> NoiseParams {
        NoiseParams::new(c, sigma).unwrap()
    }

    #[test]
    fn share_std_matches_in_integer_steps() {
        // s = 1/8, σC/s = 8, n − t = 4: each share has std 4 steps.
        let g = DistributedGaussian::with_scale(
            100_000,
            params(1.0, 1.0),
            Cohort::new(5, 1).unwrap(),
            0.125,
        )
        .unwrap();
        assert_eq!(g.share_std(), 4.0);
        let out = g.privatize(&vec![0.0; 100_000]).unwrap();
        let noise: Vec<f64> = out.values.iter().map(|&v| f64::from(v)).collect();
        assert_std(&noise, 4.0);
    }

    #[test]
    fn sum_of_guaranteed_shares_has_the_full_std() {
        // n − t = 4 shares of std 5 steps sum to std 10 = σC/s steps (σ = 2.5, C = 0.5, s = 1/8).
        let cohort = Cohort::new(6, 2).unwrap();
        let g = DistributedGaussian::with_scale(25_000, params(0.5, 2.5), cohort, 0.125).unwrap();
        assert_eq!(g.sum_std(), 10.0);
        let mut sum = vec![0i64; 25_000];
        for _ in 0..cohort.guaranteed() {
            let share = g.privatize(&vec![0.0; 25_000]).unwrap();
            for (s, v) in sum.iter_mut().zip(&share.values) {
                *s += i64::from(*v);
            }
        }
        let noise: Vec<f64> = sum.iter().map(|&v| v as f64).collect();
        assert_std(&noise, 10.0);
    }

    #[test]
    fn large_default_scale_noise_has_the_right_std() {
        let g = DistributedGaussian::new(100_000, params(1.0, 5.0), Cohort::new(50, 16).unwrap())
            .unwrap();
        assert!(
            g.share_std() > 1e6,
            "default scales are fine: {}",
            g.share_std()
        );
        let out = g.privatize(&vec![0.0; 100_000]).unwrap();
        let noise: Vec<f64> = out.values.iter().map(|&v| f64::from(v)).collect();
        assert_std(&noise, g.share_std());
    }

    #[test]
    fn shares_keep_every_coordinate_in_place() {
        let n = 50_000;
        let cohort = Cohort::new(4, 1).unwrap();
        let g = DistributedGaussian::with_scale(n, params(1.0, 1.0), cohort, 1.0 / 1024.0).unwrap();
        // share std = 1024/√3 ≈ 591 steps ≈ 0.58 real units; the ramp spans ±25.
        let x: Vec<f32> = (0..n).map(|i| (i as f32 - 25_000.0) * 1e-3).collect();
        let out = g.privatize(&x).unwrap();
        let back = out.dequantize().unwrap();
        let err: Vec<f64> = x
            .iter()
            .zip(&back)
            .map(|(a, b)| f64::from(b - a) * 1024.0)
            .collect();
        assert!(err.iter().all(|e| e.abs() < 7.0 * g.share_std() + 1.0));
        assert_std(&err, g.share_std());
    }

    #[test]
    fn rho_is_charged_for_the_sum_and_exposure_is_n_minus_t_times_more() {
        for sigma in [1.0, 6.9, 20.0] {
            let cohort = Cohort::new(50, 16).unwrap();
            let g = DistributedGaussian::new(184_320, params(0.1, sigma), cohort).unwrap();
            let rho = g.rho().unwrap();
            let closed = 1.0 / (2.0 * sigma * sigma);
            // Rounding adds s·√d/2 to C: (1 + s√d/(2C))² relative.
            let inflation = (1.0 + f64::from(g.scale()) * (184_320f64).sqrt() / 0.2).powi(2);
            assert!(rho >= closed, "{rho} < {closed}");
            assert!(
                rho <= closed * inflation * (1.0 + 1e-9),
                "{rho} vs {closed}·{inflation}"
            );
            assert!(
                inflation < 1.0 + 1e-3,
                "the default scale keeps rounding negligible"
            );
            assert_eq!(g.tau(), 0.0);
            let exposed = g.rho_exposed().unwrap();
            assert!((exposed / rho - 34.0).abs() < 1e-6, "{exposed} / {rho}");
        }
    }

    #[test]
    fn tau_matters_only_for_tiny_shares() {
        // Share std 0.5 step: the sum is measurably not a discrete Gaussian and ρ grows.
        let cohort = Cohort::new(3, 0).unwrap();
        let s = 1.0;
        let sigma = 0.5 * 3f64.sqrt(); // share std = σ·C/(s·√3) = 0.5
        let g = DistributedGaussian::with_scale(10, params(1.0, sigma), cohort, s).unwrap();
        assert!((g.share_std() - 0.5).abs() < 1e-12);
        let tau = g.tau();
        assert!(tau > 1e-3, "{tau}");
        let base = 0.5 * (g.sensitivity() / g.sum_std()).powi(2);
        assert!(g.rho().unwrap() > base);
    }

    #[test]
    fn the_cohort_sum_never_wraps() {
        // Worst case: every member's whole norm on one coordinate, same sign.
        let (n, t) = (50u32, 16u32);
        let p = params(1.0, 6.9);
        let g = DistributedGaussian::new(8, p, Cohort::new(n, t).unwrap()).unwrap();
        let mut wrapped = [0i32; 8];
        let mut exact = [0i64; 8];
        for _ in 0..n {
            let x = [1.0f32, -1.0, 0.0, 0.0, 0.5, -0.5, 0.0, 0.0];
            let share = g.privatize(&x).unwrap();
            for i in 0..8 {
                wrapped[i] = wrapped[i].wrapping_add(share.values[i]);
                exact[i] += i64::from(share.values[i]);
            }
        }
        for i in 0..8 {
            assert_eq!(i64::from(wrapped[i]), exact[i]);
        }
        let sum: Vec<f64> = exact
            .iter()
            .map(|&v| v as f64 * f64::from(g.scale()))
            .collect();
        // The sum is 50·x plus noise of std ≈ σC·√(50/34).
        assert!(
            (sum[0] - 50.0).abs() < 8.0 * 6.9 * (50.0f64 / 34.0).sqrt(),
            "{sum:?}"
        );
    }

    #[test]
    fn headroom_rule_at_and_past_the_limit() {
        let p = params(1.0, 2.0);
        let cohort = Cohort::new(100, 33).unwrap();
        let need = DistributedGaussian::min_scale(p, cohort).unwrap();
        let n = 100.0;
        let worst = |s: f64| n * (1.0 / s + 0.5) + TAIL_Z * (2.0 / s) * (n / 67.0f64).sqrt();
        assert!(worst(need) <= f64::from(i32::MAX) * (1.0 + 1e-12));
        assert!(worst(need * 0.999) > f64::from(i32::MAX));
        let fine = power_of_two_at_least(need).unwrap();
        assert!(DistributedGaussian::with_scale(10, p, cohort, fine).is_ok());
        let too_fine = fine / 2.0;
        assert!(f64::from(too_fine) < need);
        assert!(matches!(
            DistributedGaussian::with_scale(10, p, cohort, too_fine),
            Err(Error::Headroom { size: 100, .. })
        ));
        assert_eq!(
            DistributedGaussian::new(10, p, cohort).unwrap().scale(),
            fine
        );
    }

    #[test]
    fn bad_parameters_are_clear_errors() {
        let p = params(1.0, 1.0);
        for (n, t) in [(5, 5), (5, 6), (0, 0)] {
            let e = Cohort::new(n, t).unwrap_err();
            assert!(e.to_string().contains("cannot tolerate"), "{e}");
        }
        let bad_cohort = Cohort {
            size: 3,
            tolerated: 3,
        };
        assert!(matches!(
            DistributedGaussian::new(10, p, bad_cohort),
            Err(Error::Cohort { .. })
        ));
        let cohort = Cohort::new(10, 3).unwrap();
        for (c, sigma) in [
            (0.0, 1.0),
            (-1.0, 1.0),
            (f64::NAN, 1.0),
            (1.0, 0.0),
            (1.0, -2.0),
            (1.0, f64::NAN),
            (1.0, f64::INFINITY),
        ] {
            let p = NoiseParams {
                clip_norm: c,
                noise_multiplier: sigma,
            };
            let e = DistributedGaussian::new(10, p, cohort).unwrap_err();
            assert!(matches!(e, Error::InvalidParameter { .. }), "{e}");
        }
        assert!(DistributedGaussian::new(0, p, cohort).is_err());
        for s in [0.0f32, -1.0, f32::NAN] {
            assert!(DistributedGaussian::with_scale(10, p, cohort, s).is_err());
        }
        let g = DistributedGaussian::new(3, p, cohort).unwrap();
        assert!(matches!(g.privatize(&[0.0; 2]), Err(Error::Length { .. })));
        assert!(matches!(
            g.privatize(&[0.0, 0.0, f32::NAN]),
            Err(Error::NonFinite { .. })
        ));
    }
}
