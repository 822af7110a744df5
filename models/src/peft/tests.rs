//! PEFT export/import tests on tiny random models.

use burn::tensor::{Device, Int, Tensor, TensorData as BurnData};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use super::*;
use crate::llama::Llama;

fn model_with_adapter(targets: Vec<Target>, ffa: bool) -> (Llama, usize) {
    let mut model = Llama::init_random(&LlamaConfig::tiny(40), 3, &Device::flex()).unwrap();
    let slot = model
        .add_adapter(LoraConfig::new(4, 8.0, targets).with_seed(77).with_ffa(ffa))
        .unwrap();
    let mut w = model.adapter_weights(slot).unwrap();
    let flat = crate::prng::Prng::new(5).fill_uniform(w.b_len(), 0.3);
    w.set_flat_b(&flat).unwrap();
    model.set_adapter_weights(slot, &w).unwrap();
    (model, slot)
}

fn logits(model: &Llama) -> Vec<f32> {
    let ids =
        Tensor::<2, Int>::from_data(BurnData::new(vec![1i64, 5, 9, 2], [1, 4]), &Device::flex());
    crate::llama::to_host(model.forward(ids)).unwrap()
}

#[test]
fn save_load_round_trip_is_identical() {
    let (model, slot) =
        model_with_adapter(vec![Target::Q, Target::K, Target::V, Target::Down], true);
    let weights = model.adapter_weights(slot).unwrap();
    let dir = tempfile::tempdir().unwrap();
    save(
        dir.path(),
        &weights,
        model.config(),
        "HuggingFaceTB/SmolLM2-135M-Instruct",
    )
    .unwrap();
    let loaded = load(dir.path(), model.config()).unwrap();
    assert_eq!(loaded, weights);

    // A fresh model with the loaded adapter computes the same logits.
    let mut fresh = Llama::init_random(&LlamaConfig::tiny(40), 3, &Device::flex()).unwrap();
    let s = fresh.add_adapter(loaded.config.clone()).unwrap();
    fresh.set_adapter_weights(s, &loaded).unwrap();
    assert_eq!(logits(&fresh), logits(&model));
}

#[test]
fn export_uses_peft_names_layouts_and_rotate_half_for_q_and_k() {
    let (model, slot) = model_with_adapter(vec![Target::Q, Target::K, Target::V], false);
    let config = model.config().clone();
    let weights = model.adapter_weights(slot).unwrap();
    let (json, bytes) = encode(&weights, &config, "base/model").unwrap();

    let v: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["peft_type"], "LORA");
    assert_eq!(v["r"], 4);
    assert_eq!(v["lora_alpha"], 8);
    assert_eq!(v["target_modules"], json!(["q_proj", "k_proj", "v_proj"]));
    assert_eq!(v["base_model_name_or_path"], "base/model");
    assert_eq!(v["task_type"], "CAUSAL_LM");

    let st = SafeTensors::deserialize(&bytes).unwrap();
    assert_eq!(st.len(), config.layers * 3 * 2);
    let read = |name: &str| {
        let t = st.tensor(name).unwrap();
        (t.shape().to_vec(), to_f32(t.dtype(), t.data()).unwrap())
    };
    let ours = |target, factor| {
        weights
            .get(&LoraKey {
                layer: 1,
                target,
                factor,
            })
            .unwrap()
            .clone()
    };
    // A: [r, in], the transpose of ours, never permuted.
    let (dims, a) = read("base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight");
    assert_eq!(dims, [4, config.hidden]);
    assert_eq!(
        a,
        transpose(&ours(Target::Q, Factor::A).values, config.hidden, 4)
    );
    // V's B: [out, r], the transpose of ours.
    let (dims, b) = read("base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight");
    assert_eq!(dims, [config.kv_dim(), 4]);
    assert_eq!(
        b,
        transpose(&ours(Target::V, Factor::B).values, 4, config.kv_dim())
    );
    // Q's and K's B rows are in the rotate-half order of a Hugging Face base.
    for (target, heads, out) in [
        (Target::Q, config.heads, config.q_dim()),
        (Target::K, config.kv_heads, config.kv_dim()),
    ] {
        let name = format!(
            "base_model.model.model.layers.1.{}.lora_B.weight",
            target.module_path()
        );
        let (dims, b) = read(&name);
        let plain = TensorData::new(
            vec![out, 4],
            transpose(&ours(target, Factor::B).values, 4, out),
        )
        .unwrap();
        let expected = permute_interleaved_to_rotate_half(&plain, heads).unwrap();
        assert_eq!(dims, [out, 4]);
        assert_eq!(b, expected.values);
        assert_ne!(b, plain.values);
        // Row 1 of the interleaved layout (pair 0, second half) is row head_dim/2 of rotate-half.
        let half = config.head_dim / 2;
        assert_eq!(b[half * 4..half * 4 + 4], plain.values[4..8]);
    }
}

