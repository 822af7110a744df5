//! Scoring candidates by log-perplexity and turning the secret's rank into exposure.

use burn::module::Module;
use burn::tensor::{Int, Tensor, TensorData};
use hearth_models::{Llama, Prng};

use super::{Canary, uniform_below};
use crate::data::Encode;
use crate::error::{Error, Result};

/// Largest candidate sample [`exposure`] accepts.
pub const MAX_CANDIDATES: usize = 10_000_000;

/// How [`exposure`] picks and scores candidates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExposureConfig {
    /// Other secrets scored: all of them when the space holds at most this many besides the true
    /// one, otherwise a uniform sample (with replacement) of this size. Default 10,000.
    pub candidates: usize,
    /// Sentences per forward pass. Default 256.
    pub batch: usize,
    /// Seed of the sample.
    pub seed: u64,
}

impl Default for ExposureConfig {
    fn default() -> Self {
        Self {
            candidates: 10_000,
            batch: 256,
            seed: 0,
        }
    }
}

/// The secret's rank among the candidates and the exposure it implies.
///
/// With all of `R` scored (`exact`), `rank = 1 + below + ties/2` over the `|R| − 1` other secrets.
/// With a sample of `m`, the fraction `f = (below + ties/2)/m` of sampled secrets that beat the
/// true one estimates its rank as `1 + (|R| − 1)·f`; when no sampled secret beats it (`f = 0`) that
/// reads as rank 1, maximal exposure, although the sample only shows that the rank is below
/// about `|R|/m`: `resolution` is the exposure at that rank, and [`Exposure::fitted`]
/// extrapolates beyond it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Exposure {
    /// `|R|`.
    pub space: u64,
    /// Candidates scored (other than the true secret).
    pub candidates: usize,
    /// Whether every other secret was scored.
    pub exact: bool,
    /// Candidates strictly more likely than the secret (lower log-perplexity).
    pub below: usize,
    /// Candidates exactly as likely.
    pub ties: usize,
    /// The secret's (estimated) rank, from 1.
    pub rank: f64,
    /// `log2 |R| − log2 rank`, in bits.
    pub exposure: f64,
    /// The largest exposure the sample resolves: `log2 |R| − log2(1 + (|R| − 1)/m)`
    /// (`log2 |R|` when exact).
    pub resolution: f64,
    /// Exposure from a normal fit to the candidates' log-perplexities: the rank is estimated as
    /// `1 + (|R| − 1)·Φ((x − μ)/s)` for the secret's log-perplexity `x`.
    pub fitted: f64,
    /// The secret's log-perplexity (nats).
    pub secret_nll: f64,
    /// Mean log-perplexity of the candidates (nats).
    pub mean_nll: f64,
    /// Standard deviation of the candidates' log-perplexities (nats).
    pub std_nll: f64,
}

impl Exposure {
    /// Exposure from the secret's log-perplexity and the candidates' (`exact`: they are all of
    /// the other `space − 1` secrets).
    pub fn from_scores(
        space: u64,
        secret_nll: f64,
        candidates: &[f64],
        exact: bool,
    ) -> Result<Self> {
        let m = candidates.len();
        if m == 0 || space < 2 {
            return Err(Error::Config {
                reason: format!(
                    "exposure needs candidates ({m}) in a space of at least 2 secrets ({space})"
                ),
            });
        }
        if exact && m as u64 != space - 1 {
            return Err(Error::Config {
                reason: format!(
                    "an exact rank needs all {} other secrets, got {m}",
                    space - 1
                ),
            });
        }
        if let Some(bad) = std::iter::once(&secret_nll)
            .chain(candidates)
            .find(|x| !x.is_finite())
        {
            return Err(Error::Data {
                reason: format!("log-perplexity {bad} is not finite"),
            });
        }
        let below = candidates.iter().filter(|&&c| c < secret_nll).count();
        let ties = candidates.iter().filter(|&&c| c == secret_nll).count();
        let beaten = below as f64 + ties as f64 / 2.0;
        let others = (space - 1) as f64;
        let bits = (space as f64).log2();
        let rank = if exact {
            1.0 + beaten
        } else {
            1.0 + others * beaten / m as f64
        };
        let resolution = if exact {
            bits
        } else {
            bits - (1.0 + others / m as f64).log2()
        };
        let mean = candidates.iter().sum::<f64>() / m as f64;
        let var = candidates.iter().map(|c| (c - mean).powi(2)).sum::<f64>() / m as f64;
        let std = var.sqrt();
        // ln(1 + others·Φ(z)) without underflow: softplus(ln others + ln Φ(z)).
        let fitted_ln_rank = if std > 0.0 {
            softplus(others.ln() + ln_normal_cdf((secret_nll - mean) / std))
        } else if secret_nll < mean {
            0.0
        } else {
            (1.0 + others).ln()
        };
        Ok(Self {
            space,
            candidates: m,
            exact,
            below,
            ties,
            rank,
            exposure: bits - rank.log2(),
            resolution,
            fitted: bits - fitted_ln_rank / std::f64::consts::LN_2,
            secret_nll,
            mean_nll: mean,
            std_nll: std,
        })
    }

