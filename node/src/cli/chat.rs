//! `hearth chat`: talk to your models in the terminal, the reply streaming as it is generated.
//!
//! The conversation is kept and sent again with each message (ChatML through the tokenizer's
//! chat template); when it outgrows the context, the oldest exchanges are dropped (a system
//! prompt stays).

use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::ops::ControlFlow;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use hearth_models::{GenerateConfig, Role, Tokenizer};

use super::HomeArgs;
use crate::api::{self, Entry, Finish, Job, Models};
use crate::home::{Home, unlock_from};

/// Which stack of adapters to talk to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Stack {
    /// The base model alone.
    Base,
    /// The base model with the community adapter.
    Community,
    /// The community adapter with your personal adapter on top.
    Personal,
}

impl Stack {
    fn id(self) -> &'static str {
        match self {
            Stack::Base => api::BASE,
            Stack::Community => api::COMMUNITY,
            Stack::Personal => api::PERSONAL,
        }
    }
}

/// Arguments of `hearth chat`.
#[derive(Debug, Args)]
pub struct ChatArgs {
    /// Where the store lives.
    #[command(flatten)]
    pub home: HomeArgs,
    /// Base model (default: the fetched SmolLM2-135M-Instruct; also $HEARTH_MODEL).
    #[arg(long, value_name = "PATH")]
    pub model: Option<PathBuf>,
    /// Which adapters to use (default: the fullest stack you have).
    #[arg(long, value_enum)]
    pub stack: Option<Stack>,
    /// Answer this one message and exit (no conversation).
    #[arg(long)]
    pub prompt: Option<String>,
    /// A system prompt for the conversation (default: the model's own).
    #[arg(long)]
    pub system: Option<String>,
    /// Most tokens per reply.
    #[arg(long, default_value_t = 512, value_parser = clap::value_parser!(u32).range(1..=65536))]
    pub max_tokens: u32,
    /// Sampling temperature; 0 is greedy decoding.
    #[arg(long, default_value_t = 0.7)]
    pub temperature: f32,
    /// Nucleus sampling mass in (0, 1].
    #[arg(long, default_value_t = 0.9)]
    pub top_p: f32,
    /// Seed for sampling (default: a fresh one).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Context length in tokens: the conversation plus the reply.
    #[arg(long, default_value_t = crate::model::DEFAULT_CONTEXT as u32, value_parser = clap::value_parser!(u32).range(16..=131072))]
    pub context: u32,
    /// CPU threads (default: all cores).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub threads: Option<u16>,
}

/// Runs `hearth chat`.
pub fn run(args: ChatArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.temperature.is_finite() && args.temperature >= 0.0,
        "--temperature must be a finite number >= 0, got {}",
        args.temperature
    );
    anyhow::ensure!(
        args.top_p > 0.0 && args.top_p <= 1.0,
        "--top-p must be in (0, 1], got {}",
        args.top_p
    );
    super::node::set_threads(args.threads);
    let path = args.home.path()?;
    let home = Home::open(&path, &unlock_from(args.home.key_file.as_deref(), false)?)?;
    let (models, status) =
        Models::load_member(&home, args.model.as_deref(), args.context as usize)?;
    drop(home);
    for note in &status.notes {
        eprintln!("note: {note}");
    }
    let entry = pick(&models, args.stack)?.clone();
    let mut chat = Chat {
        models: &models,
        entry: &entry,
        history: Vec::new(),
        seed: match args.seed {
            Some(s) => s,
            None => {
                let mut b = [0u8; 8];
                crate::secrets::random_fill(&mut b)?;
                u64::from_le_bytes(b)
            }
        },
        args: &args,
    };
    if let Some(system) = &args.system {
        chat.history.push((Role::System, system.clone()));
    }
    if let Some(prompt) = &args.prompt {
        return chat.reply(prompt);
    }
    let stack = if entry.layers.is_empty() {
        "the base model alone".to_string()
    } else {
        format!("base + {}", entry.layers.join(" + "))
    };
    eprintln!(
        "chatting with {} ({stack}); /exit or Ctrl-D ends, /reset starts over",
        entry.id
    );
    let interactive = std::io::stdin().is_terminal();
    let mut lines = std::io::stdin().lock().lines();
    loop {
        if interactive {
            print!("> ");
            std::io::stdout().flush().context("writing to stdout")?;
        }
        let Some(line) = lines.next() else { break };
        let line = line.context("reading stdin")?;
        let line = line.trim();
        match line {
            "" => continue,
            "/exit" | "/quit" => break,
            "/reset" => {
                chat.history.retain(|(r, _)| *r == Role::System);
                eprintln!("(conversation cleared)");
                continue;
            }
            _ => {}
        }
        if let Err(e) = chat.reply(line) {
            eprintln!("error: {e:#}");
        }
    }
    Ok(())
}

