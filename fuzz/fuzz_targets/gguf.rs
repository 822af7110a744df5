//! Feeds arbitrary bytes to the GGUF reader as a model file: header, metadata, tensor infos,
//! every tensor dequantized, the Llama hyper-parameters, and the model built from the weights.
//! Every step must return an error or a value, never panic or allocate beyond the input's size.
#![no_main]

use burn::tensor::Device;
use hearth_models::{Gguf, GgufWeights, Llama, LlamaConfig, WeightSource};
use hearth_node::model::DEFAULT_CONTEXT;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(gguf) = Gguf::from_bytes(data.to_vec()) else {
        return;
    };
    for info in gguf.tensor_infos() {
        let _ = gguf.tensor_f32(&info.name);
    }
    for (key, _) in gguf.metadata_iter() {
        let _ = gguf.get_str_array(key);
        let _ = gguf.get_i32_array(key);
        let _ = gguf.get_f32(key);
        let _ = gguf.get_u32(key);
    }
    let Ok(weights) = GgufWeights::new(gguf) else {
        return;
    };
    // As the node loads a base model (`hearth_node::model::load_base`): at most its default
    // context, so the RoPE tables stay small whatever context the file claims.
    if let Ok(config) = LlamaConfig::from_hparams(weights.hparams()) {
        let context = config.max_seq_len.min(DEFAULT_CONTEXT);
        let _ = Llama::load_with(&weights, &config.with_max_seq_len(context), &Device::flex());
    }
});
