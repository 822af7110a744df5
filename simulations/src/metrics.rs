//! What a run measures: one [`RoundRow`] per arm and round, one [`MemberRow`] per arm, round and
//! member, and wall-clock [`Timing`]s; and the [`Sink`] that writes them.
//!
//! Files in the output folder:
//!
//! | file | content | reproducible |
//! |---|---|---|
//! | `rounds.csv`, `rounds.json` | [`RoundRow`]s | bit for bit |
//! | `members.csv`, `members.jsonl` | [`MemberRow`]s, streamed as the run goes | bit for bit |
//! | `timing.csv` | [`Timing`]s (wall clock) | no |
//! | `summary.json` | the scenario, final figures per arm, wall time, peak memory | no |
//!
//! Floats are written in Rust's shortest round-trip form; a missing value (a round that was not
//! evaluated) is an empty CSV field and `null` in JSON; an infinite ε is `inf`.

use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::scenario::Arm;

/// One round of one arm.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RoundRow {
    /// The arm.
    pub arm: Arm,
    /// Round (0: the base, before any training).
    pub round: u64,
    /// Held-out loss, nats per byte, pooled over the evaluated members (`None`: not evaluated).
    pub loss: Option<f64>,
    /// Next-byte accuracy, pooled.
    pub accuracy: Option<f64>,
    /// Held-out tokens predicted.
    pub eval_tokens: u64,
    /// Largest ε any member has spent so far (`inf` without noise, 0 before any release).
    pub epsilon: f64,
    /// Members that trained this round.
    pub trained: usize,
    /// Deltas sealed and published.
    pub published: usize,
    /// Inputs of the version the first full node closed (federated arms).
    pub contributions: usize,
    /// Deliveries full nodes rejected, all reasons.
    pub rejected: usize,
    /// Rejections that were `over_norm`.
    pub over_norm: usize,
    /// Rejections that were `late`.
    pub late: usize,
    /// Distinct adapter versions held by the full nodes after the round.
    pub versions: usize,
    /// `closed`, `failed: <why>`, or `-` outside the federation.
    pub outcome: String,
    /// Short name of the first full node's head after the round.
    pub version: String,
    /// Bytes published by all members.
    pub bytes_sent: u64,
    /// Bytes received by all members.
    pub bytes_received: u64,
    /// Backdoor scenarios: the loss (nats per byte) of the target after the trigger, on the
    /// model this arm's members use (see [`crate::backdoor`]).
    pub backdoor_loss: Option<f64>,
    /// Backdoor scenarios: the share of the target's bytes the model predicts (greedy) after the
    /// trigger: the attack's success.
    pub backdoor_accuracy: Option<f64>,
}

/// One member in one round of one arm.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MemberRow {
    /// The arm.
    pub arm: Arm,
    /// Round.
    pub round: u64,
    /// Member index.
    pub member: usize,
    /// Whether it attacks.
    pub attacker: bool,
    /// Whether it was in the cohort (federated) or chose to train (local).
    pub selected: bool,
    /// Whether it dropped out.
    pub dropped: bool,
    /// Whether it was a straggler.
    pub straggler: bool,
    /// Whether it published a delta.
    pub published: bool,
    /// Held-out loss of the model it uses, on its own held-out text.
    pub loss: Option<f64>,
    /// Next-byte accuracy.
    pub accuracy: Option<f64>,
    /// ε spent so far.
    pub epsilon: f64,
    /// Bytes it sent this round.
    pub bytes_sent: u64,
    /// Bytes it received this round.
    pub bytes_received: u64,
}

/// Wall-clock time of one round of one arm.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Timing {
    /// The arm.
    pub arm: Arm,
    /// Round.
    pub round: u64,
    /// Local training, ms.
    pub train_ms: f64,
    /// Sealing, network and federation, ms.
    pub network_ms: f64,
    /// Evaluation, ms.
    pub eval_ms: f64,
}

/// A number for CSV (shortest round-trip form; `inf`).
fn num(x: f64) -> String {
    if x.is_infinite() {
        if x > 0.0 { "inf".into() } else { "-inf".into() }
    } else {
        format!("{x}")
    }
}

fn opt(x: Option<f64>) -> String {
    x.map(num).unwrap_or_default()
}

/// Replaces an infinite ε by the string `inf` in JSON.
pub(crate) fn json_number(x: f64) -> serde_json::Value {
    if x.is_finite() {
        serde_json::json!(x)
    } else {
        serde_json::Value::String(num(x))
    }
}

impl RoundRow {
    /// The CSV header.
    pub const HEADER: &'static str = "arm,round,loss,accuracy,eval_tokens,epsilon,trained,published,contributions,rejected,over_norm,late,versions,outcome,version,bytes_sent,bytes_received,backdoor_loss,backdoor_accuracy";

    /// The CSV line (no newline).
    pub fn csv(&self) -> String {
        format!(
            "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
            self.arm.name(),
            self.round,
            opt(self.loss),
            opt(self.accuracy),
            self.eval_tokens,
            num(self.epsilon),
            self.trained,
            self.published,
            self.contributions,
            self.rejected,
            self.over_norm,
            self.late,
            self.versions,
            self.outcome.replace(',', ";"),
            self.version,
            self.bytes_sent,
            self.bytes_received,
            opt(self.backdoor_loss),
            opt(self.backdoor_accuracy)
        )
    }

