//! `hearth-sim`: runs simulation scenarios.
//!
//! ```text
//! hearth-sim run simulations/scenarios/leaf.toml --out runs/leaf
//! hearth-sim check simulations/scenarios/robustness.toml
//! ```

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use hearth_simulations::{Arm, Observer, Report, RoundRow, run, sweep};
use indicatif::{ProgressBar, ProgressStyle};

/// Runs Hearth simulation scenarios: virtual members on the real federation code.
#[derive(Debug, Parser)]
#[command(name = "hearth-sim", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs a scenario (every variant of its sweep) and writes CSV, JSON and SVG outputs.
    Run {
        /// The scenario file.
        scenario: PathBuf,
        /// Output folder (default `runs/<scenario name>`).
        #[arg(long)]
        out: Option<PathBuf>,
        /// No progress display.
        #[arg(long)]
        quiet: bool,
    },
    /// Checks a scenario file and lists its variants without running anything.
    Check {
        /// The scenario file.
        scenario: PathBuf,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Check { scenario } => {
            let variants = sweep::load(&scenario)?;
            println!(
                "{}: valid, {} variant(s)",
                scenario.display(),
                variants.len()
            );
            for v in variants {
                if !v.label.is_empty() {
                    println!("  {}", v.label);
                }
            }
            Ok(())
        }
        Command::Run {
            scenario,
            out,
            quiet,
        } => {
            let variants = sweep::load(&scenario)?;
            let stem = scenario
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "scenario".into());
            let out = out.unwrap_or_else(|| Path::new("runs").join(stem));
            let mut runs = Vec::with_capacity(variants.len());
            let total = variants.len();
            for (i, v) in variants.into_iter().enumerate() {
                let dir = if v.label.is_empty() {
                    out.clone()
                } else {
                    out.join(&v.label)
                };
                let label = if v.label.is_empty() {
                    v.scenario.name.clone()
                } else {
                    format!("[{}/{total}] {}", i + 1, v.label)
                };
                let mut progress = Progress::new(label, quiet);
                let report = run(&v.scenario, &dir, &mut progress)
                    .with_context(|| format!("running {}", dir.display()))?;
                progress.finish();
                print_summary(&report, &v.scenario.arms);
                runs.push((v, report));
            }
            if runs.len() > 1 {
                let title = runs[0].0.scenario.name.clone();
                sweep::summarize(&out, &title, &runs)?;
                println!("sweep summary: {}", out.join("sweep.csv").display());
            }
            Ok(())
        }
    }
}

/// Progress bars on standard error.
struct Progress {
    label: String,
    bar: ProgressBar,
}

impl Progress {
    fn new(label: String, quiet: bool) -> Self {
        let bar = if quiet || !std::io::stderr().is_terminal() {
            ProgressBar::hidden()
        } else {
            ProgressBar::new_spinner()
        };
        bar.enable_steady_tick(Duration::from_millis(200));
        Progress { label, bar }
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl Observer for Progress {
    fn stage(&mut self, what: &str) {
        self.bar.set_message(format!("{}: {what}", self.label));
    }

    fn arm(&mut self, arm: Arm, rounds: u64) {
        self.bar.set_length(rounds + 1);
        self.bar.set_position(0);
        if let Ok(style) = ProgressStyle::with_template(
            "{elapsed_precise} [{bar:30}] {pos}/{len} {msg} (eta {eta})",
        ) {
            self.bar.set_style(style.progress_chars("=> "));
        }
        self.bar
            .set_message(format!("{}: {}", self.label, arm.name()));
    }

    fn round(&mut self, row: &RoundRow) {
        self.bar.set_position(row.round + 1);
        if let Some(loss) = row.loss {
            self.bar.set_message(format!(
                "{}: {} round {} loss {loss:.3}",
                self.label,
                row.arm.name(),
                row.round
            ));
        }
    }
}

fn print_summary(report: &Report, arms: &[Arm]) {
    println!("\n{}", report.dir.display());
    println!(
        "{:<14} {:>6} {:>10} {:>10} {:>10} {:>14} {:>10}",
        "arm", "round", "loss", "accuracy", "epsilon", "bytes recv", "versions"
    );
    if let Some(b) = report.base() {
        println!(
            "{:<14} {:>6} {:>10.4} {:>10.4} {:>10} {:>14} {:>10}",
            "base",
            0,
            b.loss.unwrap_or(f64::NAN),
            b.accuracy.unwrap_or(f64::NAN),
            "-",
            "-",
            "-"
        );
    }
    for &arm in arms {
        if let Some(r) = report.last(arm) {
            let bytes: u64 = report
                .rounds
                .iter()
                .filter(|x| x.arm == arm)
                .map(|x| x.bytes_received)
                .sum();
            println!(
                "{:<14} {:>6} {:>10.4} {:>10.4} {:>10.3} {:>14} {:>10}",
                arm.name(),
                r.round,
                r.loss.unwrap_or(f64::NAN),
                r.accuracy.unwrap_or(f64::NAN),
                r.epsilon,
                bytes,
                r.versions
            );
        }
    }
    let mem = report
        .peak_rss
        .map(|b| format!(", peak memory {:.0} MiB", b as f64 / (1 << 20) as f64))
        .unwrap_or_default();
    println!("wall time {:.1} s{mem}", report.wall_secs);
}
