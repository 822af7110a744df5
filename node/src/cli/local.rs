//! `hearth train` (the personal adapter) and `hearth eval` (held-out loss of base, community and
//! personal models on the member's own held-out split).

use std::ops::ControlFlow;
use std::path::PathBuf;

use burn::tensor::Device;
use clap::Args;
use hearth_models::{LoraConfig, evaluate};
use hearth_training::data::{Dataset, HELD_OUT_FRACTION};
use hearth_training::{Schedule, TrainConfig, Trainer, train_personal};
use serde::Serialize;

use super::HomeArgs;
use crate::home::{Home, unlock_from};
use crate::local;

/// Arguments of `hearth train`.
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Where the store lives.
    #[command(flatten)]
    pub home: HomeArgs,
    /// Base model (default: the fetched SmolLM2-135M-Instruct).
    #[arg(long, value_name = "PATH")]
    pub model: Option<PathBuf>,
    /// Most seconds of training.
    #[arg(long, default_value_t = 300.0)]
    pub secs: f64,
    /// Most optimizer steps.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub steps: u32,
    /// LoRA rank of the personal adapter.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub rank: u32,
    /// LoRA alpha.
    #[arg(long, default_value_t = 16.0)]
    pub alpha: f64,
    /// Learning rate.
    #[arg(long, default_value_t = 2e-3)]
    pub lr: f64,
    /// Tokens per training window.
    #[arg(long, default_value_t = 128, value_parser = clap::value_parser!(u32).range(8..=4096))]
    pub seq_len: u32,
    /// CPU threads (default: all cores).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub threads: Option<u16>,
    /// Leave the held-out split (the last 20 % of each document) out of training, so that
    /// `hearth eval` measures the personal adapter on text it has not seen. Default: train on
    /// all of the member's data.
    #[arg(long)]
    pub hold_out: bool,
}

/// Runs `hearth train`: a personal adapter (standard LoRA on q and v) over the base model and the
/// community adapter, on all of the member's documents (or their training split with
/// `--hold-out`); kept sealed in the store.
pub fn train(args: TrainArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.secs.is_finite() && args.secs >= 1.0,
        "--secs must be at least 1"
    );
    anyhow::ensure!(
        args.lr.is_finite() && args.lr > 0.0,
        "--lr must be positive"
    );
    anyhow::ensure!(
        args.alpha.is_finite() && args.alpha > 0.0,
        "--alpha must be positive"
    );
    super::node::set_threads(args.threads);
    let path = args.home.path()?;
    let home = Home::open(&path, &unlock_from(args.home.key_file.as_deref(), false)?)?;
    let docs = crate::documents::load(&home.store)?;
    anyhow::ensure!(
        !docs.is_empty(),
        "no documents: run `hearth ingest <folder>` first"
    );
    let device = Device::flex().autodiff();
    let (mut model, tokenizer, manifest) = local::load_community_base(
        &home,
        args.model.as_deref(),
        args.seq_len as usize + 1,
        &device,
    )?;
    let (round, _) = local::attach_community(&home, &manifest, &mut model)?;
    let fraction = if args.hold_out {
        HELD_OUT_FRACTION
    } else {
        0.0
    };
    let full = Dataset::from_documents(&docs, &tokenizer, fraction)?;
    let data = Dataset::new(full.train().to_vec(), Vec::new());
    let mut seed = [0u8; 8];
    crate::secrets::random_fill(&mut seed)?;
    let lora = LoraConfig::new(
        args.rank as usize,
        args.alpha,
        vec![hearth_models::Target::Q, hearth_models::Target::V],
    )
    .with_seed(u64::from_le_bytes(seed));
    let config = TrainConfig::new()
        .with_seq_len(args.seq_len as usize)
        .with_learning_rate(args.lr)
        .with_schedule(Schedule::Cosine)
        .with_warmup_steps(5)
        .with_max_steps(args.steps as usize)
        .with_max_seconds(Some(args.secs))
        .with_seed(u64::from_le_bytes(seed));
    let trainer = Trainer::new(config)?.with_title("personal adapter");
    let outcome = train_personal(&trainer, model, lora, &data, |_| ControlFlow::Continue(()))?;
    local::save_personal(&home, &outcome.adapter)?;
    let r = &outcome.report;
    println!(
        "personal adapter trained over community version {round}: {} steps, {:.0} tokens/s, loss {} → {}",
        r.steps,
        r.tokens_per_sec,
        r.initial_loss.map_or("-".into(), |l| format!("{l:.3}")),
        r.final_loss.map_or("-".into(), |l| format!("{l:.3}")),
    );
    println!("it stays sealed in this node's store and is never shared");
    Ok(())
}

