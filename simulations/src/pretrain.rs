//! A `pretrained` base: the tiny byte-level Llama with every weight trained on plays that no
//! member holds (`model.pretrain.plays`), as a community would start from a small open model.
//!
//! Training: seeded random weights, every base parameter made trainable, AdamW with gradient
//! clipping at 1, linear warm-up over the first 5 % of the steps then cosine down to 10 %,
//! windows drawn uniformly from the text with a seeded generator. The weights are then frozen
//! again (the model is rebuilt from them through [`Llama::load_with`]) and cached as a
//! safetensors file named by the hash of everything that shaped them, so later runs with the
//! same settings skip the training. The base's id (the manifest's `base_model.sha256`) is the
//! SHA-256 of that file.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use burn::module::{Module, ModuleMapper, Param};
use burn::optim::{AdamWConfig, GradientsParams, grad_clipping::GradientClippingConfig};
use burn::tensor::{Device, Int, Tensor, TensorData as BurnData};
use hearth_models::{
    Llama, LlamaConfig, LlamaHparams, RopeLayout, TensorData, WeightSource, names,
};
use hearth_protocol::Hash32;
use safetensors::{Dtype, SafeTensors, tensor::TensorView};

use crate::data::Corpus;
use crate::error::{Error, Result};
use crate::model::{Base, llama_config};
use crate::rng::{purpose, stream};
use crate::scenario::Scenario;

/// Largest cache file read (a tiny model is well under a megabyte).
const MAX_CACHE_BYTES: u64 = 256 << 20;

/// The scenario's pre-trained base, from the cache or trained now (`out`'s parent holds the
/// default cache folder).
pub fn base(s: &Scenario, corpus: &Corpus, out: &Path) -> Result<Base> {
    let config = llama_config(s);
    let text = pretrain_text(s, corpus)?;
    let key = cache_key(s, &config, &text);
    let dir = cache_dir(s, out);
    let path = dir.join(format!("base-{}.safetensors", &key.to_string()[..16]));
    let bytes = match read_cache(&path)? {
        Some(b) => b,
        None => {
            let model = train(s, &config, &text)?;
            let bytes = to_safetensors(&model)?;
            std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, &bytes).map_err(|e| Error::io(&tmp, e))?;
            std::fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))?;
            bytes
        }
    };
    let id = Hash32::digest(&bytes);
    let source = MapSource::from_safetensors(&bytes, &config)?;
    let model = Llama::load_with(&source, &config, &Device::flex().autodiff())?;
    Base::new(model, id, s)
}

/// The folder of cached bases.
pub fn cache_dir(s: &Scenario, out: &Path) -> PathBuf {
    s.model.pretrain.cache_dir.clone().unwrap_or_else(|| {
        out.parent()
            .unwrap_or(Path::new("."))
            .join(".hearth-sim-cache")
    })
}

/// The pre-training plays' speeches, all speakers, as bytes.
fn pretrain_text(s: &Scenario, corpus: &Corpus) -> Result<Vec<u32>> {
    let plays = corpus.only(&s.model.pretrain.plays)?;
    let mut text = String::new();
    for p in &plays.plays {
        for (_, speech) in &p.speeches {
            text.push_str(speech);
            text.push_str("\n\n");
        }
    }
    let window = s.model.pretrain.seq_len + 1;
    if text.len() < window {
        return Err(Error::Data {
            reason: format!(
                "the pre-training plays hold {} bytes, fewer than one window",
                text.len()
            ),
        });
    }
    Ok(text.bytes().map(u32::from).collect())
}

fn cache_key(s: &Scenario, config: &LlamaConfig, text: &[u32]) -> Hash32 {
    let p = &s.model.pretrain;
    let mut bytes = format!(
        "hearth-sim base v1\n{config:?}\nseed {}\nsteps {} batch {} seq {} lr {}\n",
        s.model.init_seed, p.steps, p.batch_size, p.seq_len, p.learning_rate
    )
    .into_bytes();
    for t in text {
        bytes.push(*t as u8);
    }
    Hash32::digest(&bytes)
}

fn read_cache(path: &Path) -> Result<Option<Vec<u8>>> {
    let Ok(meta) = std::fs::metadata(path) else {
        return Ok(None);
    };
    if meta.len() > MAX_CACHE_BYTES {
        return Err(Error::Data {
            reason: format!("{} is larger than {MAX_CACHE_BYTES} bytes", path.display()),
        });
    }
    Ok(Some(std::fs::read(path).map_err(|e| Error::io(path, e))?))
}

/// Makes every float parameter trainable.
struct Unfreeze;

impl ModuleMapper for Unfreeze {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        param.set_require_grad(true)
    }
}

/// Full-weight training of a seeded random model on `text`.
fn train(s: &Scenario, config: &LlamaConfig, text: &[u32]) -> Result<Llama> {
    let p = &s.model.pretrain;
    let device = Device::flex().autodiff();
    let mut model = Llama::init_random(config, s.model.init_seed, &device)?.map(&mut Unfreeze);
    let mut optim = AdamWConfig::new()
        .with_weight_decay(0.01)
        .with_grad_clipping(Some(GradientClippingConfig::Norm(1.0)))
        .init();
    let window = p.seq_len + 1;
    let positions = (text.len() - window) as u64;
    let mut rng = stream(s.seed ^ s.model.init_seed, &[purpose::PRETRAIN]);
    let warmup = (p.steps / 20).max(1);
    for step in 0..p.steps {
        let mut ids = Vec::with_capacity(p.batch_size * window);
        for _ in 0..p.batch_size {
            let at = rng.range(0, positions) as usize;
            ids.extend(text[at..at + window].iter().map(|&t| i64::from(t)));
        }
        let tokens =
            Tensor::<2, Int>::from_data(BurnData::new(ids, [p.batch_size, window]), &device);
        let loss = model.next_token_loss(tokens);
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        let lr = if step < warmup {
            p.learning_rate * (step + 1) as f64 / warmup as f64
        } else {
            let progress = (step - warmup) as f64 / (p.steps - warmup).max(1) as f64;
            p.learning_rate * (0.1 + 0.9 * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos()))
        };
        model = optim.step(lr, model, grads);
    }
    Ok(model)
}

