//! Synthetic non-IID splits: every member draws play proportions `p ~ Dir(α, ..., α)` and is
//! dealt `data.speeches_per_member` speeches, each from a play drawn with probabilities `p`
//! (renormalised over the plays not yet used up), without replacement. Small α gives members
//! one or two plays each; large α approaches an IID split of the pooled speeches (Hsu, Qi and
//! Brown 2019's label-skew construction, with plays as labels).

use super::{Client, Corpus, is_group_speaker};
use crate::error::{Error, Result};
use crate::rng::{purpose, stream};
use crate::scenario::Scenario;

/// One client per member.
pub fn clients(corpus: &Corpus, scenario: &Scenario) -> Result<Vec<Client>> {
    let per = scenario.data.speeches_per_member;
    let mut pools: Vec<Vec<&str>> = corpus
        .plays
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let mut s: Vec<&str> = p
                .speeches
                .iter()
                .filter(|(who, _)| !is_group_speaker(who))
                .map(|(_, s)| s.as_str())
                .collect();
            stream(scenario.seed, &[purpose::DATA, 1, i as u64]).shuffle(&mut s);
            s
        })
        .collect();
    let total: usize = pools.iter().map(Vec::len).sum();
    let needed = per.saturating_mul(scenario.members);
    if pools.is_empty() || total < needed {
        return Err(Error::Data {
            reason: format!(
                "{total} speeches in the corpus, {needed} needed ({} members × {per})",
                scenario.members
            ),
        });
    }
    let k = pools.len();
    let mut out = Vec::with_capacity(scenario.members);
    for m in 0..scenario.members {
        let mut rng = stream(scenario.seed, &[purpose::DATA, 2, m as u64]);
        let p = rng.dirichlet(scenario.data.alpha, k);
        let mut mine: Vec<&str> = Vec::with_capacity(per);
        while mine.len() < per {
            let mut w: Vec<f64> = (0..k)
                .map(|j| if pools[j].is_empty() { 0.0 } else { p[j] })
                .collect();
            if w.iter().all(|x| *x <= 0.0) {
                // The drawn plays are used up: fall back to the remaining ones uniformly.
                w = pools
                    .iter()
                    .map(|s| f64::from(u8::from(!s.is_empty())))
                    .collect();
            }
            let j = rng.weighted(&w);
            if let Some(s) = pools[j].pop() {
                mine.push(s);
            }
        }
        out.push(Client::from_speeches(format!("dirichlet-{m}"), &mine));
    }
    Ok(out)
}
