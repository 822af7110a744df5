//! Secure aggregation for the `distributed` privacy mode: every node learns the sum of a group's
//! quantized deltas, and no one learns an individual delta. There is no server.
//!
//! Pairwise masking in the style of Bonawitz et al. (CCS 2017) on the sparse SecAgg+ graph of
//! Bell et al. (CCS 2020):
//!
//! 1. Each member publishes ephemeral x25519 keys ([`KeyAdvertisement`]): one to encrypt shares
//!    to it, one for pairwise masks, and a commitment to its self-mask seed.
//! 2. Each member Shamir-shares its self-mask seed and its mask key among its graph neighbours
//!    (threshold `t`) and sends each neighbour its shares, encrypted ([`EncryptedShares`]).
//! 3. Each member publishes `y = x + PRG(b) + Σ ±PRG(k_ij) mod 2^32` ([`MaskedInput`]).
//! 4. Each member announces the masked inputs it holds ([`SurvivorSet`]); a set announced by a
//!    quorum is agreed, before any share is revealed.
//! 5. Each member reveals, for the agreed set, self-mask seed shares of survivors and mask key
//!    shares of dropped members, never both for one peer ([`UnmaskingShares`]); any node's
//!    [`Aggregator`] then removes the masks.
//!
//! - [`Cohort`]: the group's public data (members, [`Params`], graph) from round, seed and
//!   [`Config`].
//! - [`Member`]: one member's state machine; [`Aggregator`]: the sum from public messages.
//! - [`Engine`]: both, wired into a round's phases for one node — the
//!   [`SecureAggregator`](crate::SecureAggregator) a [`Community`](crate::Community) runs in
//!   `distributed` mode (groups, [`group_seed`], [`member_seed`], [`calibrate`]).
//!
//! Pure state machine: the caller passes the seed of each member's randomness and calls each
//! phase method at that phase's deadline; nothing here reads a clock or does IO.
//!
//! # Example
//!
//! ```
//! use hearth_federation::secagg::{Aggregator, Cohort, Config, Member};
//! use hearth_protocol::{Hash32, Keypair};
//!
//! let ids: Vec<_> = (1..=4u8).map(|i| Keypair::from_seed([i; 32]).member_id()).collect();
//! let cohort = Cohort::new(1, Hash32::digest(b"round 1"), &ids, &Config::default())?;
//! let mut members = Vec::new();
//! let mut keys = Vec::new();
//! for (i, id) in ids.iter().enumerate() {
//!     let (m, k) = Member::new(cohort.clone(), id, [i as u8 + 10; 32])?;
//!     members.push(m);
//!     keys.push((*id, k));
//! }
//! let mut observer = Aggregator::new(cohort.clone());
//! for (from, k) in &keys {
//!     observer.on_keys(from, k)?;
//!     for m in &mut members { m.on_keys(from, k)?; }
//! }
//! let shares: Vec<_> = members.iter_mut().map(|m| m.share()).collect::<Result<_, _>>()?;
//! for (from, s) in ids.iter().zip(&shares) {
//!     for m in &mut members { m.on_shares(from, s)?; }
//! }
//! let inputs = [[1u32, 2], [10, 20], [100, 200], [u32::MAX, 0]];
//! let masked: Vec<_> = members.iter_mut().zip(&inputs).map(|(m, x)| m.mask(x)).collect::<Result<_, _>>()?;
//! for (from, y) in ids.iter().zip(&masked) {
//!     observer.on_masked_input(from, y.clone())?;
//!     for m in &mut members { m.on_masked_input(from, y)?; }
//! }
//! let sets: Vec<_> = members.iter_mut().map(|m| m.announce()).collect::<Result<_, _>>()?;
//! for (from, s) in ids.iter().zip(&sets) {
//!     observer.on_survivor_set(from, s)?;
//!     for m in &mut members { m.on_survivor_set(from, s)?; }
//! }
//! for (from, m) in ids.iter().zip(&mut members) {
//!     observer.on_unmasking(from, &m.unmask()?)?;
//! }
//! let (sum, survivors) = observer.sum()?;
//! assert_eq!(sum, vec![110, 222]); // 1 + 10 + 100 + (2^32 − 1) wraps to 110
//! assert_eq!(survivors.len(), 4);
//! # Ok::<(), hearth_federation::secagg::Error>(())
//! ```
//!
//! [`KeyAdvertisement`]: hearth_protocol::KeyAdvertisement
//! [`EncryptedShares`]: hearth_protocol::EncryptedShares
//! [`MaskedInput`]: hearth_protocol::MaskedInput
//! [`SurvivorSet`]: hearth_protocol::SurvivorSet
//! [`UnmaskingShares`]: hearth_protocol::UnmaskingShares

mod cohort;
mod crypto;
mod engine;
mod error;
mod graph;
mod member;
mod params;
mod survivors;
#[cfg(test)]
mod tests;
mod unmask;

pub use self::{
    cohort::Cohort,
    engine::{Engine, GROUP_SEED_DOMAIN, MEMBER_SEED_LABEL, calibrate, group_seed, member_seed},
    error::Error,
    member::Member,
    params::{Config, Fraction, MAX_COHORT, MIN_COHORT, Params},
    unmask::Aggregator,
};
