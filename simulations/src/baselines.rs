//! The arms without a federation, on the same data, seed and per-step budget:
//!
//! - [`Local`]: every member trains its own copy of the community adapter on its own data, in
//!   the rounds it is sampled for (the same Poisson rate as the cohort, drawn from the seed),
//!   for the same number of steps as in the federation, and is evaluated with it. Nothing is
//!   shared, nothing is noised.
//! - [`Centralized`]: one adapter trained on everyone's training text pooled, for
//!   `training.central_steps` steps per round (default: a member's `local_steps`), evaluated
//!   on every member. This is what the community could reach if a server saw all data: the same
//!   number of sequential optimizer steps as one member's trajectory, over all of the data.

use crate::error::Result;
use crate::metrics::RoundRow;
use crate::rng::{derive, purpose, stream};
use crate::scenario::Arm;
use crate::world::World;

/// The local-only arm.
#[derive(Debug)]
pub(crate) struct Local<'w> {
    world: &'w World,
    /// Each member's adapter `B` (model layout).
    pub adapters: Vec<Vec<f32>>,
}

impl<'w> Local<'w> {
    pub fn new(world: &'w World) -> Self {
        let zero = vec![0.0; world.base.elements()];
        Local {
            world,
            adapters: vec![zero; world.members.len()],
        }
    }

    /// Trains the members sampled for round `r`; returns the row and who trained.
    pub fn round(&mut self, r: u64) -> Result<(RoundRow, Vec<bool>)> {
        let s = &self.world.scenario;
        let mut selected = vec![false; s.members];
        for (m, sel) in selected.iter_mut().enumerate() {
            let mut rng = stream(s.seed, &[purpose::PARTICIPATION, r, m as u64]);
            *sel = rng.bernoulli(s.schedule.sampling_rate);
            if *sel {
                let seed = derive(s.seed, &[purpose::TRAIN, r, m as u64]);
                self.adapters[m] = self.world.base.train(
                    s,
                    &self.adapters[m],
                    &self.world.members[m].train,
                    s.training.local_steps,
                    seed,
                )?;
            }
        }
        let trained = selected.iter().filter(|x| **x).count();
        Ok((plain_row(Arm::Local, r, trained), selected))
    }
}

/// The centralized arm.
#[derive(Debug)]
pub(crate) struct Centralized<'w> {
    world: &'w World,
    pooled: Vec<u32>,
    /// The adapter `B` (model layout).
    pub adapter: Vec<f32>,
}

impl<'w> Centralized<'w> {
    pub fn new(world: &'w World) -> Self {
        let pooled = world
            .members
            .iter()
            .flat_map(|m| m.train.iter().copied())
            .collect();
        Centralized {
            world,
            pooled,
            adapter: vec![0.0; world.base.elements()],
        }
    }

    pub fn round(&mut self, r: u64) -> Result<RoundRow> {
        let s = &self.world.scenario;
        let seed = derive(s.seed, &[purpose::TRAIN, r, u64::MAX]);
        self.adapter =
            self.world
                .base
                .train(s, &self.adapter, &self.pooled, s.central_steps(), seed)?;
        Ok(plain_row(Arm::Centralized, r, 1))
    }
}

/// A row for an arm without federation, before evaluation.
pub(crate) fn plain_row(arm: Arm, round: u64, trained: usize) -> RoundRow {
    RoundRow {
        arm,
        round,
        loss: None,
        accuracy: None,
        eval_tokens: 0,
        epsilon: 0.0,
        trained,
        published: 0,
        contributions: 0,
        rejected: 0,
        over_norm: 0,
        late: 0,
        versions: 1,
        outcome: "-".into(),
        version: String::new(),
        bytes_sent: 0,
        bytes_received: 0,
        backdoor_loss: None,
        backdoor_accuracy: None,
    }
}
