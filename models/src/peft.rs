//! Adapters in the Hugging Face PEFT layout: `adapter_config.json` + `adapter_model.safetensors`,
//! so an exported adapter loads with `PeftModel.from_pretrained(base, dir)` and a PEFT-trained
//! LoRA loads here.
//!
//! Tensor names are `base_model.model.model.layers.{i}.{self_attn|mlp}.{x}_proj.lora_A.weight`
//! (`[r, in]`) and `...lora_B.weight` (`[out, r]`), stored as F32 (F16 and BF16 are accepted on
//! import). The scale is `lora_alpha / r` (`use_rslora` files are converted to the equivalent
//! alpha).
//!
//! # RoPE layout
//!
//! The model's q/k output features are in the interleaved RoPE order (GGUF, see
//! [`crate::weights`]); a Hugging Face base pairs them rotate-half. The rows of `q_proj`/`k_proj`
//! `lora_B` are therefore permuted with [`permute_interleaved_to_rotate_half`] on export (per
//! head: `heads` for q, `kv_heads` for k) and back with [`permute_rotate_half_to_interleaved`] on
//! import, so the exported adapter is correct for the Hugging Face base and a round trip is exact.
//! `lora_A` (input side) and the other targets need no permutation.
//!
//! Hearth-specific facts (the FFA flag and the `A` seed) travel in the safetensors header metadata
//! (`hearth.ffa`, `hearth.seed`), which PEFT ignores.

use std::collections::HashMap;
use std::path::Path;

use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use serde_json::{Value, json};

use crate::config::LlamaConfig;
use crate::delta::{AdapterWeights, Factor, LoraKey, LoraTensor};
use crate::lora::{LoraConfig, Target, transpose};
use crate::weights::{
    TensorData, permute_interleaved_to_rotate_half, permute_rotate_half_to_interleaved,
};
use crate::{Error, Result};

/// File name of the PEFT configuration.
pub const CONFIG_FILE: &str = "adapter_config.json";
/// File name of the PEFT weights.
pub const WEIGHTS_FILE: &str = "adapter_model.safetensors";
/// Largest `adapter_config.json` accepted.
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;
/// Largest `adapter_model.safetensors` accepted.
pub const MAX_WEIGHTS_BYTES: u64 = 2 << 30;

const PREFIX: &str = "base_model.model.model.layers.";

fn format_err(what: &'static str, reason: impl Into<String>) -> Error {
    Error::Format {
        what,
        reason: reason.into(),
    }
}

/// The PEFT tensor name of a factor.
pub fn tensor_name(key: &LoraKey) -> String {
    let f = match key.factor {
        Factor::A => "A",
        Factor::B => "B",
    };
    format!(
        "{PREFIX}{}.{}.lora_{f}.weight",
        key.layer,
        key.target.module_path()
    )
}

/// Parses a PEFT tensor name.
pub fn parse_tensor_name(name: &str) -> Option<LoraKey> {
    let rest = name.strip_prefix(PREFIX)?;
    let (layer, rest) = rest.split_once('.')?;
    if layer.is_empty() || !layer.bytes().all(|b| b.is_ascii_digit()) || layer.len() > 6 {
        return None;
    }
    let layer: usize = layer.parse().ok()?;
    let (module, factor) = if let Some(m) = rest.strip_suffix(".lora_A.weight") {
        (m, Factor::A)
    } else {
        (rest.strip_suffix(".lora_B.weight")?, Factor::B)
    };
    let target = Target::ALL
        .into_iter()
        .find(|t| t.module_path() == module)?;
    Some(LoraKey {
        layer,
        target,
        factor,
    })
}

/// `(in, out)` of a target in a model.
fn target_dims(model: &LlamaConfig, target: Target) -> (usize, usize) {
    let (h, q, kv, f) = (
        model.hidden,
        model.q_dim(),
        model.kv_dim(),
        model.intermediate,
    );
    match target {
        Target::Q => (h, q),
        Target::K | Target::V => (h, kv),
        Target::O => (q, h),
        Target::Gate | Target::Up => (h, f),
        Target::Down => (f, h),
    }
}

