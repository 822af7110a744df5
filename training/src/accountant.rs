//! The member's privacy ledger: every release is recorded, composed under zCDP with OpenDP's
//! fully adaptive composition, and the budget `ρ_max` is enforced by OpenDP's privacy filter.
//!
//! # How OpenDP's filter is used
//!
//! `make_privacy_filter(make_fully_adaptive_composition(..), d_in, ρ_max)` composes measurements
//! that all run on *one* dataset handed over when the filter is created. A member's releases do
//! not fit that shape literally: each round's delta comes from local training on the private data
//! and the previous public model, and training is not an OpenDP transformation. So the filter here
//! runs over a stand-in input whose distance is counted in members (`SymmetricDistance`, `d_in = 1`:
//! one member's contribution present or zeroed out), and each release is submitted to it as a
//! measurement whose privacy map is the release's own OpenDP privacy map evaluated at that
//! member's sensitivity (see [`Mechanism::rho`]). The filter composes these (zCDP: the ρ add up)
//! and refuses any submission that would take the total past `ρ_max`.
//!
//! OpenDP's measurements, queryables and filters are not `Send` (they hold `Rc`s), while the
//! node keeps its ledger across async tasks and persists it. So [`Ledger`] holds only plain
//! records and rebuilds a fresh filter from them (replaying every record) whenever it charges or is
//! restored; a replay of hundreds of records takes well under a millisecond.
//!
//! OpenDP's filter becomes permanently exhausted after refusing a query. The ledger therefore
//! checks the cost first, with the same composition function the filter uses, and only submits
//! releases that fit, so a refused release leaves the ledger usable.

use opendp::{
    combinators::{
        CompositionMeasure, make_fix_delta, make_fully_adaptive_composition, make_privacy_filter,
        make_zCDP_to_approxDP,
    },
    core::{Function, Measurement, OdometerQueryable, PrivacyMap},
    domains::{AtomDomain, VectorDomain},
    err,
    measures::ZeroConcentratedDivergence,
    metrics::SymmetricDistance,
};
use serde::{Deserialize, Serialize};

use crate::dp::Mechanism;
use crate::error::{Error, Result, positive};

/// The member's privacy budget: total ρ (zCDP) and the δ used to report (ε, δ).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Budget {
    /// Largest total ρ the member will spend. Default 1.05 (ε ≈ 8 at δ = 10⁻⁶).
    pub rho: f64,
    /// δ for the (ε, δ) report. Default 10⁻⁶.
    pub delta: f64,
}

impl Default for Budget {
    fn default() -> Self {
        Budget {
            rho: 1.05,
            delta: 1e-6,
        }
    }
}

impl Budget {
    /// Checks `ρ` finite and > 0, `0 < δ < 1`.
    pub fn validate(&self) -> Result<()> {
        positive("rho budget", self.rho)?;
        if !(self.delta > 0.0 && self.delta < 1.0) {
            return Err(Error::InvalidParameter {
                name: "delta",
                value: self.delta.to_string(),
                rule: "must be in (0, 1)",
            });
        }
        Ok(())
    }

    /// ε of the whole budget at δ (OpenDP's conversion).
    pub fn epsilon(&self) -> Result<f64> {
        self.validate()?;
        epsilon(self.rho, self.delta)
    }
}

/// ε at `delta` for a `rho`-zCDP guarantee, by OpenDP's `make_zCDP_to_approxDP` and
/// `make_fix_delta` (Canonne, Kamath & Steinke 2020's conversion, tighter than the standard
/// `ρ + 2√(ρ·ln(1/δ))`).
pub fn epsilon(rho: f64, delta: f64) -> Result<f64> {
    if rho == 0.0 {
        return Ok(0.0);
    }
    let zcdp = charge_measurement(rho)?;
    let approx = make_zCDP_to_approxDP(zcdp)?;
    let fixed = make_fix_delta(&approx, delta)?;
    Ok(fixed.map(&1)?.0)
}

/// The standard conversion `ε = ρ + 2√(ρ·ln(1/δ))` (Bun & Steinke 2016), for comparison.
pub fn standard_epsilon(rho: f64, delta: f64) -> f64 {
    rho + 2.0 * (rho * (1.0 / delta).ln()).sqrt()
}

