use half::f16;

use super::testutil::{Writer, real_model, str_array};
use super::*;
use crate::weights::{LlamaHparams, WeightSource, names};

fn h(v: f32) -> [u8; 2] {
    f16::from_f32(v).to_bits().to_le_bytes()
}

/// A small but complete file: metadata of every type, an F32, a Q8_0 and a Q4_1 tensor.
fn sample() -> Writer {
    let mut q8 = h(0.5).to_vec();
    q8.extend((0..32).map(|i| (i as i8 - 16) as u8));
    let mut q41 = [h(0.25), h(-1.0)].concat();
    q41.extend((0..16u8).map(|j| j | ((15 - j) << 4)));
    Writer::new()
        .kv("general.architecture", Value::String("llama".into()))
        .kv("u8", Value::U8(7))
        .kv("i8", Value::I8(-7))
        .kv("u16", Value::U16(700))
        .kv("i16", Value::I16(-700))
        .kv("u32", Value::U32(70_000))
        .kv("i32", Value::I32(-70_000))
        .kv("u64", Value::U64(1 << 40))
        .kv("i64", Value::I64(-(1 << 40)))
        .kv("f32", Value::F32(0.5))
        .kv("f64", Value::F64(-0.25))
        .kv("bool", Value::Bool(true))
        .kv("strings", str_array(&["a", "ü", ""]))
        .kv(
            "nested",
            Value::Array(vec![
                Value::Array(vec![Value::I32(1), Value::I32(2)]),
                Value::Array(vec![Value::I32(3)]),
            ]),
        )
        .f32_tensor("norm", &[3], &[1.0, -2.0, 3.5])
        .raw_tensor("q8", &[1, 32], GgmlType::Q8_0, q8)
        .raw_tensor("q41", &[1, 32], GgmlType::Q4_1, q41)
}

#[test]
fn reads_metadata_of_every_type() {
    let g = Gguf::from_bytes(sample().to_bytes()).unwrap();
    assert_eq!(g.version(), 3);
    assert_eq!(g.alignment(), 32);
    assert_eq!(g.data_offset() % 32, 0);
    assert_eq!(g.get_str("general.architecture").unwrap(), "llama");
    assert_eq!(g.get_u32("u8").unwrap(), 7);
    assert_eq!(g.metadata("i8"), Some(&Value::I8(-7)));
    assert_eq!(g.get_u32("u16").unwrap(), 700);
    assert_eq!(g.metadata("i16").and_then(Value::as_i64), Some(-700));
    assert_eq!(g.get_u32("u32").unwrap(), 70_000);
    assert_eq!(g.metadata("i32").and_then(Value::as_i64), Some(-70_000));
    assert_eq!(g.get_u64("u64").unwrap(), 1 << 40);
    assert!(g.get_u32("u64").is_err(), "does not fit in u32");
    assert!(g.get_u64("i64").is_err(), "negative");
    assert_eq!(g.get_f32("f32").unwrap(), 0.5);
    assert_eq!(g.get_f32("f64").unwrap(), -0.25);
    assert!(g.get_bool("bool").unwrap());
    assert_eq!(g.get_str_array("strings").unwrap(), vec!["a", "ü", ""]);
    let nested = g.metadata("nested").and_then(Value::as_array).unwrap();
    assert_eq!(nested[0], Value::Array(vec![Value::I32(1), Value::I32(2)]));
    assert_eq!(nested[1], Value::Array(vec![Value::I32(3)]));
    assert_eq!(g.metadata_iter().count(), 14);
    let err = g.get_u32("missing").unwrap_err().to_string();
    assert_eq!(err, "gguf metadata missing: missing");
    let err = g.get_str("u8").unwrap_err().to_string();
    assert_eq!(err, "gguf metadata u8: expected string, found u8");
}

#[test]
fn dequantizes_tensors_through_the_file() {
    let g = Gguf::from_bytes(sample().to_bytes()).unwrap();
    let infos = g.tensor_infos();
    assert_eq!(infos.len(), 3);
    assert_eq!(infos[1].dims, vec![1, 32]);
    assert_eq!(infos[1].n_bytes, 34);
    assert_eq!(infos[2].n_bytes, 20);
    assert!(
        infos
            .iter()
            .all(|t| (t.offset - g.data_offset()).is_multiple_of(32))
    );
    let norm = g.tensor_f32("norm").unwrap();
    assert_eq!((norm.dims, norm.values), (vec![3], vec![1.0, -2.0, 3.5]));
    let q8 = g.tensor_f32("q8").unwrap();
    assert_eq!(q8.values[0], -8.0);
    assert_eq!(q8.values[31], 7.5);
    let q41 = g.tensor_f32("q41").unwrap();
    assert_eq!(q41.dims, vec![1, 32]);
    assert_eq!(q41.values[3], 0.25 * 3.0 - 1.0);
    assert_eq!(q41.values[16 + 3], 0.25 * 12.0 - 1.0);
    assert!(matches!(
        g.tensor_f32("nope"),
        Err(Error::MissingTensor { .. })
    ));
}

