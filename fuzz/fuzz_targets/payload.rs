//! Feeds arbitrary bytes to the payload decoder of every message kind. Random bytes never pass
//! an envelope's signature check, so this is how the payload decoders get fuzzed.
#![no_main]

use hearth_protocol::{Kind, Limits, decode_payload};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, bytes)) = data.split_first() else {
        return;
    };
    let kind = Kind::ALL[usize::from(selector) % Kind::ALL.len()];
    let _ = decode_payload(kind, bytes, &Limits::default());
});
