//! Full-parameter training of a small base model, for tests and simulations.
//!
//! Hearth never trains the real base: members fine-tune LoRA adapters on a frozen one. But tests
//! and simulations need a base far smaller than SmolLM2 that already knows some text, and a
//! randomly initialised [`Llama`] cannot be taught much through LoRA alone: its tied embedding
//! (std 0.02) keeps every logit within about ±1.3, so no adapter can make a token much more
//! likely than another. [`pretrain`] trains every base weight (embedding, linear layers, norms)
//! with AdamW on a [`Dataset`], then freezes them again; the result is an ordinary frozen base for
//! [`crate::train_personal`] and [`crate::train_community`].
//!
//! It uses the [`TrainConfig`] fields that shape a run (window, batch, accumulation, learning
//! rate and schedule, weight decay, gradient clipping, step and time limits, seed) and writes no
//! checkpoints or curves: a tiny base trains in seconds to minutes.

use std::time::Instant;

use burn::module::Param;
use burn::optim::{
    AdamWConfig, GradientsAccumulator, GradientsParams, ModuleOptimizer,
    grad_clipping::GradientClippingConfig,
};
use burn::tensor::{Int, Tensor, TensorData};
use hearth_models::Llama;

use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::trainer::{Order, Stop, TrainConfig, TrainReport, held_out_loss};

/// Trains every base weight of `model` (on an autodiff device, no adapters attached) on `data`
/// and returns it frozen again, with the run's figures.
pub fn pretrain(
    model: Llama,
    data: &Dataset,
    config: &TrainConfig,
) -> Result<(Llama, TrainReport)> {
    config.validate()?;
    let c = config;
    if !model.device().is_autodiff() {
        return Err(Error::Config {
            reason: "the model must be on an autodiff device (Device::flex().autodiff())".into(),
        });
    }
    if !model.adapters().is_empty() {
        return Err(Error::Config {
            reason: format!(
                "pretraining trains the base alone, but {} adapters are attached",
                model.adapters().len()
            ),
        });
    }
    if c.seq_len > model.config().max_seq_len {
        return Err(Error::Config {
            reason: format!(
                "seq_len {} exceeds the model's context {}",
                c.seq_len,
                model.config().max_seq_len
            ),
        });
    }
    data.check_vocab(model.config().vocab)?;
    let windows = data.num_windows(c.seq_len);
    if windows == 0 {
        return Err(Error::Data {
            reason: format!(
                "{} training tokens make no window of {} tokens",
                data.train().len(),
                c.seq_len + 1
            ),
        });
    }
    let held_out_before = held_out_loss(&model, data, c.seq_len)?;
    let mut model = set_base_trainable(model, true);
    let mut optim: ModuleOptimizer = AdamWConfig::new()
        .with_weight_decay(c.weight_decay as f32)
        .with_grad_clipping(c.grad_clip_norm.map(GradientClippingConfig::Norm))
        .init();
    let device = model.device();
    let mut order = Order::new(c.seed, windows);
    let (batch, accum) = (c.batch_size as u64, c.grad_accum as u64);
    let per_step = batch * accum * c.seq_len as u64;
    let (mut step, mut losses) = (0u64, Vec::new());
    let start = Instant::now();
    let stop = loop {
        if step >= c.max_steps as u64 {
            break Stop::MaxSteps;
        }
        if c.max_seconds
            .is_some_and(|s| start.elapsed().as_secs_f64() >= s)
        {
            break Stop::MaxDuration;
        }
        let mut grads_sum = GradientsAccumulator::<Llama>::new();
        let mut loss_sum = 0.0;
        for micro in 0..accum {
            let mut ids = Vec::with_capacity(c.batch_size * (c.seq_len + 1));
            for j in 0..batch {
                let window = data
                    .window(c.seq_len, order.get((step * accum + micro) * batch + j))
                    .ok_or(Error::Data {
                        reason: "window index out of range".into(),
                    })?;
                ids.extend(window.iter().map(|&t| i64::from(t)));
            }
            let tokens = Tensor::<2, Int>::from_data(
                TensorData::new(ids, [c.batch_size, c.seq_len + 1]),
                &device,
            );
            let loss = model.next_token_loss(tokens);
            loss_sum += f64::from(loss.clone().into_scalar::<f32>());
            let grads = loss.mul_scalar(1.0 / accum as f64).backward();
            grads_sum.accumulate(&model, GradientsParams::from_grads(grads, &model));
        }
        let loss = loss_sum / accum as f64;
        if !loss.is_finite() {
            return Err(Error::Data {
                reason: format!("pretraining loss became {loss} at step {}", step + 1),
            });
        }
        model = optim.step(c.lr_at(step as usize), model, grads_sum.grads());
        losses.push(loss);
        step += 1;
    };
    let elapsed = start.elapsed();
    let model = set_base_trainable(model, false);
    let tail = &losses[losses.len().saturating_sub(10)..];
    let report = TrainReport {
        steps: step,
        resumed_from: None,
        tokens: step * per_step,
        initial_loss: losses.first().copied(),
        final_loss: (!tail.is_empty()).then(|| tail.iter().sum::<f64>() / tail.len() as f64),
        held_out_before,
        held_out_after: held_out_loss(&model, data, c.seq_len)?,
        tokens_per_sec: (step * per_step) as f64 / elapsed.as_secs_f64().max(1e-9),
        elapsed,
        stop,
    };
    Ok((model, report))
}

