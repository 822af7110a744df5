//! [`LlamaConfig`]: the size of a Llama-architecture model, one code path for every size.
//!
//! The presets are [`LlamaConfig::smollm2_135m`] (the default base model) and
//! [`LlamaConfig::tiny`] (2 layers, width 64: what tests and 1,000-member simulations run).

use burn::config::Config;

use crate::weights::LlamaHparams;
use crate::{Error, Result};

/// Architecture of a Llama model: RMSNorm, grouped-query attention with interleaved RoPE, SwiGLU.
#[derive(Config, Debug, PartialEq)]
pub struct LlamaConfig {
    /// Vocabulary size (rows of the token embedding).
    pub vocab: usize,
    /// Model width.
    pub hidden: usize,
    /// Width of the SwiGLU feed-forward layer.
    pub intermediate: usize,
    /// Number of transformer blocks.
    pub layers: usize,
    /// Number of query heads.
    pub heads: usize,
    /// Number of key/value heads (grouped-query attention when fewer than `heads`).
    pub kv_heads: usize,
    /// Features per head.
    pub head_dim: usize,
    /// RoPE base frequency θ.
    #[config(default = 10000.0)]
    pub rope_theta: f64,
    /// RMSNorm ε.
    #[config(default = 1e-5)]
    pub rms_eps: f64,
    /// Longest sequence (prompt plus generated tokens) the model accepts.
    #[config(default = 2048)]
    pub max_seq_len: usize,
    /// Whether the output head is the transposed token embedding.
    #[config(default = true)]
    pub tie_embeddings: bool,
}

/// The `f64` nearest to the shortest decimal that round-trips `x` (so `1e-5f32` becomes `1e-5`, as
/// written in the model's configuration, not `9.99999974e-6`).
fn decimal_f64(x: f32) -> f64 {
    x.to_string().parse().unwrap_or(f64::from(x))
}

/// Largest accepted value of any size field, so that products of sizes cannot overflow.
const MAX_DIM: usize = 1 << 24;

impl LlamaConfig {
    /// SmolLM2-135M(-Instruct): 30 layers, width 576, 9 heads over 3 KV heads, vocab 49,152.
    pub fn smollm2_135m() -> Self {
        Self::new(49_152, 576, 1536, 30, 9, 3, 64)
            .with_rope_theta(100_000.0)
            .with_rms_eps(1e-5)
            .with_max_seq_len(8192)
            .with_tie_embeddings(true)
    }

    /// A tiny model for tests and simulations: 2 layers, width 64, 4 heads over 2 KV heads (head
    /// dim 16), feed-forward 128, context 256.
    pub fn tiny(vocab: usize) -> Self {
        Self::new(vocab, 64, 128, 2, 4, 2, 16)
            .with_rope_theta(10_000.0)
            .with_rms_eps(1e-5)
            .with_max_seq_len(256)
            .with_tie_embeddings(true)
    }

    /// The configuration described by a weight file's hyper-parameters.
    pub fn from_hparams(h: &LlamaHparams) -> Result<Self> {
        h.validate()?;
        let config = Self::new(
            h.vocab_size,
            h.hidden_size,
            h.intermediate_size,
            h.num_layers,
            h.num_heads,
            h.num_kv_heads,
            h.head_dim,
        )
        .with_rope_theta(decimal_f64(h.rope_theta))
        .with_rms_eps(decimal_f64(h.rms_norm_eps))
        .with_max_seq_len(h.max_position_embeddings)
        .with_tie_embeddings(h.tie_word_embeddings);
        config.validate()?;
        Ok(config)
    }

