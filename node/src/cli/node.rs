//! `hearth node`, `hearth ingest`, `hearth forget`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};
use libp2p::Multiaddr;

use super::HomeArgs;
use super::serve::{ApiArgs, ConfigArgs};
use crate::config::Config;
use crate::daemon::{ApiOptions, Options, TrainSettings};
use crate::home::{Home, unlock_from};

/// Log output formats.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Human,
    /// One JSON object per line.
    Json,
}

/// Arguments of `hearth node`. Each flag overrides the config file's key of the same name
/// (`[node]`, `[model]`, `[api]`); defaults are the file's (docs/OPERATIONS.md).
#[derive(Debug, Args)]
pub struct NodeArgs {
    /// Where the store lives.
    #[command(flatten)]
    pub home: HomeArgs,
    /// The configuration file.
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Address to listen on (repeatable; replaces node.listen), e.g. /ip4/0.0.0.0/tcp/4011 or
    /// /ip4/0.0.0.0/udp/4011/quic-v1 [default: both of these].
    #[arg(long = "listen", value_name = "MULTIADDR")]
    pub listen: Vec<Multiaddr>,
    /// Peer to dial at start besides the invite's and node.bootstrap's (multiaddr with
    /// `/p2p/<peer id>`; repeatable).
    #[arg(long = "bootstrap", value_name = "MULTIADDR")]
    pub bootstrap: Vec<Multiaddr>,
    /// Do not look for peers on the local network with mDNS (multicast).
    #[arg(long)]
    pub no_mdns: bool,
    /// Base model (default: the fetched SmolLM2-135M-Instruct; also $HEARTH_MODEL).
    #[arg(long, value_name = "PATH")]
    pub model: Option<PathBuf>,
    /// Follow the community without training or contributing.
    #[arg(long)]
    pub follow: bool,
    /// CPU threads for training (default: all cores).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub threads: Option<u16>,
    /// Do not train while the node uses more than this many MiB of memory (a job over it is
    /// abandoned), so the machine stays usable.
    #[arg(long, value_name = "MIB", value_parser = clap::value_parser!(u64).range(64..))]
    pub max_memory_mb: Option<u64>,
    /// Most seconds of training per contribution [default: 600].
    #[arg(long)]
    pub train_secs: Option<f64>,
    /// Tokens per training window [default: 128].
    #[arg(long, value_parser = clap::value_parser!(u32).range(8..=4096))]
    pub seq_len: Option<u32>,
    /// Learning rate of local training [default: 0.002].
    #[arg(long)]
    pub lr: Option<f64>,
    /// Stop after this round's announce phase.
    #[arg(long, value_name = "ROUND")]
    pub rounds: Option<u64>,
    /// Stop after this many seconds in any case.
    #[arg(long, value_name = "SECS")]
    pub max_runtime: Option<u64>,
    /// Write a JSON summary here when stopping.
    #[arg(long, value_name = "FILE")]
    pub summary: Option<PathBuf>,
    /// Append every payload sent to this file (length-prefixed; for audits and tests).
    #[arg(long, value_name = "FILE", hide = true)]
    pub capture: Option<PathBuf>,
    /// Log format [default: human].
    #[arg(long, value_enum)]
    pub log_format: Option<LogFormat>,
    /// Do not serve the local API.
    #[arg(long)]
    pub no_api: bool,
    /// Context length the API serves, in tokens [default: 2048].
    #[arg(long, value_parser = clap::value_parser!(u32).range(16..=131072))]
    pub context: Option<u32>,
    /// The local API (models, /status, /metrics).
    #[command(flatten)]
    pub api: ApiArgs,
}