/// The `adapter_config.json` text for an adapter over `base_model_name_or_path`.
pub fn config_json(config: &LoraConfig, base_model_name_or_path: &str) -> String {
    let alpha = if config.alpha.fract() == 0.0 && config.alpha.abs() < 1e15 {
        json!(config.alpha as i64)
    } else {
        json!(config.alpha)
    };
    let targets: Vec<&str> = config.targets.iter().map(|t| t.name()).collect();
    let v = json!({
        "alpha_pattern": {},
        "auto_mapping": null,
        "base_model_name_or_path": base_model_name_or_path,
        "bias": "none",
        "fan_in_fan_out": false,
        "inference_mode": true,
        "init_lora_weights": true,
        "layers_pattern": null,
        "layers_to_transform": null,
        "lora_alpha": alpha,
        "lora_dropout": 0.0,
        "modules_to_save": null,
        "peft_type": "LORA",
        "r": config.rank,
        "rank_pattern": {},
        "revision": null,
        "target_modules": targets,
        "task_type": "CAUSAL_LM",
        "use_dora": false,
        "use_rslora": false
    });
    // A `Value` always serialises.
    serde_json::to_string_pretty(&v).unwrap_or_default()
}

/// Encodes an adapter as (`adapter_config.json` text, `adapter_model.safetensors` bytes).
pub fn encode(
    weights: &AdapterWeights,
    model: &LlamaConfig,
    base_model_name_or_path: &str,
) -> Result<(String, Vec<u8>)> {
    let mut named: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::with_capacity(weights.tensors.len());
    for t in &weights.tensors {
        let [rows, cols] = t.dims;
        // Burn layout → PEFT layout: A [in, r] → [r, in]; B [r, out] → [out, r].
        let peft = TensorData::new(vec![cols, rows], transpose(&t.values, rows, cols))?;
        let peft = match (t.key.factor, t.key.target) {
            (Factor::B, Target::Q) => permute_interleaved_to_rotate_half(&peft, model.heads)?,
            (Factor::B, Target::K) => permute_interleaved_to_rotate_half(&peft, model.kv_heads)?,
            _ => peft,
        };
        let bytes: Vec<u8> = peft.values.iter().flat_map(|v| v.to_le_bytes()).collect();
        named.push((tensor_name(&t.key), peft.dims, bytes));
    }
    let views = named
        .iter()
        .map(|(name, dims, bytes)| {
            TensorView::new(Dtype::F32, dims.clone(), bytes).map(|v| (name.clone(), v))
        })
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| format_err("safetensors", e.to_string()))?;
    let metadata = HashMap::from([
        ("format".to_string(), "pt".to_string()),
        ("hearth.ffa".to_string(), weights.config.ffa.to_string()),
        ("hearth.seed".to_string(), weights.config.seed.to_string()),
    ]);
    let bytes = safetensors::serialize(views, Some(metadata))
        .map_err(|e| format_err("safetensors", e.to_string()))?;
    Ok((
        config_json(&weights.config, base_model_name_or_path),
        sorted_metadata(bytes)?,
    ))
}

