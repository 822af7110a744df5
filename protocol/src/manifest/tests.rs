//! Manifest validation, limits and pinned encodings.

use super::*;
use crate::codec::from_cbor;
use crate::identity::Keypair;
use crate::testutil::{admin, manifest};

#[test]
fn default_model_shape() {
    let m = manifest();
    let tensors = m.lora.tensors();
    assert_eq!(tensors.len(), 60);
    assert_eq!(tensors[0].name, "blk.0.attn_q");
    assert_eq!((tensors[1].rows, tensors[1].cols), (192, 8));
    assert_eq!(tensors[59].name, "blk.29.attn_v");
    assert_eq!(m.lora.elements(), 184_320);
    m.validate().unwrap();
}

/// The enum spellings docs/PROTOCOL.md gives.
#[test]
fn enum_wire_names() {
    fn enc<T: Serialize>(value: &T) -> String {
        String::from_utf8_lossy(&to_cbor("test", value).unwrap()).into_owned()
    }
    assert!(enc(&PrivacyMode::Distributed).contains("distributed"));
    assert!(enc(&Rule::TrimmedMean { beta: 0.1 }).contains("trimmed_mean"));
    assert!(
        enc(&ServerOptimizer::FedAvgM {
            lr: 1.0,
            momentum: 0.5
        })
        .contains("fed_avg_m")
    );
    assert!(
        enc(&ServerOptimizer::FedAdam {
            lr: 1.0,
            beta1: 0.5,
            beta2: 0.5,
            epsilon: 0.5
        })
        .contains("fed_adam")
    );
    assert!(enc(&Period::OnDemand).contains("on_demand"));
    assert!(enc(&Period::Every { secs: 1 }).contains("every"));
    // Floats take the shortest exact width: 1.0 as half, 0.1 as double.
    assert_eq!(to_cbor("f", &1.0f64).unwrap(), [0xf9, 0x3c, 0x00]);
    assert_eq!(
        to_cbor("f", &0.1f64).unwrap(),
        [0xfb, 0x3f, 0xb9, 0x99, 0x99, 0x99, 0x99, 0x99, 0x9a]
    );
}

#[test]
fn signed_manifest_verifies_and_names_the_community() {
    let signed = Signed::sign(manifest(), &admin()).unwrap();
    let id = signed.verify().unwrap();
    assert_eq!(id, manifest().community_id().unwrap());
    let mut other = manifest();
    other.created += 1;
    assert_ne!(other.community_id().unwrap(), id);

    let forged = Signed::sign(manifest(), &Keypair::from_seed([9; 32])).unwrap();
    assert!(matches!(
        forged.verify(),
        Err(Error::BadSignature {
            what: "manifest",
            ..
        })
    ));
}

#[test]
fn invalid_fields_are_rejected() {
    type Mutation = Box<dyn Fn(&mut Manifest)>;
    let cases: Vec<(&str, Mutation)> = vec![
        ("lora.rank", Box::new(|m| m.lora.rank = 0)),
        ("lora.alpha", Box::new(|m| m.lora.alpha = f32::NAN)),
        ("lora.layers", Box::new(|m| m.lora.layers = 0)),
        ("lora.targets", Box::new(|m| m.lora.targets.clear())),
        (
            "lora.targets",
            Box::new(|m| {
                let t = m.lora.targets[0].clone();
                m.lora.targets.push(t);
            }),
        ),
        ("lora.targets", Box::new(|m| m.lora.targets[0].in_dim = 0)),
        ("privacy.clip_norm", Box::new(|m| m.privacy.clip_norm = 0.0)),
        ("privacy.delta", Box::new(|m| m.privacy.delta = 0.5)),
        (
            "privacy.noise_multiplier",
            Box::new(|m| m.privacy.noise_multiplier = -1.0),
        ),
        (
            "privacy.budget_rho",
            Box::new(|m| m.privacy.budget_rho = f64::INFINITY),
        ),
        (
            "aggregation.min_group_size",
            Box::new(|m| m.aggregation.min_group_size = 2),
        ),
        (
            "aggregation.weighting",
            Box::new(|m| m.aggregation.weighting = Weighting::SampleCount { cap: 10 }),
        ),
        (
            "aggregation.rule.beta",
            Box::new(|m| m.aggregation.rule = Rule::TrimmedMean { beta: 0.5 }),
        ),
        (
            "optimizer.momentum",
            Box::new(|m| {
                m.aggregation.optimizer = ServerOptimizer::FedAvgM {
                    lr: 1.0,
                    momentum: 1.0,
                }
            }),
        ),
        (
            "optimizer.epsilon",
            Box::new(|m| {
                m.aggregation.optimizer = ServerOptimizer::FedAdam {
                    lr: 0.1,
                    beta1: 0.9,
                    beta2: 0.99,
                    epsilon: 0.0,
                }
            }),
        ),
        (
            "schedule deadlines",
            Box::new(|m| m.schedule.unmask_secs = m.schedule.submit_secs),
        ),
        (
            "schedule.period",
            Box::new(|m| m.schedule.period = Period::Every { secs: 60 }),
        ),
        (
            "schedule.sampling_rate",
            Box::new(|m| m.schedule.sampling_rate = 0.0),
        ),
        (
            "schedule.min_contributions",
            Box::new(|m| m.schedule.min_contributions = 0),
        ),
        ("community name", Box::new(|m| m.name.clear())),
        ("max_roles", Box::new(|m| m.limits.max_roles = 0)),
    ];
    for (field, mutate) in cases {
        let mut m = manifest();
        mutate(&mut m);
        match m.validate() {
            Err(Error::InvalidValue { field: f, .. }) => assert_eq!(f, field),
            other => panic!("{field}: expected InvalidValue, got {other:?}"),
        }
    }
}

