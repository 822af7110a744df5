//! `hearth perplexity`: held-out loss of the model (with adapters) on a text file.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use super::ModelArgs;

/// Largest file `hearth perplexity` reads.
pub const MAX_FILE_BYTES: u64 = 64 << 20;

/// Arguments of `hearth perplexity`.
#[derive(Debug, Args)]
pub struct PerplexityArgs {
    /// A UTF-8 text file.
    #[arg(long)]
    pub file: PathBuf,
    /// Tokens per evaluation window (each window starts without context).
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(2..=8192))]
    pub window: u32,
    /// Evaluate at most this many tokens of the file (0: all).
    #[arg(long, default_value_t = 0)]
    pub max_tokens: usize,
    /// The model.
    #[command(flatten)]
    pub model: ModelArgs,
}

/// Runs `hearth perplexity`; prints `perplexity: X` and `tokens: N` as its last lines.
pub fn run(args: PerplexityArgs) -> anyhow::Result<()> {
    let len = std::fs::metadata(&args.file)
        .with_context(|| format!("reading {}", args.file.display()))?
        .len();
    if len > MAX_FILE_BYTES {
        anyhow::bail!(
            "{} is {len} bytes; the limit is {MAX_FILE_BYTES}",
            args.file.display()
        );
    }
    let bytes =
        std::fs::read(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    let text = String::from_utf8(bytes).map_err(|e| {
        anyhow::anyhow!(
            "{} is not UTF-8 text (invalid byte at offset {})",
            args.file.display(),
            e.utf8_error().valid_up_to()
        )
    })?;
    let loaded = args.model.load()?;
    let mut tokens = loaded.tokenizer.encode(&text)?;
    if args.max_tokens > 0 {
        tokens.truncate(args.max_tokens);
    }
    if tokens.len() < 2 {
        anyhow::bail!(
            "{} has fewer than 2 tokens: nothing to predict",
            args.file.display()
        );
    }
    let bar = ProgressBar::new(tokens.len() as u64).with_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} tokens {msg} ({eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let window = args.window as usize;
    let eval = hearth_models::evaluate(&loaded.model, &tokens, window, |e| {
        bar.set_position(e.tokens + e.tokens.div_ceil(window as u64 - 1));
        bar.set_message(format!("loss {:.3}", e.mean_nll()));
    })?;
    bar.finish_and_clear();
    println!("loss: {:.4} nats/token", eval.mean_nll());
    println!("accuracy: {:.4}", eval.accuracy());
    println!("perplexity: {:.3}", eval.perplexity());
    println!("tokens: {}", eval.tokens);
    Ok(())
}