/// The same safetensors bytes with the header's `__metadata__` keys in sorted order: the crate
/// writes them in a `HashMap`'s random order, and an export should be the same bytes every time.
fn sorted_metadata(mut bytes: Vec<u8>) -> Result<Vec<u8>> {
    let bad = |why: &str| format_err("safetensors", why.to_string());
    let len: [u8; 8] = bytes
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| bad("no header"))?;
    let n = usize::try_from(u64::from_le_bytes(len)).map_err(|_| bad("header too long"))?;
    let header = bytes
        .get(8..8 + n)
        .ok_or_else(|| bad("header past the end"))?;
    let mut value: Value = serde_json::from_slice(header).map_err(|e| bad(&e.to_string()))?;
    if let Some(Value::Object(meta)) = value.get_mut("__metadata__") {
        let sorted: std::collections::BTreeMap<String, Value> =
            std::mem::take(meta).into_iter().collect();
        meta.extend(sorted);
    }
    let mut text = serde_json::to_vec(&value).map_err(|e| bad(&e.to_string()))?;
    if text.len() > n {
        return Err(bad("sorted header longer than the original"));
    }
    text.resize(n, b' ');
    bytes[8..8 + n].copy_from_slice(&text);
    Ok(bytes)
}

/// Writes `adapter_config.json` and `adapter_model.safetensors` into `dir` (created if missing).
pub fn save(
    dir: &Path,
    weights: &AdapterWeights,
    model: &LlamaConfig,
    base_model_name_or_path: &str,
) -> Result<()> {
    let (config, tensors) = encode(weights, model, base_model_name_or_path)?;
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let config_path = dir.join(CONFIG_FILE);
    std::fs::write(&config_path, config).map_err(io(&config_path))?;
    let weights_path = dir.join(WEIGHTS_FILE);
    std::fs::write(&weights_path, tensors).map_err(io(&weights_path))?;
    Ok(())
}

/// Reads an adapter saved in the PEFT layout from `dir`, for a model of shape `model`.
pub fn load(dir: &Path, model: &LlamaConfig) -> Result<AdapterWeights> {
    let config = read_limited(&dir.join(CONFIG_FILE), MAX_CONFIG_BYTES)?;
    let config =
        String::from_utf8(config).map_err(|_| format_err("adapter_config.json", "not utf-8"))?;
    let tensors = read_limited(&dir.join(WEIGHTS_FILE), MAX_WEIGHTS_BYTES)?;
    decode(&config, &tensors, model)
}

fn read_limited(path: &Path, limit: u64) -> Result<Vec<u8>> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let len = std::fs::metadata(path).map_err(io)?.len();
    check_size(path, len, limit)?;
    std::fs::read(path).map_err(io)
}

fn check_size(path: &Path, len: u64, limit: u64) -> Result<()> {
    if len > limit {
        return Err(format_err(
            "peft adapter",
            format!("{} is {len} bytes, the limit is {limit}", path.display()),
        ));
    }
    Ok(())
}

/// Parses the LoRA settings of an `adapter_config.json`, refusing features this crate does not
/// implement (DoRA, per-module ranks, a subset of layers, biases, saved modules).
pub fn parse_config(text: &str) -> Result<LoraConfig> {
    let bad = |reason: String| format_err("adapter_config.json", reason);
    let v: Value = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
    let field = |k: &str| v.get(k).filter(|x| !x.is_null());
    match field("peft_type").and_then(Value::as_str) {
        Some("LORA") => {}
        other => return Err(bad(format!("peft_type {other:?} is not LORA"))),
    }
    let rank = field("r")
        .and_then(Value::as_u64)
        .and_then(|r| usize::try_from(r).ok())
        .ok_or_else(|| bad("r is missing or not a positive integer".into()))?;
    let mut alpha = field("lora_alpha")
        .and_then(Value::as_f64)
        .ok_or_else(|| bad("lora_alpha is missing or not a number".into()))?;
    let is_true = |k: &str| field(k).and_then(Value::as_bool).unwrap_or(false);
    if is_true("use_rslora") {
        // rsLoRA scales by alpha/√r; the same update with our alpha/r scale.
        alpha *= (rank as f64).sqrt();
    }
    for unsupported in ["use_dora", "fan_in_fan_out"] {
        if is_true(unsupported) {
            return Err(bad(format!("{unsupported} is not supported")));
        }
    }
    for key in ["rank_pattern", "alpha_pattern"] {
        if field(key)
            .and_then(Value::as_object)
            .is_some_and(|m| !m.is_empty())
        {
            return Err(bad(format!("{key} is not supported")));
        }
    }
    for key in ["layers_to_transform", "modules_to_save"] {
        if field(key).is_some() {
            return Err(bad(format!("{key} is not supported")));
        }
    }
    if let Some(b) = field("bias").and_then(Value::as_str)
        && b != "none"
    {
        return Err(bad(format!("bias {b:?} is not supported")));
    }
    let targets = field("target_modules")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("target_modules is not a list".into()))?
        .iter()
        .map(|t| {
            t.as_str()
                .and_then(Target::from_name)
                .ok_or_else(|| bad(format!("target module {t} is not a Llama projection")))
        })
        .collect::<Result<Vec<_>>>()?;
    let mut targets = targets;
    targets.sort();
    let config = LoraConfig::new(rank, alpha, targets);
    config.validate()?;
    Ok(config)
}

