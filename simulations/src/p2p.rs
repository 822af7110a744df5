//! Real libp2p nodes on loopback as a [`Transport`] (`network.transport = "libp2p"`), for
//! protocol-level runs of tens of nodes: every member runs the node crate's network layer
//! ([`hearth_node::network::spawn`]: TCP, noise, yamux, identify, Kademlia, gossipsub with
//! manual validation and peer scoring) on `127.0.0.1`, mDNS off, and the sealed envelopes the
//! harness publishes travel as real gossip.
//!
//! # Virtual time over a real network
//!
//! The harness runs on a virtual clock whose deadlines are minutes apart; the network is real
//! and takes milliseconds. A message published at virtual time `t` is held until the harness
//! asks for deliveries up to some `until ≥ t` ([`Transport::next_until`]); then every held
//! message due by `until` is gossiped, in virtual-time order, and the transport waits (at most
//! `network.settle_ms` of real time per batch) until it has reached every receiver. A message
//! arrives at virtual time `t + its real latency` (milliseconds, at least 1): a straggler
//! published after a deadline is still late, and what the network loses or cannot deliver in
//! time is counted as lost. Runs are therefore reproducible only as far as real latencies stay
//! far below the schedule's deadlines (they do, by three orders of magnitude), not bit for bit.
//!
//! Every message goes on the community's `deltas` topic; each node accepts (forwards) every
//! message at once, since the harness's full nodes verify after delivery. Bytes are counted as
//! in [`crate::network::Memory`] (payload bytes published and received); libp2p's own framing
//! and gossip fan-out are not counted.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hearth_node::network::{Client, NetConfig, NetEvent, Topic, Validation, spawn};
use hearth_protocol::Hash32;
use libp2p::identity::Keypair;
use libp2p::{Multiaddr, PeerId};
use tokio::runtime::Runtime;
use tokio::sync::mpsc;

use crate::error::{Error, Result};
use crate::network::{Delivery, Transport};
use crate::rng::{derive, purpose};

/// Most libp2p nodes in one run (each is a swarm with its own sockets and tasks).
pub const MAX_NODES: usize = 64;
/// How long setup waits for every node to have a gossip mesh peer.
const MESH_TIMEOUT: Duration = Duration::from_secs(60);
/// Arrivals buffered between the nodes and the harness.
const INBOX: usize = 1 << 16;
/// The community name of the gossip topics.
const COMMUNITY: &str = "hearth-sim";

/// One message of the current round.
#[derive(Debug)]
struct Message {
    from: usize,
    at_ms: u64,
    bytes: Arc<[u8]>,
    /// Receivers it has not reached yet.
    waiting: BTreeSet<usize>,
    sent: Option<Instant>,
}

/// `members` libp2p nodes on loopback.
pub struct Libp2p {
    runtime: Runtime,
    clients: Vec<Client>,
    inbox: mpsc::Receiver<(usize, Vec<u8>, Instant)>,
    settle: Duration,
    messages: Vec<Message>,
    by_hash: HashMap<Hash32, usize>,
    held: Vec<usize>,
    arrived: BinaryHeap<Reverse<(u64, usize, usize)>>,
    sent: Vec<u64>,
    received: Vec<u64>,
    lost: u64,
}

impl std::fmt::Debug for Libp2p {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Libp2p")
            .field("nodes", &self.clients.len())
            .field("lost", &self.lost)
            .finish()
    }
}

/// A node's libp2p key, from the run seed.
fn keypair(seed: u64, i: usize) -> Result<Keypair> {
    let mut bytes = [0u8; 32];
    for (k, chunk) in bytes.chunks_exact_mut(8).enumerate() {
        chunk.copy_from_slice(
            &derive(seed, &[purpose::KEYS, 2_000_000 + i as u64, k as u64]).to_le_bytes(),
        );
    }
    Keypair::ed25519_from_bytes(bytes).map_err(|e| Error::run(format!("libp2p key: {e}")))
}

