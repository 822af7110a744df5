//! Model-level tests on tiny random models: the KV cache, LoRA stacking/merging, gradients and a
//! training smoke test.

use burn::module::Module;
use burn::optim::{AdamWConfig, GradientsParams};
use burn::tensor::{Device, Int, Tensor, TensorData};

use super::*;
use crate::generate::{GenerateConfig, Generator, argmax};
use crate::lora::{LoraConfig, Target};

const VOCAB: usize = 48;

fn tiny(seed: u64) -> Llama {
    Llama::init_random(&LlamaConfig::tiny(VOCAB), seed, &Device::flex()).unwrap()
}

fn tokens(ids: &[u32], device: &Device) -> Tensor<2, Int> {
    let ids: Vec<i64> = ids.iter().map(|&t| i64::from(t)).collect();
    let n = ids.len();
    Tensor::from_data(TensorData::new(ids, [1, n]), device)
}

fn host<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    to_host(t).unwrap()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Fills every `B` of adapter `slot` with seeded non-zero values.
fn randomize_b(model: &mut Llama, slot: usize, seed: u64) {
    let mut w = model.adapter_weights(slot).unwrap();
    let flat = crate::prng::Prng::new(seed).fill_uniform(w.b_len(), 0.2);
    w.set_flat_b(&flat).unwrap();
    model.set_adapter_weights(slot, &w).unwrap();
}

const PROMPT: [u32; 5] = [3, 17, 5, 40, 9];

#[test]
fn cached_generation_equals_uncached() {
    let model = tiny(1);
    let device = Device::flex();
    let mut generator = Generator::new(&model, &PROMPT, GenerateConfig::greedy(20)).unwrap();
    let mut seq = PROMPT.to_vec();
    let mut steps = 0;
    while let Some((token, cached_logits)) = generator.next_with_logits().unwrap() {
        // Recompute from scratch without a cache.
        let logits = model.forward(tokens(&seq, &device));
        let [_, s, v] = logits.dims();
        let last = host(logits.narrow(1, s - 1, 1).reshape([v]));
        let diff = max_abs_diff(&last, &cached_logits);
        assert!(diff < 1e-4, "step {steps}: logits differ by {diff}");
        assert_eq!(argmax(&last), token);
        seq.push(token);
        steps += 1;
    }
    assert_eq!(steps, 20);
}

#[test]
fn cached_forward_in_chunks_equals_full_forward() {
    let model = tiny(2);
    let device = Device::flex();
    let ids: Vec<u32> = (0..40).map(|i| (i * 7 % VOCAB) as u32).collect();
    let full = host(model.forward(tokens(&ids, &device)));
    let mut cache = model.new_cache();
    let mut parts = Vec::new();
    for chunk in [&ids[..13], &ids[13..14], &ids[14..40]] {
        parts.extend(host(
            model
                .forward_cached(tokens(chunk, &device), &mut cache)
                .unwrap(),
        ));
    }
    assert_eq!(cache.len(), 40);
    assert!(max_abs_diff(&full, &parts) < 1e-4);
}

