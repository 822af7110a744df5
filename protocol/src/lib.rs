//! Hearth wire protocol: identities, signed envelopes, every message, limits, replay window.
//!
//! No IO, no clock, no randomness: callers pass bytes, `now` and key seeds.
//!
//! - [`Keypair`] / [`MemberId`]: ed25519 identities; a member id's text form is the libp2p
//!   PeerId of the same key (`12D3KooW...`).
//! - [`Envelope`] / [`Header`] / [`Stamp`]: the signed envelope; [`encode`] seals a [`Payload`],
//!   [`decode_untrusted`] checks size, version, kind, community and signature before decoding the
//!   payload into a [`Message`].
//! - Messages: [`Manifest`] (the community's genesis document; its hash is the community id),
//!   [`Certificate`] and [`RevocationList`] (admin-[`Signed`]), [`DeltaSubmission`],
//!   [`VersionAnnouncement`], and the secure-aggregation messages ([`KeyAdvertisement`],
//!   [`EncryptedShares`], [`MaskedInput`], [`SurvivorSet`], [`UnmaskingShares`]).
//! - [`Authority`]: checks certificates (signature, community, expiry, revocation).
//! - [`ReplayWindow`]: rejects replayed and stale messages with bounded memory.
//! - [`Limits`]: every size and count bound, with documented defaults.
//! - [`Hash32`] / [`Hasher`]: SHA-256 names for communities, deltas and adapter versions.
//!
//! The wire format is specified in `docs/PROTOCOL.md`.
//!
//! # Example
//!
//! ```
//! use hearth_protocol::{
//!     decode_untrusted, encode, Hash32, Keypair, Limits, Payload, Stamp, VersionAnnouncement,
//! };
//!
//! let key = Keypair::from_seed([7; 32]); // the node draws this seed from the OS
//! let community = Hash32::digest(b"a manifest");
//! let limits = Limits::default();
//! let payload = Payload::Version(VersionAnnouncement {
//!     round: 3,
//!     parent: Hash32::ZERO,
//!     version: Hash32::digest(b"adapter v3"),
//!     deltas: vec![],
//! });
//! let stamp = Stamp { community, round: 3, nonce: 1, timestamp: 1_700_000_000 };
//!
//! let bytes = encode(&key, stamp, &payload, &limits)?;
//! let message = decode_untrusted(&bytes, &limits, &community)?;
//! assert_eq!(message.header.sender, key.member_id());
//! assert_eq!(message.payload, payload);
//!
//! let mut forged = bytes.clone();
//! let last = forged.len() - 1;
//! forged[last] ^= 1; // a bit of the signature
//! assert!(matches!(
//!     decode_untrusted(&forged, &limits, &community),
//!     Err(hearth_protocol::Error::BadSignature { .. })
//! ));
//! # Ok::<(), hearth_protocol::Error>(())
//! ```
#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

mod base58;
mod certificate;
mod codec;
mod delta;
mod envelope;
mod error;
mod hash;
mod identity;
mod limits;
mod manifest;
mod payload;
mod replay;
mod secagg;
mod signed;
#[cfg(test)]
mod testutil;

pub use crate::{
    certificate::{Authority, Certificate, RevocationList, Role},
    delta::{DELTA_DOMAIN, DeltaSubmission, DpParams, LayerDelta, VersionAnnouncement},
    envelope::{
        ENVELOPE_DOMAIN, Envelope, Header, Message, Stamp, VERSION, decode_untrusted, encode,
    },
    error::Error,
    hash::{ADAPTER_DOMAIN, Hash32, Hasher, TensorRef, adapter_hash},
    identity::{Keypair, MEMBER_ID_LEN, MemberId, PEER_ID_LEN, SIGNATURE_LEN, Signature},
    limits::{HARD_MAX_MESSAGE_BYTES, Limits},
    manifest::{
        Aggregation, BaseModel, COMMUNITY_DOMAIN, LoraShape, MAX_PROBE_BYTES, MAX_PROBE_INCREASE,
        MAX_WEIGHT_CAP, MIN_GROUP_SIZE, Manifest, PROBE_WINDOW_TOKENS, Period, Privacy,
        PrivacyMode, ProbeSet, Rule, Schedule, ServerOptimizer, Target, TensorShape, Weighting,
    },
    payload::{Kind, Payload, decode_payload},
    replay::ReplayWindow,
    secagg::{
        AgreementKey, EncryptedShare, EncryptedShares, KeyAdvertisement, MaskedInput, MemberShare,
        SurvivorSet, UnmaskingShares,
    },
    signed::{Signable, Signed},
};
