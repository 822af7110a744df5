//! The base model and its adapters: a Llama transformer in Burn, LoRA, GGUF and safetensors loading,
//! the tokenizer and generation.
#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

mod error;
mod weights;
pub mod gguf;

pub use error::{Error, Result};
pub use gguf::{Gguf, GgufWeights, sha256_file};
pub use weights::{
    LlamaHparams, RopeLayout, TensorData, WeightSource, names, permute_interleaved_to_rotate_half,
    permute_rotate_half_to_interleaved,
};
