//! Feeds arbitrary request bodies to the local OpenAI-compatible API (the first byte picks
//! `/v1/chat/completions` or `/v1/completions`), through the real router (body limit, JSON,
//! parameter checks, tokenization, generation, streaming) over a tiny model. Every request must
//! get an answer, and no answer may be a server error.
#![no_main]

use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::http::{Request, header};
use burn::tensor::Device;
use hearth_fuzz::{API_CONTEXT, API_MAX_TOKENS, peft_model, scratch_dir, write};
use hearth_models::tiny;
use hearth_node::api::{Config, Metrics, Models, State, Status, router};
use hearth_node::model::load_base;
use libfuzzer_sys::fuzz_target;
use tower::ServiceExt;

struct Api {
    runtime: tokio::runtime::Runtime,
    router: axum::Router,
}

/// The server, built once per process: the smallest tiny model, a short context and few tokens
/// per answer so that every input runs quickly.
fn api() -> &'static Api {
    static API: OnceLock<Api> = OnceLock::new();
    API.get_or_init(|| {
        let setup = || -> anyhow::Result<Api> {
            let path = scratch_dir("api").join("tiny.gguf");
            write(&path, &tiny::gguf_bytes(&peft_model(), 1)?);
            let (base, tokenizer, _) = load_base(&path, API_CONTEXT, &Device::flex())?;
            let config = Config {
                max_tokens: API_MAX_TOKENS,
                ..Config::default()
            };
            let models = Models::new(base, tokenizer)?;
            let state = State::new(config, models, Status::default(), Arc::new(Metrics::new()))?;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            Ok(Api {
                runtime,
                router: router(state),
            })
        };
        match setup() {
            Ok(api) => api,
            Err(e) => panic!("cannot set up the api under test: {e:#}"),
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let path = if selector & 1 == 0 {
        "/v1/chat/completions"
    } else {
        "/v1/completions"
    };
    let request = match Request::post(path)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_vec()))
    {
        Ok(request) => request,
        Err(e) => panic!("cannot build the request: {e}"),
    };
    let api = api();
    api.runtime.block_on(async {
        let response = match api.router.clone().oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
        let status = response.status();
        let answer = axum::body::to_bytes(response.into_body(), usize::MAX).await;
        assert!(
            !status.is_server_error(),
            "server error {status}: {:?}",
            answer.map(|b| String::from_utf8_lossy(&b).into_owned())
        );
    });
});
