use safetensors::tensor::TensorView;

use super::*;

const HIDDEN: usize = 16;
const HEADS: usize = 4;
const KV_HEADS: usize = 2;
const HEAD_DIM: usize = HIDDEN / HEADS;
const FFN: usize = 24;
const VOCAB: usize = 10;
const LAYERS: usize = 2;

fn config(tie: bool) -> String {
    format!(
        r#"{{"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": {VOCAB},
        "hidden_size": {HIDDEN}, "intermediate_size": {FFN}, "num_hidden_layers": {LAYERS},
        "num_attention_heads": {HEADS}, "num_key_value_heads": {KV_HEADS}, "rope_theta": 100000.0,
        "rms_norm_eps": 1e-05, "max_position_embeddings": 128, "tie_word_embeddings": {tie},
        "bos_token_id": 1, "eos_token_id": [2, 0], "rope_scaling": null, "torch_dtype": "float32"}}"#
    )
}

/// Deterministic values in [-1, 1).
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

/// The tensors of a tiny Llama: (name, shape, values).
fn tensors(with_head: bool) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let mut out = vec![
        (names::EMBED_TOKENS.to_owned(), vec![VOCAB, HIDDEN]),
        (names::FINAL_NORM.to_owned(), vec![HIDDEN]),
    ];
    if with_head {
        out.push((names::LM_HEAD.to_owned(), vec![VOCAB, HIDDEN]));
    }
    let kv = KV_HEADS * HEAD_DIM;
    for l in 0..LAYERS {
        for (suffix, shape) in [
            ("self_attn.q_proj.weight", vec![HIDDEN, HIDDEN]),
            ("self_attn.k_proj.weight", vec![kv, HIDDEN]),
            ("self_attn.v_proj.weight", vec![kv, HIDDEN]),
            ("self_attn.o_proj.weight", vec![HIDDEN, HIDDEN]),
            ("mlp.gate_proj.weight", vec![FFN, HIDDEN]),
            ("mlp.up_proj.weight", vec![FFN, HIDDEN]),
            ("mlp.down_proj.weight", vec![HIDDEN, FFN]),
            ("input_layernorm.weight", vec![HIDDEN]),
            ("post_attention_layernorm.weight", vec![HIDDEN]),
        ] {
            out.push((names::layer(l, suffix), shape));
        }
    }
    out.into_iter()
        .enumerate()
        .map(|(i, (name, shape))| {
            let n = shape.iter().product();
            (name, shape, values(n, i as u64 + 1))
        })
        .collect()
}

fn encode(values: &[f32], dtype: Dtype) -> Vec<u8> {
    match dtype {
        Dtype::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        Dtype::F16 => values
            .iter()
            .flat_map(|v| f16::from_f32(*v).to_le_bytes())
            .collect(),
        Dtype::BF16 => values
            .iter()
            .flat_map(|v| bf16::from_f32(*v).to_le_bytes())
            .collect(),
        _ => values
            .iter()
            .flat_map(|v| (*v as i32).to_le_bytes())
            .collect(),
    }
}

fn write_safetensors(path: &Path, tensors: &[(String, Vec<usize>, Vec<f32>)], dtype: Dtype) {
    let encoded: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(n, s, v)| (n.clone(), s.clone(), encode(v, dtype)))
        .collect();
    let views: Vec<(String, TensorView<'_>)> = encoded
        .iter()
        .map(|(n, s, b)| (n.clone(), TensorView::new(dtype, s.clone(), b).unwrap()))
        .collect();
    std::fs::write(path, safetensors::serialize(views, None).unwrap()).unwrap();
}

/// A checkpoint folder: one file, or `shards` files plus an index.
fn checkpoint(tie: bool, with_head: bool, dtype: Dtype, shards: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.json"), config(tie)).unwrap();
    let all = tensors(with_head);
    if shards == 1 {
        write_safetensors(&dir.path().join("model.safetensors"), &all, dtype);
        return dir;
    }
    let mut weight_map = BTreeMap::new();
    for s in 0..shards {
        let file = format!("model-{:05}-of-{shards:05}.safetensors", s + 1);
        let part: Vec<_> = all.iter().skip(s).step_by(shards).cloned().collect();
        for (name, _, _) in &part {
            weight_map.insert(name.clone(), file.clone());
        }
        write_safetensors(&dir.path().join(&file), &part, dtype);
    }
    let index = serde_json::json!({"metadata": {"total_size": 0}, "weight_map": weight_map});
    std::fs::write(
        dir.path().join("model.safetensors.index.json"),
        index.to_string(),
    )
    .unwrap();
    dir
}

