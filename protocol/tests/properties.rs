//! Property tests over the public API: every message kind round-trips through
//! encode → sign → decode → verify; random bytes and random bit flips never get through.

use std::collections::BTreeSet;

use hearth_protocol::{
    Aggregation, AgreementKey, BaseModel, Certificate, DeltaSubmission, DpParams, EncryptedShare,
    EncryptedShares, Error, Hash32, KeyAdvertisement, Keypair, Kind, LayerDelta, Limits, LoraShape,
    MAX_WEIGHT_CAP, MIN_GROUP_SIZE, Manifest, MaskedInput, MemberId, MemberShare, Payload, Period,
    Privacy, PrivacyMode, RevocationList, Role, Rule, Schedule, ServerOptimizer, Signed, Stamp,
    SurvivorSet, Target, UnmaskingShares, VersionAnnouncement, Weighting, decode_payload,
    decode_untrusted, encode,
};
use proptest::prelude::*;

const ROUND: u64 = 11;

fn hash() -> impl Strategy<Value = Hash32> {
    any::<[u8; 32]>().prop_map(Hash32)
}

fn member_id() -> impl Strategy<Value = MemberId> {
    any::<[u8; 32]>().prop_map(MemberId)
}

fn admin() -> Keypair {
    Keypair::from_seed([0xad; 32])
}

fn name() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9_. -]{1,40}"
}

fn mode() -> impl Strategy<Value = PrivacyMode> {
    prop_oneof![Just(PrivacyMode::Distributed), Just(PrivacyMode::Local)]
}

fn lora() -> impl Strategy<Value = LoraShape> {
    (
        1u32..=16,
        0.01f32..64.0,
        1u32..=8,
        proptest::collection::btree_map("[a-z_]{1,12}", (1u32..=1024, 1u32..=1024), 1..=4),
        any::<u64>(),
    )
        .prop_map(|(rank, alpha, layers, targets, ffa_seed)| LoraShape {
            rank,
            alpha,
            layers,
            targets: targets
                .into_iter()
                .map(|(module, (in_dim, out_dim))| Target {
                    module,
                    in_dim,
                    out_dim,
                })
                .collect(),
            ffa_seed,
        })
}

fn privacy() -> impl Strategy<Value = Privacy> {
    (
        mode(),
        0.0f64..20.0,
        0.001f64..100.0,
        1e-12f64..0.1,
        0.001f64..100.0,
    )
        .prop_map(
            |(mode, noise_multiplier, clip_norm, delta, budget_rho)| Privacy {
                mode,
                noise_multiplier,
                clip_norm,
                delta,
                budget_rho,
            },
        )
}

fn aggregation() -> impl Strategy<Value = Aggregation> {
    let rule = prop_oneof![
        Just(Rule::Mean),
        (0.0f64..0.49).prop_map(|beta| Rule::TrimmedMean { beta }),
        Just(Rule::Median),
    ];
    let optimizer = prop_oneof![
        Just(ServerOptimizer::None),
        (0.001f64..10.0, 0.0f64..0.99)
            .prop_map(|(lr, momentum)| ServerOptimizer::FedAvgM { lr, momentum }),
        (0.001f64..10.0, 0.0f64..0.99, 0.0f64..0.999, 1e-9f64..0.1).prop_map(
            |(lr, beta1, beta2, epsilon)| ServerOptimizer::FedAdam {
                lr,
                beta1,
                beta2,
                epsilon
            }
        ),
    ];
    let weighting = prop_oneof![
        Just(Weighting::Uniform),
        (1u32..=MAX_WEIGHT_CAP).prop_map(|cap| Weighting::SampleCount { cap }),
    ];
    (rule, optimizer, weighting, MIN_GROUP_SIZE..64).prop_map(
        |(rule, optimizer, weighting, min_group_size)| Aggregation {
            rule,
            optimizer,
            weighting,
            min_group_size,
            probe: None,
        },
    )
}

fn schedule() -> impl Strategy<Value = Schedule> {
    (
        any::<bool>(),
        1u64..1000,
        1u64..1000,
        1u64..1000,
        0u64..1000,
        0.001f64..=1.0,
        1u32..100,
    )
        .prop_map(
            |(on_demand, a, b, c, slack, sampling_rate, min_contributions)| {
                let (submit, unmask, announce) = (a, a + b, a + b + c);
                Schedule {
                    period: if on_demand {
                        Period::OnDemand
                    } else {
                        Period::Every {
                            secs: announce + slack,
                        }
                    },
                    submit_secs: submit,
                    unmask_secs: unmask,
                    announce_secs: announce,
                    sampling_rate,
                    min_contributions,
                }
            },
        )
}

