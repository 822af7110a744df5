//! The signed envelope every gossiped or synced message travels in, and the decoder for
//! untrusted bytes.
//!
//! Wire form (canonical CBOR): `{"header": {...}, "payload": <bytes>, "signature": <64 bytes>}`.
//! The signature covers `ENVELOPE_DOMAIN || u64be(len(h)) || h || u64be(len(p)) || p`, where `h`
//! is the canonical CBOR of the header and `p` the exact payload bytes.

use serde::{Deserialize, Serialize};

use crate::codec::{decode_error, from_cbor, to_cbor};
use crate::error::Error;
use crate::hash::Hash32;
use crate::identity::{Keypair, MemberId, Signature};
use crate::limits::Limits;
use crate::payload::{Kind, Payload, decode_payload};

/// The protocol version this implementation speaks. Envelopes with any other version are
/// rejected with [`Error::UnsupportedVersion`].
pub const VERSION: u16 = 1;

/// Signature domain of envelopes.
pub const ENVELOPE_DOMAIN: &[u8] = b"hearth/envelope/v1\0";

/// Envelope header: who sent what, for which community and round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Protocol version ([`VERSION`]).
    pub version: u16,
    /// Kind of the payload.
    pub kind: Kind,
    /// Community id (hash of the manifest).
    pub community: Hash32,
    /// Round the message belongs to (admin objects: the sender's current round).
    pub round: u64,
    /// Sender's member id; the envelope is signed by this key.
    pub sender: MemberId,
    /// Sender-chosen number, unique per (sender, round); see [`ReplayWindow`](crate::ReplayWindow).
    pub nonce: u64,
    /// Sender's clock when sealing, unix seconds (informational; freshness is by round).
    pub timestamp: u64,
}

/// The header fields the sender chooses; version, kind and sender are filled in by
/// [`Envelope::seal`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// Community id.
    pub community: Hash32,
    /// Round.
    pub round: u64,
    /// Nonce, unique per (sender, round).
    pub nonce: u64,
    /// Unix seconds.
    pub timestamp: u64,
}

/// The header as encoded: `kind` is a plain integer so that unknown kinds decode cleanly.
#[derive(Serialize, Deserialize)]
struct WireHeader {
    version: u16,
    kind: u16,
    community: Hash32,
    round: u64,
    sender: MemberId,
    nonce: u64,
    timestamp: u64,
}

impl From<&Header> for WireHeader {
    fn from(h: &Header) -> Self {
        WireHeader {
            version: h.version,
            kind: h.kind.tag(),
            community: h.community,
            round: h.round,
            sender: h.sender,
            nonce: h.nonce,
            timestamp: h.timestamp,
        }
    }
}

#[derive(Serialize, Deserialize)]
struct WireEnvelope<'a> {
    header: WireHeader,
    #[serde(with = "serde_bytes", borrow)]
    payload: &'a [u8],
    signature: Signature,
}

/// Just enough of an envelope to check version and kind before decoding the rest.
#[derive(Deserialize)]
struct Probe {
    header: ProbeHeader,
}

#[derive(Deserialize)]
struct ProbeHeader {
    version: u16,
    kind: u16,
}

/// A signed envelope: header, encoded payload, signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// The header.
    pub header: Header,
    /// Canonical CBOR of the payload.
    pub payload: Vec<u8>,
    /// The sender's signature over domain, header and payload.
    pub signature: Signature,
}

fn signed_message(header: &WireHeader, payload: &[u8]) -> Result<Vec<u8>, Error> {
    let h = to_cbor("envelope header", header)?;
    let mut message = Vec::with_capacity(ENVELOPE_DOMAIN.len() + 16 + h.len() + payload.len());
    message.extend_from_slice(ENVELOPE_DOMAIN);
    message.extend_from_slice(&(h.len() as u64).to_be_bytes());
    message.extend_from_slice(&h);
    message.extend_from_slice(&(payload.len() as u64).to_be_bytes());
    message.extend_from_slice(payload);
    Ok(message)
}