#[test]
fn reads_config() {
    let hp = LlamaHparams::from_hf_config(config(true).as_bytes()).unwrap();
    assert_eq!(
        (
            hp.vocab_size,
            hp.hidden_size,
            hp.intermediate_size,
            hp.num_layers
        ),
        (VOCAB, HIDDEN, FFN, LAYERS)
    );
    assert_eq!(
        (hp.num_heads, hp.num_kv_heads, hp.head_dim),
        (HEADS, KV_HEADS, HEAD_DIM)
    );
    assert_eq!(
        (hp.rope_theta, hp.rms_norm_eps, hp.max_position_embeddings),
        (1e5, 1e-5, 128)
    );
    assert_eq!((hp.bos_token_id, hp.eos_token_id), (Some(1), Some(2)));
    assert!(hp.tie_word_embeddings);
    let minimal = r#"{"vocab_size": 4, "hidden_size": 8, "intermediate_size": 8,
        "num_hidden_layers": 1, "num_attention_heads": 2}"#;
    let hp = LlamaHparams::from_hf_config(minimal.as_bytes()).unwrap();
    assert_eq!(
        (hp.num_kv_heads, hp.head_dim, hp.rope_theta),
        (2, 4, 10_000.0)
    );
    assert_eq!((hp.rms_norm_eps, hp.max_position_embeddings), (1e-6, 2048));
    for bad in [
        config(true).replace("\"llama\"", "\"qwen2\""),
        config(true).replace(
            "\"rope_scaling\": null",
            "\"rope_scaling\": {\"type\": \"llama3\"}",
        ),
        config(true).replace("\"num_key_value_heads\": 2", "\"num_key_value_heads\": 3"),
        config(true).replace("\"hidden_size\": 16,", ""),
        "{not json".to_owned(),
    ] {
        assert!(
            LlamaHparams::from_hf_config(bad.as_bytes()).is_err(),
            "{bad}"
        );
    }
}

fn assert_close(a: &[f32], b: &[f32], tol: f32) {
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(b) {
        assert!((x - y).abs() <= tol, "{x} vs {y}");
    }
}

#[test]
fn loads_every_tensor_in_every_dtype_and_layout() {
    let expected = tensors(true);
    for (dtype, tol) in [(Dtype::F32, 0.0), (Dtype::F16, 1e-3), (Dtype::BF16, 8e-3)] {
        for shards in [1, 3] {
            let dir = checkpoint(false, true, dtype, shards);
            let ck = HfCheckpoint::open(dir.path()).unwrap();
            assert!(!ck.hparams().tie_word_embeddings);
            assert_eq!(ck.file_rope_layout(), RopeLayout::RotateHalf);
            assert_eq!(ck.tensor_names().len(), expected.len());
            for (name, shape, values) in &expected {
                let raw = ck.raw_tensor(name).unwrap();
                assert_eq!(&raw.dims, shape, "{name}");
                assert_close(&raw.values, values, tol);
                let t = ck.tensor(name).unwrap();
                let heads = if name.contains("q_proj") {
                    Some(HEADS)
                } else if name.contains("k_proj") {
                    Some(KV_HEADS)
                } else {
                    None
                };
                match heads {
                    Some(h) => assert_eq!(t, permute_rotate_half_to_interleaved(&raw, h).unwrap()),
                    None => assert_eq!(t, raw),
                }
            }
        }
    }
}

#[test]
fn model_id_is_the_file_hash() {
    let dir = checkpoint(true, false, Dtype::F32, 1);
    let ck = HfCheckpoint::open(dir.path()).unwrap();
    let file_hash = crate::sha256_file(dir.path().join("model.safetensors")).unwrap();
    assert_eq!(ck.model_id().unwrap(), file_hash);
    let sharded = checkpoint(true, false, Dtype::F32, 2);
    let ck2 = HfCheckpoint::open(sharded.path()).unwrap();
    assert_ne!(ck2.model_id().unwrap(), file_hash);
    assert_eq!(ck2.model_id().unwrap().len(), 64);
}

