//! Message kinds and the [`Payload`] enum: what an envelope can carry.

use serde::Serialize;

use crate::certificate::{Certificate, RevocationList};
use crate::codec::{from_cbor, to_cbor};
use crate::delta::{DeltaSubmission, VersionAnnouncement};
use crate::error::Error;
use crate::limits::Limits;
use crate::manifest::Manifest;
use crate::secagg::{EncryptedShares, KeyAdvertisement, MaskedInput, SurvivorSet, UnmaskingShares};
use crate::signed::Signed;

/// The kind tag of a message, carried in the envelope header as an unsigned integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u16)]
pub enum Kind {
    /// [`Signed<Manifest>`].
    Manifest = 1,
    /// [`Signed<Certificate>`].
    Certificate = 2,
    /// [`Signed<RevocationList>`].
    Revocations = 3,
    /// [`DeltaSubmission`].
    Delta = 4,
    /// [`VersionAnnouncement`].
    Version = 5,
    /// [`KeyAdvertisement`].
    Keys = 6,
    /// [`EncryptedShares`].
    Shares = 7,
    /// [`MaskedInput`].
    Masked = 8,
    /// [`UnmaskingShares`].
    Unmasking = 9,
    /// [`SurvivorSet`].
    Survivors = 10,
}

impl Kind {
    /// Every kind, in tag order.
    pub const ALL: [Kind; 10] = [
        Kind::Manifest,
        Kind::Certificate,
        Kind::Revocations,
        Kind::Delta,
        Kind::Version,
        Kind::Keys,
        Kind::Shares,
        Kind::Masked,
        Kind::Unmasking,
        Kind::Survivors,
    ];

    /// The wire tag.
    pub fn tag(self) -> u16 {
        self as u16
    }

    /// The kind with wire tag `tag`, or [`Error::UnknownKind`].
    pub fn from_tag(tag: u16) -> Result<Kind, Error> {
        Kind::ALL
            .into_iter()
            .find(|k| k.tag() == tag)
            .ok_or(Error::UnknownKind(tag))
    }
}

/// A decoded message body. The envelope's kind says which variant its payload bytes hold.
#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    /// The community manifest (admin-signed; boxed, it is much larger than the others).
    Manifest(Box<Signed<Manifest>>),
    /// A member certificate (admin-signed).
    Certificate(Signed<Certificate>),
    /// A revocation list (admin-signed).
    Revocations(Signed<RevocationList>),
    /// A delta submission.
    Delta(DeltaSubmission),
    /// A version announcement.
    Version(VersionAnnouncement),
    /// Secure aggregation, step 1.
    Keys(KeyAdvertisement),
    /// Secure aggregation, step 2.
    Shares(EncryptedShares),
    /// Secure aggregation, step 3.
    Masked(MaskedInput),
    /// Secure aggregation, step 5.
    Unmasking(UnmaskingShares),
    /// Secure aggregation, step 4.
    Survivors(SurvivorSet),
}

impl Payload {
    /// This payload's kind.
    pub fn kind(&self) -> Kind {
        match self {
            Payload::Manifest(_) => Kind::Manifest,
            Payload::Certificate(_) => Kind::Certificate,
            Payload::Revocations(_) => Kind::Revocations,
            Payload::Delta(_) => Kind::Delta,
            Payload::Version(_) => Kind::Version,
            Payload::Keys(_) => Kind::Keys,
            Payload::Shares(_) => Kind::Shares,
            Payload::Masked(_) => Kind::Masked,
            Payload::Unmasking(_) => Kind::Unmasking,
            Payload::Survivors(_) => Kind::Survivors,
        }
    }

    /// The round a round message belongs to; `None` for the admin objects.
    pub fn round(&self) -> Option<u64> {
        match self {
            Payload::Manifest(_) | Payload::Certificate(_) | Payload::Revocations(_) => None,
            Payload::Delta(m) => Some(m.round),
            Payload::Version(m) => Some(m.round),
            Payload::Keys(m) => Some(m.round),
            Payload::Shares(m) => Some(m.round),
            Payload::Masked(m) => Some(m.round),
            Payload::Unmasking(m) => Some(m.round),
            Payload::Survivors(m) => Some(m.round),
        }
    }

    /// Checks sizes, counts and internal consistency against `limits`. Signatures of admin
    /// objects are not checked here: that needs the community's [`Authority`](crate::Authority)
    /// (or, for a manifest, [`Signed::<Manifest>::verify`]).
    pub fn validate(&self, limits: &Limits) -> Result<(), Error> {
        match self {
            Payload::Manifest(m) => m.body.validate(),
            Payload::Certificate(c) => c.body.validate(limits),
            Payload::Revocations(r) => r.body.validate(limits),
            Payload::Delta(m) => m.validate(limits),
            Payload::Version(m) => m.validate(limits),
            Payload::Keys(m) => m.validate(limits),
            Payload::Shares(m) => m.validate(limits),
            Payload::Masked(m) => m.validate(limits),
            Payload::Unmasking(m) => m.validate(limits),
            Payload::Survivors(m) => m.validate(limits),
        }
    }

