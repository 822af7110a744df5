//! Computing the sum from public messages: any node (member or not) can.
//!
//! `sum = Σ_{i∈S} y_i − Σ_{i∈S} PRG(b_i) ∓ Σ_{i∈S, j∈peers_i∖S} PRG(k_ij)`, where `S` is the
//! agreed survivor set, `b_i` is rebuilt from the revealed seed shares of survivors and checked
//! against the seed commitment, and the mask key `s_j` of each dropped peer is rebuilt from the
//! revealed key shares and checked against its advertised mask key. Pairwise masks between two
//! survivors cancel: both must list each other in `peers`.

use std::collections::{BTreeMap, BTreeSet};

use curve25519_dalek::scalar::Scalar;
use hearth_protocol::{
    AgreementKey, KeyAdvertisement, MaskedInput, MemberId, MemberShare, SurvivorSet,
    UnmaskingShares,
};

use crate::secagg::{
    cohort::{Cohort, check_key},
    crypto::{agree, apply_mask, combine, scalar_from_bytes, x25519_secret},
    error::Error,
    survivors::Tally,
};

/// Collects a round's public messages and computes the unmasked sum.
#[derive(Debug, Clone)]
pub struct Aggregator {
    cohort: Cohort,
    keys: BTreeMap<usize, KeyAdvertisement>,
    inputs: BTreeMap<usize, MaskedInput>,
    tally: Tally,
    /// Revealed shares by revealer.
    revealed: BTreeMap<usize, Revealed>,
}

/// One member's revealed shares: (seed shares by owner, key shares by owner).
type Revealed = (BTreeMap<usize, Scalar>, BTreeMap<usize, Scalar>);

impl Aggregator {
    /// An empty aggregator for `cohort`.
    pub fn new(cohort: Cohort) -> Aggregator {
        Aggregator {
            cohort,
            keys: BTreeMap::new(),
            inputs: BTreeMap::new(),
            tally: Tally::default(),
            revealed: BTreeMap::new(),
        }
    }

    /// The cohort.
    pub fn cohort(&self) -> &Cohort {
        &self.cohort
    }

    /// Records a key advertisement.
    pub fn on_keys(&mut self, from: &MemberId, msg: &KeyAdvertisement) -> Result<(), Error> {
        self.cohort.check_round(msg.round)?;
        let i = self.cohort.index(from)?;
        for key in [&msg.cipher_key, &msg.mask_key, &msg.seed_commitment] {
            check_key(key, from)?;
        }
        insert_once(&mut self.keys, i, msg.clone(), from, "key advertisement")
    }

    /// Records a masked input. Its peers must be graph neighbours of the sender.
    pub fn on_masked_input(&mut self, from: &MemberId, msg: MaskedInput) -> Result<(), Error> {
        self.cohort.check_round(msg.round)?;
        let i = self.cohort.index(from)?;
        for (k, peer) in msg.peers.iter().enumerate() {
            let j = self.cohort.index(peer).ok();
            if j.is_none_or(|j| !self.cohort.graph().adjacent(i, j))
                || (k > 0 && msg.peers[k - 1] >= *peer)
            {
                return Err(Error::BadMessage {
                    member: *from,
                    what: "masked input",
                    reason: format!("peer {peer} is not a neighbour, or peers are not sorted"),
                });
            }
        }
        insert_once(&mut self.inputs, i, msg, from, "masked input")
    }

    /// Records a survivor announcement.
    pub fn on_survivor_set(&mut self, from: &MemberId, msg: &SurvivorSet) -> Result<(), Error> {
        self.tally.add(&self.cohort, from, msg)
    }

    /// The agreed survivor set, once a quorum announced it.
    pub fn agreed_survivors(&self) -> Result<Option<&[MemberId]>, Error> {
        self.tally.agreed(&self.cohort)
    }

    /// Records a member's revealed shares. Each must be of a member whose share the sender holds
    /// (itself or a neighbour) and decode to a scalar.
    pub fn on_unmasking(&mut self, from: &MemberId, msg: &UnmaskingShares) -> Result<(), Error> {
        self.cohort.check_round(msg.round)?;
        let r = self.cohort.index(from)?;
        let decode = |list: &[MemberShare]| -> Result<BTreeMap<usize, Scalar>, Error> {
            let mut out = BTreeMap::new();
            for s in list {
                let owner = self.cohort.index(&s.member).ok();
                let value = scalar_from_bytes(&s.share);
                match (owner, value) {
                    (Some(o), Some(v)) if self.cohort.share_x(o, r).is_some() => {
                        if out.insert(o, v).is_some() {
                            return Err(bad_unmasking(from, format!("{} twice", s.member)));
                        }
                    }
                    _ => {
                        return Err(bad_unmasking(
                            from,
                            format!("no share of {} held, or not a scalar", s.member),
                        ));
                    }
                }
            }
            Ok(out)
        };
        let seeds = decode(&msg.self_mask_shares)?;
        let keys = decode(&msg.key_shares)?;
        if let Some(o) = seeds.keys().find(|o| keys.contains_key(o)) {
            return Err(bad_unmasking(
                from,
                format!("both shares of {}", self.cohort.id(*o)),
            ));
        }
        insert_once(
            &mut self.revealed,
            r,
            (seeds, keys),
            from,
            "unmasking shares",
        )
    }