#[test]
fn reads_version_2_and_custom_alignment() {
    let mut w = sample().kv("general.alignment", Value::U32(64));
    w.version = 2;
    w.alignment = 64;
    let g = Gguf::from_bytes(w.to_bytes()).unwrap();
    assert_eq!((g.version(), g.alignment()), (2, 64));
    assert_eq!(g.data_offset() % 64, 0);
    assert_eq!(g.tensor_f32("norm").unwrap().values, vec![1.0, -2.0, 3.5]);
}

#[test]
fn rejects_bad_alignment_version_magic_and_endianness() {
    let w = sample().kv("general.alignment", Value::U32(48));
    assert!(Gguf::from_bytes(w.to_bytes()).is_err());
    for version in [1u32, 4, 3u32.swap_bytes()] {
        let mut w = sample();
        w.version = version;
        let err = Gguf::from_bytes(w.to_bytes()).unwrap_err().to_string();
        assert!(
            err.contains("version") || err.contains("big-endian"),
            "{err}"
        );
    }
    let mut bytes = sample().to_bytes();
    bytes[0] = b'X';
    let err = Gguf::from_bytes(bytes).unwrap_err().to_string();
    assert!(err.contains("bad magic"), "{err}");
}

#[test]
fn every_truncation_is_an_error() {
    let bytes = sample().to_bytes();
    assert!(Gguf::from_bytes(bytes.clone()).is_ok());
    for len in 0..bytes.len() {
        assert!(
            Gguf::from_bytes(bytes[..len].to_vec()).is_err(),
            "a file cut to {len} of {} bytes was accepted",
            bytes.len()
        );
    }
}

#[test]
fn corrupt_bytes_never_panic() {
    // Flip every byte of the header to a few values: errors are fine, panics are not, and
    // whatever parses must dequantize without panicking.
    let bytes = sample().to_bytes();
    let header_len = Gguf::from_bytes(bytes.clone()).unwrap().data_offset();
    for i in 0..header_len {
        for v in [0x00, 0x01, 0x7f, 0x80, 0xff] {
            let mut b = bytes.clone();
            b[i] = v;
            if let Ok(g) = Gguf::from_bytes(b) {
                for t in g.tensor_infos() {
                    let _ = g.tensor_f32(&t.name);
                }
            }
        }
    }
}

/// A header claiming `n_tensors` tensors and `n_kv` key/values, followed by `tail`.
fn header(n_tensors: u64, n_kv: u64, tail: &[u8]) -> Vec<u8> {
    let mut b = b"GGUF".to_vec();
    b.extend(3u32.to_le_bytes());
    b.extend(n_tensors.to_le_bytes());
    b.extend(n_kv.to_le_bytes());
    b.extend(tail);
    b
}

#[test]
fn huge_counts_fail_fast_without_allocating() {
    for (t, kv) in [
        (u64::MAX, 0),
        (0, u64::MAX),
        (limits::MAX_TENSOR_COUNT + 1, 0),
    ] {
        let err = Gguf::from_bytes(header(t, kv, &[0; 64])).unwrap_err();
        assert!(matches!(err, Error::Format { .. }), "{err}");
    }
    // A key of length u64::MAX.
    let mut key = u64::MAX.to_le_bytes().to_vec();
    key.extend([0; 32]);
    let err = Gguf::from_bytes(header(0, 1, &key)).unwrap_err();
    assert!(err.to_string().contains("exceeds the limit"), "{err}");
    // An array of u64::MAX strings.
    let mut kv = Vec::new();
    kv.extend(1u64.to_le_bytes());
    kv.push(b'k');
    kv.extend(9u32.to_le_bytes());
    kv.extend(8u32.to_le_bytes());
    kv.extend(u64::MAX.to_le_bytes());
    let err = Gguf::from_bytes(header(0, 1, &kv)).unwrap_err();
    assert!(err.to_string().contains("exceeds the limit"), "{err}");
    kv.extend([0; 32]);
    // At the array limit but without the bytes to back it.
    let mut kv = kv[..kv.len() - 40].to_vec();
    kv.extend(limits::MAX_ARRAY_LEN.to_le_bytes());
    let err = Gguf::from_bytes(header(0, 1, &kv)).unwrap_err();
    assert!(err.to_string().contains("truncated"), "{err}");
}

