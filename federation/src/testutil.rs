//! Fixtures for the crate's tests: a small community, member keys and certificates, signed
//! deltas, honest and malicious updates.

use hearth_protocol::{
    Aggregation, BaseModel, Certificate, DeltaSubmission, DpParams, Hash32, Keypair, LayerDelta,
    Limits, LoraShape, Manifest, Message, Payload, Period, Privacy, PrivacyMode, Role, Rule,
    Schedule, ServerOptimizer, Signed, Stamp, Target, decode_untrusted, encode,
};

use crate::adapter::{Adapter, State};
use crate::community::Community;
use crate::config::Config;

/// Manifest creation time; round `r` starts at `T0 + 600·r`.
pub(crate) const T0: u64 = 1_700_000_000;

/// Start of round `r`.
pub(crate) fn start(r: u64) -> u64 {
    T0 + 600 * r
}

/// A small LoRA shape: 2 layers × (attn_q 4×2, attn_v 3×2) = 28 values.
pub(crate) fn shape() -> LoraShape {
    LoraShape {
        rank: 2,
        alpha: 4.0,
        layers: 2,
        targets: vec![
            Target {
                module: "attn_q".into(),
                in_dim: 4,
                out_dim: 4,
            },
            Target {
                module: "attn_v".into(),
                in_dim: 4,
                out_dim: 3,
            },
        ],
        ffa_seed: 7,
    }
}

/// The admin key.
pub(crate) fn admin() -> Keypair {
    Keypair::from_seed([0xad; 32])
}

/// Member `i`'s key (`i ≥ 1`).
pub(crate) fn member(i: u32) -> Keypair {
    let mut seed = [0x5e; 32];
    seed[..4].copy_from_slice(&i.to_le_bytes());
    Keypair::from_seed(seed)
}

/// A local-DP community manifest (σ = 1, C = 1) with `rule`, rounds every 600 s.
pub(crate) fn manifest(rule: Rule) -> Manifest {
    Manifest {
        name: "federation tests".into(),
        admin: admin().member_id(),
        created: T0,
        base_model: BaseModel {
            name: "tiny".into(),
            sha256: Hash32::digest(b"tiny weights"),
        },
        lora: shape(),
        privacy: Privacy {
            mode: PrivacyMode::Local,
            ..Privacy::default()
        },
        aggregation: Aggregation {
            rule,
            optimizer: ServerOptimizer::None,
            ..Aggregation::default()
        },
        schedule: Schedule {
            period: Period::Every { secs: 600 },
            ..Schedule::default()
        },
        limits: Limits::default(),
    }
}

/// Signs `m` with the admin key.
pub(crate) fn signed(m: &Manifest) -> Signed<Manifest> {
    Signed::sign(m.clone(), &admin()).unwrap()
}

/// An admin-signed certificate for `key` with `roles`, valid in `[issued, expires)`.
pub(crate) fn certificate(
    m: &Manifest,
    key: &Keypair,
    issued: u64,
    expires: u64,
    roles: Vec<Role>,
) -> Signed<Certificate> {
    let body = Certificate {
        member: key.member_id(),
        community: m.community_id().unwrap(),
        issued,
        expires,
        roles,
    };
    Signed::sign(body, &admin()).unwrap()
}

/// A community for `m` on the zero adapter, with contributor certificates for members
/// `1..=members` valid for 100 days from `T0`.
pub(crate) fn community(m: &Manifest, members: u32) -> Community {
    let mut c = Community::new(
        &signed(m),
        State::genesis(Adapter::zeros(&m.lora)),
        Config::default(),
    )
    .unwrap();
    for i in 1..=members {
        let cert = certificate(
            m,
            &member(i),
            T0,
            T0 + 100 * 86_400,
            vec![Role::Contributor],
        );
        c.add_certificate(&cert, T0).unwrap();
    }
    c
}

/// A small deterministic generator (xorshift64*) for test data.
#[derive(Debug, Clone)]
pub(crate) struct Gen(u64);

impl Gen {
    pub(crate) fn new(seed: u64) -> Self {
        Gen(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `[0, 1)`.
    pub(crate) fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal (Box–Muller).
    pub(crate) fn normal(&mut self) -> f64 {
        let u = self.uniform().max(1e-300);
        let v = self.uniform();
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }
}

/// The values of a delta (flat, wire order) as a submission for `round` on `base`, quantized at
/// the finest power-of-two scale, with the DP parameters of `m`.
pub(crate) fn submission(
    m: &Manifest,
    round: u64,
    base: Hash32,
    values: &[f32],
) -> DeltaSubmission {
    let scale = hearth_training::fit_scale(values).unwrap();
    let q = hearth_training::quantize_exact(values, scale).unwrap();
    let mut rest = q.values.as_slice();
    let layers = m
        .lora
        .tensors()
        .into_iter()
        .map(|t| {
            let n = (t.rows * t.cols) as usize;
            let (head, tail) = rest.split_at(n);
            rest = tail;
            LayerDelta {
                name: t.name,
                rows: t.rows,
                cols: t.cols,
                values: head.to_vec(),
            }
        })
        .collect();
    let p = &m.privacy;
    DeltaSubmission::new(
        round,
        base,
        layers,
        scale,
        100,
        DpParams {
            mode: p.mode,
            clip_norm: p.clip_norm,
            noise_multiplier: p.noise_multiplier,
            noise_std: p.noise_multiplier * p.clip_norm,
        },
    )
}

/// An honest local-DP delta: a signal of norm `C/2` along a direction shared by everyone
/// (`direction` seed) plus per-member noise of std `σ·C`, from generator seed `seed`.
pub(crate) fn honest(m: &Manifest, round: u64, base: Hash32, seed: u64) -> DeltaSubmission {
    let d = m.lora.elements() as usize;
    let mut shared = Gen::new(0xd1ec);
    let dir: Vec<f64> = (0..d).map(|_| shared.normal()).collect();
    let len = dir.iter().map(|x| x * x).sum::<f64>().sqrt();
    let c = m.privacy.clip_norm;
    let std = m.privacy.noise_multiplier * c;
    let mut g = Gen::new(seed);
    let values: Vec<f32> = dir
        .iter()
        .map(|x| (x / len * c / 2.0 + std * g.normal()) as f32)
        .collect();
    submission(m, round, base, &values)
}

/// Seals `payload` from `key` for `round` with `nonce`, as wire bytes.
pub(crate) fn seal(
    m: &Manifest,
    key: &Keypair,
    round: u64,
    nonce: u64,
    payload: &Payload,
) -> Vec<u8> {
    let stamp = Stamp {
        community: m.community_id().unwrap(),
        round,
        nonce,
        timestamp: start(round),
    };
    encode(key, stamp, payload, &m.limits).unwrap()
}

/// [`seal`], then decode as a receiving node would.
pub(crate) fn message(
    m: &Manifest,
    key: &Keypair,
    round: u64,
    nonce: u64,
    payload: &Payload,
) -> Message {
    decode_untrusted(
        &seal(m, key, round, nonce, payload),
        &m.limits,
        &m.community_id().unwrap(),
    )
    .unwrap()
}

/// Member `i`'s honest delta for `round` on `base`, sealed.
pub(crate) fn delta_bytes(m: &Manifest, i: u32, round: u64, base: Hash32) -> Vec<u8> {
    let d = honest(m, round, base, u64::from(i) * 1_000 + round);
    seal(m, &member(i), round, 1, &Payload::Delta(d))
}
