//! Llama models in GGUF: hyper-parameters from the `llama.*` keys, tensor names, [`WeightSource`].
//!
//! GGUF tensor names map to the canonical (Hugging Face) names of [`crate::names`]:
//!
//! | GGUF                      | canonical                                        |
//! |---------------------------|--------------------------------------------------|
//! | `token_embd.weight`       | `model.embed_tokens.weight`                      |
//! | `output_norm.weight`      | `model.norm.weight`                              |
//! | `output.weight`           | `lm_head.weight` (absent when tied)              |
//! | `blk.N.attn_q.weight`     | `model.layers.N.self_attn.q_proj.weight`         |
//! | `blk.N.attn_k.weight`     | `model.layers.N.self_attn.k_proj.weight`         |
//! | `blk.N.attn_v.weight`     | `model.layers.N.self_attn.v_proj.weight`         |
//! | `blk.N.attn_output.weight`| `model.layers.N.self_attn.o_proj.weight`         |
//! | `blk.N.ffn_gate.weight`   | `model.layers.N.mlp.gate_proj.weight`            |
//! | `blk.N.ffn_up.weight`     | `model.layers.N.mlp.up_proj.weight`              |
//! | `blk.N.ffn_down.weight`   | `model.layers.N.mlp.down_proj.weight`            |
//! | `blk.N.attn_norm.weight`  | `model.layers.N.input_layernorm.weight`          |
//! | `blk.N.ffn_norm.weight`   | `model.layers.N.post_attention_layernorm.weight` |
//!
//! GGUF q/k rows were permuted by llama.cpp's converter for interleaved RoPE, which is the
//! canonical layout already: tensors pass through unchanged.

use super::Gguf;
use crate::weights::{LlamaHparams, RopeLayout, TensorData, WeightSource, names};
use crate::{Error, Result};

/// (GGUF suffix after `blk.N.`, canonical suffix after `model.layers.N.`).
pub(crate) const LAYER_NAMES: [(&str, &str); 9] = [
    ("attn_q.weight", "self_attn.q_proj.weight"),
    ("attn_k.weight", "self_attn.k_proj.weight"),
    ("attn_v.weight", "self_attn.v_proj.weight"),
    ("attn_output.weight", "self_attn.o_proj.weight"),
    ("ffn_gate.weight", "mlp.gate_proj.weight"),
    ("ffn_up.weight", "mlp.up_proj.weight"),
    ("ffn_down.weight", "mlp.down_proj.weight"),
    ("attn_norm.weight", "input_layernorm.weight"),
    ("ffn_norm.weight", "post_attention_layernorm.weight"),
];

const GLOBAL_NAMES: [(&str, &str); 3] = [
    ("token_embd.weight", names::EMBED_TOKENS),
    ("output_norm.weight", names::FINAL_NORM),
    ("output.weight", names::LM_HEAD),
];

/// Splits `<prefix><layer>.<rest>` into `(layer, rest)`.
fn split_layer<'a>(name: &'a str, prefix: &str) -> Option<(usize, &'a str)> {
    let rest = name.strip_prefix(prefix)?;
    let (layer, rest) = rest.split_once('.')?;
    if layer.is_empty() || !layer.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((layer.parse().ok()?, rest))
}

/// The canonical (Hugging Face) name of a Llama GGUF tensor, `None` for names outside the map.
pub fn gguf_to_canonical(name: &str) -> Option<String> {
    if let Some((_, canonical)) = GLOBAL_NAMES.iter().find(|(g, _)| *g == name) {
        return Some((*canonical).to_owned());
    }
    let (layer, rest) = split_layer(name, "blk.")?;
    let (_, canonical) = LAYER_NAMES.iter().find(|(g, _)| *g == rest)?;
    Some(names::layer(layer, canonical))
}

/// The GGUF name of a canonical Llama tensor name, `None` for names outside the map.
pub fn canonical_to_gguf(name: &str) -> Option<String> {
    if let Some((gguf, _)) = GLOBAL_NAMES.iter().find(|(_, c)| *c == name) {
        return Some((*gguf).to_owned());
    }
    let (layer, rest) = split_layer(name, "model.layers.")?;
    let (gguf, _) = LAYER_NAMES.iter().find(|(_, c)| *c == rest)?;
    Some(format!("blk.{layer}.{gguf}"))
}

fn usize_of(gguf: &Gguf, key: &str) -> Result<usize> {
    let v = gguf.get_u64(key)?;
    usize::try_from(v).map_err(|_| Error::Metadata {
        key: key.to_owned(),
        reason: format!("{v} does not fit in memory"),
    })
}