#[test]
fn aggregation_limits_at_and_past() {
    let field_of = |m: &Manifest| match m.validate() {
        Err(Error::InvalidValue { field, .. }) => Some(field),
        Ok(()) => None,
        other => panic!("{other:?}"),
    };
    // Smallest group: MIN_GROUP_SIZE passes, one less fails; max_cohort passes, one more fails.
    let mut m = manifest();
    m.aggregation.min_group_size = MIN_GROUP_SIZE;
    assert_eq!(field_of(&m), None);
    m.aggregation.min_group_size = MIN_GROUP_SIZE - 1;
    assert_eq!(field_of(&m), Some("aggregation.min_group_size"));
    m.aggregation.min_group_size = m.limits.max_cohort;
    assert_eq!(field_of(&m), None);
    m.aggregation.min_group_size = m.limits.max_cohort + 1;
    assert_eq!(field_of(&m), Some("aggregation.min_group_size"));
    // Sample-count weighting: caps 1 and MAX_WEIGHT_CAP pass, 0 and one more fail; only in
    // local mode.
    let mut m = manifest();
    m.privacy.mode = PrivacyMode::Local;
    for (cap, ok) in [
        (1, true),
        (MAX_WEIGHT_CAP, true),
        (0, false),
        (MAX_WEIGHT_CAP + 1, false),
    ] {
        m.aggregation.weighting = Weighting::SampleCount { cap };
        let want = (!ok).then_some("aggregation.weighting");
        assert_eq!(field_of(&m), want, "cap {cap}");
    }
    m.aggregation.weighting = Weighting::SampleCount { cap: 100 };
    m.privacy.mode = PrivacyMode::Distributed;
    assert_eq!(field_of(&m), Some("aggregation.weighting"));
    m.aggregation.weighting = Weighting::Uniform;
    assert_eq!(field_of(&m), None);
}

#[test]
fn weights() {
    assert_eq!(Weighting::Uniform.weight(500), 1.0);
    let w = Weighting::SampleCount { cap: 100 };
    assert_eq!(w.weight(0), 1.0);
    assert_eq!(w.weight(40), 40.0);
    assert_eq!(w.weight(100), 100.0);
    assert_eq!(w.weight(101), 100.0);
}

/// The probe set: text size and tolerance at and past their limits; a manifest without one
/// keeps its bytes, one with it round-trips and names another community.
#[test]
fn probe_set_limits_and_encoding() {
    let base = manifest();
    let with = |text: String, max_increase: f64| {
        let mut m = base.clone();
        m.aggregation.probe = Some(ProbeSet { text, max_increase });
        m
    };
    let at = MAX_PROBE_BYTES as usize;
    with("a".repeat(at), 0.05).validate().unwrap();
    assert!(matches!(
        with("a".repeat(at + 1), 0.05).validate(),
        Err(Error::LimitExceeded {
            what: "probe text bytes",
            found,
            ..
        }) if found == at as u64 + 1
    ));
    let field_of = |m: &Manifest| match m.validate() {
        Err(Error::InvalidValue { field, .. }) => Some(field),
        _ => None,
    };
    assert_eq!(
        field_of(&with(" \n ".into(), 0.05)),
        Some("aggregation.probe.text")
    );
    with("to be".into(), MAX_PROBE_INCREASE).validate().unwrap();
    for bad in [
        0.0,
        -1.0,
        MAX_PROBE_INCREASE * 1.001,
        f64::NAN,
        f64::INFINITY,
    ] {
        assert_eq!(
            field_of(&with("to be".into(), bad)),
            Some("aggregation.probe.max_increase"),
            "{bad}"
        );
    }
    let probed = with("To be, or not to be".into(), 0.05);
    let bytes = to_cbor("manifest", &probed).unwrap();
    let back: Manifest = crate::codec::from_canonical_cbor("manifest", &bytes).unwrap();
    assert_eq!(back, probed);
    assert_ne!(probed.community_id().unwrap(), base.community_id().unwrap());
    // An explicit `null` is not the canonical spelling of "no probe set".
    let plain = to_cbor("aggregation", &Aggregation::default()).unwrap();
    assert_eq!(plain[0], 0xa4);
    let nulled = [&[0xa5][..], &plain[1..], &[0x65], b"probe", &[0xf6]].concat();
    assert_eq!(
        from_cbor::<Aggregation>("aggregation", &nulled).unwrap(),
        Aggregation::default()
    );
    assert!(matches!(
        crate::codec::from_canonical_cbor::<Aggregation>("aggregation", &nulled),
        Err(Error::NonCanonical { .. })
    ));
}

