//! The peer-to-peer layer: a libp2p swarm (TCP and QUIC, noise, yamux, identify, Kademlia,
//! optional mDNS, connection limits), gossipsub with manual validation and peer scoring on the
//! community's topics, and the `/hearth/sync/1` request-response protocol.
//!
//! Following rust-libp2p's file-sharing example, the swarm lives in one event-loop task; the rest
//! of the node talks to it through a [`Client`] over a bounded command channel and receives
//! [`NetEvent`]s on a bounded event channel. This module knows nothing about message contents:
//! every gossip message is handed up and stays unforwarded until the node reports a
//! [`Validation`] for it.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use libp2p::gossipsub::{self, IdentTopic, MessageAuthenticity, MessageId, TopicHash};
use libp2p::identity::Keypair;
use libp2p::request_response::{self, ProtocolSupport, ResponseChannel};
use libp2p::swarm::NetworkBehaviour;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::{
    Multiaddr, PeerId, StreamProtocol, Swarm, connection_limits, identify, kad, mdns, noise, tcp,
    yamux,
};
use serde_bytes::ByteBuf;
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot};
use tracing::warn;

/// The request-response protocol for adapter versions, deltas and the manifest.
pub const SYNC_PROTOCOL: StreamProtocol = StreamProtocol::new("/hearth/sync/1");
/// The Kademlia protocol of Hearth's DHT (separate from the public IPFS DHT).
pub const KAD_PROTOCOL: StreamProtocol = StreamProtocol::new("/hearth/kad/1");

/// Bytes the gossip transport accepts beyond [`NetConfig::max_transmit_size`]: room for
/// gossipsub's own framing (topic, source, sequence number, signature) and for oversized
/// messages to be seen, counted and rejected by the node rather than dropped unseen.
pub const OVERSIZE_SLACK: usize = 64 * 1024;

/// Limits and switches of the network layer. Every queue is bounded.
#[derive(Debug, Clone)]
pub struct NetConfig {
    /// Addresses to listen on (TCP and/or QUIC multiaddrs).
    pub listen: Vec<Multiaddr>,
    /// Peers to dial at start, each with a `/p2p/<peer id>` suffix.
    pub bootstrap: Vec<Multiaddr>,
    /// Discover peers on the local network with mDNS (multicast). Off in tests and CI.
    pub mdns: bool,
    /// Largest gossip message, in bytes (the manifest's limit). The transport accepts up to
    /// [`OVERSIZE_SLACK`] more, so that a message just over the limit reaches the node's
    /// validation and is rejected there (counted as `too_large`, its sender penalised) instead of
    /// vanishing in the codec.
    pub max_transmit_size: usize,
    /// Largest sync request, in bytes.
    pub max_sync_request: u64,
    /// Largest sync response, in bytes.
    pub max_sync_response: u64,
    /// Sync request timeout.
    pub sync_timeout: Duration,
    /// Outbound sync requests in flight at once.
    pub max_pending_requests: usize,
    /// Established connections in total.
    pub max_connections: u32,
    /// Established connections per peer.
    pub max_connections_per_peer: u32,
    /// Capacity of the event channel to the node; when full, gossip is left unvalidated
    /// ([`Validation::Ignore`]) and counted as dropped rather than stalling the swarm.
    pub event_queue: usize,
    /// Capacity of the command channel from [`Client`]s.
    pub command_queue: usize,
    /// Gossipsub heartbeat.
    pub heartbeat: Duration,
    /// Connections without traffic close after this long.
    pub idle_timeout: Duration,
}

impl Default for NetConfig {
    fn default() -> Self {
        Self {
            listen: vec![
                "/ip4/0.0.0.0/tcp/4011"
                    .parse()
                    .expect("valid literal multiaddr"),
                "/ip4/0.0.0.0/udp/4011/quic-v1"
                    .parse()
                    .expect("valid literal multiaddr"),
            ],
            bootstrap: Vec::new(),
            mdns: true,
            max_transmit_size: 1 << 20,
            max_sync_request: 64 * 1024,
            max_sync_response: 16 << 20,
            sync_timeout: Duration::from_secs(30),
            max_pending_requests: 64,
            max_connections: 128,
            max_connections_per_peer: 2,
            event_queue: 1024,
            command_queue: 256,
            heartbeat: Duration::from_millis(500),
            idle_timeout: Duration::from_secs(300),
        }
    }
}

