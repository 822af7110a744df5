//! The public data of one secure-aggregation instance: round, seed, members, parameters, graph.

use hearth_protocol::{AgreementKey, Hash32, MemberId};

use crate::secagg::{
    crypto::Context,
    error::Error,
    graph::Graph,
    params::{Config, Params},
};

/// One secure-aggregation group of a round, as every node derives it: who is in it, the masking
/// graph and the thresholds. Members and observers must build it from the same round, seed,
/// member list and [`Config`].
#[derive(Debug, Clone)]
pub struct Cohort {
    members: Vec<MemberId>,
    params: Params,
    graph: Graph,
    ctx: Context,
}

impl Cohort {
    /// The cohort of `members` (any order; sorted here) for `round`, whose graph is drawn from
    /// `seed` (the round seed: unpredictable until the cohort is fixed).
    pub fn new(
        round: u64,
        seed: Hash32,
        members: &[MemberId],
        config: &Config,
    ) -> Result<Cohort, Error> {
        let mut members = members.to_vec();
        members.sort_unstable();
        if let Some(w) = members.windows(2).find(|w| w[0] == w[1]) {
            return Err(Error::DuplicateMember(w[0]));
        }
        let params = Params::for_cohort(members.len(), config)?;
        let ctx = Context {
            seed: seed.0,
            round,
        };
        let graph = Graph::new(members.len(), params.degree, ctx.graph_key());
        Ok(Cohort {
            members,
            params,
            graph,
            ctx,
        })
    }

    /// The round.
    pub fn round(&self) -> u64 {
        self.ctx.round
    }

    /// The members, sorted by id bytes.
    pub fn members(&self) -> &[MemberId] {
        &self.members
    }

    /// Degree, threshold and quorum.
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// The neighbours of `member` in the masking graph, sorted.
    pub fn neighbours(&self, member: &MemberId) -> Result<Vec<MemberId>, Error> {
        let i = self.index(member)?;
        Ok(self
            .graph
            .neighbours(i)
            .iter()
            .map(|&j| self.members[j])
            .collect())
    }

    pub(crate) fn index(&self, member: &MemberId) -> Result<usize, Error> {
        self.members
            .binary_search(member)
            .map_err(|_| Error::NotInCohort(*member))
    }

    pub(crate) fn id(&self, index: usize) -> &MemberId {
        &self.members[index]
    }

    pub(crate) fn graph(&self) -> &Graph {
        &self.graph
    }

    pub(crate) fn ctx(&self) -> &Context {
        &self.ctx
    }

    /// Checks a message's round.
    pub(crate) fn check_round(&self, round: u64) -> Result<(), Error> {
        if round != self.ctx.round {
            return Err(Error::WrongRound {
                expected: self.ctx.round,
                found: round,
            });
        }
        Ok(())
    }

    /// The x coordinate of `holder`'s share of `owner`'s secrets, if it holds one.
    pub(crate) fn share_x(&self, owner: usize, holder: usize) -> Option<u64> {
        if owner != holder && !self.graph.adjacent(owner, holder) {
            return None;
        }
        // Position in the sorted list of the owner's neighbours and the owner itself.
        let below = self
            .graph
            .neighbours(owner)
            .partition_point(|&j| j < holder);
        let pos = below + usize::from(owner < holder);
        Some(pos as u64 + 1)
    }
}

/// Checks one public key of a key advertisement.
pub(crate) fn check_key(key: &AgreementKey, from: &MemberId) -> Result<(), Error> {
    key.validate().map_err(|e| Error::BadMessage {
        member: *from,
        what: "key advertisement",
        reason: e.to_string(),
    })
}