impl LlamaHparams {
    /// Reads the `llama.*` keys of a GGUF file (`general.architecture` must be `llama`).
    ///
    /// The vocabulary size is `llama.vocab_size` when present, else the length of
    /// `tokenizer.ggml.tokens`, else the rows of `token_embd.weight`. Embeddings are tied when
    /// the file has no `output.weight`.
    pub fn from_gguf(gguf: &Gguf) -> Result<Self> {
        let arch = gguf.get_str("general.architecture")?;
        if arch != "llama" {
            return Err(Error::Metadata {
                key: "general.architecture".to_owned(),
                reason: format!("architecture {arch} is not supported (only llama)"),
            });
        }
        let key = |k: &str| format!("llama.{k}");
        let opt = |k: &str| gguf.metadata(&key(k)).is_some();
        let hidden_size = usize_of(gguf, &key("embedding_length"))?;
        let num_heads = usize_of(gguf, &key("attention.head_count"))?;
        let num_kv_heads = if opt("attention.head_count_kv") {
            usize_of(gguf, &key("attention.head_count_kv"))?
        } else {
            num_heads
        };
        let head_dim = if opt("attention.key_length") {
            usize_of(gguf, &key("attention.key_length"))?
        } else {
            hidden_size.checked_div(num_heads).unwrap_or(0)
        };
        if opt("rope.dimension_count") {
            let rope_dims = usize_of(gguf, &key("rope.dimension_count"))?;
            if rope_dims != head_dim {
                return Err(Error::Metadata {
                    key: key("rope.dimension_count"),
                    reason: format!("partial rotary ({rope_dims} of {head_dim}) is not supported"),
                });
            }
        }
        let vocab_size = if opt("vocab_size") {
            usize_of(gguf, &key("vocab_size"))?
        } else if let Some(tokens) = gguf.metadata("tokenizer.ggml.tokens") {
            tokens.as_array().map_or(0, <[_]>::len)
        } else {
            gguf.tensor_info("token_embd.weight")
                .and_then(|t| t.dims.first().copied())
                .unwrap_or(0)
        };
        let optional_id = |k: &str| -> Result<Option<u32>> {
            match gguf.metadata(k) {
                None => Ok(None),
                Some(_) => gguf.get_u32(k).map(Some),
            }
        };
        let hparams = Self {
            vocab_size,
            hidden_size,
            intermediate_size: usize_of(gguf, &key("feed_forward_length"))?,
            num_layers: usize_of(gguf, &key("block_count"))?,
            num_heads,
            num_kv_heads,
            head_dim,
            rope_theta: if opt("rope.freq_base") {
                gguf.get_f32(&key("rope.freq_base"))?
            } else {
                10_000.0
            },
            rms_norm_eps: gguf.get_f32(&key("attention.layer_norm_rms_epsilon"))?,
            max_position_embeddings: usize_of(gguf, &key("context_length"))?,
            tie_word_embeddings: gguf.tensor_info("output.weight").is_none(),
            bos_token_id: optional_id("tokenizer.ggml.bos_token_id")?,
            eos_token_id: optional_id("tokenizer.ggml.eos_token_id")?,
        };
        // Every block has `LAYER_NAMES.len()` tensors: a block count the file cannot hold is
        // corrupt, and would have a loader reserve memory for blocks that are not there.
        let n_tensors = gguf.tensor_infos().len();
        if hparams.num_layers > n_tensors / LAYER_NAMES.len() {
            return Err(Error::Metadata {
                key: key("block_count"),
                reason: format!(
                    "{} blocks need {} tensors, the file has {n_tensors}",
                    hparams.num_layers,
                    hparams.num_layers.saturating_mul(LAYER_NAMES.len())
                ),
            });
        }
        hparams.validate()?;
        Ok(hparams)
    }
}

/// A Llama GGUF file with its hyper-parameters read once: the [`WeightSource`] for GGUF.
#[derive(Debug)]
pub struct GgufWeights {
    gguf: Gguf,
    hparams: LlamaHparams,
}

impl GgufWeights {
    /// Reads the hyper-parameters of a parsed file.
    pub fn new(gguf: Gguf) -> Result<Self> {
        let hparams = LlamaHparams::from_gguf(&gguf)?;
        Ok(Self { gguf, hparams })
    }

    /// Opens and parses the file at `path`.
    pub fn open(path: impl AsRef<std::path::Path>) -> Result<Self> {
        Self::new(Gguf::open(path)?)
    }

    /// The underlying file (metadata, tokenizer).
    pub fn gguf(&self) -> &Gguf {
        &self.gguf
    }

    /// Gives the underlying file back.
    pub fn into_gguf(self) -> Gguf {
        self.gguf
    }
}

impl WeightSource for GgufWeights {
    fn hparams(&self) -> &LlamaHparams {
        &self.hparams
    }

    fn tensor(&self, name: &str) -> Result<TensorData> {
        let file_name = if name == names::LM_HEAD && self.hparams.tie_word_embeddings {
            "token_embd.weight".to_owned()
        } else {
            canonical_to_gguf(name).ok_or_else(|| Error::MissingTensor {
                name: name.to_owned(),
            })?
        };
        if self.gguf.tensor_info(&file_name).is_none() {
            return Err(Error::MissingTensor {
                name: format!("{name} ({file_name} in the gguf file)"),
            });
        }
        self.gguf.tensor_f32(&file_name)
    }

    fn file_rope_layout(&self) -> RopeLayout {
        RopeLayout::Interleaved
    }

    fn model_id(&self) -> Result<String> {
        Ok(self.gguf.sha256().to_owned())
    }
}
