//! One cohort member's side of a round, phase by phase.
//!
//! The round driver calls each phase method at that phase's deadline (it owns the clock) and
//! feeds every verified message (sender taken from the signed envelope) to the `on_*` methods:
//!
//! | phase | at its start the member | it accepts |
//! |---|---|---|
//! | keys | [`Member::new`] → [`KeyAdvertisement`] | [`Member::on_keys`] |
//! | shares | [`Member::share`] → [`EncryptedShares`] | [`Member::on_shares`] |
//! | masked input | [`Member::mask`] → [`MaskedInput`] | [`Member::on_masked_input`] |
//! | survivors | [`Member::announce`] → [`SurvivorSet`] | [`Member::on_survivor_set`] |
//! | unmasking | [`Member::unmask`] → [`UnmaskingShares`] | (the [`Aggregator`](crate::secagg::Aggregator)) |

use std::collections::{BTreeMap, BTreeSet};

use curve25519_dalek::scalar::Scalar;
use hearth_protocol::{
    AgreementKey, EncryptedShare, EncryptedShares, KeyAdvertisement, MaskedInput, MemberId,
    MemberShare, SurvivorSet, UnmaskingShares,
};
use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};
use x25519_dalek::StaticSecret;
use zeroize::Zeroize;

use crate::secagg::{
    cohort::{Cohort, check_key},
    crypto::{agree, apply_mask, random_scalar, split, x25519_secret},
    error::Error,
    survivors::Tally,
};

/// Where a member is in the round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Keys,
    Shares,
    Masked,
    Announced,
}

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Phase::Keys => "keys",
            Phase::Shares => "shares",
            Phase::Masked => "masked input",
            Phase::Announced => "survivors",
        }
    }
}

/// Which share of a peer's secrets a member revealed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Revealed {
    /// The self-mask seed share (the peer is a survivor).
    Seed,
    /// The mask key share (the peer dropped).
    Key,
}

/// A cohort member's secure-aggregation state for one round. Deterministic given its seed.
pub struct Member {
    cohort: Cohort,
    me: usize,
    phase: Phase,
    rng: ChaCha20Rng,
    cipher_secret: StaticSecret,
    mask_secret: Scalar,
    seed_secret: Scalar,
    /// Neighbours' key advertisements.
    keys: BTreeMap<usize, KeyAdvertisement>,
    /// Neighbours this member sent shares to.
    sent_to: BTreeSet<usize>,
    /// Shares held, by owner (including this member's own): (seed share, key share).
    held: BTreeMap<usize, (Scalar, Scalar)>,
    /// Masked inputs seen: sender → number of values.
    inputs: BTreeMap<usize, usize>,
    tally: Tally,
    revealed: BTreeMap<usize, Revealed>,
}

impl Drop for Member {
    fn drop(&mut self) {
        // The x25519 cipher secret zeroizes itself; wipe the scalars and the shares held.
        self.mask_secret.zeroize();
        self.seed_secret.zeroize();
        for (seed_share, key_share) in self.held.values_mut() {
            seed_share.zeroize();
            key_share.zeroize();
        }
    }
}

impl std::fmt::Debug for Member {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Member")
            .field("me", self.cohort.id(self.me))
            .field("round", &self.cohort.round())
            .field("phase", &self.phase)
            .finish_non_exhaustive()
    }
}

impl Member {
    /// Starts `me`'s part of the round: draws its ephemeral keys and self-mask seed from `seed`
    /// (the node draws it from the OS; tests fix it) and returns the advertisement to publish.
    pub fn new(
        cohort: Cohort,
        me: &MemberId,
        seed: [u8; 32],
    ) -> Result<(Member, KeyAdvertisement), Error> {
        let me = cohort.index(me)?;
        let mut rng = ChaCha20Rng::from_seed(seed);
        let mut cipher_bytes = [0u8; 32];
        rng.fill_bytes(&mut cipher_bytes);
        let cipher_secret = StaticSecret::from(cipher_bytes);
        let mask_secret = random_scalar(&mut rng);
        let seed_secret = random_scalar(&mut rng);
        let advertisement = KeyAdvertisement {
            round: cohort.round(),
            cipher_key: AgreementKey::from_secret(&cipher_secret),
            mask_key: AgreementKey::from_secret(&x25519_secret(&mask_secret)),
            seed_commitment: AgreementKey::from_secret(&x25519_secret(&seed_secret)),
        };
        let mut member = Member {
            cohort,
            me,
            phase: Phase::Keys,
            rng,
            cipher_secret,
            mask_secret,
            seed_secret,
            keys: BTreeMap::new(),
            sent_to: BTreeSet::new(),
            held: BTreeMap::new(),
            inputs: BTreeMap::new(),
            tally: Tally::default(),
            revealed: BTreeMap::new(),
        };
        member.keys.insert(me, advertisement.clone());
        Ok((member, advertisement))
    }

    /// This member's id.
    pub fn id(&self) -> &MemberId {
        self.cohort.id(self.me)
    }