/// One key `a` holding an array of `n` u8s.
fn u8_array_file(n: u64) -> Vec<u8> {
    let mut kv = 1u64.to_le_bytes().to_vec();
    kv.push(b'a');
    kv.extend(9u32.to_le_bytes());
    kv.extend(0u32.to_le_bytes());
    kv.extend(n.to_le_bytes());
    kv.resize(kv.len() + n as usize, 1);
    kv.resize(kv.len().next_multiple_of(32) + 32, 0);
    header(0, 1, &kv)
}

#[test]
fn array_length_at_and_past_the_limit() {
    let g = Gguf::from_bytes(u8_array_file(limits::MAX_ARRAY_LEN)).unwrap();
    let a = g.metadata("a").and_then(Value::as_array).unwrap();
    assert_eq!(a.len() as u64, limits::MAX_ARRAY_LEN);
    let err = Gguf::from_bytes(u8_array_file(limits::MAX_ARRAY_LEN + 1)).unwrap_err();
    assert!(err.to_string().contains("exceeds the limit"), "{err}");
}

#[test]
fn total_array_elements_at_and_past_the_limit() {
    // Two arrays at the per-array limit use the whole budget; one more element is refused.
    let arr = |n: usize| Value::Array(vec![Value::U8(0); n]);
    let full = limits::MAX_ARRAY_LEN as usize;
    assert_eq!(2 * limits::MAX_ARRAY_LEN, limits::MAX_TOTAL_ARRAY_ELEMENTS);
    let w = Writer::new().kv("a", arr(full)).kv("b", arr(full));
    assert!(Gguf::from_bytes(w.to_bytes()).is_ok());
    let w = w.kv("c", arr(1));
    let err = Gguf::from_bytes(w.to_bytes()).unwrap_err();
    assert!(
        err.to_string().contains("array elements in the file"),
        "{err}"
    );
}

#[test]
fn tensor_infos_are_checked() {
    // More than 4 dims.
    let w = Writer::new().f32_tensor("t", &[1, 1, 1, 1, 2], &[0.0, 1.0]);
    let err = Gguf::from_bytes(w.to_bytes()).unwrap_err().to_string();
    assert!(err.contains("dims exceed"), "{err}");
    // Exactly 4 dims is fine.
    let w = Writer::new().f32_tensor("t", &[1, 1, 1, 2], &[0.0, 1.0]);
    assert_eq!(
        Gguf::from_bytes(w.to_bytes()).unwrap().tensor_infos()[0].dims,
        vec![1, 1, 1, 2]
    );
    // Data past the end of the file: claim 4 values but store 2.
    let w = Writer::new().raw_tensor("t", &[4], GgmlType::F32, vec![0; 8]);
    let err = Gguf::from_bytes(w.to_bytes()).unwrap_err().to_string();
    assert!(err.contains("past the end"), "{err}");
    // Dims whose product overflows.
    let w = Writer::new().raw_tensor("t", &[usize::MAX, 4], GgmlType::F32, vec![]);
    assert!(Gguf::from_bytes(w.to_bytes()).is_err());
    // A quantized row that is not whole blocks.
    let w = Writer::new().raw_tensor("t", &[16], GgmlType::Q8_0, vec![0; 34]);
    let err = Gguf::from_bytes(w.to_bytes()).unwrap_err().to_string();
    assert!(err.contains("block size"), "{err}");
    // An unknown type number.
    let w = Writer::new().raw_tensor("t", &[1], GgmlType(4), vec![0; 4]);
    let err = Gguf::from_bytes(w.to_bytes()).unwrap_err().to_string();
    assert!(err.contains("unknown ggml type 4"), "{err}");
    // Duplicate names.
    let w = Writer::new()
        .f32_tensor("t", &[1], &[0.0])
        .f32_tensor("t", &[1], &[0.0]);
    assert!(Gguf::from_bytes(w.to_bytes()).is_err());
    // Duplicate keys.
    let w = Writer::new().kv("k", Value::U8(1)).kv("k", Value::U8(2));
    assert!(Gguf::from_bytes(w.to_bytes()).is_err());
}

