//! The base model every virtual member shares (a tiny byte-level Llama of the same code as the
//! node's), the community adapter's shape on both sides of the wire, local training and batched
//! held-out evaluation.
//!
//! # Two layouts of the same adapter
//!
//! The model keeps each FFA-LoRA `B` as `[rank, out]` and flattens the `B`s in
//! [`hearth_models::LoraKey`] order (layer, target in [`Target::ALL`] order). The protocol's wire
//! layout ([`LoraShape::tensors`]) is layer by layer, targets in manifest order, each `B` as
//! `[out, rank]` row-major. The manifest lists the targets in [`Target::ALL`] order, so the two
//! differ only by a transpose per tensor: [`Base::to_wire`] and [`Base::from_wire`].

use std::ops::ControlFlow;

use burn::module::Module;
use burn::tensor::{Device, Int, Tensor, TensorData};
use hearth_models::{AdapterWeights, Eval, Llama, LlamaConfig, LoraConfig, Target};
use hearth_protocol::{Hash32, LoraShape};
use hearth_training::data::{ByteEncoder, Dataset, Encode};
use hearth_training::{Schedule, TrainConfig, Trainer, train_community};

use crate::error::{Error, Result};
use crate::scenario::Scenario;

/// Windows evaluated per forward pass.
const EVAL_BATCH: usize = 16;

/// The protocol's module name of a target (GGUF tensor names, as the manifest uses them).
pub fn wire_module(target: Target) -> &'static str {
    match target {
        Target::Q => "attn_q",
        Target::K => "attn_k",
        Target::V => "attn_v",
        Target::O => "attn_output",
        Target::Gate => "ffn_gate",
        Target::Up => "ffn_up",
        Target::Down => "ffn_down",
    }
}

/// The architecture a scenario asks for (byte-level vocabulary).
pub fn llama_config(s: &Scenario) -> LlamaConfig {
    let m = &s.model;
    LlamaConfig::new(
        ByteEncoder::VOCAB,
        m.hidden,
        m.intermediate,
        m.layers,
        m.heads,
        m.kv_heads,
        m.hidden / m.heads,
    )
    .with_max_seq_len(m.context)
    .with_tie_embeddings(true)
}

/// The community adapter's configuration: FFA-LoRA, targets in [`Target::ALL`] order.
pub fn lora_config(s: &Scenario) -> LoraConfig {
    let m = &s.model;
    let targets: Vec<Target> = Target::ALL
        .into_iter()
        .filter(|t| m.targets.contains(t))
        .collect();
    LoraConfig::new(m.lora_rank, m.lora_alpha, targets)
        .with_seed(m.ffa_seed)
        .with_ffa(true)
}

/// The base model on the training (autodiff) and evaluation devices, with the community
/// adapter's frozen `A`.
#[derive(Debug)]
pub struct Base {
    train_model: Llama,
    template: AdapterWeights,
    shape: LoraShape,
    /// `(rows, cols)` of each `B` in the model's layout, in flattening order.
    dims: Vec<(usize, usize)>,
    id: Hash32,
    /// The model's own tokenizer (a `gguf` base); `None`: bytes ([`ByteEncoder`]).
    tokenizer: Option<hearth_models::Tokenizer>,
}