fn host<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>> {
    t.into_data()
        .try_into_vec_as::<f32>()
        .map_err(|e| Error::run(format!("weights: {e:?}")))
}

/// Transposes a row-major `[rows, cols]` matrix.
fn transpose(v: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0; v.len()];
    for i in 0..rows {
        for j in 0..cols {
            out[j * rows + i] = v[i * cols + j];
        }
    }
    out
}

/// A weight's name, dims and values.
type HostTensor = (String, Vec<usize>, Vec<f32>);

/// The model's base weights under their canonical names, linear weights `[out, in]`.
fn host_weights(model: &Llama) -> Result<Vec<HostTensor>> {
    let mut out = Vec::new();
    let e = model.embed_tokens.val();
    let [v, h] = e.dims();
    out.push((names::EMBED_TOKENS.to_string(), vec![v, h], host(e)?));
    for (i, b) in model.layers.iter().enumerate() {
        let linears = [
            ("self_attn.q_proj.weight", &b.self_attn.q_proj),
            ("self_attn.k_proj.weight", &b.self_attn.k_proj),
            ("self_attn.v_proj.weight", &b.self_attn.v_proj),
            ("self_attn.o_proj.weight", &b.self_attn.o_proj),
            ("mlp.gate_proj.weight", &b.mlp.gate_proj),
            ("mlp.up_proj.weight", &b.mlp.up_proj),
            ("mlp.down_proj.weight", &b.mlp.down_proj),
        ];
        for (suffix, lin) in linears {
            let w = lin.weight.val();
            let [d_in, d_out] = w.dims();
            let values = transpose(&host(w)?, d_in, d_out);
            out.push((names::layer(i, suffix), vec![d_out, d_in], values));
        }
        for (suffix, norm) in [
            ("input_layernorm.weight", &b.input_layernorm),
            (
                "post_attention_layernorm.weight",
                &b.post_attention_layernorm,
            ),
        ] {
            let w = norm.weight.val();
            let [n] = w.dims();
            out.push((names::layer(i, suffix), vec![n], host(w)?));
        }
    }
    let n = model.norm.weight.val();
    let [hd] = n.dims();
    out.push((names::FINAL_NORM.to_string(), vec![hd], host(n)?));
    Ok(out)
}

fn to_safetensors(model: &Llama) -> Result<Vec<u8>> {
    let weights = host_weights(model)?;
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = weights
        .into_iter()
        .map(|(name, dims, values)| {
            let b = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            (name, dims, b)
        })
        .collect();
    let views = bytes
        .iter()
        .map(|(name, dims, b)| {
            TensorView::new(Dtype::F32, dims.clone(), b)
                .map(|v| (name.clone(), v))
                .map_err(|e| Error::run(format!("safetensors: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    safetensors::serialize(views, None).map_err(|e| Error::run(format!("safetensors: {e}")))
}

/// Weights held in memory, served as a [`WeightSource`].
struct MapSource {
    hparams: LlamaHparams,
    tensors: HashMap<String, TensorData>,
}

impl MapSource {
    fn from_safetensors(bytes: &[u8], config: &LlamaConfig) -> Result<Self> {
        let bad = |e: &dyn std::fmt::Display| Error::Data {
            reason: format!("cached base: {e}"),
        };
        let st = SafeTensors::deserialize(bytes).map_err(|e| bad(&e))?;
        let mut tensors = HashMap::new();
        for (name, view) in st.tensors() {
            if view.dtype() != Dtype::F32 {
                return Err(bad(&format!("{name} is not f32")));
            }
            let values: Vec<f32> = view
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            let t = TensorData::new(view.shape().to_vec(), values).map_err(|e| bad(&e))?;
            tensors.insert(name, t);
        }
        let hparams = LlamaHparams {
            vocab_size: config.vocab,
            hidden_size: config.hidden,
            intermediate_size: config.intermediate,
            num_layers: config.layers,
            num_heads: config.heads,
            num_kv_heads: config.kv_heads,
            head_dim: config.head_dim,
            rope_theta: config.rope_theta as f32,
            rms_norm_eps: config.rms_eps as f32,
            max_position_embeddings: config.max_seq_len,
            tie_word_embeddings: config.tie_embeddings,
            bos_token_id: None,
            eos_token_id: None,
        };
        Ok(MapSource { hparams, tensors })
    }
}

impl WeightSource for MapSource {
    fn hparams(&self) -> &LlamaHparams {
        &self.hparams
    }

    fn tensor(&self, name: &str) -> hearth_models::Result<TensorData> {
        let name = if name == names::LM_HEAD {
            names::EMBED_TOKENS
        } else {
            name
        };
        self.tensors
            .get(name)
            .cloned()
            .ok_or_else(|| hearth_models::Error::MissingTensor {
                name: name.to_string(),
            })
    }

    fn file_rope_layout(&self) -> RopeLayout {
        RopeLayout::Interleaved
    }

    fn model_id(&self) -> hearth_models::Result<String> {
        Ok(String::new())
    }
}
