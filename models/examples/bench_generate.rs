//! Measures the real base model on this machine: greedy generation tokens/s (prefill and
//! decode) and LoRA training tokens/s (forward + backward, sequence 128, batch 1, rank 8 on q and
//! v, FFA and standard). Prints figures; asserts nothing about time.
//!
//! `cargo run --release -p hearth-models --example bench_generate [-- <path/to/model.gguf>]`

use std::time::Instant;

use burn::optim::{AdamWConfig, GradientsParams};
use burn::tensor::{Device, Int, Tensor, TensorData};
use hearth_models::{
    GenerateConfig, Generator, GgufWeights, Llama, LlamaConfig, LoraConfig, Target, Tokenizer,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args().nth(1).unwrap_or_else(|| {
        let dir = std::env::var("HEARTH_ASSETS")
            .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../assets").into());
        format!("{dir}/SmolLM2-135M-Instruct.Q4_1.gguf")
    });
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("model {path}, {threads} threads");

    let t = Instant::now();
    let weights = GgufWeights::open(&path)?;
    let tokenizer = Tokenizer::from_gguf(weights.gguf())?;
    let config = LlamaConfig::from_hparams(hearth_models::WeightSource::hparams(&weights))?
        .with_max_seq_len(1024);
    let device = Device::flex();
    let model = Llama::load_with(&weights, &config, &device)?;
    println!("load: {:.2} s", t.elapsed().as_secs_f64());

    // Generation: prefill a prompt, then decode greedily.
    let prompt = tokenizer.encode(
        "The capital of France is Paris. The capital of Germany is Berlin. The capital of Italy is",
    )?;
    for run in 0..2 {
        let mut generator = Generator::new(&model, &prompt, GenerateConfig::greedy(64))?;
        let t = Instant::now();
        let first = generator.next_token()?;
        let prefill = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let mut tokens: Vec<u32> = first.into_iter().collect();
        while let Some(tok) = generator.next_token()? {
            tokens.push(tok);
        }
        let decode = t.elapsed().as_secs_f64();
        let n = tokens.len().saturating_sub(1);
        println!(
            "run {run}: prefill {} tokens in {:.3} s ({:.1} tok/s); decode {n} tokens in {:.2} s ({:.1} tok/s)",
            prompt.len(),
            prefill,
            prompt.len() as f64 / prefill,
            decode,
            n as f64 / decode
        );
        if run == 0 {
            println!("  text: {:?}", tokenizer.decode(&tokens)?);
        }
    }

    // The same decode with a rank-8 q,v adapter attached, unmerged and merged.
    let mut adapted = model.clone();
    let slot = adapted.add_adapter(LoraConfig::new(8, 16.0, vec![Target::Q, Target::V]))?;
    for merged in [false, true] {
        if merged {
            adapted.merge_adapter(slot)?;
        }
        let mut generator = Generator::new(&adapted, &prompt, GenerateConfig::greedy(32))?;
        generator.next_token()?;
        let t = Instant::now();
        let mut n = 0;
        while generator.next_token()?.is_some() {
            n += 1;
        }
        let s = t.elapsed().as_secs_f64();
        println!(
            "decode with a rank-8 q,v adapter ({}): {:.1} tok/s",
            if merged { "merged" } else { "unmerged" },
            n as f64 / s
        );
    }
    drop(adapted);
    drop(model);

    // Training: forward + backward + AdamW step, sequence 128, batch 1.
    let train_device = Device::flex().autodiff();
    for ffa in [true, false] {
        let mut model = Llama::load_with(&weights, &config, &train_device)?;
        let slot = model.add_adapter(
            LoraConfig::new(8, 16.0, vec![Target::Q, Target::V])
                .with_seed(1)
                .with_ffa(ffa),
        )?;
        let text = "Friends, Romans, countrymen, lend me your ears; I come to bury Caesar, not to praise him. "
            .repeat(8);
        let mut ids: Vec<i64> = tokenizer
            .encode(&text)?
            .into_iter()
            .map(i64::from)
            .collect();
        ids.truncate(129);
        let seq = ids.len() - 1;
        let batch = Tensor::<2, Int>::from_data(TensorData::new(ids, [1, seq + 1]), &train_device);
        let mut optim = AdamWConfig::new().init();
        let steps = 4;
        let mut times = Vec::new();
        let mut losses = Vec::new();
        for _ in 0..steps {
            let t = Instant::now();
            let loss = model.next_token_loss(batch.clone());
            let value: Vec<f32> = loss.clone().into_data().try_into_vec()?;
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(1e-3, model, grads);
            times.push(t.elapsed().as_secs_f64());
            losses.push(value[0]);
        }
        // Skip the first (warm-up) step.
        let mean = times[1..].iter().sum::<f64>() / (steps - 1) as f64;
        let params = model.adapter_weights(slot)?;
        println!(
            "train ({}; {} trainable values): {:.2} s/step, {:.1} tokens/s; loss {:?}",
            if ffa {
                "FFA-LoRA, B only"
            } else {
                "LoRA, A and B"
            },
            if ffa {
                params.b_len()
            } else {
                params.num_params()
            },
            mean,
            seq as f64 / mean,
            losses
        );
    }
    Ok(())
}
