//! Envelope tests: round trips, every rejection reason, exhaustive bit flips.

use super::*;
use crate::delta::VersionAnnouncement;
use crate::testutil::{member, samples};

fn community() -> Hash32 {
    Hash32::digest(b"community")
}

fn stamp(round: u64) -> Stamp {
    Stamp {
        community: community(),
        round,
        nonce: 1,
        timestamp: 1_700_000_000,
    }
}

fn small_payload() -> Payload {
    Payload::Version(VersionAnnouncement {
        round: 7,
        parent: Hash32::ZERO,
        version: Hash32::digest(b"v7"),
        deltas: vec![],
    })
}

/// Encodes a hand-made envelope, signed by `key` over exactly these header fields.
fn craft(key: &Keypair, header: WireHeader, payload: &[u8]) -> Vec<u8> {
    let signature = key.sign_parts(&[&signed_message(&header, payload).unwrap()]);
    to_cbor(
        "envelope",
        &WireEnvelope {
            header,
            payload,
            signature,
        },
    )
    .unwrap()
}

fn wire_header(key: &Keypair, kind: u16, round: u64) -> WireHeader {
    WireHeader {
        version: VERSION,
        kind,
        community: community(),
        round,
        sender: key.member_id(),
        nonce: 1,
        timestamp: 5,
    }
}

#[test]
fn every_kind_round_trips() {
    let key = member(1);
    let limits = Limits::default();
    for payload in samples() {
        let bytes = encode(&key, stamp(7), &payload, &limits).unwrap();
        let message = decode_untrusted(&bytes, &limits, &community()).unwrap();
        assert_eq!(message.payload, payload);
        assert_eq!(message.header.kind, payload.kind());
        assert_eq!(message.header.sender, key.member_id());
        assert_eq!(message.header.round, 7);
        assert_eq!(message.header.version, VERSION);
        let envelope = Envelope::seal(&key, stamp(7), &payload).unwrap();
        envelope.verify_signature().unwrap();
        assert_eq!(envelope.to_bytes().unwrap(), bytes);
        assert_eq!(envelope.header, message.header);
    }
}

#[test]
fn every_flipped_bit_is_rejected() {
    let key = member(1);
    let limits = Limits::default();
    let bytes = encode(&key, stamp(7), &small_payload(), &limits).unwrap();
    let mut reasons = std::collections::BTreeMap::new();
    for bit in 0..bytes.len() * 8 {
        let mut flipped = bytes.clone();
        flipped[bit / 8] ^= 1 << (bit % 8);
        match decode_untrusted(&flipped, &limits, &community()) {
            Ok(m) => panic!("bit {bit} flipped was accepted: {m:?}"),
            Err(e) => {
                let name = format!("{e:?}");
                let name = name.split([' ', '(', '{']).next().unwrap_or("").to_string();
                *reasons.entry(name).or_insert(0) += 1;
            }
        }
    }
    println!(
        "{} bit flips of a {}-byte envelope: {reasons:?}",
        bytes.len() * 8,
        bytes.len()
    );
    // Flips hit the structure, the header, the payload and the signature.
    assert!(reasons.contains_key("BadSignature"), "{reasons:?}");
    assert!(reasons.contains_key("Malformed"), "{reasons:?}");
    assert!(reasons.contains_key("WrongCommunity"), "{reasons:?}");
}

#[test]
fn forged_signature_is_rejected() {
    let alice = member(1);
    let mallory = member(2);
    let limits = Limits::default();
    // Mallory signs a header that names Alice as the sender.
    let payload = small_payload().to_bytes().unwrap();
    let header = wire_header(&alice, Kind::Version.tag(), 7);
    let forged = craft(&mallory, header, &payload);
    assert_eq!(
        decode_untrusted(&forged, &limits, &community()),
        Err(Error::BadSignature {
            what: "envelope",
            signer: alice.member_id()
        })
    );
    // Signature of another message by the real sender.
    let other = encode(
        &alice,
        stamp(8),
        &Payload::Version(VersionAnnouncement {
            round: 8,
            parent: Hash32::ZERO,
            version: Hash32::ZERO,
            deltas: vec![],
        }),
        &limits,
    )
    .unwrap();
    let other_sig = from_cbor::<WireEnvelope<'_>>("envelope", &other)
        .unwrap()
        .signature;
    let genuine = craft(&alice, wire_header(&alice, 5, 7), &payload);
    let mut spliced: WireEnvelope<'_> = from_cbor("envelope", &genuine).unwrap();
    spliced.signature = other_sig;
    let spliced = to_cbor("envelope", &spliced).unwrap();
    assert!(matches!(
        decode_untrusted(&spliced, &limits, &community()),
        Err(Error::BadSignature { .. })
    ));
}

