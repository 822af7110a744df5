//! Running one scenario: data, base model, every arm round by round, evaluation, and the files
//! of [`crate::metrics`] and [`crate::plot`] in the output folder.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use hearth_models::Eval;
use hearth_protocol::Hash32;
use serde_json::json;

use crate::backdoor::Probes;
use crate::baselines::{Centralized, Local, plain_row};
use crate::data::{self, Corpus};
use crate::error::Result;
use crate::federated::{Activity, Federated, MemberRound};
use crate::metrics::{MemberRow, RoundRow, Sink, Timing, json_number, write};
use crate::model::{Base, Evaluator};
use crate::scenario::{Arm, AttackKind, BaseKind, Scenario};
use crate::trace::Trace;
use crate::world::World;
use crate::{plot, pretrain};

/// Progress reports of a run (the binary draws progress bars from them).
pub trait Observer {
    /// A preparation stage starts (`loading data`, ...).
    fn stage(&mut self, _what: &str) {}
    /// An arm starts.
    fn arm(&mut self, _arm: Arm, _rounds: u64) {}
    /// A round of the current arm is done (and evaluated, if it was due).
    fn round(&mut self, _row: &RoundRow) {}
}

/// An observer that ignores everything.
#[derive(Debug, Default)]
pub struct Quiet;

impl Observer for Quiet {}

/// The result of a run.
#[derive(Debug, Clone)]
pub struct Report {
    /// The output folder.
    pub dir: PathBuf,
    /// Every round row, arm by arm (round 0 is the base).
    pub rounds: Vec<RoundRow>,
    /// Wall-clock seconds of the whole run.
    pub wall_secs: f64,
    /// Peak resident memory of the process, bytes (Linux only).
    pub peak_rss: Option<u64>,
}

impl Report {
    /// The last evaluated row of `arm`.
    pub fn last(&self, arm: Arm) -> Option<&RoundRow> {
        self.rounds
            .iter()
            .rfind(|r| r.arm == arm && r.loss.is_some())
    }

    /// The base model's row (round 0 of the first arm).
    pub fn base(&self) -> Option<&RoundRow> {
        self.rounds.iter().find(|r| r.round == 0)
    }
}

/// Runs `scenario` and writes its outputs into `out`.
pub fn run(scenario: &Scenario, out: &Path, observer: &mut dyn Observer) -> Result<Report> {
    let started = Instant::now();
    let s = scenario;
    observer.stage("loading the corpus");
    let corpus = Corpus::load(&data::plays_dir(s)?)?;
    let clients = data::clients(s, &corpus)?;
    let trace = match &s.churn.trace {
        Some(path) => Trace::load(path, s.members, s.rounds)?,
        None => Trace::default(),
    };
    observer.stage("preparing the base model");
    let base = match s.model.base {
        BaseKind::Random => Base::random(s)?,
        BaseKind::Pretrained => pretrain::base(s, &corpus, out)?,
        BaseKind::Gguf => Base::gguf(s)?,
    };
    let probe_text = data::probe_text(s, &corpus)?;
    let world = World::new(s, base, clients, trace, probe_text)?;
    let mut evaluator = world.base.evaluator()?;
    let mut sink = Sink::create(out)?;
    let text = toml::to_string(s).unwrap_or_default();
    write(&out.join("scenario.toml"), text.as_bytes())?;

    evaluator.set(&vec![0.0; world.base.elements()])?;
    let streams: Vec<&[u32]> = world
        .evaluated
        .iter()
        .map(|&m| world.members[m].held_out.as_slice())
        .collect();
    let window = s.training.seq_len + 1;
    let base_evals = evaluator.evaluate(&streams, window)?;
    let probes = (s.attack.kind == AttackKind::Backdoor).then(|| Probes::new(&world));
    let base_backdoor = probes.as_ref().map(|p| p.measure(&evaluator)).transpose()?;

    for &arm in &s.arms {
        observer.arm(arm, s.rounds);
        let mut row = plain_row(arm, 0, 0);
        if arm != Arm::Local {
            row.backdoor_loss = base_backdoor.map(|b| b.0);
            row.backdoor_accuracy = base_backdoor.map(|b| b.1);
        }
        let activity = vec![(Activity::default(), 0, 0); s.members];
        let epsilon = if arm == Arm::Local || arm == Arm::FederatedDp {
            0.0
        } else {
            f64::INFINITY
        };
        record(&mut sink, &world, &mut row, &base_evals, &activity, |_| {
            Ok(epsilon)
        })?;
        observer.round(&row);
        sink.rounds.push(row);
        match arm {
            Arm::FederatedDp | Arm::Federated => run_federated(
                &world,
                arm,
                &mut evaluator,
                probes.as_ref(),
                &mut sink,
                observer,
            )?,
            Arm::Local => run_local(&world, &mut evaluator, &mut sink, observer)?,
            Arm::Centralized => {
                run_centralized(&world, &mut evaluator, probes.as_ref(), &mut sink, observer)?
            }
        }
    }
    sink.finish()?;
    plot::arms(&sink.rounds, out, &s.name, s.model.unit())?;
    let report = Report {
        dir: out.to_path_buf(),
        rounds: sink.rounds.clone(),
        wall_secs: started.elapsed().as_secs_f64(),
        peak_rss: peak_rss(),
    };
    write_summary(s, &report, &sink.timings)?;
    Ok(report)
}

