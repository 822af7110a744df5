//! Graph degree and Shamir threshold for a cohort: the SecAgg+ parameter search.
//!
//! Each member masks with `k` neighbours on a Harary graph (fixed by the round seed) and gives
//! each neighbour a share of its secrets, any `t` of which rebuild them. For a cohort of `n`
//! members with at most `⌊δ·n⌋` dropouts and `⌈γ·n⌉` colluding members (the [`Config`]), the
//! search takes the smallest even `k < n − 1` such that, over the random graph,
//!
//! 1. the graph stays connected once the dropped and colluding members are removed, except with
//!    probability below `2^-(security_bits+1)` (a disconnected graph would reveal the partial sums
//!    of its pieces);
//! 2. no member has `t` or more colluding neighbours, except with probability below
//!    `2^-(security_bits+1)` (union bound over members), so colluders never hold `t` shares of
//!    an honest member's secrets;
//! 3. every member keeps at least `t` surviving neighbours, except with probability below
//!    `2^-correctness_bits` (union bound), so the sum can be unmasked.
//!
//! `t` is the largest threshold meeting (3) (the most shares an attacker must collect), and must
//! be above the bound of (2). The neighbour counts are hypergeometric; the disconnection bound
//! follows Bell et al. (CCS 2020) as implemented in Google's `graph_parameter_finder`: removing
//! nodes disconnects a Harary graph only if two disjoint runs of `k/2` consecutive ring positions
//! are all removed.
//!
//! When no sparse degree qualifies (small cohorts: with δ = 1/3 and γ = 1/20 that is every cohort
//! below about 40) the graph is complete and `t = n − ⌊δ·n⌋`: then *any* `⌊δ·n⌋` dropouts leave
//! enough shares, not just random ones.
//!
//! Every member must find the same parameters, so the computation only uses `+ − × ÷` on `f64`
//! (correctly rounded by IEEE 754 on every platform) and integer arithmetic; no `ln`/`exp`.

use crate::secagg::error::Error;

/// Smallest cohort that can aggregate securely (with two members the sum reveals the other's
/// input to each).
pub const MIN_COHORT: usize = 3;

/// Largest cohort the parameter search accepts.
pub const MAX_COHORT: usize = 4096;

/// A fraction `num / den`, exact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fraction {
    /// Numerator.
    pub num: u32,
    /// Denominator (nonzero).
    pub den: u32,
}

impl Fraction {
    /// `⌊self · n⌋`.
    pub fn floor_of(self, n: usize) -> usize {
        (n as u64 * u64::from(self.num) / u64::from(self.den.max(1))) as usize
    }

    /// `⌈self · n⌉`.
    pub fn ceil_of(self, n: usize) -> usize {
        (n as u64 * u64::from(self.num)).div_ceil(u64::from(self.den.max(1))) as usize
    }
}

/// The threat model the parameters are chosen for. Every member of a cohort must use the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Largest fraction of the cohort that may drop out (at any phase) with the sum still
    /// recovered. Default 1/3. Also sets the survivor quorum, `n − ⌊δ·n⌋`.
    pub max_dropout: Fraction,
    /// Largest fraction of the cohort assumed to collude to learn one member's input.
    /// Default 1/20.
    pub colluding: Fraction,
    /// Statistical security: the graph leaks partial sums, or colluders reach a threshold, with
    /// probability below `2^-security_bits`. Default 40.
    pub security_bits: u32,
    /// Statistical correctness: random dropouts within `max_dropout` make unmasking fail with
    /// probability below `2^-correctness_bits`. Default 20.
    pub correctness_bits: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_dropout: Fraction { num: 1, den: 3 },
            colluding: Fraction { num: 1, den: 20 },
            security_bits: 40,
            correctness_bits: 20,
        }
    }
}

impl Config {
    /// Checks the fractions (each below 1, together below 9/10 as in Bell et al.) and the bit
    /// counts (at most 128).
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |reason: &str| Err(Error::InvalidConfig(reason.to_string()));
        if self.max_dropout.den == 0 || self.colluding.den == 0 {
            return bad("a fraction has a zero denominator");
        }
        let d = f64::from(self.max_dropout.num) / f64::from(self.max_dropout.den);
        let g = f64::from(self.colluding.num) / f64::from(self.colluding.den);
        if d + g > 0.9 {
            return bad("max_dropout + colluding must be at most 0.9");
        }
        if self.security_bits > 128 || self.correctness_bits > 128 {
            return bad("security_bits and correctness_bits must be at most 128");
        }
        Ok(())
    }
}