#[test]
fn cache_rejects_overflow_and_bad_tokens() {
    let model = tiny(3);
    let device = Device::flex();
    let max = model.config().max_seq_len;
    let mut cache = model.new_cache();
    let ids = vec![1u32; max];
    model
        .forward_cached(tokens(&ids, &device), &mut cache)
        .unwrap();
    assert!(matches!(
        model.forward_cached(tokens(&[1], &device), &mut cache),
        Err(Error::SequenceTooLong { .. })
    ));
    assert!(model.check_tokens(&ids).is_ok());
    // The batch size cannot change while positions are cached; a cleared cache takes any batch.
    let mut cache = model.new_cache();
    model
        .forward_cached(tokens(&[1, 2], &device), &mut cache)
        .unwrap();
    let two = Tensor::<2, Int>::from_data(TensorData::new(vec![1i64, 2], [2, 1]), &device);
    assert!(model.forward_cached(two.clone(), &mut cache).is_err());
    cache.clear();
    assert_eq!(
        model.forward_cached(two, &mut cache).unwrap().dims(),
        [2, 1, VOCAB]
    );
    assert!(model.check_tokens(&vec![1; max + 1]).is_err());
    assert!(matches!(
        model.check_tokens(&[VOCAB as u32]),
        Err(Error::TokenOutOfRange { .. })
    ));
    assert!(model.check_tokens(&[VOCAB as u32 - 1]).is_ok());
    // Generation stops when the context is full: after a prompt of max - 2 tokens, the model
    // reads 2 more generated tokens, and the third is predicted at the last position.
    let mut generator =
        Generator::new(&model, &ids[..max - 2], GenerateConfig::greedy(10)).unwrap();
    let produced: Vec<u32> = generator.by_ref().map(|t| t.unwrap()).collect();
    assert_eq!(produced.len(), 3);
    assert_eq!(
        generator.finish_reason(),
        Some(crate::generate::FinishReason::ContextFull)
    );
}

#[test]
fn lora_with_zero_b_equals_base_exactly() {
    let device = Device::flex();
    let mut model = tiny(4);
    let base = host(model.forward(tokens(&PROMPT, &device)));
    model
        .add_adapter(LoraConfig::new(4, 8.0, Target::ALL.to_vec()).with_seed(5))
        .unwrap();
    let adapted = host(model.forward(tokens(&PROMPT, &device)));
    assert_eq!(base, adapted);
}

#[test]
fn merged_equals_unmerged_and_unmerge_restores() {
    let device = Device::flex();
    let mut model = tiny(5);
    let base = host(model.forward(tokens(&PROMPT, &device)));
    let slot = model
        .add_adapter(LoraConfig::new(4, 8.0, vec![Target::Q, Target::V, Target::Down]).with_seed(1))
        .unwrap();
    randomize_b(&mut model, slot, 11);
    let unmerged = host(model.forward(tokens(&PROMPT, &device)));
    assert!(
        max_abs_diff(&base, &unmerged) > 1e-3,
        "the adapter must change the output"
    );
    model.merge_adapter(slot).unwrap();
    assert!(model.is_merged(slot).unwrap());
    let merged = host(model.forward(tokens(&PROMPT, &device)));
    assert!(max_abs_diff(&unmerged, &merged) < 1e-4);
    model.unmerge_adapter(slot).unwrap();
    assert!(!model.is_merged(slot).unwrap());
    let restored = host(model.forward(tokens(&PROMPT, &device)));
    assert!(max_abs_diff(&unmerged, &restored) < 1e-4);
    model.pop_adapter().unwrap();
    let popped = host(model.forward(tokens(&PROMPT, &device)));
    assert!(max_abs_diff(&base, &popped) < 1e-4);
}

#[test]
fn stacked_adapters_equal_the_sum_of_their_deltas() {
    let device = Device::flex();
    let mut model = tiny(6);
    let community = LoraConfig::new(4, 8.0, vec![Target::Q, Target::V])
        .with_seed(1)
        .with_ffa(true);
    let personal = LoraConfig::new(2, 2.0, vec![Target::V, Target::O, Target::Up]).with_seed(2);
    let c = model.add_adapter(community).unwrap();
    let p = model.add_adapter(personal).unwrap();
    randomize_b(&mut model, c, 21);
    randomize_b(&mut model, p, 22);
    let stacked = host(model.forward(tokens(&PROMPT, &device)));

    // The same model with both deltas folded into W by hand: W' = W + s₁A₁B₁ + s₂A₂B₂.
    let mut by_hand = model.clone();
    for layer in &mut by_hand.layers {
        for target in Target::ALL {
            let lin = layer.linear_mut(target);
            let mut w = lin.weight.val();
            for pair in lin.adapters.iter().flatten() {
                w = w + pair.delta();
            }
            *lin = LoraLinear::new(w);
        }
    }
    let summed = host(by_hand.forward(tokens(&PROMPT, &device)));
    assert!(max_abs_diff(&stacked, &summed) < 1e-4);

    // Each adapter alone differs from the stack.
    let mut only_c = model.clone();
    only_c.pop_adapter().unwrap();
    let single = host(only_c.forward(tokens(&PROMPT, &device)));
    assert!(max_abs_diff(&stacked, &single) > 1e-3);
}

