//! The contract between weight files and the Llama model: [`WeightSource`].
//!
//! A weight source (a GGUF file, a Hugging Face safetensors checkpoint) hands out the
//! architecture ([`LlamaHparams`]) and dense `f32` tensors by their *canonical* name, the Hugging
//! Face name (`model.layers.3.self_attn.q_proj.weight`, see [`names`]). Every tensor comes back
//!
//! - dequantized to `f32`,
//! - with dims outermost-first, linear weights in the PyTorch `Linear` convention
//!   `[out_features, in_features]`,
//! - with the rows of `q_proj` and `k_proj` in the [`RopeLayout::Interleaved`] layout, whatever
//!   the layout of the file, so the model needs only one RoPE implementation.
//!
//! # RoPE layouts
//!
//! Rotary position embeddings rotate pairs of query/key features. Two conventions pair them
//! differently within each head of `head_dim` features:
//!
//! - [`RopeLayout::Interleaved`] pairs features `(2i, 2i+1)` (the original RoPE paper, Meta's
//!   reference code, llama.cpp, Burn's `RotaryEncoding`);
//! - [`RopeLayout::RotateHalf`] pairs features `(i, i + head_dim/2)` (Hugging Face `transformers`).
//!
//! Both compute the same attention scores once the `q_proj`/`k_proj` output rows are permuted to
//! match: llama.cpp's converter does exactly that when it writes a GGUF, which is why GGUF q/k
//! weights pair with interleaved RoPE. [`permute_rotate_half_to_interleaved`] applies the same
//! permutation to Hugging Face weights: per head, the rows viewed as `(2, head_dim/2, in)` are
//! transposed to `(head_dim/2, 2, in)`, i.e. new row `2j + s` is old row `s·head_dim/2 + j`.

use crate::{Error, Result};

/// A dense `f32` tensor as read from a weight file.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorData {
    /// The shape, outermost dimension first (row-major); `[out, in]` for linear weights.
    pub dims: Vec<usize>,
    /// The values in row-major order; `values.len()` is the product of `dims`.
    pub values: Vec<f32>,
}

impl TensorData {
    /// Builds a tensor, checking that `values` fills `dims` exactly.
    pub fn new(dims: Vec<usize>, values: Vec<f32>) -> Result<Self> {
        let expected = dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
        if expected != Some(values.len()) {
            return Err(Error::Format {
                what: "tensor",
                reason: format!("shape {dims:?} does not hold {} values", values.len()),
            });
        }
        Ok(Self { dims, values })
    }

    /// The number of values.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether the tensor holds no values.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

/// How the rows of `q_proj`/`k_proj` pair up for rotary position embeddings (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RopeLayout {
    /// Pairs `(2i, 2i+1)` within each head: GGUF files, Burn's `RotaryEncoding`.
    Interleaved,
    /// Pairs `(i, i + head_dim/2)` within each head: Hugging Face checkpoints.
    RotateHalf,
}

/// The architecture of a Llama-family model.
#[derive(Debug, Clone, PartialEq)]
pub struct LlamaHparams {
    /// Vocabulary size (rows of the token embedding).
    pub vocab_size: usize,
    /// Model width (`embedding_length`, `hidden_size`).
    pub hidden_size: usize,
    /// Width of the SwiGLU feed-forward layer.
    pub intermediate_size: usize,
    /// Number of transformer blocks.
    pub num_layers: usize,
    /// Number of query heads.
    pub num_heads: usize,
    /// Number of key/value heads (grouped-query attention when fewer than `num_heads`).
    pub num_kv_heads: usize,
    /// Features per head (`hidden_size / num_heads` for Llama).
    pub head_dim: usize,
    /// RoPE base frequency θ.
    pub rope_theta: f32,
    /// RMSNorm ε.
    pub rms_norm_eps: f32,
    /// Longest context the model was trained for.
    pub max_position_embeddings: usize,
    /// Whether the output head shares the token embedding (no separate `lm_head.weight`).
    pub tie_word_embeddings: bool,
    /// Beginning-of-sequence token, when the file names one.
    pub bos_token_id: Option<u32>,
    /// End-of-sequence token, when the file names one.
    pub eos_token_id: Option<u32>,
}