#[test]
fn imports_f16_and_rslora() {
    let (model, slot) = model_with_adapter(vec![Target::V], false);
    let config = model.config().clone();
    let weights = model.adapter_weights(slot).unwrap();
    let (json, bytes) = encode(&weights, &config, "b").unwrap();
    // Re-encode every tensor as F16.
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let halves: Vec<(String, Vec<usize>, Vec<u8>)> = st
        .iter()
        .map(|(n, t)| {
            let v = to_f32(t.dtype(), t.data()).unwrap();
            let b = v
                .iter()
                .flat_map(|x| half::f16::from_f32(*x).to_le_bytes())
                .collect();
            (n.to_string(), t.shape().to_vec(), b)
        })
        .collect();
    let views: Vec<(String, TensorView<'_>)> = halves
        .iter()
        .map(|(n, s, b)| {
            (
                n.clone(),
                TensorView::new(Dtype::F16, s.clone(), b).unwrap(),
            )
        })
        .collect();
    let f16_bytes = safetensors::serialize(views, None).unwrap();
    let json = json.replace("\"use_rslora\": false", "\"use_rslora\": true");
    let back = decode(&json, &f16_bytes, &config).unwrap();
    // rsLoRA: alpha/√r becomes alpha'/r with alpha' = alpha·√r.
    assert!((back.config.alpha - 8.0 * 2.0).abs() < 1e-12);
    assert!(!back.config.ffa);
    for (x, y) in back.flat_b().iter().zip(weights.flat_b()) {
        assert!((x - y).abs() <= 1e-3 * y.abs().max(1e-2));
    }
}

#[test]
fn rejects_unsupported_configs() {
    let good = config_json(&LoraConfig::new(8, 16.0, vec![Target::Q, Target::V]), "b");
    let parsed = parse_config(&good).unwrap();
    assert_eq!((parsed.rank, parsed.alpha), (8, 16.0));
    for (from, to) in [
        ("\"peft_type\": \"LORA\"", "\"peft_type\": \"IA3\""),
        ("\"use_dora\": false", "\"use_dora\": true"),
        ("\"rank_pattern\": {}", "\"rank_pattern\": {\"q_proj\": 4}"),
        (
            "\"layers_to_transform\": null",
            "\"layers_to_transform\": [0]",
        ),
        ("\"bias\": \"none\"", "\"bias\": \"all\""),
        ("\"q_proj\"", "\"lm_head\""),
        ("\"r\": 8", "\"r\": 0"),
        ("\"r\": 8", "\"r\": -8"),
        ("\"lora_alpha\": 16", "\"lora_alpha\": \"x\""),
    ] {
        assert!(good.contains(from), "{from}");
        assert!(
            parse_config(&good.replace(from, to)).is_err(),
            "{to} accepted"
        );
    }
    assert!(parse_config("not json").is_err());
    assert!(
        parse_config(
            "{\"peft_type\": \"LORA\", \"r\": 8, \"lora_alpha\": 8, \"target_modules\": \"q_proj\"}"
        )
        .is_err()
    );
}

#[test]
fn rejects_mismatched_tensors() {
    let (model, slot) = model_with_adapter(vec![Target::V], false);
    let config = model.config().clone();
    let weights = model.adapter_weights(slot).unwrap();
    let (json, bytes) = encode(&weights, &config, "b").unwrap();
    // Another model shape.
    let wider = LlamaConfig {
        hidden: 32,
        ..LlamaConfig::tiny(40)
    };
    assert!(decode(&json, &bytes, &wider).is_err());
    let deeper = LlamaConfig {
        layers: 3,
        ..LlamaConfig::tiny(40)
    };
    assert!(decode(&json, &bytes, &deeper).is_err());
    // A config claiming another rank or more targets.
    assert!(decode(&json.replace("\"r\": 4", "\"r\": 2"), &bytes, &config).is_err());
    assert!(
        decode(
            &json.replace("\"v_proj\"", "\"v_proj\", \"q_proj\""),
            &bytes,
            &config
        )
        .is_err()
    );
    // Garbage and truncated tensor bytes never panic.
    assert!(decode(&json, b"garbage", &config).is_err());
    for cut in [0, 8, 20, bytes.len() / 2, bytes.len() - 1] {
        assert!(decode(&json, &bytes[..cut], &config).is_err());
    }
    // An integer tensor is refused.
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let views: Vec<(String, TensorView<'_>)> = st
        .iter()
        .map(|(n, t)| {
            let dtype = if n.ends_with("lora_A.weight") {
                Dtype::I32
            } else {
                t.dtype()
            };
            (
                n.to_string(),
                TensorView::new(dtype, t.shape().to_vec(), t.data()).unwrap(),
            )
        })
        .collect();
    let ints = safetensors::serialize(views, None).unwrap();
    assert!(decode(&json, &ints, &config).is_err());
}

#[test]
fn names_parse_and_sizes_are_limited() {
    for target in Target::ALL {
        for factor in [Factor::A, Factor::B] {
            let key = LoraKey {
                layer: 12,
                target,
                factor,
            };
            assert_eq!(parse_tensor_name(&tensor_name(&key)), Some(key));
        }
    }
    for bad in [
        "base_model.model.model.layers.x.self_attn.q_proj.lora_A.weight",
        "base_model.model.model.layers.1.self_attn.q_proj.lora_C.weight",
        "base_model.model.model.layers.1.attn.q_proj.lora_A.weight",
        "model.layers.1.self_attn.q_proj.lora_A.weight",
        "base_model.model.model.layers.99999999999.self_attn.q_proj.lora_A.weight",
    ] {
        assert_eq!(parse_tensor_name(bad), None, "{bad}");
    }
    let p = Path::new("x");
    assert!(check_size(p, MAX_WEIGHTS_BYTES, MAX_WEIGHTS_BYTES).is_ok());
    assert!(check_size(p, MAX_WEIGHTS_BYTES + 1, MAX_WEIGHTS_BYTES).is_err());
    // An oversized config file on disk is refused before it is read.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join(CONFIG_FILE),
        vec![b' '; MAX_CONFIG_BYTES as usize + 1],
    )
    .unwrap();
    assert!(load(dir.path(), &LlamaConfig::tiny(40)).is_err());
    assert!(load(&dir.path().join("missing"), &LlamaConfig::tiny(40)).is_err());
}

#[test]
fn an_export_is_the_same_bytes_every_time() {
    let (model, slot) = model_with_adapter(vec![Target::Q, Target::V], true);
    let weights = model.adapter_weights(slot).unwrap();
    let config = model.config().clone();
    let (json, first) = encode(&weights, &config, "b").unwrap();
    // The metadata map has three keys: unsorted, 20 encodings would almost surely differ.
    for _ in 0..20 {
        let (j, bytes) = encode(&weights, &config, "b").unwrap();
        assert_eq!((&j, &bytes), (&json, &first));
    }
    let header_len = u64::from_le_bytes(first[..8].try_into().unwrap()) as usize;
    let header = std::str::from_utf8(&first[8..8 + header_len]).unwrap();
    assert!(
        header.starts_with(r#"{"__metadata__":{"format":"pt","hearth.ffa":"true","hearth.seed":"#),
        "{header}"
    );
    // It still decodes to the same adapter.
    assert_eq!(decode(&json, &first, &config).unwrap(), weights);
}