/// The entry for `stack`, or the fullest one; an error that says how to get a missing one.
fn pick(models: &Models, stack: Option<Stack>) -> anyhow::Result<&Entry> {
    let Some(stack) = stack else {
        return Ok(models.default_entry());
    };
    models.get(stack.id()).ok_or_else(|| match stack {
        Stack::Personal => anyhow::anyhow!(
            "you have no personal adapter that fits this model: train one with `hearth train` or import one with `hearth import DIR`"
        ),
        _ => anyhow::anyhow!(
            "no community adapter: this node is in no community yet (`hearth join <invite>`)"
        ),
    })
}

struct Chat<'a> {
    models: &'a Models,
    entry: &'a Entry,
    history: Vec<(Role, String)>,
    seed: u64,
    args: &'a ChatArgs,
}

impl Chat<'_> {
    /// Adds the user's message, streams the reply to stdout and keeps both in the history.
    fn reply(&mut self, message: &str) -> anyhow::Result<()> {
        self.history.push((Role::User, message.to_string()));
        let context = self.models.context();
        let room = (self.args.max_tokens as usize).min(context / 2).max(1);
        let prompt = match fit(self.models.tokenizer(), &mut self.history, context, room) {
            Ok(p) => p,
            Err(e) => {
                self.history.pop();
                return Err(e);
            }
        };
        let max_tokens = (self.args.max_tokens as usize).min(context - prompt.len());
        let tokenizer = self.models.tokenizer();
        let config = if self.args.temperature == 0.0 {
            GenerateConfig::greedy(max_tokens)
        } else {
            GenerateConfig::sampled(
                max_tokens,
                self.args.temperature,
                0,
                self.args.top_p,
                self.seed,
            )
        }
        .with_stop_tokens(tokenizer.stop_ids());
        // A new seed per reply, derived from the first: a seeded chat is reproducible.
        self.seed = self
            .seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let job = Job {
            model: self.entry.model.clone(),
            tokenizer: tokenizer.clone(),
            prompt,
            config,
            stop: Vec::new(),
        };
        let mut out = std::io::stdout().lock();
        let mut text = String::new();
        let mut failed = None;
        let outcome = job.run(|piece| {
            text.push_str(piece);
            if let Err(e) = write!(out, "{piece}").and_then(|()| out.flush()) {
                failed = Some(e);
                return ControlFlow::Break(());
            }
            ControlFlow::Continue(())
        })?;
        if let Some(e) = failed {
            return Err(e).context("writing to stdout");
        }
        writeln!(out)?;
        if outcome.finish == Finish::Length {
            eprintln!("(reply cut at {max_tokens} tokens: raise --max-tokens for longer ones)");
        }
        self.history.push((Role::Assistant, text));
        Ok(())
    }
}

/// The prompt for `history`, dropping the oldest exchanges (after a system message) until it
/// leaves `room` tokens for the reply within `context`.
fn fit(
    tokenizer: &Tokenizer,
    history: &mut Vec<(Role, String)>,
    context: usize,
    room: usize,
) -> anyhow::Result<Vec<u32>> {
    loop {
        let ids = tokenizer.encode_chat(history)?;
        if ids.len() + room <= context {
            return Ok(ids);
        }
        let first = usize::from(history.first().is_some_and(|(r, _)| *r == Role::System));
        if history.len() <= first + 1 {
            anyhow::bail!(
                "your message needs {} tokens with the chat template, but the context holds {context} with {room} kept for the reply: shorten it or raise --context",
                ids.len()
            );
        }
        history.remove(first);
        if history.len() > first + 1 && history[first].0 == Role::Assistant {
            history.remove(first);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_drops_the_oldest_exchanges_and_keeps_the_system_prompt() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tiny.gguf");
        hearth_models::tiny::write_gguf(&path, &hearth_models::LlamaConfig::tiny(320), 1).unwrap();
        let (_, tokenizer, _) =
            crate::model::load_base(&path, 64, &burn::tensor::Device::flex()).unwrap();
        let mut history = vec![(Role::System, "be kind".to_string())];
        for i in 0..6 {
            history.push((Role::User, format!("question number {i}")));
            history.push((Role::Assistant, format!("answer number {i}")));
        }
        history.push((Role::User, "last one".into()));
        let full = tokenizer.encode_chat(&history).unwrap().len();
        let context = full - 20 + 40;
        let ids = fit(&tokenizer, &mut history, context, 40).unwrap();
        assert!(ids.len() + 40 <= context);
        assert_eq!(history[0], (Role::System, "be kind".to_string()));
        assert_eq!(history[1].0, Role::User, "whole exchanges are dropped");
        assert_eq!(history.last().unwrap().1, "last one");
        assert!(history.len() < 14);

        let mut alone = vec![(Role::User, "x".repeat(200))];
        let err = fit(&tokenizer, &mut alone, 64, 16).unwrap_err().to_string();
        assert!(err.contains("shorten it"), "{err}");
    }
}
