//! Secure-aggregation round messages (SecAgg+ style, Bell et al. 2020).
//!
//! 1. [`KeyAdvertisement`]: each cohort member publishes two ephemeral x25519 public keys, one to
//!    encrypt shares to it and one for pairwise mask agreement.
//! 2. [`EncryptedShares`]: each member sends every neighbour an encrypted Shamir share of its
//!    self-mask seed and of its mask secret key (opaque ciphertext here).
//! 3. [`MaskedInput`]: each member publishes its quantized input plus masks, modulo 2^32.
//! 4. [`SurvivorSet`]: the members whose masked inputs were received.
//! 5. [`UnmaskingShares`]: for each survivor, the share of its self-mask seed; for each dropped
//!    member, the share of its mask key; with enough of these the sum can be unmasked.
//!
//! This module only defines the messages and their size rules; the arithmetic is the
//! federation crate's.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::codec::{check_limit, fixed_bytes_serde, packed_u32};
use crate::error::Error;
use crate::identity::MemberId;
use crate::limits::Limits;

/// An x25519 public key (Montgomery u-coordinate, 32 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AgreementKey(pub [u8; 32]);

fixed_bytes_serde!(AgreementKey, 32, "a 32-byte x25519 public key");

impl AgreementKey {
    /// The public key of an x25519 secret.
    pub fn from_secret(secret: &x25519_dalek::StaticSecret) -> Self {
        AgreementKey(x25519_dalek::PublicKey::from(secret).to_bytes())
    }

    /// As an `x25519_dalek` public key.
    pub fn to_x25519(&self) -> x25519_dalek::PublicKey {
        x25519_dalek::PublicKey::from(self.0)
    }

    /// Rejects keys of small order (including zero): an agreement with them would give a
    /// predictable shared secret. The check multiplies by a fixed clamped scalar (a multiple of
    /// the cofactor 8), which maps exactly the small-order points to zero.
    pub fn validate(&self) -> Result<(), Error> {
        if x25519_dalek::x25519([9; 32], self.0) == [0; 32] {
            return Err(Error::InvalidValue {
                field: "x25519 public key",
                reason: format!("{} has small order", hex::encode(self.0)),
            });
        }
        Ok(())
    }
}

/// Step 1: a cohort member's two ephemeral public keys for a round.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyAdvertisement {
    /// Round (equals the envelope's round).
    pub round: u64,
    /// Key to encrypt shares to this member.
    pub cipher_key: AgreementKey,
    /// Key for pairwise mask agreement.
    pub mask_key: AgreementKey,
    /// Commitment to the member's self-mask seed `b` (the x25519 public key of `b` taken as a
    /// secret), so that anyone who reconstructs `b` from shares can check it.
    pub seed_commitment: AgreementKey,
}

impl KeyAdvertisement {
    /// Checks the three keys.
    pub fn validate(&self, _limits: &Limits) -> Result<(), Error> {
        self.cipher_key.validate()?;
        self.mask_key.validate()?;
        self.seed_commitment.validate()
    }
}

/// One share ciphertext for one recipient.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncryptedShare {
    /// Member that can decrypt it.
    pub recipient: MemberId,
    /// Opaque ciphertext (authenticated encryption of the sender's shares for the recipient).
    #[serde(with = "serde_bytes")]
    pub ciphertext: Vec<u8>,
}

/// Step 2: a member's encrypted shares, one per recipient.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncryptedShares {
    /// Round (equals the envelope's round).
    pub round: u64,
    /// Distinct recipients.
    pub shares: Vec<EncryptedShare>,
}

impl EncryptedShares {
    /// Checks the number of shares, each ciphertext's size, and that recipients are distinct.
    pub fn validate(&self, limits: &Limits) -> Result<(), Error> {
        check_limit("shares", self.shares.len(), limits.max_shares)?;
        let mut seen = HashSet::with_capacity(self.shares.len());
        for share in &self.shares {
            check_limit(
                "share bytes",
                share.ciphertext.len(),
                limits.max_share_bytes,
            )?;
            if !seen.insert(share.recipient) {
                return Err(Error::InvalidValue {
                    field: "shares.recipient",
                    reason: format!("{} appears twice", share.recipient),
                });
            }
        }
        Ok(())
    }
}