#[test]
fn tied_head_is_the_embedding() {
    let dir = checkpoint(true, false, Dtype::F32, 1);
    let ck = HfCheckpoint::open(dir.path()).unwrap();
    assert!(ck.hparams().tie_word_embeddings);
    assert_eq!(
        ck.tensor(names::LM_HEAD).unwrap(),
        ck.tensor(names::EMBED_TOKENS).unwrap()
    );
    // A config claiming untied weights without an lm_head is treated as tied.
    let dir = checkpoint(false, false, Dtype::F32, 1);
    assert!(
        HfCheckpoint::open(dir.path())
            .unwrap()
            .hparams()
            .tie_word_embeddings
    );
}

#[test]
fn rejects_broken_checkpoints() {
    // Unsupported dtype.
    let dir = checkpoint(true, false, Dtype::I32, 1);
    let ck = HfCheckpoint::open(dir.path()).unwrap();
    let err = ck.tensor(names::FINAL_NORM).unwrap_err();
    assert_eq!(
        err.to_string(),
        "unsupported tensor type I32 for tensor model.norm.weight"
    );
    // Missing tensor.
    assert!(matches!(
        ck.tensor("model.layers.9.mlp.up_proj.weight"),
        Err(Error::MissingTensor { .. })
    ));
    // Truncated safetensors file: every cut is an error.
    let path = dir.path().join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    for len in (0..bytes.len()).step_by(97).chain([bytes.len() - 1]) {
        std::fs::write(&path, &bytes[..len]).unwrap();
        assert!(HfCheckpoint::open(dir.path()).is_err(), "cut at {len}");
    }
    // Missing files.
    std::fs::remove_file(&path).unwrap();
    assert!(matches!(
        HfCheckpoint::open(dir.path()),
        Err(Error::Io { .. })
    ));
    assert!(matches!(
        HfCheckpoint::open(dir.path().join("nope")),
        Err(Error::Io { .. })
    ));
}

#[test]
fn rejects_unsafe_shard_names_and_duplicates() {
    let dir = checkpoint(true, false, Dtype::F32, 2);
    let index = dir.path().join("model.safetensors.index.json");
    for name in [
        "../x.safetensors",
        "/etc/passwd",
        "sub/x.safetensors",
        ".hidden",
    ] {
        let json = serde_json::json!({"weight_map": {"a": name}});
        std::fs::write(&index, json.to_string()).unwrap();
        let err = HfCheckpoint::open(dir.path()).unwrap_err().to_string();
        assert!(err.contains("plain file name"), "{name}: {err}");
    }
    std::fs::write(&index, r#"{"weight_map": {}}"#).unwrap();
    assert!(HfCheckpoint::open(dir.path()).is_err());
    // The same tensor in two shards.
    let one = dir.path().join("model-00001-of-00002.safetensors");
    std::fs::copy(&one, dir.path().join("copy.safetensors")).unwrap();
    let json = serde_json::json!({"weight_map": {
        "a": "model-00001-of-00002.safetensors", "b": "copy.safetensors"}});
    std::fs::write(&index, json.to_string()).unwrap();
    let err = HfCheckpoint::open(dir.path()).unwrap_err().to_string();
    assert!(err.contains("more than one shard"), "{err}");
}

/// As the `gguf` fuzz target found for GGUF files: a layer count far beyond the tensors had
/// `Llama::load` reserve memory for every layer before it found the first one missing.
#[test]
fn layer_count_beyond_the_tensors_is_rejected() {
    let dir = checkpoint(true, false, Dtype::F32, 1);
    // 2 layers of 9 tensors and 2 global tensors: 2 layers fit, 3 do not.
    assert_eq!(
        HfCheckpoint::open(dir.path()).unwrap().tensor_names().len(),
        20
    );
    for layers in [3, 1 << 24] {
        let json = config(true).replace(
            &format!(r#""num_hidden_layers": {LAYERS}"#),
            &format!(r#""num_hidden_layers": {layers}"#),
        );
        std::fs::write(dir.path().join("config.json"), json).unwrap();
        let err = HfCheckpoint::open(dir.path()).unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "malformed config.json: {layers} hidden layers need {} tensors, the checkpoint has 20",
                layers * 9
            )
        );
    }
}

#[test]
fn json_files_are_size_capped() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.json");
    let file = std::fs::File::create(&path).unwrap();
    file.set_len(MAX_JSON_LEN + 1).unwrap();
    let err = HfCheckpoint::open(dir.path()).unwrap_err().to_string();
    assert!(err.contains("more than"), "{err}");
    file.set_len(MAX_JSON_LEN).unwrap();
    // At the cap the file is read (and fails as json, not on size).
    let err = HfCheckpoint::open(dir.path()).unwrap_err().to_string();
    assert!(!err.contains("more than"), "{err}");
}