#[test]
fn adapter_weights_round_trip_and_reject_mismatches() {
    let mut model = tiny(7);
    let cfg = LoraConfig::new(4, 8.0, vec![Target::K, Target::Gate]).with_seed(3);
    let slot = model.add_adapter(cfg.clone()).unwrap();
    randomize_b(&mut model, slot, 5);
    let w = model.adapter_weights(slot).unwrap();
    assert_eq!(w.tensors.len(), 2 * 2 * 2);
    let mut other = tiny(7);
    let s2 = other.add_adapter(cfg.clone().with_seed(99)).unwrap();
    other.set_adapter_weights(s2, &w).unwrap();
    assert_eq!(other.adapter_weights(s2).unwrap(), w);
    // A different shape is refused.
    let mut wrong = tiny(7);
    let s3 = wrong
        .add_adapter(LoraConfig::new(2, 8.0, vec![Target::K, Target::Gate]))
        .unwrap();
    assert!(wrong.set_adapter_weights(s3, &w).is_err());
    assert!(wrong.set_adapter_weights(7, &w).is_err());
    // Rank larger than the layer is refused; the limit itself is accepted.
    let kv_dim = LlamaConfig::tiny(VOCAB).kv_dim();
    assert!(
        wrong
            .add_adapter(LoraConfig::new(kv_dim, 1.0, vec![Target::K]))
            .is_ok()
    );
    assert!(
        wrong
            .add_adapter(LoraConfig::new(kv_dim + 1, 1.0, vec![Target::K]))
            .is_err()
    );
}

#[test]
fn adapter_stack_limit() {
    let mut model = tiny(8);
    for _ in 0..MAX_ADAPTERS {
        model
            .add_adapter(LoraConfig::new(1, 1.0, vec![Target::Q]))
            .unwrap();
    }
    assert!(
        model
            .add_adapter(LoraConfig::new(1, 1.0, vec![Target::Q]))
            .is_err()
    );
    while model.pop_adapter().is_ok() {}
    assert!(model.adapters().is_empty());
}

#[test]
fn gradients_reach_only_b_in_ffa_mode() {
    let device = Device::flex().autodiff();
    let mut model = Llama::init_random(&LlamaConfig::tiny(VOCAB), 9, &device).unwrap();
    let slot = model
        .add_adapter(LoraConfig::new(4, 8.0, vec![Target::Q, Target::V]).with_ffa(true))
        .unwrap();
    randomize_b(&mut model, slot, 3);
    let ids: Vec<u32> = (0..16).map(|i| (i * 5 % VOCAB) as u32).collect();
    let loss = model.next_token_loss(tokens(&ids, &device));
    let grads = loss.backward();
    for layer in &model.layers {
        for target in Target::ALL {
            let lin = layer.linear(target);
            assert!(
                lin.weight.val().grad(&grads).is_none(),
                "base {target:?} has a gradient"
            );
            if let Some(pair) = lin.pair(slot) {
                assert!(
                    pair.a.val().grad(&grads).is_none(),
                    "frozen A has a gradient"
                );
                let g = pair.b.val().grad(&grads).expect("B has a gradient");
                assert!(host(g.abs().sum()).iter().all(|v| *v > 0.0));
            }
        }
        assert!(layer.input_layernorm.weight.val().grad(&grads).is_none());
    }
    assert!(model.embed_tokens.val().grad(&grads).is_none());
}

