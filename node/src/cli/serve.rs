//! `hearth serve`: the local OpenAI-compatible API over the member's models, without any
//! networking (no peers, no rounds). `hearth node` runs the same API next to the daemon.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;

use super::HomeArgs;
use crate::api::{self, Metrics, Models};
use crate::home::{Home, unlock_from};

/// API flags shared by `hearth serve` (and meant for `hearth node`).
#[derive(Debug, Clone, Args)]
pub struct ApiArgs {
    /// Address of the local API. A non-loopback address needs --api-token.
    #[arg(long, value_name = "HOST:PORT", default_value = api::DEFAULT_ADDR)]
    pub api_addr: SocketAddr,
    /// Bearer token the API requires (`Authorization: Bearer TOKEN`).
    #[arg(
        long,
        value_name = "TOKEN",
        env = "HEARTH_API_TOKEN",
        hide_env_values = true
    )]
    pub api_token: Option<String>,
    /// Generations running at once; further requests get HTTP 429.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=api::MAX_CONCURRENT_LIMIT as i64))]
    pub max_concurrent: u16,
    /// Largest `max_tokens` a request may ask for.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_tokens: u32,
    /// Largest request body in bytes.
    #[arg(long, default_value_t = 1 << 20, value_parser = clap::value_parser!(u32).range(1024..=64 << 20))]
    pub max_body_bytes: u32,
}

impl ApiArgs {
    /// The API configuration these flags describe (checked).
    pub fn config(&self) -> anyhow::Result<api::Config> {
        let config = api::Config {
            addr: self.api_addr,
            token: self.api_token.clone().filter(|t| !t.is_empty()),
            max_concurrent: usize::from(self.max_concurrent),
            max_body_bytes: self.max_body_bytes as usize,
            max_tokens: self.max_tokens as usize,
        };
        config.validate()?;
        Ok(config)
    }
}

/// Arguments of `hearth serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Where the store lives.
    #[command(flatten)]
    pub home: HomeArgs,
    /// Base model (default: the fetched SmolLM2-135M-Instruct; also $HEARTH_MODEL).
    #[arg(long, value_name = "PATH")]
    pub model: Option<PathBuf>,
    /// Context length in tokens (prompt and completion together).
    #[arg(long, default_value_t = crate::model::DEFAULT_CONTEXT as u32, value_parser = clap::value_parser!(u32).range(16..=131072))]
    pub context: u32,
    /// CPU threads for generation (default: all cores).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub threads: Option<u16>,
    /// The API.
    #[command(flatten)]
    pub api: ApiArgs,
}

/// Runs `hearth serve` until SIGINT/SIGTERM.
pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    // Check the flags before the slow parts (unlocking, loading the model).
    let config = args.api.config()?;
    super::node::set_threads(args.threads);
    let path = args.home.path()?;
    let home = Home::open(&path, &unlock_from(args.home.key_file.as_deref(), false)?)?;
    let (models, status) =
        Models::load_member(&home, args.model.as_deref(), args.context as usize)?;
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
