//! `hearth init`, `hearth community create`, `hearth invite`, `hearth join`, `hearth whoami`.

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use clap::{Args, ValueEnum};
use hearth_models::{LlamaConfig, Target as LoraTarget};
use hearth_protocol::{
    Aggregation, BaseModel, Certificate, Hash32, LoraShape, MAX_PROBE_BYTES, Manifest, MemberId,
    Period, Privacy, PrivacyMode, ProbeSet, Role, Rule, Schedule, Signed, Target, Weighting,
};

use super::HomeArgs;
use crate::home::{Home, Invite, unix_now, unlock_from};

/// Arguments of `hearth init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// Where the store lives.
    #[command(flatten)]
    pub home: HomeArgs,
}

/// Runs `hearth init`: a new identity and an encrypted store.
pub fn init(args: InitArgs) -> anyhow::Result<()> {
    let path = args.home.path()?;
    let unlock = unlock_from(args.home.key_file.as_deref(), true)?;
    let home = Home::init(&path, &unlock)?;
    println!("initialized {}", path.display());
    println!("member id: {}", home.member_id());
    println!("next: send your member id to the community admin, then `hearth join <invite-file>`");
    Ok(())
}

/// Privacy modes on the command line.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum PrivacyArg {
    /// Members add shares of the noise; deltas are securely aggregated.
    Distributed,
    /// Each member adds the full noise.
    Local,
}

/// Aggregation rules on the command line.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum RuleArg {
    /// Weighted mean.
    Mean,
    /// Coordinate-wise trimmed mean (see --trim).
    TrimmedMean,
    /// Coordinate-wise median.
    Median,
}

/// Weightings of the mean on the command line.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum WeightingArg {
    /// Every member counts once.
    Uniform,
    /// By the delta's sample count, capped at --weight-cap (local privacy mode only).
    SampleCount,
}

/// Arguments of `hearth community create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The community's name.
    #[arg(long)]
    pub name: String,
    /// The base model every member runs (pinned by its SHA-256).
    #[arg(long, value_name = "PATH")]
    pub model: Option<PathBuf>,
    /// LoRA rank of the community adapter.
    #[arg(long, default_value_t = 8)]
    pub rank: u32,
    /// LoRA alpha (updates are scaled by alpha / rank).
    #[arg(long, default_value_t = 16.0)]
    pub alpha: f32,
    /// Adapted modules, comma-separated among q,k,v,o,gate,up,down.
    #[arg(long, default_value = "q,v", value_delimiter = ',')]
    pub targets: Vec<String>,
    /// Where DP noise is added.
    #[arg(long, value_enum, default_value_t = PrivacyArg::Distributed)]
    pub privacy: PrivacyArg,
    /// Gaussian noise multiplier σ (noise std on the sum is σ·C).
    #[arg(long, default_value_t = 1.0)]
    pub noise_multiplier: f64,
    /// L2 clip norm C of one member's delta.
    #[arg(long, default_value_t = 1.0)]
    pub clip_norm: f64,
    /// Per-member zCDP budget ρ (1.05 ≈ ε 8 at δ 1e-6).
    #[arg(long, default_value_t = 1.05)]
    pub budget_rho: f64,
    /// Aggregation rule.
    #[arg(long, value_enum, default_value_t = RuleArg::TrimmedMean)]
    pub rule: RuleArg,
    /// Fraction trimmed at each end for the trimmed mean.
    #[arg(long, default_value_t = 0.1)]
    pub trim: f64,
    /// How the mean weighs members' deltas.
    #[arg(long, value_enum, default_value_t = WeightingArg::Uniform)]
    pub weighting: WeightingArg,
    /// Largest weight of one member with --weighting sample-count.
    #[arg(long, default_value_t = 1000)]
    pub weight_cap: u32,
    /// Smallest secure-aggregation group (distributed privacy mode), at least 3.
    #[arg(long, default_value_t = 8)]
    pub min_group_size: u32,
    /// Public text (UTF-8, at most 16 KiB) every node evaluates each candidate version on before
    /// applying it: a round that raises its loss by more than --probe-max-increase is not
    /// applied (docs/SECURITY.md, "Byzantine members"). Never a member's private data: it goes
    /// into the manifest, which every member and invitee holds.
    #[arg(long, value_name = "PATH")]
    pub probe_file: Option<PathBuf>,
    /// Largest rise of the probe loss one round may cause, nats per token.
    #[arg(long, default_value_t = 0.05, requires = "probe_file")]
    pub probe_max_increase: f64,
    /// Seconds between rounds; 0 for rounds on demand.
    #[arg(long, default_value_t = 600)]
    pub round_secs: u64,
    /// Cohort sampling rate per round, in (0, 1].
    #[arg(long, default_value_t = 1.0)]
    pub sampling_rate: f64,
    /// Fewest contributions for a round to produce a version.
    #[arg(long, default_value_t = 2)]
    pub min_contributions: u32,
    /// Where the store lives.
    #[command(flatten)]
    pub home: HomeArgs,
}