#[test]
fn gradients_reach_a_and_b_in_standard_mode_and_not_frozen_adapters() {
    let device = Device::flex().autodiff();
    let mut model = Llama::init_random(&LlamaConfig::tiny(VOCAB), 10, &device).unwrap();
    let community = model
        .add_adapter(LoraConfig::new(2, 4.0, vec![Target::V]).with_ffa(true))
        .unwrap();
    let personal = model
        .add_adapter(LoraConfig::new(2, 4.0, vec![Target::V]))
        .unwrap();
    model.set_adapter_trainable(community, false).unwrap();
    randomize_b(&mut model, community, 1);
    randomize_b(&mut model, personal, 2);
    let ids: Vec<u32> = (0..12).map(|i| (i * 3 % VOCAB) as u32).collect();
    let grads = model.next_token_loss(tokens(&ids, &device)).backward();
    let lin = model.layers[0].linear(Target::V);
    let c = lin.pair(community).unwrap();
    let p = lin.pair(personal).unwrap();
    assert!(c.a.val().grad(&grads).is_none());
    assert!(c.b.val().grad(&grads).is_none());
    assert!(p.a.val().grad(&grads).is_some());
    assert!(p.b.val().grad(&grads).is_some());
}

#[test]
fn adamw_on_b_lowers_the_loss() {
    let device = Device::flex().autodiff();
    let mut model = Llama::init_random(&LlamaConfig::tiny(VOCAB), 11, &device).unwrap();
    let slot = model
        .add_adapter(
            LoraConfig::new(8, 16.0, Target::ALL.to_vec())
                .with_seed(4)
                .with_ffa(true),
        )
        .unwrap();
    let a_before = model.adapter_weights(slot).unwrap();
    let ids: Vec<u32> = (0..32).map(|i| ((i * i + 3) % VOCAB) as u32).collect();
    let batch = tokens(&ids, &device);
    let mut optim = AdamWConfig::new().with_weight_decay(0.0).init();
    let first = host(model.next_token_loss(batch.clone()))[0];
    let mut last = first;
    for _ in 0..15 {
        let loss = model.next_token_loss(batch.clone());
        last = host(loss.clone())[0];
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(1e-2, model, grads);
    }
    assert!(last < first - 0.1, "loss {first} → {last}");
    // A stayed frozen, B moved.
    let a_after = model.adapter_weights(slot).unwrap();
    let a_of = |w: &crate::delta::AdapterWeights| {
        w.tensors
            .iter()
            .filter(|t| t.key.factor == crate::delta::Factor::A)
            .flat_map(|t| t.values.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(a_of(&a_before), a_of(&a_after));
    assert!(a_after.b_l2_norm() > 0.0);
}

#[test]
fn seeded_init_is_reproducible() {
    let a = tiny(12).adapter_free_logits();
    let b = tiny(12).adapter_free_logits();
    let c = tiny(13).adapter_free_logits();
    assert_eq!(a, b);
    assert_ne!(a, c);
}

impl Llama {
    fn adapter_free_logits(&self) -> Vec<f32> {
        host(self.forward(tokens(&PROMPT, &self.device())))
    }
}

#[test]
fn valid_snapshot_runs_without_autodiff() {
    let device = Device::flex().autodiff();
    let model = Llama::init_random(&LlamaConfig::tiny(VOCAB), 14, &device).unwrap();
    let inference = model.valid();
    let logits = inference.forward(tokens(&PROMPT, &Device::flex()));
    assert_eq!(logits.dims(), [1, PROMPT.len(), VOCAB]);
}

#[test]
fn model_and_cache_can_be_shared_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Llama>();
    assert_send_sync::<KvCache>();
    let model = std::sync::Arc::new(tiny(15));
    let expected = host(model.forward(tokens(&PROMPT, &Device::flex())));
    let worker = {
        let model = model.clone();
        std::thread::spawn(move || host(model.forward(tokens(&PROMPT, &Device::flex()))))
    };
    assert_eq!(worker.join().unwrap(), expected);
}
