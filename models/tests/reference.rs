//! The real SmolLM2 model against an independent reference: `tools/reference_forward.py`, a
//! from-scratch numpy (float64) forward pass of the same GGUF, wrote
//! `tests/data/reference_logits.json` (three prompts: their last-position logits at 100 ids and the
//! greedy continuation of 8 tokens). Here the Burn model, in f32 on the CPU backend, must agree to
//! `1e-3` on every stored logit, through both the uncached forward pass and the KV-cached
//! generation path, and must produce the same greedy continuation.
//!
//! Needs the model file (scripts/fetch-assets.sh); `HEARTH_SKIP_REAL_MODEL=1` skips these tests
//! when it is missing.

use std::path::PathBuf;
use std::sync::OnceLock;

use burn::tensor::{Device, Int, Tensor, TensorData};
use hearth_models::{
    GenerateConfig, Generator, GgufWeights, Llama, LlamaConfig, Tokenizer, WeightSource,
};
use serde_json::Value;

/// Largest allowed `|burn - reference|` over the stored logits.
const TOLERANCE: f64 = 1e-3;

/// One prompt of the reference file.
struct Case {
    text: String,
    prompt: Vec<u32>,
    argmax: u32,
    /// `(id, logit)`: the top 50 and the 50 fixed ids.
    logits: Vec<(u32, f64)>,
    greedy: Vec<u32>,
    greedy_text: String,
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .expect("an array of ids")
        .iter()
        .map(|i| u32::try_from(i.as_u64().expect("an id")).expect("a u32 id"))
        .collect()
}

fn load_cases() -> (String, Vec<Case>) {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/reference_logits.json"
    );
    let reference: Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("read the reference"))
            .expect("parse the reference");
    let sha = reference["model_sha256"]
        .as_str()
        .expect("sha256")
        .to_owned();
    let cases = reference["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .map(|c| {
            let mut logits: Vec<(u32, f64)> = c["top50"]
                .as_array()
                .expect("top50")
                .iter()
                .map(|p| {
                    let id = u32::try_from(p[0].as_u64().expect("an id")).expect("a u32 id");
                    (id, p[1].as_f64().expect("a logit"))
                })
                .collect();
            assert_eq!(logits.len(), 50);
            let fixed = ids(&c["fixed_ids"]);
            let values = c["fixed_logits"].as_array().expect("fixed_logits");
            assert_eq!(fixed.len(), 50);
            assert_eq!(values.len(), 50);
            logits.extend(
                fixed
                    .into_iter()
                    .zip(values.iter().map(|v| v.as_f64().expect("a logit"))),
            );
            Case {
                text: c["prompt_text"].as_str().expect("text").to_owned(),
                prompt: ids(&c["prompt_ids"]),
                argmax: u32::try_from(c["argmax"].as_u64().expect("argmax")).expect("u32"),
                logits,
                greedy: ids(&c["greedy_ids"]),
                greedy_text: c["greedy_text"].as_str().expect("text").to_owned(),
            }
        })
        .collect();
    (sha, cases)
}

/// The real model path, `None` only when it is missing and `HEARTH_SKIP_REAL_MODEL=1`.
fn real_model_path() -> Option<PathBuf> {
    let dir = std::env::var_os("HEARTH_ASSETS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../assets"));
    let path = dir.join("SmolLM2-135M-Instruct.Q4_1.gguf");
    if path.is_file() {
        return Some(path);
    }
    if std::env::var("HEARTH_SKIP_REAL_MODEL").as_deref() == Ok("1") {
        eprintln!(
            "skipping: {} is missing and HEARTH_SKIP_REAL_MODEL=1",
            path.display()
        );
        return None;
    }
    panic!(
        "{} is missing: run scripts/fetch-assets.sh (or set HEARTH_SKIP_REAL_MODEL=1 to skip real-model tests)",
        path.display()
    );
}

