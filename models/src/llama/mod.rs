//! The Llama transformer: [`Llama`] (token embedding, [`Block`]s of RMSNorm → grouped-query
//! attention → RMSNorm → SwiGLU, final norm, tied or separate output head) and its [`KvCache`].
//!
//! One code path serves every size ([`LlamaConfig`]) and every device: nothing here names a
//! backend, so the same model runs on `Device::flex()` (the CPU default), on `Device::wgpu(..)` with
//! the `wgpu` feature, and under autodiff for training (`Device::flex().autodiff()`).
//!
//! Weights are kept in Burn's layout: linear weights `[in, out]` (the transpose of PyTorch's),
//! the embedding `[vocab, hidden]`, whose transpose (a strided view, not a copy) is the tied
//! output head. The base is frozen: every base parameter has `require_grad = false`, so under
//! autodiff only adapter factors receive gradients.

mod adapters;
mod attention;
mod cache;
mod mlp;
mod rope;

pub use adapters::MAX_ADAPTERS;
pub use attention::Attention;
pub use cache::KvCache;
pub use mlp::{Mlp, RmsNorm};
pub use rope::Rope;

use burn::module::{Module, Param};
use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::config::LlamaConfig;
use crate::lora::{LoraConfig, LoraLinear, Target, transpose};
use crate::prng::Prng;
use crate::weights::names;
use crate::{Error, Result};

/// Copies a device tensor's values to the host.
pub(crate) fn to_host<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>> {
    t.into_data()
        .try_into_vec::<f32>()
        .map_err(|e| Error::TensorData {
            reason: format!("{e:?}"),
        })
}

/// One transformer block.
#[derive(Module, Debug)]
pub struct Block {
    /// RMSNorm before attention.
    pub input_layernorm: RmsNorm,
    /// Self-attention.
    pub self_attn: Attention,
    /// RMSNorm before the feed-forward layer.
    pub post_attention_layernorm: RmsNorm,
    /// SwiGLU feed-forward layer.
    pub mlp: Mlp,
}

impl Block {
    fn forward(
        &self,
        x: Tensor<3>,
        rope: &Rope,
        start: usize,
        mask: Option<Tensor<4>>,
        cache: Option<(&mut KvCache, usize)>,
    ) -> Tensor<3> {
        let h = self.input_layernorm.forward(x.clone());
        let x = x + self.self_attn.forward(h, rope, start, mask, cache);
        let h = self.post_attention_layernorm.forward(x.clone());
        x + self.mlp.forward(h)
    }

    /// The linear layer for `target`.
    pub fn linear(&self, target: Target) -> &LoraLinear {
        match target {
            Target::Q => &self.self_attn.q_proj,
            Target::K => &self.self_attn.k_proj,
            Target::V => &self.self_attn.v_proj,
            Target::O => &self.self_attn.o_proj,
            Target::Gate => &self.mlp.gate_proj,
            Target::Up => &self.mlp.up_proj,
            Target::Down => &self.mlp.down_proj,
        }
    }

    /// The linear layer for `target`, mutably.
    pub(crate) fn linear_mut(&mut self, target: Target) -> &mut LoraLinear {
        match target {
            Target::Q => &mut self.self_attn.q_proj,
            Target::K => &mut self.self_attn.k_proj,
            Target::V => &mut self.self_attn.v_proj,
            Target::O => &mut self.self_attn.o_proj,
            Target::Gate => &mut self.mlp.gate_proj,
            Target::Up => &mut self.mlp.up_proj,
            Target::Down => &mut self.mlp.down_proj,
        }
    }
}