/// One release as the ledger stores it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Round of the release.
    pub round: u64,
    /// Mechanism and its parameters (`C`, `σ`, mode-specific values).
    pub mechanism: Mechanism,
    /// Probability the member was sampled into the round's cohort. Recorded, not used: no
    /// amplification by subsampling is claimed (cohort sampling cannot be verified peer to peer).
    pub sampling_rate: f64,
    /// ρ charged, from OpenDP's privacy map for the mechanism.
    pub rho: f64,
}

/// The member's privacy ledger: records plus the budget, enforced with OpenDP's privacy filter.
///
/// Serializes as `{budget, records}`; deserializing replays the records (like [`Ledger::restore`])
/// and fails if they do not check out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "Stored")]
pub struct Ledger {
    budget: Budget,
    records: Vec<Record>,
    #[serde(skip_serializing)]
    spent: f64,
}

/// The serialized form of a [`Ledger`], checked on the way in.
#[derive(Deserialize)]
struct Stored {
    budget: Budget,
    records: Vec<Record>,
}

impl TryFrom<Stored> for Ledger {
    type Error = Error;
    fn try_from(s: Stored) -> Result<Self> {
        Ledger::restore(s.budget, s.records)
    }
}

type Unit = VectorDomain<AtomDomain<bool>>;
type Charge = Measurement<Unit, SymmetricDistance, ZeroConcentratedDivergence, ()>;
type Filter = OdometerQueryable<Charge, (), u32, f64>;

/// A measurement carrying one release's privacy loss `rho` for one member (`d_in = 1`).
fn charge_measurement(rho: f64) -> Result<Charge> {
    Ok(Measurement::new(
        Unit::default(),
        SymmetricDistance,
        ZeroConcentratedDivergence,
        Function::new(|_: &Vec<bool>| ()),
        PrivacyMap::new_fallible(move |d_in: &u32| match d_in {
            0 => Ok(0.0),
            1 => Ok(rho),
            _ => Err(err!(
                FailedMap,
                "the ledger accounts for one member (d_in = 1), got {d_in}"
            )),
        }),
    )?)
}

/// A fresh filter with budget `rho_max`, fed `charges` in order. Returns the filter's own total,
/// or [`Error::BudgetExceeded`] for the first charge the filter refuses.
fn replay(rho_max: f64, charges: impl IntoIterator<Item = f64>) -> Result<f64> {
    let odometer = make_fully_adaptive_composition::<_, _, _, ()>(
        Unit::default(),
        SymmetricDistance,
        ZeroConcentratedDivergence,
    )?;
    let mut filter: Filter = make_privacy_filter(odometer, 1u32, rho_max)?.invoke(&Vec::new())?;
    let mut running = 0.0;
    for cost in charges {
        let would_total = compose(vec![running, cost])?;
        if filter.invoke(charge_measurement(cost)?).is_err() {
            return Err(Error::BudgetExceeded {
                budget: rho_max,
                spent: running,
                cost,
                would_total,
            });
        }
        running = would_total;
    }
    Ok(filter.privacy_loss(1)?)
}

/// zCDP composition as OpenDP computes it (a sum rounded towards +∞).
fn compose(rhos: Vec<f64>) -> Result<f64> {
    Ok(ZeroConcentratedDivergence.compose(rhos)?)
}

pub(crate) fn check_sampling_rate(q: f64) -> Result<()> {
    if q.is_finite() && q > 0.0 && q <= 1.0 {
        Ok(())
    } else {
        Err(Error::InvalidParameter {
            name: "sampling rate",
            value: q.to_string(),
            rule: "must be in (0, 1]",
        })
    }
}

impl Ledger {
    /// An empty ledger.
    pub fn new(budget: Budget) -> Result<Self> {
        Self::restore(budget, Vec::new())
    }

    /// Rebuilds a ledger from stored records, replaying them into a fresh OpenDP filter.
    ///
    /// Each record's mechanism is rebuilt and its ρ recomputed with OpenDP. Where the stored value
    /// differs by more than a float encoding could (10⁻⁹ relative), the larger one is kept, so a
    /// change in OpenDP's maps or a tampered value can only make the ledger more conservative. Errors on an invalid record, or if the records exceed `budget`.
    pub fn restore(budget: Budget, mut records: Vec<Record>) -> Result<Self> {
        budget.validate()?;
        for (index, r) in records.iter_mut().enumerate() {
            let bad = |reason: String| Error::Record {
                index,
                round: r.round,
                reason,
            };
            check_sampling_rate(r.sampling_rate).map_err(|e| bad(e.to_string()))?;
            if !(r.rho.is_finite() && r.rho >= 0.0) {
                return Err(bad(format!(
                    "rho {} is not a finite non-negative number",
                    r.rho
                )));
            }
            let recomputed = r.mechanism.rho().map_err(|e| bad(e.to_string()))?;
            // Equal up to a lossy float encoding: OpenDP's value. Otherwise the larger one.
            r.rho = if (r.rho - recomputed).abs() <= 1e-9 * recomputed {
                recomputed
            } else {
                r.rho.max(recomputed)
            };
        }
        let filtered = replay(budget.rho, records.iter().map(|r| r.rho))?;
        Ok(Ledger {
            budget,
            records,
            spent: filtered,
        })
    }

