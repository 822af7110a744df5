//! Seeded randomness for the harness: every draw of a run comes from [`hearth_models::Prng`]
//! streams named by the scenario seed and a path of integers (purpose, round, member, ...), so a
//! draw never depends on how many other draws happened before it. That is what makes a run
//! reproducible bit for bit and lets two arms share their draws (same data split, same dropouts).

use hearth_models::Prng;

pub mod purpose {
    //! Purposes of the streams, so that no two uses of the seed collide.
    #![allow(missing_docs)]
    pub const KEYS: u64 = 1;
    pub const DATA: u64 = 2;
    pub const ATTACKERS: u64 = 3;
    pub const CHURN: u64 = 4;
    pub const NETWORK: u64 = 5;
    pub const TRAIN: u64 = 6;
    pub const NOISE: u64 = 7;
    pub const ATTACK: u64 = 8;
    pub const PARTICIPATION: u64 = 9;
    pub const EVAL: u64 = 10;
    pub const PRETRAIN: u64 = 11;
    pub const COMPUTE: u64 = 12;
}

/// A generator for `seed` and a path of integers.
pub fn stream(seed: u64, path: &[u64]) -> Rng {
    let mut s = seed;
    for (i, &p) in path.iter().enumerate() {
        s = Prng::stream(s, p ^ ((i as u64) << 56)).next_u64();
    }
    Rng(Prng::new(s))
}

/// A 64-bit value derived from `seed` and a path (for seeding other generators).
pub fn derive(seed: u64, path: &[u64]) -> u64 {
    stream(seed, path).0.next_u64()
}

/// A seeded generator with the distributions the harness needs.
#[derive(Debug, Clone)]
pub struct Rng(Prng);

impl Rng {
    /// 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// Uniform in `[0, 1)`.
    pub fn uniform(&mut self) -> f64 {
        self.0.next_f64()
    }

    /// Uniform in `[lo, hi]` (integers).
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            return lo;
        }
        lo + self.next_u64() % (hi - lo + 1)
    }

    /// `true` with probability `p`.
    pub fn bernoulli(&mut self, p: f64) -> bool {
        p > 0.0 && self.uniform() < p
    }

    /// Standard normal (Box–Muller). `ln` and `cos` come from the platform's math library, so
    /// the last bits may differ between platforms, never between runs on one machine.
    pub fn normal(&mut self) -> f64 {
        let u = 1.0 - self.uniform(); // (0, 1]
        let v = self.uniform();
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }

    /// Gamma(`shape`, 1) by Marsaglia and Tsang (2000), boosted for `shape < 1`.
    pub fn gamma(&mut self, shape: f64) -> f64 {
        if shape < 1.0 {
            let u = 1.0 - self.uniform();
            return self.gamma(shape + 1.0) * u.powf(1.0 / shape);
        }
        let d = shape - 1.0 / 3.0;
        let c = 1.0 / (9.0 * d).sqrt();
        loop {
            let x = self.normal();
            let v = (1.0 + c * x).powi(3);
            if v <= 0.0 {
                continue;
            }
            let u = 1.0 - self.uniform();
            if u.ln() < 0.5 * x * x + d - d * v + d * v.ln() {
                return d * v;
            }
        }
    }

    /// A draw from the symmetric Dirichlet distribution `Dir(alpha, ..., alpha)` over `k` parts.
    pub fn dirichlet(&mut self, alpha: f64, k: usize) -> Vec<f64> {
        let mut g: Vec<f64> = (0..k).map(|_| self.gamma(alpha).max(1e-300)).collect();
        let sum: f64 = g.iter().sum();
        for x in &mut g {
            *x /= sum;
        }
        g
    }

    /// A Fisher–Yates shuffle.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = (self.next_u64() % (i as u64 + 1)) as usize;
            items.swap(i, j);
        }
    }

    /// An index drawn with probabilities proportional to `weights` (all ≥ 0, some > 0).
    pub fn weighted(&mut self, weights: &[f64]) -> usize {
        let total: f64 = weights.iter().sum();
        let mut x = self.uniform() * total;
        for (i, w) in weights.iter().enumerate() {
            if x < *w {
                return i;
            }
            x -= w;
        }
        weights.iter().rposition(|w| *w > 0.0).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_reproducible_and_independent() {
        let a: Vec<u64> = (0..4).map(|_| stream(7, &[1, 2]).next_u64()).collect();
        assert!(a.windows(2).all(|w| w[0] == w[1]));
        assert_ne!(stream(7, &[1, 2]).next_u64(), stream(7, &[2, 1]).next_u64());
        assert_ne!(stream(7, &[1, 2]).next_u64(), stream(8, &[1, 2]).next_u64());
        assert_ne!(stream(7, &[1]).next_u64(), stream(7, &[1, 0]).next_u64());
    }

    #[test]
    fn distributions_have_the_right_moments() {
        let mut r = stream(1, &[]);
        let n = 20_000;
        let xs: Vec<f64> = (0..n).map(|_| r.normal()).collect();
        let mean = xs.iter().sum::<f64>() / n as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
        assert!(
            mean.abs() < 0.03 && (var - 1.0).abs() < 0.05,
            "{mean} {var}"
        );
        for shape in [0.3, 1.0, 4.0] {
            let g: Vec<f64> = (0..n).map(|_| r.gamma(shape)).collect();
            let m = g.iter().sum::<f64>() / n as f64;
            assert!((m / shape - 1.0).abs() < 0.06, "gamma({shape}) mean {m}");
        }
        let p = r.dirichlet(0.5, 5);
        assert_eq!(p.len(), 5);
        assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert!(p.iter().all(|x| *x >= 0.0));
        let hits = (0..n).filter(|_| r.bernoulli(0.25)).count() as f64 / n as f64;
        assert!((hits - 0.25).abs() < 0.02);
        assert!(!r.bernoulli(0.0));
        assert_eq!(r.weighted(&[0.0, 0.0, 1.0]), 2);
        let mut v: Vec<u32> = (0..50).collect();
        r.shuffle(&mut v);
        let mut sorted = v.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..50).collect::<Vec<_>>());
        assert_ne!(v, sorted);
        assert_eq!(r.range(3, 3), 3);
        assert!(
            (0..100)
                .map(|_| r.range(2, 5))
                .all(|x| (2..=5).contains(&x))
        );
    }
}
