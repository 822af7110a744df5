//! Tiny synthetic models as real GGUF files, for end-to-end tests and simulations.
//!
//! [`gguf_bytes`] (and [`write_gguf`]) produce a complete GGUF v3 file of a Llama model: F32
//! tensors under llama.cpp's names, the `llama.*` hyper-parameters, a byte-level GPT-2 tokenizer
//! and a ChatML chat template. A node loads it through exactly the path of the real SmolLM2 file
//! ([`GgufWeights::open`], [`crate::Tokenizer::from_gguf`], [`LlamaConfig::from_hparams`],
//! [`Llama::load_with`], [`WeightSource::model_id`]).
//!
//! The weights are those of [`Llama::init_random`]`(config, seed)`, so the loaded model computes
//! the same logits. They are stored as the model holds them, q/k rows paired for interleaved RoPE,
//! which is also how llama.cpp stores them. The same `config` and `seed` always give the same
//! bytes, hence the same model id.
//!
//! The vocabulary: ids 0–2 are `<|endoftext|>`, `<|im_start|>` (BOS), `<|im_end|>` (EOS), then the
//! 256 byte characters, then the tokens of [`MERGES`], then `[PAD{id}]` (unused) up to
//! `config.vocab`, which must be at least [`MIN_VOCAB`].
//!
//! ```no_run
//! # fn main() -> hearth_models::Result<()> {
//! use hearth_models::{GgufWeights, LlamaConfig, tiny};
//! tiny::write_gguf("tiny.gguf".as_ref(), &LlamaConfig::tiny(320), 7)?;
//! let weights = GgufWeights::open("tiny.gguf")?;
//! # Ok(()) }
//! ```

use std::path::Path;

use burn::tensor::Device;

use crate::gguf::writer::{Writer, str_array};
use crate::gguf::{Gguf, GgufWeights, Value};
use crate::llama::to_host;
use crate::lora::{Target, transpose};
use crate::{Error, Llama, LlamaConfig, Result, WeightSource};

/// The control tokens, ids 0, 1 (BOS) and 2 (EOS), as in SmolLM2.
pub const SPECIALS: [&str; 3] = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];

/// The BPE merges, in rank order; each adds its merged token to the vocabulary.
pub const MERGES: [&str; 8] = ["Ġ t", "h e", "Ġt he", "i n", "e r", "Ġ a", "o n", "r e"];

/// The smallest `config.vocab`: the specials, 256 byte tokens and one token per merge.
pub const MIN_VOCAB: usize = SPECIALS.len() + 256 + MERGES.len();

/// A ChatML template (the tokenizer implements ChatML itself; the template is informational).
const CHAT_TEMPLATE: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + \
    '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}\
    {{ '<|im_start|>assistant\\n' }}{% endif %}";

/// GGUF `token_type` of ordinary tokens.
const NORMAL: i32 = 1;
/// GGUF `token_type` of control (special) tokens.
const CONTROL: i32 = 3;
/// GGUF `token_type` of unused (padding) tokens.
const UNUSED: i32 = 5;

/// The bytes of a GGUF file holding [`Llama::init_random`]`(config, seed)` and the tiny tokenizer.
///
/// Fails when the configuration is invalid, its vocabulary is below [`MIN_VOCAB`], or its
/// `rope_theta`/`rms_eps` do not survive the file's `f32` (the file must load back as `config`).
pub fn gguf_bytes(config: &LlamaConfig, seed: u64) -> Result<Vec<u8>> {
    config.validate()?;
    if config.vocab < MIN_VOCAB {
        return Err(Error::Config {
            reason: format!(
                "vocab {} is below the tiny tokenizer's {MIN_VOCAB} tokens",
                config.vocab
            ),
        });
    }
    let u32_of = |v: usize| Value::U32(v as u32); // validated: every size is below 2^24
    let (tokens, types) = vocabulary(config.vocab);
    let writer = Writer::new()
        .kv("general.architecture", Value::String("llama".into()))
        .kv("general.name", Value::String(format!("hearth-tiny-{seed}")))
        .kv("general.file_type", Value::U32(0))
        .kv("llama.vocab_size", u32_of(config.vocab))
        .kv("llama.context_length", u32_of(config.max_seq_len))
        .kv("llama.embedding_length", u32_of(config.hidden))
        .kv("llama.block_count", u32_of(config.layers))
        .kv("llama.feed_forward_length", u32_of(config.intermediate))
        .kv("llama.attention.head_count", u32_of(config.heads))
        .kv("llama.attention.head_count_kv", u32_of(config.kv_heads))
        .kv("llama.attention.key_length", u32_of(config.head_dim))
        .kv("llama.attention.value_length", u32_of(config.head_dim))
        .kv("llama.rope.dimension_count", u32_of(config.head_dim))
        .kv("llama.rope.freq_base", Value::F32(config.rope_theta as f32))
        .kv(
            "llama.attention.layer_norm_rms_epsilon",
            Value::F32(config.rms_eps as f32),
        )
        .kv("tokenizer.ggml.model", Value::String("gpt2".into()))
        .kv("tokenizer.ggml.pre", Value::String("smollm".into()))
        .kv("tokenizer.ggml.tokens", str_array(&tokens))
        .kv(
            "tokenizer.ggml.token_type",
            Value::Array(types.into_iter().map(Value::I32).collect()),
        )
        .kv("tokenizer.ggml.merges", str_array(&MERGES))
        .kv("tokenizer.ggml.bos_token_id", Value::U32(1))
        .kv("tokenizer.ggml.eos_token_id", Value::U32(2))
        .kv("tokenizer.ggml.padding_token_id", Value::U32(2))
        .kv(
            "tokenizer.chat_template",
            Value::String(CHAT_TEMPLATE.into()),
        );
    let model = Llama::init_random(config, seed, &Device::flex())?;
    let bytes = add_tensors(writer, &model)?.to_bytes();
    let back = GgufWeights::new(Gguf::from_bytes(bytes.clone())?)?;
    let loaded = LlamaConfig::from_hparams(back.hparams())?;
    if &loaded != config {
        return Err(Error::Config {
            reason: format!("{config:?} reads back from gguf as {loaded:?}"),
        });
    }
    Ok(bytes)
}