#[test]
fn unsupported_types_parse_but_do_not_dequantize() {
    let w = Writer::new().raw_tensor("t", &[256], GgmlType(14), vec![0; 210]);
    let g = Gguf::from_bytes(w.to_bytes()).unwrap();
    assert_eq!(g.tensor_bytes("t").unwrap().len(), 210);
    let err = g.tensor_f32("t").unwrap_err();
    assert!(matches!(err, Error::UnsupportedTensorType { .. }));
    assert_eq!(err.to_string(), "unsupported tensor type Q6_K for tensor t");
}

#[test]
fn sha256_of_file_and_bytes_agree() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.gguf");
    std::fs::write(&path, sample().to_bytes()).unwrap();
    let g = Gguf::open(&path).unwrap();
    assert_eq!(g.path(), Some(path.as_path()));
    assert_eq!(g.sha256(), sha256_file(&path).unwrap());
    std::fs::write(&path, b"abc").unwrap();
    assert_eq!(
        sha256_file(&path).unwrap(),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    assert!(matches!(
        Gguf::open(dir.path().join("missing")),
        Err(Error::Io { .. })
    ));
}

/// A two-layer Llama in GGUF form with F32 weights whose values name their tensor.
pub(crate) fn tiny_llama(tied: bool) -> Writer {
    let (hidden, ffn, heads, kv_heads, vocab) = (8usize, 12usize, 2u32, 1u32, 5usize);
    let head_dim = hidden / heads as usize;
    let mut w = Writer::new()
        .kv("general.architecture", Value::String("llama".into()))
        .kv("llama.block_count", Value::U32(2))
        .kv("llama.embedding_length", Value::U32(hidden as u32))
        .kv("llama.feed_forward_length", Value::U32(ffn as u32))
        .kv("llama.attention.head_count", Value::U32(heads))
        .kv("llama.attention.head_count_kv", Value::U32(kv_heads))
        .kv("llama.rope.freq_base", Value::F32(100_000.0))
        .kv("llama.attention.layer_norm_rms_epsilon", Value::F32(1e-5))
        .kv("llama.context_length", Value::U32(64))
        .kv("llama.rope.dimension_count", Value::U32(head_dim as u32))
        .kv(
            "tokenizer.ggml.tokens",
            str_array(&["a", "b", "c", "d", "e"]),
        )
        .kv("tokenizer.ggml.bos_token_id", Value::U32(1))
        .kv("tokenizer.ggml.eos_token_id", Value::U32(2));
    let fill = |n: usize, tag: f32| (0..n).map(|i| tag + i as f32 * 1e-3).collect::<Vec<_>>();
    w = w
        .f32_tensor(
            "token_embd.weight",
            &[vocab, hidden],
            &fill(vocab * hidden, 100.0),
        )
        .f32_tensor("output_norm.weight", &[hidden], &fill(hidden, 200.0));
    if !tied {
        w = w.f32_tensor(
            "output.weight",
            &[vocab, hidden],
            &fill(vocab * hidden, 300.0),
        );
    }
    let kv_dim = head_dim * kv_heads as usize;
    for l in 0..2 {
        let t = 1000.0 * (l + 1) as f32;
        for (name, dims) in [
            ("attn_q", [hidden, hidden]),
            ("attn_k", [kv_dim, hidden]),
            ("attn_v", [kv_dim, hidden]),
            ("attn_output", [hidden, hidden]),
            ("ffn_gate", [ffn, hidden]),
            ("ffn_up", [ffn, hidden]),
            ("ffn_down", [hidden, ffn]),
        ] {
            let n = dims[0] * dims[1];
            w = w.f32_tensor(&format!("blk.{l}.{name}.weight"), &dims, &fill(n, t));
        }
        w = w
            .f32_tensor(
                &format!("blk.{l}.attn_norm.weight"),
                &[hidden],
                &fill(hidden, t + 1.0),
            )
            .f32_tensor(
                &format!("blk.{l}.ffn_norm.weight"),
                &[hidden],
                &fill(hidden, t + 2.0),
            );
    }
    w
}