    /// How surprising the secret's rank is if the model knew nothing about it: the probability
    /// that a random candidate ranks at least as well, `(1 + below + ties/2)/(m + 1)` for `m`
    /// scored candidates (`rank/|R|` when exact).
    ///
    /// If the model does not depend on the secret, the secret is one more uniform draw from `R`,
    /// exchangeable with the candidates, so its position among the `m + 1` scores is uniform and
    /// this is a one-sided p-value for "the model prefers the secret" (P(p ≤ a) ≤ a). A small
    /// value means the secret is distinguishable from a random candidate; at a DP guarantee
    /// (ε, δ) P(p ≤ a) ≤ e^ε·a + δ instead.
    pub fn p_value(&self) -> f64 {
        let beaten = self.below as f64 + self.ties as f64 / 2.0;
        (1.0 + beaten) / (self.candidates as f64 + 1.0)
    }
}

/// `ln(1 + e^x)`.
fn softplus(x: f64) -> f64 {
    if x > 30.0 { x } else { x.exp().ln_1p() }
}

/// `ln Φ(z)` for the standard normal CDF, accurate to a relative `1.2·10⁻⁷` of `Φ` for every `z`
/// (also deep in the lower tail): `Φ(z) = erfc(−z/√2)/2` with the Chebyshev fit of `erfc` from
/// Numerical Recipes (`erfcc`), which is a fit of `ln erfc` and so never underflows.
pub(crate) fn ln_normal_cdf(z: f64) -> f64 {
    let x = -z / std::f64::consts::SQRT_2;
    if x >= 0.0 {
        ln_erfc_nonneg(x) - std::f64::consts::LN_2
    } else {
        // erfc(x) = 2 − erfc(−x) for x < 0, with erfc(−x) ≤ 1.
        (1.0 - ln_erfc_nonneg(-x).exp() / 2.0).ln()
    }
}

/// `ln erfc(x)` for `x ≥ 0` (Numerical Recipes, `erfcc`).
fn ln_erfc_nonneg(x: f64) -> f64 {
    let t = 1.0 / (1.0 + 0.5 * x);
    let poly = -1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    t.ln() - x * x + poly
}