    /// Checks the cross-field rules: non-zero sizes below 2²⁴, heads a multiple of KV heads, even
    /// head dim, positive finite θ and ε.
    pub fn validate(&self) -> Result<()> {
        let bad = |reason: String| Error::Config { reason };
        for (name, v) in [
            ("vocab", self.vocab),
            ("hidden", self.hidden),
            ("intermediate", self.intermediate),
            ("layers", self.layers),
            ("heads", self.heads),
            ("kv_heads", self.kv_heads),
            ("head_dim", self.head_dim),
            ("max_seq_len", self.max_seq_len),
        ] {
            if v == 0 {
                return Err(bad(format!("{name} is zero")));
            }
            if v > MAX_DIM {
                return Err(bad(format!("{name} {v} exceeds the limit {MAX_DIM}")));
            }
        }
        if !self.heads.is_multiple_of(self.kv_heads) {
            return Err(bad(format!(
                "{} heads are not a multiple of {} kv heads",
                self.heads, self.kv_heads
            )));
        }
        if !self.head_dim.is_multiple_of(2) {
            return Err(bad(format!("head_dim {} is odd", self.head_dim)));
        }
        if self.heads * self.head_dim > MAX_DIM {
            return Err(bad(format!(
                "heads × head_dim {} exceeds the limit {MAX_DIM}",
                self.heads * self.head_dim
            )));
        }
        if !(self.rope_theta.is_finite() && self.rope_theta > 0.0) {
            return Err(bad(format!(
                "rope_theta {} is not positive",
                self.rope_theta
            )));
        }
        if !(self.rms_eps.is_finite() && self.rms_eps > 0.0) {
            return Err(bad(format!("rms_eps {} is not positive", self.rms_eps)));
        }
        Ok(())
    }

    /// Width of the concatenated query heads (`heads · head_dim`).
    pub fn q_dim(&self) -> usize {
        self.heads * self.head_dim
    }

    /// Width of the concatenated key (or value) heads (`kv_heads · head_dim`).
    pub fn kv_dim(&self) -> usize {
        self.kv_heads * self.head_dim
    }

    /// Number of parameters of the base model (norms included, a tied head counted once).
    pub fn num_params(&self) -> usize {
        let per_layer = self.hidden * (self.q_dim() + 2 * self.kv_dim())
            + self.q_dim() * self.hidden
            + 3 * self.hidden * self.intermediate
            + 2 * self.hidden;
        let head = if self.tie_embeddings {
            0
        } else {
            self.vocab * self.hidden
        };
        self.vocab * self.hidden + self.layers * per_layer + self.hidden + head
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_are_valid() {
        let smol = LlamaConfig::smollm2_135m();
        smol.validate().unwrap();
        // 134.5 M parameters (ASSETS.md).
        assert_eq!(smol.num_params(), 134_515_008);
        LlamaConfig::tiny(256).validate().unwrap();
    }

    #[test]
    fn validation_rejects_bad_shapes_at_and_past_limits() {
        let ok = LlamaConfig::tiny(100);
        assert!(
            LlamaConfig {
                kv_heads: 3,
                ..ok.clone()
            }
            .validate()
            .is_err()
        );
        assert!(
            LlamaConfig {
                head_dim: 15,
                ..ok.clone()
            }
            .validate()
            .is_err()
        );
        assert!(
            LlamaConfig {
                layers: 0,
                ..ok.clone()
            }
            .validate()
            .is_err()
        );
        assert!(
            LlamaConfig {
                rope_theta: f64::NAN,
                ..ok.clone()
            }
            .validate()
            .is_err()
        );
        assert!(
            LlamaConfig {
                rms_eps: 0.0,
                ..ok.clone()
            }
            .validate()
            .is_err()
        );
        assert!(
            LlamaConfig {
                vocab: MAX_DIM,
                ..ok.clone()
            }
            .validate()
            .is_ok()
        );
        assert!(
            LlamaConfig {
                vocab: MAX_DIM + 1,
                ..ok.clone()
            }
            .validate()
            .is_err()
        );
    }

    #[test]
    fn hparams_floats_keep_their_decimal_value() {
        assert_eq!(decimal_f64(1e-5), 1e-5);
        assert_eq!(decimal_f64(100_000.0), 100_000.0);
        assert!(decimal_f64(f32::NAN).is_nan());
    }

    #[test]
    fn json_round_trip() {
        let c = LlamaConfig::smollm2_135m();
        let json = serde_json::to_string(&c).unwrap();
        let back: LlamaConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(c, back);
    }
}
