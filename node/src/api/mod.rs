//! The local HTTP API: OpenAI-compatible endpoints over the member's models, plus `/status` and
//! Prometheus `/metrics`. `hearth serve` runs it alone; `hearth node` runs it next to the daemon.
//!
//! | route | what |
//! | --- | --- |
//! | `GET /v1/models`, `GET /v1/models/{id}` | [`BASE`], [`COMMUNITY`], [`PERSONAL`] (those that exist) |
//! | `POST /v1/chat/completions` | chat (ChatML), whole or streamed (`stream: true`, server-sent events) |
//! | `POST /v1/completions` | text completion, whole or streamed |
//! | `GET /status` | JSON: models, adapters, community head, API limits |
//! | `GET /metrics` | Prometheus text format ([`Metrics`]) |
//!
//! Generation runs on blocking threads (Burn on the CPU), at most [`Config::max_concurrent`] at a
//! time; a request beyond gets 429 at once rather than waiting. With [`Config::token`] set every
//! route needs `Authorization: Bearer <token>`; binding a non-loopback address without a token is
//! refused ([`Config::validate`]).
//!
//! Running it (this is what `hearth serve` does; the daemon shares its [`Metrics`] and calls
//! [`State::set_models`] / [`State::update_status`] as rounds close):
//!
//! ```no_run
//! # async fn example(models: hearth_node::api::Models) -> anyhow::Result<()> {
//! use std::sync::Arc;
//! use hearth_node::api::{self, Config, Metrics, State, Status};
//! let metrics = Arc::new(Metrics::new());
//! let state = State::new(Config::default(), models, Status::default(), metrics.clone())?;
//! let listener = api::bind(state.config()).await?;
//! api::serve(listener, state, std::future::pending()).await?;
//! # Ok(()) }
//! ```

mod engine;
mod error;
mod generate;
mod metrics;
mod models;
mod openai;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use anyhow::Context as _;
use axum::Json;
use axum::extract::{DefaultBodyLimit, Path, Request, State as AxumState};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub use engine::{Finish, Job, MAX_STOP, MAX_STOP_BYTES, Outcome, visible};
pub use error::ApiError;
pub use metrics::{MAX_LABEL_VALUES, Metrics};
pub use models::{
    BASE, BaseModelStatus, COMMUNITY, CommunityStatus, Entry, Models, PERSONAL, Status,
};

/// The default address: loopback only, the port after Ollama's.
pub const DEFAULT_ADDR: &str = "127.0.0.1:11435";
/// Most concurrent generations allowed by [`Config::validate`].
pub const MAX_CONCURRENT_LIMIT: usize = 64;

/// How the API runs. Defaults: [`DEFAULT_ADDR`], no token, 2 concurrent generations, 1 MiB
/// bodies, 1024 tokens per completion.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address to listen on.
    pub addr: SocketAddr,
    /// Bearer token every request must carry; required off loopback.
    pub token: Option<String>,
    /// Generations running at once; more get 429.
    pub max_concurrent: usize,
    /// Largest request body, in bytes; larger get 413.
    pub max_body_bytes: usize,
    /// Largest `max_tokens` a request may ask for; more get 400.
    pub max_tokens: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 11435)),
            token: None,
            max_concurrent: 2,
            max_body_bytes: 1 << 20,
            max_tokens: 1024,
        }
    }
}

impl Config {
    /// Checks the limits, the token's form, and that a non-loopback address has a token.
    pub fn validate(&self) -> anyhow::Result<()> {
        if let Some(token) = &self.token {
            anyhow::ensure!(!token.is_empty(), "the API token is empty");
            anyhow::ensure!(
                token.chars().all(|c| c.is_ascii_graphic()),
                "the API token must be printable ASCII without spaces"
            );
        } else if !self.addr.ip().is_loopback() {
            anyhow::bail!(
                "refusing to serve on {} without a token: anyone who reaches that address could use your models; \
                 pass --api-token TOKEN (or set HEARTH_API_TOKEN), or listen on 127.0.0.1",
                self.addr
            );
        }
        anyhow::ensure!(
            (1..=MAX_CONCURRENT_LIMIT).contains(&self.max_concurrent),
            "max concurrent requests must be 1 to {MAX_CONCURRENT_LIMIT}, got {}",
            self.max_concurrent
        );
        anyhow::ensure!(
            (1024..=64 << 20).contains(&self.max_body_bytes),
            "max body bytes must be 1 KiB to 64 MiB, got {}",
            self.max_body_bytes
        );
        anyhow::ensure!(self.max_tokens >= 1, "max tokens must be at least 1");
        Ok(())
    }
}

