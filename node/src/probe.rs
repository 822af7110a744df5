//! The community probe-set check on a node: the base model, with a candidate community adapter,
//! evaluated on the manifest's probe text ([`hearth_protocol::ProbeSet`]).
//!
//! The text is tokenized with the base model's tokenizer and evaluated in consecutive windows
//! of [`PROBE_WINDOW_TOKENS`] tokens on the CPU, the same
//! on every node of the community (same base model, same text, same windows), so that nodes
//! reach the same verdict. The comparison with the parent and the tolerance are the federation
//! crate's ([`hearth_federation::Probe`]).

use std::sync::Mutex;

use anyhow::Context as _;
use burn::tensor::Device;
use hearth_federation::{Adapter, Probe};
use hearth_models::{AdapterWeights, Llama, Tokenizer};
use hearth_protocol::{LoraShape, Manifest, PROBE_WINDOW_TOKENS};

use crate::bridge;

/// The evaluator of a community's probe set.
pub struct ModelProbe {
    inner: Mutex<Inner>,
    tokens: usize,
}

struct Inner {
    model: Llama,
    slot: usize,
    seeded: AdapterWeights,
    shape: LoraShape,
    tokens: Vec<u32>,
    window: usize,
}

impl std::fmt::Debug for ModelProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelProbe")
            .field("tokens", &self.tokens)
            .finish_non_exhaustive()
    }
}

impl ModelProbe {
    /// The evaluator for `manifest`'s probe set over `model` (the base, on the CPU inference
    /// device, no adapter attached) and its tokenizer; `None` if the manifest has no probe set.
    pub fn new(
        manifest: &Manifest,
        mut model: Llama,
        tokenizer: &Tokenizer,
    ) -> anyhow::Result<Option<Self>> {
        let Some(set) = &manifest.aggregation.probe else {
            return Ok(None);
        };
        bridge::check_model(&manifest.lora, model.config())?;
        let tokens = tokenizer
            .encode_ordinary(&set.text)
            .context("tokenizing the community's probe text")?;
        let window = PROBE_WINDOW_TOKENS.min(model.config().max_seq_len);
        if tokens.len() < 2 || window < 2 {
            anyhow::bail!(
                "the community's probe text gives {} tokens: nothing to evaluate",
                tokens.len()
            );
        }
        let slot = model.add_adapter(bridge::lora_config(&manifest.lora)?)?;
        let seeded = model.adapter_weights(slot)?;
        let n = tokens.len();
        Ok(Some(ModelProbe {
            inner: Mutex::new(Inner {
                model,
                slot,
                seeded,
                shape: manifest.lora.clone(),
                tokens,
                window,
            }),
            tokens: n,
        }))
    }

    /// Loads the base model at `path` for the probe (context of one probe window).
    pub fn load(manifest: &Manifest, path: &std::path::Path) -> anyhow::Result<Option<Self>> {
        if manifest.aggregation.probe.is_none() {
            return Ok(None);
        }
        let (model, tokenizer, id) =
            crate::model::load_base(path, PROBE_WINDOW_TOKENS, &Device::flex())?;
        if id != manifest.base_model.sha256 {
            anyhow::bail!(
                "{} (sha256 {id}) is not the community's base model (sha256 {})",
                path.display(),
                manifest.base_model.sha256
            );
        }
        Self::new(manifest, model, &tokenizer)
    }

    /// Tokens of the probe text.
    pub fn tokens(&self) -> usize {
        self.tokens
    }
}

impl Probe for ModelProbe {
    fn loss(&self, adapter: &Adapter) -> Result<f64, String> {
        let mut inner = self
            .inner
            .lock()
            .map_err(|_| "the probe evaluator panicked earlier".to_string())?;
        let inner = &mut *inner;
        let mut weights = inner.seeded.clone();
        let b = bridge::model_from_wire(&adapter.to_flat(), &inner.shape)
            .map_err(|e| format!("{e:#}"))?;
        weights.set_flat_b(&b).map_err(|e| e.to_string())?;
        inner
            .model
            .set_adapter_weights(inner.slot, &weights)
            .map_err(|e| e.to_string())?;
        let eval = hearth_models::evaluate(&inner.model, &inner.tokens, inner.window, |_| {})
            .map_err(|e| e.to_string())?;
        Ok(eval.mean_nll())
    }
}

