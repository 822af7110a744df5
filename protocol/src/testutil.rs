//! Fixtures for the crate's unit tests: keys, a manifest for the default model, one sample
//! payload of every kind.

use crate::certificate::{Authority, Certificate, RevocationList, Role};
use crate::delta::{DeltaSubmission, DpParams, LayerDelta, VersionAnnouncement};
use crate::hash::Hash32;
use crate::identity::{Keypair, MemberId};
use crate::limits::Limits;
use crate::manifest::{
    Aggregation, BaseModel, LoraShape, Manifest, Privacy, PrivacyMode, Schedule, Target,
};
use crate::payload::Payload;
use crate::secagg::{
    AgreementKey, EncryptedShare, EncryptedShares, KeyAdvertisement, MaskedInput, MemberShare,
    SurvivorSet, UnmaskingShares,
};
use crate::signed::Signed;

/// The community admin key.
pub(crate) fn admin() -> Keypair {
    Keypair::from_seed([0xad; 32])
}

/// Member `i`'s key.
pub(crate) fn member(i: u8) -> Keypair {
    Keypair::from_seed([i; 32])
}

/// A manifest for SmolLM2-135M with FFA-LoRA rank 8 on attn_q and attn_v of 30 layers.
pub(crate) fn manifest() -> Manifest {
    Manifest {
        name: "test community".into(),
        admin: admin().member_id(),
        created: 1_700_000_000,
        base_model: BaseModel {
            name: "SmolLM2-135M-Instruct".into(),
            sha256: Hash32::digest(b"weights"),
        },
        lora: LoraShape {
            rank: 8,
            alpha: 16.0,
            layers: 30,
            targets: vec![
                Target {
                    module: "attn_q".into(),
                    in_dim: 576,
                    out_dim: 576,
                },
                Target {
                    module: "attn_v".into(),
                    in_dim: 576,
                    out_dim: 192,
                },
            ],
            ffa_seed: 42,
        },
        privacy: Privacy::default(),
        aggregation: Aggregation::default(),
        schedule: Schedule::default(),
        limits: Limits::default(),
    }
}

/// The authority of [`manifest`].
pub(crate) fn authority() -> Authority {
    Authority::new(manifest().community_id().unwrap(), admin().member_id())
}

/// A contributor certificate for `member`, valid in `[issued, expires)`.
pub(crate) fn certificate(member: &Keypair, issued: u64, expires: u64) -> Signed<Certificate> {
    let body = Certificate {
        member: member.member_id(),
        community: manifest().community_id().unwrap(),
        issued,
        expires,
        roles: vec![Role::Contributor],
    };
    Signed::sign(body, &admin()).unwrap()
}

/// A signed revocation list.
pub(crate) fn revocations(sequence: u64, revoked: &[MemberId]) -> Signed<RevocationList> {
    let body = RevocationList {
        community: manifest().community_id().unwrap(),
        sequence,
        issued: 1_700_000_000 + sequence,
        revoked: revoked.to_vec(),
    };
    Signed::sign(body, &admin()).unwrap()
}

/// A full-size delta for `shape` with deterministic values.
pub(crate) fn delta(round: u64, shape: &LoraShape) -> DeltaSubmission {
    let layers = shape
        .tensors()
        .into_iter()
        .enumerate()
        .map(|(t, s)| LayerDelta {
            values: (0..s.rows * s.cols)
                .map(|i| (i as i32 * 7919 + t as i32 * 31) % 65_521 - 32_760)
                .collect(),
            name: s.name,
            rows: s.rows,
            cols: s.cols,
        })
        .collect();
    DeltaSubmission::new(
        round,
        Hash32::digest(b"base"),
        layers,
        1.5e-5,
        120,
        DpParams {
            mode: PrivacyMode::Distributed,
            clip_norm: 1.0,
            noise_multiplier: 1.0,
            noise_std: 0.2,
        },
    )
}

/// One small payload of every kind, in kind-tag order, all for round 7.
pub(crate) fn samples() -> Vec<Payload> {
    let small = LoraShape {
        rank: 2,
        alpha: 4.0,
        layers: 1,
        targets: vec![Target {
            module: "attn_q".into(),
            in_dim: 3,
            out_dim: 3,
        }],
        ffa_seed: 1,
    };
    let key = |seed: u8| AgreementKey::from_secret(&x25519_dalek::StaticSecret::from([seed; 32]));
    let mut survivors = vec![member(1).member_id(), member(2).member_id()];
    survivors.sort();
    vec![
        Payload::Manifest(Box::new(Signed::sign(manifest(), &admin()).unwrap())),
        Payload::Certificate(certificate(&member(1), 1_000, 2_000)),
        Payload::Revocations(revocations(1, &[member(3).member_id()])),
        Payload::Delta(delta(7, &small)),
        Payload::Version(VersionAnnouncement {
            round: 7,
            parent: Hash32::digest(b"v6"),
            version: Hash32::digest(b"v7"),
            deltas: vec![Hash32::digest(b"d")],
        }),
        Payload::Keys(KeyAdvertisement {
            round: 7,
            cipher_key: key(1),
            mask_key: key(2),
            seed_commitment: key(3),
        }),
        Payload::Shares(EncryptedShares {
            round: 7,
            shares: vec![EncryptedShare {
                recipient: member(2).member_id(),
                ciphertext: vec![1, 2, 3],
            }],
        }),
        Payload::Masked(MaskedInput {
            round: 7,
            values: vec![0, 1, u32::MAX],
            peers: vec![member(2).member_id()],
        }),
        Payload::Unmasking(UnmaskingShares {
            round: 7,
            self_mask_shares: vec![MemberShare {
                member: member(1).member_id(),
                share: vec![9; 4],
            }],
            key_shares: vec![MemberShare {
                member: member(2).member_id(),
                share: vec![8; 4],
            }],
        }),
        Payload::Survivors(SurvivorSet {
            round: 7,
            survivors,
        }),
    ]
}
