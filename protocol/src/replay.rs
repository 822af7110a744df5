//! Replay protection: a bounded per-sender window of accepted (round, nonce) pairs.
//!
//! Rules, checked in this order for a message from `sender` at (`round`, `nonce`) while the
//! caller is at `current` round:
//!
//! 1. **Too old**: `round + replay_rounds < current` → [`Error::Stale`].
//! 2. **Below the sender's floor**: each tracked sender remembers at most `replay_nonces` pairs;
//!    when a new pair would exceed that, the smallest pair (by round, then nonce) is evicted and
//!    becomes the sender's *floor*. Pairs at or below the floor can no longer be told apart from
//!    replays, so they are [`Error::Stale`].
//! 3. **Seen**: the exact pair was accepted before → [`Error::Replayed`].
//! 4. Otherwise the pair is accepted and remembered.
//!
//! At most `replay_senders` senders are tracked. When a new sender arrives and the table is full,
//! senders whose newest round is too old (rule 1) are dropped first; if none is, the sender with
//! the oldest newest round (ties: least recently accepted) is evicted, and the window's *evicted
//! floor* rises to that sender's newest round. Messages from untracked senders at rounds at or
//! below the evicted floor are [`Error::Stale`]: an evicted sender can never replay what it sent
//! before eviction. Memory is O(`replay_senders` × `replay_nonces`).

use std::collections::{BTreeSet, HashMap};

use crate::error::Error;
use crate::identity::MemberId;
use crate::limits::Limits;

#[derive(Debug, Clone)]
struct SenderWindow {
    seen: BTreeSet<(u64, u64)>,
    floor: Option<(u64, u64)>,
    newest_round: u64,
    last_accept: u64,
}

/// Per-sender replay window with bounded memory (see the module docs for the exact rules).
#[derive(Debug, Clone)]
pub struct ReplayWindow {
    senders: HashMap<MemberId, SenderWindow>,
    max_senders: usize,
    max_nonces: usize,
    rounds: u64,
    evicted_floor: Option<u64>,
    accepts: u64,
}

impl ReplayWindow {
    /// An empty window with the replay bounds of `limits`.
    pub fn new(limits: &Limits) -> Self {
        ReplayWindow {
            senders: HashMap::new(),
            max_senders: limits.replay_senders.max(1) as usize,
            max_nonces: limits.replay_nonces.max(1) as usize,
            rounds: u64::from(limits.replay_rounds),
            evicted_floor: None,
            accepts: 0,
        }
    }

    /// Number of senders tracked.
    pub fn senders(&self) -> usize {
        self.senders.len()
    }

    /// Accepts (`round`, `nonce`) from `sender` once; see the module docs for the rules.
    pub fn check(
        &mut self,
        sender: MemberId,
        round: u64,
        nonce: u64,
        current: u64,
    ) -> Result<(), Error> {
        let stale = Error::Stale {
            sender,
            round,
            nonce,
        };
        if round.saturating_add(self.rounds) < current {
            return Err(stale);
        }
        let pair = (round, nonce);
        if let Some(window) = self.senders.get(&sender) {
            if window.floor.is_some_and(|floor| pair <= floor) {
                return Err(stale);
            }
            if window.seen.contains(&pair) {
                return Err(Error::Replayed {
                    sender,
                    round,
                    nonce,
                });
            }
        } else {
            if self.evicted_floor.is_some_and(|floor| round <= floor) {
                return Err(stale);
            }
            if self.senders.len() >= self.max_senders {
                self.make_room(current);
            }
        }
        self.accepts += 1;
        let accepts = self.accepts;
        let max_nonces = self.max_nonces;
        let window = self.senders.entry(sender).or_insert_with(|| SenderWindow {
            seen: BTreeSet::new(),
            floor: None,
            newest_round: round,
            last_accept: accepts,
        });
        window.seen.insert(pair);
        window.newest_round = window.newest_round.max(round);
        window.last_accept = accepts;
        while window.seen.len() > max_nonces {
            window.floor = window.seen.pop_first();
        }
        Ok(())
    }

    /// Drops senders whose newest round is too old to matter at round `current`.
    pub fn prune(&mut self, current: u64) {
        let rounds = self.rounds;
        self.senders
            .retain(|_, w| w.newest_round.saturating_add(rounds) >= current);
    }