/// Rotates pairs `(a[i], a[j])` of one head by `pos · θ_k`, pairs given as `(i, j, k)`.
fn rope(
    head: &mut [f64],
    pos: f64,
    theta: f64,
    pairs: impl Iterator<Item = (usize, usize, usize)>,
) {
    let d = head.len() as f64;
    for (i, j, k) in pairs {
        let angle = pos * theta.powf(-2.0 * k as f64 / d);
        let (s, c) = angle.sin_cos();
        let (x, y) = (head[i], head[j]);
        head[i] = x * c - y * s;
        head[j] = x * s + y * c;
    }
}

fn rope_rotate_half(head: &mut [f64], pos: f64, theta: f64) {
    let half = head.len() / 2;
    rope(head, pos, theta, (0..half).map(|k| (k, k + half, k)));
}

fn rope_interleaved(head: &mut [f64], pos: f64, theta: f64) {
    let half = head.len() / 2;
    rope(head, pos, theta, (0..half).map(|k| (2 * k, 2 * k + 1, k)));
}

fn matvec(w: &TensorData, x: &[f64]) -> Vec<f64> {
    let cols = w.dims[1];
    (0..w.dims[0])
        .map(|r| {
            (0..cols)
                .map(|c| f64::from(w.values[r * cols + c]) * x[c])
                .sum()
        })
        .collect()
}

/// Attention scores q_h(pos_q) · k_g(pos_k) for every query head h and its kv head g.
fn scores(
    wq: &TensorData,
    wk: &TensorData,
    xq: &[f64],
    xk: &[f64],
    (pq, pk): (f64, f64),
    rope_fn: fn(&mut [f64], f64, f64),
) -> Vec<f64> {
    let (mut q, mut k) = (matvec(wq, xq), matvec(wk, xk));
    for head in q.chunks_mut(HEAD_DIM) {
        rope_fn(head, pq, 100_000.0);
    }
    for head in k.chunks_mut(HEAD_DIM) {
        rope_fn(head, pk, 100_000.0);
    }
    let group = HEADS / KV_HEADS;
    (0..HEADS)
        .map(|h| {
            let qh = &q[h * HEAD_DIM..(h + 1) * HEAD_DIM];
            let kg = &k[(h / group) * HEAD_DIM..(h / group + 1) * HEAD_DIM];
            qh.iter().zip(kg).map(|(a, b)| a * b).sum()
        })
        .collect()
}

#[test]
fn permuted_weights_with_interleaved_rope_match_rotate_half() {
    let dir = checkpoint(true, false, Dtype::F32, 1);
    let ck = HfCheckpoint::open(dir.path()).unwrap();
    for layer in 0..LAYERS {
        let q_name = names::layer(layer, "self_attn.q_proj.weight");
        let k_name = names::layer(layer, "self_attn.k_proj.weight");
        let (hf_q, hf_k) = (
            ck.raw_tensor(&q_name).unwrap(),
            ck.raw_tensor(&k_name).unwrap(),
        );
        let (il_q, il_k) = (ck.tensor(&q_name).unwrap(), ck.tensor(&k_name).unwrap());
        assert_ne!(hf_q, il_q, "the permutation must move rows");
        for (i, positions) in [(0.0, 0.0), (5.0, 2.0), (17.0, 17.0), (100.0, 3.0)]
            .into_iter()
            .enumerate()
        {
            let seed = 100 + 10 * (layer + i) as u64;
            let xq: Vec<f64> = values(HIDDEN, seed).into_iter().map(f64::from).collect();
            let xk: Vec<f64> = values(HIDDEN, seed + 1)
                .into_iter()
                .map(f64::from)
                .collect();
            let reference = scores(&hf_q, &hf_k, &xq, &xk, positions, rope_rotate_half);
            let ours = scores(&il_q, &il_k, &xq, &xk, positions, rope_interleaved);
            for (a, b) in reference.iter().zip(&ours) {
                assert!((a - b).abs() < 1e-9, "{a} vs {b} at {positions:?}");
            }
            // Without the permutation, interleaved RoPE gives different scores.
            let wrong = scores(&hf_q, &hf_k, &xq, &xk, positions, rope_interleaved);
            if positions.0 != positions.1 {
                assert!(
                    reference
                        .iter()
                        .zip(&wrong)
                        .any(|(a, b)| (a - b).abs() > 1e-6)
                );
            }
        }
    }
}
