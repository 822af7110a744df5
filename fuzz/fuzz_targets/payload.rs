//! Feeds arbitrary bytes to the payload decoder of every message kind. Random bytes never pass
//! an envelope's signature check, so this is how the payload decoders get fuzzed. Admin objects
//! that decode then go through what a node does with them: a manifest is verified and becomes
//! an authority (and its adapter shape is expanded), certificates and revocation lists are
//! checked by that authority.
#![no_main]

use hearth_protocol::{Authority, Keypair, Kind, Limits, Payload, decode_payload};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, bytes)) = data.split_first() else {
        return;
    };
    let kind = Kind::ALL[usize::from(selector) % Kind::ALL.len()];
    let limits = Limits::default();
    let Ok(payload) = decode_payload(kind, bytes, &limits) else {
        return;
    };
    // The seeds' admin (protocol/examples/fuzz_seeds.rs), so that their signatures verify.
    let admin = Keypair::from_seed([0xad; 32]).member_id();
    match payload {
        Payload::Manifest(manifest) => {
            // `decode_payload` validated the body: its adapter shape is bounded.
            let _ = manifest.body.lora.tensors();
            let _ = manifest.body.lora.elements();
            if let Ok(authority) = Authority::from_manifest(&manifest) {
                assert_eq!(manifest.verify().ok(), Some(authority.community()));
            }
        }
        Payload::Certificate(certificate) => {
            let authority = Authority::new(certificate.body.community, admin);
            let _ = authority.verify_certificate(&certificate, certificate.body.issued, &limits);
        }
        Payload::Revocations(list) => {
            let mut authority = Authority::new(list.body.community, admin);
            if authority.apply_revocations(&list, &limits).is_ok() {
                assert!(list.body.revoked.iter().all(|m| authority.is_revoked(m)));
            }
        }
        _ => {}
    }
});