fn parse_target(name: &str) -> anyhow::Result<LoraTarget> {
    Ok(match name.trim() {
        "q" => LoraTarget::Q,
        "k" => LoraTarget::K,
        "v" => LoraTarget::V,
        "o" => LoraTarget::O,
        "gate" => LoraTarget::Gate,
        "up" => LoraTarget::Up,
        "down" => LoraTarget::Down,
        other => bail!("unknown LoRA target {other:?}: choose among q,k,v,o,gate,up,down"),
    })
}

/// The wire name and (in, out) dimensions of a LoRA target for a model.
pub fn target_shape(target: LoraTarget, config: &LlamaConfig) -> Target {
    let (in_dim, out_dim) = match target {
        LoraTarget::Q => (config.hidden, config.q_dim()),
        LoraTarget::K | LoraTarget::V => (config.hidden, config.kv_dim()),
        LoraTarget::O => (config.q_dim(), config.hidden),
        LoraTarget::Gate | LoraTarget::Up => (config.hidden, config.intermediate),
        LoraTarget::Down => (config.intermediate, config.hidden),
    };
    Target {
        module: target.name().to_string(),
        in_dim: in_dim as u32,
        out_dim: out_dim as u32,
    }
}

/// Reads a probe text file (bounded before it is read whole).
fn read_probe(path: &std::path::Path, max_increase: f64) -> anyhow::Result<ProbeSet> {
    use anyhow::Context as _;
    let size = std::fs::metadata(path)
        .with_context(|| format!("reading the probe file {}", path.display()))?
        .len();
    if size > u64::from(MAX_PROBE_BYTES) {
        bail!(
            "the probe file {} has {size} bytes; at most {MAX_PROBE_BYTES} fit in a manifest",
            path.display()
        );
    }
    let bytes = std::fs::read(path)
        .with_context(|| format!("reading the probe file {}", path.display()))?;
    let text = String::from_utf8(bytes)
        .map_err(|e| anyhow::anyhow!("the probe file {} is not UTF-8: {e}", path.display()))?;
    Ok(ProbeSet { text, max_increase })
}

