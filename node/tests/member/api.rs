//! `hearth serve` over HTTP: OpenAI-shaped answers, whole and streamed, the limits and the token,
//! `/status` and `/metrics`.

use serde_json::{Value, json};

use crate::common::{Served, member, sse_data};

const TOKEN: &str = "test-token-1";

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// The error object of an error answer, checked for OpenAI's shape.
fn error(status: u16, text: &str) -> Value {
    let v = json(text);
    let e = &v["error"];
    assert!(
        e["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{status}: {text}"
    );
    assert!(e["type"].is_string(), "{text}");
    assert!(
        e.get("param").is_some() && e.get("code").is_some(),
        "{text}"
    );
    e.clone()
}

#[test]
fn answers_like_openai_whole_and_streamed() {
    let m = member(true);
    let s = Served::start(&m, Some(TOKEN), &["--max-tokens", "64"]);

    let (status, _, body) = s.get("/v1/models");
    assert_eq!(status, 200, "{body}");
    let ids: Vec<String> = json(&body)["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            assert_eq!(m["object"], "model");
            m["id"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(ids, ["base", "hearth-community", "hearth-personal"]);
    assert_eq!(s.get("/v1/models/hearth-personal").0, 200);
    assert_eq!(s.get("/v1/models/gpt-4").0, 404);

    // Chat, whole.
    let request = json!({
        "model": "hearth-personal",
        "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello there"}],
        "max_tokens": 12,
        "temperature": 0,
    });
    let (status, ct, body) = s.post("/v1/chat/completions", &request.to_string());
    assert_eq!(status, 200, "{body}");
    assert!(ct.starts_with("application/json"), "{ct}");
    let v = json(&body);
    assert_eq!(v["object"], "chat.completion");
    assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(v["model"], "hearth-personal");
    assert!(v["created"].as_u64().unwrap() > 1_600_000_000);
    let choice = &v["choices"][0];
    assert_eq!(choice["message"]["role"], "assistant");
    let whole = choice["message"]["content"].as_str().unwrap().to_string();
    assert!(["stop", "length"].contains(&choice["finish_reason"].as_str().unwrap()));
    let u = &v["usage"];
    assert!(u["prompt_tokens"].as_u64().unwrap() > 0);
    assert!(u["completion_tokens"].as_u64().unwrap() <= 12);
    assert_eq!(
        u["total_tokens"].as_u64(),
        Some(u["prompt_tokens"].as_u64().unwrap() + u["completion_tokens"].as_u64().unwrap())
    );

    // The same chat, streamed: the pieces add up to the same text.
    let mut streamed = request.clone();
    streamed["stream"] = json!(true);
    streamed["stream_options"] = json!({"include_usage": true});
    let (status, ct, body) = s.post("/v1/chat/completions", &streamed.to_string());
    assert_eq!(status, 200, "{body}");
    assert!(ct.starts_with("text/event-stream"), "{ct}");
    let events = sse_data(&body);
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = events[..events.len() - 1].iter().map(|e| json(e)).collect();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let mut text = String::new();
    let mut finish = None;
    for c in &chunks {
        assert_eq!(c["object"], "chat.completion.chunk");
        assert_eq!(c["id"], chunks[0]["id"], "one id for the whole stream");
        if let Some(choice) = c["choices"].as_array().unwrap().first() {
            text.push_str(choice["delta"]["content"].as_str().unwrap_or(""));
            if !choice["finish_reason"].is_null() {
                finish = choice["finish_reason"].as_str().map(str::to_string);
            }
        }
    }
    assert_eq!(text, whole);
    assert_eq!(finish.as_deref(), choice["finish_reason"].as_str());
    let usage = chunks.last().unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"], v["usage"]);

    // Completions, whole and streamed, sampled with a seed: reproducible.
    let request = json!({"model": "hearth-community", "prompt": "the cat", "max_tokens": 10,
        "temperature": 0.9, "top_p": 0.95, "seed": 42});
    let (status, _, first) = s.post("/v1/completions", &request.to_string());
    assert_eq!(status, 200, "{first}");
    let first = json(&first);
    assert_eq!(first["object"], "text_completion");
    assert!(first["id"].as_str().unwrap().starts_with("cmpl-"));
    let text = first["choices"][0]["text"].as_str().unwrap().to_string();
    let again = json(&s.post("/v1/completions", &request.to_string()).2);
    assert_eq!(
        again["choices"][0]["text"].as_str(),
        Some(text.as_str()),
        "same seed, same text"
    );
    let mut streamed = request.clone();
    streamed["stream"] = json!(true);
    let (status, _, body) = s.post("/v1/completions", &streamed.to_string());
    assert_eq!(status, 200, "{body}");
    let events = sse_data(&body);
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let pieces: String = events[..events.len() - 1]
        .iter()
        .map(|e| {
            let c = json(e);
            assert_eq!(c["object"], "text_completion");
            c["choices"][0]["text"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(pieces, text);

    // A stop string cuts the text before it.
    if let Some(cut) = text.char_indices().nth(4).map(|(i, _)| i) {
        let stop: String = text[cut..].chars().take(2).collect();
        let mut stopped = request.clone();
        stopped["stop"] = json!([stop]);
        let v = json(&s.post("/v1/completions", &stopped.to_string()).2);
        assert_eq!(v["choices"][0]["finish_reason"], "stop");
        assert_eq!(
            v["choices"][0]["text"].as_str(),
            Some(&text[..text.find(&stop).unwrap()])
        );
    }

    // Without a model, the fullest stack answers.
    let v = json(
        &s.post("/v1/completions", r#"{"prompt":"a","max_tokens":2}"#)
            .2,
    );
    assert_eq!(v["model"], "hearth-personal");

    // Status: the community head and the adapters.
    let (status, _, body) = s.get("/status");
    assert_eq!(status, 200);
    let st = json(&body);
    assert_eq!(st["community"]["name"], "kitchen");
    assert_eq!(st["community"]["head_round"], 0);
    assert_eq!(st["personal_adapter"], true);
    assert_eq!(
        st["models"][2]["adapters"],
        json!(["community (round 0)", "personal"])
    );
    assert_eq!(st["api"]["auth"], true);
    assert_eq!(st["context"], 128);
}

#[test]
fn limits_and_bad_requests_get_http_errors() {
    let m = member(false);
    let s = Served::start(
        &m,
        Some(TOKEN),
        &["--max-tokens", "32", "--max-body-bytes", "4096"],
    );
    let chat = "/v1/chat/completions";
    let comp = "/v1/completions";

    // The token.
    let (status, _, body) = s.post_with(comp, r#"{"prompt":"a"}"#, None);
    assert_eq!(status, 401);
    assert_eq!(error(status, &body)["code"], "invalid_api_key");
    let (status, _, body) = s.post_with(comp, r#"{"prompt":"a"}"#, Some("wrong"));
    assert_eq!(status, 401, "{body}");
    assert_eq!(s.get_with("/metrics", None).0, 401);
    assert_eq!(s.get_with("/v1/models", Some(TOKEN)).0, 200);

    // max_tokens: at the cap and past it.
    let (status, _, body) = s.post(comp, r#"{"prompt":"a","max_tokens":32}"#);
    assert_eq!(status, 200, "{body}");
    let (status, _, body) = s.post(comp, r#"{"prompt":"a","max_tokens":33}"#);
    assert_eq!(status, 400);
    assert_eq!(error(status, &body)["param"], "max_tokens");
    assert_eq!(s.post(comp, r#"{"prompt":"a","max_tokens":0}"#).0, 400);

    // The prompt against the context (128 tokens): a prompt that fills it, one that overflows
    // with the asked completion.
    let long = "x ".repeat(200);
    let (status, _, body) = s.post(comp, &json!({"prompt": long}).to_string());
    assert_eq!(status, 400);
    assert_eq!(error(status, &body)["code"], "context_length_exceeded");
    let ids: Vec<u32> = (10..130).collect();
    let (status, _, body) = s.post(comp, &json!({"prompt": ids, "max_tokens": 8}).to_string());
    assert_eq!(status, 200, "120 + 8 tokens fit: {body}");
    let (status, _, body) = s.post(comp, &json!({"prompt": ids, "max_tokens": 9}).to_string());
    assert_eq!(status, 400);
    assert_eq!(error(status, &body)["code"], "context_length_exceeded");
    let (status, _, body) = s.post(comp, &json!({"prompt": [5000]}).to_string());
    assert_eq!(status, 400, "a token id outside the vocabulary: {body}");

    // The body size: at the limit (padded with JSON whitespace) and past it.
    let small = r#"{"prompt":"a","max_tokens":1}"#;
    let at = format!("{small}{}", " ".repeat(4096 - small.len()));
    assert_eq!(at.len(), 4096);
    let (status, _, body) = s.post(comp, &at);
    assert_eq!(status, 200, "{body}");
    let (status, _, body) = s.post(comp, &format!("{at} "));
    assert_eq!(status, 413);
    assert!(
        error(status, &body)["message"]
            .as_str()
            .unwrap()
            .contains("4096")
    );

    // Stop strings: four, five, empty.
    let (status, _, body) = s.post(
        comp,
        r#"{"prompt":"a","max_tokens":2,"stop":["1","2","3","4"]}"#,
    );
    assert_eq!(status, 200, "{body}");
    for bad in [r#"["1","2","3","4","5"]"#, r#"[""]"#] {
        let (status, _, body) = s.post(comp, &format!(r#"{{"prompt":"a","stop":{bad}}}"#));
        assert_eq!(status, 400, "{bad}");
        assert_eq!(error(status, &body)["param"], "stop");
    }

    // Parameters out of range or not served.
    for (body, param) in [
        (r#"{"prompt":"a","temperature":2.5}"#, "temperature"),
        (r#"{"prompt":"a","temperature":-1}"#, "temperature"),
        (r#"{"prompt":"a","top_p":0}"#, "top_p"),
        (r#"{"prompt":"a","top_p":1.5}"#, "top_p"),
        (r#"{"prompt":"a","n":2}"#, "n"),
        (r#"{"prompt":"a","logprobs":5}"#, "logprobs"),
        (r#"{"prompt":"a","echo":true}"#, "echo"),
        (r#"{"prompt":["a","b"]}"#, "prompt"),
        (
            r#"{"prompt":"a","presence_penalty":0.5}"#,
            "presence_penalty",
        ),
    ] {
        let (status, _, text) = s.post(comp, body);
        assert_eq!(status, 400, "{body}: {text}");
        assert_eq!(error(status, &text)["param"], param, "{body}");
    }
    for (body, what) in [
        (r#"{"messages":[]}"#, "empty messages"),
        (
            r#"{"messages":[{"role":"tool","content":"x"}]}"#,
            "tool role",
        ),
        (
            r#"{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"x"}}]}]}"#,
            "image",
        ),
        (r#"{"messages":"hi"}"#, "messages not a list"),
        ("{not json", "malformed JSON"),
    ] {
        let (status, _, text) = s.post(chat, body);
        assert_eq!(status, 400, "{what}: {text}");
        error(status, &text);
    }
    let (status, _, body) = s.post(
        chat,
        r#"{"model":"gpt-4o","messages":[{"role":"user","content":"x"}]}"#,
    );
    assert_eq!(status, 404);
    assert_eq!(error(status, &body)["code"], "model_not_found");
    let (status, _, body) = s.post(
        chat,
        r#"{"model":"hearth-personal","messages":[{"role":"user","content":"x"}]}"#,
    );
    assert_eq!(status, 404, "no personal adapter here: {body}");

    // Unknown routes and methods.
    let (status, _, body) = s.get("/v1/embeddings");
    assert_eq!(status, 404);
    error(status, &body);
    let (status, _, body) = s.get(comp);
    assert_eq!(status, 405);
    error(status, &body);

    // The server is still fine.
    let (status, _, body) = s.post(
        chat,
        r#"{"messages":[{"role":"user","content":"hi"}],"max_tokens":3}"#,
    );
    assert_eq!(status, 200, "{body}");
}

/// Checks the Prometheus text exposition format line by line: `# HELP` and `# TYPE` before a
/// family's samples, metric and label names well formed, label values quoted and escaped, values
/// numbers. Returns the samples as (name with labels, value).
fn parse_prometheus(text: &str) -> Vec<(String, f64)> {
    let name_ok = |n: &str| {
        !n.is_empty()
            && n.chars().enumerate().all(|(i, c)| {
                c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit())
            })
    };
    let mut typed = std::collections::BTreeMap::new();
    let mut samples = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let (kind, name, tail) = (parts.next().unwrap(), parts.next().unwrap(), parts.next());
            assert!(name_ok(name), "{line}");
            match kind {
                "HELP" => assert!(tail.is_some_and(|t| !t.is_empty()), "{line}"),
                "TYPE" => {
                    let t = tail.unwrap();
                    assert!(["counter", "gauge"].contains(&t), "{line}");
                    assert!(
                        typed.insert(name.to_string(), t.to_string()).is_none(),
                        "twice: {line}"
                    );
                }
                _ => panic!("unknown comment {line}"),
            }
            continue;
        }
        assert!(!line.is_empty(), "blank line in the exposition");
        let (series, value) = line.rsplit_once(' ').unwrap();
        let value: f64 = match value {
            "NaN" => f64::NAN,
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("bad value in {line}")),
        };
        let name = match series.split_once('{') {
            None => series,
            Some((name, labels)) => {
                let labels = labels.strip_suffix('}').unwrap_or_else(|| panic!("{line}"));
                // label="value" pairs, values with \\, \" and \n escapes.
                let mut rest = labels;
                while !rest.is_empty() {
                    let (label, after) = rest.split_once("=\"").unwrap_or_else(|| panic!("{line}"));
                    assert!(name_ok(label), "{line}");
                    let mut chars = after.char_indices();
                    let end = loop {
                        match chars.next() {
                            Some((_, '\\')) => {
                                let (_, c) = chars.next().unwrap();
                                assert!(['\\', '"', 'n'].contains(&c), "{line}");
                            }
                            Some((i, '"')) => break i,
                            Some(_) => {}
                            None => panic!("unterminated label value in {line}"),
                        }
                    };
                    rest = after[end + 1..]
                        .strip_prefix(',')
                        .unwrap_or(&after[end + 1..]);
                }
                name
            }
        };
        assert!(name_ok(name), "{line}");
        let kind = typed
            .get(name)
            .unwrap_or_else(|| panic!("no # TYPE before {line}"));
        if kind == "counter" {
            assert!(name.ends_with("_total") && value >= 0.0, "{line}");
        }
        samples.push((series.to_string(), value));
    }
    samples
}

#[test]
fn metrics_are_prometheus_text_and_count_the_work() {
    let m = member(false);
    let s = Served::start(&m, None, &[]);
    let (status, _, body) = s.post(
        "/v1/completions",
        r#"{"prompt":"the","max_tokens":5,"temperature":0}"#,
    );
    assert_eq!(status, 200, "{body}");
    let generated = json(&body)["usage"]["completion_tokens"].as_u64().unwrap();
    assert_eq!(
        s.post("/v1/completions", r#"{"prompt":"a","max_tokens":99999}"#)
            .0,
        400
    );
    let (status, ct, text) = s.get("/metrics");
    assert_eq!(status, 200);
    assert_eq!(ct, "text/plain; version=0.0.4; charset=utf-8");
    let samples = parse_prometheus(&text);
    let get = |series: &str| {
        samples
            .iter()
            .find(|(s, _)| s == series)
            .unwrap_or_else(|| panic!("no {series} in\n{text}"))
            .1
    };
    assert_eq!(get("hearth_tokens_generated_total"), generated as f64);
    assert_eq!(
        get("hearth_api_requests_total{route=\"/v1/completions\",status=\"200\"}"),
        1.0
    );
    assert_eq!(
        get("hearth_api_requests_total{route=\"/v1/completions\",status=\"400\"}"),
        1.0
    );
    assert!(get("hearth_prompt_tokens_total") >= 1.0);
    assert!(generated == 0 || get("hearth_tokens_per_second") > 0.0);
    for family in [
        "hearth_rounds_closed_total",
        "hearth_deltas_accepted_total",
        "hearth_epsilon_spent",
        "hearth_bytes_sent_total",
        "hearth_bytes_received_total",
    ] {
        assert_eq!(
            get(family),
            0.0,
            "{family}: nothing happened in `hearth serve`"
        );
    }
    assert!(text.contains("# TYPE hearth_deltas_rejected_total counter"));
}

#[test]
fn a_non_loopback_address_needs_a_token() {
    let m = member(false);
    let (ok, _, err) = m.run(&["serve", "--api-addr", "0.0.0.0:0"]);
    assert!(!ok);
    assert!(
        err.contains("refusing to serve on 0.0.0.0:0 without a token"),
        "{err}"
    );
    assert!(err.contains("--api-token"), "{err}");
    let (ok, _, err) = m.run(&["serve", "--max-concurrent", "0"]);
    assert!(!ok && err.contains("--max-concurrent"), "{err}");
}