fn manifest() -> impl Strategy<Value = Manifest> {
    (
        name(),
        any::<u64>(),
        name(),
        hash(),
        lora(),
        privacy(),
        aggregation(),
        schedule(),
    )
        .prop_map(
            |(name, created, model, sha256, lora, privacy, mut aggregation, schedule)| {
                // Sample-count weighting is for plain rounds only.
                if privacy.mode == PrivacyMode::Distributed {
                    aggregation.weighting = Weighting::Uniform;
                }
                Manifest {
                    name,
                    admin: admin().member_id(),
                    created,
                    base_model: BaseModel {
                        name: model,
                        sha256,
                    },
                    lora,
                    privacy,
                    aggregation,
                    schedule,
                    limits: Limits::default(),
                }
            },
        )
}

fn certificate() -> impl Strategy<Value = Signed<Certificate>> {
    let roles = proptest::sample::subsequence(
        vec![Role::Contributor, Role::Announcer, Role::Observer],
        0..=3,
    );
    (
        member_id(),
        hash(),
        0u64..u64::MAX / 2,
        1u64..=34_560_000,
        roles,
    )
        .prop_map(|(member, community, issued, validity, roles)| {
            let body = Certificate {
                member,
                community,
                issued,
                expires: issued + validity,
                roles,
            };
            Signed::sign(body, &admin()).expect("sign")
        })
}

fn revocations() -> impl Strategy<Value = Signed<RevocationList>> {
    (
        hash(),
        any::<u64>(),
        any::<u64>(),
        proptest::collection::vec(member_id(), 0..20),
    )
        .prop_map(|(community, sequence, issued, revoked)| {
            let body = RevocationList {
                community,
                sequence,
                issued,
                revoked,
            };
            Signed::sign(body, &admin()).expect("sign")
        })
}

fn layer(index: usize) -> impl Strategy<Value = LayerDelta> {
    (1u32..=8, 1u32..=8)
        .prop_flat_map(move |(rows, cols)| {
            let values = proptest::collection::vec(any::<i32>(), (rows * cols) as usize);
            (Just(rows), Just(cols), values)
        })
        .prop_map(move |(rows, cols, values)| LayerDelta {
            name: format!("blk.{index}.attn_q"),
            rows,
            cols,
            values,
        })
}

fn delta() -> impl Strategy<Value = DeltaSubmission> {
    let layers = (0usize..5).prop_flat_map(|n| (0..n).map(layer).collect::<Vec<_>>());
    let dp = (mode(), 0.001f64..10.0, 0.0f64..10.0, 0.0f64..10.0).prop_map(
        |(mode, clip_norm, noise_multiplier, noise_std)| DpParams {
            mode,
            clip_norm,
            noise_multiplier,
            noise_std,
        },
    );
    (hash(), layers, 1e-9f32..1e3, any::<u32>(), dp).prop_map(
        |(base, layers, scale, samples, dp)| {
            DeltaSubmission::new(ROUND, base, layers, scale, samples, dp)
        },
    )
}

fn version() -> impl Strategy<Value = VersionAnnouncement> {
    (
        hash(),
        hash(),
        proptest::collection::btree_set(hash(), 0..10),
    )
        .prop_map(|(parent, version, deltas)| VersionAnnouncement {
            round: ROUND,
            parent,
            version,
            deltas: deltas.into_iter().collect(),
        })
}

fn agreement_key() -> impl Strategy<Value = AgreementKey> {
    any::<[u8; 32]>()
        .prop_map(|seed| AgreementKey::from_secret(&x25519_dalek::StaticSecret::from(seed)))
}

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..=max)
}

fn member_shares(members: BTreeSet<MemberId>) -> impl Strategy<Value = Vec<MemberShare>> {
    let n = members.len();
    proptest::collection::vec(bytes(64), n).prop_map(move |shares| {
        members
            .iter()
            .zip(shares)
            .map(|(member, share)| MemberShare {
                member: *member,
                share,
            })
            .collect()
    })
}