/// Step 3: a member's masked input: quantized delta plus masks, each element modulo 2^32.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaskedInput {
    /// Round (equals the envelope's round).
    pub round: u64,
    /// Masked values. On the wire: one byte string of little-endian `u32`s.
    #[serde(with = "packed_u32")]
    pub values: Vec<u32>,
    /// The neighbours whose pairwise masks are included, strictly increasing by id bytes (so
    /// that every node can check that each pair of survivors cancelled the same mask).
    pub peers: Vec<MemberId>,
}

impl MaskedInput {
    /// Checks the number of values and of peers, and the order of peers.
    pub fn validate(&self, limits: &Limits) -> Result<(), Error> {
        check_limit(
            "masked elements",
            self.values.len(),
            limits.max_delta_elements,
        )?;
        check_limit("masking peers", self.peers.len(), limits.max_shares)?;
        if self.peers.windows(2).any(|w| w[0] >= w[1]) {
            return Err(Error::InvalidValue {
                field: "peers",
                reason: "not strictly increasing".into(),
            });
        }
        Ok(())
    }
}

/// A plaintext share of one member's secret, revealed during unmasking.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberShare {
    /// Member whose secret this is a share of.
    pub member: MemberId,
    /// The Shamir share (opaque here).
    #[serde(with = "serde_bytes")]
    pub share: Vec<u8>,
}

/// Step 5: shares revealed to unmask the sum.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnmaskingShares {
    /// Round (equals the envelope's round).
    pub round: u64,
    /// Shares of survivors' self-mask seeds.
    pub self_mask_shares: Vec<MemberShare>,
    /// Shares of dropped members' mask keys.
    pub key_shares: Vec<MemberShare>,
}

impl UnmaskingShares {
    /// Checks list lengths and share sizes, and that no member appears twice (in particular
    /// never in both lists: revealing both shares of one member would expose its input).
    pub fn validate(&self, limits: &Limits) -> Result<(), Error> {
        check_limit(
            "self-mask shares",
            self.self_mask_shares.len(),
            limits.max_cohort,
        )?;
        check_limit("key shares", self.key_shares.len(), limits.max_cohort)?;
        let mut seen = HashSet::new();
        for share in self.self_mask_shares.iter().chain(&self.key_shares) {
            check_limit("share bytes", share.share.len(), limits.max_share_bytes)?;
            if !seen.insert(share.member) {
                return Err(Error::InvalidValue {
                    field: "unmasking shares",
                    reason: format!("{} appears twice", share.member),
                });
            }
        }
        Ok(())
    }
}

/// Step 4: the members whose masked inputs were received, strictly increasing by id bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SurvivorSet {
    /// Round (equals the envelope's round).
    pub round: u64,
    /// Survivors, sorted by id bytes, no duplicates.
    pub survivors: Vec<MemberId>,
}

