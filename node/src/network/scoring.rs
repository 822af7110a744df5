//! Gossipsub peer scoring for the community topics.
//!
//! The one signal that matters is P4, invalid message deliveries: a peer that forwards a message
//! the node rejected (forged, non-member, malformed) loses `10 × count²` points per topic, which
//! decays by 10 % a second. Three rejections in a row push it below the graylist threshold, after
//! which everything it sends is ignored. Honest peers never forward rejected messages (validation
//! is manual: nothing is forwarded before the node accepts it), so they are not penalized.
//!
//! Mesh-delivery-rate penalties (P3, P3b) are off: rounds are minutes apart, so an honest peer
//! delivers few messages and would be punished for the schedule. IP colocation (P6) is off: local
//! communities and tests run many honest nodes on one address, and Sybil resistance comes from
//! admin-signed member certificates instead.

use std::collections::HashMap;
use std::time::Duration;

use libp2p::gossipsub::{PeerScoreParams, PeerScoreThresholds, TopicHash, TopicScoreParams};

/// Score below which a peer's gossip is no longer accepted or forwarded.
pub const GRAYLIST_THRESHOLD: f64 = -80.0;

/// Scoring parameters for the given topics.
pub fn params<'a>(
    topics: impl Iterator<Item = &'a TopicHash>,
) -> (PeerScoreParams, PeerScoreThresholds) {
    let topic = TopicScoreParams {
        topic_weight: 1.0,
        time_in_mesh_weight: 0.01,
        time_in_mesh_quantum: Duration::from_secs(1),
        time_in_mesh_cap: 100.0,
        first_message_deliveries_weight: 1.0,
        first_message_deliveries_decay: 0.9,
        first_message_deliveries_cap: 10.0,
        mesh_message_deliveries_weight: 0.0,
        mesh_failure_penalty_weight: 0.0,
        invalid_message_deliveries_weight: -10.0,
        invalid_message_deliveries_decay: 0.9,
        ..TopicScoreParams::default()
    };
    let params = PeerScoreParams {
        topics: topics
            .map(|t| (t.clone(), topic.clone()))
            .collect::<HashMap<_, _>>(),
        ip_colocation_factor_weight: 0.0,
        decay_interval: Duration::from_secs(1),
        ..PeerScoreParams::default()
    };
    let thresholds = PeerScoreThresholds {
        gossip_threshold: -10.0,
        publish_threshold: -50.0,
        graylist_threshold: GRAYLIST_THRESHOLD,
        accept_px_threshold: 10.0,
        opportunistic_graft_threshold: 1.0,
    };
    (params, thresholds)
}
