//! Text generation over token ids: greedy or sampled (temperature, top-k, top-p) decoding with the
//! KV cache, streaming each token as it is produced.
//!
//! [`Generator`] is the step-by-step form (also an [`Iterator`]); [`generate`] drives it and hands
//! every token to a callback that can stop early (that is how callers implement stop *strings*:
//! detokenise as tokens arrive and break on a match). Sampling draws from the portable [`Prng`], so a
//! seed reproduces a run on the same model.
//!
//! ```
//! # use burn::tensor::Device;
//! # use hearth_models::{GenerateConfig, Llama, LlamaConfig, generate};
//! let model = Llama::init_random(&LlamaConfig::tiny(32), 7, &Device::flex())?;
//! let config = GenerateConfig::greedy(5);
//! let out = generate(&model, &[1, 2, 3], &config, |_token| std::ops::ControlFlow::Continue(()))?;
//! assert_eq!(out.tokens.len(), 5);
//! # Ok::<(), hearth_models::Error>(())
//! ```

use std::ops::ControlFlow;

use burn::tensor::{Int, Tensor, TensorData};

use crate::llama::{KvCache, Llama};
use crate::prng::Prng;
use crate::{Error, Result};

/// Prompt tokens processed per forward pass while filling the cache (bounds the attention
/// score memory for long prompts).
pub const PREFILL_CHUNK: usize = 256;

/// How the next token is chosen from the logits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sampling {
    /// Always the most likely token (the lowest id among ties).
    Greedy,
    /// Draw from the softmax of `logits / temperature`, restricted to the `top_k` most likely
    /// tokens (`0`: no limit) and then to the smallest set whose probability reaches `top_p`
    /// (`1.0`: no limit).
    Sample {
        /// Softmax temperature, `> 0`.
        temperature: f32,
        /// Keep only the `top_k` most likely tokens; `0` keeps all.
        top_k: usize,
        /// Nucleus mass in `(0, 1]`.
        top_p: f32,
    },
}

/// Settings of one generation.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateConfig {
    /// Most tokens to generate (stop tokens excluded).
    pub max_tokens: usize,
    /// Greedy or sampled decoding.
    pub sampling: Sampling,
    /// Seed of the sampling PRNG.
    pub seed: u64,
    /// Token ids that end generation (not emitted), e.g. EOS and `<|im_end|>`.
    pub stop_tokens: Vec<u32>,
}

impl GenerateConfig {
    /// Greedy decoding of up to `max_tokens` tokens, no stop tokens.
    pub fn greedy(max_tokens: usize) -> Self {
        Self {
            max_tokens,
            sampling: Sampling::Greedy,
            seed: 0,
            stop_tokens: Vec::new(),
        }
    }

    /// Sampled decoding with `temperature`, `top_k`, `top_p` and `seed`.
    pub fn sampled(
        max_tokens: usize,
        temperature: f32,
        top_k: usize,
        top_p: f32,
        seed: u64,
    ) -> Self {
        Self {
            max_tokens,
            sampling: Sampling::Sample {
                temperature,
                top_k,
                top_p,
            },
            seed,
            stop_tokens: Vec::new(),
        }
    }

    /// Adds stop tokens.
    pub fn with_stop_tokens(mut self, stop: impl IntoIterator<Item = u32>) -> Self {
        self.stop_tokens.extend(stop);
        self
    }

    /// Checks the sampling parameters: temperature positive and finite, `top_p` in `(0, 1]`.
    pub fn validate(&self) -> Result<()> {
        if let Sampling::Sample {
            temperature, top_p, ..
        } = self.sampling
        {
            if !(temperature.is_finite() && temperature > 0.0) {
                return Err(Error::Config {
                    reason: format!("temperature {temperature} is not positive"),
                });
            }
            if !(top_p > 0.0 && top_p <= 1.0) {
                return Err(Error::Config {
                    reason: format!("top_p {top_p} is not in (0, 1]"),
                });
            }
        }
        Ok(())
    }
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// A stop token was produced (it is not part of the output).
    Stop(u32),
    /// `max_tokens` tokens were produced.
    Length,
    /// The model's context is full.
    ContextFull,
    /// The callback asked to stop.
    Cancelled,
}