fn due(s: &Scenario, r: u64) -> bool {
    r.is_multiple_of(s.eval.every) || r == s.rounds
}

/// Measures the backdoor (when the scenario has one) with adapter `b` into `row`.
fn measure_backdoor(
    probes: Option<&Probes>,
    evaluator: &mut Evaluator,
    b: &[f32],
    row: &mut RoundRow,
) -> Result<()> {
    if let Some(p) = probes {
        evaluator.set(b)?;
        let (loss, accuracy) = p.measure(evaluator)?;
        row.backdoor_loss = Some(loss);
        row.backdoor_accuracy = Some(accuracy);
    }
    Ok(())
}

fn run_federated(
    world: &World,
    arm: Arm,
    evaluator: &mut Evaluator,
    probes: Option<&Probes>,
    sink: &mut Sink,
    observer: &mut dyn Observer,
) -> Result<()> {
    let s = &world.scenario;
    let mut fed = Federated::new(world, arm)?;
    for r in 1..=s.rounds {
        let t = Instant::now();
        let (mut row, activity) = fed.round(r)?;
        let train_ms = fed.take_train_time().as_secs_f64() * 1e3;
        let network_ms = t.elapsed().as_secs_f64() * 1e3 - train_ms;
        let t = Instant::now();
        let evals = if due(s, r) {
            // Members evaluated with the head they use, grouped by version.
            let mut groups: BTreeMap<Hash32, Vec<usize>> = BTreeMap::new();
            for (k, &m) in world.evaluated.iter().enumerate() {
                groups.entry(fed.head_of(m).version()).or_default().push(k);
            }
            let mut evals = vec![Eval::default(); world.evaluated.len()];
            for ks in groups.values() {
                let head = fed.head_of(world.evaluated[ks[0]]);
                evaluator.set(&world.base.from_wire(&head.adapter.to_flat()))?;
                let streams: Vec<&[u32]> = ks
                    .iter()
                    .map(|&k| world.members[world.evaluated[k]].held_out.as_slice())
                    .collect();
                let out = evaluator.evaluate(&streams, s.training.seq_len + 1)?;
                for (&k, e) in ks.iter().zip(out) {
                    evals[k] = e;
                }
            }
            let head = fed.head_of(world.evaluated[0]);
            let b = world.base.from_wire(&head.adapter.to_flat());
            measure_backdoor(probes, evaluator, &b, &mut row)?;
            evals
        } else {
            Vec::new()
        };
        record(sink, world, &mut row, &evals, &activity, |m| fed.epsilon(m))?;
        finish_round(sink, observer, row, train_ms, network_ms, t);
    }
    Ok(())
}

fn run_local(
    world: &World,
    evaluator: &mut Evaluator,
    sink: &mut Sink,
    observer: &mut dyn Observer,
) -> Result<()> {
    let s = &world.scenario;
    let mut local = Local::new(world);
    for r in 1..=s.rounds {
        let t = Instant::now();
        let (mut row, selected) = local.round(r)?;
        let train_ms = t.elapsed().as_secs_f64() * 1e3;
        let t = Instant::now();
        let mut evals = Vec::new();
        if due(s, r) {
            for &m in &world.evaluated {
                evaluator.set(&local.adapters[m])?;
                let e =
                    evaluator.evaluate(&[&world.members[m].held_out], s.training.seq_len + 1)?;
                evals.push(e.first().copied().unwrap_or_default());
            }
        }
        let activity: Vec<MemberRound> = selected
            .iter()
            .map(|&sel| {
                let a = Activity {
                    selected: sel,
                    ..Activity::default()
                };
                (a, 0, 0)
            })
            .collect();
        record(sink, world, &mut row, &evals, &activity, |_| Ok(0.0))?;
        finish_round(sink, observer, row, train_ms, 0.0, t);
    }
    Ok(())
}