/// Decodes an adapter from the text of `adapter_config.json` and the bytes of
/// `adapter_model.safetensors`, checking every tensor against `model`.
pub fn decode(config_json: &str, tensors: &[u8], model: &LlamaConfig) -> Result<AdapterWeights> {
    let mut config = parse_config(config_json)?;
    let bad = |reason: String| format_err("adapter_model.safetensors", reason);
    let (_, header) = SafeTensors::read_metadata(tensors).map_err(|e| bad(e.to_string()))?;
    if let Some(meta) = header.metadata() {
        config.ffa = meta.get("hearth.ffa").is_some_and(|v| v == "true");
        if let Some(seed) = meta.get("hearth.seed") {
            config.seed = seed
                .parse()
                .map_err(|_| bad(format!("hearth.seed {seed:?}")))?;
        }
    }
    let st = SafeTensors::deserialize(tensors).map_err(|e| bad(e.to_string()))?;
    let expected = model.layers * config.targets.len() * 2;
    if st.len() != expected {
        return Err(bad(format!("{} tensors, expected {expected}", st.len())));
    }
    let mut out = Vec::with_capacity(expected);
    for (name, view) in st.iter() {
        let key =
            parse_tensor_name(name).ok_or_else(|| bad(format!("unexpected tensor {name}")))?;
        if key.layer >= model.layers || !config.targets.contains(&key.target) {
            return Err(bad(format!("tensor {name} is outside the adapter")));
        }
        let (d_in, d_out) = target_dims(model, key.target);
        let peft_dims = match key.factor {
            Factor::A => [config.rank, d_in],
            Factor::B => [d_out, config.rank],
        };
        if view.shape() != peft_dims {
            return Err(Error::Shape {
                name: name.to_string(),
                expected: peft_dims.to_vec(),
                actual: view.shape().to_vec(),
            });
        }
        let values = to_f32(view.dtype(), view.data()).ok_or_else(|| {
            bad(format!(
                "tensor {name} has dtype {}, expected F32, F16 or BF16",
                view.dtype()
            ))
        })?;
        let peft = TensorData::new(peft_dims.to_vec(), values)?;
        let peft = match (key.factor, key.target) {
            (Factor::B, Target::Q) => permute_rotate_half_to_interleaved(&peft, model.heads)?,
            (Factor::B, Target::K) => permute_rotate_half_to_interleaved(&peft, model.kv_heads)?,
            _ => peft,
        };
        let [rows, cols] = peft_dims;
        out.push(LoraTensor {
            key,
            dims: [cols, rows],
            values: transpose(&peft.values, rows, cols),
        });
    }
    AdapterWeights::new(config, out)
}

fn to_f32(dtype: Dtype, data: &[u8]) -> Option<Vec<f32>> {
    match dtype {
        Dtype::F32 => Some(
            data.chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
        ),
        Dtype::F16 => Some(
            data.chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
        ),
        Dtype::BF16 => Some(
            data.chunks_exact(2)
                .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
        ),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
