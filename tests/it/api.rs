//! `hearth node` serves the local API next to the daemon: while two nodes run rounds over real
//! libp2p, the first one's `/status`, `/metrics` and `/v1/models` follow the community (the new
//! version is served, the round and traffic counters move) and completions run on it.

use std::time::{Duration, Instant};

use hearth_node::api;
use hearth_node::daemon::{ApiOptions, run};
use hearth_protocol::PrivacyMode;

use crate::community::{community, free_port, tiny_model};

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

/// GET `url`: (status, body); `None` while nothing listens there yet.
fn get(url: &str) -> Option<(u16, String)> {
    let mut r = agent().get(url).call().ok()?;
    Some((r.status().as_u16(), r.body_mut().read_to_string().ok()?))
}

/// A Prometheus sample's value (`name value` on its own line).
fn sample(metrics: &str, name: &str) -> Option<f64> {
    metrics.lines().find_map(|l| {
        let (n, v) = l.split_once(' ')?;
        (n == name).then(|| v.parse().ok())?
    })
}

/// The community model's adapters as `/status` lists them.
fn community_layers(status: &serde_json::Value) -> Vec<String> {
    status["models"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|m| m["id"] == api::COMMUNITY)
        .map(|m| {
            m["adapters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|a| a.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_serves_its_models_status_and_metrics_while_rounds_run() {
    let root = tempfile::tempdir().unwrap();
    let (model, sha) = tiny_model(root.path());
    let (members, _) = community(root.path(), 2, sha, PrivacyMode::Local);
    let rounds = 2;
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let tasks: Vec<_> = members
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let boot = if i == 0 {
                vec![]
            } else {
                vec![members[0].addr()]
            };
            let mut opts = m.options(&model, boot, rounds);
            if i == 0 {
                opts.api = Some(ApiOptions {
                    config: api::Config {
                        addr: format!("127.0.0.1:{port}").parse().unwrap(),
                        ..api::Config::default()
                    },
                    context: 64,
                });
            }
            tokio::spawn(run(opts, std::future::pending()))
        })
        .collect();

    // Watch node 0's API from a blocking thread until it serves a community version past
    // genesis, then ask it for a completion on that version.
    let watch = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut first: Option<serde_json::Value> = None;
        loop {
            assert!(Instant::now() < deadline, "no new version served in time");
            std::thread::sleep(Duration::from_millis(300));
            let Some((200, body)) = get(&format!("{base}/status")) else {
                continue;
            };
            let status: serde_json::Value = serde_json::from_str(&body).unwrap();
            first.get_or_insert_with(|| status.clone());
            let served_round = community_layers(&status).iter().find_map(|l| {
                l.strip_prefix("community (round ")?
                    .strip_suffix(')')?
                    .parse::<u64>()
                    .ok()
            });
            if served_round.is_some_and(|r| r >= 1) {
                let (code, metrics) = get(&format!("{base}/metrics")).unwrap();
                assert_eq!(code, 200);
                let (code, models) = get(&format!("{base}/v1/models")).unwrap();
                assert_eq!(code, 200);
                let mut r = agent()
                    .post(format!("{base}/v1/completions"))
                    .content_type("application/json")
                    .send(
                        r#"{"model":"hearth-community","prompt":"to be","max_tokens":3,"seed":1}"#,
                    )
                    .unwrap();
                let completion = (r.status().as_u16(), r.body_mut().read_to_string().unwrap());
                return (first.unwrap(), status, metrics, models, completion);
            }
        }
    });
    let (first, status, metrics, models, completion) = watch.await.unwrap();
    let mut summaries = Vec::new();
    for t in tasks {
        summaries.push(t.await.unwrap().unwrap());
    }

    assert_eq!(first["mode"], "node", "{first}");
    assert_eq!(
        community_layers(&first),
        vec!["community (round 0)".to_string()],
        "the genesis version is served first: {first}"
    );
    assert!(
        status["community"]["head_round"].as_u64().unwrap() >= 1,
        "{status}"
    );
    assert_eq!(status["peers"], 1, "{status}");
    let closed = sample(&metrics, "hearth_rounds_closed_total").unwrap()
        + sample(&metrics, "hearth_rounds_adopted_total").unwrap();
    assert!(closed >= 1.0, "{metrics}");
    assert!(
        sample(&metrics, "hearth_bytes_sent_total").unwrap() > 0.0,
        "{metrics}"
    );
    assert!(
        sample(&metrics, "hearth_head_round").unwrap() >= 1.0,
        "{metrics}"
    );
    assert_eq!(sample(&metrics, "hearth_peers"), Some(1.0), "{metrics}");
    for id in [api::BASE, api::COMMUNITY] {
        assert!(models.contains(id), "{models}");
    }
    assert_eq!(completion.0, 200, "{}", completion.1);
    let body: serde_json::Value = serde_json::from_str(&completion.1).unwrap();
    assert!(
        body["usage"]["completion_tokens"].as_u64().unwrap() >= 1,
        "{body}"
    );

    // Both nodes ran every round and agree; the API went away with the node.
    let versions: Vec<&str> = summaries.iter().map(|s| s.head_version.as_str()).collect();
    assert_eq!(versions[0], versions[1]);
    assert!(get(&format!("http://127.0.0.1:{port}/status")).is_none());
}