/// Runs `hearth community create`: this member becomes the admin of a new community.
pub fn create(args: CreateArgs) -> anyhow::Result<()> {
    let path = args.home.path()?;
    let home = Home::open(&path, &unlock_from(args.home.key_file.as_deref(), false)?)?;
    if home.manifest()?.is_some() {
        bail!("this node already belongs to a community; use another --home for another one");
    }
    let model_path = crate::model::resolve_model_path(args.model.as_deref())?;
    let (config, sha) = model_identity(&model_path)?;
    let mut targets = Vec::new();
    for t in &args.targets {
        let target = parse_target(t)?;
        if targets.contains(&target) {
            bail!("LoRA target {t:?} is listed twice");
        }
        targets.push(target);
    }
    // Canonical order (q,k,v,o,gate,up,down): the wire order of the adapter's tensors.
    targets.sort();
    let mut seed = [0u8; 8];
    crate::secrets::random_fill(&mut seed)?;
    let now = unix_now();
    let manifest = Manifest {
        name: args.name.clone(),
        admin: home.member_id(),
        created: now,
        base_model: BaseModel {
            name: model_path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            sha256: sha,
        },
        lora: LoraShape {
            rank: args.rank,
            alpha: args.alpha,
            layers: config.layers as u32,
            targets: targets.iter().map(|t| target_shape(*t, &config)).collect(),
            ffa_seed: u64::from_le_bytes(seed),
        },
        privacy: Privacy {
            mode: match args.privacy {
                PrivacyArg::Distributed => PrivacyMode::Distributed,
                PrivacyArg::Local => PrivacyMode::Local,
            },
            noise_multiplier: args.noise_multiplier,
            clip_norm: args.clip_norm,
            budget_rho: args.budget_rho,
            ..Privacy::default()
        },
        aggregation: Aggregation {
            rule: match args.rule {
                RuleArg::Mean => Rule::Mean,
                RuleArg::TrimmedMean => Rule::TrimmedMean { beta: args.trim },
                RuleArg::Median => Rule::Median,
            },
            weighting: match args.weighting {
                WeightingArg::Uniform => Weighting::Uniform,
                WeightingArg::SampleCount => Weighting::SampleCount {
                    cap: args.weight_cap,
                },
            },
            min_group_size: args.min_group_size,
            probe: match &args.probe_file {
                None => None,
                Some(path) => Some(read_probe(path, args.probe_max_increase)?),
            },
            ..Aggregation::default()
        },
        schedule: Schedule {
            period: if args.round_secs == 0 {
                Period::OnDemand
            } else {
                Period::Every {
                    secs: args.round_secs,
                }
            },
            sampling_rate: args.sampling_rate,
            min_contributions: args.min_contributions,
            ..schedule_for(args.round_secs)
        },
        limits: Default::default(),
    };
    let signed = Signed::sign(manifest, &home.key)?;
    let community = signed.verify().context("the new manifest is not valid")?;
    let certificate = issue(&home, community, home.member_id(), now, 365)?;
    home.set_membership(&signed, &certificate, &[])?;
    println!("created community {:?} ({community})", args.name);
    println!("admin and first member: {}", home.member_id());
    println!("next: `hearth invite <member-id> --out FILE` for each member");
    Ok(())
}

/// Phase deadlines scaled to the round length (the defaults assume 600 s rounds).
fn schedule_for(round_secs: u64) -> Schedule {
    let d = Schedule::default();
    if round_secs == 0 || round_secs >= 600 {
        return d;
    }
    let secs = round_secs.max(4);
    Schedule {
        submit_secs: secs / 2,
        unmask_secs: secs * 7 / 10,
        announce_secs: secs * 9 / 10,
        ..d
    }
}

fn model_identity(path: &std::path::Path) -> anyhow::Result<(LlamaConfig, Hash32)> {
    use hearth_models::WeightSource;
    let source: Box<dyn WeightSource> = if path.is_dir() {
        Box::new(hearth_models::HfCheckpoint::open(path)?)
    } else {
        Box::new(hearth_models::GgufWeights::open(path)?)
    };
    let config = LlamaConfig::from_hparams(source.hparams())?;
    let sha: Hash32 = source
        .model_id()?
        .parse()
        .context("model id is not a sha256")?;
    Ok((config, sha))
}

fn issue(
    home: &Home,
    community: Hash32,
    member: MemberId,
    now: u64,
    days: u64,
) -> anyhow::Result<Signed<Certificate>> {
    let body = Certificate {
        member,
        community,
        issued: now,
        expires: now + days * 86_400,
        roles: vec![Role::Contributor, Role::Announcer],
    };
    Ok(Signed::sign(body, &home.key)?)
}