#[test]
fn sender_that_is_not_a_key_is_rejected() {
    let limits = Limits::default();
    let invalid = (0u8..=255)
        .map(|b| MemberId([b; 32]))
        .find(|m| m.verifying_key().is_err())
        .unwrap();
    let mut header = wire_header(&member(1), Kind::Version.tag(), 7);
    header.sender = invalid;
    let bytes = craft(&member(1), header, &small_payload().to_bytes().unwrap());
    assert_eq!(
        decode_untrusted(&bytes, &limits, &community()),
        Err(Error::InvalidKey(invalid))
    );
}

#[test]
fn wrong_community_is_rejected() {
    let limits = Limits::default();
    let bytes = encode(&member(1), stamp(7), &small_payload(), &limits).unwrap();
    let elsewhere = Hash32::digest(b"elsewhere");
    assert_eq!(
        decode_untrusted(&bytes, &limits, &elsewhere),
        Err(Error::WrongCommunity {
            expected: elsewhere,
            found: community()
        })
    );
}

#[test]
fn message_size_at_and_past_the_limit() {
    let key = member(1);
    let payload = small_payload();
    let bytes = encode(&key, stamp(7), &payload, &Limits::default()).unwrap();
    let at = Limits {
        max_message_bytes: bytes.len() as u32,
        ..Limits::default()
    };
    assert!(decode_untrusted(&bytes, &at, &community()).is_ok());
    assert_eq!(encode(&key, stamp(7), &payload, &at).unwrap(), bytes);
    let past = Limits {
        max_message_bytes: bytes.len() as u32 - 1,
        ..Limits::default()
    };
    let too_large = Error::MessageTooLarge {
        len: bytes.len(),
        max: bytes.len() - 1,
    };
    assert_eq!(
        decode_untrusted(&bytes, &past, &community()),
        Err(too_large.clone())
    );
    assert_eq!(encode(&key, stamp(7), &payload, &past), Err(too_large));
}

#[test]
fn every_truncation_is_reported_as_truncated() {
    let limits = Limits::default();
    let bytes = encode(&member(1), stamp(7), &small_payload(), &limits).unwrap();
    for len in 0..bytes.len() {
        assert_eq!(
            decode_untrusted(&bytes[..len], &limits, &community()),
            Err(Error::Truncated {
                what: "envelope",
                len
            }),
            "prefix of {len} bytes"
        );
    }
}

#[test]
fn unknown_version_and_kind_are_rejected_cleanly() {
    let key = member(1);
    let limits = Limits::default();
    let payload = small_payload().to_bytes().unwrap();
    let mut header = wire_header(&key, Kind::Version.tag(), 7);
    header.version = 2;
    assert_eq!(
        decode_untrusted(&craft(&key, header, &payload), &limits, &community()),
        Err(Error::UnsupportedVersion {
            found: 2,
            supported: VERSION
        })
    );
    let header = wire_header(&key, 99, 7);
    assert_eq!(
        decode_untrusted(&craft(&key, header, &payload), &limits, &community()),
        Err(Error::UnknownKind(99))
    );
    // A future version may change the header entirely: only `version` needs to decode.
    #[derive(Serialize)]
    struct Future<'a> {
        header: FutureHeader,
        #[serde(with = "serde_bytes")]
        body: &'a [u8],
    }
    #[derive(Serialize)]
    struct FutureHeader {
        version: u16,
        kind: u16,
        flags: Vec<String>,
    }
    let future = to_cbor(
        "future",
        &Future {
            header: FutureHeader {
                version: 3,
                kind: 40,
                flags: vec!["x".into()],
            },
            body: b"...",
        },
    )
    .unwrap();
    assert_eq!(
        decode_untrusted(&future, &limits, &community()),
        Err(Error::UnsupportedVersion {
            found: 3,
            supported: VERSION
        })
    );
}

#[test]
fn non_canonical_envelope_is_rejected() {
    let limits = Limits::default();
    let bytes = encode(&member(1), stamp(7), &small_payload(), &limits).unwrap();
    // The nonce (1) is encoded as the single byte 0x01 after the text key "nonce";
    // re-encode it as 0x18 0x01 (same value, not shortest form).
    let key = b"\x65nonce";
    let at = bytes.windows(key.len()).position(|w| w == key).unwrap() + key.len();
    assert_eq!(bytes[at], 0x01);
    let mut long = bytes.clone();
    long[at] = 0x18;
    long.insert(at + 1, 0x01);
    assert_eq!(
        decode_untrusted(&long, &limits, &community()),
        Err(Error::NonCanonical { what: "envelope" })
    );
    // An extra, unknown field is not canonical either.
    let mut extra = bytes.clone();
    extra[0] += 1; // map(3) -> map(4)
    extra.extend_from_slice(b"\x61x\x00");
    assert_eq!(
        decode_untrusted(&extra, &limits, &community()),
        Err(Error::NonCanonical { what: "envelope" })
    );
}