/// Degree and threshold for one cohort.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    /// Cohort size `n`.
    pub cohort: usize,
    /// Neighbours per member `k` (`n − 1`: complete graph).
    pub degree: usize,
    /// Shares needed to rebuild a secret `t`. Each secret is split into `k + 1` shares: one per
    /// neighbour and one kept by the owner.
    pub threshold: usize,
    /// Signed survivor-set announcements needed to agree on the survivors, `n − ⌊δ·n⌋`; also the
    /// fewest masked inputs a sum may have.
    pub quorum: usize,
}

impl Params {
    /// Searches the parameters for a cohort of `n` members.
    pub fn for_cohort(n: usize, config: &Config) -> Result<Params, Error> {
        config.validate()?;
        if !(MIN_COHORT..=MAX_COHORT).contains(&n) {
            return Err(Error::CohortSize {
                found: n,
                min: MIN_COHORT,
                max: MAX_COHORT,
            });
        }
        let dropouts = config.max_dropout.floor_of(n);
        let colluders = config.colluding.ceil_of(n);
        let quorum = n - dropouts;
        for k in (2..n.saturating_sub(1)).step_by(2) {
            if let Some(threshold) = check_degree(n, k, dropouts, colluders, config) {
                return Ok(Params {
                    cohort: n,
                    degree: k,
                    threshold,
                    quorum,
                });
            }
        }
        // Complete graph: any `dropouts` members may go, `quorum` shareholders remain.
        if quorum < 2 || quorum <= colluders {
            return Err(Error::InvalidConfig(format!(
                "no threshold fits a cohort of {n} with {dropouts} dropouts and {colluders} colluders"
            )));
        }
        Ok(Params {
            cohort: n,
            degree: n - 1,
            threshold: quorum,
            quorum,
        })
    }

    /// Whether every member is every other member's neighbour.
    pub fn is_complete(&self) -> bool {
        self.degree + 1 == self.cohort
    }
}

/// `2^-bits` without `powi`'s platform dependence.
fn two_pow_neg(bits: u32) -> f64 {
    let mut p = 1.0;
    for _ in 0..bits {
        p *= 0.5;
    }
    p
}

/// The threshold for degree `k`, if `k` is secure and correct (module docs).
fn check_degree(
    n: usize,
    k: usize,
    dropouts: usize,
    colluders: usize,
    config: &Config,
) -> Option<usize> {
    let security = two_pow_neg(config.security_bits + 1);
    // (1) Connectivity of the graph of honest survivors.
    let bad = dropouts + colluders;
    if k <= bad {
        let mut p = (n as f64) * ((n - k - 1) as f64) / 2.0;
        for i in 0..k {
            p = p * ((bad - i) as f64) / ((n - i) as f64);
        }
        if p >= security {
            return None;
        }
    }
    // (2) Colluding neighbours: t1 = smallest x with P(A > x) <= security / n.
    let colluding = hypergeometric(n, colluders, k);
    let limit = security / n as f64;
    let mut tail = 0.0;
    let mut t1 = 0;
    for x in (0..=k).rev() {
        if tail + colluding[x] > limit {
            t1 = x;
            break;
        }
        tail += colluding[x];
    }
    // (3) Surviving neighbours: t2 = largest t with P(V < t) <= 2^-correctness / n.
    let surviving = hypergeometric(n, n - dropouts, k);
    let limit = two_pow_neg(config.correctness_bits) / n as f64;
    let mut below = 0.0;
    let mut t2 = 0;
    for (x, p) in surviving.iter().enumerate() {
        if below + p > limit {
            t2 = x;
            break;
        }
        below += p;
    }
    (t2 > t1 && t2 >= 2).then_some(t2)
}