/// A Llama-architecture language model with stacked LoRA adapters.
#[derive(Module, Debug)]
pub struct Llama {
    /// Token embedding `[vocab, hidden]` (frozen).
    pub embed_tokens: Param<Tensor<2>>,
    /// The transformer blocks.
    pub layers: Vec<Block>,
    /// Final RMSNorm.
    pub norm: RmsNorm,
    /// Separate output head `[vocab, hidden]`; `None` when tied to the embedding.
    pub lm_head: Option<Param<Tensor<2>>>,
    /// RoPE tables.
    pub rope: Rope,
    #[module(skip)]
    config: LlamaConfig,
    #[module(skip)]
    adapters: Vec<LoraConfig>,
    #[module(skip)]
    trainable: Vec<bool>,
}

impl Llama {
    /// Builds a model from host tensors: `fetch(name, dims)` returns the tensor `name` (a canonical
    /// name from [`names`]) with `dims` in the PyTorch layout (`[out, in]` for linear weights,
    /// q/k rows interleaved for RoPE), row-major. Shapes are checked here.
    pub(crate) fn from_host(
        config: &LlamaConfig,
        device: &Device,
        mut fetch: impl FnMut(&str, &[usize]) -> Result<Vec<f32>>,
    ) -> Result<Self> {
        config.validate()?;
        let (hd, inter) = (config.hidden, config.intermediate);
        let mut get = |name: &str, dims: &[usize]| -> Result<Vec<f32>> {
            let values = fetch(name, dims)?;
            let expected: usize = dims.iter().product();
            if values.len() != expected {
                return Err(Error::Shape {
                    name: name.to_string(),
                    expected: dims.to_vec(),
                    actual: vec![values.len()],
                });
            }
            Ok(values)
        };
        let vector = |values: Vec<f32>, n: usize| {
            Tensor::<1>::from_data(TensorData::new(values, [n]), device)
        };
        let matrix = |values: Vec<f32>, rows: usize, cols: usize| {
            Tensor::<2>::from_data(TensorData::new(values, [rows, cols]), device)
        };
        // PyTorch [out, in] → Burn [in, out].
        let linear_from = |values: Vec<f32>, out: usize, inp: usize| {
            LoraLinear::new(matrix(transpose(&values, out, inp), inp, out))
        };

        let mut layers = Vec::with_capacity(config.layers);
        for i in 0..config.layers {
            let mut lin = |suffix: &str, out: usize, inp: usize| -> Result<LoraLinear> {
                Ok(linear_from(
                    get(&names::layer(i, suffix), &[out, inp])?,
                    out,
                    inp,
                ))
            };
            let q_proj = lin("self_attn.q_proj.weight", config.q_dim(), hd)?;
            let k_proj = lin("self_attn.k_proj.weight", config.kv_dim(), hd)?;
            let v_proj = lin("self_attn.v_proj.weight", config.kv_dim(), hd)?;
            let o_proj = lin("self_attn.o_proj.weight", hd, config.q_dim())?;
            let gate_proj = lin("mlp.gate_proj.weight", inter, hd)?;
            let up_proj = lin("mlp.up_proj.weight", inter, hd)?;
            let down_proj = lin("mlp.down_proj.weight", hd, inter)?;
            let input_norm = get(&names::layer(i, "input_layernorm.weight"), &[hd])?;
            let post_norm = get(&names::layer(i, "post_attention_layernorm.weight"), &[hd])?;
            layers.push(Block {
                input_layernorm: RmsNorm::new(vector(input_norm, hd), config.rms_eps),
                self_attn: Attention {
                    q_proj,
                    k_proj,
                    v_proj,
                    o_proj,
                    heads: config.heads,
                    kv_heads: config.kv_heads,
                    head_dim: config.head_dim,
                },
                post_attention_layernorm: RmsNorm::new(vector(post_norm, hd), config.rms_eps),
                mlp: Mlp {
                    gate_proj,
                    up_proj,
                    down_proj,
                },
            });
        }
        let embed = get(names::EMBED_TOKENS, &[config.vocab, hd])?;
        let final_norm = get(names::FINAL_NORM, &[hd])?;
        let lm_head = if config.tie_embeddings {
            None
        } else {
            let head = get(names::LM_HEAD, &[config.vocab, hd])?;
            Some(Param::from_tensor(matrix(head, config.vocab, hd)).set_require_grad(false))
        };
        Ok(Self {
            embed_tokens: Param::from_tensor(matrix(embed, config.vocab, hd))
                .set_require_grad(false),
            layers,
            norm: RmsNorm::new(vector(final_norm, hd), config.rms_eps),
            lm_head,
            rope: Rope::new(
                config.head_dim,
                config.max_seq_len,
                config.rope_theta,
                device,
            ),
            config: config.clone(),
            adapters: Vec::new(),
            trainable: Vec::new(),
        })
    }