/// Sets the global rayon pool size (Burn's CPU backend computes on it).
pub fn set_threads(threads: Option<u16>) {
    if let Some(n) = threads {
        // Fails only if the pool was already built, in which case it keeps its size.
        let _ = rayon::ThreadPoolBuilder::new()
            .num_threads(usize::from(n))
            .build_global();
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,libp2p=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Runs `hearth node` until SIGINT/SIGTERM or its limits.
pub fn run(args: NodeArgs) -> anyhow::Result<()> {
    let home = args.home.path()?;
    let file = args.config.load(&home)?;
    let (options, log_format) = options(args, &file, home)?;
    init_logging(log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let summary = runtime.block_on(crate::daemon::run(options, shutdown_signal()))?;
    println!("{}", serde_json::to_string_pretty(&summary)?);
    runtime.shutdown_timeout(Duration::from_secs(2));
    Ok(())
}

/// The daemon's options: the flags over the config file `file` (checked), and the log format.
pub fn options(
    args: NodeArgs,
    file: &Config,
    home: PathBuf,
) -> anyhow::Result<(Options, LogFormat)> {
    let n = &file.node;
    let train_secs = args.train_secs.unwrap_or(n.train_secs);
    anyhow::ensure!(
        train_secs.is_finite() && train_secs >= 1.0,
        "--train-secs must be at least 1"
    );
    let lr = args.lr.unwrap_or(n.lr);
    anyhow::ensure!(lr.is_finite() && lr > 0.0, "--lr must be a positive number");
    let log_format = match args.log_format {
        Some(f) => f,
        None if n.log_format == "json" => LogFormat::Json,
        None => LogFormat::Human,
    };
    let parse = |list: &[String]| -> anyhow::Result<Vec<Multiaddr>> {
        Ok(list.iter().map(|a| a.parse()).collect::<Result<_, _>>()?)
    };
    let listen = if args.listen.is_empty() {
        parse(&n.listen)?
    } else {
        args.listen
    };
    let mut bootstrap = parse(&n.bootstrap)?;
    bootstrap.extend(args.bootstrap);
    let api = if args.no_api || !file.api.enabled {
        None
    } else {
        Some(ApiOptions {
            config: args.api.config(file)?,
            context: args.context.unwrap_or(file.model.context) as usize,
        })
    };
    set_threads(args.threads.or(n.threads));
    let unlock = unlock_from(args.home.key_file.as_deref(), false)?;
    let options = Options {
        home,
        unlock,
        listen,
        bootstrap,
        mdns: n.mdns && !args.no_mdns,
        model: args.model.or_else(|| file.model.path.clone()),
        contribute: n.contribute && !args.follow,
        train: TrainSettings {
            seq_len: args.seq_len.unwrap_or(n.seq_len) as usize,
            learning_rate: lr,
            max_seconds: train_secs,
            max_memory_bytes: args.max_memory_mb.or(n.max_memory_mb).map(|m| m << 20),
            ..TrainSettings::default()
        },
        rounds: args.rounds,
        max_runtime: args.max_runtime.map(Duration::from_secs),
        summary: args.summary,
        capture: args.capture,
        api,
    };
    Ok((options, log_format))
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Arguments of `hearth ingest` and `hearth forget`.
#[derive(Debug, Args)]
pub struct FolderArgs {
    /// A folder of .txt, .md and .jsonl (chat records with `messages`) files.
    pub folder: PathBuf,
    /// Where the store lives.
    #[command(flatten)]
    pub home: HomeArgs,
}

/// Runs `hearth ingest`: the folder's documents go into the store, sealed.
pub fn ingest(args: FolderArgs) -> anyhow::Result<()> {
    let path = args.home.path()?;
    let home = Home::open(&path, &unlock_from(args.home.key_file.as_deref(), false)?)?;
    let report = crate::documents::ingest_folder(&home.store, &args.folder)?;
    for s in &report.skipped {
        eprintln!("skipped {s}");
    }
    println!(
        "stored {} documents ({} bytes) from {}; they stay on this machine",
        report.documents,
        report.bytes,
        args.folder.display()
    );
    Ok(())
}

/// Runs `hearth forget`: removes what an ingest of the folder stored.
pub fn forget(args: FolderArgs) -> anyhow::Result<()> {
    let path = args.home.path()?;
    let home = Home::open(&path, &unlock_from(args.home.key_file.as_deref(), false)?)?;
    let n = crate::documents::forget(&home.store, &args.folder)?;
    println!(
        "removed {n} documents of {}; adapters trained on them keep what they learned until retrained",
        args.folder.display()
    );
    Ok(())
}