impl LlamaHparams {
    /// Checks the cross-field rules (non-zero sizes, heads dividing evenly, even head dim).
    pub fn validate(&self) -> Result<()> {
        let bad = |reason: String| Error::Format {
            what: "hparams",
            reason,
        };
        for (name, v) in [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_layers", self.num_layers),
            ("num_heads", self.num_heads),
            ("num_kv_heads", self.num_kv_heads),
            ("head_dim", self.head_dim),
        ] {
            if v == 0 {
                return Err(bad(format!("{name} is zero")));
            }
        }
        if !self.num_heads.is_multiple_of(self.num_kv_heads) {
            return Err(bad(format!(
                "{} heads are not a multiple of {} kv heads",
                self.num_heads, self.num_kv_heads
            )));
        }
        if !self.head_dim.is_multiple_of(2) {
            return Err(bad(format!("head_dim {} is odd", self.head_dim)));
        }
        if !(self.rope_theta.is_finite() && self.rope_theta > 0.0) {
            return Err(bad(format!(
                "rope_theta {} is not positive",
                self.rope_theta
            )));
        }
        if !(self.rms_norm_eps.is_finite() && self.rms_norm_eps > 0.0) {
            return Err(bad(format!(
                "rms_norm_eps {} is not positive",
                self.rms_norm_eps
            )));
        }
        Ok(())
    }
}

/// Canonical (Hugging Face) tensor names.
pub mod names {
    /// The token embedding, `[vocab, hidden]`.
    pub const EMBED_TOKENS: &str = "model.embed_tokens.weight";
    /// The final RMSNorm weight, `[hidden]`.
    pub const FINAL_NORM: &str = "model.norm.weight";
    /// The output head, `[vocab, hidden]` (the embedding when tied).
    pub const LM_HEAD: &str = "lm_head.weight";

    /// The per-layer tensors, as suffixes after `model.layers.{i}.`.
    pub const LAYER_SUFFIXES: [&str; 9] = [
        "self_attn.q_proj.weight",
        "self_attn.k_proj.weight",
        "self_attn.v_proj.weight",
        "self_attn.o_proj.weight",
        "mlp.gate_proj.weight",
        "mlp.up_proj.weight",
        "mlp.down_proj.weight",
        "input_layernorm.weight",
        "post_attention_layernorm.weight",
    ];

    /// `model.layers.{layer}.{suffix}`, e.g. `layer(0, "self_attn.q_proj.weight")`.
    pub fn layer(layer: usize, suffix: &str) -> String {
        format!("model.layers.{layer}.{suffix}")
    }
}

/// Something that provides Llama weights: a GGUF file or a Hugging Face checkpoint.
///
/// Implementations return tensors in the canonical layout described in the module docs. Asking for
/// [`names::LM_HEAD`] on a model with tied embeddings returns the token embedding.
pub trait WeightSource {
    /// The model architecture.
    fn hparams(&self) -> &LlamaHparams;

    /// The tensor named `name` (a canonical name from [`names`]) as dense `f32`, `[out, in]`
    /// for linear weights, q/k rows in [`RopeLayout::Interleaved`] order.
    fn tensor(&self, name: &str) -> Result<TensorData>;

    /// The layout of q/k rows *in the file* (informational: [`WeightSource::tensor`] always
    /// returns the interleaved layout).
    fn file_rope_layout(&self) -> RopeLayout;

    /// The model identity: lower-case hex SHA-256 of the weight file (of the shard files' bytes
    /// concatenated in index order for a sharded checkpoint).
    fn model_id(&self) -> Result<String>;
}

/// Permutes the rows of a Hugging Face (rotate-half) `q_proj`/`k_proj` weight `[n_heads·head_dim,
/// in]` into the interleaved layout, in place of llama.cpp's converter: per head, rows viewed as
/// `(2, head_dim/2, in)` become `(head_dim/2, 2, in)`.
pub fn permute_rotate_half_to_interleaved(t: &TensorData, n_heads: usize) -> Result<TensorData> {
    permute_rows(t, n_heads, false)
}

/// The inverse of [`permute_rotate_half_to_interleaved`]: interleaved rows back to rotate-half
/// (what `transformers`' GGUF import does).
pub fn permute_interleaved_to_rotate_half(t: &TensorData, n_heads: usize) -> Result<TensorData> {
    permute_rows(t, n_heads, true)
}