/// What the API serves and counts; shared by every request (`Arc<State>`).
#[derive(Debug)]
pub struct State {
    config: Config,
    token: Option<[u8; 32]>,
    models: RwLock<Arc<Models>>,
    status: RwLock<Status>,
    metrics: Arc<Metrics>,
    slots: Arc<Semaphore>,
    started: Instant,
    created: u64,
}

impl State {
    /// The state over `models`, after checking `config`.
    pub fn new(
        config: Config,
        models: Models,
        status: Status,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Arc<Self>> {
        config.validate()?;
        if let Some(round) = models.community_round() {
            metrics
                .head_round
                .store(round, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(Arc::new(Self {
            token: config.token.as_deref().map(digest),
            slots: Arc::new(Semaphore::new(config.max_concurrent)),
            config,
            models: RwLock::new(Arc::new(models)),
            status: RwLock::new(status),
            metrics,
            started: Instant::now(),
            created: unix_now(),
        }))
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The shared metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The models now served (requests already running keep the ones they started with).
    pub fn models(&self) -> Arc<Models> {
        self.models
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Serves `models` from the next request on (e.g. after a new community version).
    pub fn set_models(&self, models: Models) {
        if let Some(round) = models.community_round() {
            self.metrics
                .head_round
                .store(round, std::sync::atomic::Ordering::Relaxed);
        }
        *self.models.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(models);
    }

    /// A copy of the status.
    pub fn status(&self) -> Status {
        self.status
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Changes the status (e.g. the head round, the peer count).
    pub fn update_status(&self, f: impl FnOnce(&mut Status)) {
        f(&mut self.status.write().unwrap_or_else(|e| e.into_inner()));
    }

    /// Generations running now.
    pub fn running(&self) -> usize {
        self.config.max_concurrent - self.slots.available_permits()
    }

    /// A generation slot, or 429 when all are taken.
    fn try_slot(&self) -> Result<OwnedSemaphorePermit, ApiError> {
        self.slots.clone().try_acquire_owned().map_err(|_| {
            ApiError::busy(format!(
                "the server is busy: all {} generation slots are in use; retry shortly",
                self.config.max_concurrent
            ))
        })
    }
}

/// Binds the configured address (after [`Config::validate`]).
pub async fn bind(config: &Config) -> anyhow::Result<TcpListener> {
    config.validate()?;
    TcpListener::bind(config.addr).await.with_context(|| {
        format!(
            "cannot listen on {}: is another server using it? pick another with --api-addr HOST:PORT",
            config.addr
        )
    })
}

/// Serves the API on `listener` until `shutdown` completes, then lets running requests finish.
pub async fn serve(
    listener: TcpListener,
    state: Arc<State>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
        .context("the API server failed")
}

/// The routes, with the body limit, the token check and request counting.
pub fn router(state: Arc<State>) -> axum::Router {
    axum::Router::new()
        .route("/v1/models", get(list_models))
        .route("/v1/models/{id}", get(get_model))
        .route("/v1/chat/completions", post(generate::chat))
        .route("/v1/completions", post(generate::completions))
        .route("/status", get(status))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes))
        .layer(middleware::from_fn_with_state(state.clone(), authorize))
        .layer(middleware::from_fn_with_state(state.clone(), count))
        .with_state(state)
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Compares digests without an early exit, so timing does not tell how much of a guess matched.
fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn authorize(
    AxumState(state): AxumState<Arc<State>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(expected) = &state.token else {
        return next.run(request).await;
    };
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match given {
        Some(token) if same(&digest(token), expected) => next.run(request).await,
        Some(_) => ApiError::unauthorized("the API token is wrong").into_response(),
        None => ApiError::unauthorized(
            "this server needs an API token: send the header `Authorization: Bearer <token>`",
        )
        .into_response(),
    }
}

/// The route label of a path, from a fixed set (so labels stay bounded).
fn route_label(path: &str) -> &'static str {
    match path {
        "/v1/models" => "/v1/models",
        "/v1/chat/completions" => "/v1/chat/completions",
        "/v1/completions" => "/v1/completions",
        "/status" => "/status",
        "/metrics" => "/metrics",
        p if p.starts_with("/v1/models/") => "/v1/models/{id}",
        _ => "other",
    }
}

async fn count(AxumState(state): AxumState<Arc<State>>, request: Request, next: Next) -> Response {
    let route = route_label(request.uri().path());
    let response = next.run(request).await;
    state
        .metrics
        .record_request(route, response.status().as_u16());
    response
}

fn model_json(id: &str, created: u64) -> serde_json::Value {
    json!({"id": id, "object": "model", "created": created, "owned_by": "hearth"})
}

async fn list_models(AxumState(state): AxumState<Arc<State>>) -> Json<serde_json::Value> {
    let models = state.models();
    let data: Vec<_> = models
        .entries()
        .iter()
        .map(|e| model_json(&e.id, state.created))
        .collect();
    Json(json!({"object": "list", "data": data}))
}

async fn get_model(
    AxumState(state): AxumState<Arc<State>>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let models = state.models();
    let entry = resolve_model(&models, Some(&id))?;
    Ok(Json(model_json(&entry.id, state.created)))
}

/// The entry `id` names, or the default when `id` is absent or empty; 404 otherwise.
fn resolve_model<'m>(models: &'m Models, id: Option<&str>) -> Result<&'m Entry, ApiError> {
    match id.filter(|id| !id.is_empty()) {
        None => Ok(models.default_entry()),
        Some(id) => models.get(id).ok_or_else(|| {
            let known: Vec<&str> = models.entries().iter().map(|e| e.id.as_str()).collect();
            ApiError::not_found(format!(
                "the model {id:?} does not exist here; this server has {}",
                known.join(", ")
            ))
            .with_param("model")
            .with_code("model_not_found")
        }),
    }
}

async fn status(AxumState(state): AxumState<Arc<State>>) -> Json<serde_json::Value> {
    use std::sync::atomic::Ordering::Relaxed;
    let models = state.models();
    let m = &state.metrics;
    let list: Vec<_> = models
        .entries()
        .iter()
        .map(|e| json!({"id": e.id, "adapters": e.layers}))
        .collect();
    let mut body = serde_json::to_value(state.status()).unwrap_or_else(|_| json!({}));
    body["hearth_version"] = json!(env!("CARGO_PKG_VERSION"));
    body["models"] = json!(list);
    body["default_model"] = json!(models.default_entry().id);
    body["context"] = json!(models.context());
    body["uptime_secs"] = json!(state.started.elapsed().as_secs());
    body["api"] = json!({
        "auth": state.token.is_some(),
        "max_concurrent": state.config.max_concurrent,
        "running": state.running(),
        "max_tokens": state.config.max_tokens,
        "max_body_bytes": state.config.max_body_bytes,
        "tokens_generated": m.tokens_generated.load(Relaxed),
        "last_tokens_per_sec": m.last_tokens_per_sec(),
    });
    Json(body)
}

async fn metrics(AxumState(state): AxumState<Arc<State>>) -> Response {
    let mut response = state.metrics.render().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

async fn not_found(request: Request) -> ApiError {
    ApiError::not_found(format!(
        "no route {} {}: see GET /v1/models, POST /v1/chat/completions, POST /v1/completions, GET /status, GET /metrics",
        request.method(),
        request.uri().path()
    ))
}

async fn method_not_allowed(request: Request) -> ApiError {
    ApiError::status(
        StatusCode::METHOD_NOT_ALLOWED,
        format!(
            "{} is not allowed on {}",
            request.method(),
            request.uri().path()
        ),
    )
}

/// Seconds since the Unix epoch.
fn unix_now() -> u64 {
    crate::home::unix_now()
}

/// A random id for a response.
fn request_id() -> String {
    let mut bytes = [0u8; 12];
    if crate::secrets::random_fill(&mut bytes).is_err() {
        // Ids only need to be distinct in practice; fall back to the clock.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        bytes.copy_from_slice(&nanos.to_le_bytes()[..12]);
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A fresh sampling seed for a request that gives none.
fn random_seed() -> u64 {
    let mut bytes = [0u8; 8];
    let _ = crate::secrets::random_fill(&mut bytes);
    u64::from_le_bytes(bytes)
}