#[test]
fn round_mismatch_is_rejected_on_both_ends() {
    let key = member(1);
    let limits = Limits::default();
    assert_eq!(
        Envelope::seal(&key, stamp(8), &small_payload()),
        Err(Error::RoundMismatch {
            header: 8,
            payload: 7
        })
    );
    let payload = small_payload().to_bytes().unwrap();
    let bytes = craft(&key, wire_header(&key, Kind::Version.tag(), 8), &payload);
    assert_eq!(
        decode_untrusted(&bytes, &limits, &community()),
        Err(Error::RoundMismatch {
            header: 8,
            payload: 7
        })
    );
}

#[test]
fn payload_errors_come_after_the_signature() {
    let key = member(1);
    let limits = Limits::default();
    // Correctly signed, but the payload bytes are not a version announcement.
    let bytes = craft(&key, wire_header(&key, Kind::Version.tag(), 7), b"\xa0");
    assert!(matches!(
        decode_untrusted(&bytes, &limits, &community()),
        Err(Error::Malformed {
            what: "payload",
            ..
        })
    ));
    // Correctly signed, decodes, but breaks a payload rule (deltas not sorted).
    let bad = Payload::Version(VersionAnnouncement {
        round: 7,
        parent: Hash32::ZERO,
        version: Hash32::ZERO,
        deltas: vec![Hash32([2; 32]), Hash32([1; 32])],
    });
    let bytes = Envelope::seal(&key, stamp(7), &bad)
        .unwrap()
        .to_bytes()
        .unwrap();
    assert!(matches!(
        decode_untrusted(&bytes, &limits, &community()),
        Err(Error::InvalidValue {
            field: "version.deltas",
            ..
        })
    ));
    assert!(matches!(
        encode(&key, stamp(7), &bad, &limits),
        Err(Error::InvalidValue {
            field: "version.deltas",
            ..
        })
    ));
}

#[test]
fn header_bytes_are_the_documented_layout() {
    // docs/PROTOCOL.md spells out the signed message; check it byte by byte.
    let key = member(1);
    let envelope = Envelope::seal(&key, stamp(7), &small_payload()).unwrap();
    let h = to_cbor("h", &WireHeader::from(&envelope.header)).unwrap();
    assert_eq!(h[0], 0xa7); // map of 7
    assert_eq!(&h[1..9], b"\x67version");
    assert_eq!(h[9], 0x01); // version 1
    let mut message = b"hearth/envelope/v1\0".to_vec();
    message.extend_from_slice(&(h.len() as u64).to_be_bytes());
    message.extend_from_slice(&h);
    message.extend_from_slice(&(envelope.payload.len() as u64).to_be_bytes());
    message.extend_from_slice(&envelope.payload);
    key.member_id()
        .verify_parts("envelope", &[&message], &envelope.signature)
        .unwrap();
}

/// The example envelope of docs/PROTOCOL.md ("Test vectors"), byte for byte. ed25519 signatures
/// are deterministic, so any change here is a wire-format change.
#[test]
fn documented_test_vector() {
    let key = Keypair::from_seed([7; 32]);
    let payload = Payload::Version(VersionAnnouncement {
        round: 3,
        parent: Hash32::ZERO,
        version: Hash32::digest(b"adapter v3"),
        deltas: vec![],
    });
    let stamp = Stamp {
        community: Hash32::digest(b"a manifest"),
        round: 3,
        nonce: 1,
        timestamp: 1_700_000_000,
    };
    let bytes = encode(&key, stamp, &payload, &Limits::default()).unwrap();
    assert_eq!(hex::encode(&bytes), GOLDEN);
}

const GOLDEN: &str = concat!(
    "a366686561646572a76776657273696f6e01646b696e640569636f6d6d756e6974795820e59625a8",
    "22497c164d60705eb3fd6975c375ca213b8140137a826a77790986a965726f756e64036673656e64",
    "65725820ea4a6c63e29c520abef5507b132ec5f9954776aebebe7b92421eea691446d22c656e6f6e",
    "6365016974696d657374616d701a6553f100677061796c6f61645863a465726f756e640366706172",
    "656e7458200000000000000000000000000000000000000000000000000000000000000000677665",
    "7273696f6e5820d2636f7c11361d6004f16d0b4a7d8d4c5670a2f3694c8105eee3b6b670c4797166",
    "64656c74617380697369676e61747572655840424386a92476bdd02064b4cc1ffcd6fdfb4187d44f",
    "1f886317fe03f35daf258dc3e3f1e934ab26585e63e292d781e9f5b7a998bfb639339f90965e9d81",
    "62d900",
);