impl Libp2p {
    /// Starts `members` nodes on loopback, each dialing up to three earlier ones, and waits
    /// until every node has a gossip mesh peer. `settle` bounds the real time a batch of
    /// messages may take to reach its receivers.
    pub fn start(seed: u64, members: usize, settle: Duration) -> Result<Self> {
        if !(2..=MAX_NODES).contains(&members) {
            return Err(Error::run(format!(
                "the libp2p transport runs 2 to {MAX_NODES} nodes, not {members}"
            )));
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| Error::run(format!("tokio runtime: {e}")))?;
        let (tx, inbox) = mpsc::channel(INBOX);
        let mut clients = Vec::with_capacity(members);
        let mut addrs: Vec<Multiaddr> = Vec::with_capacity(members);
        for i in 0..members {
            let key = keypair(seed, i)?;
            let peer = PeerId::from(key.public());
            let mut config = NetConfig::loopback();
            for j in [i.wrapping_sub(1), i / 2, 0] {
                if j < i
                    && let Some(a) = addrs.get(j)
                    && !config.bootstrap.contains(a)
                {
                    config.bootstrap.push(a.clone());
                }
            }
            let (client, mut events, addr) = runtime.block_on(async {
                let (client, mut events, _task) = spawn(key, COMMUNITY, config)
                    .map_err(|e| Error::run(format!("libp2p node {i}: {e}")))?;
                // The first event is the listening address.
                let addr = loop {
                    match tokio::time::timeout(Duration::from_secs(10), events.recv()).await {
                        Ok(Some(NetEvent::Listening(a))) => break a,
                        Ok(Some(_)) => continue,
                        _ => return Err(Error::run(format!("libp2p node {i} did not listen"))),
                    }
                };
                Ok::<_, Error>((client, events, addr))
            })?;
            addrs.push(addr.with(libp2p::multiaddr::Protocol::P2p(peer)));
            let node = client.clone();
            let tx = tx.clone();
            runtime.spawn(async move {
                while let Some(event) = events.recv().await {
                    if let NetEvent::Gossip {
                        id,
                        propagation_source,
                        data,
                        ..
                    } = event
                    {
                        let at = Instant::now();
                        let _ = node
                            .validate(id, propagation_source, Validation::Accept)
                            .await;
                        if tx.send((i, data, at)).await.is_err() {
                            break;
                        }
                    }
                }
            });
            clients.push(client);
        }
        let net = Libp2p {
            runtime,
            clients,
            inbox,
            settle,
            messages: Vec::new(),
            by_hash: HashMap::new(),
            held: Vec::new(),
            arrived: BinaryHeap::new(),
            sent: vec![0; members],
            received: vec![0; members],
            lost: 0,
        };
        net.wait_for_mesh()?;
        Ok(net)
    }

