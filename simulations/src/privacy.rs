//! A member's release in the simulation: clip to `C`, charge the member's privacy [`Ledger`]
//! (OpenDP's accounting, exactly as the node does), add Gaussian noise of std `σ·C`.
//!
//! The accounting is always the training crate's: the ledger is charged with the mechanism the
//! node would use ([`hearth_training::Noise`] in local mode) and refuses releases past the
//! budget, which the member then skips. The noise itself comes from the scenario's
//! [`Sampler`]: `seeded` draws the same Gaussian from the run's seed, so runs are reproducible;
//! `opendp` calls [`hearth_training::release`], the node's own path, whose noise comes from the
//! operating system.

use std::cell::RefCell;
use std::collections::HashMap;

use hearth_training::{
    Budget, Cohort, Ledger, Mode, Noise, NoiseParams, Noised, clip, release, rho_for_epsilon,
};

use crate::error::{Error, Result};
use crate::rng::Rng;
use crate::scenario::{PrivacyModeSpec, Sampler, Scenario};

use hearth_federation::Calibration;

/// Relative margin added to σ when it is derived from ε, so that OpenDP's discretization term
/// (a factor `(1 + 2⁻²⁰)²` on ρ) cannot take the last round past the budget.
const SIGMA_MARGIN: f64 = 1e-5;

/// The privacy settings of one arm.
#[derive(Debug, Clone)]
pub struct Privacy {
    /// Noise multiplier σ (0: no noise and no accounting).
    pub sigma: f64,
    /// Clipping norm C.
    pub clip_norm: f64,
    /// The member's budget.
    pub budget: Budget,
    sampler: Sampler,
    noise: Option<Noise>,
    sampling_rate: f64,
    distributed: bool,
    /// ε by spent ρ (bits): OpenDP's conversion is a numeric search, and members share few
    /// distinct totals.
    epsilons: RefCell<HashMap<u64, f64>>,
}

impl Privacy {
    /// The `federated_dp` arm's privacy for deltas of `dim` values.
    pub fn for_scenario(s: &Scenario, dim: usize) -> Result<Self> {
        let p = &s.privacy;
        let (sigma, budget_rho) = match (p.noise_multiplier, p.epsilon) {
            (_, Some(e)) if e.is_infinite() => (0.0, f64::INFINITY),
            (_, Some(e)) => {
                let total = rho_for_epsilon(e, p.delta)?;
                let sigma = NoiseParams::noise_for_rho(total / s.rounds as f64)?;
                (sigma * (1.0 + SIGMA_MARGIN), total)
            }
            (Some(sigma), None) => (sigma, f64::INFINITY),
            (None, None) => (1.0, f64::INFINITY),
        };
        if p.mode == PrivacyModeSpec::Distributed && sigma == 0.0 {
            return Err(Error::scenario(
                "privacy.epsilon",
                "distributed mode needs noise (secure aggregation calibrates each group's share of it)",
            ));
        }
        let mut out = Self::new(sigma, p.clip_norm, budget_rho, p.delta, p.sampler, s, dim)?;
        out.distributed = p.mode == PrivacyModeSpec::Distributed;
        Ok(out)
    }

    /// Clipping only (the `federated` arm).
    pub fn none(s: &Scenario, dim: usize) -> Result<Self> {
        Self::new(
            0.0,
            s.privacy.clip_norm,
            f64::INFINITY,
            s.privacy.delta,
            Sampler::Seeded,
            s,
            dim,
        )
    }

    fn new(
        sigma: f64,
        clip_norm: f64,
        budget_rho: f64,
        delta: f64,
        sampler: Sampler,
        s: &Scenario,
        dim: usize,
    ) -> Result<Self> {
        let noise = if sigma > 0.0 {
            let params = NoiseParams::new(clip_norm, sigma)?;
            Some(Noise::new(
                Mode::Local,
                dim,
                params,
                Cohort::with_third_tolerated(s.members as u32)?,
            )?)
        } else {
            None
        };
        // An open budget is still a number for OpenDP's filter: a million times a release.
        let rho = match &noise {
            Some(n) if budget_rho.is_infinite() => n.rho()? * 1e6,
            _ if budget_rho.is_infinite() => 1e6,
            _ => budget_rho,
        };
        Ok(Privacy {
            sigma,
            clip_norm,
            budget: Budget { rho, delta },
            sampler,
            noise,
            sampling_rate: s.schedule.sampling_rate,
            distributed: false,
            epsilons: RefCell::new(HashMap::new()),
        })
    }

