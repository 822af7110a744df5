//! A whole secure round among in-process nodes, each a `Community` with the real
//! `secagg::Engine`, exchanging signed envelopes: keys, shares, masked inputs, survivor sets,
//! unmasking shares, version announcements.
//!
//! Prints, per cohort size: groups, wall time of the round (every node in this one process, one
//! after the other), CPU time per node (its own calls: start, ticks, submit, and decoding and
//! checking everything it receives), bytes each member publishes (by kind), and whether every
//! node closed with the same version. With `--drop` a sixth of each round's nodes go down after
//! masking (they are still in the sum; their masks are removed with shares revealed by the
//! others).
//!
//! `cargo run --release -p hearth-federation --example bench_secure_round [-- --small] [-- --big] [-- --drop]`
//! (`--small`: 28-value adapter instead of SmolLM2-135M's 184,320; `--big`: adds 64 members).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use hearth_federation::{Adapter, Community, Config, Output, State, secagg::Engine};
use hearth_protocol::{
    Aggregation, BaseModel, Certificate, DeltaSubmission, DpParams, Hash32, Keypair, LayerDelta,
    Limits, LoraShape, Manifest, Payload, Period, Privacy, PrivacyMode, Role, Schedule, Signed,
    Stamp, Target, encode,
};

const T0: u64 = 1_700_000_000;

fn key(i: u64) -> Keypair {
    let mut seed = [0x42; 32];
    seed[..8].copy_from_slice(&i.to_le_bytes());
    Keypair::from_seed(seed)
}

fn shape(small: bool) -> LoraShape {
    let t = |module: &str, out_dim| Target {
        module: module.into(),
        in_dim: if small { 4 } else { 576 },
        out_dim,
    };
    if small {
        LoraShape {
            rank: 2,
            alpha: 4.0,
            layers: 2,
            targets: vec![t("attn_q", 4), t("attn_v", 3)],
            ffa_seed: 7,
        }
    } else {
        LoraShape {
            rank: 8,
            alpha: 16.0,
            layers: 30,
            targets: vec![t("attn_q", 576), t("attn_v", 192)],
            ffa_seed: 7,
        }
    }
}

fn manifest(admin: &Keypair, small: bool) -> Manifest {
    Manifest {
        name: "bench".into(),
        admin: admin.member_id(),
        created: T0,
        base_model: BaseModel {
            name: "SmolLM2-135M".into(),
            sha256: Hash32::digest(b"weights"),
        },
        lora: shape(small),
        privacy: Privacy {
            mode: PrivacyMode::Distributed,
            ..Privacy::default()
        },
        aggregation: Aggregation::default(),
        schedule: Schedule {
            period: Period::Every { secs: 600 },
            ..Schedule::default()
        },
        limits: Limits::default(),
    }
}

/// A cheap xorshift generator for the inputs (the noise itself is the training crate's job).
struct Gen(u64);

impl Gen {
    fn uniform(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    }
}

struct Node {
    key: Keypair,
    community: Community,
    cpu: Duration,
    version: Option<Hash32>,
}

struct Run {
    groups: usize,
    wall: Duration,
    cpu_mean: Duration,
    cpu_max: Duration,
    bytes: BTreeMap<&'static str, usize>,
    agreed: bool,
}

fn kind(p: &Payload) -> &'static str {
    match p {
        Payload::Keys(_) => "keys",
        Payload::Shares(_) => "shares",
        Payload::Masked(_) => "masked",
        Payload::Survivors(_) => "survivors",
        Payload::Unmasking(_) => "unmasking",
        Payload::Version(_) => "version",
        _ => "other",
    }
}

