//! Survivor agreement: who is in the sum, decided before any share is revealed.
//!
//! At the masked-input deadline each member announces, signed, the set of masked inputs it holds
//! (a [`SurvivorSet`]). A set is *agreed* once `quorum = n − ⌊δ·n⌋` distinct cohort members have
//! announced exactly that set. Honest members announce once, so two different sets can both reach
//! the quorum only if at least `2·quorum − n` (about a third of the cohort) signed both, which is
//! proof of their misbehaviour; a node that sees that refuses to unmask. An agreed set must itself
//! have at least `quorum` members: with more than `⌊δ·n⌋` inputs missing the round fails.
//!
//! A member reveals shares only for the agreed set, and never both kinds for one peer (see
//! [`Member::unmask`](crate::secagg::Member::unmask)), so a faked dropout cannot unmask anyone.

use std::collections::BTreeMap;

use hearth_protocol::{MemberId, SurvivorSet};

use crate::secagg::{cohort::Cohort, error::Error};

/// The announcements received, by announcer.
#[derive(Debug, Clone, Default)]
pub(crate) struct Tally {
    announced: BTreeMap<MemberId, Vec<MemberId>>,
    counts: BTreeMap<Vec<MemberId>, usize>,
}

impl Tally {
    /// Records `from`'s announcement. The same announcement twice is fine; a different one is
    /// equivocation.
    pub(crate) fn add(
        &mut self,
        cohort: &Cohort,
        from: &MemberId,
        msg: &SurvivorSet,
    ) -> Result<(), Error> {
        cohort.check_round(msg.round)?;
        cohort.index(from)?;
        let bad = |reason: String| Error::BadMessage {
            member: *from,
            what: "survivor set",
            reason,
        };
        if msg.survivors.windows(2).any(|w| w[0] >= w[1]) {
            return Err(bad("survivors not strictly increasing".into()));
        }
        for s in &msg.survivors {
            if cohort.index(s).is_err() {
                return Err(bad(format!("{s} is not in the cohort")));
            }
        }
        match self.announced.get(from) {
            Some(set) if *set == msg.survivors => return Ok(()),
            Some(_) => {
                return Err(Error::Equivocation {
                    member: *from,
                    what: "survivor set",
                });
            }
            None => {}
        }
        self.announced.insert(*from, msg.survivors.clone());
        *self.counts.entry(msg.survivors.clone()).or_default() += 1;
        Ok(())
    }

    /// The agreed set, if one has reached the quorum (and checked to be large enough).
    pub(crate) fn agreed(&self, cohort: &Cohort) -> Result<Option<&[MemberId]>, Error> {
        let quorum = cohort.params().quorum;
        let mut winners = self.counts.iter().filter(|(_, c)| **c >= quorum);
        let Some((set, _)) = winners.next() else {
            return Ok(None);
        };
        if winners.next().is_some() {
            return Err(Error::ConflictingSurvivorSets);
        }
        if set.len() < quorum {
            return Err(Error::TooManyDropouts {
                what: "masked inputs in the agreed survivor set",
                found: set.len(),
                need: quorum,
            });
        }
        Ok(Some(set))
    }

    /// The agreed set, or why there is none.
    pub(crate) fn require(&self, cohort: &Cohort) -> Result<&[MemberId], Error> {
        if let Some(set) = self.agreed(cohort)? {
            return Ok(set);
        }
        let quorum = cohort.params().quorum;
        let most = self.counts.values().copied().max().unwrap_or(0);
        if self.announced.len() < quorum {
            return Err(Error::TooManyDropouts {
                what: "survivor-set announcements",
                found: self.announced.len(),
                need: quorum,
            });
        }
        Err(Error::NoAgreement { quorum, best: most })
    }
}