/// The model, its tokenizer and the reference cases, loaded once for all tests of this binary.
fn real() -> Option<&'static (Llama, Tokenizer, Vec<Case>)> {
    static REAL: OnceLock<Option<(Llama, Tokenizer, Vec<Case>)>> = OnceLock::new();
    REAL.get_or_init(|| {
        let path = real_model_path()?;
        let weights = GgufWeights::open(&path).expect("open the model");
        let (sha, cases) = load_cases();
        assert_eq!(
            weights.gguf().sha256(),
            sha,
            "the reference is of another file"
        );
        let tokenizer = Tokenizer::from_gguf(weights.gguf()).expect("tokenizer");
        let config = LlamaConfig::from_hparams(weights.hparams())
            .expect("config")
            .with_max_seq_len(64);
        let model = Llama::load_with(&weights, &config, &Device::flex()).expect("load");
        Some((model, tokenizer, cases))
    })
    .as_ref()
}

/// Largest `|logits[id] - reference|` over the stored ids.
fn max_abs_diff(logits: &[f32], case: &Case) -> f64 {
    case.logits
        .iter()
        .map(|&(id, r)| (f64::from(logits[id as usize]) - r).abs())
        .fold(0.0, f64::max)
}

fn uncached_last_logits(model: &Llama, prompt: &[u32]) -> Vec<f32> {
    let ids: Vec<i64> = prompt.iter().map(|&t| i64::from(t)).collect();
    let tokens =
        Tensor::<2, Int>::from_data(TensorData::new(ids, [1, prompt.len()]), &Device::flex());
    let logits = model.forward(tokens);
    let [_, s, v] = logits.dims();
    logits
        .narrow(1, s - 1, 1)
        .reshape([v])
        .into_data()
        .try_to_vec::<f32>()
        .expect("f32 logits")
}

#[test]
fn last_position_logits_match_the_numpy_reference() {
    let Some((model, _, cases)) = real() else {
        return;
    };
    assert_eq!(cases.len(), 3);
    let mut worst: f64 = 0.0;
    for case in cases {
        // The uncached forward pass over the whole prompt.
        let full = uncached_last_logits(model, &case.prompt);
        // Generation's path: chunked prefill through the KV cache, last row only.
        let mut generator =
            Generator::new(model, &case.prompt, GenerateConfig::greedy(1)).expect("generator");
        let (first, cached) = generator
            .next_with_logits()
            .expect("prefill")
            .expect("a token");
        assert_eq!(full.len(), model.config().vocab);
        assert_eq!(cached.len(), model.config().vocab);
        let (d_full, d_cached) = (max_abs_diff(&full, case), max_abs_diff(&cached, case));
        println!(
            "{:?}: max |burn - numpy| {d_full:.2e} (forward), {d_cached:.2e} (cached)",
            case.text
        );
        assert!(
            d_full <= TOLERANCE && d_cached <= TOLERANCE,
            "{:?}: logits differ from the reference by {d_full:e} / {d_cached:e}",
            case.text
        );
        assert_eq!(hearth_models::argmax(&full), case.argmax, "{:?}", case.text);
        assert_eq!(first, case.argmax, "{:?}", case.text);
        worst = worst.max(d_full).max(d_cached);
    }
    println!("max abs diff over all prompts: {worst:.2e}");
}

/// The check is sharp: one token moved changes the last-position logits far beyond the tolerance,
/// so agreement to 1e-3 is not something an approximately right model reaches by chance.
#[test]
fn the_tolerance_separates_nearby_prompts() {
    let Some((model, _, cases)) = real() else {
        return;
    };
    let case = &cases[0];
    let mut prompt = case.prompt.clone();
    // "The capital of France is" → "The capital of Shakespeare is".
    assert_eq!(cases[1].prompt[7], 12081);
    prompt[3] = cases[1].prompt[7];
    let other = uncached_last_logits(model, &prompt);
    let d = max_abs_diff(&other, case);
    assert!(d > 100.0 * TOLERANCE, "only {d:e} apart");
}

#[test]
fn greedy_continuation_matches_the_numpy_reference() {
    let Some((model, tokenizer, cases)) = real() else {
        return;
    };
    for case in cases {
        let tokens = Generator::new(
            model,
            &case.prompt,
            GenerateConfig::greedy(case.greedy.len()),
        )
        .expect("generator")
        .collect::<Result<Vec<u32>, _>>()
        .expect("generate");
        assert_eq!(tokens, case.greedy, "{:?}", case.text);
        assert_eq!(
            tokenizer.decode(&tokens).expect("decode"),
            case.greedy_text,
            "{:?}",
            case.text
        );
    }
}