impl Base {
    /// Wraps a base model (on the autodiff device) whose weights `id` names.
    pub fn new(train_model: Llama, id: Hash32, scenario: &Scenario) -> Result<Self> {
        let lora = lora_config(scenario);
        let mut probe = train_model.clone();
        let slot = probe.add_adapter(lora.clone())?;
        let template = probe.adapter_weights(slot)?;
        let config = train_model.config().clone();
        let (q, kv) = (config.q_dim(), config.kv_dim());
        let io = |t: Target| match t {
            Target::Q => (config.hidden, q),
            Target::K | Target::V => (config.hidden, kv),
            Target::O => (q, config.hidden),
            Target::Gate | Target::Up => (config.hidden, config.intermediate),
            Target::Down => (config.intermediate, config.hidden),
        };
        let shape = LoraShape {
            rank: lora.rank as u32,
            alpha: lora.alpha as f32,
            layers: config.layers as u32,
            targets: lora
                .targets
                .iter()
                .map(|&t| hearth_protocol::Target {
                    module: wire_module(t).into(),
                    in_dim: io(t).0 as u32,
                    out_dim: io(t).1 as u32,
                })
                .collect(),
            ffa_seed: lora.seed,
        };
        let dims: Vec<(usize, usize)> = template
            .tensors
            .iter()
            .filter(|t| t.key.factor == hearth_models::Factor::B)
            .map(|t| (t.dims[0], t.dims[1]))
            .collect();
        if template.b_len() as u64 != shape.elements() {
            return Err(Error::run(format!(
                "adapter of {} values, wire shape of {}",
                template.b_len(),
                shape.elements()
            )));
        }
        Ok(Base {
            train_model,
            template,
            shape,
            dims,
            id,
            tokenizer: None,
        })
    }

    /// A real model file (`model.path`, or the node's default model) with its tokenizer, its
    /// context capped at `model.context`; its id is the file's SHA-256, as a manifest pins it.
    pub fn gguf(scenario: &Scenario) -> Result<Self> {
        let path = hearth_node::model::resolve_model_path(scenario.model.path.as_deref())
            .map_err(|e| Error::run(format!("{e:#}")))?;
        let (model, tokenizer, id) = hearth_node::model::load_base(
            &path,
            scenario.model.context,
            &Device::flex().autodiff(),
        )
        .map_err(|e| Error::run(format!("loading {}: {e:#}", path.display())))?;
        let mut base = Self::new(model, id, scenario)?;
        base.tokenizer = Some(tokenizer);
        Ok(base)
    }

    /// How text becomes tokens for this base: its tokenizer, or bytes.
    pub fn encoder(&self) -> &dyn Encode {
        match &self.tokenizer {
            Some(t) => t,
            None => &ByteEncoder,
        }
    }

    /// A seeded random base (`Llama::init_random`).
    pub fn random(scenario: &Scenario) -> Result<Self> {
        let config = llama_config(scenario);
        let seed = scenario.model.init_seed;
        let model = Llama::init_random(&config, seed, &Device::flex().autodiff())?;
        let id =
            Hash32::digest(format!("hearth-sim random llama {config:?} seed {seed}").as_bytes());
        Self::new(model, id, scenario)
    }

    /// The adapter's wire shape (for the manifest).
    pub fn shape(&self) -> &LoraShape {
        &self.shape
    }

    /// Names the base weights (the manifest's `base_model.sha256`).
    pub fn id(&self) -> Hash32 {
        self.id
    }

    /// Values in the adapter (`B` only).
    pub fn elements(&self) -> usize {
        self.template.b_len()
    }

    /// Model layout → wire layout.
    pub fn to_wire(&self, model: &[f32]) -> Vec<f32> {
        self.permute(model, false)
    }

    /// Wire layout → model layout.
    pub fn from_wire(&self, wire: &[f32]) -> Vec<f32> {
        self.permute(wire, true)
    }

    fn permute(&self, values: &[f32], inverse: bool) -> Vec<f32> {
        permute(&self.dims, values, inverse)
    }

    fn weights(&self, b: &[f32]) -> Result<AdapterWeights> {
        let mut w = self.template.clone();
        w.set_flat_b(b)?;
        Ok(w)
    }

    /// Trains the community adapter from `start` (model layout) on `train` tokens for `steps`
    /// steps; returns the new `B` (model layout).
    pub fn train(
        &self,
        scenario: &Scenario,
        start: &[f32],
        train: &[u32],
        steps: usize,
        seed: u64,
    ) -> Result<Vec<f32>> {
        let t = &scenario.training;
        let config = TrainConfig::new()
            .with_seq_len(t.seq_len)
            .with_batch_size(t.batch_size)
            .with_learning_rate(t.learning_rate)
            .with_schedule(Schedule::Constant)
            .with_warmup_steps(0)
            .with_max_steps(steps)
            .with_seed(seed)
            .with_checkpoint_every(0)
            .with_quiet(true);
        let trainer = Trainer::new(config)?;
        let global = self.weights(start)?;
        // No held-out stream: the harness evaluates itself, once per round.
        let data = Dataset::new(train.to_vec(), Vec::new());
        let out = train_community(&trainer, self.train_model.clone(), &global, &data, |_| {
            ControlFlow::Continue(())
        })?;
        Ok(out.adapter.flat_b())
    }

