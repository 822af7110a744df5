//! The member's models on their own machine: the base model with the community adapter (the head
//! version in the store) and the personal adapter (trained by `hearth train`, sealed in the store,
//! never shared) stacked on top.

use std::path::Path;

use anyhow::Context as _;
use burn::tensor::Device;
use hearth_models::{
    AdapterWeights, Factor, Llama, LoraConfig, LoraKey, LoraTensor, Target, Tokenizer,
};
use hearth_protocol::Manifest;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use crate::bridge;
use crate::daemon::persist;
use crate::home::Home;
use crate::store::Cf;

const KEY_PERSONAL: &[u8] = b"personal";

/// An adapter as stored.
#[derive(Debug, Serialize, Deserialize)]
struct StoredAdapter {
    rank: usize,
    alpha: f64,
    targets: Vec<String>,
    seed: u64,
    ffa: bool,
    tensors: Vec<StoredTensor>,
}

#[derive(Debug, Serialize, Deserialize)]
struct StoredTensor {
    layer: usize,
    target: String,
    b: bool,
    dims: [usize; 2],
    values: ByteBuf,
}

fn encode(w: &AdapterWeights) -> StoredAdapter {
    StoredAdapter {
        rank: w.config.rank,
        alpha: w.config.alpha,
        targets: w
            .config
            .targets
            .iter()
            .map(|t| t.name().to_string())
            .collect(),
        seed: w.config.seed,
        ffa: w.config.ffa,
        tensors: w
            .tensors
            .iter()
            .map(|t| StoredTensor {
                layer: t.key.layer,
                target: t.key.target.name().to_string(),
                b: t.key.factor == Factor::B,
                dims: t.dims,
                values: ByteBuf::from(
                    t.values
                        .iter()
                        .flat_map(|v| v.to_le_bytes())
                        .collect::<Vec<u8>>(),
                ),
            })
            .collect(),
    }
}

fn target(name: &str) -> anyhow::Result<Target> {
    Target::from_name(name).with_context(|| format!("unknown LoRA target {name:?} in the store"))
}

fn decode(s: StoredAdapter) -> anyhow::Result<AdapterWeights> {
    let targets = s
        .targets
        .iter()
        .map(|t| target(t))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let config = LoraConfig::new(s.rank, s.alpha, targets)
        .with_seed(s.seed)
        .with_ffa(s.ffa);
    let mut tensors = Vec::with_capacity(s.tensors.len());
    for t in s.tensors {
        anyhow::ensure!(
            t.values.len().is_multiple_of(4),
            "a stored adapter tensor is not f32s"
        );
        tensors.push(LoraTensor {
            key: LoraKey {
                layer: t.layer,
                target: target(&t.target)?,
                factor: if t.b { Factor::B } else { Factor::A },
            },
            dims: t.dims,
            values: t
                .values
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        });
    }
    Ok(AdapterWeights::new(config, tensors)?)
}

/// Stores the personal adapter, sealed.
pub fn save_personal(home: &Home, weights: &AdapterWeights) -> anyhow::Result<()> {
    let bytes = serde_cbor::to_vec(&encode(weights))?;
    home.store.put_secret(Cf::Adapters, KEY_PERSONAL, &bytes)?;
    Ok(())
}

/// The personal adapter, if one was trained.
pub fn load_personal(home: &Home) -> anyhow::Result<Option<AdapterWeights>> {
    let Some(bytes) = home.store.get_secret(Cf::Adapters, KEY_PERSONAL)? else {
        return Ok(None);
    };
    let stored: StoredAdapter = serde_cbor::from_slice(&bytes)
        .map_err(|e| anyhow::anyhow!("corrupt personal adapter in the store: {e}"))?;
    Ok(Some(decode(stored)?))
}

/// The base model of the community (checked against the manifest's hash) on `device`.
pub fn load_community_base(
    home: &Home,
    model: Option<&Path>,
    context: usize,
    device: &Device,
) -> anyhow::Result<(Llama, Tokenizer, Manifest)> {
    let manifest = home
        .manifest()?
        .context("this node is in no community: `hearth join <invite>` first")?
        .body;
    let path = crate::model::resolve_model_path(model)?;
    let (model, tokenizer, id) = crate::model::load_base(&path, context, device)?;
    anyhow::ensure!(
        id == manifest.base_model.sha256,
        "{} is not the community's base model {:?} (sha256 {})",
        path.display(),
        manifest.base_model.name,
        manifest.base_model.sha256
    );
    bridge::check_model(&manifest.lora, model.config())?;
    Ok((model, tokenizer, manifest))
}

/// Attaches the community adapter at its head version (zero at genesis); returns its round and
/// slot.
pub fn attach_community(
    home: &Home,
    manifest: &Manifest,
    model: &mut Llama,
) -> anyhow::Result<(u64, usize)> {
    let slot = model.add_adapter(bridge::lora_config(&manifest.lora)?)?;
    let seeded = model.adapter_weights(slot)?;
    let (round, state) = match persist::load_head(&home.store, &manifest.lora, 1)? {
        Some((round, state, _)) => (round, state),
        None => (0, bridge::genesis(&manifest.lora)),
    };
    let weights = bridge::weights_from_state(&seeded, &state, &manifest.lora)?;
    model.set_adapter_weights(slot, &weights)?;
    Ok((round, slot))
}

/// Attaches the personal adapter, if any; returns its slot.
pub fn attach_personal(home: &Home, model: &mut Llama) -> anyhow::Result<Option<usize>> {
    let Some(weights) = load_personal(home)? else {
        return Ok(None);
    };
    let slot = model.add_adapter(weights.config.clone())?;
    model
        .set_adapter_weights(slot, &weights)
        .context("the personal adapter does not fit this base model")?;
    Ok(Some(slot))
}