fn run(n: u64, small: bool, drop: bool) -> Run {
    let admin = Keypair::from_seed([0xad; 32]);
    let m = manifest(&admin, small);
    let signed = Signed::sign(m.clone(), &admin).expect("manifest");
    let community_id = m.community_id().expect("id");
    let certs: Vec<Signed<Certificate>> = (1..=n)
        .map(|i| {
            let body = Certificate {
                member: key(i).member_id(),
                community: community_id,
                issued: T0,
                expires: T0 + 86_400,
                roles: vec![Role::Contributor],
            };
            Signed::sign(body, &admin).expect("certificate")
        })
        .collect();
    let mut nodes: Vec<Node> = (1..=n)
        .map(|i| {
            let genesis = State::genesis(Adapter::zeros(&m.lora));
            let mut c = Community::new(&signed, genesis, Config::default()).expect("community");
            for cert in &certs {
                c.add_certificate(cert, T0).expect("certificate");
            }
            let mut secret = [7u8; 32];
            secret[..8].copy_from_slice(&i.to_le_bytes());
            let engine = Engine::new(key(i).member_id(), secret);
            Node {
                key: key(i),
                community: c.with_secure_aggregation(Box::new(engine)),
                cpu: Duration::ZERO,
                version: None,
            }
        })
        .collect();
    let start = T0 + 600;
    let mut bytes: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut down = vec![false; nodes.len()];
    let mut nonce = 0;
    let wall = Instant::now();

    // Publishes node `from`'s outputs to every other node up.
    let mut deliver = |nodes: &mut Vec<Node>, down: &[bool], from: usize, out: Vec<Output>, now| {
        for o in out {
            match o {
                Output::Publish { round, payload } => {
                    nonce += 1;
                    let stamp = Stamp {
                        community: community_id,
                        round,
                        nonce,
                        timestamp: now,
                    };
                    let t = Instant::now();
                    let sealed =
                        encode(&nodes[from].key, stamp, &payload, &m.limits).expect("seal");
                    nodes[from].cpu += t.elapsed();
                    *bytes.entry(kind(&payload)).or_default() += sealed.len();
                    for (j, node) in nodes.iter_mut().enumerate() {
                        if j == from || down[j] {
                            continue;
                        }
                        let t = Instant::now();
                        let result = node.community.on_bytes(&sealed, now);
                        node.cpu += t.elapsed();
                        if let Err(r) = result {
                            eprintln!("node {j} rejected {}: {r}", kind(&payload));
                        }
                    }
                }
                Output::Closed(record) => nodes[from].version = Some(record.version),
                Output::Failed { reason, .. } => eprintln!("node {from} failed: {reason}"),
                _ => {}
            }
        }
    };
    let mut step =
        |nodes: &mut Vec<Node>, down: &[bool], now: u64, act: &dyn Fn(&mut Node) -> Vec<Output>| {
            let mut outs = Vec::new();
            for (i, node) in nodes.iter_mut().enumerate() {
                if down[i] {
                    continue;
                }
                let t = Instant::now();
                let out = act(node);
                node.cpu += t.elapsed();
                outs.push((i, out));
            }
            for (i, out) in outs {
                deliver(nodes, down, i, out, now);
            }
        };

    step(&mut nodes, &down, start, &|node| {
        node.community.start_round(1, start).expect("start")
    });
    step(&mut nodes, &down, start + 75, &|node| {
        node.community.tick(start + 75)
    });
    step(&mut nodes, &down, start + 150, &|node| {
        node.community.tick(start + 150)
    });
    let groups = nodes[0]
        .community
        .round()
        .map_or(0, |r| r.info().groups().len());
    let submit = start + 151;
    step(&mut nodes, &down, submit, &|node| {
        let me = node.key.member_id();
        let Some(cal) = node.community.calibration(&me) else {
            return Vec::new();
        };
        let parent = node.community.round().expect("round").parent();
        let mut g = Gen(u64::from_le_bytes(me.as_bytes()[..8].try_into().expect("8 bytes")) | 1);
        let d = m.lora.elements() as usize;
        let tau = cal.share_std() * 3f64.sqrt();
        let values: Vec<f32> = (0..d)
            .map(|_| (0.5 / (d as f64).sqrt() + tau * g.uniform()) as f32)
            .collect();
        let q = hearth_training::quantize_exact(&values, cal.scale()).expect("quantize");
        let mut rest = q.values.as_slice();
        let layers = m
            .lora
            .tensors()
            .into_iter()
            .map(|t| {
                let (head, tail) = rest.split_at((t.rows * t.cols) as usize);
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
        let delta = DeltaSubmission::new(
            1,
            parent,
            layers,
            cal.scale(),
            1,
            DpParams {
                mode: PrivacyMode::Distributed,
                clip_norm: p.clip_norm,
                noise_multiplier: p.noise_multiplier,
                noise_std: cal.share_std(),
            },
        );
        node.community
            .submit_own(me, delta, submit)
            .expect("submit")
    });
    if drop {
        for i in (0..nodes.len()).step_by(6) {
            down[i] = true;
        }
    }
    for t in [300, 301, 420] {
        step(&mut nodes, &down, start + t, &|node| {
            node.community.tick(start + t)
        });
    }
    let wall = wall.elapsed();
    let up: Vec<&Node> = nodes
        .iter()
        .enumerate()
        .filter(|(i, _)| !down[*i])
        .map(|(_, n)| n)
        .collect();
    let first = up[0].version;
    let agreed = first.is_some() && up.iter().all(|n| n.version == first);
    let cpu: Vec<Duration> = nodes.iter().map(|n| n.cpu).collect();
    let cpu_mean = cpu.iter().sum::<Duration>() / cpu.len() as u32;
    let cpu_max = cpu.iter().copied().max().unwrap_or_default();
    for b in bytes.values_mut() {
        *b /= n as usize;
    }
    Run {
        groups,
        wall,
        cpu_mean,
        cpu_max,
        bytes,
        agreed,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let small = args.iter().any(|a| a == "--small");
    let drop = args.iter().any(|a| a == "--drop");
    let mut sizes = vec![8, 16, 32];
    if args.iter().any(|a| a == "--big") {
        sizes.push(64);
    }
    let d = shape(small).elements();
    println!(
        "d = {d}, dropouts after masking: {}",
        if drop { "every sixth node" } else { "none" }
    );
    println!(
        "| members | groups | round wall (all nodes, 1 process) | CPU per node mean / max | bytes per member: keys, shares, masked, survivors, unmasking, version | agreed |"
    );
    println!("|---:|---:|---:|---:|---|---|");
    for n in sizes {
        let r = run(n, small, drop);
        let b = |k: &str| r.bytes.get(k).copied().unwrap_or(0);
        println!(
            "| {n} | {} | {:.2} s | {:.0} / {:.0} ms | {}, {}, {}, {}, {}, {} | {} |",
            r.groups,
            r.wall.as_secs_f64(),
            r.cpu_mean.as_secs_f64() * 1e3,
            r.cpu_max.as_secs_f64() * 1e3,
            b("keys"),
            b("shares"),
            b("masked"),
            b("survivors"),
            b("unmasking"),
            b("version"),
            r.agreed
        );
    }
}