#[test]
fn llama_hparams_and_weight_source() {
    let g = Gguf::from_bytes(tiny_llama(false).to_bytes()).unwrap();
    let hp = LlamaHparams::from_gguf(&g).unwrap();
    assert_eq!(
        (
            hp.num_layers,
            hp.hidden_size,
            hp.intermediate_size,
            hp.num_heads,
            hp.num_kv_heads
        ),
        (2, 8, 12, 2, 1)
    );
    assert_eq!(
        (hp.head_dim, hp.vocab_size, hp.max_position_embeddings),
        (4, 5, 64)
    );
    assert_eq!((hp.rope_theta, hp.rms_norm_eps), (100_000.0, 1e-5));
    assert_eq!((hp.bos_token_id, hp.eos_token_id), (Some(1), Some(2)));
    assert!(!hp.tie_word_embeddings);
    let src = GgufWeights::new(g).unwrap();
    assert_eq!(src.file_rope_layout(), crate::RopeLayout::Interleaved);
    assert_eq!(src.model_id().unwrap().len(), 64);
    let k = src
        .tensor(&names::layer(1, "self_attn.k_proj.weight"))
        .unwrap();
    assert_eq!((k.dims.as_slice(), k.values[0]), (&[4usize, 8][..], 2000.0));
    assert_eq!(src.tensor(names::LM_HEAD).unwrap().values[0], 300.0);
    for l in 0..2 {
        for suffix in names::LAYER_SUFFIXES {
            assert!(src.tensor(&names::layer(l, suffix)).is_ok(), "{l} {suffix}");
        }
    }
    assert!(matches!(
        src.tensor(&names::layer(2, "self_attn.q_proj.weight")),
        Err(Error::MissingTensor { .. })
    ));
    assert!(matches!(
        src.tensor("bogus"),
        Err(Error::MissingTensor { .. })
    ));
}

#[test]
fn tied_head_is_the_embedding() {
    let src = GgufWeights::new(Gguf::from_bytes(tiny_llama(true).to_bytes()).unwrap()).unwrap();
    assert!(src.hparams().tie_word_embeddings);
    assert_eq!(
        src.tensor(names::LM_HEAD).unwrap(),
        src.tensor(names::EMBED_TOKENS).unwrap()
    );
}

#[test]
fn hparams_reject_other_architectures_and_missing_keys() {
    let mut w = tiny_llama(true);
    w.kvs.retain(|(k, _)| k != "general.architecture");
    let g = Gguf::from_bytes(
        w.kv("general.architecture", Value::String("qwen2".into()))
            .to_bytes(),
    )
    .unwrap();
    let err = LlamaHparams::from_gguf(&g).unwrap_err().to_string();
    assert!(err.contains("qwen2"), "{err}");
    let mut w = tiny_llama(true);
    w.kvs.retain(|(k, _)| k != "llama.block_count");
    let g = Gguf::from_bytes(w.to_bytes()).unwrap();
    let err = LlamaHparams::from_gguf(&g).unwrap_err().to_string();
    assert_eq!(err, "gguf metadata llama.block_count: missing");
    let mut w = tiny_llama(true);
    w.kvs.retain(|(k, _)| k != "llama.attention.head_count_kv");
    let w = w.kv("llama.attention.head_count_kv", Value::U32(3));
    let g = Gguf::from_bytes(w.to_bytes()).unwrap();
    assert!(
        LlamaHparams::from_gguf(&g).is_err(),
        "2 heads over 3 kv heads"
    );
}

/// Found by the `gguf` fuzz target: `llama.block_count` 4,128,769 in a 16 KiB file had the
/// loader reserve 3.8 GB for blocks before it found the first one missing.
#[test]
fn block_count_beyond_the_tensors_is_rejected() {
    let with_blocks = |n: u32| {
        let mut w = tiny_llama(true);
        w.kvs.retain(|(k, _)| k != "llama.block_count");
        Gguf::from_bytes(w.kv("llama.block_count", Value::U32(n)).to_bytes()).unwrap()
    };
    // 2 blocks of 9 tensors and 2 global tensors: 2 blocks fit, 3 do not.
    assert_eq!(with_blocks(2).tensor_infos().len(), 20);
    assert_eq!(
        LlamaHparams::from_gguf(&with_blocks(2)).unwrap().num_layers,
        2
    );
    for n in [3, 0x003f_0001, u32::MAX] {
        let err = LlamaHparams::from_gguf(&with_blocks(n))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            format!(
                "gguf metadata llama.block_count: {n} blocks need {} tensors, the file has 20",
                n as usize * 9
            )
        );
    }
}