    /// The unmasked sum of the agreed survivors' inputs (each element modulo 2^32), with the
    /// survivors; or why it cannot be computed (yet).
    pub fn sum(&self) -> Result<(Vec<u32>, Vec<MemberId>), Error> {
        let cohort = &self.cohort;
        let survivors_ids = self.tally.require(cohort)?;
        let survivors: Vec<usize> = survivors_ids
            .iter()
            .map(|id| cohort.index(id))
            .collect::<Result<_, _>>()?;
        let in_sum: BTreeSet<usize> = survivors.iter().copied().collect();
        let mut len = None;
        for &i in &survivors {
            let input = self.input(i)?;
            let expected = *len.get_or_insert(input.values.len());
            if input.values.len() != expected {
                return Err(Error::LengthMismatch {
                    member: *cohort.id(i),
                    found: input.values.len(),
                    expected,
                });
            }
        }
        // Pairwise masks between survivors must cancel; collect the dropped peers.
        let mut dropped: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for &i in &survivors {
            for peer in &self.input(i)?.peers {
                let j = cohort.index(peer)?;
                if in_sum.contains(&j) {
                    if !self.input(j)?.peers.contains(cohort.id(i)) {
                        return Err(Error::MaskMismatch {
                            a: *cohort.id(i),
                            b: *peer,
                        });
                    }
                } else {
                    dropped.entry(j).or_default().push(i);
                }
            }
        }
        let mut total = vec![0u32; len.unwrap_or(0)];
        for &i in &survivors {
            for (t, v) in total.iter_mut().zip(&self.input(i)?.values) {
                *t = t.wrapping_add(*v);
            }
        }
        let ctx = cohort.ctx();
        for &i in &survivors {
            let seed = self.rebuild(i, true)?;
            apply_mask(&mut total, &ctx.self_mask_key(&seed, cohort.id(i)), true);
        }
        for (j, masked_with) in dropped {
            let secret = x25519_secret(&self.rebuild(j, false)?);
            for i in masked_with {
                let (a, b) = (cohort.id(i), cohort.id(j));
                let key = ctx.pairwise_key(&agree(&secret, &self.key_of(i)?.mask_key), a, b);
                // `i` added the mask if a < b and subtracted it otherwise: undo that.
                apply_mask(&mut total, &key, a < b);
            }
        }
        Ok((total, survivors_ids.to_vec()))
    }

    fn input(&self, i: usize) -> Result<&MaskedInput, Error> {
        self.inputs.get(&i).ok_or(Error::Missing {
            what: "masked input",
            member: *self.cohort.id(i),
        })
    }

    fn key_of(&self, i: usize) -> Result<&KeyAdvertisement, Error> {
        self.keys.get(&i).ok_or(Error::Missing {
            what: "key advertisement",
            member: *self.cohort.id(i),
        })
    }

    /// Rebuilds `owner`'s self-mask seed (`seed`) or mask key from the revealed shares and
    /// checks it against its public commitment.
    fn rebuild(&self, owner: usize, seed: bool) -> Result<Scalar, Error> {
        let id = *self.cohort.id(owner);
        let secret = if seed { "self-mask seed" } else { "mask key" };
        let points: Vec<(u64, Scalar)> = self
            .revealed
            .iter()
            .filter_map(|(&r, (seeds, keys))| {
                let list = if seed { seeds } else { keys };
                let value = list.get(&owner)?;
                Some((self.cohort.share_x(owner, r)?, *value))
            })
            .collect();
        let need = self.cohort.params().threshold;
        if points.len() < need {
            return Err(Error::NotEnoughShares {
                member: id,
                secret,
                found: points.len(),
                need,
            });
        }
        let keys = self.key_of(owner)?;
        let commitment = if seed {
            keys.seed_commitment
        } else {
            keys.mask_key
        };
        combine(&points)
            .filter(|s| AgreementKey::from_secret(&x25519_secret(s)) == commitment)
            .ok_or(Error::InconsistentShares { member: id, secret })
    }
}

fn bad_unmasking(from: &MemberId, reason: String) -> Error {
    Error::BadMessage {
        member: *from,
        what: "unmasking shares",
        reason,
    }
}

/// Inserts `value` unless the sender already sent a different one.
fn insert_once<T: PartialEq>(
    map: &mut BTreeMap<usize, T>,
    i: usize,
    value: T,
    from: &MemberId,
    what: &'static str,
) -> Result<(), Error> {
    match map.get(&i) {
        Some(old) if *old == value => Ok(()),
        Some(_) => Err(Error::Equivocation {
            member: *from,
            what,
        }),
        None => {
            map.insert(i, value);
            Ok(())
        }
    }
}