impl Envelope {
    /// Encodes `payload` and signs it with `key` under `stamp`. Fails with
    /// [`Error::RoundMismatch`] if the payload's own round differs from the stamp's.
    pub fn seal(key: &Keypair, stamp: Stamp, payload: &Payload) -> Result<Envelope, Error> {
        if let Some(round) = payload.round()
            && round != stamp.round
        {
            return Err(Error::RoundMismatch {
                header: stamp.round,
                payload: round,
            });
        }
        let header = Header {
            version: VERSION,
            kind: payload.kind(),
            community: stamp.community,
            round: stamp.round,
            sender: key.member_id(),
            nonce: stamp.nonce,
            timestamp: stamp.timestamp,
        };
        let payload = payload.to_bytes()?;
        let message = signed_message(&WireHeader::from(&header), &payload)?;
        let signature = key.sign_parts(&[&message]);
        Ok(Envelope {
            header,
            payload,
            signature,
        })
    }

    /// Checks the sender's signature over domain, header and payload bytes.
    pub fn verify_signature(&self) -> Result<(), Error> {
        let message = signed_message(&WireHeader::from(&self.header), &self.payload)?;
        self.header
            .sender
            .verify_parts("envelope", &[&message], &self.signature)
    }

    /// The canonical wire bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>, Error> {
        to_cbor(
            "envelope",
            &WireEnvelope {
                header: WireHeader::from(&self.header),
                payload: &self.payload,
                signature: self.signature,
            },
        )
    }
}

/// A verified message: the envelope's header and its decoded, validated payload.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// The envelope header (its signature has been checked).
    pub header: Header,
    /// The decoded payload.
    pub payload: Payload,
}

/// Validates `payload`, seals it and encodes the envelope, checking that peers using `limits`
/// will accept its size. This is what a node publishes.
pub fn encode(
    key: &Keypair,
    stamp: Stamp,
    payload: &Payload,
    limits: &Limits,
) -> Result<Vec<u8>, Error> {
    payload.validate(limits)?;
    let bytes = Envelope::seal(key, stamp, payload)?.to_bytes()?;
    if bytes.len() > limits.message_bytes() {
        return Err(Error::MessageTooLarge {
            len: bytes.len(),
            max: limits.message_bytes(),
        });
    }
    Ok(bytes)
}

/// Decodes and verifies bytes from the network, in this order: size limit, envelope decoding,
/// version and kind, canonical encoding, community, signature, payload decoding and validation,
/// round consistency. Each failure has its own [`Error`] variant; nothing panics.
///
/// This does not check the sender's certificate (see [`Authority::admit`](crate::Authority::admit))
/// nor replays (see [`ReplayWindow`](crate::ReplayWindow)).
pub fn decode_untrusted(
    bytes: &[u8],
    limits: &Limits,
    community: &Hash32,
) -> Result<Message, Error> {
    let max = limits.message_bytes();
    if bytes.len() > max {
        return Err(Error::MessageTooLarge {
            len: bytes.len(),
            max,
        });
    }
    let probe: Probe =
        serde_cbor::from_slice(bytes).map_err(|e| decode_error("envelope", bytes.len(), &e))?;
    if probe.header.version != VERSION {
        return Err(Error::UnsupportedVersion {
            found: probe.header.version,
            supported: VERSION,
        });
    }
    let kind = Kind::from_tag(probe.header.kind)?;
    let wire: WireEnvelope<'_> = from_cbor("envelope", bytes)?;
    if to_cbor("envelope", &wire)? != bytes {
        return Err(Error::NonCanonical { what: "envelope" });
    }
    if wire.header.community != *community {
        return Err(Error::WrongCommunity {
            expected: *community,
            found: wire.header.community,
        });
    }
    let message = signed_message(&wire.header, wire.payload)?;
    wire.header
        .sender
        .verify_parts("envelope", &[&message], &wire.signature)?;
    let payload = decode_payload(kind, wire.payload, limits)?;
    let h = wire.header;
    if let Some(round) = payload.round()
        && round != h.round
    {
        return Err(Error::RoundMismatch {
            header: h.round,
            payload: round,
        });
    }
    Ok(Message {
        header: Header {
            version: h.version,
            kind,
            community: h.community,
            round: h.round,
            sender: h.sender,
            nonce: h.nonce,
            timestamp: h.timestamp,
        },
        payload,
    })
}

#[cfg(test)]
mod tests;