    /// Whether members release noise shares for secure aggregation (distributed mode).
    pub fn distributed(&self) -> bool {
        self.distributed
    }

    /// Std of the noise a member adds (`σ·C`).
    pub fn noise_std(&self) -> f64 {
        self.sigma * self.clip_norm
    }

    /// A fresh ledger for a member.
    pub fn ledger(&self) -> Result<Ledger> {
        Ok(Ledger::new(self.budget)?)
    }

    /// Whether the ledger can pay for one more release.
    pub fn affordable(&self, ledger: &Ledger) -> Result<bool> {
        match &self.noise {
            None => Ok(true),
            Some(n) => Ok(ledger.check(n.rho()?).is_ok()),
        }
    }

    /// Clips `delta` in place and noises it, charging `ledger` for `round`. `None` when the
    /// budget does not allow the release (nothing is charged then).
    pub fn release(
        &self,
        ledger: &mut Ledger,
        round: u64,
        delta: &mut [f32],
        rng: &mut Rng,
    ) -> Result<Option<Vec<f32>>> {
        let Some(noise) = &self.noise else {
            clip(delta, self.clip_norm)?;
            return Ok(Some(delta.to_vec()));
        };
        if !self.affordable(ledger)? {
            return Ok(None);
        }
        match self.sampler {
            Sampler::Opendp => {
                let out = release(ledger, round, noise, self.sampling_rate, delta)?;
                match out.noised {
                    Noised::Local(v) => Ok(Some(v)),
                    Noised::Distributed(q) => Ok(Some(q.dequantize()?)),
                }
            }
            Sampler::Seeded => {
                clip(delta, self.clip_norm)?;
                ledger.charge(round, noise.mechanism(), self.sampling_rate)?;
                let std = self.noise_std();
                Ok(Some(
                    delta
                        .iter()
                        .map(|&x| (f64::from(x) + std * rng.normal()) as f32)
                        .collect(),
                ))
            }
        }
    }

    /// Distributed mode: clips `delta` in place, charges `ledger` for the group's share
    /// mechanism, quantizes at the group's scale and adds the member's noise share. Returns the
    /// integers to mask, or `None` when the budget does not allow the release.
    ///
    /// `seeded` rounds a continuous Gaussian of the share's std (in integer steps) where OpenDP
    /// samples the discrete Gaussian; the two differ by less than the rounding itself.
    pub fn release_share(
        &self,
        ledger: &mut Ledger,
        round: u64,
        delta: &mut [f32],
        calibration: &Calibration,
        rng: &mut Rng,
    ) -> Result<Option<Vec<i32>>> {
        let noise = Noise::Distributed(calibration.noise.clone());
        if ledger.check(noise.rho()?).is_err() {
            return Ok(None);
        }
        match self.sampler {
            Sampler::Opendp => {
                let out = release(ledger, round, &noise, self.sampling_rate, delta)?;
                match out.noised {
                    Noised::Distributed(q) => Ok(Some(q.values)),
                    Noised::Local(_) => Err(Error::run("a local release for a secure round")),
                }
            }
            Sampler::Seeded => {
                clip(delta, self.clip_norm)?;
                ledger.charge(round, noise.mechanism(), self.sampling_rate)?;
                let scale = f64::from(calibration.scale());
                let steps = calibration.share_std() / scale;
                let limit = f64::from(i32::MAX);
                Ok(Some(
                    delta
                        .iter()
                        .map(|&x| {
                            let q = (f64::from(x) / scale + steps * rng.normal()).round();
                            q.clamp(-limit, limit) as i32
                        })
                        .collect(),
                ))
            }
        }
    }

