//! The `hearth` command line: argument types and one module per command.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

mod generate;
mod perplexity;

/// Hearth: improve a shared open language model together while everyone's data stays home.
#[derive(Debug, Parser)]
#[command(name = "hearth", version, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Generate text from a prompt, streaming tokens to stdout.
    ///
    /// Example: hearth generate --prompt "The capital of France is" --max-tokens 8
    Generate(generate::GenerateArgs),
    /// Measure the model's perplexity on a text file (held-out loss).
    ///
    /// Example: hearth perplexity --file notes.txt --adapter my-adapter/
    Perplexity(perplexity::PerplexityArgs),
}

/// Which model and adapters to run.
#[derive(Debug, Args)]
pub struct ModelArgs {
    /// Base model: a .gguf file or a Hugging Face checkpoint folder (default: the fetched
    /// SmolLM2-135M-Instruct; also $HEARTH_MODEL).
    #[arg(long, value_name = "PATH")]
    pub model: Option<PathBuf>,
    /// A LoRA adapter folder in the PEFT layout; repeat to stack adapters in order.
    #[arg(long = "adapter", value_name = "DIR")]
    pub adapters: Vec<PathBuf>,
    /// Context length in tokens (memory for caches grows with it).
    #[arg(long, default_value_t = crate::model::DEFAULT_CONTEXT as u32, value_parser = clap::value_parser!(u32).range(16..=131072))]
    pub context: u32,
}

impl ModelArgs {
    /// Loads the model these arguments name.
    pub fn load(&self) -> anyhow::Result<crate::model::LoadedModel> {
        let path = crate::model::resolve_model_path(self.model.as_deref())?;
        crate::model::load(&path, &self.adapters, self.context as usize)
    }
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Generate(args) => generate::run(args),
        Command::Perplexity(args) => perplexity::run(args),
    }
}