/// Writes [`gguf_bytes`]`(config, seed)` to `path`.
pub fn write_gguf(path: &Path, config: &LlamaConfig, seed: u64) -> Result<()> {
    let bytes = gguf_bytes(config, seed)?;
    std::fs::write(path, bytes).map_err(|source| Error::Io {
        path: path.to_owned(),
        source,
    })
}

/// GPT-2's byte → printable character map (the alphabet of byte-level BPE).
fn byte_chars() -> Vec<char> {
    let printable =
        |b: u32| (0x21..=0x7E).contains(&b) || ((0xA1..=0xFF).contains(&b) && b != 0xAD);
    let mut shifted = 256;
    (0..256u32)
        .map(|b| {
            let c = if printable(b) {
                b
            } else {
                shifted += 1;
                shifted - 1
            };
            // Code points below 0x200 are all valid characters.
            char::from_u32(c).unwrap_or(char::REPLACEMENT_CHARACTER)
        })
        .collect()
}

/// The `vocab` tokens and their GGUF token types.
fn vocabulary(vocab: usize) -> (Vec<String>, Vec<i32>) {
    let mut tokens: Vec<String> = SPECIALS.iter().map(|s| (*s).to_owned()).collect();
    let mut types = vec![CONTROL; SPECIALS.len()];
    tokens.extend(byte_chars().iter().map(char::to_string));
    tokens.extend(MERGES.iter().map(|m| m.replace(' ', "")));
    types.resize(tokens.len(), NORMAL);
    for id in tokens.len()..vocab {
        tokens.push(format!("[PAD{id}]"));
        types.push(UNUSED);
    }
    (tokens, types)
}

/// Adds the model's tensors to `w` under their GGUF names, linear weights `[out, in]`.
fn add_tensors(mut w: Writer, model: &Llama) -> Result<Writer> {
    let embed = model.embed_tokens.val();
    w = w.f32_tensor("token_embd.weight", &embed.dims(), &to_host(embed)?);
    for (i, block) in model.layers.iter().enumerate() {
        let norms = [
            ("attn_norm", &block.input_layernorm),
            ("ffn_norm", &block.post_attention_layernorm),
        ];
        for (name, norm) in norms {
            let t = norm.weight.val();
            w = w.f32_tensor(&format!("blk.{i}.{name}.weight"), &t.dims(), &to_host(t)?);
        }
        for (name, target) in [
            ("attn_q", Target::Q),
            ("attn_k", Target::K),
            ("attn_v", Target::V),
            ("attn_output", Target::O),
            ("ffn_gate", Target::Gate),
            ("ffn_up", Target::Up),
            ("ffn_down", Target::Down),
        ] {
            // Burn holds [in, out].
            let t = block.linear(target).weight.val();
            let [inp, out] = t.dims();
            let values = transpose(&to_host(t)?, inp, out);
            w = w.f32_tensor(&format!("blk.{i}.{name}.weight"), &[out, inp], &values);
        }
    }
    let norm = model.norm.weight.val();
    w = w.f32_tensor("output_norm.weight", &norm.dims(), &to_host(norm)?);
    if let Some(head) = &model.lm_head {
        let head = head.val();
        w = w.f32_tensor("output.weight", &head.dims(), &to_host(head)?);
    }
    Ok(w)
}

#[cfg(test)]
mod tests;