/// The log-perplexity (nats) of each candidate's sentence after the prefix, given the prefix:
/// `−Σ ln p(token | earlier tokens)` over the tokens that follow the prefix's tokens.
///
/// Each candidate's sentence must tokenize to the prefix's tokens followed by at least one more
/// token (true for byte-level encoders, and for digit-splitting BPE tokenizers such as SmolLM2's).
pub fn log_perplexities(
    model: &Llama,
    encoder: &impl Encode,
    canary: &Canary,
    candidates: &[u64],
    batch: usize,
) -> Result<Vec<f64>> {
    if batch == 0 {
        return Err(Error::Config {
            reason: "exposure batch is zero".into(),
        });
    }
    let prefix = encoder.encode_text(canary.prefix())?;
    let mut sequences = Vec::with_capacity(candidates.len());
    for &c in candidates {
        if c >= canary.space() {
            return Err(Error::Config {
                reason: format!("candidate {c} is outside the {} secrets", canary.space()),
            });
        }
        let ids = encoder.encode_text(&canary.sentence_for(c))?;
        if !ids.starts_with(&prefix) || ids.len() <= prefix.len() {
            return Err(Error::Data {
                reason: format!(
                    "{:?} does not tokenize as the prefix's tokens followed by more",
                    canary.sentence_for(c)
                ),
            });
        }
        if ids.len() > model.config().max_seq_len {
            return Err(Error::Config {
                reason: format!(
                    "the canary is {} tokens, more than the model's context {}",
                    ids.len(),
                    model.config().max_seq_len
                ),
            });
        }
        model.check_tokens(&ids)?;
        sequences.push(ids);
    }
    let model = model.valid();
    let device = model.device();
    let mut out = vec![0.0; sequences.len()];
    // Batches of equal length, in candidate order within each length.
    let mut by_len: Vec<usize> = (0..sequences.len()).collect();
    by_len.sort_by_key(|&i| sequences[i].len());
    for group in by_len.chunk_by(|&a, &b| sequences[a].len() == sequences[b].len()) {
        let len = sequences[group[0]].len();
        for chunk in group.chunks(batch) {
            let rows = chunk.len();
            let mut input = Vec::with_capacity(rows * (len - 1));
            let mut target = Vec::with_capacity(rows * (len - 1));
            for &i in chunk {
                let ids = &sequences[i];
                input.extend(ids[..len - 1].iter().map(|&t| i64::from(t)));
                target.extend(ids[1..].iter().map(|&t| i64::from(t)));
            }
            let input =
                Tensor::<2, Int>::from_data(TensorData::new(input, [rows, len - 1]), &device);
            let target =
                Tensor::<3, Int>::from_data(TensorData::new(target, [rows, len - 1, 1]), &device);
            let log_probs = burn::tensor::activation::log_softmax(model.forward(input), 2);
            // Predictions of the tokens after the prefix: positions prefix−1 .. len−2.
            let picked = log_probs
                .gather(2, target)
                .slice([0..rows, prefix.len() - 1..len - 1, 0..1])
                .sum_dim(1);
            let values = picked
                .into_data()
                .try_to_vec::<f32>()
                .map_err(|e| Error::Data {
                    reason: format!("reading log-probabilities: {e:?}"),
                })?;
            for (&i, v) in chunk.iter().zip(values) {
                out[i] = -f64::from(v);
            }
        }
    }
    Ok(out)
}

/// The canary's exposure under `model` (see the module docs and [`Exposure`]).
pub fn exposure(
    model: &Llama,
    encoder: &impl Encode,
    canary: &Canary,
    config: &ExposureConfig,
) -> Result<Exposure> {
    if config.candidates == 0 || config.candidates > MAX_CANDIDATES {
        return Err(Error::Config {
            reason: format!(
                "exposure candidates {} not between 1 and {MAX_CANDIDATES}",
                config.candidates
            ),
        });
    }
    let (space, secret) = (canary.space(), canary.secret());
    let exact = space - 1 <= config.candidates as u64;
    let candidates: Vec<u64> = if exact {
        (0..space).filter(|&c| c != secret).collect()
    } else {
        let mut rng = Prng::new(config.seed);
        (0..config.candidates)
            .map(|_| {
                // Uniform over the other space − 1 secrets.
                let c = uniform_below(&mut rng, space - 1);
                if c >= secret { c + 1 } else { c }
            })
            .collect()
    };
    let mut all = Vec::with_capacity(candidates.len() + 1);
    all.push(secret);
    all.extend(&candidates);
    let scores = log_perplexities(model, encoder, canary, &all, config.batch)?;
    Exposure::from_scores(space, scores[0], &scores[1..], exact)
}