fn run_centralized(
    world: &World,
    evaluator: &mut Evaluator,
    probes: Option<&Probes>,
    sink: &mut Sink,
    observer: &mut dyn Observer,
) -> Result<()> {
    let s = &world.scenario;
    let mut central = Centralized::new(world);
    for r in 1..=s.rounds {
        let t = Instant::now();
        let mut row = central.round(r)?;
        row.epsilon = f64::INFINITY;
        let train_ms = t.elapsed().as_secs_f64() * 1e3;
        let t = Instant::now();
        let evals = if due(s, r) {
            measure_backdoor(probes, evaluator, &central.adapter, &mut row)?;
            evaluator.set(&central.adapter)?;
            let streams: Vec<&[u32]> = world
                .evaluated
                .iter()
                .map(|&m| world.members[m].held_out.as_slice())
                .collect();
            evaluator.evaluate(&streams, s.training.seq_len + 1)?
        } else {
            Vec::new()
        };
        let activity = vec![(Activity::default(), 0, 0); s.members];
        record(sink, world, &mut row, &evals, &activity, |_| {
            Ok(f64::INFINITY)
        })?;
        finish_round(sink, observer, row, train_ms, 0.0, t);
    }
    Ok(())
}

fn finish_round(
    sink: &mut Sink,
    observer: &mut dyn Observer,
    row: RoundRow,
    train_ms: f64,
    network_ms: f64,
    eval_started: Instant,
) {
    sink.timings.push(Timing {
        arm: row.arm,
        round: row.round,
        train_ms,
        network_ms,
        eval_ms: eval_started.elapsed().as_secs_f64() * 1e3,
    });
    observer.round(&row);
    sink.rounds.push(row);
}

/// Fills the row's evaluation (pooled over `evals`, one per evaluated member, or none) and
/// streams every member's row.
fn record(
    sink: &mut Sink,
    world: &World,
    row: &mut RoundRow,
    evals: &[Eval],
    activity: &[MemberRound],
    epsilon: impl Fn(usize) -> Result<f64>,
) -> Result<()> {
    let mut per_member: Vec<Option<Eval>> = vec![None; world.members.len()];
    if !evals.is_empty() {
        let mut total = Eval::default();
        for (&m, e) in world.evaluated.iter().zip(evals) {
            total.add(*e);
            per_member[m] = Some(*e);
        }
        row.eval_tokens = total.tokens;
        if total.tokens > 0 {
            row.loss = Some(total.mean_nll());
            row.accuracy = Some(total.accuracy());
        }
    }
    for (m, member) in world.members.iter().enumerate() {
        let (a, sent, received) = activity.get(m).copied().unwrap_or_default();
        let e = per_member[m].filter(|e| e.tokens > 0);
        sink.member(&MemberRow {
            arm: row.arm,
            round: row.round,
            member: m,
            attacker: member.attacker,
            selected: a.selected,
            dropped: a.dropped,
            straggler: a.straggler,
            published: a.published,
            loss: e.map(|e| e.mean_nll()),
            accuracy: e.map(|e| e.accuracy()),
            epsilon: epsilon(m)?,
            bytes_sent: sent,
            bytes_received: received,
        })?;
    }
    Ok(())
}

/// Writes `summary.json`.
fn write_summary(s: &Scenario, report: &Report, timings: &[Timing]) -> Result<()> {
    let arms: Vec<serde_json::Value> = s
        .arms
        .iter()
        .map(|&arm| {
            let last = report.last(arm);
            let rows = report.rounds.iter().filter(|r| r.arm == arm);
            let (sent, received) = rows.fold((0u64, 0u64), |(a, b), r| {
                (a + r.bytes_sent, b + r.bytes_received)
            });
            let ms: f64 = timings
                .iter()
                .filter(|t| t.arm == arm)
                .map(|t| t.train_ms + t.network_ms + t.eval_ms)
                .sum();
            json!({
                "arm": arm.name(),
                "final_round": last.map(|r| r.round),
                "loss": last.and_then(|r| r.loss),
                "accuracy": last.and_then(|r| r.accuracy),
                "epsilon": json_number(last.map_or(0.0, |r| r.epsilon)),
                "bytes_sent": sent,
                "bytes_received": received,
                "wall_secs": ms / 1e3,
            })
        })
        .collect();
    let base = report.base();
    let summary = json!({
        "name": s.name,
        "seed": s.seed,
        "members": s.members,
        "rounds": s.rounds,
        "base_loss": base.and_then(|r| r.loss),
        "base_accuracy": base.and_then(|r| r.accuracy),
        "arms": arms,
        "wall_secs": report.wall_secs,
        "peak_rss_bytes": report.peak_rss,
        "member_rounds_per_sec": (s.members as f64 * s.rounds as f64) / report.wall_secs.max(1e-9),
    });
    let text = serde_json::to_string_pretty(&summary).unwrap_or_default();
    write(&report.dir.join("summary.json"), text.as_bytes())
}

/// Peak resident set size of this process (`VmHWM` of `/proc/self/status`), bytes.
pub fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
