//! `POST /v1/chat/completions` and `POST /v1/completions`: request checks, a generation slot,
//! and the run on a blocking thread, answered whole or as server-sent events.
//!
//! Checks happen in this order, each with its own HTTP error: the body's size (413) and JSON
//! (400), the model id (404), the parameters (400), the prompt against the context (400,
//! `context_length_exceeded`), then a free slot (429). A client that goes away stops its
//! generation after the next token.

use std::convert::Infallible;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Json;
use axum::body::Bytes;
use axum::extract::State as AxumState;
use axum::extract::rejection::BytesRejection;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use hearth_models::{GenerateConfig, Role};
use serde_json::Value;
use tokio::sync::{OwnedSemaphorePermit, mpsc};

use super::engine::{Finish, Job, MAX_STOP, MAX_STOP_BYTES};
use super::error::ApiError;
use super::openai::{ChatRequest, CompletionRequest, Content, Prompt, Reply, Sampling, Usage};
use super::{State, unix_now};

/// Stream chunks buffered between the generating thread and the connection.
const STREAM_BUFFER: usize = 16;
/// `max_tokens` of a completion that does not say (OpenAI's default for `/v1/completions`).
const COMPLETION_DEFAULT_MAX_TOKENS: usize = 16;

/// The body as bytes, or the size or read error as an API error.
fn body_bytes(body: Result<Bytes, BytesRejection>, state: &State) -> Result<Bytes, ApiError> {
    body.map_err(|e| {
        if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::status(
                e.status(),
                format!(
                    "the request body is larger than this server's limit of {} bytes",
                    state.config().max_body_bytes
                ),
            )
        } else {
            ApiError::status(
                e.status(),
                format!("reading the request body: {}", e.body_text()),
            )
        }
    })
}

fn parse<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| {
        ApiError::bad_request(format!(
            "the request body is not valid for this endpoint: {e}"
        ))
    })
}

