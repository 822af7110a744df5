//! Unit tests of the API over a tiny model: generation slots, swapping models while serving,
//! metrics and status fed from outside (as the daemon does), configuration limits.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use burn::tensor::Device;
use hearth_models::{LlamaConfig, LoraConfig, Target};
use serde_json::Value;

use super::*;

fn tiny_models() -> Models {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.gguf");
    hearth_models::tiny::write_gguf(&path, &LlamaConfig::tiny(320), 7).unwrap();
    let (base, tokenizer, _) = crate::model::load_base(&path, 64, &Device::flex()).unwrap();
    Models::new(base, tokenizer).unwrap()
}

fn adapter(models: &Models, rank: usize, value: f32) -> hearth_models::AdapterWeights {
    let mut m = (*models.get(BASE).unwrap().model).clone();
    let slot = m
        .add_adapter(LoraConfig::new(rank, 4.0, vec![Target::Q, Target::V]).with_seed(5))
        .unwrap();
    let mut w = m.adapter_weights(slot).unwrap();
    let n = w.b_len();
    w.set_flat_b(&vec![value; n]).unwrap();
    w
}

/// A server on a free loopback port, on its own runtime thread; stopped when dropped.
struct Server {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    fn start(state: Arc<State>) -> Self {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
                tx.send(listener.local_addr().unwrap()).unwrap();
                serve(listener, state, async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
            });
        });
        Self {
            addr: rx.recv().unwrap(),
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> (u16, String, Option<String>) {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let url = format!("http://{}{path}", self.addr);
        let mut response = match (method, body) {
            ("GET", _) => agent.get(&url).call().unwrap(),
            (_, Some(b)) => agent
                .post(&url)
                .content_type("application/json")
                .send(b)
                .unwrap(),
            _ => unreachable!(),
        };
        let retry = response
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_string());
        let text = response.body_mut().read_to_string().unwrap();
        (response.status().as_u16(), text, retry)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.thread.take().unwrap().join().unwrap();
    }
}

const COMPLETION: &str = r#"{"prompt":"the","max_tokens":4,"temperature":0}"#;

#[test]
fn busy_slots_answer_429_until_one_frees() {
    let config = Config {
        max_concurrent: 2,
        ..Config::default()
    };
    let state = State::new(
        config,
        tiny_models(),
        Status::default(),
        Arc::new(Metrics::new()),
    )
    .unwrap();
    let server = Server::start(state.clone());
    let first = state.try_slot().unwrap();
    assert_eq!(state.running(), 1);
    // At the limit: the last free slot serves the request.
    let (status, body, _) = server.request("POST", "/v1/completions", Some(COMPLETION));
    assert_eq!(status, 200, "{body}");
    // Past it: every slot taken.
    let second = state.try_slot().unwrap();
    let (status, body, retry) = server.request("POST", "/v1/completions", Some(COMPLETION));
    assert_eq!(status, 429, "{body}");
    assert_eq!(retry.as_deref(), Some("1"));
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["type"], "rate_limit_error");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("all 2 generation slots")
    );
    // Streaming requests are refused the same way, before any event.
    let stream = r#"{"prompt":"the","max_tokens":4,"stream":true}"#;
    assert_eq!(
        server.request("POST", "/v1/completions", Some(stream)).0,
        429
    );
    drop((first, second));
    assert_eq!(
        server
            .request("POST", "/v1/completions", Some(COMPLETION))
            .0,
        200
    );
    let metrics = state.metrics().render();
    assert!(
        metrics.contains("hearth_api_requests_total{route=\"/v1/completions\",status=\"429\"} 2"),
        "{metrics}"
    );
    assert_eq!(
        state.metrics().generations_running.load(Ordering::Relaxed),
        0
    );
}

