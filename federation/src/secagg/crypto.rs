//! The cryptography of a round: key derivation, mask expansion, share encryption, Shamir.
//!
//! - KDF: HKDF-SHA256 with the round seed as salt and a labelled, length-fixed `info` naming the
//!   round and the members, so no two uses share a key.
//! - Masks: a 32-byte key seeds ChaCha20 ([`ChaCha20Rng`], the ChaCha20 keystream), read as
//!   little-endian `u32`s and added (or subtracted) modulo 2^32.
//! - Share encryption: ChaCha20-Poly1305 under a key derived from the x25519 agreement of the two
//!   members' cipher keys and the direction (sender, recipient). Each key encrypts one message, so
//!   the nonce is fixed at zero.
//! - Shamir secret sharing over the curve25519 scalar field with `vsss-rs` (a maintained,
//!   constant-time implementation, generic over `ff::PrimeField`, which `curve25519-dalek` 5
//!   implements). Secrets are scalars: the x25519 mask key is a scalar's bytes (x25519 clamps
//!   them), and the self-mask seed is a scalar hashed by the KDF. Share `p` is the polynomial at
//!   `x = p` (`p` from 1); only its 32-byte value travels, the position follows from the graph.

use chacha20poly1305::{
    ChaCha20Poly1305, Key, Nonce,
    aead::{Aead, KeyInit, Payload},
};
use curve25519_dalek::scalar::Scalar;
use hearth_protocol::{AgreementKey, MemberId};
use hkdf::Hkdf;
use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};
use sha2::Sha256;
use vsss_rs::{DefaultShare, IdentifierPrimeField, ParticipantIdGenerator, ReadableShareSet};
use x25519_dalek::StaticSecret;

/// Domain separation of every key this module derives.
const LABEL: &[u8] = b"hearth/secagg/v1";

/// Bytes of one encoded share value.
pub(crate) const SHARE_BYTES: usize = 32;

/// Plaintext of one encrypted share: the self-mask seed share then the mask key share.
pub(crate) const PLAINTEXT_BYTES: usize = 2 * SHARE_BYTES;

/// Poly1305 tag length.
pub(crate) const CIPHERTEXT_BYTES: usize = PLAINTEXT_BYTES + 16;

type ScalarShare = DefaultShare<IdentifierPrimeField<Scalar>, IdentifierPrimeField<Scalar>>;

/// Public data that every derived key is bound to.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Context {
    /// The round seed (HKDF salt).
    pub(crate) seed: [u8; 32],
    /// The round number.
    pub(crate) round: u64,
}

impl Context {
    fn derive(&self, ikm: &[u8], purpose: &[u8], a: &MemberId, b: &MemberId) -> [u8; 32] {
        let hk = Hkdf::<Sha256>::new(Some(&self.seed), ikm);
        let mut out = [0u8; 32];
        // 32-byte okm is far below HKDF-SHA256's 8160-byte limit: expand cannot fail.
        let round = self.round.to_le_bytes();
        let info: [&[u8]; 5] = [LABEL, purpose, &round, a.as_bytes(), b.as_bytes()];
        let _ = hk.expand_multi_info(&info, &mut out);
        out
    }

    /// The key that orders the cohort on the Harary graph's ring.
    pub(crate) fn graph_key(&self) -> [u8; 32] {
        let nobody = MemberId([0; 32]);
        self.derive(b"", b"graph", &nobody, &nobody)
    }

    /// The key of the pairwise mask between `a` and `b` (symmetric) from their mask-key
    /// agreement.
    pub(crate) fn pairwise_key(&self, shared: &[u8; 32], a: &MemberId, b: &MemberId) -> [u8; 32] {
        let (lo, hi) = if a < b { (a, b) } else { (b, a) };
        self.derive(shared, b"pairwise", lo, hi)
    }

    /// The key of `owner`'s self mask from its seed `b`.
    pub(crate) fn self_mask_key(&self, seed: &Scalar, owner: &MemberId) -> [u8; 32] {
        self.derive(seed.as_bytes(), b"self-mask", owner, owner)
    }

    fn share_cipher(&self, shared: &[u8; 32], from: &MemberId, to: &MemberId) -> ChaCha20Poly1305 {
        let key = self.derive(shared, b"share", from, to);
        ChaCha20Poly1305::new(Key::from_slice(&key))
    }