    /// The budget.
    pub fn budget(&self) -> Budget {
        self.budget
    }

    /// Every release so far, oldest first.
    pub fn records(&self) -> &[Record] {
        &self.records
    }

    /// Total ρ spent (zCDP composition of all records).
    pub fn spent(&self) -> f64 {
        self.spent
    }

    /// ρ left before the budget is reached.
    pub fn remaining(&self) -> f64 {
        (self.budget.rho - self.spent).max(0.0)
    }

    /// ε spent so far at the budget's δ (OpenDP's conversion).
    pub fn epsilon(&self) -> Result<f64> {
        epsilon(self.spent, self.budget.delta)
    }

    /// Checks that a release costing `cost` fits; returns the total it would bring.
    ///
    /// A total exactly equal to the budget fits.
    pub fn check(&self, cost: f64) -> Result<f64> {
        if !(cost.is_finite() && cost >= 0.0) {
            return Err(Error::InvalidParameter {
                name: "release cost",
                value: cost.to_string(),
                rule: "must be a finite rho >= 0",
            });
        }
        let would_total = compose(vec![self.spent, cost])?;
        if would_total > self.budget.rho {
            return Err(Error::BudgetExceeded {
                budget: self.budget.rho,
                spent: self.spent,
                cost,
                would_total,
            });
        }
        Ok(would_total)
    }

    /// Records a release of `mechanism` in `round`, if the budget allows it.
    ///
    /// ρ is computed here from the mechanism with OpenDP (callers cannot under-report it). The
    /// charge goes through a fresh OpenDP privacy filter replaying all earlier records; if either
    /// the pre-check or the filter refuses, nothing is recorded and [`Error::BudgetExceeded`]
    /// names the budget, the spent amount and the cost.
    pub fn charge(
        &mut self,
        round: u64,
        mechanism: Mechanism,
        sampling_rate: f64,
    ) -> Result<&Record> {
        check_sampling_rate(sampling_rate)?;
        let cost = mechanism.rho()?;
        self.check(cost)?;
        let charges = self.records.iter().map(|r| r.rho).chain([cost]);
        let total = replay(self.budget.rho, charges)?;
        self.spent = total;
        self.records.push(Record {
            round,
            mechanism,
            sampling_rate,
            rho: cost,
        });
        Ok(&self.records[self.records.len() - 1])
    }
}

