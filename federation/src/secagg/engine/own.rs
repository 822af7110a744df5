//! The node's own member in its group: one step per phase, each only inside its phase's window.

use hearth_protocol::{KeyAdvertisement, Payload};

use crate::clock::Phase;
use crate::secagg::{Aggregator, Member};

/// How far the node's member got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Step {
    /// Keys drawn, not yet published.
    Created,
    /// Keys published.
    Advertised,
    /// Shares published; waiting for the own input.
    Shared,
    /// Masked input published.
    Masked,
    /// Survivor set published; waiting for agreement.
    Announced,
    /// Unmasking shares published: done.
    Unmasked,
    /// Left the round, and why. Its messages so far stay valid; it sends no more.
    Out(String),
}

/// The node's member of its group.
pub(super) struct Own {
    pub(super) group: usize,
    pub(super) member: Member,
    keys: KeyAdvertisement,
    pub(super) step: Step,
}

impl Own {
    pub(super) fn new(group: usize, member: Member, keys: KeyAdvertisement) -> Own {
        Own {
            group,
            member,
            keys,
            step: Step::Created,
        }
    }

    /// Takes the steps due in `phase`, publishing into `out` and feeding its own messages to
    /// its group's `aggregator` (a node does not receive what it publishes).
    pub(super) fn advance(
        &mut self,
        phase: Phase,
        aggregator: &mut Aggregator,
        out: &mut Vec<Payload>,
    ) {
        let me = *self.member.id();
        loop {
            let next = match (&self.step, phase) {
                (_, Phase::Waiting) | (Step::Unmasked | Step::Out(_), _) => return,
                (Step::Created, Phase::Keys) => match aggregator.on_keys(&me, &self.keys) {
                    Ok(()) => {
                        out.push(Payload::Keys(self.keys.clone()));
                        Step::Advertised
                    }
                    Err(e) => Step::Out(e.to_string()),
                },
                (Step::Created, _) => Step::Out("the keys phase ended before it started".into()),
                (Step::Advertised, Phase::Keys) => return,
                (Step::Advertised, Phase::Shares) => match self.member.share() {
                    Ok(shares) => {
                        out.push(Payload::Shares(shares));
                        Step::Shared
                    }
                    Err(e) => Step::Out(e.to_string()),
                },
                (Step::Advertised, _) => Step::Out("missed the shares phase".into()),
                (Step::Shared | Step::Masked, Phase::Shares | Phase::Submit) => return,
                (Step::Shared, _) => Step::Out("no input before the submit deadline".into()),
                (Step::Masked, Phase::Unmask) => match self.member.announce() {
                    Ok(set) => match aggregator.on_survivor_set(&me, &set) {
                        Ok(()) => {
                            out.push(Payload::Survivors(set));
                            Step::Announced
                        }
                        Err(e) => Step::Out(e.to_string()),
                    },
                    Err(e) => Step::Out(e.to_string()),
                },
                (Step::Masked, _) => Step::Out("missed the unmask phase".into()),
                (Step::Announced, Phase::Unmask) => match self.member.agreed_survivors() {
                    Ok(None) => return,
                    Ok(Some(_)) => match self.member.unmask() {
                        Ok(shares) => match aggregator.on_unmasking(&me, &shares) {
                            Ok(()) => {
                                out.push(Payload::Unmasking(shares));
                                Step::Unmasked
                            }
                            Err(e) => Step::Out(e.to_string()),
                        },
                        Err(e) => Step::Out(e.to_string()),
                    },
                    Err(e) => Step::Out(e.to_string()),
                },
                (Step::Announced, _) => return,
            };
            self.step = next;
        }
    }

    /// Masks the own input (quantized values, as `u32` modulo 2³²) after the shares were sent.
    pub(super) fn mask(
        &mut self,
        values: &[i32],
        aggregator: &mut Aggregator,
        out: &mut Vec<Payload>,
    ) -> Result<(), String> {
        match &self.step {
            Step::Shared => {}
            Step::Out(why) => return Err(format!("this node left the round: {why}")),
            Step::Created | Step::Advertised => {
                return Err("the shares have not been sent yet".into());
            }
            _ => return Err("the own input was already masked".into()),
        }
        let words: Vec<u32> = values.iter().map(|&v| v as u32).collect();
        let masked = self.member.mask(&words).map_err(|e| e.to_string())?;
        let me = *self.member.id();
        aggregator
            .on_masked_input(&me, masked.clone())
            .map_err(|e| e.to_string())?;
        out.push(Payload::Masked(masked));
        self.step = Step::Masked;
        Ok(())
    }
}