    /// The cohort.
    pub fn cohort(&self) -> &Cohort {
        &self.cohort
    }

    fn wrong_phase(&self, action: &'static str) -> Error {
        Error::WrongPhase {
            action,
            phase: self.phase.name(),
        }
    }

    /// Records a neighbour's key advertisement (others' are ignored: this member never needs
    /// them). Accepted until this member masks its input.
    pub fn on_keys(&mut self, from: &MemberId, msg: &KeyAdvertisement) -> Result<(), Error> {
        self.cohort.check_round(msg.round)?;
        let i = self.cohort.index(from)?;
        for key in [&msg.cipher_key, &msg.mask_key, &msg.seed_commitment] {
            check_key(key, from)?;
        }
        if !self.cohort.graph().adjacent(self.me, i) {
            return Ok(());
        }
        match self.keys.get(&i) {
            Some(old) if old == msg => Ok(()),
            Some(_) => Err(Error::Equivocation {
                member: *from,
                what: "key advertisement",
            }),
            None if matches!(self.phase, Phase::Keys | Phase::Shares) => {
                self.keys.insert(i, msg.clone());
                Ok(())
            }
            None => Err(self.wrong_phase("accepting keys")),
        }
    }

    /// Ends the keys phase: splits the self-mask seed and the mask key into one share per
    /// neighbour plus one kept, and encrypts each to the neighbours whose keys arrived.
    ///
    /// Fails if fewer than `t − 1` neighbours advertised keys: this member's secrets could then
    /// never be rebuilt.
    pub fn share(&mut self) -> Result<EncryptedShares, Error> {
        if self.phase != Phase::Keys {
            return Err(self.wrong_phase("sharing"));
        }
        let params = *self.cohort.params();
        let holders = self.cohort.graph().holders(self.me);
        let reachable = holders
            .iter()
            .filter(|&&h| h != self.me && self.keys.contains_key(&h))
            .count();
        if reachable + 1 < params.threshold {
            return Err(Error::TooManyDropouts {
                what: "neighbours with keys (plus this member)",
                found: reachable + 1,
                need: params.threshold,
            });
        }
        let seed_shares = split(
            &self.seed_secret,
            params.threshold,
            holders.len(),
            &mut self.rng,
        );
        let key_shares = split(
            &self.mask_secret,
            params.threshold,
            holders.len(),
            &mut self.rng,
        );
        let (Some(seed_shares), Some(key_shares)) = (seed_shares, key_shares) else {
            return Err(Error::InvalidConfig(format!(
                "cannot split into {} shares with threshold {}",
                holders.len(),
                params.threshold
            )));
        };
        let me_id = *self.id();
        let mut shares = Vec::with_capacity(holders.len());
        for (p, &h) in holders.iter().enumerate() {
            if h == self.me {
                self.held.insert(h, (seed_shares[p], key_shares[p]));
                continue;
            }
            let Some(keys) = self.keys.get(&h) else {
                continue;
            };
            let shared = agree(&self.cipher_secret, &keys.cipher_key);
            let to = *self.cohort.id(h);
            let ciphertext =
                self.cohort
                    .ctx()
                    .seal(&shared, &me_id, &to, &seed_shares[p], &key_shares[p]);
            shares.push(EncryptedShare {
                recipient: to,
                ciphertext,
            });
            self.sent_to.insert(h);
        }
        self.phase = Phase::Shares;
        Ok(EncryptedShares {
            round: self.cohort.round(),
            shares,
        })
    }

    /// Decrypts the share a neighbour sent this member. Accepted until this member masks.
    pub fn on_shares(&mut self, from: &MemberId, msg: &EncryptedShares) -> Result<(), Error> {
        self.cohort.check_round(msg.round)?;
        let owner = self.cohort.index(from)?;
        let bad = |reason: String| Error::BadMessage {
            member: *from,
            what: "encrypted shares",
            reason,
        };
        for share in &msg.shares {
            let r = self
                .cohort
                .index(&share.recipient)
                .map_err(|e| bad(e.to_string()))?;
            if !self.cohort.graph().adjacent(owner, r) {
                return Err(bad(format!("{} is not a neighbour", share.recipient)));
            }
        }
        let me_id = *self.id();
        let Some(mine) = msg.shares.iter().find(|s| s.recipient == me_id) else {
            return Ok(());
        };
        if !matches!(self.phase, Phase::Keys | Phase::Shares) {
            return Err(self.wrong_phase("accepting shares"));
        }
        let keys = self.keys.get(&owner).ok_or(Error::Missing {
            what: "key advertisement",
            member: *from,
        })?;
        let shared = agree(&self.cipher_secret, &keys.cipher_key);
        let pair = self
            .cohort
            .ctx()
            .open(&shared, from, &me_id, &mine.ciphertext)
            .ok_or_else(|| bad("share does not decrypt".into()))?;
        match self.held.get(&owner) {
            Some(old) if *old == pair => Ok(()),
            Some(_) => Err(Error::Equivocation {
                member: *from,
                what: "encrypted shares",
            }),
            None => {
                self.held.insert(owner, pair);
                Ok(())
            }
        }
    }

