//! Feeds arbitrary bytes to the full decoder for untrusted input (envelope, version and kind,
//! canonical check, community, signature, payload). It must return an error, never panic.
#![no_main]

use hearth_protocol::{Hash32, Limits, decode_untrusted};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Community zero: the fuzzer can learn it, so inputs reach the signature check.
    let _ = decode_untrusted(data, &Limits::default(), &Hash32::ZERO);
});