/// The result of [`generate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generation {
    /// The generated tokens, in order (stop token excluded).
    pub tokens: Vec<u32>,
    /// Why generation ended.
    pub finish: FinishReason,
    /// Number of prompt tokens.
    pub prompt_tokens: usize,
}

/// Step-by-step generation over a model and its KV cache.
#[derive(Debug)]
pub struct Generator<'a> {
    model: &'a Llama,
    cache: KvCache,
    config: GenerateConfig,
    rng: Prng,
    /// Tokens not yet fed to the model (the prompt, then each emitted token).
    pending: Vec<u32>,
    produced: usize,
    finish: Option<FinishReason>,
}

impl<'a> Generator<'a> {
    /// Starts generating after `prompt` (at least one token, all inside the vocabulary).
    pub fn new(model: &'a Llama, prompt: &[u32], config: GenerateConfig) -> Result<Self> {
        config.validate()?;
        if prompt.is_empty() {
            return Err(Error::Config {
                reason: "the prompt is empty".into(),
            });
        }
        model.check_tokens(prompt)?;
        Ok(Self {
            model,
            cache: model.new_cache(),
            rng: Prng::new(config.seed),
            config,
            pending: prompt.to_vec(),
            produced: 0,
            finish: None,
        })
    }

    /// Why generation ended, once it has.
    pub fn finish_reason(&self) -> Option<FinishReason> {
        self.finish
    }

    /// The next token, or `None` when generation has ended ([`Generator::finish_reason`] says why).
    pub fn next_token(&mut self) -> Result<Option<u32>> {
        Ok(self.next_with_logits()?.map(|(token, _)| token))
    }

    /// The next token and the logits it was chosen from.
    pub fn next_with_logits(&mut self) -> Result<Option<(u32, Vec<f32>)>> {
        if self.finish.is_some() {
            return Ok(None);
        }
        if self.produced >= self.config.max_tokens {
            self.finish = Some(FinishReason::Length);
            return Ok(None);
        }
        if self.cache.len() + self.pending.len() > self.cache.max_len() {
            self.finish = Some(FinishReason::ContextFull);
            return Ok(None);
        }
        let logits = self.feed_pending()?;
        let token = match self.config.sampling {
            Sampling::Greedy => argmax(&logits),
            Sampling::Sample {
                temperature,
                top_k,
                top_p,
            } => sample(&logits, temperature, top_k, top_p, &mut self.rng),
        };
        if self.config.stop_tokens.contains(&token) {
            self.finish = Some(FinishReason::Stop(token));
            return Ok(None);
        }
        self.produced += 1;
        self.pending.push(token);
        Ok(Some((token, logits)))
    }

    /// Runs the pending tokens through the model (in chunks) and returns the last logits.
    fn feed_pending(&mut self) -> Result<Vec<f32>> {
        let device = self.model.device();
        let pending = std::mem::take(&mut self.pending);
        let mut last = None;
        for chunk in pending.chunks(PREFILL_CHUNK) {
            let ids: Vec<i64> = chunk.iter().map(|&t| i64::from(t)).collect();
            let tokens =
                Tensor::<2, Int>::from_data(TensorData::new(ids, [1, chunk.len()]), &device);
            last = Some(self.model.forward_next(tokens, &mut self.cache)?);
        }
        let logits = last.ok_or(Error::Config {
            reason: "no tokens to process".into(),
        })?;
        crate::llama::to_host(logits)
    }
}

impl Iterator for Generator<'_> {
    type Item = Result<u32>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_token().transpose()
    }
}

/// Generates after `prompt`, passing each token to `on_token` as soon as it is chosen; the
/// callback returns [`ControlFlow::Break`] to stop (e.g. on a stop string).
pub fn generate(
    model: &Llama,
    prompt: &[u32],
    config: &GenerateConfig,
    mut on_token: impl FnMut(u32) -> ControlFlow<()>,
) -> Result<Generation> {
    let mut generator = Generator::new(model, prompt, config.clone())?;
    let mut tokens = Vec::new();
    while let Some(token) = generator.next_token()? {
        tokens.push(token);
        if on_token(token).is_break() {
            return Ok(Generation {
                tokens,
                finish: FinishReason::Cancelled,
                prompt_tokens: prompt.len(),
            });
        }
    }
    Ok(Generation {
        tokens,
        finish: generator.finish_reason().unwrap_or(FinishReason::Length),
        prompt_tokens: prompt.len(),
    })
}