    fn aad(&self, from: &MemberId, to: &MemberId) -> Vec<u8> {
        let mut aad = Vec::with_capacity(LABEL.len() + 8 + 64);
        aad.extend_from_slice(LABEL);
        aad.extend_from_slice(&self.round.to_le_bytes());
        aad.extend_from_slice(from.as_bytes());
        aad.extend_from_slice(to.as_bytes());
        aad
    }

    /// Encrypts `from`'s shares for `to`.
    pub(crate) fn seal(
        &self,
        shared: &[u8; 32],
        from: &MemberId,
        to: &MemberId,
        seed_share: &Scalar,
        key_share: &Scalar,
    ) -> Vec<u8> {
        let mut plain = [0u8; PLAINTEXT_BYTES];
        plain[..SHARE_BYTES].copy_from_slice(seed_share.as_bytes());
        plain[SHARE_BYTES..].copy_from_slice(key_share.as_bytes());
        let aad = self.aad(from, to);
        let payload = Payload {
            msg: &plain,
            aad: &aad,
        };
        // Encryption of 64 bytes cannot fail (it only fails past ChaCha20's 256 GiB).
        self.share_cipher(shared, from, to)
            .encrypt(Nonce::from_slice(&[0; 12]), payload)
            .unwrap_or_default()
    }

    /// Decrypts the shares `from` sent to `to`: (seed share, key share), or `None` if the
    /// ciphertext is not authentic or does not hold two canonical scalars.
    pub(crate) fn open(
        &self,
        shared: &[u8; 32],
        from: &MemberId,
        to: &MemberId,
        ciphertext: &[u8],
    ) -> Option<(Scalar, Scalar)> {
        if ciphertext.len() != CIPHERTEXT_BYTES {
            return None;
        }
        let aad = self.aad(from, to);
        let payload = Payload {
            msg: ciphertext,
            aad: &aad,
        };
        let plain = self
            .share_cipher(shared, from, to)
            .decrypt(Nonce::from_slice(&[0; 12]), payload)
            .ok()?;
        Some((
            scalar_from_bytes(&plain[..SHARE_BYTES])?,
            scalar_from_bytes(&plain[SHARE_BYTES..])?,
        ))
    }
}

/// The x25519 agreement of `secret` with `public` (already checked not to be of small order).
pub(crate) fn agree(secret: &StaticSecret, public: &AgreementKey) -> [u8; 32] {
    secret.diffie_hellman(&public.to_x25519()).to_bytes()
}

/// The x25519 secret whose bytes are the scalar's.
pub(crate) fn x25519_secret(scalar: &Scalar) -> StaticSecret {
    StaticSecret::from(scalar.to_bytes())
}

/// A uniformly random scalar.
pub(crate) fn random_scalar(rng: &mut ChaCha20Rng) -> Scalar {
    let mut wide = [0u8; 64];
    rng.fill_bytes(&mut wide);
    Scalar::from_bytes_mod_order_wide(&wide)
}

/// A canonical scalar from 32 bytes.
pub(crate) fn scalar_from_bytes(bytes: &[u8]) -> Option<Scalar> {
    let bytes: [u8; 32] = bytes.try_into().ok()?;
    Option::from(Scalar::from_canonical_bytes(bytes))
}

/// Adds (`negate` false) or subtracts the mask expanded from `key` to `acc`, modulo 2^32.
pub(crate) fn apply_mask(acc: &mut [u32], key: &[u8; 32], negate: bool) {
    let mut rng = ChaCha20Rng::from_seed(*key);
    let mut buf = [0u8; 4096];
    for chunk in acc.chunks_mut(buf.len() / 4) {
        let bytes = &mut buf[..chunk.len() * 4];
        rng.fill_bytes(bytes);
        for (v, w) in chunk.iter_mut().zip(bytes.chunks_exact(4)) {
            let m = u32::from_le_bytes([w[0], w[1], w[2], w[3]]);
            *v = if negate {
                v.wrapping_sub(m)
            } else {
                v.wrapping_add(m)
            };
        }
    }
}