impl NetConfig {
    /// A configuration for tests and local communities: loopback only, ephemeral ports, no mDNS.
    pub fn loopback() -> Self {
        Self {
            listen: vec![
                "/ip4/127.0.0.1/tcp/0"
                    .parse()
                    .expect("valid literal multiaddr"),
            ],
            mdns: false,
            heartbeat: Duration::from_millis(100),
            ..Self::default()
        }
    }
}

/// The community's gossip topics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Topic {
    /// Delta submissions.
    Deltas,
    /// Round messages (secure aggregation, survivor sets).
    Rounds,
    /// Version announcements.
    Versions,
}

impl Topic {
    /// Every topic.
    pub const ALL: [Topic; 3] = [Topic::Deltas, Topic::Rounds, Topic::Versions];

    /// The gossipsub topic string for a community: `hearth/<community-id>/<kind>/1`.
    pub fn name(self, community_hex: &str) -> String {
        let kind = match self {
            Topic::Deltas => "deltas",
            Topic::Rounds => "rounds",
            Topic::Versions => "versions",
        };
        format!("hearth/{community_hex}/{kind}/1")
    }
}

/// The node's verdict on a gossip message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validation {
    /// Valid: deliver and forward.
    Accept,
    /// Invalid: drop, do not forward, and lower the propagating peer's score.
    Reject,
    /// Not useful (e.g. a duplicate or late): drop without penalty.
    Ignore,
}

/// Something the network layer reports to the node.
#[derive(Debug)]
pub enum NetEvent {
    /// A gossip message awaiting validation.
    Gossip {
        /// Message id (SHA-256 of the data), to report the validation result.
        id: MessageId,
        /// The peer that forwarded it to us.
        propagation_source: PeerId,
        /// The peer that published it (authenticated by gossipsub's own signature).
        source: Option<PeerId>,
        /// Which topic.
        topic: Topic,
        /// The message bytes (a signed envelope, not yet checked).
        data: Vec<u8>,
    },
    /// A peer asks us something on `/hearth/sync/1`.
    SyncRequest {
        /// Who asks.
        peer: PeerId,
        /// The request bytes (not yet checked).
        request: Vec<u8>,
        /// Where the answer goes ([`Client::respond`]).
        channel: ResponseChannel<ByteBuf>,
    },
    /// A connection to a peer was established.
    PeerConnected(PeerId),
    /// The last connection to a peer closed.
    PeerDisconnected(PeerId),
    /// We listen on a new address.
    Listening(Multiaddr),
}

/// Network-layer errors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetError {
    /// The event loop has stopped.
    #[error("the network task has stopped")]
    Stopped,
    /// Publishing failed (no peers on the topic, too large, duplicate).
    #[error("publish failed: {0}")]
    Publish(String),
    /// A sync request failed (timeout, refused, too large, connection lost).
    #[error("sync request to {peer} failed: {reason}")]
    Request {
        /// The peer asked.
        peer: PeerId,
        /// What went wrong.
        reason: String,
    },
    /// Too many sync requests are in flight.
    #[error("too many sync requests in flight (limit {0})")]
    TooManyRequests(usize),
    /// Listening or dialing failed.
    #[error("transport: {0}")]
    Transport(String),
}

/// Counters the network layer keeps (read with [`Client::stats`]).
#[derive(Debug, Default)]
pub struct NetStats {
    /// Gossip bytes published by this node.
    pub gossip_bytes_sent: AtomicU64,
    /// Gossip bytes received (before validation).
    pub gossip_bytes_received: AtomicU64,
    /// Sync request and response bytes sent.
    pub sync_bytes_sent: AtomicU64,
    /// Sync request and response bytes received.
    pub sync_bytes_received: AtomicU64,
    /// Gossip messages dropped because the node's event queue was full.
    pub events_dropped: AtomicU64,
}

enum Command {
    Publish(Topic, Vec<u8>, oneshot::Sender<Result<(), NetError>>),
    Validate(MessageId, PeerId, Validation),
    Request(PeerId, Vec<u8>, oneshot::Sender<Result<Vec<u8>, NetError>>),
    Respond(ResponseChannel<ByteBuf>, Vec<u8>),
    Dial(Multiaddr, oneshot::Sender<Result<(), NetError>>),
    Peers(oneshot::Sender<Vec<(PeerId, f64)>>),
    ListenAddrs(oneshot::Sender<Vec<Multiaddr>>),
    MeshPeers(Topic, oneshot::Sender<Vec<PeerId>>),
}