/// Arguments of `hearth invite`.
#[derive(Debug, Args)]
pub struct InviteArgs {
    /// The invited member's id (they print it with `hearth init` or `hearth whoami`).
    pub member: String,
    /// Where to write the invite file.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Days until the certificate expires.
    #[arg(long, default_value_t = 365, value_parser = clap::value_parser!(u64).range(1..=3650))]
    pub days: u64,
    /// Addresses (multiaddr with `/p2p/<peer id>`) the member dials first; repeatable.
    #[arg(long = "bootstrap", value_name = "MULTIADDR")]
    pub bootstrap: Vec<String>,
    /// Where the store lives.
    #[command(flatten)]
    pub home: HomeArgs,
}

/// Runs `hearth invite`: signs a certificate for a member and writes an invite file.
pub fn invite(args: InviteArgs) -> anyhow::Result<()> {
    let member: MemberId = args
        .member
        .parse()
        .map_err(|e| anyhow::anyhow!("{:?} is not a member id: {e}", args.member))?;
    for addr in &args.bootstrap {
        addr.parse::<libp2p::Multiaddr>()
            .map_err(|e| anyhow::anyhow!("--bootstrap {addr:?}: {e}"))?;
    }
    let path = args.home.path()?;
    let home = Home::open(&path, &unlock_from(args.home.key_file.as_deref(), false)?)?;
    let manifest = home.manifest()?.ok_or_else(|| {
        anyhow::anyhow!("this node has no community: run `hearth community create` first")
    })?;
    if manifest.body.admin != home.member_id() {
        bail!(
            "only the community admin ({}) can invite",
            manifest.body.admin
        );
    }
    let community = manifest.verify()?;
    let certificate = issue(&home, community, member, unix_now(), args.days)?;
    let invite = Invite {
        version: Invite::VERSION,
        manifest,
        certificate,
        bootstrap: args.bootstrap,
    };
    invite.write(&args.out)?;
    println!("wrote {} for {member}", args.out.display());
    Ok(())
}

/// Arguments of `hearth join`.
#[derive(Debug, Args)]
pub struct JoinArgs {
    /// The invite file from the community admin.
    pub invite: PathBuf,
    /// Where the store lives.
    #[command(flatten)]
    pub home: HomeArgs,
}

/// Runs `hearth join`: checks the invite and records the membership.
pub fn join(args: JoinArgs) -> anyhow::Result<()> {
    let path = args.home.path()?;
    let home = Home::open(&path, &unlock_from(args.home.key_file.as_deref(), false)?)?;
    let invite = Invite::read(&args.invite, &home.member_id(), unix_now())?;
    if let Some(current) = home.manifest()?
        && current != invite.manifest
    {
        bail!(
            "this node already belongs to community {:?}; use another --home",
            current.body.name
        );
    }
    home.set_membership(&invite.manifest, &invite.certificate, &invite.bootstrap)?;
    println!(
        "joined community {:?} ({})",
        invite.manifest.body.name,
        invite.manifest.verify()?
    );
    Ok(())
}

/// Runs `hearth whoami`: the member id and community.
pub fn whoami(home: HomeArgs) -> anyhow::Result<()> {
    let path = home.path()?;
    let home = Home::open(&path, &unlock_from(home.key_file.as_deref(), false)?)?;
    println!("member id: {}", home.member_id());
    match home.manifest()? {
        Some(m) => println!("community: {:?} ({})", m.body.name, m.verify()?),
        None => {
            println!("community: none (run `hearth join <invite>` or `hearth community create`)")
        }
    }
    if let Some(c) = home.certificate()? {
        println!("certificate expires: {} (unix seconds)", c.body.expires);
    }
    Ok(())
}
