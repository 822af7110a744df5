//! `hearth serve`: the local OpenAI-compatible API over the member's models, without any
//! networking (no peers, no rounds). `hearth node` runs the same API next to the daemon.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;

use super::HomeArgs;
use crate::api::{self, Metrics, Models};
use crate::config::Config;
use crate::home::{Home, unlock_from};

/// API flags shared by `hearth serve` and `hearth node`; each overrides the config file's
/// `[api]` key of the same name.
#[derive(Debug, Clone, Args)]
pub struct ApiArgs {
    /// Address of the local API [default: 127.0.0.1:11435]. A non-loopback address needs --api-token.
    #[arg(long, value_name = "HOST:PORT")]
    pub api_addr: Option<SocketAddr>,
    /// Bearer token the API requires (`Authorization: Bearer TOKEN`).
    #[arg(
        long,
        value_name = "TOKEN",
        env = "HEARTH_API_TOKEN",
        hide_env_values = true
    )]
    pub api_token: Option<String>,
    /// Generations running at once; further requests get HTTP 429 [default: 2].
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=api::MAX_CONCURRENT_LIMIT as i64))]
    pub max_concurrent: Option<u16>,
    /// Largest `max_tokens` a request may ask for [default: 1024].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_tokens: Option<u32>,
    /// Largest request body in bytes [default: 1048576].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1024..=64 << 20))]
    pub max_body_bytes: Option<u32>,
}

impl ApiArgs {
    /// The API configuration: these flags over the config file's `[api]` (checked).
    pub fn config(&self, file: &Config) -> anyhow::Result<api::Config> {
        let mut file = file.clone();
        let a = &mut file.api;
        if let Some(addr) = self.api_addr {
            a.addr = addr.to_string();
        }
        if let Some(n) = self.max_concurrent {
            a.max_concurrent = n;
        }
        if let Some(n) = self.max_tokens {
            a.max_tokens = n;
        }
        if let Some(n) = self.max_body_bytes {
            a.max_body_bytes = n;
        }
        file.api_config(self.api_token.as_deref())
    }
}

/// Which configuration file to read.
#[derive(Debug, Clone, Args)]
pub struct ConfigArgs {
    /// Configuration file (TOML; default: config.toml in the data directory, when present;
    /// also $HEARTH_CONFIG). Flags override its keys.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

impl ConfigArgs {
    /// The configuration in force for the data directory `home`.
    pub fn load(&self, home: &std::path::Path) -> anyhow::Result<Config> {
        let (config, from) = Config::find(self.config.as_deref(), home)?;
        if let Some(path) = from {
            tracing::debug!(file = %path.display(), "configuration read");
        }
        Ok(config)
    }
}

/// Arguments of `hearth serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Where the store lives.
    #[command(flatten)]
    pub home: HomeArgs,
    /// The configuration file.
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Base model (default: the fetched SmolLM2-135M-Instruct; also $HEARTH_MODEL).
    #[arg(long, value_name = "PATH")]
    pub model: Option<PathBuf>,
    /// Context length in tokens, prompt and completion together [default: 2048].
    #[arg(long, value_parser = clap::value_parser!(u32).range(16..=131072))]
    pub context: Option<u32>,
    /// CPU threads for generation (default: all cores).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub threads: Option<u16>,
    /// The API.
    #[command(flatten)]
    pub api: ApiArgs,
}

/// Runs `hearth serve` until SIGINT/SIGTERM.
pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    // Check the flags and the file before the slow parts (unlocking, loading the model).
    let path = args.home.path()?;
    let file = args.config.load(&path)?;
    let config = args.api.config(&file)?;
    super::node::set_threads(args.threads.or(file.node.threads));
    let model = args.model.or(file.model.path);
    let context = args.context.unwrap_or(file.model.context) as usize;
    let home = Home::open(&path, &unlock_from(args.home.key_file.as_deref(), false)?)?;
    let (models, status) = Models::load_member(&home, model.as_deref(), context)?;
    // The store stays closed while serving: everything served is in memory.
    drop(home);
    for note in &status.notes {
        eprintln!("note: {note}");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = api::bind(&config).await?;
        let addr = listener.local_addr()?;
        let ids: Vec<&str> = models.entries().iter().map(|e| e.id.as_str()).collect();
        println!(
            "serving {} on http://{addr}/v1 (Ctrl-C stops)",
            ids.join(", ")
        );
        if config.token.is_some() {
            println!("requests need the header `Authorization: Bearer <your token>`");
        }
        let state = api::State::new(config, models, status, Arc::new(Metrics::new()))?;
        api::serve(listener, state, shutdown_signal()).await
    })?;
    runtime.shutdown_timeout(Duration::from_secs(2));
    Ok(())
}

/// Completes on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