fn permute_rows(t: &TensorData, n_heads: usize, inverse: bool) -> Result<TensorData> {
    let bad = |reason: String| Error::Format {
        what: "tensor",
        reason,
    };
    let [rows, cols] = t.dims[..] else {
        return Err(bad(format!(
            "q/k permutation needs a 2-d weight, got {:?}",
            t.dims
        )));
    };
    if n_heads == 0 || !rows.is_multiple_of(n_heads) || !(rows / n_heads).is_multiple_of(2) {
        return Err(bad(format!(
            "q/k permutation: {rows} rows do not split into {n_heads} heads of even size"
        )));
    }
    let head_dim = rows / n_heads;
    let half = head_dim / 2;
    let mut out = vec![0.0f32; t.values.len()];
    for h in 0..n_heads {
        for j in 0..half {
            for s in 0..2 {
                let interleaved = h * head_dim + 2 * j + s;
                let rotate_half = h * head_dim + s * half + j;
                let (dst, src) = if inverse {
                    (rotate_half, interleaved)
                } else {
                    (interleaved, rotate_half)
                };
                out[dst * cols..(dst + 1) * cols]
                    .copy_from_slice(&t.values[src * cols..(src + 1) * cols]);
            }
        }
    }
    TensorData::new(t.dims.clone(), out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tensor_data_checks_shape() {
        assert!(TensorData::new(vec![2, 3], vec![0.0; 6]).is_ok());
        assert!(TensorData::new(vec![2, 3], vec![0.0; 5]).is_err());
        assert!(TensorData::new(vec![usize::MAX, 3], vec![]).is_err());
    }

    #[test]
    fn permutation_moves_rows_per_head() {
        // 2 heads of head_dim 4, 1 column: row value = row index.
        let t = TensorData::new(vec![8, 1], (0..8).map(|v| v as f32).collect()).unwrap();
        let p = permute_rotate_half_to_interleaved(&t, 2).unwrap();
        assert_eq!(p.values, vec![0.0, 2.0, 1.0, 3.0, 4.0, 6.0, 5.0, 7.0]);
        let back = permute_interleaved_to_rotate_half(&p, 2).unwrap();
        assert_eq!(back, t);
    }

    #[test]
    fn permutation_rejects_bad_shapes() {
        let t = TensorData::new(vec![6, 1], vec![0.0; 6]).unwrap();
        assert!(permute_rotate_half_to_interleaved(&t, 4).is_err());
        assert!(permute_rotate_half_to_interleaved(&t, 2).is_err()); // head_dim 3 is odd
        assert!(permute_rotate_half_to_interleaved(&t, 0).is_err());
        let flat = TensorData::new(vec![6], vec![0.0; 6]).unwrap();
        assert!(permute_rotate_half_to_interleaved(&flat, 3).is_err());
    }

    #[test]
    fn hparams_validation() {
        let ok = LlamaHparams {
            vocab_size: 10,
            hidden_size: 8,
            intermediate_size: 16,
            num_layers: 1,
            num_heads: 2,
            num_kv_heads: 1,
            head_dim: 4,
            rope_theta: 10000.0,
            rms_norm_eps: 1e-5,
            max_position_embeddings: 64,
            tie_word_embeddings: true,
            bos_token_id: None,
            eos_token_id: None,
        };
        assert!(ok.validate().is_ok());
        assert!(
            LlamaHparams {
                num_kv_heads: 3,
                ..ok.clone()
            }
            .validate()
            .is_err()
        );
        assert!(
            LlamaHparams {
                head_dim: 3,
                ..ok.clone()
            }
            .validate()
            .is_err()
        );
        assert!(
            LlamaHparams {
                num_layers: 0,
                ..ok.clone()
            }
            .validate()
            .is_err()
        );
        assert!(
            LlamaHparams {
                rope_theta: f32::NAN,
                ..ok.clone()
            }
            .validate()
            .is_err()
        );
        assert!(
            LlamaHparams {
                rms_norm_eps: 0.0,
                ..ok
            }
            .validate()
            .is_err()
        );
    }
}