/// A handle to the network task. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Client {
    commands: mpsc::Sender<Command>,
    peer_id: PeerId,
    stats: Arc<NetStats>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Command::Publish(..) => "Publish",
            Command::Validate(..) => "Validate",
            Command::Request(..) => "Request",
            Command::Respond(..) => "Respond",
            Command::Dial(..) => "Dial",
            Command::Peers(..) => "Peers",
            Command::ListenAddrs(..) => "ListenAddrs",
            Command::MeshPeers(..) => "MeshPeers",
        })
    }
}

impl Client {
    /// This node's peer id.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// Traffic counters.
    pub fn stats(&self) -> &NetStats {
        &self.stats
    }

    async fn call<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, NetError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(make(tx))
            .await
            .map_err(|_| NetError::Stopped)?;
        rx.await.map_err(|_| NetError::Stopped)
    }

    /// Publishes `data` on a community topic.
    pub async fn publish(&self, topic: Topic, data: Vec<u8>) -> Result<(), NetError> {
        self.call(|tx| Command::Publish(topic, data, tx)).await?
    }

    /// Reports the node's verdict on a gossip message.
    pub async fn validate(
        &self,
        id: MessageId,
        propagation_source: PeerId,
        v: Validation,
    ) -> Result<(), NetError> {
        self.commands
            .send(Command::Validate(id, propagation_source, v))
            .await
            .map_err(|_| NetError::Stopped)
    }

    /// Sends a sync request and waits for the answer.
    pub async fn request(&self, peer: PeerId, request: Vec<u8>) -> Result<Vec<u8>, NetError> {
        self.call(|tx| Command::Request(peer, request, tx)).await?
    }

    /// Answers a sync request.
    pub async fn respond(
        &self,
        channel: ResponseChannel<ByteBuf>,
        response: Vec<u8>,
    ) -> Result<(), NetError> {
        self.commands
            .send(Command::Respond(channel, response))
            .await
            .map_err(|_| NetError::Stopped)
    }

    /// Dials an address (with a `/p2p/` suffix to add it to the DHT's routing table).
    pub async fn dial(&self, addr: Multiaddr) -> Result<(), NetError> {
        self.call(|tx| Command::Dial(addr, tx)).await?
    }

    /// Connected peers with their gossipsub scores.
    pub async fn peers(&self) -> Result<Vec<(PeerId, f64)>, NetError> {
        self.call(Command::Peers).await
    }

    /// Peers in this node's gossip mesh for a topic (those it forwards to directly).
    pub async fn mesh_peers(&self, topic: Topic) -> Result<Vec<PeerId>, NetError> {
        self.call(|tx| Command::MeshPeers(topic, tx)).await
    }

    /// Addresses the swarm listens on.
    pub async fn listen_addrs(&self) -> Result<Vec<Multiaddr>, NetError> {
        self.call(Command::ListenAddrs).await
    }
}

#[derive(NetworkBehaviour)]
struct Behaviour {
    limits: connection_limits::Behaviour,
    gossipsub: gossipsub::Behaviour,
    identify: identify::Behaviour,
    kad: kad::Behaviour<kad::store::MemoryStore>,
    mdns: Toggle<mdns::tokio::Behaviour>,
    sync: request_response::cbor::Behaviour<ByteBuf, ByteBuf>,
}

mod event_loop;
mod scoring;

use event_loop::EventLoop;

/// Builds the swarm, starts listening and dialing, and spawns the event loop on the current tokio
/// runtime. Returns the client handle, the event receiver and the task.
pub fn spawn(
    keypair: Keypair,
    community_hex: &str,
    config: NetConfig,
) -> Result<
    (
        Client,
        mpsc::Receiver<NetEvent>,
        tokio::task::JoinHandle<()>,
    ),
    NetError,