    fn make_room(&mut self, current: u64) {
        self.prune(current);
        if self.senders.len() < self.max_senders {
            return;
        }
        let victim = self
            .senders
            .iter()
            .min_by_key(|(_, w)| (w.newest_round, w.last_accept))
            .map(|(id, w)| (*id, w.newest_round));
        if let Some((id, newest)) = victim {
            self.senders.remove(&id);
            self.evicted_floor = Some(self.evicted_floor.map_or(newest, |f| f.max(newest)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::member;

    fn window(senders: u32, nonces: u32, rounds: u32) -> ReplayWindow {
        ReplayWindow::new(&Limits {
            replay_senders: senders,
            replay_nonces: nonces,
            replay_rounds: rounds,
            ..Limits::default()
        })
    }

    #[test]
    fn replay_and_stale_get_their_own_errors() {
        let mut w = window(8, 8, 2);
        let a = member(1).member_id();
        w.check(a, 5, 1, 5).unwrap();
        assert_eq!(
            w.check(a, 5, 1, 5),
            Err(Error::Replayed {
                sender: a,
                round: 5,
                nonce: 1
            })
        );
        w.check(a, 5, 2, 5).unwrap();
        w.check(a, 6, 1, 5).unwrap();
        // Round 2 is more than 2 rounds behind round 5.
        assert_eq!(
            w.check(a, 2, 9, 5),
            Err(Error::Stale {
                sender: a,
                round: 2,
                nonce: 9
            })
        );
        w.check(a, 3, 9, 5).unwrap();
        // Other senders are independent.
        w.check(member(2).member_id(), 5, 1, 5).unwrap();
    }

    #[test]
    fn nonces_per_sender_at_and_past_the_limit() {
        let mut w = window(8, 3, 100);
        let a = member(1).member_id();
        for nonce in 0..3 {
            w.check(a, 1, nonce, 1).unwrap();
        }
        for nonce in 0..3 {
            assert!(matches!(
                w.check(a, 1, nonce, 1),
                Err(Error::Replayed { .. })
            ));
        }
        // The 4th pair evicts (1, 0), which becomes the floor.
        w.check(a, 1, 3, 1).unwrap();
        assert_eq!(
            w.check(a, 1, 0, 1),
            Err(Error::Stale {
                sender: a,
                round: 1,
                nonce: 0
            })
        );
        assert!(matches!(w.check(a, 1, 1, 1), Err(Error::Replayed { .. })));
        // Anything below the floor is stale, anything above and unseen is fine.
        w.check(a, 2, 0, 1).unwrap();
        assert!(matches!(w.check(a, 1, 1, 1), Err(Error::Stale { .. })));
        assert!(matches!(w.check(a, 0, 7, 1), Err(Error::Stale { .. })));
    }

    #[test]
    fn senders_at_and_past_the_limit() {
        let mut w = window(3, 4, 100);
        let ids: Vec<MemberId> = (1..=4).map(|i| member(i).member_id()).collect();
        for (i, id) in ids[..3].iter().enumerate() {
            w.check(*id, 10 + i as u64, 0, 10).unwrap();
        }
        assert_eq!(w.senders(), 3);
        // A 4th sender evicts the one with the oldest newest round (ids[0], round 10).
        w.check(ids[3], 12, 0, 10).unwrap();
        assert_eq!(w.senders(), 3);
        // The evicted sender cannot replay round 10, nor send anything at or below it.
        assert!(matches!(
            w.check(ids[0], 10, 0, 10),
            Err(Error::Stale { .. })
        ));
        assert!(matches!(
            w.check(ids[0], 10, 5, 10),
            Err(Error::Stale { .. })
        ));
        // Tracked senders keep their exact state.
        assert!(matches!(
            w.check(ids[1], 11, 0, 10),
            Err(Error::Replayed { .. })
        ));
        // The evicted sender may continue in later rounds (evicting the next oldest).
        w.check(ids[0], 13, 0, 10).unwrap();
        assert_eq!(w.senders(), 3);
    }

    #[test]
    fn old_senders_are_pruned_before_anyone_is_evicted() {
        let mut w = window(2, 4, 1);
        let ids: Vec<MemberId> = (1..=3).map(|i| member(i).member_id()).collect();
        w.check(ids[0], 1, 0, 1).unwrap();
        w.check(ids[1], 5, 0, 5).unwrap();
        // At round 5, ids[0] (newest round 1) is out of the window: pruned, no evicted floor.
        w.check(ids[2], 5, 0, 5).unwrap();
        assert_eq!(w.senders(), 2);
        assert_eq!(w.evicted_floor, None);
        // Full again with two round-5 senders: the least recently accepted (ids[1]) is evicted.
        w.check(ids[0], 5, 0, 5).unwrap();
        assert_eq!(w.evicted_floor, Some(5));
        assert!(matches!(w.check(ids[1], 5, 1, 5), Err(Error::Stale { .. })));
    }
}