/// The probability mass function of the number of marked items among `draws` drawn without
/// replacement from `population` items of which `marked` are marked, indexed by count.
fn hypergeometric(population: usize, marked: usize, draws: usize) -> Vec<f64> {
    let (n, m, d) = (population, marked.min(population), draws.min(population));
    let mut pmf = vec![0.0; d + 1];
    let lo = d.saturating_sub(n - m);
    let hi = m.min(d);
    // P(lo): with lo = 0 it is C(n−m, d)/C(n, d); otherwise every unmarked item is drawn and it is
    // C(m, n−d)/C(n, n−d). Both are products of ratios.
    let mut p = 1.0;
    if lo == 0 {
        for i in 0..d {
            p = p * ((n - m - i) as f64) / ((n - i) as f64);
        }
    } else {
        for i in 0..(n - d) {
            p = p * ((m - i) as f64) / ((n - i) as f64);
        }
    }
    pmf[lo] = p;
    for x in lo..hi {
        // P(x+1)/P(x) = (m−x)(d−x) / ((x+1)(n−m−d+x+1))
        p = p * ((m - x) as f64) * ((d - x) as f64)
            / (((x + 1) as f64) * ((n - m + x + 1 - d) as f64));
        pmf[x + 1] = p;
    }
    pmf
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hypergeometric_sums_to_one_and_matches_a_small_case() {
        // 5 items, 2 marked, draw 3: P(0)=1/10, P(1)=6/10, P(2)=3/10.
        let p = hypergeometric(5, 2, 3);
        assert!((p[0] - 0.1).abs() < 1e-12 && (p[1] - 0.6).abs() < 1e-12);
        assert!((p[2] - 0.3).abs() < 1e-12 && p[3] == 0.0);
        for (n, m, d) in [(128, 86, 30), (40, 2, 12), (4096, 2731, 84), (9, 9, 4)] {
            let total: f64 = hypergeometric(n, m, d).iter().sum();
            assert!((total - 1.0).abs() < 1e-9, "{n} {m} {d}: {total}");
        }
    }

    #[test]
    fn small_cohorts_use_the_complete_graph() {
        let config = Config::default();
        for n in MIN_COHORT..6 {
            let p = Params::for_cohort(n, &config).unwrap();
            assert!(p.is_complete(), "n = {n}: {p:?}");
            assert_eq!(p.threshold, n - n / 3);
        }
        for n in MIN_COHORT..=200 {
            let p = Params::for_cohort(n, &config).unwrap();
            assert_eq!(p.quorum, n - n / 3);
            assert!(p.threshold >= 2 && p.threshold <= p.degree + 1, "{p:?}");
        }
        // The figures documented in docs/PROTOCOL.md.
        let table: Vec<_> = [8, 16, 32, 64, 128]
            .iter()
            .map(|&n| {
                let p = Params::for_cohort(n, &config).unwrap();
                (p.degree, p.threshold)
            })
            .collect();
        assert_eq!(table, [(4, 2), (8, 3), (14, 4), (24, 6), (32, 8)]);
    }

    #[test]
    fn degree_grows_logarithmically() {
        let config = Config::default();
        let mut last = 0;
        for n in [64, 128, 256, 512, 1024, 2048, 4096] {
            let p = Params::for_cohort(n, &config).unwrap();
            assert!(!p.is_complete(), "{p:?}");
            assert!(p.degree >= last && p.degree.is_multiple_of(2));
            assert!(p.threshold >= 2 && p.threshold <= p.degree);
            // Far below n; about 8·log2(n) for δ = 1/3, γ = 1/20.
            assert!(p.degree <= 10 * n.ilog2() as usize, "{p:?}");
            last = p.degree;
        }
    }

    #[test]
    fn cohort_size_limits() {
        let config = Config::default();
        assert!(Params::for_cohort(MIN_COHORT, &config).is_ok());
        assert!(Params::for_cohort(MAX_COHORT, &config).is_ok());
        for n in [0, 1, MIN_COHORT - 1, MAX_COHORT + 1] {
            assert!(matches!(
                Params::for_cohort(n, &config),
                Err(Error::CohortSize { found, .. }) if found == n
            ));
        }
    }

    #[test]
    fn config_is_validated() {
        let mut config = Config {
            max_dropout: Fraction { num: 1, den: 2 },
            colluding: Fraction { num: 2, den: 5 },
            ..Config::default()
        };
        assert!(config.validate().is_ok()); // exactly 0.9
        config.colluding.num = 3;
        assert!(matches!(config.validate(), Err(Error::InvalidConfig(_))));
        config.colluding.den = 0;
        assert!(matches!(config.validate(), Err(Error::InvalidConfig(_))));
        let config = Config {
            security_bits: 129,
            ..Config::default()
        };
        assert!(matches!(config.validate(), Err(Error::InvalidConfig(_))));
    }
}