impl SurvivorSet {
    /// Checks the length and order.
    pub fn validate(&self, limits: &Limits) -> Result<(), Error> {
        check_limit("survivors", self.survivors.len(), limits.max_cohort)?;
        if self.survivors.windows(2).any(|w| w[0] >= w[1]) {
            return Err(Error::InvalidValue {
                field: "survivors",
                reason: "not strictly increasing".into(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::member;

    fn share(i: u8, len: usize) -> MemberShare {
        MemberShare {
            member: member(i).member_id(),
            share: vec![i; len],
        }
    }

    #[test]
    fn agreement_keys() {
        let secret = x25519_dalek::StaticSecret::from([5u8; 32]);
        let key = AgreementKey::from_secret(&secret);
        key.validate().unwrap();
        let other = x25519_dalek::StaticSecret::from([6u8; 32]);
        assert_eq!(
            secret
                .diffie_hellman(&AgreementKey::from_secret(&other).to_x25519())
                .to_bytes(),
            other.diffie_hellman(&key.to_x25519()).to_bytes()
        );
        // Zero, one, and an order-8 point (from the curve25519 small-order list).
        let mut order8 = [0u8; 32];
        hex::decode_to_slice(
            "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
            &mut order8,
        )
        .unwrap();
        let mut one = [0u8; 32];
        one[0] = 1;
        for bad in [[0u8; 32], one, order8] {
            assert!(matches!(
                AgreementKey(bad).validate(),
                Err(Error::InvalidValue {
                    field: "x25519 public key",
                    ..
                })
            ));
        }
    }

    #[test]
    fn share_limits_at_and_past() {
        let limits = Limits {
            max_shares: 3,
            max_share_bytes: 16,
            ..Limits::default()
        };
        let mut msg = EncryptedShares {
            round: 1,
            shares: (1..=3)
                .map(|i| EncryptedShare {
                    recipient: member(i).member_id(),
                    ciphertext: vec![0; 16],
                })
                .collect(),
        };
        msg.validate(&limits).unwrap();
        msg.shares[0].ciphertext.push(0);
        assert_eq!(
            msg.validate(&limits),
            Err(Error::LimitExceeded {
                what: "share bytes",
                found: 17,
                max: 16
            })
        );
        msg.shares[0].ciphertext.pop();
        msg.shares.push(EncryptedShare {
            recipient: member(4).member_id(),
            ciphertext: vec![],
        });
        assert_eq!(
            msg.validate(&limits),
            Err(Error::LimitExceeded {
                what: "shares",
                found: 4,
                max: 3
            })
        );
        msg.shares.truncate(2);
        msg.shares[1].recipient = msg.shares[0].recipient;
        assert!(matches!(
            msg.validate(&limits),
            Err(Error::InvalidValue { .. })
        ));
    }

    #[test]
    fn masked_input_at_and_past() {
        let limits = Limits {
            max_delta_elements: 10,
            max_tensor_elements: 10,
            ..Limits::default()
        };
        let mut msg = MaskedInput {
            round: 1,
            values: vec![u32::MAX; 10],
            peers: vec![],
        };
        msg.validate(&limits).unwrap();
        msg.values.push(0);
        assert_eq!(
            msg.validate(&limits),
            Err(Error::LimitExceeded {
                what: "masked elements",
                found: 11,
                max: 10
            })
        );
    }

    #[test]
    fn masking_peers_at_and_past() {
        let limits = Limits {
            max_shares: 3,
            ..Limits::default()
        };
        let mut ids: Vec<MemberId> = (1..=4).map(|i| member(i).member_id()).collect();
        ids.sort();
        let mut msg = MaskedInput {
            round: 1,
            values: vec![1, 2],
            peers: ids[..3].to_vec(),
        };
        msg.validate(&limits).unwrap();
        msg.peers = ids.clone();
        assert_eq!(
            msg.validate(&limits),
            Err(Error::LimitExceeded {
                what: "masking peers",
                found: 4,
                max: 3
            })
        );
        msg.peers = vec![ids[1], ids[0]];
        assert!(matches!(
            msg.validate(&limits),
            Err(Error::InvalidValue { field: "peers", .. })
        ));
    }

    #[test]
    fn unmasking_limits_and_disjointness() {
        let limits = Limits {
            max_cohort: 2,
            max_share_bytes: 8,
            ..Limits::default()
        };
        let mut msg = UnmaskingShares {
            round: 1,
            self_mask_shares: vec![share(1, 8), share(2, 8)],
            key_shares: vec![share(3, 8), share(4, 8)],
        };
        msg.validate(&limits).unwrap();
        msg.self_mask_shares.push(share(5, 8));
        assert_eq!(
            msg.validate(&limits),
            Err(Error::LimitExceeded {
                what: "self-mask shares",
                found: 3,
                max: 2
            })
        );
        msg.self_mask_shares.pop();
        msg.key_shares.push(share(5, 8));
        assert_eq!(
            msg.validate(&limits),
            Err(Error::LimitExceeded {
                what: "key shares",
                found: 3,
                max: 2
            })
        );
        msg.key_shares.pop();
        msg.key_shares[0] = share(3, 9);
        assert_eq!(
            msg.validate(&limits),
            Err(Error::LimitExceeded {
                what: "share bytes",
                found: 9,
                max: 8
            })
        );
        msg.key_shares[0] = share(1, 8);
        assert!(matches!(
            msg.validate(&limits),
            Err(Error::InvalidValue {
                field: "unmasking shares",
                ..
            })
        ));
    }

    #[test]
    fn survivor_set_at_and_past() {
        let limits = Limits {
            max_cohort: 3,
            ..Limits::default()
        };
        let mut ids: Vec<MemberId> = (1..=4).map(|i| member(i).member_id()).collect();
        ids.sort();
        let mut msg = SurvivorSet {
            round: 1,
            survivors: ids[..3].to_vec(),
        };
        msg.validate(&limits).unwrap();
        msg.survivors = ids.clone();
        assert_eq!(
            msg.validate(&limits),
            Err(Error::LimitExceeded {
                what: "survivors",
                found: 4,
                max: 3
            })
        );
        msg.survivors = vec![ids[1], ids[0]];
        assert!(matches!(
            msg.validate(&limits),
            Err(Error::InvalidValue { .. })
        ));
    }
}
