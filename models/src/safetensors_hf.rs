//! Hugging Face Llama checkpoints: `config.json` + `model.safetensors`, or shards listed in
//! `model.safetensors.index.json`.
//!
//! [`HfCheckpoint`] implements [`WeightSource`]: tensors keep their Hugging Face names (the
//! canonical names), are converted from `F32`/`F16`/`BF16` to `f32`, and the rows of `q_proj`
//! and `k_proj` are permuted from the rotate-half RoPE layout of `transformers` into the
//! interleaved layout ([`permute_rotate_half_to_interleaved`]). With tied embeddings (no
//! `lm_head.weight`, `tie_word_embeddings`), [`names::LM_HEAD`] returns the token embedding.
//!
//! The shard files are read whole into memory and their headers validated by the `safetensors`
//! crate (offsets inside the file, no overlaps); shard names from the index must be plain file
//! names in the checkpoint folder.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use half::{bf16, f16};
use safetensors::tensor::{Dtype, Metadata};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::weights::{
    LlamaHparams, RopeLayout, TensorData, WeightSource, names, permute_rotate_half_to_interleaved,
};
use crate::{Error, Result};

/// Largest `config.json` / `model.safetensors.index.json` read, bytes.
pub const MAX_JSON_LEN: u64 = 64 << 20;
/// Most shard files in a checkpoint.
pub const MAX_SHARDS: usize = 1024;

fn bad(what: &'static str, reason: impl Into<String>) -> Error {
    Error::Format {
        what,
        reason: reason.into(),
    }
}

fn read_capped(path: &Path, max: u64) -> Result<Vec<u8>> {
    let io = |source| Error::Io {
        path: path.to_owned(),
        source,
    };
    let len = std::fs::metadata(path).map_err(io)?.len();
    if len > max {
        return Err(bad(
            "json",
            format!("{} is {len} bytes, more than {max}", path.display()),
        ));
    }
    std::fs::read(path).map_err(io)
}

/// The `config.json` fields this loader reads (names as in `transformers`' `LlamaConfig`).
#[derive(Debug, Deserialize)]
struct HfConfig {
    model_type: Option<String>,
    vocab_size: usize,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    num_key_value_heads: Option<usize>,
    head_dim: Option<usize>,
    #[serde(default = "default_theta")]
    rope_theta: f32,
    #[serde(default = "default_eps")]
    rms_norm_eps: f32,
    #[serde(default = "default_context")]
    max_position_embeddings: usize,
    #[serde(default)]
    tie_word_embeddings: bool,
    bos_token_id: Option<serde_json::Value>,
    eos_token_id: Option<serde_json::Value>,
    #[serde(default)]
    rope_scaling: Option<serde_json::Value>,
    #[serde(default)]
    attention_bias: bool,
    #[serde(default)]
    mlp_bias: bool,
}

fn default_theta() -> f32 {
    10_000.0
}
fn default_eps() -> f32 {
    1e-6
}
fn default_context() -> usize {
    2048
}

/// A token id, or the first of a list of ids (`eos_token_id` may be a list).
fn token_id(v: &Option<serde_json::Value>) -> Option<u32> {
    let v = v.as_ref()?;
    let v = v.as_array().and_then(|a| a.first()).unwrap_or(v);
    v.as_u64().and_then(|id| u32::try_from(id).ok())
}

impl LlamaHparams {
    /// Reads a Hugging Face Llama `config.json`.
    pub fn from_hf_config(json: &[u8]) -> Result<Self> {
        let c: HfConfig =
            serde_json::from_slice(json).map_err(|e| bad("config.json", e.to_string()))?;
        if let Some(t) = c.model_type.as_deref()
            && t != "llama"
        {
            return Err(bad(
                "config.json",
                format!("model_type {t} is not supported (only llama)"),
            ));
        }
        if c.rope_scaling.as_ref().is_some_and(|v| !v.is_null()) {
            return Err(bad("config.json", "rope_scaling is not supported"));
        }
        if c.attention_bias || c.mlp_bias {
            return Err(bad(
                "config.json",
                "attention or mlp biases are not supported",
            ));
        }
        let head_dim = c.head_dim.unwrap_or(
            c.hidden_size
                .checked_div(c.num_attention_heads)
                .unwrap_or(0),
        );
        let hparams = Self {
            vocab_size: c.vocab_size,
            hidden_size: c.hidden_size,
            intermediate_size: c.intermediate_size,
            num_layers: c.num_hidden_layers,
            num_heads: c.num_attention_heads,
            num_kv_heads: c.num_key_value_heads.unwrap_or(c.num_attention_heads),
            head_dim,
            rope_theta: c.rope_theta,
            rms_norm_eps: c.rms_norm_eps,
            max_position_embeddings: c.max_position_embeddings,
            tie_word_embeddings: c.tie_word_embeddings,
            bos_token_id: token_id(&c.bos_token_id),
            eos_token_id: token_id(&c.eos_token_id),
        };
        hparams.validate()?;
        Ok(hparams)
    }
}

/// One safetensors file held in memory with its validated header.
#[derive(Debug)]
struct Shard {
    bytes: Vec<u8>,
    /// Where the data section starts (8 + header length).
    data_start: usize,
    metadata: Metadata,
}

impl Shard {
    fn open(path: PathBuf) -> Result<Self> {
        let bytes = std::fs::read(&path).map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?;
        let (header_len, metadata) = safetensors::SafeTensors::read_metadata(&bytes)
            .map_err(|e| bad("safetensors", format!("{}: {e}", path.display())))?;
        Ok(Self {
            bytes,
            data_start: 8 + header_len,
            metadata,
        })
    }

