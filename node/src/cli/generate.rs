//! `hearth generate`: stream a completion of a prompt.

use std::io::Write;

use anyhow::Context as _;
use clap::Args;
use hearth_models::{GenerateConfig, Generator, Role};

use super::ModelArgs;

/// Arguments of `hearth generate`.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// The prompt.
    #[arg(long)]
    pub prompt: String,
    /// Wrap the prompt in the model's chat template as a user message.
    #[arg(long)]
    pub chat: bool,
    /// Most tokens to generate.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=8192))]
    pub max_tokens: u32,
    /// Sampling temperature; 0 is greedy decoding.
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f32,
    /// Nucleus sampling mass in (0, 1].
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f32,
    /// Sample only among the k most likely tokens (0: no limit).
    #[arg(long, default_value_t = 0)]
    pub top_k: usize,
    /// Seed for sampling (same seed, same text).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// The model.
    #[command(flatten)]
    pub model: ModelArgs,
}

/// Runs `hearth generate`.
pub fn run(args: GenerateArgs) -> anyhow::Result<()> {
    if !(args.temperature >= 0.0 && args.temperature.is_finite()) {
        anyhow::bail!(
            "--temperature must be a finite number >= 0, got {}",
            args.temperature
        );
    }
    if !(args.top_p > 0.0 && args.top_p <= 1.0) {
        anyhow::bail!("--top-p must be in (0, 1], got {}", args.top_p);
    }
    let loaded = args.model.load()?;
    let tokenizer = &loaded.tokenizer;
    let prompt = if args.chat {
        tokenizer.encode_chat(&[(Role::User, args.prompt.clone())])?
    } else {
        tokenizer.encode(&args.prompt)?
    };
    let max = args.max_tokens as usize;
    let config = if args.temperature == 0.0 {
        GenerateConfig::greedy(max)
    } else {
        GenerateConfig::sampled(max, args.temperature, args.top_k, args.top_p, args.seed)
    }
    .with_stop_tokens(tokenizer.stop_ids());
    let mut generator = Generator::new(&loaded.model, &prompt, config)?;
    let mut out = std::io::stdout().lock();
    if !args.chat {
        write!(out, "{}", args.prompt)?;
    }
    // Decode incrementally: print the text the new token adds (a token may end mid-character).
    let mut tokens = Vec::new();
    let mut printed = 0;
    while let Some(token) = generator.next_token()? {
        tokens.push(token);
        let text = tokenizer.decode_skip_special(&tokens)?;
        if !text.ends_with('\u{fffd}') && text.len() > printed && text.is_char_boundary(printed) {
            write!(out, "{}", &text[printed..])?;
            out.flush().context("writing to stdout")?;
            printed = text.len();
        }
    }
    let text = tokenizer.decode_skip_special(&tokens)?;
    if text.len() > printed && text.is_char_boundary(printed) {
        write!(out, "{}", &text[printed..])?;
    }
    writeln!(out)?;
    Ok(())
}
