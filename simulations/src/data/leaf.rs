//! LEAF-style Shakespeare clients (Caldas et al. 2018): one client per (play, speaker), group
//! speakers dropped, each client's speeches split 80/20 in order, clients below a size dropped.
//!
//! What differs from LEAF: LEAF's samples are 80-character windows predicting the next
//! character, split per client by sample; here a client's text is split by whole speeches (the
//! last `floor(20 %)` held out), so a client needs at least five speeches to have held-out text,
//! and a member trains on windows of `training.seq_len` bytes with a byte-level model.

use std::collections::BTreeMap;

use super::{Client, Corpus, is_group_speaker};
use crate::error::{Error, Result};
use crate::rng::{purpose, stream};
use crate::scenario::Scenario;

/// Every LEAF client of `corpus` with held-out text and at least `min_chars` characters, sorted
/// by name.
pub fn all_clients(corpus: &Corpus, min_chars: usize) -> Vec<Client> {
    let mut out = Vec::new();
    for play in &corpus.plays {
        let mut by_speaker: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (speaker, speech) in &play.speeches {
            if !is_group_speaker(speaker) {
                by_speaker.entry(speaker).or_default().push(speech);
            }
        }
        for (speaker, speeches) in by_speaker {
            let c = Client::from_speeches(format!("{}/{speaker}", play.name), &speeches);
            if !c.held_out.is_empty() && c.chars() >= min_chars {
                out.push(c);
            }
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// `scenario.members` clients drawn by the seed from [`all_clients`].
pub fn clients(corpus: &Corpus, scenario: &Scenario) -> Result<Vec<Client>> {
    let mut all = all_clients(corpus, scenario.data.min_chars);
    if all.len() < scenario.members {
        return Err(Error::Data {
            reason: format!(
                "{} LEAF clients have at least {} characters and held-out text; {} members asked (lower data.min_chars)",
                all.len(),
                scenario.data.min_chars,
                scenario.members
            ),
        });
    }
    stream(scenario.seed, &[purpose::DATA]).shuffle(&mut all);
    all.truncate(scenario.members);
    Ok(all)
}
