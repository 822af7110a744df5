//! Member identities: ed25519 keypairs, member ids and their libp2p PeerId form, signatures.
//!
//! A [`MemberId`] is the 32-byte ed25519 public key. Its text form is the libp2p PeerId of the
//! same key, so a member id and the node's libp2p identity are one and the same: the PeerId bytes
//! are the identity multihash (code `0x00`, length `0x24`) of the protobuf `PublicKey
//! { Type = Ed25519 (1), Data = <32 key bytes> }`, that is `00 24 08 01 12 20 <key>`, written in
//! base58btc (which always starts with `12D3KooW`).

use std::fmt;
use std::str::FromStr;

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};

use crate::base58;
use crate::codec::fixed_bytes_serde;
use crate::error::Error;

/// Length of a member id (an ed25519 public key).
pub const MEMBER_ID_LEN: usize = 32;
/// Length of the binary PeerId of an ed25519 key.
pub const PEER_ID_LEN: usize = 38;
/// The 6 bytes before the key in a binary PeerId: identity multihash code and length, then the
/// protobuf tags of `PublicKey { Type = Ed25519, Data = <32 bytes> }`.
const PEER_ID_PREFIX: [u8; 6] = [0x00, 0x24, 0x08, 0x01, 0x12, 0x20];

/// An ed25519 signing key, made from a 32-byte secret seed the caller supplies.
///
/// The crate has no randomness of its own: the node draws the seed from the operating system and
/// tests use fixed seeds.
#[derive(Clone)]
pub struct Keypair {
    signing: SigningKey,
}

impl Keypair {
    /// Builds the keypair whose ed25519 secret key is `seed` (RFC 8032 private key bytes).
    pub fn from_seed(seed: [u8; 32]) -> Self {
        Keypair {
            signing: SigningKey::from_bytes(&seed),
        }
    }

    /// The secret seed, for storing the key (encrypted) on disk.
    pub fn seed(&self) -> [u8; 32] {
        self.signing.to_bytes()
    }

    /// This key's member id (its public key).
    pub fn member_id(&self) -> MemberId {
        MemberId(self.signing.verifying_key().to_bytes())
    }

    /// Signs `domain || message`. Domains end in a NUL byte, so no two domains are prefixes of
    /// each other.
    pub(crate) fn sign_parts(&self, parts: &[&[u8]]) -> Signature {
        let message: Vec<u8> = parts.concat();
        Signature(self.signing.sign(&message).to_bytes())
    }
}

impl fmt::Debug for Keypair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keypair")
            .field("member_id", &self.member_id())
            .finish_non_exhaustive()
    }
}

/// A member's identity: the 32 bytes of its ed25519 public key.
///
/// Displayed (and parsed) as the libp2p PeerId of the key, e.g. `12D3KooW...`. Any 32 bytes can be
/// carried; whether they are a valid key is checked when a signature is verified.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MemberId(pub [u8; MEMBER_ID_LEN]);

impl MemberId {
    /// The raw public key bytes.
    pub fn as_bytes(&self) -> &[u8; MEMBER_ID_LEN] {
        &self.0
    }

    /// The binary libp2p PeerId: `00 24 08 01 12 20 <key>`.
    pub fn to_peer_id_bytes(&self) -> [u8; PEER_ID_LEN] {
        let mut out = [0u8; PEER_ID_LEN];
        out[..PEER_ID_PREFIX.len()].copy_from_slice(&PEER_ID_PREFIX);
        out[PEER_ID_PREFIX.len()..].copy_from_slice(&self.0);
        out
    }

    /// Parses a binary libp2p PeerId of an ed25519 key. Other key types (RSA, secp256k1, ECDSA)
    /// and SHA-256 multihashes are rejected: Hearth members have ed25519 keys.
    pub fn from_peer_id_bytes(bytes: &[u8]) -> Result<Self, Error> {
        if bytes.len() != PEER_ID_LEN {
            return Err(Error::InvalidPeerId {
                reason: format!("{} bytes, expected {PEER_ID_LEN}", bytes.len()),
            });
        }
        let (prefix, key) = bytes.split_at(PEER_ID_PREFIX.len());
        if prefix != PEER_ID_PREFIX {
            return Err(Error::InvalidPeerId {
                reason: format!(
                    "prefix {} is not an identity multihash of an ed25519 key (00240801 1220)",
                    hex::encode(prefix)
                ),
            });
        }
        let mut id = [0u8; MEMBER_ID_LEN];
        id.copy_from_slice(key);
        Ok(MemberId(id))
    }

    /// The ed25519 verifying key, or [`Error::InvalidKey`] if the bytes are not a curve point.
    pub fn verifying_key(&self) -> Result<VerifyingKey, Error> {
        VerifyingKey::from_bytes(&self.0).map_err(|_| Error::InvalidKey(*self))
    }

    /// Verifies `signature` over `parts` concatenated, with strict RFC 8032 checks (no
    /// malleable or small-order signatures).
    pub(crate) fn verify_parts(
        &self,
        what: &'static str,
        parts: &[&[u8]],
        signature: &Signature,
    ) -> Result<(), Error> {
        let key = self.verifying_key()?;
        let message: Vec<u8> = parts.concat();
        let signature = ed25519_dalek::Signature::from_bytes(&signature.0);
        key.verify_strict(&message, &signature)
            .map_err(|_| Error::BadSignature {
                what,
                signer: *self,
            })
    }