/// Index of the largest logit, the lowest index among ties (NaN never wins).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0usize;
    let mut best_value = f32::NEG_INFINITY;
    for (i, &v) in logits.iter().enumerate() {
        if v > best_value {
            best = i;
            best_value = v;
        }
    }
    best as u32
}

/// Draws a token from `softmax(logits / temperature)` restricted by `top_k` and `top_p`.
pub fn sample(logits: &[f32], temperature: f32, top_k: usize, top_p: f32, rng: &mut Prng) -> u32 {
    // Candidates sorted by logit, descending; ties by lower index (a stable, total order).
    let mut idx: Vec<usize> = (0..logits.len()).filter(|&i| !logits[i].is_nan()).collect();
    if idx.is_empty() {
        return 0;
    }
    let by_logit = |a: &usize, b: &usize| logits[*b].total_cmp(&logits[*a]).then(a.cmp(b));
    if top_k > 0 && top_k < idx.len() {
        idx.select_nth_unstable_by(top_k - 1, by_logit);
        idx.truncate(top_k);
    }
    idx.sort_unstable_by(by_logit);
    let max = f64::from(logits[idx[0]]);
    let t = f64::from(temperature);
    let mut probs: Vec<f64> = idx
        .iter()
        .map(|&i| ((f64::from(logits[i]) - max) / t).exp())
        .collect();
    let total: f64 = probs.iter().sum();
    if top_p < 1.0 {
        let target = f64::from(top_p) * total;
        let mut acc = 0.0;
        let mut keep = probs.len();
        for (n, p) in probs.iter().enumerate() {
            acc += p;
            if acc >= target {
                keep = n + 1;
                break;
            }
        }
        probs.truncate(keep);
        idx.truncate(keep);
    }
    let total: f64 = probs.iter().sum();
    let mut u = rng.next_f64() * total;
    for (p, &i) in probs.iter().zip(&idx) {
        if u < *p {
            return i as u32;
        }
        u -= p;
    }
    idx[idx.len() - 1] as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argmax_prefers_lowest_index_on_ties() {
        assert_eq!(argmax(&[0.0, 2.0, 2.0, 1.0]), 1);
        assert_eq!(argmax(&[f32::NAN, -1.0]), 1);
    }

    #[test]
    fn sampling_respects_top_k_top_p_and_seed() {
        let logits = [1.0, 3.0, 2.0, 0.0, 2.5];
        let mut rng = Prng::new(1);
        for _ in 0..200 {
            // top_k 2: only ids 1 and 4.
            let t = sample(&logits, 1.0, 2, 1.0, &mut rng);
            assert!(t == 1 || t == 4);
            // A tiny top_p keeps only the best.
            assert_eq!(sample(&logits, 1.0, 0, 1e-6, &mut rng), 1);
        }
        // Very low temperature is greedy.
        assert_eq!(sample(&logits, 1e-4, 0, 1.0, &mut rng), 1);
        // Same seed, same draws.
        let draw = |seed| {
            let mut r = Prng::new(seed);
            (0..500)
                .map(|_| sample(&logits, 1.0, 0, 1.0, &mut r))
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(9), draw(9));
        // All tokens are reachable with no limits.
        let all = draw(3);
        assert!(all.contains(&0) && all.contains(&2));
    }

    #[test]
    fn validation_rejects_bad_parameters() {
        assert!(
            GenerateConfig::sampled(1, 0.0, 0, 1.0, 0)
                .validate()
                .is_err()
        );
        assert!(
            GenerateConfig::sampled(1, f32::NAN, 0, 1.0, 0)
                .validate()
                .is_err()
        );
        assert!(
            GenerateConfig::sampled(1, 1.0, 0, 0.0, 0)
                .validate()
                .is_err()
        );
        assert!(
            GenerateConfig::sampled(1, 1.0, 0, 1.0, 0)
                .validate()
                .is_ok()
        );
        assert!(
            GenerateConfig::sampled(1, 1.0, 0, 1.01, 0)
                .validate()
                .is_err()
        );
    }
}
