use std::ops::ControlFlow;

use burn::tensor::{Int, Tensor, TensorData};

use super::*;
use crate::{GenerateConfig, Role, Tokenizer, generate};

/// Writes the tiny model and loads it the way a node loads the real one.
fn load(dir: &Path, config: &LlamaConfig, seed: u64) -> (GgufWeights, Tokenizer, Llama) {
    let path = dir.join(format!("tiny-{seed}.gguf"));
    write_gguf(&path, config, seed).unwrap();
    let weights = GgufWeights::open(&path).unwrap();
    let tokenizer = Tokenizer::from_gguf(weights.gguf()).unwrap();
    let loaded = LlamaConfig::from_hparams(weights.hparams()).unwrap();
    assert_eq!(&loaded, config);
    let model = Llama::load_with(&weights, &loaded, &Device::flex()).unwrap();
    (weights, tokenizer, model)
}

fn logits(model: &Llama, ids: &[u32]) -> (Vec<usize>, Vec<f32>) {
    let ids: Vec<i64> = ids.iter().map(|&t| i64::from(t)).collect();
    let n = ids.len();
    let tokens = Tensor::<2, Int>::from_data(TensorData::new(ids, [1, n]), &Device::flex());
    let out = model.forward(tokens);
    (out.dims().to_vec(), to_host(out).unwrap())
}

#[test]
fn loads_through_the_real_path_with_init_random_logits() {
    let dir = tempfile::tempdir().unwrap();
    for (config, seed) in [
        (LlamaConfig::tiny(320), 7),
        (LlamaConfig::tiny(MIN_VOCAB).with_tie_embeddings(false), 8),
    ] {
        let (weights, tokenizer, model) = load(dir.path(), &config, seed);
        assert_eq!(weights.gguf().version(), 3);
        let prompt = tokenizer
            .encode_chat(&[(Role::User, "the weather in Paris?".into())])
            .unwrap();
        let (dims, got) = logits(&model, &prompt);
        assert_eq!(dims, [1, prompt.len(), config.vocab]);
        assert!(got.iter().all(|v| v.is_finite()));
        assert!(got.iter().any(|&v| v != 0.0));
        let reference = Llama::init_random(&config, seed, &Device::flex()).unwrap();
        assert_eq!(logits(&reference, &prompt).1, got);
    }
}

#[test]
fn same_seed_same_bytes_other_seed_other_model_id() {
    let config = LlamaConfig::tiny(300);
    let bytes = gguf_bytes(&config, 1).unwrap();
    assert_eq!(bytes, gguf_bytes(&config, 1).unwrap());
    let dir = tempfile::tempdir().unwrap();
    let (a, ..) = load(dir.path(), &config, 1);
    let (b, ..) = load(dir.path(), &config, 2);
    let id = a.model_id().unwrap();
    assert_eq!(id, Gguf::from_bytes(bytes).unwrap().sha256());
    assert_eq!(id.len(), 64);
    assert_ne!(id, b.model_id().unwrap());
}

#[test]
fn tokenizer_round_trips_and_knows_its_specials() {
    let t = Tokenizer::from_gguf(
        &Gguf::from_bytes(gguf_bytes(&LlamaConfig::tiny(300), 3).unwrap()).unwrap(),
    )
    .unwrap();
    assert_eq!(t.vocab_size(), 300);
    for s in [
        "hello world",
        "tabs\tand\nnew lines\r\n  ",
        "digits 1234567890",
        "unicode: héllo wörld, 日本語, emoji 🦀👍🏽",
        "",
    ] {
        assert_eq!(t.decode(&t.encode(s).unwrap()).unwrap(), s);
    }
    assert_eq!(t.encode(" the").unwrap(), [t.token_to_id("Ġthe").unwrap()]);
    assert_eq!(t.encode("hi").unwrap().len(), 2);
    assert_eq!((t.bos_id(), t.eos_id()), (Some(1), Some(2)));
    assert_eq!(t.stop_ids(), [2, 0]);
    assert_eq!(t.default_system_prompt(), None);
    let chat = t.encode_chat(&[(Role::User, "hi".into())]).unwrap();
    assert_eq!(chat[0], 1);
    assert_eq!(
        t.decode(&chat).unwrap(),
        "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    );
    // A padding token decodes to its literal name.
    assert_eq!(t.decode(&[299]).unwrap(), "[PAD299]");
    assert_eq!(byte_chars()[usize::from(b' ')], 'Ġ');
    assert_eq!(byte_chars()[usize::from(b'\n')], 'Ċ');
}

#[test]
fn greedy_generation_runs_and_repeats() {
    let dir = tempfile::tempdir().unwrap();
    let config = LlamaConfig::tiny(320);
    let (_, tokenizer, model) = load(dir.path(), &config, 11);
    let prompt = tokenizer
        .encode_chat(&[(Role::User, "hello".into())])
        .unwrap();
    let run = || {
        generate(&model, &prompt, &GenerateConfig::greedy(6), |_| {
            ControlFlow::Continue(())
        })
        .unwrap()
    };
    let out = run();
    assert_eq!(out.tokens.len(), 6);
    assert_eq!(out.prompt_tokens, prompt.len());
    assert!(out.tokens.iter().all(|&t| (t as usize) < config.vocab));
    tokenizer.decode(&out.tokens).unwrap();
    assert_eq!(run().tokens, out.tokens);
}

#[test]
fn rejects_small_vocabularies_and_lossy_floats() {
    assert!(gguf_bytes(&LlamaConfig::tiny(MIN_VOCAB), 0).is_ok());
    let err = gguf_bytes(&LlamaConfig::tiny(MIN_VOCAB - 1), 0).unwrap_err();
    assert!(err.to_string().contains("below"), "{err}");
    let odd_heads = LlamaConfig {
        kv_heads: 3,
        ..LlamaConfig::tiny(300)
    };
    assert!(gguf_bytes(&odd_heads, 0).is_err());
    // 10000.000001 is not an f32: the file would load as a different configuration.
    let lossy = LlamaConfig::tiny(300).with_rope_theta(10_000.000_001);
    let err = gguf_bytes(&lossy, 0).unwrap_err();
    assert!(err.to_string().contains("reads back"), "{err}");
}