#[test]
fn name_map_round_trips() {
    assert_eq!(
        gguf_to_canonical("token_embd.weight").as_deref(),
        Some(names::EMBED_TOKENS)
    );
    assert_eq!(
        gguf_to_canonical("blk.29.ffn_down.weight").as_deref(),
        Some("model.layers.29.mlp.down_proj.weight")
    );
    assert_eq!(
        canonical_to_gguf("model.layers.3.post_attention_layernorm.weight").as_deref(),
        Some("blk.3.ffn_norm.weight")
    );
    for bad in [
        "blk.x.attn_q.weight",
        "blk..attn_q.weight",
        "blk.1.rope_freqs",
        "rope_freqs.weight",
    ] {
        assert_eq!(gguf_to_canonical(bad), None, "{bad}");
    }
    for l in [0, 7, 29] {
        for (g, _) in super::llama::LAYER_NAMES {
            let name = format!("blk.{l}.{g}");
            let canonical = gguf_to_canonical(&name).unwrap();
            assert_eq!(canonical_to_gguf(&canonical), Some(name));
        }
    }
}

#[test]
fn real_model_metadata_and_embedding() {
    let Some(g) = real_model() else { return };
    let hp = LlamaHparams::from_gguf(g).unwrap();
    assert_eq!(hp.num_layers, 30);
    assert_eq!(hp.hidden_size, 576);
    assert_eq!(hp.intermediate_size, 1536);
    assert_eq!((hp.num_heads, hp.num_kv_heads, hp.head_dim), (9, 3, 64));
    assert_eq!(hp.vocab_size, 49152);
    assert_eq!(hp.rope_theta, 100_000.0);
    assert_eq!(hp.rms_norm_eps, 1e-5);
    assert_eq!(hp.max_position_embeddings, 8192);
    assert!(hp.tie_word_embeddings);
    assert_eq!((hp.bos_token_id, hp.eos_token_id), (Some(1), Some(2)));
    let embd = g.tensor_info("token_embd.weight").unwrap();
    assert_eq!(embd.ggml_type, GgmlType::Q8_0);
    assert_eq!(
        g.tensor_info("blk.0.attn_q.weight").unwrap().ggml_type,
        GgmlType::Q4_1
    );
    assert_eq!(
        g.tensor_info("blk.0.attn_norm.weight").unwrap().ggml_type,
        GgmlType::F32
    );
    let t = g.tensor_f32("token_embd.weight").unwrap();
    assert_eq!(t.dims, vec![49152, 576]);
    assert!(t.values.iter().all(|v| v.is_finite()));
    let rms = (t.values.iter().map(|v| v * v).sum::<f32>() / t.len() as f32).sqrt();
    assert!(rms > 1e-3 && rms < 10.0, "embedding rms {rms}");
    // 3 + 30·9 tensors, all of them mapped to canonical names.
    assert_eq!(g.tensor_infos().len(), 2 + 30 * 9);
    assert!(
        g.tensor_infos()
            .iter()
            .all(|t| gguf_to_canonical(&t.name).is_some())
    );
    assert_eq!(
        g.sha256(),
        "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
    );
}

/// Dequantized tensors agree with tools/reference_forward.py's independent numpy decoder (values
/// stored in tests/data/reference_logits.json).
#[test]
fn real_model_dequantization_matches_the_python_reference() {
    let Some(g) = real_model() else { return };
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/reference_logits.json"
    );
    let reference: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert_eq!(reference["model_sha256"].as_str(), Some(g.sha256()));
    let checks = reference["tensors"].as_object().unwrap();
    assert_eq!(checks.len(), 5);
    for (name, check) in checks {
        let t = g.tensor_f32(name).unwrap();
        let dims: Vec<usize> = check["dims"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap() as usize)
            .collect();
        assert_eq!(t.dims, dims, "{name}");
        for (i, v) in check["first8"].as_array().unwrap().iter().enumerate() {
            let v = v.as_f64().unwrap();
            assert!(
                (f64::from(t.values[i]) - v).abs() < 1e-6,
                "{name}[{i}]: {} vs {v}",
                t.values[i]
            );
        }
        let abs_sum: f64 = t.values.iter().map(|v| f64::from(v.abs())).sum();
        let expected = check["abs_sum"].as_f64().unwrap();
        assert!(
            (abs_sum - expected).abs() < 1e-6 * expected + 1e-2,
            "{name}: {abs_sum} vs {expected}"
        );
    }
}
