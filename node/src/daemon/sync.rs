//! The `/hearth/sync/1` messages (CBOR): how a node introduces itself to a peer, learns the
//! community's certificates and head, and fetches the version records and signed deltas it
//! missed. Every answer is checked by the asking node as if it came from gossip: certificates by
//! the community's authority, deltas by their signatures and the round rules, versions by
//! recomputing them (`Community::verify_version`).
//!
//! Sizes: a request is at most [`MAX_REQUEST`] bytes; an answer carries at most one delta
//! envelope (bounded by the manifest's `max_message_bytes`) or at most [`MAX_CERTIFICATES`]
//! certificates, so every answer stays under the network layer's response limit.

use hearth_protocol::{Certificate, Hash32, Signed};
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use super::persist::WireRecord;

/// Largest request, in bytes.
pub const MAX_REQUEST: usize = 16 * 1024;
/// Most certificates in one [`Response::Status`].
pub const MAX_CERTIFICATES: usize = 1024;

/// A sync request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Request {
    /// Sent on every new connection: the asker's certificate and head.
    Hello {
        /// The asker's certificate.
        certificate: Signed<Certificate>,
        /// The round of the asker's head.
        head_round: u64,
    },
    /// The record of the version round `round` produced.
    Record {
        /// Round.
        round: u64,
    },
    /// One delta's signed envelope.
    Delta {
        /// Its round.
        round: u64,
        /// Its content hash.
        hash: Hash32,
    },
}

/// A sync answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Response {
    /// Answer to [`Request::Hello`].
    Status {
        /// Round of the answering node's head.
        head_round: u64,
        /// Its head version.
        head_version: Hash32,
        /// Certificates it knows (its own first), up to [`MAX_CERTIFICATES`].
        certificates: Vec<Signed<Certificate>>,
    },
    /// Answer to [`Request::Record`]: `None` if the round produced no version here.
    Record(Option<WireRecord>),
    /// Answer to [`Request::Delta`]: the envelope bytes, if held.
    Delta(Option<ByteBuf>),
    /// The request was refused.
    Error(String),
}

/// Decodes a request, bounded in size.
pub fn decode_request(bytes: &[u8]) -> anyhow::Result<Request> {
    anyhow::ensure!(
        bytes.len() <= MAX_REQUEST,
        "sync request of {} bytes (limit {MAX_REQUEST})",
        bytes.len()
    );
    serde_cbor::from_slice(bytes).map_err(|e| anyhow::anyhow!("malformed sync request: {e}"))
}

/// Decodes an answer (the network layer already bounds its size).
pub fn decode_response(bytes: &[u8]) -> anyhow::Result<Response> {
    serde_cbor::from_slice(bytes).map_err(|e| anyhow::anyhow!("malformed sync response: {e}"))
}

/// Encodes a message.
pub fn encode<T: Serialize>(message: &T) -> anyhow::Result<Vec<u8>> {
    Ok(serde_cbor::to_vec(message)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_and_bad_bytes_are_errors() {
        let r = Request::Delta {
            round: 4,
            hash: Hash32::digest(b"x"),
        };
        assert_eq!(decode_request(&encode(&r).unwrap()).unwrap(), r);
        let r = Request::Record { round: 9 };
        assert_eq!(decode_request(&encode(&r).unwrap()).unwrap(), r);
        assert!(decode_request(b"\xff\xff").is_err());
        assert!(decode_request(&[]).is_err());
        let at_limit = vec![0x40u8; MAX_REQUEST];
        assert!(
            !decode_request(&at_limit)
                .unwrap_err()
                .to_string()
                .contains("limit")
        );
        let past = vec![0u8; MAX_REQUEST + 1];
        assert!(
            decode_request(&past)
                .unwrap_err()
                .to_string()
                .contains("limit")
        );
        let resp = Response::Delta(Some(ByteBuf::from(vec![1, 2, 3])));
        assert_eq!(decode_response(&encode(&resp).unwrap()).unwrap(), resp);
        assert!(decode_response(b"\x00").is_err());
    }
}