    /// A model for evaluation (no autodiff) with the community adapter attached.
    pub fn evaluator(&self) -> Result<Evaluator> {
        let mut model = self.train_model.valid();
        let slot = model.add_adapter(self.template.config.clone())?;
        Ok(Evaluator {
            model,
            slot,
            template: self.template.clone(),
        })
    }
}

/// The base on the evaluation device with one community adapter slot.
#[derive(Debug)]
pub struct Evaluator {
    model: Llama,
    slot: usize,
    template: AdapterWeights,
}

impl Evaluator {
    /// Loads `b` (model layout) into the adapter.
    pub fn set(&mut self, b: &[f32]) -> Result<()> {
        let mut w = self.template.clone();
        w.set_flat_b(b)?;
        self.model.set_adapter_weights(self.slot, &w)?;
        Ok(())
    }

    /// Evaluates each stream with the adapter last set: consecutive windows of at most
    /// `window` tokens (as [`hearth_models::evaluate`] does), batched.
    pub fn evaluate(&self, streams: &[&[u32]], window: usize) -> Result<Vec<Eval>> {
        evaluate_streams(&self.model, streams, window)
    }
}

/// Model layout ↔ wire layout of the flattened `B`s whose model shapes are `dims`.
fn permute(dims: &[(usize, usize)], values: &[f32], inverse: bool) -> Vec<f32> {
    let mut out = vec![0.0f32; values.len()];
    let mut at = 0;
    for &(r, c) in dims {
        let n = r * c;
        if at + n > values.len() {
            break;
        }
        let (src, dst) = (&values[at..at + n], &mut out[at..at + n]);
        // Model [r, c] at (i, j) ↔ wire [c, r] at (j, i).
        for i in 0..r {
            for j in 0..c {
                if inverse {
                    dst[i * c + j] = src[j * r + i];
                } else {
                    dst[j * r + i] = src[i * c + j];
                }
            }
        }
        at += n;
    }
    out
}

/// The community probe-set evaluator of an arm's nodes ([`hearth_federation::Probe`]): the base
/// with a candidate adapter on the probe text's tokens, in windows of
/// [`PROBE_WINDOW_TOKENS`](hearth_protocol::PROBE_WINDOW_TOKENS) (or the context, if shorter).
/// One evaluator serves every full node of the arm, remembering the loss of each adapter it
/// has evaluated: the nodes ask about the same candidates, and the loss is a function of the
/// adapter, so one evaluation answers them all.
#[derive(Debug, Clone)]
pub struct SharedProbe {
    inner: std::sync::Arc<std::sync::Mutex<ProbeInner>>,
}

#[derive(Debug)]
struct ProbeInner {
    evaluator: Evaluator,
    dims: Vec<(usize, usize)>,
    tokens: Vec<u32>,
    window: usize,
    seen: std::collections::HashMap<Hash32, f64>,
}

/// Adapters whose probe loss is remembered (older ones are forgotten all at once).
const PROBE_MEMORY: usize = 256;

impl SharedProbe {
    /// The evaluator of `text` over `base`.
    pub fn new(base: &Base, text: &str) -> Result<Self> {
        let evaluator = base.evaluator()?;
        let window = hearth_protocol::PROBE_WINDOW_TOKENS.min(evaluator.model.config().max_seq_len);
        Ok(SharedProbe {
            inner: std::sync::Arc::new(std::sync::Mutex::new(ProbeInner {
                evaluator,
                dims: base.dims.clone(),
                tokens: base.encoder().encode_text(text)?,
                window,
                seen: std::collections::HashMap::new(),
            })),
        })
    }
}