#[test]
fn models_swapped_in_are_served_from_the_next_request() {
    let models = tiny_models();
    let community = adapter(&models, 2, 0.05);
    let state = State::new(
        Config::default(),
        models.clone(),
        Status::default(),
        Arc::new(Metrics::new()),
    )
    .unwrap();
    let server = Server::start(state.clone());
    let ids = |s: &Server| -> Vec<String> {
        let (_, body, _) = s.request("GET", "/v1/models", None);
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["object"], "list");
        v["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(ids(&server), vec![BASE]);
    let (status, _, _) = server.request(
        "POST",
        "/v1/completions",
        Some(r#"{"model":"hearth-community","prompt":"the"}"#),
    );
    assert_eq!(status, 404);

    state.set_models(models.with_community(3, community).unwrap());
    assert_eq!(ids(&server), vec![BASE, COMMUNITY]);
    let (status, body, _) = server.request(
        "POST",
        "/v1/completions",
        Some(r#"{"model":"hearth-community","prompt":"the","max_tokens":3}"#),
    );
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["model"], COMMUNITY);
    assert!(v["usage"]["completion_tokens"].as_u64().unwrap() <= 3);
    assert_eq!(state.metrics().head_round.load(Ordering::Relaxed), 3);
    let (_, body, _) = server.request("GET", "/status", None);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["default_model"], COMMUNITY);
    assert_eq!(v["models"][1]["adapters"][0], "community (round 3)");
}

#[test]
fn a_personal_adapter_that_does_not_fit_changes_nothing() {
    let models = tiny_models();
    let community = adapter(&models, 2, 0.05);
    let models = models.with_community(1, community).unwrap();
    // An adapter for a narrower model of the same depth.
    let other = hearth_models::Llama::init_random(
        &LlamaConfig::new(320, 32, 64, 2, 2, 1, 16),
        1,
        &Device::flex(),
    )
    .unwrap();
    let mut other = other;
    let slot = other
        .add_adapter(LoraConfig::new(2, 4.0, vec![Target::Q]))
        .unwrap();
    let misfit = other.adapter_weights(slot).unwrap();
    let err = models.clone().with_personal(misfit).unwrap_err();
    assert!(
        format!("{err:#}").contains("personal adapter does not fit"),
        "{err:#}"
    );
    let fits = adapter(&models, 4, 0.01);
    let with = models.with_personal(fits).unwrap();
    let ids: Vec<&str> = with.entries().iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, vec![BASE, COMMUNITY, PERSONAL]);
    assert_eq!(
        with.default_entry().layers,
        vec!["community (round 1)", "personal"]
    );
}

#[test]
fn metrics_and_status_fed_from_outside_are_served() {
    let metrics = Arc::new(Metrics::new());
    let state = State::new(
        Config::default(),
        tiny_models(),
        Status::default(),
        metrics.clone(),
    )
    .unwrap();
    let server = Server::start(state.clone());
    metrics.reject("bad_signature");
    metrics.rounds_closed.fetch_add(2, Ordering::Relaxed);
    metrics.set_privacy_spent(0.75, 0.01);
    state.update_status(|s| {
        s.mode = "node".into();
        s.peers = Some(3);
    });
    let (status, text, _) = server.request("GET", "/metrics", None);
    assert_eq!(status, 200);
    assert!(
        text.contains("hearth_deltas_rejected_total{reason=\"bad_signature\"} 1\n"),
        "{text}"
    );
    assert!(text.contains("hearth_rounds_closed_total 2\n"), "{text}");
    assert!(text.contains("hearth_epsilon_spent 0.75\n"), "{text}");
    let (_, body, _) = server.request("GET", "/status", None);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (v["mode"].as_str(), v["peers"].as_u64()),
        (Some("node"), Some(3))
    );
}

#[test]
fn config_limits_are_checked() {
    let ok = Config::default();
    ok.validate().unwrap();
    let open = Config {
        addr: "0.0.0.0:11435".parse().unwrap(),
        ..Config::default()
    };
    let err = open.validate().unwrap_err().to_string();
    assert!(
        err.contains("refusing to serve on 0.0.0.0:11435 without a token"),
        "{err}"
    );
    Config {
        token: Some("s3cret".into()),
        ..open.clone()
    }
    .validate()
    .unwrap();
    for bad in ["", "has space", "naïve"] {
        let c = Config {
            token: Some(bad.into()),
            ..Config::default()
        };
        assert!(c.validate().is_err(), "{bad:?}");
    }
    for (n, valid) in [
        (0, false),
        (1, true),
        (MAX_CONCURRENT_LIMIT, true),
        (MAX_CONCURRENT_LIMIT + 1, false),
    ] {
        let c = Config {
            max_concurrent: n,
            ..Config::default()
        };
        assert_eq!(c.validate().is_ok(), valid, "max_concurrent {n}");
    }
    for (n, valid) in [
        (1023, false),
        (1024, true),
        (64 << 20, true),
        ((64 << 20) + 1, false),
    ] {
        let c = Config {
            max_body_bytes: n,
            ..Config::default()
        };
        assert_eq!(c.validate().is_ok(), valid, "max_body_bytes {n}");
    }
}
