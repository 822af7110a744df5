//! The in-memory network: a [`Transport`] that carries the sealed envelope bytes between virtual
//! members with seeded latency, loss and partitions, on a virtual clock.
//!
//! Every draw (a message's latency to one receiver, whether it is lost) comes from a stream named
//! by the run seed, the round, the message's number in the round and the receiver, so the same
//! scenario delivers the same bytes at the same virtual times in every run. Deliveries come out
//! in time order, ties broken by the order of publication and the receiver's index.
//!
//! [`Memory`] is the default; `network.transport = "libp2p"` runs real nodes instead
//! ([`crate::p2p::Libp2p`]), through the same trait. [`build`] makes the scenario's.
//!
//! Bytes are counted as a gossip node sees them: a publisher sends its message once (the
//! fan-out to mesh peers is libp2p's business and is not modelled), every receiver counts what
//! reaches it.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;

use crate::rng::{purpose, stream};
use crate::scenario::{NetworkSpec, TransportKind};

/// One message arriving at one member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Arrival, virtual milliseconds since the unix epoch.
    pub at_ms: u64,
    /// Receiver (member index).
    pub to: usize,
    /// Sender (member index).
    pub from: usize,
    /// The message's number within the round (publication order).
    pub message: u64,
    /// The sealed envelope.
    pub bytes: Arc<[u8]>,
}

/// What the harness needs from a network: publish sealed bytes to some members, and take the
/// deliveries in time order.
pub trait Transport: std::fmt::Debug {
    /// A new round begins (partitions and draws are per round); undelivered messages of the
    /// previous round are dropped and their count returned.
    fn begin_round(&mut self, round: u64) -> usize;

    /// `from` publishes `bytes` at `at_ms` to `receivers` (the sender itself is skipped).
    /// Returns the message's number in the round.
    fn publish(&mut self, from: usize, at_ms: u64, bytes: Vec<u8>, receivers: &[usize]) -> u64;

    /// The earliest delivery at or before `until_ms`, if any.
    fn next_until(&mut self, until_ms: u64) -> Option<Delivery>;

    /// A direct transfer of `bytes` from `from` to `to` (a request-response sync), counted at
    /// once.
    fn transfer(&mut self, from: usize, to: usize, bytes: u64);

    /// Bytes each member sent and received since the last call (and resets them).
    fn take_bytes(&mut self) -> (Vec<u64>, Vec<u64>);
}

/// The scenario's transport for `members` members, the first `full` of them full nodes.
pub fn build(
    seed: u64,
    spec: &NetworkSpec,
    members: usize,
    full: usize,
) -> crate::Result<Box<dyn Transport>> {
    Ok(match spec.transport {
        TransportKind::Memory => Box::new(Memory::new(seed, spec.clone(), members, full)),
        TransportKind::Libp2p => Box::new(crate::p2p::Libp2p::start(
            seed,
            members,
            std::time::Duration::from_millis(spec.settle_ms),
        )?),
    })
}

/// The seeded in-memory network of [`NetworkSpec`].
#[derive(Debug)]
pub struct Memory {
    seed: u64,
    spec: NetworkSpec,
    full: usize,
    round: u64,
    next_message: u64,
    queue: BinaryHeap<Reverse<(u64, u64, usize)>>,
    messages: Vec<(usize, Arc<[u8]>)>,
    sent: Vec<u64>,
    received: Vec<u64>,
    lost: u64,
    cut: u64,
}

impl Memory {
    /// A network for `members` members, the first `full` of them full nodes: in a partition,
    /// member `m` is in group `(m mod full) mod groups`, so a light member is always on the side
    /// of its home node `m mod full`.
    pub fn new(seed: u64, spec: NetworkSpec, members: usize, full: usize) -> Self {
        Memory {
            seed,
            spec,
            full: full.max(1),
            round: 0,
            next_message: 0,
            queue: BinaryHeap::new(),
            messages: Vec::new(),
            sent: vec![0; members],
            received: vec![0; members],
            lost: 0,
            cut: 0,
        }
    }

    /// The partition group of `member` this round (`None`: no partition).
    pub fn group(&self, member: usize) -> Option<usize> {
        self.spec
            .partitions
            .iter()
            .find(|p| (p.rounds[0]..=p.rounds[1]).contains(&self.round))
            .map(|p| (member % self.full) % p.groups)
    }

    /// Messages lost so far, and messages cut by partitions.
    pub fn dropped(&self) -> (u64, u64) {
        (self.lost, self.cut)
    }
}

impl Transport for Memory {
    fn begin_round(&mut self, round: u64) -> usize {
        let stale = self.queue.len();
        self.queue.clear();
        self.messages.clear();
        self.round = round;
        self.next_message = 0;
        stale
    }