impl hearth_federation::Probe for SharedProbe {
    fn loss(&self, adapter: &hearth_federation::Adapter) -> std::result::Result<f64, String> {
        let mut guard = self
            .inner
            .lock()
            .map_err(|_| "the probe evaluator panicked earlier".to_string())?;
        let inner = &mut *guard;
        let version = adapter.version();
        if let Some(&loss) = inner.seen.get(&version) {
            return Ok(loss);
        }
        let b = permute(&inner.dims, &adapter.to_flat(), true);
        inner.evaluator.set(&b).map_err(|e| e.to_string())?;
        let mut total = Eval::default();
        for e in inner
            .evaluator
            .evaluate(&[&inner.tokens], inner.window)
            .map_err(|e| e.to_string())?
        {
            total.add(e);
        }
        let loss = total.mean_nll();
        if inner.seen.len() >= PROBE_MEMORY {
            inner.seen.clear();
        }
        inner.seen.insert(version, loss);
        Ok(loss)
    }
}

/// Evaluates every stream in non-overlapping windows of at most `window` tokens (position `i`
/// predicts `i + 1` within a window), batching windows of equal length.
pub fn evaluate_streams(model: &Llama, streams: &[&[u32]], window: usize) -> Result<Vec<Eval>> {
    let window = window.min(model.config().max_seq_len).max(2);
    let mut out = vec![Eval::default(); streams.len()];
    let mut windows: Vec<(usize, &[u32])> = Vec::new();
    for (i, s) in streams.iter().enumerate() {
        model.check_tokens(&s[..s.len().min(window)])?;
        if let Some(&t) = s.iter().find(|&&t| t as usize >= model.config().vocab) {
            return Err(Error::Model(hearth_models::Error::TokenOutOfRange {
                token: t,
                vocab: model.config().vocab,
            }));
        }
        windows.extend(s.chunks(window).filter(|c| c.len() >= 2).map(|c| (i, c)));
    }
    windows.sort_by_key(|(i, c)| (std::cmp::Reverse(c.len()), *i));
    let device = model.device();
    let mut start = 0;
    while start < windows.len() {
        let len = windows[start].1.len();
        let end = (start..windows.len())
            .take(EVAL_BATCH)
            .take_while(|&k| windows[k].1.len() == len)
            .last()
            .map_or(start + 1, |k| k + 1);
        let batch = &windows[start..end];
        let b = batch.len();
        let mut inputs = Vec::with_capacity(b * (len - 1));
        let mut targets = Vec::with_capacity(b * (len - 1));
        for (_, w) in batch {
            inputs.extend(w[..len - 1].iter().map(|&t| i64::from(t)));
            targets.extend(w[1..].iter().map(|&t| i64::from(t)));
        }
        let input = Tensor::<2, Int>::from_data(TensorData::new(inputs, [b, len - 1]), &device);
        let target =
            Tensor::<3, Int>::from_data(TensorData::new(targets, [b, len - 1, 1]), &device);
        let log_probs = burn::tensor::activation::log_softmax(model.forward(input), 2);
        let correct = log_probs.clone().argmax(2).equal(target.clone()).int();
        let picked = log_probs.gather(2, target);
        let nll: Vec<f32> = host(picked.sum_dim(1).reshape([b]))?;
        let hits: Vec<i64> = correct
            .sum_dim(1)
            .reshape([b])
            .into_data()
            .try_into_vec_as::<i64>()
            .map_err(|e| Error::run(format!("evaluation data: {e:?}")))?;
        for (k, (i, _)) in batch.iter().enumerate() {
            out[*i].add(Eval {
                nll_sum: -f64::from(nll[k]),
                correct: hits[k].max(0) as u64,
                tokens: (len - 1) as u64,
            });
        }
        start = end;
    }
    Ok(out)
}

fn host(t: Tensor<1>) -> Result<Vec<f32>> {
    t.into_data()
        .try_into_vec_as::<f32>()
        .map_err(|e| Error::run(format!("evaluation data: {e:?}")))
}

#[cfg(test)]
mod tests;
