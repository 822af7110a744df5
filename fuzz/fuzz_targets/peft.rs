//! Feeds arbitrary bytes to the PEFT adapter decoder: the input is split into
//! `adapter_config.json` and `adapter_model.safetensors` (see `hearth_fuzz::split2`) and decoded
//! against a fixed small model (`hearth_fuzz::peft_model`). An adapter that decodes must encode
//! and decode again to the same tensors.
#![no_main]

use hearth_fuzz::{peft_model, split2};
use hearth_models::peft;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((config, tensors)) = split2(data) else {
        return;
    };
    let Ok(config) = std::str::from_utf8(config) else {
        return;
    };
    let model = peft_model();
    let Ok(adapter) = peft::decode(config, tensors, &model) else {
        return;
    };
    let (config, tensors) = match peft::encode(&adapter, &model, "fuzz") {
        Ok(encoded) => encoded,
        Err(e) => panic!("a decoded adapter does not encode: {e}"),
    };
    match peft::decode(&config, &tensors, &model) {
        Ok(again) => assert!(
            again.config == adapter.config
                && again.tensors.len() == adapter.tensors.len()
                && again
                    .tensors
                    .iter()
                    .zip(&adapter.tensors)
                    .all(|(a, b)| a.key == b.key
                        && a.dims == b.dims
                        && a.values
                            .iter()
                            .zip(&b.values)
                            .all(|(x, y)| x.to_bits() == y.to_bits())),
            "an adapter changes in an encode/decode round trip"
        ),
        Err(e) => panic!("a re-encoded adapter does not decode: {e}"),
    }
});