/// Splits `secret` into `count` shares (values at x = 1..=count), any `threshold` of which
/// rebuild it.
pub(crate) fn split(
    secret: &Scalar,
    threshold: usize,
    count: usize,
    rng: &mut ChaCha20Rng,
) -> Option<Vec<Scalar>> {
    let generator = ParticipantIdGenerator::Sequential {
        start: IdentifierPrimeField(Scalar::ONE),
        increment: IdentifierPrimeField(Scalar::ONE),
        count,
    };
    let shares: Vec<ScalarShare> = vsss_rs::shamir::split_secret_with_participant_generators(
        threshold,
        count,
        &IdentifierPrimeField(*secret),
        rng,
        &[generator],
    )
    .ok()?;
    Some(shares.into_iter().map(|s| s.value.0).collect())
}

/// Rebuilds a secret from `(x, value)` points with distinct nonzero `x` (at least two).
pub(crate) fn combine(points: &[(u64, Scalar)]) -> Option<Scalar> {
    let shares: Vec<ScalarShare> = points
        .iter()
        .map(|&(x, value)| ScalarShare {
            identifier: IdentifierPrimeField(Scalar::from(x)),
            value: IdentifierPrimeField(value),
        })
        .collect();
    shares.combine().ok().map(|s| s.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(i: u8) -> MemberId {
        MemberId([i; 32])
    }

    #[test]
    fn shamir_round_trip_any_threshold_subset() {
        let mut rng = ChaCha20Rng::from_seed([9; 32]);
        let secret = random_scalar(&mut rng);
        let shares = split(&secret, 3, 5, &mut rng).unwrap();
        assert_eq!(shares.len(), 5);
        for subset in [[0usize, 1, 2], [0, 2, 4], [4, 3, 1]] {
            let points: Vec<_> = subset.iter().map(|&i| (i as u64 + 1, shares[i])).collect();
            assert_eq!(combine(&points), Some(secret));
        }
        // Two shares of a threshold-3 secret rebuild something else.
        assert_ne!(combine(&[(1, shares[0]), (2, shares[1])]), Some(secret));
        // All five agree too.
        let all: Vec<_> = (0..5).map(|i| (i as u64 + 1, shares[i])).collect();
        assert_eq!(combine(&all), Some(secret));
        assert_eq!(combine(&all[..1]), None);
    }

    #[test]
    fn masks_cancel_and_keys_are_symmetric() {
        let ctx = Context {
            seed: [1; 32],
            round: 7,
        };
        let shared = [5; 32];
        let k1 = ctx.pairwise_key(&shared, &id(1), &id(2));
        assert_eq!(k1, ctx.pairwise_key(&shared, &id(2), &id(1)));
        assert_ne!(k1, ctx.pairwise_key(&shared, &id(1), &id(3)));
        let other_round = Context { round: 8, ..ctx };
        assert_ne!(k1, other_round.pairwise_key(&shared, &id(1), &id(2)));
        let mut v: Vec<u32> = (0..5000).collect();
        apply_mask(&mut v, &k1, false);
        assert_ne!(v[..10], (0..10).collect::<Vec<u32>>()[..]);
        apply_mask(&mut v, &k1, true);
        assert_eq!(v, (0..5000).collect::<Vec<u32>>());
    }

    #[test]
    fn sealed_shares_open_only_for_their_direction() {
        let ctx = Context {
            seed: [2; 32],
            round: 3,
        };
        let mut rng = ChaCha20Rng::from_seed([4; 32]);
        let (a, b) = (random_scalar(&mut rng), random_scalar(&mut rng));
        let shared = [7; 32];
        let ct = ctx.seal(&shared, &id(1), &id(2), &a, &b);
        assert_eq!(ct.len(), CIPHERTEXT_BYTES);
        assert_eq!(ctx.open(&shared, &id(1), &id(2), &ct), Some((a, b)));
        assert_eq!(ctx.open(&shared, &id(2), &id(1), &ct), None);
        assert_eq!(ctx.open(&[8; 32], &id(1), &id(2), &ct), None);
        let mut bad = ct.clone();
        bad[0] ^= 1;
        assert_eq!(ctx.open(&shared, &id(1), &id(2), &bad), None);
        assert_eq!(ctx.open(&shared, &id(1), &id(2), &ct[1..]), None);
    }
}
