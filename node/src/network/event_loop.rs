//! The swarm's event loop: owns the swarm, executes [`Command`]s from clients and turns swarm
//! events into [`NetEvent`]s.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures::StreamExt;
use libp2p::gossipsub::{self, IdentTopic, MessageAcceptance, MessageId, TopicHash};
use libp2p::request_response::{self, OutboundRequestId};
use libp2p::swarm::SwarmEvent;
use libp2p::{PeerId, Swarm, identify, mdns};
use serde_bytes::ByteBuf;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

use super::{
    Behaviour, BehaviourEvent, Command, NetError, NetEvent, NetStats, Topic, Validation,
    add_address,
};

/// Where the answer to an outbound sync request goes.
type ReplyTx = oneshot::Sender<Result<Vec<u8>, NetError>>;

pub(super) struct EventLoop {
    pub(super) swarm: Swarm<Behaviour>,
    pub(super) commands: mpsc::Receiver<Command>,
    pub(super) events: mpsc::Sender<NetEvent>,
    pub(super) topics: HashMap<TopicHash, Topic>,
    pub(super) community_hex: String,
    pub(super) pending: HashMap<OutboundRequestId, (PeerId, ReplyTx)>,
    pub(super) max_pending: usize,
    pub(super) stats: Arc<NetStats>,
}

impl EventLoop {
    pub(super) async fn run(mut self) {
        loop {
            tokio::select! {
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                command = self.commands.recv() => match command {
                    Some(c) => self.on_command(c),
                    // Every client is gone: the node is shutting down.
                    None => break,
                },
            }
        }
        debug!("network task stopped");
    }

    fn emit(&mut self, event: NetEvent) -> bool {
        match self.events.try_send(event) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.stats.events_dropped.fetch_add(1, Ordering::Relaxed);
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    fn on_command(&mut self, command: Command) {
        let b = self.swarm.behaviour_mut();
        match command {
            Command::Publish(topic, data, tx) => {
                let len = data.len() as u64;
                let res = b
                    .gossipsub
                    .publish(IdentTopic::new(topic.name(&self.community_hex)), data)
                    .map(|_| {
                        self.stats
                            .gossip_bytes_sent
                            .fetch_add(len, Ordering::Relaxed);
                    })
                    .map_err(|e| NetError::Publish(e.to_string()));
                let _ = tx.send(res);
            }
            Command::Validate(id, source, v) => {
                let acceptance = match v {
                    Validation::Accept => MessageAcceptance::Accept,
                    Validation::Reject => MessageAcceptance::Reject,
                    Validation::Ignore => MessageAcceptance::Ignore,
                };
                b.gossipsub
                    .report_message_validation_result(&id, &source, acceptance);
            }
            Command::Request(peer, request, tx) => {
                if self.pending.len() >= self.max_pending {
                    let _ = tx.send(Err(NetError::TooManyRequests(self.max_pending)));
                    return;
                }
                self.stats
                    .sync_bytes_sent
                    .fetch_add(request.len() as u64, Ordering::Relaxed);
                let id = b.sync.send_request(&peer, ByteBuf::from(request));
                self.pending.insert(id, (peer, tx));
            }
            Command::Respond(channel, response) => {
                self.stats
                    .sync_bytes_sent
                    .fetch_add(response.len() as u64, Ordering::Relaxed);
                if b.sync
                    .send_response(channel, ByteBuf::from(response))
                    .is_err()
                {
                    debug!("sync response dropped: the requester is gone");
                }
            }
            Command::Dial(addr, tx) => {
                add_address(&mut self.swarm, &addr);
                let _ = tx.send(
                    self.swarm
                        .dial(addr)
                        .map_err(|e| NetError::Transport(e.to_string())),
                );
            }
            Command::Peers(tx) => {
                let peers = self
                    .swarm
                    .connected_peers()
                    .map(|p| {
                        (
                            *p,
                            self.swarm
                                .behaviour()
                                .gossipsub
                                .peer_score(p)
                                .unwrap_or(0.0),
                        )
                    })
                    .collect();
                let _ = tx.send(peers);
            }
            Command::MeshPeers(topic, tx) => {
                let hash = IdentTopic::new(topic.name(&self.community_hex)).hash();
                let _ = tx.send(b.gossipsub.mesh_peers(&hash).copied().collect());
            }
            Command::ListenAddrs(tx) => {
                let _ = tx.send(self.swarm.listeners().cloned().collect());
            }
        }
    }

    fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                info!(%address, "listening");
                self.emit(NetEvent::Listening(address));
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                num_established,
                ..
            } if num_established.get() == 1 => {
                debug!(%peer_id, "connected");
                self.emit(NetEvent::PeerConnected(peer_id));
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                ..
            } => {
                debug!(%peer_id, "disconnected");
                self.emit(NetEvent::PeerDisconnected(peer_id));
            }
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            })) => self.on_gossip(propagation_source, message_id, message),
            SwarmEvent::Behaviour(BehaviourEvent::Sync(request_response::Event::Message {
                peer,
                message,
                ..
            })) => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => {
                    self.stats
                        .sync_bytes_received
                        .fetch_add(request.len() as u64, Ordering::Relaxed);
                    self.emit(NetEvent::SyncRequest {
                        peer,
                        request: request.into_vec(),
                        channel,
                    });
                }
                request_response::Message::Response {
                    request_id,
                    response,
                } => {
                    self.stats
                        .sync_bytes_received
                        .fetch_add(response.len() as u64, Ordering::Relaxed);
                    if let Some((_, tx)) = self.pending.remove(&request_id) {
                        let _ = tx.send(Ok(response.into_vec()));
                    }
                }
            },
            SwarmEvent::Behaviour(BehaviourEvent::Sync(
                request_response::Event::OutboundFailure {
                    request_id, error, ..
                },
            )) => {
                if let Some((peer, tx)) = self.pending.remove(&request_id) {
                    let _ = tx.send(Err(NetError::Request {
                        peer,
                        reason: error.to_string(),
                    }));
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) => {
                // Only remember addresses the peer listens on that we could use to dial it.
                for addr in info.listen_addrs {
                    self.swarm.behaviour_mut().kad.add_address(&peer_id, addr);
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Mdns(mdns::Event::Discovered(found))) => {
                for (peer, addr) in found {
                    self.swarm
                        .behaviour_mut()
                        .kad
                        .add_address(&peer, addr.clone());
                    let _ = self.swarm.dial(addr);
                }
            }
            _ => {}
        }
    }

    fn on_gossip(
        &mut self,
        propagation_source: PeerId,
        id: MessageId,
        message: gossipsub::Message,
    ) {
        self.stats
            .gossip_bytes_received
            .fetch_add(message.data.len() as u64, Ordering::Relaxed);
        let Some(topic) = self.topics.get(&message.topic).copied() else {
            self.swarm
                .behaviour_mut()
                .gossipsub
                .report_message_validation_result(
                    &id,
                    &propagation_source,
                    MessageAcceptance::Reject,
                );
            return;
        };
        let event = NetEvent::Gossip {
            id: id.clone(),
            propagation_source,
            source: message.source,
            topic,
            data: message.data,
        };
        if !self.emit(event) {
            warn!(%propagation_source, "event queue full: gossip message ignored");
            self.swarm
                .behaviour_mut()
                .gossipsub
                .report_message_validation_result(
                    &id,
                    &propagation_source,
                    MessageAcceptance::Ignore,
                );
        }
    }
}
