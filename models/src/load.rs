//! Building a [`Llama`] from a [`WeightSource`] (a GGUF file, a Hugging Face checkpoint).
//!
//! The source hands out dense `f32` tensors under canonical names, linear weights `[out, in]`,
//! q/k rows already in the interleaved RoPE order; here they are shape-checked against the
//! configuration and transposed into Burn's `[in, out]`.
//!
//! ```no_run
//! # use burn::tensor::Device;
//! # use hearth_models::{GgufWeights, Llama};
//! let weights = GgufWeights::open("assets/SmolLM2-135M-Instruct.Q4_1.gguf")?;
//! let model = Llama::load(&weights, &Device::flex())?;
//! # Ok::<(), hearth_models::Error>(())
//! ```

use burn::tensor::Device;

use crate::config::LlamaConfig;
use crate::llama::Llama;
use crate::weights::WeightSource;
use crate::{Error, Result};

impl Llama {
    /// Loads the model described by `source.hparams()` onto `device`.
    pub fn load(source: &dyn WeightSource, device: &Device) -> Result<Self> {
        let config = LlamaConfig::from_hparams(source.hparams())?;
        Self::load_with(source, &config, device)
    }

    /// Loads with an explicit configuration, which must agree with the source's architecture in
    /// everything but `max_seq_len` (a shorter context saves RoPE-table and cache memory).
    pub fn load_with(
        source: &dyn WeightSource,
        config: &LlamaConfig,
        device: &Device,
    ) -> Result<Self> {
        let from_file = LlamaConfig::from_hparams(source.hparams())?;
        let comparable = LlamaConfig {
            max_seq_len: from_file.max_seq_len,
            ..config.clone()
        };
        if comparable != from_file {
            return Err(Error::Config {
                reason: format!(
                    "configuration {config:?} does not match the weights' {from_file:?}"
                ),
            });
        }
        Self::from_host(config, device, |name, dims| {
            let t = source.tensor(name)?;
            if t.dims != dims {
                return Err(Error::Shape {
                    name: name.to_string(),
                    expected: dims.to_vec(),
                    actual: t.dims,
                });
            }
            Ok(t.values)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::weights::{LlamaHparams, RopeLayout, TensorData, names};

    /// An in-memory weight source built from a seeded tiny model's own tensors.
    struct MapSource {
        hparams: LlamaHparams,
        tensors: HashMap<String, TensorData>,
    }

    impl WeightSource for MapSource {
        fn hparams(&self) -> &LlamaHparams {
            &self.hparams
        }
        fn tensor(&self, name: &str) -> Result<TensorData> {
            self.tensors.get(name).cloned().ok_or(Error::MissingTensor {
                name: name.to_string(),
            })
        }
        fn file_rope_layout(&self) -> RopeLayout {
            RopeLayout::Interleaved
        }
        fn model_id(&self) -> Result<String> {
            Ok("test".into())
        }
    }

    fn tiny_source(seed: u64) -> (LlamaConfig, MapSource) {
        let config = LlamaConfig::tiny(40).with_tie_embeddings(false);
        let mut tensors = HashMap::new();
        let mut rng = crate::prng::Prng::new(seed);
        let mut put = |name: String, dims: Vec<usize>| {
            let n = dims.iter().product();
            tensors.insert(
                name,
                TensorData::new(dims, rng.fill_uniform(n, 0.1)).unwrap(),
            );
        };
        let (h, q, kv, f) = (
            config.hidden,
            config.q_dim(),
            config.kv_dim(),
            config.intermediate,
        );
        for i in 0..config.layers {
            for (suffix, dims) in [
                ("self_attn.q_proj.weight", vec![q, h]),
                ("self_attn.k_proj.weight", vec![kv, h]),
                ("self_attn.v_proj.weight", vec![kv, h]),
                ("self_attn.o_proj.weight", vec![h, q]),
                ("mlp.gate_proj.weight", vec![f, h]),
                ("mlp.up_proj.weight", vec![f, h]),
                ("mlp.down_proj.weight", vec![h, f]),
                ("input_layernorm.weight", vec![h]),
                ("post_attention_layernorm.weight", vec![h]),
            ] {
                put(names::layer(i, suffix), dims);
            }
        }
        put(names::EMBED_TOKENS.into(), vec![config.vocab, h]);
        put(names::LM_HEAD.into(), vec![config.vocab, h]);
        put(names::FINAL_NORM.into(), vec![h]);
        let hparams = LlamaHparams {
            vocab_size: config.vocab,
            hidden_size: h,
            intermediate_size: f,
            num_layers: config.layers,
            num_heads: config.heads,
            num_kv_heads: config.kv_heads,
            head_dim: config.head_dim,
            rope_theta: config.rope_theta as f32,
            rms_norm_eps: config.rms_eps as f32,
            max_position_embeddings: config.max_seq_len,
            tie_word_embeddings: false,
            bos_token_id: None,
            eos_token_id: None,
        };
        (config, MapSource { hparams, tensors })
    }

    #[test]
    fn loads_weights_in_burn_layout() {
        let (config, source) = tiny_source(1);
        let model = Llama::load(&source, &Device::flex()).unwrap();
        assert_eq!(model.config(), &config);
        // q_proj [out, in] in the file is [in, out] in the model.
        let file = source
            .tensor(&names::layer(1, "self_attn.q_proj.weight"))
            .unwrap();
        let w = model.layers[1].self_attn.q_proj.weight.val();
        assert_eq!(w.dims(), [config.hidden, config.q_dim()]);
        let w = crate::llama::to_host(w).unwrap();
        let (out, inp) = (config.q_dim(), config.hidden);
        for (o, i) in [(0, 0), (3, 7), (out - 1, inp - 1)] {
            assert_eq!(w[i * out + o], file.values[o * inp + i]);
        }
        let head = crate::llama::to_host(model.lm_head.as_ref().unwrap().val()).unwrap();
        assert_eq!(head, source.tensor(names::LM_HEAD).unwrap().values);
    }

    #[test]
    fn rejects_missing_and_misshapen_tensors_and_mismatched_configs() {
        let (config, mut source) = tiny_source(2);
        let name = names::layer(0, "mlp.up_proj.weight");
        let good = source.tensors.remove(&name).unwrap();
        assert!(matches!(
            Llama::load(&source, &Device::flex()),
            Err(Error::MissingTensor { .. })
        ));
        let mut bad = good.clone();
        bad.dims.reverse();
        source.tensors.insert(name.clone(), bad);
        assert!(matches!(
            Llama::load(&source, &Device::flex()),
            Err(Error::Shape { .. })
        ));
        source.tensors.insert(name, good);
        let shorter = config.clone().with_max_seq_len(32);
        let model = Llama::load_with(&source, &shorter, &Device::flex()).unwrap();
        assert_eq!(model.config().max_seq_len, 32);
        let wider = LlamaConfig {
            intermediate: 256,
            ..config
        };
        assert!(Llama::load_with(&source, &wider, &Device::flex()).is_err());
    }

    /// The real SmolLM2 GGUF (`$HEARTH_ASSETS` or `<repo>/assets`); `None` only when it is missing
    /// and `HEARTH_SKIP_REAL_MODEL=1`, a test failure with instructions otherwise.
    pub(crate) fn real_model_path() -> Option<std::path::PathBuf> {
        let dir = std::env::var_os("HEARTH_ASSETS")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../assets"));
        let path = dir.join("SmolLM2-135M-Instruct.Q4_1.gguf");
        if path.is_file() {
            return Some(path);
        }
        if std::env::var("HEARTH_SKIP_REAL_MODEL").as_deref() == Ok("1") {
            eprintln!(
                "skipping: {} is missing and HEARTH_SKIP_REAL_MODEL=1",
                path.display()
            );
            return None;
        }
        panic!(
            "{} is missing: run scripts/fetch-assets.sh (or set HEARTH_SKIP_REAL_MODEL=1)",
            path.display()
        );
    }

    #[test]
    fn real_model_says_paris() {
        let Some(path) = real_model_path() else {
            return;
        };
        let weights = crate::GgufWeights::open(&path).unwrap();
        let tokenizer = crate::Tokenizer::from_gguf(weights.gguf()).unwrap();
        let prompt = tokenizer.encode("The capital of France is").unwrap();
        let config = LlamaConfig::from_hparams(weights.hparams())
            .unwrap()
            .with_max_seq_len(64);
        let model = Llama::load_with(&weights, &config, &Device::flex()).unwrap();
        let mut streamed = Vec::new();
        let out = crate::generate(&model, &prompt, &crate::GenerateConfig::greedy(2), |t| {
            streamed.push(t);
            std::ops::ControlFlow::Continue(())
        })
        .unwrap();
        assert_eq!(streamed, out.tokens);
        let text = tokenizer.decode(&out.tokens).unwrap();
        assert_eq!(text, " Paris.");
    }
}