    /// Ends the shares phase: masks `input` (the quantized, noised delta, modulo 2^32) with the
    /// self mask and a pairwise mask for each neighbour that exchanged shares both ways.
    pub fn mask(&mut self, input: &[u32]) -> Result<MaskedInput, Error> {
        if self.phase != Phase::Shares {
            return Err(self.wrong_phase("masking"));
        }
        let ctx = *self.cohort.ctx();
        let me_id = *self.id();
        let mut values = input.to_vec();
        apply_mask(
            &mut values,
            &ctx.self_mask_key(&self.seed_secret, &me_id),
            false,
        );
        let secret = x25519_secret(&self.mask_secret);
        let mut peers = Vec::new();
        for &j in &self.sent_to {
            if !self.held.contains_key(&j) {
                continue;
            }
            let Some(keys) = self.keys.get(&j) else {
                continue;
            };
            let peer = *self.cohort.id(j);
            let key = ctx.pairwise_key(&agree(&secret, &keys.mask_key), &me_id, &peer);
            apply_mask(&mut values, &key, me_id > peer);
            peers.push(peer);
        }
        self.inputs.insert(self.me, values.len());
        self.phase = Phase::Masked;
        Ok(MaskedInput {
            round: self.cohort.round(),
            values,
            peers,
        })
    }

    /// Records that a member's masked input arrived (only its presence and length matter here).
    /// Accepted until this member announces the survivors.
    pub fn on_masked_input(&mut self, from: &MemberId, msg: &MaskedInput) -> Result<(), Error> {
        self.cohort.check_round(msg.round)?;
        let i = self.cohort.index(from)?;
        if self.phase == Phase::Announced {
            return Err(self.wrong_phase("accepting masked inputs"));
        }
        if let Some(&expected) = self.inputs.get(&self.me)
            && msg.values.len() != expected
        {
            return Err(Error::LengthMismatch {
                member: *from,
                found: msg.values.len(),
                expected,
            });
        }
        self.inputs.insert(i, msg.values.len());
        Ok(())
    }

    /// Ends the masked-input phase: announces the members whose masked inputs this member holds
    /// (counting its own announcement).
    pub fn announce(&mut self) -> Result<SurvivorSet, Error> {
        if self.phase != Phase::Masked {
            return Err(self.wrong_phase("announcing survivors"));
        }
        let msg = SurvivorSet {
            round: self.cohort.round(),
            survivors: self.inputs.keys().map(|&i| *self.cohort.id(i)).collect(),
        };
        let me_id = *self.id();
        self.tally.add(&self.cohort, &me_id, &msg)?;
        self.phase = Phase::Announced;
        Ok(msg)
    }

    /// Records a member's survivor announcement.
    pub fn on_survivor_set(&mut self, from: &MemberId, msg: &SurvivorSet) -> Result<(), Error> {
        let cohort = &self.cohort;
        self.tally.add(cohort, from, msg)
    }

    /// The agreed survivor set, once a quorum announced it.
    pub fn agreed_survivors(&self) -> Result<Option<&[MemberId]>, Error> {
        self.tally.agreed(&self.cohort)
    }

    /// Reveals, for the agreed survivor set, the self-mask seed share of each survivor and the
    /// mask key share of each other member whose shares this member holds. Fails until a set is
    /// agreed, and refuses to ever reveal both kinds of share for one peer.
    pub fn unmask(&mut self) -> Result<UnmaskingShares, Error> {
        if self.phase != Phase::Announced {
            return Err(self.wrong_phase("unmasking"));
        }
        let survivors = self.tally.require(&self.cohort)?.to_vec();
        self.reveal(&survivors)
    }

    /// Reveals the shares for `survivors`; all or nothing.
    pub(crate) fn reveal(&mut self, survivors: &[MemberId]) -> Result<UnmaskingShares, Error> {
        let mut plan = Vec::with_capacity(self.held.len());
        for (&owner, &(seed_share, key_share)) in &self.held {
            let id = *self.cohort.id(owner);
            let kind = if survivors.binary_search(&id).is_ok() {
                Revealed::Seed
            } else {
                Revealed::Key
            };
            if self.revealed.get(&owner).is_some_and(|&k| k != kind) {
                return Err(Error::WouldRevealBoth(id));
            }
            let share = if kind == Revealed::Seed {
                seed_share
            } else {
                key_share
            };
            plan.push((owner, kind, share));
        }
        let mut msg = UnmaskingShares {
            round: self.cohort.round(),
            self_mask_shares: Vec::new(),
            key_shares: Vec::new(),
        };
        for (owner, kind, share) in plan {
            self.revealed.insert(owner, kind);
            let entry = MemberShare {
                member: *self.cohort.id(owner),
                share: share.to_bytes().to_vec(),
            };
            match kind {
                Revealed::Seed => msg.self_mask_shares.push(entry),
                Revealed::Key => msg.key_shares.push(entry),
            }
        }
        Ok(msg)
    }
}