    fn tensor(&self, name: &str) -> Result<TensorData> {
        let info = self
            .metadata
            .info(name)
            .ok_or_else(|| Error::MissingTensor {
                name: name.to_owned(),
            })?;
        let (start, end) = info.data_offsets;
        // In range: `read_metadata` checked the offsets against the buffer.
        let data = &self.bytes[self.data_start + start..self.data_start + end];
        let values: Vec<f32> = match info.dtype {
            Dtype::F32 => data
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            Dtype::F16 => data
                .chunks_exact(2)
                .map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            Dtype::BF16 => data
                .chunks_exact(2)
                .map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            other => {
                return Err(Error::UnsupportedTensorType {
                    tensor: name.to_owned(),
                    dtype: format!("{other:?}"),
                });
            }
        };
        TensorData::new(info.shape.clone(), values)
    }
}

#[derive(Debug, Deserialize)]
struct ShardIndex {
    weight_map: BTreeMap<String, String>,
}

/// A Hugging Face Llama checkpoint folder, read into memory.
#[derive(Debug)]
pub struct HfCheckpoint {
    dir: PathBuf,
    hparams: LlamaHparams,
    shards: Vec<Shard>,
    /// Tensor name → index into `shards`.
    location: HashMap<String, usize>,
    model_id: OnceLock<String>,
}

impl HfCheckpoint {
    /// Loads `dir/config.json` and `dir/model.safetensors`, or the shards named by
    /// `dir/model.safetensors.index.json`.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref().to_owned();
        let hparams =
            LlamaHparams::from_hf_config(&read_capped(&dir.join("config.json"), MAX_JSON_LEN)?)?;
        let index_path = dir.join("model.safetensors.index.json");
        let shard_names: Vec<String> = if index_path.is_file() {
            let index: ShardIndex =
                serde_json::from_slice(&read_capped(&index_path, MAX_JSON_LEN)?)
                    .map_err(|e| bad("model.safetensors.index.json", e.to_string()))?;
            let mut files: Vec<String> = index.weight_map.into_values().collect();
            files.sort();
            files.dedup();
            files
        } else {
            vec!["model.safetensors".to_owned()]
        };
        if shard_names.is_empty() || shard_names.len() > MAX_SHARDS {
            return Err(bad(
                "model.safetensors.index.json",
                format!(
                    "{} shard files (1 to {MAX_SHARDS} allowed)",
                    shard_names.len()
                ),
            ));
        }
        let mut shards = Vec::with_capacity(shard_names.len());
        let mut location = HashMap::new();
        for name in &shard_names {
            let plain = Path::new(name).file_name().and_then(|f| f.to_str()) == Some(name);
            if !plain || name.starts_with('.') {
                return Err(bad(
                    "model.safetensors.index.json",
                    format!("shard name {name:?} is not a plain file name"),
                ));
            }
            let shard = Shard::open(dir.join(name))?;
            for tensor in shard.metadata.tensors().keys() {
                if location.insert(tensor.clone(), shards.len()).is_some() {
                    return Err(bad(
                        "safetensors",
                        format!("tensor {tensor} appears in more than one shard"),
                    ));
                }
            }
            shards.push(shard);
        }
        // Every layer has `LAYER_SUFFIXES.len()` tensors: a layer count the checkpoint cannot
        // hold is corrupt, and would have a loader reserve memory for layers that are not there.
        let per_layer = names::LAYER_SUFFIXES.len();
        if hparams.num_layers > location.len() / per_layer {
            return Err(bad(
                "config.json",
                format!(
                    "{} hidden layers need {} tensors, the checkpoint has {}",
                    hparams.num_layers,
                    hparams.num_layers.saturating_mul(per_layer),
                    location.len()
                ),
            ));
        }
        let mut hparams = hparams;
        if !location.contains_key(names::LM_HEAD) {
            hparams.tie_word_embeddings = true;
        }
        Ok(Self {
            dir,
            hparams,
            shards,
            location,
            model_id: OnceLock::new(),
        })
    }

    /// The checkpoint folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The tensor names in the checkpoint, sorted.
    pub fn tensor_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.location.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }

    /// A tensor exactly as stored (rotate-half layout), converted to `f32`.
    pub fn raw_tensor(&self, name: &str) -> Result<TensorData> {
        let &shard = self
            .location
            .get(name)
            .ok_or_else(|| Error::MissingTensor {
                name: name.to_owned(),
            })?;
        self.shards[shard].tensor(name)
    }
}

impl WeightSource for HfCheckpoint {
    fn hparams(&self) -> &LlamaHparams {
        &self.hparams
    }

    fn tensor(&self, name: &str) -> Result<TensorData> {
        if name == names::LM_HEAD && !self.location.contains_key(name) {
            return self.raw_tensor(names::EMBED_TOKENS);
        }
        let t = self.raw_tensor(name)?;
        if name.ends_with(".self_attn.q_proj.weight") {
            permute_rotate_half_to_interleaved(&t, self.hparams.num_heads)
        } else if name.ends_with(".self_attn.k_proj.weight") {
            permute_rotate_half_to_interleaved(&t, self.hparams.num_kv_heads)
        } else {
            Ok(t)
        }
    }

    fn file_rope_layout(&self) -> RopeLayout {
        RopeLayout::RotateHalf
    }

    fn model_id(&self) -> Result<String> {
        Ok(self
            .model_id
            .get_or_init(|| {
                let mut h = Sha256::new();
                for shard in &self.shards {
                    h.update(&shard.bytes);
                }
                hex::encode(h.finalize())
            })
            .clone())
    }
}

#[cfg(test)]
mod tests;