/// The aggregation map as docs/PROTOCOL.md §6.2 spells it, and the community id of the test
/// manifest (docs/PROTOCOL.md §13): any change to the manifest's encoding changes it.
#[test]
fn manifest_encoding_is_pinned() {
    let enc = to_cbor("aggregation", &Aggregation::default()).unwrap();
    let want = [
        &[0xa4][..],
        &[0x64],
        b"rule",
        &[0x64],
        b"mean",
        &[0x69],
        b"optimizer",
        &[0x64],
        b"none",
        &[0x69],
        b"weighting",
        &[0x67],
        b"uniform",
        &[0x6e],
        b"min_group_size",
        &[0x08],
    ]
    .concat();
    assert_eq!(enc, want);
    let capped = Weighting::SampleCount { cap: 500 };
    let enc = to_cbor("weighting", &capped).unwrap();
    let want = [
        &[0xa1, 0x6c][..],
        b"sample_count",
        &[0xa1, 0x63],
        b"cap",
        &[0x19, 0x01, 0xf4],
    ]
    .concat();
    assert_eq!(enc, want);
    assert_eq!(
        manifest().community_id().unwrap().to_string(),
        "c261ddc1702d4e6e1819e7333ebd5ee788b641c4d92bdc6045592925d5d030cf"
    );
}

#[test]
fn shape_limits_at_and_past() {
    // Targets: at the limit passes, one more fails.
    let mut m = manifest();
    m.limits.max_targets = 2;
    m.validate().unwrap();
    m.limits.max_targets = 1;
    assert!(matches!(
        m.validate(),
        Err(Error::LimitExceeded {
            what: "lora target modules",
            found: 2,
            max: 1
        })
    ));
    // Layers.
    let mut m = manifest();
    m.limits.max_layers = 30;
    m.validate().unwrap();
    m.limits.max_layers = 29;
    assert!(matches!(
        m.validate(),
        Err(Error::LimitExceeded {
            what: "lora layers",
            found: 30,
            max: 29
        })
    ));
    // Tensor elements: attn_q is 576 x 8.
    let mut m = manifest();
    m.limits.max_tensor_elements = 4608;
    m.validate().unwrap();
    m.limits.max_tensor_elements = 4607;
    assert!(matches!(
        m.validate(),
        Err(Error::LimitExceeded {
            what: "tensor elements",
            found: 4608,
            max: 4607
        })
    ));
    // Tensors: 60.
    let mut m = manifest();
    m.limits.max_tensors = 60;
    m.validate().unwrap();
    m.limits.max_tensors = 59;
    assert!(matches!(
        m.validate(),
        Err(Error::LimitExceeded {
            what: "tensors",
            found: 60,
            max: 59
        })
    ));
    // Delta elements: 184,320.
    let mut m = manifest();
    m.limits.max_tensor_elements = 4608;
    m.limits.max_delta_elements = 184_320;
    m.validate().unwrap();
    m.limits.max_delta_elements = 184_319;
    assert!(matches!(
        m.validate(),
        Err(Error::LimitExceeded {
            what: "delta elements",
            ..
        })
    ));
    // Rank.
    let mut m = manifest();
    m.limits.max_rank = 8;
    m.validate().unwrap();
    m.limits.max_rank = 7;
    assert!(matches!(
        m.validate(),
        Err(Error::InvalidValue {
            field: "lora.rank",
            ..
        })
    ));
    // Names.
    let mut m = manifest();
    m.name = "x".repeat(m.limits.max_name_bytes as usize);
    m.validate().unwrap();
    m.name.push('x');
    assert!(matches!(
        m.validate(),
        Err(Error::LimitExceeded {
            what: "community name",
            ..
        })
    ));
}