    /// The last 8 characters of the PeerId text, for log lines.
    pub fn short(&self) -> String {
        let full = self.to_string();
        full[full.len().saturating_sub(8)..].to_string()
    }
}

impl fmt::Display for MemberId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&base58::encode(&self.to_peer_id_bytes()))
    }
}

impl fmt::Debug for MemberId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MemberId({self})")
    }
}

impl FromStr for MemberId {
    type Err = Error;

    /// Parses the base58btc PeerId text of an ed25519 key.
    fn from_str(text: &str) -> Result<Self, Error> {
        let bytes = base58::decode(text).map_err(|reason| Error::InvalidPeerId { reason })?;
        MemberId::from_peer_id_bytes(&bytes)
    }
}

fixed_bytes_serde!(MemberId, MEMBER_ID_LEN, "a 32-byte ed25519 public key");

/// Length of an ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;

/// An ed25519 signature (R || S, 64 bytes).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Signature(pub [u8; SIGNATURE_LEN]);

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({}..)", hex::encode(&self.0[..8]))
    }
}

fixed_bytes_serde!(Signature, SIGNATURE_LEN, "a 64-byte ed25519 signature");

#[cfg(test)]
mod tests {
    use super::*;

    fn hex32(text: &str) -> [u8; 32] {
        let mut out = [0u8; 32];
        hex::decode_to_slice(text, &mut out).unwrap();
        out
    }

    /// Known-answer vectors from go-libp2p's HTTP peer-id-auth tests (`TestWalkthroughInSpec`),
    /// which compute PeerIds with libp2p itself; the keys are the libp2p peer-ids spec test keys.
    #[test]
    fn peer_id_matches_libp2p_vectors() {
        let zero = Keypair::from_seed([0u8; 32]);
        assert_eq!(
            zero.member_id().0,
            hex32("3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29")
        );
        assert_eq!(
            zero.member_id().to_string(),
            "12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN"
        );

        let spec = Keypair::from_seed(hex32(
            "7e0830617c4a7de83925dfb2694556b12936c477a0e1feb2e148ec9da60fee7d",
        ));
        assert_eq!(
            spec.member_id().0,
            hex32("1ed1e8fae2c4a144b8be8fd4b47bf3d3b34b871c3cacf6010f0e42d474fce27e")
        );
        let text = "12D3KooWBtg3aaRMjxwedh83aGiUkwSxDwUZkzuJcfaqUmo7R3pq";
        assert_eq!(spec.member_id().to_string(), text);
        assert_eq!(text.parse::<MemberId>().unwrap(), spec.member_id());
        // The protobuf-encoded public key from the peer-ids spec is bytes 2.. of the PeerId.
        assert_eq!(
            hex::encode(&spec.member_id().to_peer_id_bytes()[2..]),
            "080112201ed1e8fae2c4a144b8be8fd4b47bf3d3b34b871c3cacf6010f0e42d474fce27e"
        );
    }

    #[test]
    fn peer_id_round_trips_and_rejects() {
        for seed in 0..32u8 {
            let id = Keypair::from_seed([seed; 32]).member_id();
            let text = id.to_string();
            assert!(text.starts_with("12D3KooW"), "{text}");
            assert_eq!(text.parse::<MemberId>().unwrap(), id);
            assert_eq!(
                MemberId::from_peer_id_bytes(&id.to_peer_id_bytes()).unwrap(),
                id
            );
        }
        // A SHA-256 (RSA-style) PeerId is not an ed25519 member id.
        let rsa = "QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N";
        assert!(matches!(
            rsa.parse::<MemberId>(),
            Err(Error::InvalidPeerId { .. })
        ));
        assert!(matches!(
            "12D3KooW0".parse::<MemberId>(),
            Err(Error::InvalidPeerId { .. })
        ));
        let mut bytes = Keypair::from_seed([1; 32]).member_id().to_peer_id_bytes();
        bytes[2] = 0x09;
        assert!(matches!(
            MemberId::from_peer_id_bytes(&bytes),
            Err(Error::InvalidPeerId { .. })
        ));
        assert!(matches!(
            MemberId::from_peer_id_bytes(&bytes[..37]),
            Err(Error::InvalidPeerId { .. })
        ));
    }

    #[test]
    fn sign_and_verify_parts() {
        let key = Keypair::from_seed([7; 32]);
        let id = key.member_id();
        let sig = key.sign_parts(&[b"domain\0", b"hello"]);
        id.verify_parts("test", &[b"domain\0hello"], &sig).unwrap();
        let err = id
            .verify_parts("test", &[b"domain\0hellp"], &sig)
            .unwrap_err();
        assert_eq!(
            err,
            Error::BadSignature {
                what: "test",
                signer: id
            }
        );
        let other = Keypair::from_seed([8; 32]).member_id();
        assert!(matches!(
            other.verify_parts("test", &[b"domain\0hello"], &sig),
            Err(Error::BadSignature { .. })
        ));
        // Find 32 bytes that are not a valid compressed Edwards point.
        let invalid = (0u8..=255)
            .map(|b| MemberId([b; 32]))
            .find(|m| m.verifying_key().is_err())
            .unwrap();
        assert_eq!(
            invalid.verify_parts("test", &[b"x"], &sig),
            Err(Error::InvalidKey(invalid))
        );
        assert_eq!(Keypair::from_seed(key.seed()).member_id(), id);
        assert_eq!(id.short().len(), 8);
    }
}