#[cfg(test)]
mod tests {
    use hearth_models::{LlamaConfig, Target as LoraTarget};
    use hearth_protocol::{BaseModel, Keypair, Limits, Privacy, ProbeSet, Schedule};

    use super::*;
    use crate::cli::membership::target_shape;

    fn manifest(config: &LlamaConfig, probe: Option<ProbeSet>) -> Manifest {
        Manifest {
            name: "probe".into(),
            admin: Keypair::from_seed([1; 32]).member_id(),
            created: 1,
            base_model: BaseModel {
                name: "tiny".into(),
                sha256: hearth_protocol::Hash32::digest(b"tiny"),
            },
            lora: LoraShape {
                rank: 2,
                alpha: 4.0,
                layers: config.layers as u32,
                targets: [LoraTarget::Q, LoraTarget::V]
                    .into_iter()
                    .map(|t| target_shape(t, config))
                    .collect(),
                ffa_seed: 5,
            },
            privacy: Privacy::default(),
            aggregation: hearth_protocol::Aggregation {
                probe,
                ..Default::default()
            },
            schedule: Schedule::default(),
            limits: Limits::default(),
        }
    }

    fn base() -> (Llama, Tokenizer, LlamaConfig) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tiny.gguf");
        let config = LlamaConfig::tiny(320);
        hearth_models::tiny::write_gguf(&path, &config, 7).unwrap();
        let (model, tokenizer, _) =
            crate::model::load_base(&path, PROBE_WINDOW_TOKENS, &Device::flex()).unwrap();
        let config = model.config().clone();
        (model, tokenizer, config)
    }

    #[test]
    fn the_probe_loss_is_the_base_loss_at_genesis_and_moves_with_the_adapter() {
        let (model, tokenizer, config) = base();
        let none = manifest(&config, None);
        assert!(
            ModelProbe::new(&none, model.clone(), &tokenizer)
                .unwrap()
                .is_none()
        );
        let text = "To be, or not to be, that is the question: whether 'tis nobler in the mind \
                    to suffer the slings and arrows of outrageous fortune. "
            .repeat(8);
        let m = manifest(
            &config,
            Some(ProbeSet {
                text: text.clone(),
                max_increase: 0.05,
            }),
        );
        let probe = ModelProbe::new(&m, model.clone(), &tokenizer)
            .unwrap()
            .unwrap();
        let tokens = tokenizer.encode_ordinary(&text).unwrap();
        assert_eq!(probe.tokens(), tokens.len());
        assert!(tokens.len() > PROBE_WINDOW_TOKENS, "more than one window");
        // B = 0: the adapter adds nothing, so the probe loss is the base's on the same windows.
        let zero = Adapter::zeros(&m.lora);
        let base = hearth_models::evaluate(&model, &tokens, PROBE_WINDOW_TOKENS, |_| {})
            .unwrap()
            .mean_nll();
        let at_genesis = probe.loss(&zero).unwrap();
        assert!((at_genesis - base).abs() < 1e-5, "{at_genesis} vs {base}");
        // A non-zero adapter moves it; the same adapter gives the same bits again.
        let values: Vec<f32> = (0..zero.len())
            .map(|i| ((i * 7919 % 1000) as f32 / 1000.0 - 0.5) * 0.5)
            .collect();
        let moved = Adapter::from_flat(&m.lora, &values).unwrap();
        let loss = probe.loss(&moved).unwrap();
        assert!(
            loss.is_finite() && (loss - at_genesis).abs() > 1e-4,
            "{loss}"
        );
        assert_eq!(probe.loss(&moved).unwrap().to_bits(), loss.to_bits());
        assert_eq!(probe.loss(&zero).unwrap().to_bits(), at_genesis.to_bits());
    }

    #[test]
    fn a_probe_text_of_one_token_is_refused() {
        let (model, tokenizer, config) = base();
        let m = manifest(
            &config,
            Some(ProbeSet {
                text: "a".into(),
                max_increase: 0.05,
            }),
        );
        let e = ModelProbe::new(&m, model, &tokenizer).unwrap_err();
        assert!(e.to_string().contains("nothing to evaluate"), "{e}");
    }
}
