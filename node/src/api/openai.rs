//! The OpenAI wire format: request bodies of `/v1/chat/completions` and `/v1/completions`, and the
//! JSON of responses, stream chunks and errors, as the official clients expect them.
//!
//! Unknown request fields are ignored, as OpenAI's server does; fields whose meaning this server
//! cannot honour (several choices, log-probabilities, tools, penalties) are refused with a 400 that
//! names them, rather than silently ignored.

use serde::Deserialize;
use serde_json::{Value, json};

/// `stop`: one string or a list.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Stop {
    /// One stop string.
    One(String),
    /// Several.
    Many(Vec<String>),
}

impl Stop {
    /// The stop strings.
    pub fn into_vec(self) -> Vec<String> {
        match self {
            Stop::One(s) => vec![s],
            Stop::Many(v) => v,
        }
    }
}

/// `stream_options`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct StreamOptions {
    /// Send a last chunk with the token usage.
    #[serde(default)]
    pub include_usage: bool,
}

/// Sampling and length parameters shared by both endpoints.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Sampling {
    /// Model id (`GET /v1/models`); the default model when absent.
    #[serde(default)]
    pub model: Option<String>,
    /// Softmax temperature in `[0, 2]`; 0 decodes greedily. Default 1.
    #[serde(default)]
    pub temperature: Option<f64>,
    /// Nucleus mass in `(0, 1]`. Default 1.
    #[serde(default)]
    pub top_p: Option<f64>,
    /// Most tokens to generate.
    #[serde(default)]
    pub max_tokens: Option<u64>,
    /// Same as `max_tokens` (the newer name in chat completions).
    #[serde(default)]
    pub max_completion_tokens: Option<u64>,
    /// Strings that end the text (not included).
    #[serde(default)]
    pub stop: Option<Stop>,
    /// Seed of the sampler: the same seed and request give the same text.
    #[serde(default)]
    pub seed: Option<i64>,
    /// Stream server-sent events.
    #[serde(default)]
    pub stream: Option<bool>,
    /// Streaming options.
    #[serde(default)]
    pub stream_options: Option<StreamOptions>,
    /// Number of choices; only 1 is served.
    #[serde(default)]
    pub n: Option<u64>,
    /// Log-probabilities: not served.
    #[serde(default)]
    pub logprobs: Option<Value>,
    /// Presence penalty: only 0 is served.
    #[serde(default)]
    pub presence_penalty: Option<f64>,
    /// Frequency penalty: only 0 is served.
    #[serde(default)]
    pub frequency_penalty: Option<f64>,
    /// Tools: not served.
    #[serde(default)]
    pub tools: Option<Value>,
}

/// A chat message's content: text, or a list of parts of which only text parts are served.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Content {
    /// Plain text.
    Text(String),
    /// Content parts (`{"type": "text", "text": ...}`).
    Parts(Vec<Part>),
}

/// One content part.
#[derive(Debug, Clone, Deserialize)]
pub struct Part {
    /// Part type; only `text` is served.
    #[serde(rename = "type")]
    pub kind: String,
    /// The text of a text part.
    #[serde(default)]
    pub text: Option<String>,
}

/// One chat message.
#[derive(Debug, Clone, Deserialize)]
pub struct Message {
    /// `system`, `developer`, `user` or `assistant`.
    pub role: String,
    /// The content (absent or null counts as empty).
    #[serde(default)]
    pub content: Option<Content>,
}

/// Body of `POST /v1/chat/completions`.
#[derive(Debug, Clone, Deserialize)]
pub struct ChatRequest {
    /// The conversation so far.
    pub messages: Vec<Message>,
    /// Sampling and length.
    #[serde(flatten)]
    pub sampling: Sampling,
}

/// A completion prompt: text or token ids, alone or in a one-element list.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Prompt {
    /// Text.
    Text(String),
    /// A list of texts (one is served).
    Texts(Vec<String>),
    /// Token ids.
    Tokens(Vec<u32>),
    /// A list of token id lists (one is served).
    TokenLists(Vec<Vec<u32>>),
}

/// Body of `POST /v1/completions`.
#[derive(Debug, Clone, Deserialize)]
pub struct CompletionRequest {
    /// The prompt.
    pub prompt: Prompt,
    /// Echo the prompt before the completion: only `false` is served.
    #[serde(default)]
    pub echo: Option<bool>,
    /// Text after the completion: not served.
    #[serde(default)]
    pub suffix: Option<String>,
    /// Sampling and length.
    #[serde(flatten)]
    pub sampling: Sampling,
}

/// Token counts of a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// Prompt tokens.
    pub prompt: usize,
    /// Generated tokens.
    pub completion: usize,
}

impl Usage {
    /// The `usage` object.
    pub fn json(self) -> Value {
        json!({
            "prompt_tokens": self.prompt,
            "completion_tokens": self.completion,
            "total_tokens": self.prompt + self.completion,
        })
    }
}

/// Which endpoint a response belongs to, with what every chunk repeats.
#[derive(Debug, Clone)]
pub struct Reply {
    /// Chat completion (`chatcmpl-…`) or text completion (`cmpl-…`).
    pub chat: bool,
    /// Response id.
    pub id: String,
    /// Unix seconds.
    pub created: u64,
    /// Model id.
    pub model: String,
}

