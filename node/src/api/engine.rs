//! Generating text for the API and `hearth chat`: a [`Job`] runs the model's [`Generator`] on the
//! calling (blocking) thread and hands each new piece of text to a callback, cutting the text at
//! the first stop string and never showing a piece that could still turn out to be one.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Instant;

use hearth_models::{FinishReason, GenerateConfig, Generator, Llama, Tokenizer};

/// Most stop strings per request (OpenAI's limit).
pub const MAX_STOP: usize = 4;
/// Longest stop string, in bytes.
pub const MAX_STOP_BYTES: usize = 256;

/// Why a generation ended, as OpenAI names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// A stop token or stop string.
    Stop,
    /// `max_tokens`, or the context is full.
    Length,
    /// The caller stopped it (the client went away).
    Cancelled,
}

impl Finish {
    /// `finish_reason` in a response.
    pub fn as_str(self) -> &'static str {
        match self {
            Finish::Stop => "stop",
            Finish::Length => "length",
            Finish::Cancelled => "cancelled",
        }
    }
}

/// One generation request, ready to run.
#[derive(Debug, Clone)]
pub struct Job {
    /// The model (shared; generation only reads it).
    pub model: Arc<Llama>,
    /// Its tokenizer.
    pub tokenizer: Arc<Tokenizer>,
    /// Prompt token ids.
    pub prompt: Vec<u32>,
    /// Sampling, length, seed and stop tokens.
    pub config: GenerateConfig,
    /// Stop strings (non-empty each).
    pub stop: Vec<String>,
}

/// What a finished generation did.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// Tokens generated (stop token excluded).
    pub tokens: usize,
    /// Why it ended.
    pub finish: Finish,
    /// Seconds from start to end, prompt processing included.
    pub secs: f64,
}

impl Job {
    /// Runs the generation on this thread. `emit` gets each new piece of visible text as soon as
    /// it is certain (after every token, possibly with an empty piece, so that it can stop the
    /// generation by returning [`ControlFlow::Break`]).
    pub fn run(
        &self,
        mut emit: impl FnMut(&str) -> ControlFlow<()>,
    ) -> hearth_models::Result<Outcome> {
        let start = Instant::now();
        let mut generator = Generator::new(&self.model, &self.prompt, self.config.clone())?;
        let mut tokens = Vec::new();
        let mut sent = 0;
        let mut finish = None;
        while let Some(token) = generator.next_token()? {
            tokens.push(token);
            let text = self.tokenizer.decode_skip_special(&tokens)?;
            let (end, stopped) = visible(&text, &self.stop, false);
            let piece = match text.get(sent..end) {
                Some(p) if end > sent => p,
                _ => "",
            };
            if emit(piece).is_break() {
                finish = Some(Finish::Cancelled);
                break;
            }
            sent = sent.max(end);
            if stopped {
                finish = Some(Finish::Stop);
                break;
            }
        }
        let finish = match finish {
            Some(f) => f,
            None => {
                // The end: whatever was held back (a partial stop string, an incomplete
                // character) is now final.
                let text = self.tokenizer.decode_skip_special(&tokens)?;
                let (end, stopped) = visible(&text, &self.stop, true);
                if let Some(piece) = text.get(sent..end).filter(|p| !p.is_empty()) {
                    let _ = emit(piece);
                }
                match (stopped, generator.finish_reason()) {
                    (true, _) | (_, Some(FinishReason::Stop(_))) => Finish::Stop,
                    (_, Some(FinishReason::Cancelled)) => Finish::Cancelled,
                    _ => Finish::Length,
                }
            }
        };
        Ok(Outcome {
            tokens: tokens.len(),
            finish,
            secs: start.elapsed().as_secs_f64(),
        })
    }
}

/// How much of `text` may be shown, and whether a stop string ended it: up to the first stop
/// string; otherwise, unless `done`, without a trailing incomplete character (U+FFFD) or a
/// trailing piece that begins a stop string.
pub fn visible(text: &str, stops: &[String], done: bool) -> (usize, bool) {
    if let Some(pos) = stops
        .iter()
        .filter(|s| !s.is_empty())
        .filter_map(|s| text.find(s.as_str()))
        .min()
    {
        return (pos, true);
    }
    if done {
        return (text.len(), false);
    }
    let mut end = text.len();
    while text[..end].ends_with('\u{fffd}') {
        end -= '\u{fffd}'.len_utf8();
    }
    let shown = &text[..end];
    let hold = stops
        .iter()
        .filter_map(|s| {
            (1..s.len())
                .rev()
                .find(|&k| s.is_char_boundary(k) && shown.ends_with(&s[..k]))
        })
        .max()
        .unwrap_or(0);
    (end - hold, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn holds_back_what_may_become_a_stop_string() {
        assert_eq!(visible("hello", &[], false), (5, false));
        assert_eq!(visible("hello wo", &s(&["world"]), false), (6, false));
        assert_eq!(visible("hello world!", &s(&["world"]), false), (6, true));
        assert_eq!(visible("a\nb", &s(&["x", "\n"]), false), (1, true));
        assert_eq!(visible("ab\u{fffd}", &[], false), (2, false));
        assert_eq!(visible("ab\u{fffd}", &[], true), (5, false));
        assert_eq!(visible("hello wo", &s(&["world"]), true), (8, false));
        // A multi-byte stop string is only held back at character boundaries.
        assert_eq!(visible("caf", &s(&["fé"]), false), (2, false));
        assert_eq!(visible("x é", &s(&["éa"]), false), (2, false));
    }

    #[test]
    fn runs_on_a_tiny_model_and_stops_on_strings() {
        use burn::tensor::Device;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tiny.gguf");
        hearth_models::tiny::write_gguf(&path, &hearth_models::LlamaConfig::tiny(320), 3).unwrap();
        let (model, tokenizer, _) = crate::model::load_base(&path, 64, &Device::flex()).unwrap();
        let mut job = Job {
            model: Arc::new(model),
            tokenizer: Arc::new(tokenizer),
            prompt: vec![1, 2, 3],
            config: GenerateConfig::greedy(12),
            stop: Vec::new(),
        };
        let mut all = String::new();
        let out = job
            .run(|p| {
                all.push_str(p);
                ControlFlow::Continue(())
            })
            .unwrap();
        assert_eq!(out.tokens, 12);
        assert_eq!(out.finish, Finish::Length);
        let full = job.tokenizer.decode_skip_special(&{
            let mut g = Generator::new(&job.model, &job.prompt, job.config.clone()).unwrap();
            std::iter::from_fn(|| g.next_token().unwrap()).collect::<Vec<_>>()
        });
        assert_eq!(all, full.unwrap(), "the pieces make up the whole text");

        // Stop at a string taken from the middle of that text.
        let mid: String = all.chars().skip(3).take(2).collect();
        job.stop = vec![mid.clone()];
        let mut cut = String::new();
        let out = job
            .run(|p| {
                cut.push_str(p);
                ControlFlow::Continue(())
            })
            .unwrap();
        assert_eq!(out.finish, Finish::Stop);
        assert_eq!(cut, all[..all.find(&mid).unwrap()]);

        // The callback can cancel.
        job.stop.clear();
        let mut calls = 0;
        let out = job
            .run(|_| {
                calls += 1;
                if calls == 3 {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            })
            .unwrap();
        assert_eq!((out.finish, out.tokens), (Finish::Cancelled, 3));
    }
}
