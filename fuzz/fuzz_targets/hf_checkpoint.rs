//! Feeds arbitrary bytes to the Hugging Face checkpoint loader: the input is split into
//! `config.json` and `model.safetensors` (see `hearth_fuzz::split2`), written to a scratch
//! folder, opened, every tensor converted, and the model built from the weights.
#![no_main]

use burn::tensor::Device;
use hearth_fuzz::{scratch_dir, split2, write};
use hearth_models::{HfCheckpoint, Llama, LlamaConfig, WeightSource, names};
use hearth_node::model::DEFAULT_CONTEXT;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((config, tensors)) = split2(data) else {
        return;
    };
    let dir = scratch_dir("hf_checkpoint");
    write(&dir.join("config.json"), config);
    write(&dir.join("model.safetensors"), tensors);
    let Ok(checkpoint) = HfCheckpoint::open(dir) else {
        return;
    };
    for name in checkpoint.tensor_names() {
        let _ = checkpoint.raw_tensor(name);
        let _ = checkpoint.tensor(name);
    }
    let _ = checkpoint.tensor(names::LM_HEAD);
    // As the node loads a base model (`hearth_node::model::load_base`): at most its default
    // context, so the RoPE tables stay small whatever context the file claims.
    if let Ok(config) = LlamaConfig::from_hparams(checkpoint.hparams()) {
        let context = config.max_seq_len.min(DEFAULT_CONTEXT);
        let _ = Llama::load_with(
            &checkpoint,
            &config.with_max_seq_len(context),
            &Device::flex(),
        );
    }
});