    /// A randomly initialised model, identical on every machine for the same `seed`: linear
    /// weights uniform in `±1/√in`, embeddings uniform in `±0.02·√3` (standard deviation 0.02),
    /// norm gains 1. Tensor number `k` in canonical order draws from [`Prng::stream`]`(seed, k)`.
    pub fn init_random(config: &LlamaConfig, seed: u64, device: &Device) -> Result<Self> {
        let mut k = 0u64;
        Self::from_host(config, device, |name, dims| {
            k += 1;
            let n: usize = dims.iter().product();
            if name.ends_with("norm.weight") {
                return Ok(vec![1.0; n]);
            }
            let bound = if dims.len() == 2 && !name.contains("embed") && name != names::LM_HEAD {
                1.0 / (dims[1] as f64).sqrt()
            } else {
                0.02 * 3f64.sqrt()
            };
            Ok(Prng::stream(seed, k).fill_uniform(n, bound))
        })
    }

    /// The model's configuration.
    pub fn config(&self) -> &LlamaConfig {
        &self.config
    }

    /// The device of the model's weights.
    pub fn device(&self) -> Device {
        self.embed_tokens.val().device()
    }

    /// An empty KV cache sized for this model's context.
    pub fn new_cache(&self) -> KvCache {
        KvCache::new(self.config.layers, self.config.max_seq_len)
    }

    /// Logits `[batch, seq, vocab]` for `tokens: [batch, seq]`, from position 0, without a cache.
    ///
    /// # Panics
    ///
    /// If a token is outside the vocabulary or `seq` exceeds `max_seq_len`; use
    /// [`Llama::check_tokens`] first on untrusted input.
    pub fn forward(&self, tokens: Tensor<2, Int>) -> Tensor<3> {
        let hidden = self.hidden_states(tokens, 0, None);
        self.logits(hidden)
    }

    /// Logits `[batch, seq, vocab]` for `tokens: [batch, seq]` continuing the sequence in `cache`,
    /// whose keys and values are extended with the new positions.
    pub fn forward_cached(&self, tokens: Tensor<2, Int>, cache: &mut KvCache) -> Result<Tensor<3>> {
        let hidden = self.cached_hidden(tokens, cache)?;
        Ok(self.logits(hidden))
    }

    /// Logits `[batch, vocab]` of the last position only (what generation needs: the output head,
    /// the largest matmul, runs on one row), extending `cache`.
    pub fn forward_next(&self, tokens: Tensor<2, Int>, cache: &mut KvCache) -> Result<Tensor<2>> {
        let hidden = self.cached_hidden(tokens, cache)?;
        let [b, s, _] = hidden.dims();
        let last = hidden.narrow(1, s - 1, 1);
        Ok(self.logits(last).reshape([b, self.config.vocab]))
    }

    /// Checks that every token is inside the vocabulary and the sequence fits the context.
    pub fn check_tokens(&self, tokens: &[u32]) -> Result<()> {
        if tokens.len() > self.config.max_seq_len {
            return Err(Error::SequenceTooLong {
                len: tokens.len(),
                limit: self.config.max_seq_len,
            });
        }
        if let Some(&token) = tokens.iter().find(|&&t| t as usize >= self.config.vocab) {
            return Err(Error::TokenOutOfRange {
                token,
                vocab: self.config.vocab,
            });
        }
        Ok(())
    }

