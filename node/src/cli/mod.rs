//! The `hearth` command line: argument types and one module per command.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

pub mod adapters;
pub mod chat;
mod generate;
mod inspect;
pub mod local;
pub mod membership;
pub mod node;
mod perplexity;
pub mod serve;

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
    /// Create an identity and an encrypted store.
    ///
    /// Example: HEARTH_HOME=~/.hearth hearth init
    Init(membership::InitArgs),
    /// Manage a community (as its admin).
    #[command(subcommand)]
    Community(CommunityCommand),
    /// Sign a certificate for a member and write their invite file (admin only).
    ///
    /// Example: hearth invite 12D3KooW... --out alice.invite --bootstrap /ip4/192.0.2.1/tcp/4011/p2p/12D3KooW...
    Invite(membership::InviteArgs),
    /// Revoke a member (admin only): a new signed revocation list, which your node publishes
    /// and every member relays; the member's deltas are refused from then on.
    ///
    /// Example: hearth revoke 12D3KooW...
    Revoke(inspect::RevokeArgs),
    /// Join a community with an invite file from its admin.
    ///
    /// Example: hearth join alice.invite
    Join(membership::JoinArgs),
    /// What this node is doing: community, version, round, peers, training, privacy spent
    /// (asks the running node's API; reads the store when the node is stopped).
    ///
    /// Example: hearth status   (or hearth status --json)
    Status(inspect::InspectArgs),
    /// The community's members this node knows, and which are connected now.
    ///
    /// Example: hearth peers
    Peers(inspect::InspectArgs),
    /// The privacy ledger: ε and ρ spent of the budget, and every release charged.
    ///
    /// Example: hearth budget
    Budget(inspect::InspectArgs),
    /// Show this node's member id and community.
    Whoami(HomeArgs),
    /// Add a folder of private documents (.txt, .md, .jsonl chats) to the store, sealed.
    ///
    /// Example: hearth ingest ~/notes
    Ingest(node::FolderArgs),
    /// Remove every document an earlier `hearth ingest` of a folder stored.
    ///
    /// Example: hearth forget ~/notes
    Forget(node::FolderArgs),
    /// Run the peer daemon: follow the community, train and contribute each round.
    ///
    /// Example: hearth node --listen /ip4/0.0.0.0/tcp/4011 --threads 2
    Node(node::NodeArgs),
    /// Train the personal adapter (never shared) over the community adapter.
    ///
    /// Example: hearth train --secs 600
    Train(local::TrainArgs),
    /// Held-out loss of the base, community and personal models on your own documents.
    ///
    /// Example: hearth eval --max-tokens 4096
    Eval(local::EvalArgs),
    /// Serve your models over a local OpenAI-compatible HTTP API (no networking with peers).
    ///
    /// Models: hearth-personal (base + community + personal adapter), hearth-community, base.
    ///
    /// Example: hearth serve --api-addr 127.0.0.1:11435, then
    /// curl http://127.0.0.1:11435/v1/chat/completions -d '{"model":"hearth-community","messages":[{"role":"user","content":"Hi"}]}'
    Serve(serve::ServeArgs),
    /// Chat with your models in the terminal, the reply streaming as it is written.
    ///
    /// Example: hearth chat --stack community   (or one question: hearth chat --prompt "What is a hearth?")
    Chat(chat::ChatArgs),
    /// Write an adapter in the Hugging Face PEFT layout (adapter_config.json + adapter_model.safetensors).
    ///
    /// Example: hearth export --adapter community --out community-adapter/
    Export(adapters::ExportArgs),
    /// Make a PEFT-layout adapter your personal adapter (checked against the community's base model).
    ///
    /// Example: hearth import my-adapter/ --force
    Import(adapters::ImportArgs),
    /// Check the configuration file and print the configuration in force (every key, with
    /// defaults filled in; a starting point for your own config.toml).
    ///
    /// Example: hearth config > ~/.local/share/hearth/config.toml
    Config(ConfigCommandArgs),
    /// Measure the model's perplexity on a text file (held-out loss).
    ///
    /// Example: hearth perplexity --file notes.txt --adapter my-adapter/
    Perplexity(perplexity::PerplexityArgs),
}

/// Community administration.
#[derive(Debug, Subcommand)]
pub enum CommunityCommand {
    /// Create a community: its signed manifest pins the base model, LoRA shape, privacy and
    /// aggregation rules and round schedule; this member becomes its admin.
    ///
    /// Example: hearth community create --name readers --privacy local --round-secs 600
    Create(membership::CreateArgs),
}

/// Where the member's data lives and how to unlock it.
#[derive(Debug, Args)]
pub struct HomeArgs {
    /// Data directory (default: $HEARTH_HOME, else the platform's data directory).
    #[arg(long, value_name = "DIR")]
    pub home: Option<PathBuf>,
    /// Unlock the store with this 32-byte key file instead of a passphrase
    /// (the passphrase comes from $HEARTH_PASSPHRASE or a prompt).
    #[arg(long, value_name = "FILE")]
    pub key_file: Option<PathBuf>,
}

impl HomeArgs {
    /// The resolved data directory.
    pub fn path(&self) -> anyhow::Result<PathBuf> {
        crate::home::resolve_home(self.home.as_deref())
    }
}

/// Arguments of `hearth config`.
#[derive(Debug, Args)]
pub struct ConfigCommandArgs {
    /// Data directory whose config.toml to read (default: $HEARTH_HOME, else the platform's).
    #[arg(long, value_name = "DIR")]
    pub home: Option<PathBuf>,
    /// The configuration file.
    #[command(flatten)]
    pub config: serve::ConfigArgs,
}

fn print_config(args: ConfigCommandArgs) -> anyhow::Result<()> {
    let home = crate::home::resolve_home(args.home.as_deref())?;
    let (config, from) = crate::config::Config::find(args.config.config.as_deref(), &home)?;
    match from {
        Some(path) => println!("# read from {} (valid)", path.display()),
        None => println!(
            "# no config file: these are the defaults ({} in the data directory would be read)",
            crate::config::FILE_NAME
        ),
    }
    print!("{}", config.to_toml()?);
    Ok(())
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
        Command::Init(args) => membership::init(args),
        Command::Community(CommunityCommand::Create(args)) => membership::create(args),
        Command::Invite(args) => membership::invite(args),
        Command::Join(args) => membership::join(args),
        Command::Whoami(args) => membership::whoami(args),
        Command::Revoke(args) => inspect::revoke(args),
        Command::Status(args) => inspect::status(args),
        Command::Peers(args) => inspect::peers(args),
        Command::Budget(args) => inspect::budget(args),
        Command::Ingest(args) => node::ingest(args),
        Command::Forget(args) => node::forget(args),
        Command::Node(args) => node::run(args),
        Command::Train(args) => local::train(args),
        Command::Eval(args) => local::eval(args),
        Command::Serve(args) => serve::run(args),
        Command::Chat(args) => chat::run(args),
        Command::Export(args) => adapters::export(args),
        Command::Import(args) => adapters::import(args),
        Command::Config(args) => print_config(args),
    }
}