    /// The canonical CBOR encoding of the inner message (without any kind tag).
    pub fn to_bytes(&self) -> Result<Vec<u8>, Error> {
        fn enc<T: Serialize>(value: &T) -> Result<Vec<u8>, Error> {
            to_cbor("payload", value)
        }
        match self {
            Payload::Manifest(m) => enc(m.as_ref()),
            Payload::Certificate(m) => enc(m),
            Payload::Revocations(m) => enc(m),
            Payload::Delta(m) => enc(m),
            Payload::Version(m) => enc(m),
            Payload::Keys(m) => enc(m),
            Payload::Shares(m) => enc(m),
            Payload::Masked(m) => enc(m),
            Payload::Unmasking(m) => enc(m),
            Payload::Survivors(m) => enc(m),
        }
    }
}

/// Decodes payload bytes of the given kind and validates them against `limits`.
///
/// This is the second half of [`decode_untrusted`](crate::decode_untrusted), public so that it
/// can be fuzzed directly (random bytes never get past the envelope's signature check).
pub fn decode_payload(kind: Kind, bytes: &[u8], limits: &Limits) -> Result<Payload, Error> {
    if bytes.len() > limits.message_bytes() {
        return Err(Error::MessageTooLarge {
            len: bytes.len(),
            max: limits.message_bytes(),
        });
    }
    let what = "payload";
    let payload = match kind {
        Kind::Manifest => Payload::Manifest(Box::new(from_cbor(what, bytes)?)),
        Kind::Certificate => Payload::Certificate(from_cbor(what, bytes)?),
        Kind::Revocations => Payload::Revocations(from_cbor(what, bytes)?),
        Kind::Delta => Payload::Delta(from_cbor(what, bytes)?),
        Kind::Version => Payload::Version(from_cbor(what, bytes)?),
        Kind::Keys => Payload::Keys(from_cbor(what, bytes)?),
        Kind::Shares => Payload::Shares(from_cbor(what, bytes)?),
        Kind::Masked => Payload::Masked(from_cbor(what, bytes)?),
        Kind::Unmasking => Payload::Unmasking(from_cbor(what, bytes)?),
        Kind::Survivors => Payload::Survivors(from_cbor(what, bytes)?),
    };
    payload.validate(limits)?;
    Ok(payload)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::samples;

    #[test]
    fn kinds_have_distinct_stable_tags() {
        let tags: Vec<u16> = Kind::ALL.iter().map(|k| k.tag()).collect();
        assert_eq!(tags, (1..=10).collect::<Vec<u16>>());
        for kind in Kind::ALL {
            assert_eq!(Kind::from_tag(kind.tag()), Ok(kind));
        }
        assert_eq!(Kind::from_tag(0), Err(Error::UnknownKind(0)));
        assert_eq!(Kind::from_tag(11), Err(Error::UnknownKind(11)));
    }

    #[test]
    fn every_sample_round_trips_through_bytes() {
        let limits = Limits::default();
        let samples = samples();
        let kinds: Vec<Kind> = samples.iter().map(Payload::kind).collect();
        assert_eq!(kinds, Kind::ALL.to_vec());
        for payload in samples {
            let bytes = payload.to_bytes().unwrap();
            assert_eq!(
                decode_payload(payload.kind(), &bytes, &limits).unwrap(),
                payload
            );
        }
    }

    #[test]
    fn payload_of_the_wrong_kind_is_malformed() {
        let limits = Limits::default();
        let samples = samples();
        let delta = samples.iter().find(|p| p.kind() == Kind::Delta).unwrap();
        let bytes = delta.to_bytes().unwrap();
        assert!(matches!(
            decode_payload(Kind::Survivors, &bytes, &limits),
            Err(Error::Malformed {
                what: "payload",
                ..
            })
        ));
        assert!(matches!(
            decode_payload(Kind::Delta, &bytes[..bytes.len() / 2], &limits),
            Err(Error::Truncated {
                what: "payload",
                ..
            })
        ));
    }

    #[test]
    fn payload_size_at_and_past_the_limit() {
        let samples = samples();
        let version = samples.iter().find(|p| p.kind() == Kind::Version).unwrap();
        let bytes = version.to_bytes().unwrap();
        let limits = Limits {
            max_message_bytes: bytes.len() as u32,
            ..Limits::default()
        };
        assert!(decode_payload(Kind::Version, &bytes, &limits).is_ok());
        let limits = Limits {
            max_message_bytes: bytes.len() as u32 - 1,
            ..Limits::default()
        };
        assert_eq!(
            decode_payload(Kind::Version, &bytes, &limits),
            Err(Error::MessageTooLarge {
                len: bytes.len(),
                max: bytes.len() - 1
            })
        );
    }
}