/// Handles `POST /v1/chat/completions`.
pub async fn chat(
    AxumState(state): AxumState<Arc<State>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let result = async {
        let request: ChatRequest = parse(&body_bytes(body, &state)?)?;
        let models = state.models();
        let entry = super::resolve_model(&models, request.sampling.model.as_deref())?;
        if request.messages.is_empty() {
            return Err(ApiError::bad_request("messages is empty: send at least one message")
                .with_param("messages"));
        }
        let mut messages = Vec::with_capacity(request.messages.len());
        for m in &request.messages {
            let role = match m.role.as_str() {
                "system" | "developer" => Role::System,
                "user" => Role::User,
                "assistant" => Role::Assistant,
                other => {
                    return Err(ApiError::bad_request(format!(
                        "message role {other:?} is not supported: use system, developer, user or assistant"
                    ))
                    .with_param("messages"));
                }
            };
            messages.push((role, content_text(m.content.as_ref())?));
        }
        let prompt = models
            .tokenizer()
            .encode_chat(&messages)
            .map_err(|e| ApiError::bad_request(format!("the messages cannot be tokenized: {e}")))?;
        let reply = Reply {
            chat: true,
            id: format!("chatcmpl-{}", super::request_id()),
            created: unix_now(),
            model: entry.id.clone(),
        };
        start(&state, &models, entry, prompt, request.sampling, reply, None).await
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

/// Handles `POST /v1/completions`.
pub async fn completions(
    AxumState(state): AxumState<Arc<State>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let result = async {
        let request: CompletionRequest = parse(&body_bytes(body, &state)?)?;
        if request.echo == Some(true) {
            return Err(ApiError::bad_request("echo is not supported").with_param("echo"));
        }
        if request.suffix.as_deref().is_some_and(|s| !s.is_empty()) {
            return Err(ApiError::bad_request("suffix is not supported").with_param("suffix"));
        }
        let models = state.models();
        let entry = super::resolve_model(&models, request.sampling.model.as_deref())?;
        let one = || {
            ApiError::bad_request(
                "send one prompt per request (a list of several is not supported)",
            )
            .with_param("prompt")
        };
        let encode = |text: &str| {
            models.tokenizer().encode(text).map_err(|e| {
                ApiError::bad_request(format!("the prompt cannot be tokenized: {e}"))
                    .with_param("prompt")
            })
        };
        let prompt = match request.prompt {
            Prompt::Text(t) => encode(&t)?,
            Prompt::Texts(v) => match v.as_slice() {
                [t] => encode(t)?,
                _ => return Err(one()),
            },
            Prompt::Tokens(v) => v,
            Prompt::TokenLists(mut v) => match v.len() {
                1 => v.remove(0),
                _ => return Err(one()),
            },
        };
        let reply = Reply {
            chat: false,
            id: format!("cmpl-{}", super::request_id()),
            created: unix_now(),
            model: entry.id.clone(),
        };
        start(
            &state,
            &models,
            entry,
            prompt,
            request.sampling,
            reply,
            Some(COMPLETION_DEFAULT_MAX_TOKENS),
        )
        .await
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

/// The text of a message: a string, or its text parts joined.
fn content_text(content: Option<&Content>) -> Result<String, ApiError> {
    match content {
        None => Ok(String::new()),
        Some(Content::Text(t)) => Ok(t.clone()),
        Some(Content::Parts(parts)) => {
            let mut text = String::new();
            for p in parts {
                match (p.kind.as_str(), &p.text) {
                    ("text", Some(t)) => text.push_str(t),
                    (kind, _) => {
                        return Err(ApiError::bad_request(format!(
                            "content parts of type {kind:?} are not supported: this model reads text only"
                        ))
                        .with_param("messages"));
                    }
                }
            }
            Ok(text)
        }
    }
}

/// Checks the sampling parameters and the prompt against the model, takes a slot and runs.
async fn start(
    state: &Arc<State>,
    models: &super::Models,
    entry: &super::Entry,
    prompt: Vec<u32>,
    s: Sampling,
    reply: Reply,
    default_max: Option<usize>,
) -> Result<Response, ApiError> {
    let unsupported = |param: &'static str, what: &str| {
        Err(
            ApiError::bad_request(format!("{what} is not supported by this server"))
                .with_param(param),
        )
    };
    if s.n.is_some_and(|n| n != 1) {
        return unsupported("n", "n other than 1");
    }
    if s.logprobs
        .as_ref()
        .is_some_and(|v| !matches!(v, Value::Null | Value::Bool(false)) && v.as_u64() != Some(0))
    {
        return unsupported("logprobs", "logprobs");
    }
    if s.presence_penalty.is_some_and(|p| p != 0.0) {
        return unsupported("presence_penalty", "a presence_penalty other than 0");
    }
    if s.frequency_penalty.is_some_and(|p| p != 0.0) {
        return unsupported("frequency_penalty", "a frequency_penalty other than 0");
    }
    if s.tools
        .as_ref()
        .and_then(Value::as_array)
        .is_some_and(|t| !t.is_empty())
    {
        return unsupported("tools", "tool calling");
    }
    let temperature = s.temperature.unwrap_or(1.0);
    if !(temperature.is_finite() && (0.0..=2.0).contains(&temperature)) {
        return Err(ApiError::bad_request(format!(
            "temperature must be between 0 and 2, got {temperature}"
        ))
        .with_param("temperature"));
    }
    let top_p = s.top_p.unwrap_or(1.0);
    if !(top_p > 0.0 && top_p <= 1.0) {
        return Err(
            ApiError::bad_request(format!("top_p must be in (0, 1], got {top_p}"))
                .with_param("top_p"),
        );
    }
    let stop = s.stop.map(|s| s.into_vec()).unwrap_or_default();
    if stop.len() > MAX_STOP {
        return Err(ApiError::bad_request(format!(
            "at most {MAX_STOP} stop strings, got {}",
            stop.len()
        ))
        .with_param("stop"));
    }
    if stop
        .iter()
        .any(|s| s.is_empty() || s.len() > MAX_STOP_BYTES)
    {
        return Err(ApiError::bad_request(format!(
            "stop strings must be 1 to {MAX_STOP_BYTES} bytes long"
        ))
        .with_param("stop"));
    }
    let cap = state.config().max_tokens;
    let asked = s.max_completion_tokens.or(s.max_tokens);
    if let Some(n) = asked {
        if n == 0 {
            return Err(
                ApiError::bad_request("max_tokens must be at least 1").with_param("max_tokens")
            );
        }
        if n > cap as u64 {
            return Err(ApiError::bad_request(format!(
                "max_tokens is {n}, more than this server's limit of {cap}"
            ))
            .with_param("max_tokens"));
        }
    }
    if prompt.is_empty() {
        return Err(ApiError::bad_request("the prompt is empty").with_param("prompt"));
    }
    let context = models.context();
    let room = context.saturating_sub(prompt.len());
    let too_long = |completion: usize| {
        ApiError::bad_request(format!(
            "this model's context holds {context} tokens; the request needs {} ({} in the prompt, {completion} for the completion): shorten the prompt or lower max_tokens",
            prompt.len() + completion,
            prompt.len()
        ))
        .with_code("context_length_exceeded")
    };
    let max_tokens = match asked {
        Some(n) if n as usize > room => return Err(too_long(n as usize)),
        Some(n) => n as usize,
        None if room == 0 => return Err(too_long(1)),
        None => room.min(cap).min(default_max.unwrap_or(usize::MAX)),
    };
    // After the length checks: this also refuses sequences longer than the context.
    entry.model.check_tokens(&prompt).map_err(|e| {
        ApiError::bad_request(format!("the prompt holds invalid token ids: {e}"))
            .with_param("prompt")
    })?;
    let seed = match s.seed {
        Some(seed) => seed as u64,
        None => super::random_seed(),
    };
    let config = if temperature == 0.0 {
        GenerateConfig::greedy(max_tokens)
    } else {
        GenerateConfig::sampled(max_tokens, temperature as f32, 0, top_p as f32, seed)
    }
    .with_stop_tokens(models.tokenizer().stop_ids());
    let job = Job {
        model: entry.model.clone(),
        tokenizer: models.tokenizer().clone(),
        prompt,
        config,
        stop,
    };
    let slot = state.try_slot()?;
    let include_usage = s.stream_options.is_some_and(|o| o.include_usage);
    if s.stream == Some(true) {
        Ok(stream(state.clone(), slot, job, reply, include_usage))
    } else {
        whole(state.clone(), slot, job, reply).await
    }
}

/// Sets a flag when dropped: the handler's future is dropped when the client goes away.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Counts a generation as running while it lives.
struct Running(Arc<State>);

impl Running {
    fn new(state: Arc<State>) -> Self {
        state
            .metrics()
            .generations_running
            .fetch_add(1, Ordering::Relaxed);
        Self(state)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0
            .metrics()
            .generations_running
            .fetch_sub(1, Ordering::Relaxed);
    }
}

async fn whole(
    state: Arc<State>,
    slot: OwnedSemaphorePermit,
    job: Job,
    reply: Reply,
) -> Result<Response, ApiError> {
    let cancelled = Arc::new(AtomicBool::new(false));
    let _guard = CancelOnDrop(cancelled.clone());
    let prompt = job.prompt.len();
    let worker = state.clone();
    let (text, outcome) = tokio::task::spawn_blocking(move || {
        let _slot = slot;
        let _running = Running::new(worker.clone());
        let mut text = String::new();
        let outcome = job.run(|piece| {
            text.push_str(piece);
            if cancelled.load(Ordering::Relaxed) {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        });
        if let Ok(o) = &outcome {
            worker
                .metrics()
                .record_generation(job.prompt.len(), o.tokens, o.secs);
        }
        (text, outcome)
    })
    .await
    .map_err(|e| ApiError::internal(format!("generation stopped unexpectedly: {e}")))?;
    let outcome = outcome.map_err(|e| ApiError::internal(format!("generation failed: {e}")))?;
    let usage = Usage {
        prompt,
        completion: outcome.tokens,
    };
    Ok(Json(reply.full(&text, outcome.finish.as_str(), usage)).into_response())
}

fn stream(
    state: Arc<State>,
    slot: OwnedSemaphorePermit,
    job: Job,
    reply: Reply,
    include_usage: bool,
) -> Response {
    let (tx, rx) = mpsc::channel::<String>(STREAM_BUFFER);
    tokio::task::spawn_blocking(move || {
        let _slot = slot;
        let _running = Running::new(state.clone());
        let send = |data: String| tx.blocking_send(data).is_ok();
        if let Some(first) = reply.start_chunk()
            && !send(first.to_string())
        {
            return;
        }
        let outcome = job.run(|piece| {
            let open = if piece.is_empty() {
                !tx.is_closed()
            } else {
                send(reply.text_chunk(piece).to_string())
            };
            if open {
                ControlFlow::Continue(())
            } else {
                ControlFlow::Break(())
            }
        });
        match outcome {
            Ok(o) => {
                state
                    .metrics()
                    .record_generation(job.prompt.len(), o.tokens, o.secs);
                if o.finish == Finish::Cancelled {
                    return;
                }
                let usage = Usage {
                    prompt: job.prompt.len(),
                    completion: o.tokens,
                };
                let _ = send(reply.finish_chunk(o.finish.as_str()).to_string())
                    && (!include_usage || send(reply.usage_chunk(usage).to_string()))
                    && send("[DONE]".into());
            }
            Err(e) => {
                let error = ApiError::internal(format!("generation failed: {e}"));
                let _ = send(error.body().to_string()) && send("[DONE]".into());
            }
        }
    });
    let events = futures::stream::unfold(rx, |mut rx| async move {
        let data = rx.recv().await?;
        Some((Ok::<_, Infallible>(Event::default().data(data)), rx))
    });
    Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response()
}