> {
    let peer_id = keypair.public().to_peer_id();
    let topics: HashMap<TopicHash, Topic> = Topic::ALL
        .iter()
        .map(|t| (IdentTopic::new(t.name(community_hex)).hash(), *t))
        .collect();
    let mut swarm = build_swarm(keypair, &config, &topics)?;
    for t in Topic::ALL {
        swarm
            .behaviour_mut()
            .gossipsub
            .subscribe(&IdentTopic::new(t.name(community_hex)))
            .map_err(|e| NetError::Transport(e.to_string()))?;
    }
    for addr in &config.listen {
        swarm
            .listen_on(addr.clone())
            .map_err(|e| NetError::Transport(format!("listen on {addr}: {e}")))?;
    }
    for addr in &config.bootstrap {
        add_address(&mut swarm, addr);
        if let Err(e) = swarm.dial(addr.clone()) {
            warn!(%addr, error = %e, "bootstrap dial failed");
        }
    }
    let (cmd_tx, cmd_rx) = mpsc::channel(config.command_queue);
    let (ev_tx, ev_rx) = mpsc::channel(config.event_queue);
    let stats = Arc::new(NetStats::default());
    let event_loop = EventLoop {
        swarm,
        commands: cmd_rx,
        events: ev_tx,
        topics,
        community_hex: community_hex.to_string(),
        pending: HashMap::new(),
        max_pending: config.max_pending_requests,
        stats: stats.clone(),
    };
    let task = tokio::spawn(event_loop.run());
    Ok((
        Client {
            commands: cmd_tx,
            peer_id,
            stats,
        },
        ev_rx,
        task,
    ))
}

fn build_swarm(
    keypair: Keypair,
    config: &NetConfig,
    topics: &HashMap<TopicHash, Topic>,
) -> Result<Swarm<Behaviour>, NetError> {
    let transport_err = |e: &dyn std::fmt::Display| NetError::Transport(e.to_string());
    let gossip_config = gossipsub::ConfigBuilder::default()
        .validation_mode(gossipsub::ValidationMode::Strict)
        .validate_messages()
        .max_transmit_size(config.max_transmit_size.saturating_add(OVERSIZE_SLACK))
        .heartbeat_interval(config.heartbeat)
        .message_id_fn(|m: &gossipsub::Message| MessageId::from(Sha256::digest(&m.data).to_vec()))
        .build()
        .map_err(|e| transport_err(&e))?;
    let mdns_on = config.mdns;
    let codec = request_response::cbor::codec::Codec::default()
        .set_request_size_maximum(config.max_sync_request)
        .set_response_size_maximum(config.max_sync_response);
    let rr_config = request_response::Config::default().with_request_timeout(config.sync_timeout);
    let limits = connection_limits::ConnectionLimits::default()
        .with_max_established(Some(config.max_connections))
        .with_max_established_per_peer(Some(config.max_connections_per_peer))
        .with_max_pending_incoming(Some(config.max_connections / 2 + 1));
    let (score_params, score_thresholds) = scoring::params(topics.keys());
    let swarm = libp2p::SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .map_err(|e| transport_err(&e))?
        .with_quic()
        .with_behaviour(|key| {
            let mut gossipsub =
                gossipsub::Behaviour::new(MessageAuthenticity::Signed(key.clone()), gossip_config)?;
            gossipsub.with_peer_score(score_params, score_thresholds)?;
            let peer_id = key.public().to_peer_id();
            let mut kad_config = kad::Config::new(KAD_PROTOCOL);
            kad_config.set_periodic_bootstrap_interval(Some(Duration::from_secs(300)));
            let mut kad = kad::Behaviour::with_config(
                peer_id,
                kad::store::MemoryStore::new(peer_id),
                kad_config,
            );
            kad.set_mode(Some(kad::Mode::Server));
            let mdns = if mdns_on {
                Some(mdns::tokio::Behaviour::new(
                    mdns::Config::default(),
                    peer_id,
                )?)
            } else {
                None
            };
            Ok(Behaviour {
                limits: connection_limits::Behaviour::new(limits),
                gossipsub,
                identify: identify::Behaviour::new(identify::Config::new(
                    "/hearth/id/1".into(),
                    key.public(),
                )),
                kad,
                mdns: Toggle::from(mdns),
                sync: request_response::Behaviour::with_codec(
                    codec,
                    [(SYNC_PROTOCOL, ProtocolSupport::Full)],
                    rr_config,
                ),
            })
        })
        .map_err(|e| transport_err(&e))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(config.idle_timeout))
        .build();
    Ok(swarm)
}

fn add_address(swarm: &mut Swarm<Behaviour>, addr: &Multiaddr) {
    if let Some(libp2p::multiaddr::Protocol::P2p(peer)) = addr.iter().last() {
        swarm.behaviour_mut().kad.add_address(&peer, addr.clone());
    }
}

#[cfg(test)]
mod tests;