    /// As JSON, with `inf` for an infinite ε.
    pub fn json(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).unwrap_or_default();
        v["epsilon"] = json_number(self.epsilon);
        v
    }
}

impl MemberRow {
    /// The CSV header.
    pub const HEADER: &'static str = "arm,round,member,attacker,selected,dropped,straggler,published,loss,accuracy,epsilon,bytes_sent,bytes_received";

    /// The CSV line (no newline).
    pub fn csv(&self) -> String {
        let b = |x: bool| u8::from(x);
        format!(
            "{},{},{},{},{},{},{},{},{},{},{},{},{}",
            self.arm.name(),
            self.round,
            self.member,
            b(self.attacker),
            b(self.selected),
            b(self.dropped),
            b(self.straggler),
            b(self.published),
            opt(self.loss),
            opt(self.accuracy),
            num(self.epsilon),
            self.bytes_sent,
            self.bytes_received
        )
    }

    /// As JSON, with `inf` for an infinite ε.
    pub fn json(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).unwrap_or_default();
        v["epsilon"] = json_number(self.epsilon);
        v
    }
}

/// Writes the rows of a run into its output folder.
#[derive(Debug)]
pub struct Sink {
    dir: PathBuf,
    members_csv: BufWriter<File>,
    members_json: BufWriter<File>,
    /// Every round row so far.
    pub rounds: Vec<RoundRow>,
    /// Every timing so far.
    pub timings: Vec<Timing>,
}

impl Sink {
    /// Creates `dir` and the streamed member files.
    pub fn create(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let open = |name: &str| -> Result<BufWriter<File>> {
            let p = dir.join(name);
            Ok(BufWriter::new(
                File::create(&p).map_err(|e| Error::io(p, e))?,
            ))
        };
        let mut members_csv = open("members.csv")?;
        writeln!(members_csv, "{}", MemberRow::HEADER)
            .map_err(|e| Error::io(dir.join("members.csv"), e))?;
        Ok(Sink {
            dir: dir.to_path_buf(),
            members_csv,
            members_json: open("members.jsonl")?,
            rounds: Vec::new(),
            timings: Vec::new(),
        })
    }

    /// The output folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Streams a member row.
    pub fn member(&mut self, row: &MemberRow) -> Result<()> {
        let err = |e| Error::io(self.dir.join("members.csv"), e);
        writeln!(self.members_csv, "{}", row.csv()).map_err(err)?;
        writeln!(self.members_json, "{}", row.json()).map_err(err)
    }

    /// Writes `rounds.csv`, `rounds.json` and `timing.csv`, and flushes the member files.
    pub fn finish(&mut self) -> Result<()> {
        let err = |p: &Path, e| Error::io(p, e);
        self.members_csv
            .flush()
            .map_err(|e| err(&self.dir.join("members.csv"), e))?;
        self.members_json
            .flush()
            .map_err(|e| err(&self.dir.join("members.jsonl"), e))?;
        let mut csv = String::from(RoundRow::HEADER);
        csv.push('\n');
        for r in &self.rounds {
            csv.push_str(&r.csv());
            csv.push('\n');
        }
        write(&self.dir.join("rounds.csv"), csv.as_bytes())?;
        let json: Vec<serde_json::Value> = self.rounds.iter().map(RoundRow::json).collect();
        let text = serde_json::to_string_pretty(&json).unwrap_or_default();
        write(&self.dir.join("rounds.json"), text.as_bytes())?;
        let mut t = String::from("arm,round,train_ms,network_ms,eval_ms\n");
        for x in &self.timings {
            let _ = writeln!(
                t,
                "{},{},{:.1},{:.1},{:.1}",
                x.arm.name(),
                x.round,
                x.train_ms,
                x.network_ms,
                x.eval_ms
            );
        }
        write(&self.dir.join("timing.csv"), t.as_bytes())
    }
}

/// Writes a whole file.
pub(crate) fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes).map_err(|e| Error::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_lines_match_their_headers() {
        let r = RoundRow {
            arm: Arm::FederatedDp,
            round: 3,
            loss: Some(2.5),
            accuracy: None,
            eval_tokens: 10,
            epsilon: f64::INFINITY,
            trained: 4,
            published: 4,
            contributions: 3,
            rejected: 1,
            over_norm: 1,
            late: 0,
            versions: 1,
            outcome: "failed: a, b".into(),
            version: "abcd".into(),
            bytes_sent: 100,
            bytes_received: 300,
            backdoor_loss: Some(0.5),
            backdoor_accuracy: None,
        };
        let line = r.csv();
        assert!(line.ends_with(",100,300,0.5,"), "{line}");
        assert_eq!(line.split(',').count(), RoundRow::HEADER.split(',').count());
        assert!(line.starts_with("federated_dp,3,2.5,,10,inf,"));
        assert_eq!(r.json()["epsilon"], "inf");
        assert_eq!(r.json()["accuracy"], serde_json::Value::Null);
        let m = MemberRow {
            arm: Arm::Local,
            round: 1,
            member: 7,
            attacker: true,
            selected: true,
            dropped: false,
            straggler: false,
            published: false,
            loss: Some(1.0),
            accuracy: Some(0.25),
            epsilon: 0.0,
            bytes_sent: 0,
            bytes_received: 0,
        };
        assert_eq!(m.csv(), "local,1,7,1,1,0,0,0,1,0.25,0,0,0");
        assert_eq!(
            m.csv().split(',').count(),
            MemberRow::HEADER.split(',').count()
        );
    }
}
