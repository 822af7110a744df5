//! The base model and its adapters: a Llama transformer in Burn, LoRA, GGUF and safetensors loading,
//! the tokenizer and generation, and [`tiny`]: synthetic GGUF models for tests and simulations.
#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

mod config;
pub mod delta;
mod error;
mod eval;
mod generate;
pub mod gguf;
mod llama;
mod load;
mod lora;
pub mod peft;
mod prng;
pub mod safetensors_hf;
pub mod tiny;
mod tokenizer;
pub mod weights;

pub use config::LlamaConfig;
pub use delta::{AdapterWeights, Factor, LoraKey, LoraTensor};
pub use error::{Error, Result};
pub use eval::{Eval, evaluate};
pub use generate::{
    FinishReason, GenerateConfig, Generation, Generator, PREFILL_CHUNK, Sampling, argmax, generate,
    sample,
};
pub use gguf::{Gguf, GgufWeights, sha256_file};
pub use llama::{Attention, Block, KvCache, Llama, MAX_ADAPTERS, Mlp, RmsNorm, Rope};
pub use lora::{LoraConfig, LoraLinear, LoraPair, MAX_RANK, Target};
pub use prng::Prng;
pub use safetensors_hf::HfCheckpoint;
pub use tokenizer::{Role, Tokenizer};
pub use weights::{
    LlamaHparams, RopeLayout, TensorData, WeightSource, names, permute_interleaved_to_rotate_half,
    permute_rotate_half_to_interleaved,
};