impl Reply {
    fn object(&self, chunk: bool) -> &'static str {
        match (self.chat, chunk) {
            (true, false) => "chat.completion",
            (true, true) => "chat.completion.chunk",
            (false, _) => "text_completion",
        }
    }

    fn envelope(&self, chunk: bool, choices: Value) -> Value {
        json!({
            "id": self.id,
            "object": self.object(chunk),
            "created": self.created,
            "model": self.model,
            "choices": choices,
        })
    }

    /// The whole (non-streamed) response.
    pub fn full(&self, text: &str, finish: &str, usage: Usage) -> Value {
        let choice = if self.chat {
            json!({
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "logprobs": null,
                "finish_reason": finish,
            })
        } else {
            json!({"index": 0, "text": text, "logprobs": null, "finish_reason": finish})
        };
        let mut v = self.envelope(false, json!([choice]));
        v["usage"] = usage.json();
        v
    }

    /// The first chunk of a chat stream (the assistant role, no text); none for completions.
    pub fn start_chunk(&self) -> Option<Value> {
        self.chat.then(|| {
            self.envelope(
                true,
                json!([{
                    "index": 0,
                    "delta": {"role": "assistant", "content": ""},
                    "logprobs": null,
                    "finish_reason": null,
                }]),
            )
        })
    }

    /// A chunk carrying new text.
    pub fn text_chunk(&self, text: &str) -> Value {
        let choice = if self.chat {
            json!({"index": 0, "delta": {"content": text}, "logprobs": null, "finish_reason": null})
        } else {
            json!({"index": 0, "text": text, "logprobs": null, "finish_reason": null})
        };
        self.envelope(true, json!([choice]))
    }

    /// The chunk that ends the choice.
    pub fn finish_chunk(&self, finish: &str) -> Value {
        let choice = if self.chat {
            json!({"index": 0, "delta": {}, "logprobs": null, "finish_reason": finish})
        } else {
            json!({"index": 0, "text": "", "logprobs": null, "finish_reason": finish})
        };
        self.envelope(true, json!([choice]))
    }

    /// The usage chunk (`stream_options.include_usage`): no choices.
    pub fn usage_chunk(&self, usage: Usage) -> Value {
        let mut v = self.envelope(true, json!([]));
        v["usage"] = usage.json();
        v
    }
}

/// An error body: `{"error": {"message", "type", "param", "code"}}`.
pub fn error_body(message: &str, kind: &str, param: Option<&str>, code: Option<&str>) -> Value {
    json!({"error": {"message": message, "type": kind, "param": param, "code": code}})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_clients_send() {
        let chat: ChatRequest = serde_json::from_str(
            r#"{"model":"hearth-community","messages":[{"role":"system","content":"be brief"},
            {"role":"user","content":[{"type":"text","text":"hi"}]},{"role":"assistant","content":null}],
            "temperature":0.5,"stop":"\n","seed":-3,"stream":true,"stream_options":{"include_usage":true},
            "user":"ignored","metadata":{"x":1}}"#,
        )
        .unwrap();
        assert_eq!(chat.messages.len(), 3);
        assert!(
            matches!(chat.messages[1].content, Some(Content::Parts(ref p)) if p[0].text.as_deref() == Some("hi"))
        );
        assert_eq!(chat.sampling.seed, Some(-3));
        assert!(chat.sampling.stream_options.unwrap().include_usage);
        assert_eq!(
            chat.sampling.stop.unwrap().into_vec(),
            vec!["\n".to_string()]
        );

        for (body, ok) in [
            (r#"{"prompt":"x"}"#, true),
            (r#"{"prompt":["x"]}"#, true),
            (r#"{"prompt":[1,2]}"#, true),
            (r#"{"prompt":[[1,2]]}"#, true),
            (r#"{"prompt":{"x":1}}"#, false),
            (r#"{"model":"m"}"#, false),
        ] {
            assert_eq!(
                serde_json::from_str::<CompletionRequest>(body).is_ok(),
                ok,
                "{body}"
            );
        }
    }

    #[test]
    fn responses_have_openai_shape() {
        let r = Reply {
            chat: true,
            id: "chatcmpl-1".into(),
            created: 5,
            model: "m".into(),
        };
        let full = r.full(
            "hello",
            "stop",
            Usage {
                prompt: 3,
                completion: 2,
            },
        );
        assert_eq!(full["object"], "chat.completion");
        assert_eq!(full["choices"][0]["message"]["content"], "hello");
        assert_eq!(full["usage"]["total_tokens"], 5);
        assert_eq!(
            r.start_chunk().unwrap()["choices"][0]["delta"]["role"],
            "assistant"
        );
        assert_eq!(r.text_chunk("a")["object"], "chat.completion.chunk");
        let c = Reply { chat: false, ..r };
        assert!(c.start_chunk().is_none());
        assert_eq!(c.text_chunk("a")["choices"][0]["text"], "a");
        assert_eq!(
            c.finish_chunk("length")["choices"][0]["finish_reason"],
            "length"
        );
        assert_eq!(
            c.usage_chunk(Usage {
                prompt: 1,
                completion: 1
            })["choices"],
            json!([])
        );
    }
}