    fn publish(&mut self, from: usize, at_ms: u64, bytes: Vec<u8>, receivers: &[usize]) -> u64 {
        let message = self.next_message;
        self.next_message += 1;
        let bytes: Arc<[u8]> = bytes.into();
        if let Some(s) = self.sent.get_mut(from) {
            *s += bytes.len() as u64;
        }
        let index = self.messages.len() as u64;
        self.messages.push((from, bytes));
        let [lo, hi] = self.spec.latency_ms;
        let from_group = self.group(from);
        for &to in receivers {
            if to == from {
                continue;
            }
            if from_group.is_some() && self.group(to) != from_group {
                self.cut += 1;
                continue;
            }
            let mut rng = stream(
                self.seed,
                &[purpose::NETWORK, self.round, message, to as u64],
            );
            if rng.bernoulli(self.spec.loss) {
                self.lost += 1;
                continue;
            }
            let at = at_ms + rng.range(lo, hi);
            // Ordered by time, then publication, then receiver.
            self.queue
                .push(Reverse((at, index << 24 | to as u64 & 0xff_ffff, to)));
        }
        message
    }

    fn next_until(&mut self, until_ms: u64) -> Option<Delivery> {
        let &Reverse((at, key, to)) = self.queue.peek()?;
        if at > until_ms {
            return None;
        }
        self.queue.pop();
        let index = (key >> 24) as usize;
        let (from, bytes) = self.messages.get(index)?.clone();
        if let Some(r) = self.received.get_mut(to) {
            *r += bytes.len() as u64;
        }
        Some(Delivery {
            at_ms: at,
            to,
            from,
            message: index as u64,
            bytes,
        })
    }

    fn transfer(&mut self, from: usize, to: usize, bytes: u64) {
        if let Some(s) = self.sent.get_mut(from) {
            *s += bytes;
        }
        if let Some(r) = self.received.get_mut(to) {
            *r += bytes;
        }
    }

    fn take_bytes(&mut self) -> (Vec<u64>, Vec<u64>) {
        let n = self.sent.len();
        (
            std::mem::replace(&mut self.sent, vec![0; n]),
            std::mem::replace(&mut self.received, vec![0; n]),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::PartitionSpec;

    fn drain(net: &mut Memory) -> Vec<(u64, usize, usize, u64)> {
        let mut out = Vec::new();
        while let Some(d) = net.next_until(u64::MAX) {
            out.push((d.at_ms, d.to, d.from, d.message));
        }
        out
    }

    #[test]
    fn deliveries_are_seeded_ordered_and_counted() {
        let spec = NetworkSpec {
            latency_ms: [10, 50],
            ..NetworkSpec::default()
        };
        let run = || {
            let mut net = Memory::new(3, spec.clone(), 4, 4);
            net.begin_round(1);
            net.publish(0, 1000, vec![1; 10], &[0, 1, 2, 3]);
            net.publish(2, 1005, vec![2; 7], &[0, 1, 2, 3]);
            let d = drain(&mut net);
            (d, net.take_bytes())
        };
        let (a, bytes) = run();
        assert_eq!(a, run().0, "same seed, same deliveries");
        assert_eq!(a.len(), 6, "each message reaches everyone but its sender");
        assert!(a.windows(2).all(|w| w[0].0 <= w[1].0), "in time order");
        assert!(a.iter().all(|d| d.1 != d.2));
        assert!(
            a.iter()
                .all(|&(at, _, from, _)| (1010..=1055).contains(&at) && (from == 0 || at >= 1015))
        );
        assert_eq!(bytes.0, vec![10, 0, 7, 0]);
        assert_eq!(bytes.1, vec![7, 17, 10, 17]);
        let mut other = Memory::new(4, spec, 4, 4);
        other.begin_round(1);
        other.publish(0, 1000, vec![1; 10], &[0, 1, 2, 3]);
        other.publish(2, 1005, vec![2; 7], &[0, 1, 2, 3]);
        assert_ne!(drain(&mut other), a, "another seed draws other latencies");
    }

    #[test]
    fn loss_partitions_and_deadlines() {
        let mut spec = NetworkSpec {
            latency_ms: [100, 100],
            loss: 1.0,
            ..NetworkSpec::default()
        };
        let mut net = Memory::new(1, spec.clone(), 3, 3);
        net.begin_round(1);
        net.publish(0, 0, vec![0; 4], &[1, 2]);
        assert_eq!(net.next_until(u64::MAX), None);
        assert_eq!(net.dropped(), (2, 0));
        spec.loss = 0.0;
        spec.partitions = vec![PartitionSpec {
            rounds: [2, 3],
            groups: 2,
        }];
        let mut net = Memory::new(1, spec, 4, 4);
        for round in 1..=4 {
            net.begin_round(round);
            net.publish(0, 0, vec![0; 4], &[1, 2, 3]);
            let to: Vec<usize> = drain(&mut net).into_iter().map(|d| d.1).collect();
            let expected = if (2..=3).contains(&round) {
                vec![2]
            } else {
                vec![1, 2, 3]
            };
            assert_eq!(to, expected, "round {round}");
        }
        net.begin_round(5);
        net.publish(1, 0, vec![0; 4], &[0]);
        assert_eq!(net.next_until(99), None, "not before its arrival");
        assert_eq!(net.begin_round(6), 1, "undelivered messages are dropped");
        assert_eq!(net.next_until(u64::MAX), None);
    }
}