fn payload() -> impl Strategy<Value = Payload> {
    let shares = proptest::collection::btree_map(member_id(), bytes(200), 0..10).prop_map(|m| {
        Payload::Shares(EncryptedShares {
            round: ROUND,
            shares: m
                .into_iter()
                .map(|(recipient, ciphertext)| EncryptedShare {
                    recipient,
                    ciphertext,
                })
                .collect(),
        })
    });
    let unmasking = (
        proptest::collection::btree_set(member_id(), 0..8),
        proptest::collection::btree_set(member_id(), 0..8),
    )
        .prop_flat_map(|(a, b)| {
            let b: BTreeSet<MemberId> = b.difference(&a).copied().collect();
            (member_shares(a), member_shares(b))
        })
        .prop_map(|(self_mask_shares, key_shares)| {
            Payload::Unmasking(UnmaskingShares {
                round: ROUND,
                self_mask_shares,
                key_shares,
            })
        });
    prop_oneof![
        manifest().prop_map(|m| {
            Payload::Manifest(Box::new(Signed::sign(m, &admin()).expect("sign")))
        }),
        certificate().prop_map(Payload::Certificate),
        revocations().prop_map(Payload::Revocations),
        delta().prop_map(Payload::Delta),
        version().prop_map(Payload::Version),
        (agreement_key(), agreement_key(), agreement_key()).prop_map(
            |(cipher_key, mask_key, seed_commitment)| {
                Payload::Keys(KeyAdvertisement {
                    round: ROUND,
                    cipher_key,
                    mask_key,
                    seed_commitment,
                })
            }
        ),
        shares,
        (
            proptest::collection::vec(any::<u32>(), 0..300),
            proptest::collection::btree_set(member_id(), 0..30),
        )
            .prop_map(|(values, peers)| {
                Payload::Masked(MaskedInput {
                    round: ROUND,
                    values,
                    peers: peers.into_iter().collect(),
                })
            }),
        unmasking,
        proptest::collection::btree_set(member_id(), 0..30).prop_map(|s| {
            Payload::Survivors(SurvivorSet {
                round: ROUND,
                survivors: s.into_iter().collect(),
            })
        }),
    ]
}

fn stamp(community: Hash32, nonce: u64, timestamp: u64) -> Stamp {
    Stamp {
        community,
        round: ROUND,
        nonce,
        timestamp,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn every_message_round_trips(
        payload in payload(),
        seed in any::<[u8; 32]>(),
        community in hash(),
        nonce in any::<u64>(),
        timestamp in any::<u64>(),
    ) {
        let key = Keypair::from_seed(seed);
        let limits = Limits::default();
        let bytes = encode(&key, stamp(community, nonce, timestamp), &payload, &limits)
            .expect("encode");
        let message = decode_untrusted(&bytes, &limits, &community).expect("decode");
        prop_assert_eq!(&message.payload, &payload);
        prop_assert_eq!(message.header.kind, payload.kind());
        prop_assert_eq!(message.header.sender, key.member_id());
        prop_assert_eq!(message.header.community, community);
        prop_assert_eq!(message.header.round, ROUND);
        prop_assert_eq!(message.header.nonce, nonce);
        prop_assert_eq!(message.header.timestamp, timestamp);
        // Admin-signed payloads still verify against the admin after the trip.
        match &message.payload {
            Payload::Manifest(m) => {
                prop_assert_eq!(m.verify().expect("manifest"), m.body.community_id().expect("id"));
            }
            Payload::Certificate(c) => c.verify_signature(&admin().member_id()).expect("cert"),
            Payload::Revocations(r) => r.verify_signature(&admin().member_id()).expect("list"),
            _ => {}
        }
    }

    #[test]
    fn a_flipped_bit_is_always_rejected(
        payload in payload(),
        seed in any::<[u8; 32]>(),
        bit in any::<proptest::sample::Index>(),
    ) {
        let community = Hash32::digest(b"c");
        let limits = Limits::default();
        let bytes = encode(&Keypair::from_seed(seed), stamp(community, 1, 2), &payload, &limits)
            .expect("encode");
        let bit = bit.index(bytes.len() * 8);
        let mut flipped = bytes;
        flipped[bit / 8] ^= 1 << (bit % 8);
        prop_assert!(decode_untrusted(&flipped, &limits, &community).is_err());
    }

    #[test]
    fn random_bytes_are_rejected_without_panicking(bytes in bytes(2048)) {
        let limits = Limits::default();
        prop_assert!(decode_untrusted(&bytes, &limits, &Hash32::ZERO).is_err());
        for kind in Kind::ALL {
            let _ = decode_payload(kind, &bytes, &limits);
        }
    }

    #[test]
    fn truncated_messages_are_reported_as_truncated(
        payload in payload(),
        cut in any::<proptest::sample::Index>(),
    ) {
        let community = Hash32::digest(b"c");
        let limits = Limits::default();
        let bytes = encode(&admin(), stamp(community, 1, 2), &payload, &limits).expect("encode");
        let len = cut.index(bytes.len());
        prop_assert_eq!(
            decode_untrusted(&bytes[..len], &limits, &community),
            Err(Error::Truncated { what: "envelope", len })
        );
    }
}