    /// ε spent by `ledger` at the budget's δ (`inf` when the arm adds no noise).
    pub fn epsilon(&self, ledger: &Ledger) -> Result<f64> {
        if self.noise.is_none() {
            return Ok(f64::INFINITY);
        }
        let key = ledger.spent().to_bits();
        if let Some(e) = self.epsilons.borrow().get(&key) {
            return Ok(*e);
        }
        let e = ledger.epsilon()?;
        self.epsilons.borrow_mut().insert(key, e);
        Ok(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::stream;

    fn scenario(extra: &str) -> Scenario {
        Scenario::from_toml_str(&format!(
            "name = 't'\nseed = 1\nrounds = 4\nmembers = 5\n{extra}"
        ))
        .unwrap()
    }

    #[test]
    fn epsilon_target_spends_the_budget_in_rounds_releases() {
        let s = scenario("[privacy]\nepsilon = 8.0\n");
        let p = Privacy::for_scenario(&s, 100).unwrap();
        let mut ledger = p.ledger().unwrap();
        let mut rng = stream(1, &[]);
        for round in 1..=4 {
            let mut d = vec![0.5f32; 100];
            let out = p.release(&mut ledger, round, &mut d, &mut rng).unwrap();
            let out = out.expect("within the budget");
            assert!(l2(&d) <= 1.0 + 1e-6, "clipped in place");
            assert!(l2(&out) > 3.0, "noised: σC√d ≈ {}", p.noise_std() * 10.0);
        }
        let eps = p.epsilon(&ledger).unwrap();
        assert!(eps <= 8.0 && eps > 7.99, "{eps}");
        let mut d = vec![0.5f32; 100];
        assert_eq!(p.release(&mut ledger, 5, &mut d, &mut rng).unwrap(), None);
        assert_eq!(
            ledger.records().len(),
            4,
            "a refused release is not charged"
        );
    }

    #[test]
    fn no_noise_clips_only_and_reports_infinite_epsilon() {
        let s = scenario("[privacy]\nepsilon = inf\n");
        let p = Privacy::for_scenario(&s, 10).unwrap();
        assert_eq!(p.sigma, 0.0);
        let mut ledger = p.ledger().unwrap();
        let mut d = vec![3.0f32; 10];
        let out = p
            .release(&mut ledger, 1, &mut d, &mut stream(1, &[]))
            .unwrap()
            .unwrap();
        assert!((l2(&out) - 1.0).abs() < 1e-6);
        assert!(p.epsilon(&ledger).unwrap().is_infinite());
        let none = Privacy::none(&s, 10).unwrap();
        assert_eq!(none.noise_std(), 0.0);
    }

    #[test]
    fn seeded_noise_is_reproducible_and_opendp_is_the_nodes_path() {
        let s = scenario("[privacy]\nnoise_multiplier = 2.0\nclip_norm = 0.5\n");
        let p = Privacy::for_scenario(&s, 64).unwrap();
        assert_eq!(p.noise_std(), 1.0);
        let run = || {
            let mut l = p.ledger().unwrap();
            let mut d = vec![0.1f32; 64];
            p.release(&mut l, 1, &mut d, &mut stream(9, &[1])).unwrap()
        };
        assert_eq!(run(), run());
        let s = scenario("[privacy]\nnoise_multiplier = 2.0\nsampler = 'opendp'\n");
        let p = Privacy::for_scenario(&s, 64).unwrap();
        let mut l = p.ledger().unwrap();
        let mut d = vec![0.1f32; 64];
        let out = p
            .release(&mut l, 1, &mut d, &mut stream(9, &[1]))
            .unwrap()
            .unwrap();
        assert_eq!(out.len(), 64);
        assert_eq!(l.records().len(), 1);
        let s = scenario("[privacy]\nmode = 'distributed'\nepsilon = inf\n");
        let e = Privacy::for_scenario(&s, 64).unwrap_err();
        assert!(e.to_string().contains("`privacy.epsilon`"), "{e}");
    }

    fn l2(v: &[f32]) -> f64 {
        v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt()
    }
}
