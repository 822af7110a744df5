//! `hearth export` / `hearth import`: PEFT round trips, refusals, and adapters that do not fit.

use burn::tensor::Device;
use hearth_models::{LlamaConfig, LoraConfig, Target, peft};
use hearth_node::local;

use crate::common::{member, personal_weights, tiny};

/// An exported adapter's content: the config file, the safetensors header as JSON (its key order
/// is not fixed) and the tensor bytes.
fn files(dir: &std::path::Path) -> (Vec<u8>, serde_json::Value, Vec<u8>) {
    let config = std::fs::read(dir.join(peft::CONFIG_FILE)).unwrap();
    let weights = std::fs::read(dir.join(peft::WEIGHTS_FILE)).unwrap();
    let n = u64::from_le_bytes(weights[..8].try_into().unwrap()) as usize;
    let header = serde_json::from_slice(&weights[8..8 + n]).unwrap();
    (config, header, weights[8 + n..].to_vec())
}

#[test]
fn personal_adapter_export_import_round_trip_is_identical() {
    let m = member(true);
    let original = local::load_personal(&m.open()).unwrap().unwrap();
    let d1 = m.dir.path().join("out1");
    let (ok, out, err) = m.run(&[
        "export",
        "--adapter",
        "personal",
        "--out",
        d1.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    assert!(
        out.contains("wrote the personal adapter") && out.contains("rank 4"),
        "{out}"
    );
    assert!(err.contains("private adapter"), "{err}");
    // What a PEFT reader sees is the adapter itself.
    assert_eq!(peft::load(&d1, &tiny()).unwrap(), original);

    // Importing over an existing personal adapter needs --force.
    let (ok, _, err) = m.run(&["import", d1.to_str().unwrap()]);
    assert!(!ok && err.contains("--force"), "{err}");
    // Replace it with something else, then import the export back.
    local::save_personal(&m.open(), &personal_weights(&m.model, -0.5)).unwrap();
    let (ok, out, err) = m.run(&["import", d1.to_str().unwrap(), "--force"]);
    assert!(ok, "{err}");
    assert!(out.contains("replaced the previous one"), "{out}");
    assert_eq!(
        local::load_personal(&m.open()).unwrap().unwrap(),
        original,
        "identical after the round trip"
    );

    // Exporting again writes the same adapter (same config, header and tensor bytes); an
    // existing export is not overwritten silently.
    let d2 = m.dir.path().join("out2");
    assert!(
        m.run(&[
            "export",
            "--adapter",
            "personal",
            "--out",
            d2.to_str().unwrap()
        ])
        .0
    );
    assert!(
        files(&d1) == files(&d2),
        "the second export differs from the first"
    );
    let (ok, _, err) = m.run(&[
        "export",
        "--adapter",
        "personal",
        "--out",
        d2.to_str().unwrap(),
    ]);
    assert!(!ok && err.contains("already holds an adapter"), "{err}");
    assert!(
        m.run(&[
            "export",
            "--adapter",
            "personal",
            "--out",
            d2.to_str().unwrap(),
            "--force"
        ])
        .0
    );
}

#[test]
fn community_adapter_exports_in_peft_layout_and_imports_as_personal() {
    let m = member(false);
    let (ok, _, err) = m.run(&["export", "--adapter", "personal", "--out", "unused"]);
    assert!(!ok && err.contains("no personal adapter yet"), "{err}");
    let dir = m.dir.path().join("community");
    let (ok, out, err) = m.run(&["export", "--out", dir.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(out.contains("community adapter (round 0)"), "{out}");
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join(peft::CONFIG_FILE)).unwrap()).unwrap();
    assert_eq!(config["peft_type"], "LORA");
    assert_eq!(config["r"], 2);
    assert_eq!(config["base_model_name_or_path"], "tiny.gguf");
    let weights = peft::load(&dir, &tiny()).unwrap();
    assert!(weights.config.ffa, "the community adapter is FFA-LoRA");
    assert!(
        weights.flat_b().iter().all(|&b| b == 0.0),
        "genesis: B is zero"
    );

    let (ok, _, err) = m.run(&["import", dir.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert_eq!(local::load_personal(&m.open()).unwrap().unwrap(), weights);
    let (ok, out, _) = m.run(&[
        "chat",
        "--prompt",
        "hi",
        "--max-tokens",
        "2",
        "--stack",
        "personal",
    ]);
    assert!(ok, "{out}");
}

#[test]
fn an_adapter_for_another_base_model_is_refused_with_the_reason() {
    let m = member(true);
    let before = local::load_personal(&m.open()).unwrap().unwrap();
    // Same depth, narrower widths: a different base model.
    let other_config = LlamaConfig::new(320, 32, 64, 2, 2, 1, 16);
    let mut other = hearth_models::Llama::init_random(&other_config, 1, &Device::flex()).unwrap();
    let slot = other
        .add_adapter(LoraConfig::new(2, 4.0, vec![Target::Q, Target::V]))
        .unwrap();
    let w = other.adapter_weights(slot).unwrap();
    let dir = m.dir.path().join("other");
    peft::save(&dir, &w, &other_config, "someone/other-model").unwrap();

    let (ok, _, err) = m.run(&["import", dir.to_str().unwrap(), "--force"]);
    assert!(!ok);
    assert!(
        err.contains("does not fit the community's base model tiny.gguf"),
        "{err}"
    );
    assert!(err.contains("made for someone/other-model"), "{err}");
    assert!(err.contains("hidden 64"), "{err}");
    assert!(err.contains("nothing was changed"), "{err}");
    assert!(
        !err.contains("panicked") && !err.contains("backtrace"),
        "{err}"
    );
    assert_eq!(local::load_personal(&m.open()).unwrap().unwrap(), before);

    let (ok, _, err) = m.run(&["import", m.dir.path().to_str().unwrap()]);
    assert!(!ok && err.contains("holds no adapter_config.json"), "{err}");
}