/// Arguments of `hearth eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Where the store lives.
    #[command(flatten)]
    pub home: HomeArgs,
    /// Base model (default: the fetched SmolLM2-135M-Instruct).
    #[arg(long, value_name = "PATH")]
    pub model: Option<PathBuf>,
    /// Evaluate at most this many held-out tokens (0: all).
    #[arg(long, default_value_t = 0)]
    pub max_tokens: usize,
    /// Tokens per evaluation window.
    #[arg(long, default_value_t = 128, value_parser = clap::value_parser!(u32).range(2..=8192))]
    pub window: u32,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Held-out figures of one model.
#[derive(Debug, Serialize)]
pub struct EvalLine {
    /// Which model.
    pub model: String,
    /// Mean loss, nats per token.
    pub loss: f64,
    /// Next-token accuracy.
    pub accuracy: f64,
}

/// What `hearth eval` reports.
#[derive(Debug, Serialize)]
pub struct EvalReport {
    /// Held-out tokens evaluated.
    pub tokens: usize,
    /// Round of the community version evaluated.
    pub community_round: u64,
    /// One line per model.
    pub models: Vec<EvalLine>,
}

/// Runs `hearth eval` on the held-out split of the member's documents (the last 20 % of each).
pub fn eval(args: EvalArgs) -> anyhow::Result<()> {
    let path = args.home.path()?;
    let home = Home::open(&path, &unlock_from(args.home.key_file.as_deref(), false)?)?;
    let docs = crate::documents::load(&home.store)?;
    anyhow::ensure!(
        !docs.is_empty(),
        "no documents: run `hearth ingest <folder>` first"
    );
    let device = Device::flex();
    let window = args.window as usize;
    let (base, tokenizer, manifest) =
        local::load_community_base(&home, args.model.as_deref(), window, &device)?;
    let data = Dataset::from_documents(&docs, &tokenizer, HELD_OUT_FRACTION)?;
    let mut tokens = data.held_out().to_vec();
    if args.max_tokens > 0 {
        tokens.truncate(args.max_tokens);
    }
    anyhow::ensure!(
        tokens.len() >= 2,
        "the held-out split has fewer than 2 tokens"
    );
    let mut lines = Vec::new();
    let mut run = |name: &str, model: &hearth_models::Llama| -> anyhow::Result<()> {
        let e = evaluate(model, &tokens, window, |_| {})?;
        lines.push(EvalLine {
            model: name.into(),
            loss: e.mean_nll(),
            accuracy: e.accuracy(),
        });
        Ok(())
    };
    run("base", &base)?;
    let mut community = base.clone();
    let (round, _) = local::attach_community(&home, &manifest, &mut community)?;
    run("community", &community)?;
    let mut personal = community.clone();
    if local::attach_personal(&home, &mut personal)?.is_some() {
        run("community+personal", &personal)?;
    }
    let report = EvalReport {
        tokens: tokens.len(),
        community_round: round,
        models: lines,
    };
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "held-out split: {} tokens; community version of round {round}",
            report.tokens
        );
        for l in &report.models {
            println!(
                "{:<20} loss {:.4} nats/token  accuracy {:.4}",
                l.model, l.loss, l.accuracy
            );
        }
    }
    Ok(())
}
