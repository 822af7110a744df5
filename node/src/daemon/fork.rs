//! Leaving a fork (docs/PROTOCOL.md §14.8). When two parts of a community ran rounds apart (a
//! network partition), each has its own chain of versions after some common ancestor. A node
//! that hears a peer's head that is not on its own chain walks the peer's version records back
//! (`Record` requests over `/hearth/sync/1`, at most [`MAX_DEPTH`] rounds) to the first one whose
//! parent is on its own chain: the fork point. The first versions after it on both chains are
//! compared by the fork rule ([`VersionRecord::preferred_to`]); the node whose chain loses goes
//! back to the fork point's state and catches up on the winning chain the usual way, verifying
//! every round it fetches. Every node applies the same rule, so all end on one chain.

use std::collections::BTreeMap;

use anyhow::bail;
use hearth_federation::VersionRecord;
use hearth_protocol::Hash32;
use libp2p::PeerId;

use super::persist::KEEP_STATES;
use super::sync::{self, Request, Response};
use crate::network::Client;

/// Deepest fork left automatically: the rounds whose heads a node keeps.
pub const MAX_DEPTH: u64 = KEEP_STATES;

/// A peer's chain that left ours after a common ancestor.
#[derive(Debug, Clone)]
pub struct Fork {
    /// The peer.
    pub peer: PeerId,
    /// The round of its head.
    pub peer_head: u64,
    /// The last version both chains hold, and the round that produced it (0: genesis).
    pub ancestor: (u64, Hash32),
    /// The peer's first version after the ancestor.
    pub theirs: VersionRecord,
}

/// Walks `peer`'s records back from round `peer_head` to the first whose parent is one of
/// `ours` (our chain: version → round, genesis included). `None` when the peer's head is on our
/// chain, or when the peer does not answer with records that lead back to it within
/// [`MAX_DEPTH`] rounds.
pub async fn find(
    client: &Client,
    peer: PeerId,
    peer_head: u64,
    ours: &BTreeMap<Hash32, u64>,
) -> anyhow::Result<Option<Fork>> {
    let lowest = peer_head.saturating_sub(MAX_DEPTH).max(1);
    let mut round = peer_head;
    while round >= lowest {
        let bytes = sync::encode(&Request::Record { round })?;
        let answer = sync::decode_response(&client.request(peer, bytes).await?)?;
        let record = match answer {
            Response::Record(r) => r,
            other => bail!("unexpected answer {other:?}"),
        };
        if let Some(record) = record {
            let record = VersionRecord::from(record);
            if record.round != round {
                bail!("asked for round {round}, got round {}", record.round);
            }
            if ours.contains_key(&record.version) {
                return Ok(None);
            }
            if let Some(&at) = ours.get(&record.parent)
                && at < round
            {
                return Ok(Some(Fork {
                    peer,
                    peer_head,
                    ancestor: (at, record.parent),
                    theirs: record,
                }));
            }
        }
        round -= 1;
    }
    Ok(None)
}