    fn cached_hidden(&self, tokens: Tensor<2, Int>, cache: &mut KvCache) -> Result<Tensor<3>> {
        let [b, s] = tokens.dims();
        if s == 0 {
            return Err(Error::Config {
                reason: "no tokens to process".into(),
            });
        }
        if cache.num_layers() != self.config.layers {
            return Err(Error::Config {
                reason: format!(
                    "cache has {} layers, the model {}",
                    cache.num_layers(),
                    self.config.layers
                ),
            });
        }
        cache.check(b, s)?;
        let limit = self.config.max_seq_len;
        if cache.len() + s > limit {
            return Err(Error::SequenceTooLong {
                len: cache.len() + s,
                limit,
            });
        }
        let start = cache.len();
        let hidden = self.hidden_states(tokens, start, Some(cache));
        cache.advance(s);
        Ok(hidden)
    }

    /// Final hidden states `[batch, seq, hidden]` (after the final norm).
    fn hidden_states(
        &self,
        tokens: Tensor<2, Int>,
        start: usize,
        mut cache: Option<&mut KvCache>,
    ) -> Tensor<3> {
        let [b, s] = tokens.dims();
        let device = tokens.device();
        let ids = tokens.reshape([b * s]);
        let mut x = self
            .embed_tokens
            .val()
            .select(0, ids)
            .reshape([b, s, self.config.hidden]);
        let mask = self.causal_mask(s, start, &device);
        for (i, layer) in self.layers.iter().enumerate() {
            let layer_cache = cache.as_deref_mut().map(|c| (c, i));
            x = layer.forward(x, &self.rope, start, mask.clone(), layer_cache);
        }
        self.norm.forward(x)
    }

    /// Logits `[batch, seq, vocab]` from final hidden states.
    pub fn logits(&self, hidden: Tensor<3>) -> Tensor<3> {
        let head = match &self.lm_head {
            Some(head) => head.val(),
            None => self.embed_tokens.val(),
        };
        // A 2-d matmul against the transposed view: the CPU backend runs it as a strided gemm,
        // while `linear` with a transposed weight first copies the whole [vocab, hidden] matrix.
        let [b, s, d] = hidden.dims();
        hidden
            .reshape([b * s, d])
            .matmul(head.transpose())
            .reshape([b, s, self.config.vocab])
    }

    /// The additive causal mask `[1, 1, group·seq, start+seq]` (0 or -∞), `None` for one position.
    fn causal_mask(&self, s: usize, start: usize, device: &Device) -> Option<Tensor<4>> {
        if s <= 1 {
            return None;
        }
        let group = self.config.heads / self.config.kv_heads;
        let t = start + s;
        let mut m = vec![0.0f32; group * s * t];
        for (r, row) in m.chunks_exact_mut(t).enumerate() {
            let pos = start + r % s;
            row[pos + 1..].fill(f32::NEG_INFINITY);
        }
        Some(Tensor::from_data(
            TensorData::new(m, [1, 1, group * s, t]),
            device,
        ))
    }

    /// Mean next-token cross-entropy (nats) of `tokens: [batch, seq]`: position `i` predicts token
    /// `i + 1`. Returns a one-element tensor, differentiable under autodiff.
    ///
    /// # Panics
    ///
    /// As [`Llama::forward`]; also if `seq < 2`.
    pub fn next_token_loss(&self, tokens: Tensor<2, Int>) -> Tensor<1> {
        let [b, s] = tokens.dims();
        let inputs = tokens.clone().narrow(1, 0, s - 1);
        let targets = tokens.narrow(1, 1, s - 1).reshape([b, s - 1, 1]);
        let logits = self.forward(inputs);
        let log_probs = burn::tensor::activation::log_softmax(logits, 2);
        log_probs.gather(2, targets).mean().neg()
    }

    /// The configurations of the attached adapters, by slot.
    pub fn adapters(&self) -> &[LoraConfig] {
        &self.adapters
    }
}

#[cfg(test)]
mod tests;