    fn wait_for_mesh(&self) -> Result<()> {
        let started = Instant::now();
        self.runtime.block_on(async {
            for (i, c) in self.clients.iter().enumerate() {
                loop {
                    let mesh = c.mesh_peers(Topic::Deltas).await.unwrap_or_default();
                    if !mesh.is_empty() {
                        break;
                    }
                    if started.elapsed() > MESH_TIMEOUT {
                        return Err(Error::run(format!(
                            "libp2p node {i} found no gossip mesh peer in {} s",
                            MESH_TIMEOUT.as_secs()
                        )));
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            Ok(())
        })
    }

    /// Connected peers of each node (for reports and tests).
    pub fn peer_counts(&self) -> Vec<usize> {
        self.runtime.block_on(async {
            let mut out = Vec::with_capacity(self.clients.len());
            for c in &self.clients {
                out.push(c.peers().await.map(|p| p.len()).unwrap_or(0));
            }
            out
        })
    }

    /// (receiver, message) pairs that did not arrive within the settle time, so far.
    pub fn lost(&self) -> u64 {
        self.lost
    }

    /// Gossips every held message due by `until_ms` and waits for it to reach its receivers.
    fn flush(&mut self, until_ms: u64) {
        let mut due: Vec<usize> = Vec::new();
        self.held.retain(|&k| {
            let now = self.messages[k].at_ms <= until_ms;
            if now {
                due.push(k);
            }
            !now
        });
        if due.is_empty() {
            return;
        }
        due.sort_by_key(|&k| (self.messages[k].at_ms, k));
        for &k in &due {
            let m = &mut self.messages[k];
            let client = &self.clients[m.from];
            let data = m.bytes.to_vec();
            let ok = self
                .runtime
                .block_on(client.publish(Topic::Deltas, data))
                .is_ok();
            m.sent = Some(Instant::now());
            if !ok {
                self.lost += m.waiting.len() as u64;
                m.waiting.clear();
            }
        }
        let deadline = Instant::now() + self.settle;
        while due.iter().any(|&k| !self.messages[k].waiting.is_empty()) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let inbox = &mut self.inbox;
            let next = self
                .runtime
                .block_on(async { tokio::time::timeout(left, inbox.recv()).await });
            match next {
                Ok(Some((to, data, at))) => self.arrive(to, &data, at),
                _ => break,
            }
        }
        for &k in &due {
            let m = &mut self.messages[k];
            self.lost += m.waiting.len() as u64;
            m.waiting.clear();
        }
    }

    fn arrive(&mut self, to: usize, data: &[u8], at: Instant) {
        let Some(&k) = self.by_hash.get(&Hash32::digest(data)) else {
            return; // A message of an earlier round.
        };
        let m = &mut self.messages[k];
        if !m.waiting.remove(&to) {
            return;
        }
        let latency = m
            .sent
            .map_or(1, |s| at.saturating_duration_since(s).as_millis() as u64)
            .max(1);
        self.arrived.push(Reverse((m.at_ms + latency, k, to)));
    }
}

impl Transport for Libp2p {
    fn begin_round(&mut self, _round: u64) -> usize {
        let stale = self.arrived.len()
            + self
                .held
                .iter()
                .map(|&k| self.messages[k].waiting.len())
                .sum::<usize>();
        self.messages.clear();
        self.by_hash.clear();
        self.held.clear();
        self.arrived.clear();
        stale
    }

    fn publish(&mut self, from: usize, at_ms: u64, bytes: Vec<u8>, receivers: &[usize]) -> u64 {
        let k = self.messages.len();
        if let Some(s) = self.sent.get_mut(from) {
            *s += bytes.len() as u64;
        }
        self.by_hash.insert(Hash32::digest(&bytes), k);
        let waiting = receivers
            .iter()
            .copied()
            .filter(|&to| to != from && to < self.clients.len())
            .collect();
        self.messages.push(Message {
            from: from.min(self.clients.len().saturating_sub(1)),
            at_ms,
            bytes: bytes.into(),
            waiting,
            sent: None,
        });
        self.held.push(k);
        k as u64
    }

    fn next_until(&mut self, until_ms: u64) -> Option<Delivery> {
        self.flush(until_ms);
        let &Reverse((at, k, to)) = self.arrived.peek()?;
        if at > until_ms {
            return None;
        }
        self.arrived.pop();
        let m = self.messages.get(k)?;
        if let Some(r) = self.received.get_mut(to) {
            *r += m.bytes.len() as u64;
        }
        Some(Delivery {
            at_ms: at,
            to,
            from: m.from,
            message: k as u64,
            bytes: m.bytes.clone(),
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

    #[test]
    fn messages_cross_real_gossip_in_virtual_time_order() {
        let mut net = Libp2p::start(1, 4, Duration::from_secs(10)).unwrap();
        assert!(net.peer_counts().iter().all(|&p| p >= 1));
        net.begin_round(1);
        let all = [0, 1, 2, 3];
        // Published out of order: the later one is held until the clock reaches it.
        net.publish(2, 5_000, vec![2; 300], &all);
        net.publish(0, 1_000, vec![1; 100], &all);
        let mut early = Vec::new();
        while let Some(d) = net.next_until(4_999) {
            early.push((d.to, d.from, d.at_ms));
        }
        assert_eq!(
            early.len(),
            3,
            "message 1 reaches the three others: {early:?}"
        );
        assert!(
            early
                .iter()
                .all(|&(to, from, at)| from == 0 && to != 0 && at > 1_000 && at < 4_999)
        );
        let mut late = Vec::new();
        while let Some(d) = net.next_until(u64::MAX) {
            late.push((d.to, d.from, d.bytes.len()));
        }
        late.sort_unstable();
        assert_eq!(late, [(0, 2, 300), (1, 2, 300), (3, 2, 300)]);
        let (sent, received) = net.take_bytes();
        assert_eq!(sent, [100, 0, 300, 0]);
        assert_eq!(received, [300, 400, 100, 400]);
        assert_eq!(net.lost(), 0);
        // A new round forgets what was not delivered.
        net.begin_round(2);
        net.publish(1, 10, vec![7; 10], &all);
        assert_eq!(
            net.begin_round(3),
            3,
            "three undelivered receptions dropped"
        );
        assert!(net.next_until(u64::MAX).is_none());
    }

    #[test]
    fn node_counts_outside_the_limits_are_refused() {
        assert!(Libp2p::start(1, 1, Duration::from_secs(1)).is_err());
        assert!(Libp2p::start(1, MAX_NODES + 1, Duration::from_secs(1)).is_err());
    }
}
