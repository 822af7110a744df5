//! Grouped-query self-attention with interleaved RoPE and a causal mask.
//!
//! All heads are computed in one batched matmul. Query heads sharing a key/value head are folded
//! into the row dimension (`[batch, kv_heads, group·seq, head_dim]`), so keys and values are never
//! repeated per query head; this works the same on every backend and under autodiff.

use burn::module::Module;
use burn::tensor::Tensor;
use burn::tensor::activation::softmax;

use super::cache::KvCache;
use super::rope::Rope;
use crate::lora::LoraLinear;

/// Multi-head self-attention with `kv_heads` key/value heads shared by groups of query heads.
#[derive(Module, Debug)]
pub struct Attention {
    /// `self_attn.q_proj`, `[hidden, heads·head_dim]`.
    pub q_proj: LoraLinear,
    /// `self_attn.k_proj`, `[hidden, kv_heads·head_dim]`.
    pub k_proj: LoraLinear,
    /// `self_attn.v_proj`, `[hidden, kv_heads·head_dim]`.
    pub v_proj: LoraLinear,
    /// `self_attn.o_proj`, `[heads·head_dim, hidden]`.
    pub o_proj: LoraLinear,
    /// Query heads.
    pub heads: usize,
    /// Key/value heads.
    pub kv_heads: usize,
    /// Features per head.
    pub head_dim: usize,
}

impl Attention {
    /// Attends `x: [batch, seq, hidden]`, whose first position is `start`, to itself and to the
    /// cached positions of `layer` (when a cache is given). `mask` is the additive causal mask
    /// `[1, 1, group·seq, start+seq]` (`None` for a single new position, which sees everything).
    pub fn forward(
        &self,
        x: Tensor<3>,
        rope: &Rope,
        start: usize,
        mask: Option<Tensor<4>>,
        cache: Option<(&mut KvCache, usize)>,
    ) -> Tensor<3> {
        let [b, s, _] = x.dims();
        let (h, kvh, d) = (self.heads, self.kv_heads, self.head_dim);
        let group = h / kvh;

        let q = self.q_proj.forward(x.clone()).reshape([b, s, h, d]);
        let k = self.k_proj.forward(x.clone()).reshape([b, s, kvh, d]);
        let v = self.v_proj.forward(x).reshape([b, s, kvh, d]);

        let q = rope.apply(q, start).swap_dims(1, 2); // [b, h, s, d]
        let k = rope.apply(k, start).swap_dims(1, 2); // [b, kvh, s, d]
        let v = v.swap_dims(1, 2);

        let (k, v) = match cache {
            Some((cache, layer)) => cache.append(layer, k, v),
            None => (k, v),
        };

        // Query heads h = kv·group + g, so [b, h, s, d] is [b, kvh, group·s, d] row-major.
        let q = q.reshape([b, kvh, group * s, d]);
        let scores = q
            .matmul(k.swap_dims(2, 3))
            .mul_scalar(1.0 / (d as f64).sqrt()); // [b, kvh, group·s, t]
        let scores = match mask {
            Some(mask) => scores + mask,
            None => scores,
        };
        let probs = softmax(scores, 3);
        let out = probs.matmul(v); // [b, kvh, group·s, d]
        let out = out
            .reshape([b, h, s, d])
            .swap_dims(1, 2)
            .reshape([b, s, h * d]);
        self.o_proj.forward(out)
    }
}