/// The total ρ whose ε at `delta` (OpenDP's conversion) equals `target`, by bisection.
pub fn rho_for_epsilon(target: f64, delta: f64) -> Result<f64> {
    positive("epsilon", target)?;
    Budget { rho: 1.0, delta }.validate()?;
    // ε(ρ) is increasing; ε(target) ≥ target, so the answer lies in (0, target].
    let (mut lo, mut hi) = (0.0f64, target);
    for _ in 0..100 {
        let mid = (lo + hi) / 2.0;
        if epsilon(mid, delta)? > target {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    Ok(lo)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dp::{Cohort, DistributedGaussian, Gaussian, NoiseParams};

    fn local(sigma: f64) -> Mechanism {
        Gaussian::new(184_320, NoiseParams::new(0.5, sigma).unwrap())
            .unwrap()
            .mechanism()
    }

    fn distributed(sigma: f64) -> Mechanism {
        let p = NoiseParams::new(0.5, sigma).unwrap();
        DistributedGaussian::new(184_320, p, Cohort::new(50, 16).unwrap())
            .unwrap()
            .mechanism()
    }

    #[test]
    fn composition_is_the_closed_form() {
        for (sigma, k) in [(1.0, 2usize), (6.9, 100), (3.0, 40)] {
            for mech in [local(sigma), distributed(sigma)] {
                let mut ledger = Ledger::new(Budget {
                    rho: 1e6,
                    delta: 1e-6,
                })
                .unwrap();
                for round in 0..k {
                    ledger.charge(round as u64, mech.clone(), 1.0).unwrap();
                }
                let one = mech.rho().unwrap();
                let closed = k as f64 / (2.0 * sigma * sigma);
                assert!((ledger.spent() - k as f64 * one).abs() <= 1e-12 * ledger.spent());
                assert!(ledger.spent() >= closed);
                assert!(
                    ledger.spent() <= closed * (1.0 + 1e-4),
                    "{} vs {closed}",
                    ledger.spent()
                );
                assert_eq!(ledger.records().len(), k);
                assert!(ledger.records().iter().all(|r| r.rho == one));
            }
        }
    }

    #[test]
    fn epsilon_is_at_most_the_standard_bound_and_close() {
        for rho in [0.01, 0.1, 0.5, 1.05, 2.0, 5.0] {
            for delta in [1e-5, 1e-6, 1e-9] {
                let eps = epsilon(rho, delta).unwrap();
                let standard = standard_epsilon(rho, delta);
                assert!(
                    eps <= standard,
                    "rho {rho} delta {delta}: {eps} > {standard}"
                );
                assert!(
                    eps >= 0.75 * standard,
                    "rho {rho} delta {delta}: {eps} vs {standard}"
                );
            }
        }
        assert_eq!(epsilon(0.0, 1e-6).unwrap(), 0.0);
        // The table in docs/PRIVACY.md.
        for (rho, eps, standard) in [
            (0.1, 2.14, 2.45),
            (0.2, 3.13, 3.53),
            (1.05, 7.99, 8.67),
            (2.0, 11.69, 12.51),
        ] {
            assert!(
                (epsilon(rho, 1e-6).unwrap() - eps).abs() < 0.006,
                "rho {rho}"
            );
            assert!(
                (standard_epsilon(rho, 1e-6) - standard).abs() < 0.006,
                "rho {rho}"
            );
        }
        // The default budget: ρ = 1.05 is ε ≈ 8 at δ = 10⁻⁶ (standard bound: 8.67).
        let eps = Budget::default().epsilon().unwrap();
        assert!((7.9..8.1).contains(&eps), "{eps}");
        let rho = rho_for_epsilon(8.0, 1e-6).unwrap();
        assert!((epsilon(rho, 1e-6).unwrap() - 8.0).abs() < 1e-6);
    }

    #[test]
    fn budget_is_refused_past_the_limit_not_at_it() {
        let mech = local(2.0);
        let one = mech.rho().unwrap();
        let three = compose(vec![one, one, one]).unwrap();
        // Exactly at the limit: the third release fits, a fourth does not.
        let mut ledger = Ledger::new(Budget {
            rho: three,
            delta: 1e-6,
        })
        .unwrap();
        for round in 0..3 {
            ledger.charge(round, mech.clone(), 1.0).unwrap();
        }
        assert_eq!(ledger.spent(), three);
        assert_eq!(ledger.remaining(), 0.0);
        let e = ledger.charge(3, mech.clone(), 1.0).unwrap_err();
        let Error::BudgetExceeded {
            budget,
            spent,
            cost,
            would_total,
        } = e
        else {
            panic!("{e}")
        };
        assert_eq!((budget, spent, cost), (three, three, one));
        assert!(would_total > three);
        let msg = Error::BudgetExceeded {
            budget,
            spent,
            cost,
            would_total,
        }
        .to_string();
        assert!(
            msg.contains(&three.to_string()) && msg.contains(&one.to_string()),
            "{msg}"
        );
        assert_eq!(ledger.records().len(), 3, "a refusal records nothing");

        // Just past the limit: the third release is refused.
        let mut ledger = Ledger::new(Budget {
            rho: three.next_down(),
            delta: 1e-6,
        })
        .unwrap();
        ledger.charge(0, mech.clone(), 1.0).unwrap();
        ledger.charge(1, mech.clone(), 1.0).unwrap();
        assert!(matches!(
            ledger.charge(2, mech.clone(), 1.0),
            Err(Error::BudgetExceeded { .. })
        ));
        // The ledger stays usable: a cheaper release that fits is accepted.
        let cheap = local(100.0);
        ledger.charge(2, cheap, 1.0).unwrap();
        assert_eq!(ledger.records().len(), 3);
    }

    #[test]
    fn restore_from_records_gives_the_same_state() {
        let mut ledger = Ledger::new(Budget::default()).unwrap();
        for round in 0..10 {
            let mech = if round % 2 == 0 {
                local(7.0)
            } else {
                distributed(7.0)
            };
            ledger.charge(round, mech, 0.1).unwrap();
        }
        let json = serde_json::to_string(&ledger).unwrap();
        assert!(
            !json.contains("spent"),
            "derived state is not stored: {json}"
        );
        let back: Ledger = serde_json::from_str(&json).unwrap();
        assert_eq!(back, ledger);
        let again = Ledger::restore(ledger.budget(), ledger.records().to_vec()).unwrap();
        assert_eq!(again, ledger);
        assert_eq!(again.epsilon().unwrap(), ledger.epsilon().unwrap());

        // A record claiming less than OpenDP computes is charged OpenDP's value.
        let mut records = ledger.records().to_vec();
        records[3].rho = 0.0;
        assert_eq!(Ledger::restore(ledger.budget(), records).unwrap(), ledger);
        // Corrupt records are errors naming the record.
        let mut records = ledger.records().to_vec();
        records[4].rho = f64::NAN;
        let e = Ledger::restore(ledger.budget(), records).unwrap_err();
        assert!(
            matches!(
                e,
                Error::Record {
                    index: 4,
                    round: 4,
                    ..
                }
            ),
            "{e}"
        );
        let mut records = ledger.records().to_vec();
        if let Mechanism::Gaussian {
            noise_multiplier, ..
        } = &mut records[2].mechanism
        {
            *noise_multiplier = -1.0;
        }
        let e = Ledger::restore(ledger.budget(), records).unwrap_err();
        assert!(e.to_string().contains("noise multiplier"), "{e}");
        let mut records = ledger.records().to_vec();
        records[0].sampling_rate = 0.0;
        assert!(matches!(
            Ledger::restore(ledger.budget(), records),
            Err(Error::Record { index: 0, .. })
        ));
        // Records beyond a smaller budget are refused.
        let e = Ledger::restore(
            Budget {
                rho: 0.05,
                delta: 1e-6,
            },
            ledger.records().to_vec(),
        )
        .unwrap_err();
        assert!(matches!(e, Error::BudgetExceeded { .. }), "{e}");
        // A tampered file fails to deserialize.
        let bad = json.replace("\"sampling_rate\":0.1", "\"sampling_rate\":7.0");
        assert!(serde_json::from_str::<Ledger>(&bad).is_err());
    }

    #[test]
    fn bad_budgets_and_rates_are_errors() {
        for (rho, delta) in [
            (0.0, 1e-6),
            (-1.0, 1e-6),
            (f64::NAN, 1e-6),
            (f64::INFINITY, 1e-6),
            (1.0, 0.0),
            (1.0, 1.0),
            (1.0, f64::NAN),
        ] {
            assert!(Ledger::new(Budget { rho, delta }).is_err(), "{rho} {delta}");
        }
        let mut ledger = Ledger::new(Budget::default()).unwrap();
        for q in [0.0, -0.1, 1.5, f64::NAN] {
            assert!(matches!(
                ledger.charge(0, local(7.0), q),
                Err(Error::InvalidParameter { .. })
            ));
        }
        assert!(ledger.check(f64::NAN).is_err());
        assert!(ledger.check(-1.0).is_err());
        assert!(ledger.records().is_empty());
    }

    #[test]
    fn replaying_a_long_ledger_is_fast_enough() {
        // 300 releases is three times what the default budget allows at σ ≈ 7; each charge
        // replays every earlier record through a fresh filter (quadratic in the record count).
        let mech = local(50.0);
        let mut ledger = Ledger::new(Budget::default()).unwrap();
        for round in 0..299 {
            ledger.charge(round, mech.clone(), 1.0).unwrap();
        }
        let start = std::time::Instant::now();
        ledger.charge(299, mech.clone(), 1.0).unwrap();
        let last = start.elapsed();
        let start = std::time::Instant::now();
        let restored = Ledger::restore(ledger.budget(), ledger.records().to_vec()).unwrap();
        let restore = start.elapsed();
        assert_eq!(restored, ledger);
        eprintln!("charge with 299 records: {last:?}; restore of 300: {restore:?}");
        assert!(last < std::time::Duration::from_secs(1), "{last:?}");
        assert!(restore < std::time::Duration::from_secs(5), "{restore:?}");
    }
}
