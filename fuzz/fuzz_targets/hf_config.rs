//! Feeds arbitrary bytes to the Hugging Face `config.json` parser and turns the result into a
//! model configuration.
#![no_main]

use hearth_models::{LlamaConfig, LlamaHparams};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(hparams) = LlamaHparams::from_hf_config(data) {
        let _ = LlamaConfig::from_hparams(&hparams);
    }
});
