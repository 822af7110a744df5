//! Measuring a backdoor: how well the model this arm's members use continues the attackers'
//! trigger phrase with their target.
//!
//! The probes are the first [`CONTEXT_BYTES`] bytes of the held-out text of up to
//! [`MAX_PROBES`] evaluated members, each followed by the trigger and the target
//! ([`crate::scenario::AttackSpec`]). The model reads each probe as one window; the loss and the
//! greedy hits on the target's bytes are the probe's minus those of the same text without the
//! target (the model is causal, so the earlier positions score the same in both). Reported per
//! round in `rounds.csv` as `backdoor_loss` (nats per target byte, lower: the backdoor took)
//! and `backdoor_accuracy` (share of target bytes predicted, 1: the model says the target).

use hearth_models::Eval;

use crate::error::Result;
use crate::model::Evaluator;
use crate::world::World;

/// Bytes of held-out text before the trigger in a probe.
pub const CONTEXT_BYTES: usize = 48;
/// Most probes (evaluated members) used.
pub const MAX_PROBES: usize = 16;

/// The byte tokens of `text` (the harness's byte-level vocabulary).
pub fn tokens(text: &str) -> Vec<u32> {
    text.bytes().map(u32::from).collect()
}

/// The probes of a run.
#[derive(Debug, Clone)]
pub struct Probes {
    full: Vec<Vec<u32>>,
    prefix: Vec<Vec<u32>>,
    window: usize,
}

impl Probes {
    /// Probes from the evaluated members' held-out text and the scenario's trigger and target.
    pub fn new(world: &World) -> Self {
        let a = &world.scenario.attack;
        let (trigger, target) = (tokens(&a.trigger), tokens(&a.target));
        let mut full = Vec::new();
        let mut prefix = Vec::new();
        for &m in world.evaluated.iter().take(MAX_PROBES) {
            let held = &world.members[m].held_out;
            let mut p = held[..held.len().min(CONTEXT_BYTES)].to_vec();
            p.extend_from_slice(&trigger);
            prefix.push(p.clone());
            p.extend_from_slice(&target);
            full.push(p);
        }
        let window = full.iter().map(Vec::len).max().unwrap_or(2);
        Probes {
            full,
            prefix,
            window,
        }
    }

    /// `(loss per target byte, share of target bytes predicted)` with the adapter last set on
    /// `evaluator`.
    pub fn measure(&self, evaluator: &Evaluator) -> Result<(f64, f64)> {
        let full: Vec<&[u32]> = self.full.iter().map(Vec::as_slice).collect();
        let prefix: Vec<&[u32]> = self.prefix.iter().map(Vec::as_slice).collect();
        let full = evaluator.evaluate(&full, self.window)?;
        let prefix = evaluator.evaluate(&prefix, self.window)?;
        let (mut nll, mut hits, mut bytes) = (0.0, 0i64, 0u64);
        for (f, p) in full.iter().zip(&prefix) {
            let target = Eval {
                nll_sum: f.nll_sum - p.nll_sum,
                correct: f.correct.saturating_sub(p.correct),
                tokens: f.tokens.saturating_sub(p.tokens),
            };
            nll += target.nll_sum;
            hits += target.correct as i64;
            bytes += target.tokens;
        }
        let bytes = bytes.max(1) as f64;
        Ok((nll / bytes, hits as f64 / bytes))
    }
}