/// Sets the gradient tracking of every base weight (embedding, output head, linear layers,
/// norms); a frozen weight is detached from any graph it was part of.
fn set_base_trainable(mut model: Llama, trainable: bool) -> Llama {
    let set = |p: Param<Tensor<2>>| {
        let p = if trainable { p } else { p.map(|t| t.detach()) };
        p.set_require_grad(trainable)
    };
    model.embed_tokens = set(model.embed_tokens);
    model.lm_head = model.lm_head.map(set);
    let set1 = |p: Param<Tensor<1>>| {
        let p = if trainable { p } else { p.map(|t| t.detach()) };
        p.set_require_grad(trainable)
    };
    model.norm.weight = set1(model.norm.weight);
    for block in &mut model.layers {
        block.input_layernorm.weight = set1(block.input_layernorm.weight.clone());
        block.post_attention_layernorm.weight = set1(block.post_attention_layernorm.weight.clone());
        let attn = &mut block.self_attn;
        let mlp = &mut block.mlp;
        for lin in [
            &mut attn.q_proj,
            &mut attn.k_proj,
            &mut attn.v_proj,
            &mut attn.o_proj,
            &mut mlp.gate_proj,
            &mut mlp.up_proj,
            &mut mlp.down_proj,
        ] {
            lin.weight = set(lin.weight.clone());
        }
    }
    model
}

#[cfg(test)]
mod tests {
    use burn::tensor::Device;
    use hearth_models::{LlamaConfig, LoraConfig, Target};

    use super::*;
    use crate::data::ByteEncoder;

    fn tiny() -> Llama {
        Llama::init_random(
            &LlamaConfig::tiny(ByteEncoder::VOCAB),
            1,
            &Device::flex().autodiff(),
        )
        .unwrap()
    }

    #[test]
    fn pretraining_goes_past_what_lora_can_reach_and_freezes_the_base() {
        let text = "the cat sat on the mat. ".repeat(40);
        let data = Dataset::from_split_text(&text[..800], &text[800..], &ByteEncoder).unwrap();
        let c = TrainConfig::new()
            .with_seq_len(16)
            .with_batch_size(4)
            .with_learning_rate(1e-2)
            .with_warmup_steps(2)
            .with_max_steps(40)
            .with_seed(3);
        let (mut model, r) = pretrain(tiny(), &data, &c).unwrap();
        assert_eq!(
            (r.steps, r.stop, r.tokens),
            (40, Stop::MaxSteps, 40 * 4 * 16)
        );
        let (before, after) = (r.held_out_before.unwrap(), r.held_out_after.unwrap());
        // LoRA on the random base gains about 0.7 nats here (trainer tests); all weights, far more.
        assert!(
            after < 1.0 && before > 5.0,
            "held-out loss {before} → {after}"
        );
        // The base is frozen again: an adapter trained on top is the only thing that changes.
        let slot = model
            .add_adapter(LoraConfig::new(4, 8.0, vec![Target::Q]).with_seed(1))
            .unwrap();
        let embed = model.embed_tokens.val().into_data();
        let trainer = crate::Trainer::new(c.with_max_steps(3).with_quiet(true)).unwrap();
        let out = trainer
            .train(model, slot, &data, |_| std::ops::ControlFlow::Continue(()))
            .unwrap();
        assert_eq!(out.model.embed_tokens.val().into_data(), embed);
        assert!(!out.model.embed_tokens.val().is_require_grad());
    }

    #[test]
    fn refuses_adapters_plain_devices_and_short_data() {
        let data = Dataset::from_split_text(&"ab".repeat(40), "abab", &ByteEncoder).unwrap();
        let c = TrainConfig::new().with_seq_len(16).with_max_steps(1);
        let mut with_adapter = tiny();
        with_adapter
            .add_adapter(LoraConfig::new(4, 8.0, vec![Target::Q]))
            .unwrap();
        let e = pretrain(with_adapter, &data, &c).unwrap_err();
        assert!(e.to_string().contains("1 adapters are attached"), "{e}");
        let plain =
            Llama::init_random(&LlamaConfig::tiny(ByteEncoder::VOCAB), 1, &Device::flex()).unwrap();
        assert!(pretrain(plain, &data, &c).is_err());
        let short = Dataset::from_split_text("abc", "", &ByteEncoder).unwrap();
        assert!(pretrain(tiny(), &short, &c).is_err());
        assert!(pretrain(tiny(), &data, &c.clone().with_seq_len(257)).is_err());
    }
}
