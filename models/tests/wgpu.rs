//! The optional GPU backend (`--features wgpu`): a tiny random model with a LoRA adapter gives the
//! same logits, the same greedy tokens and the same LoRA gradients on Burn's wgpu device as on the
//! CPU backend (`Device::flex()`), to `1e-4`.
//!
//! Needs a Vulkan (or Metal/DX12) adapter. Without a GPU, Mesa's CPU Vulkan driver works:
//! `apt-get install mesa-vulkan-drivers libvulkan1`, then
//! `cargo test -p hearth-models --features wgpu --test wgpu`.
#![cfg(feature = "wgpu")]

use burn::optim::GradientsParams;
use burn::tensor::{Device, DeviceKind, Int, Tensor, TensorData};
use hearth_models::{
    Factor, GenerateConfig, Generator, Llama, LlamaConfig, LoraConfig, Prng, Target,
};

/// Largest allowed `|wgpu - cpu|`.
const TOLERANCE: f32 = 1e-4;

fn gpu() -> Device {
    Device::wgpu(DeviceKind::DefaultDevice)
}

/// The same tiny model on any device: seeded weights, a rank-4 q,v adapter whose `B` is non-zero
/// (so the low-rank path changes the output).
fn tiny(device: &Device) -> Llama {
    let config = LlamaConfig::tiny(96);
    let mut model = Llama::init_random(&config, 7, device).expect("init");
    let slot = model
        .add_adapter(LoraConfig::new(4, 8.0, vec![Target::Q, Target::V]).with_seed(3))
        .expect("adapter");
    let mut weights = model.adapter_weights(slot).expect("weights");
    for (k, t) in weights.tensors.iter_mut().enumerate() {
        if t.key.factor == Factor::B {
            t.values = Prng::stream(11, k as u64).fill_uniform(t.values.len(), 0.1);
        }
    }
    model.set_adapter_weights(slot, &weights).expect("set");
    model
}

fn tokens(batch: usize, seq: usize, device: &Device) -> Tensor<2, Int> {
    let ids: Vec<i64> = (0..batch * seq)
        .map(|i| ((i * 37 + 5) % 96) as i64)
        .collect();
    Tensor::from_data(TensorData::new(ids, [batch, seq]), device)
}

fn host<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_into_vec::<f32>().expect("f32")
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn forward_matches_the_cpu_backend() {
    let (cpu, gpu) = (Device::flex(), gpu());
    let expected = host(tiny(&cpu).forward(tokens(2, 24, &cpu)));
    let got = host(tiny(&gpu).forward(tokens(2, 24, &gpu)));
    let d = max_abs_diff(&expected, &got);
    println!("forward: max |wgpu - cpu| = {d:.2e}");
    assert!(d <= TOLERANCE, "logits differ by {d:e}");
    // The comparison is not vacuous: the logits are not all equal.
    assert!(expected.iter().any(|&x| (x - expected[0]).abs() > 1e-2));
}

#[test]
fn cached_greedy_generation_matches_the_cpu_backend() {
    let (cpu_model, gpu_model) = (tiny(&Device::flex()), tiny(&gpu()));
    let prompt = [1u32, 17, 42, 5, 88, 3];
    let mut on_cpu = Generator::new(&cpu_model, &prompt, GenerateConfig::greedy(16)).expect("cpu");
    let mut on_gpu = Generator::new(&gpu_model, &prompt, GenerateConfig::greedy(16)).expect("gpu");
    let mut worst: f32 = 0.0;
    let mut n = 0;
    while let Some((token, logits)) = on_cpu.next_with_logits().expect("cpu step") {
        let (gpu_token, gpu_logits) = on_gpu
            .next_with_logits()
            .expect("gpu step")
            .expect("gpu ended early");
        assert_eq!(token, gpu_token, "step {n}");
        worst = worst.max(max_abs_diff(&logits, &gpu_logits));
        n += 1;
    }
    assert_eq!(n, 16);
    assert!(on_gpu.next_with_logits().expect("gpu end").is_none());
    println!("cached decode: max |wgpu - cpu| = {worst:.2e}");
    assert!(worst <= TOLERANCE, "logits differ by {worst:e}");
}

#[test]
fn lora_gradients_match_the_cpu_backend() {
    let run = |device: Device| {
        let device = device.autodiff();
        let model = tiny(&device);
        let loss = model.next_token_loss(tokens(1, 33, &device));
        let value = host(loss.clone())[0];
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        let mut out = Vec::new();
        for block in &model.layers {
            for target in [Target::Q, Target::V] {
                let pair = block.linear(target).pair(0).expect("adapter");
                for param in [&pair.a, &pair.b] {
                    let g = grads.get::<2>(param.id).expect("a gradient");
                    out.extend(host(g));
                }
            }
        }
        (value, out)
    };
    let (cpu_loss, cpu_grads) = run(Device::flex());
    let (gpu_loss, gpu_grads) = run(gpu());
    assert!(
        (cpu_loss - gpu_loss).abs() <= TOLERANCE,
        "{cpu_loss} vs {gpu_loss}"
    );
    let d = max_abs_diff(&cpu_grads, &gpu_grads);
    println!("loss {cpu_loss}; gradients: max |wgpu - cpu| = {d:.2e}");
    assert!(d <= TOLERANCE, "gradients differ by {d:e}");
    assert!(
        cpu_grads.iter().any(|g| g.abs() > 1e-4),
        "all gradients vanish"
    );
}
