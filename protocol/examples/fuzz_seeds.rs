//! Writes a seed corpus for the fuzz targets in `fuzz/`: one valid envelope of every message
//! kind (community id all-zero, as the `envelope` target expects) and, for the `payload` target,
//! each payload prefixed by its kind's index in `Kind::ALL`.
//!
//! `cargo run -p hearth-protocol --example fuzz_seeds -- fuzz/corpus`

use std::path::PathBuf;

use hearth_protocol::{
    Aggregation, AgreementKey, BaseModel, Certificate, DeltaSubmission, DpParams, EncryptedShare,
    EncryptedShares, Hash32, KeyAdvertisement, Keypair, Kind, LayerDelta, Limits, LoraShape,
    Manifest, MaskedInput, MemberShare, Payload, Privacy, PrivacyMode, RevocationList, Role,
    Schedule, Signed, Stamp, SurvivorSet, Target, UnmaskingShares, VersionAnnouncement, encode,
};

fn payloads() -> Result<Vec<Payload>, hearth_protocol::Error> {
    let admin = Keypair::from_seed([0xad; 32]);
    let member = |i: u8| Keypair::from_seed([i; 32]).member_id();
    let shape = LoraShape {
        rank: 2,
        alpha: 4.0,
        layers: 1,
        targets: vec![Target {
            module: "attn_q".into(),
            in_dim: 3,
            out_dim: 3,
        }],
        ffa_seed: 7,
    };
    let manifest = Manifest {
        name: "seed".into(),
        admin: admin.member_id(),
        created: 1,
        base_model: BaseModel {
            name: "tiny".into(),
            sha256: Hash32::digest(b"weights"),
        },
        lora: shape.clone(),
        privacy: Privacy::default(),
        aggregation: Aggregation::default(),
        schedule: Schedule::default(),
        limits: Limits::default(),
    };
    let community = manifest.community_id()?;
    let key = |seed: u8| AgreementKey::from_secret(&x25519_dalek::StaticSecret::from([seed; 32]));
    let mut survivors = vec![member(1), member(2), member(3)];
    survivors.sort();
    let layers = shape
        .tensors()
        .into_iter()
        .map(|t| LayerDelta {
            values: (0..(t.rows * t.cols) as i32).map(|v| v - 3).collect(),
            name: t.name,
            rows: t.rows,
            cols: t.cols,
        })
        .collect();
    let dp = DpParams {
        mode: PrivacyMode::Local,
        clip_norm: 1.0,
        noise_multiplier: 0.8,
        noise_std: 0.8,
    };
    Ok(vec![
        Payload::Manifest(Box::new(Signed::sign(manifest, &admin)?)),
        Payload::Certificate(Signed::sign(
            Certificate {
                member: member(1),
                community,
                issued: 10,
                expires: 1000,
                roles: vec![Role::Contributor, Role::Announcer],
            },
            &admin,
        )?),
        Payload::Revocations(Signed::sign(
            RevocationList {
                community,
                sequence: 1,
                issued: 5,
                revoked: vec![member(4)],
            },
            &admin,
        )?),
        Payload::Delta(DeltaSubmission::new(1, Hash32::ZERO, layers, 0.01, 3, dp)),
        Payload::Version(VersionAnnouncement {
            round: 1,
            parent: Hash32::ZERO,
            version: Hash32::digest(b"v1"),
            deltas: vec![Hash32::digest(b"d")],
        }),
        Payload::Keys(KeyAdvertisement {
            round: 1,
            cipher_key: key(1),
            mask_key: key(2),
            seed_commitment: key(3),
        }),
        Payload::Shares(EncryptedShares {
            round: 1,
            shares: vec![EncryptedShare {
                recipient: member(2),
                ciphertext: vec![0xab; 48],
            }],
        }),
        Payload::Masked(MaskedInput {
            round: 1,
            values: vec![1, 2, 3, u32::MAX],
            peers: survivors[..2].to_vec(),
        }),
        Payload::Unmasking(UnmaskingShares {
            round: 1,
            self_mask_shares: vec![MemberShare {
                member: member(1),
                share: vec![1; 33],
            }],
            key_shares: vec![MemberShare {
                member: member(3),
                share: vec![2; 33],
            }],
        }),
        Payload::Survivors(SurvivorSet {
            round: 1,
            survivors,
        }),
    ])
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "fuzz/corpus".into()),
    );
    let envelopes = root.join("envelope");
    let bodies = root.join("payload");
    std::fs::create_dir_all(&envelopes)?;
    std::fs::create_dir_all(&bodies)?;
    let key = Keypair::from_seed([1; 32]);
    let limits = Limits::default();
    for payload in payloads()? {
        let kind = payload.kind();
        let stamp = Stamp {
            community: Hash32::ZERO,
            round: 1,
            nonce: u64::from(kind.tag()),
            timestamp: 1_700_000_000,
        };
        let name = format!("{kind:?}").to_lowercase();
        std::fs::write(
            envelopes.join(&name),
            encode(&key, stamp, &payload, &limits)?,
        )?;
        let index = Kind::ALL.iter().position(|k| *k == kind).unwrap_or(0) as u8;
        let mut body = vec![index];
        body.extend(payload.to_bytes()?);
        std::fs::write(bodies.join(&name), body)?;
    }
    println!("wrote {} seeds to {}", 2 * Kind::ALL.len(), root.display());
    Ok(())
}
