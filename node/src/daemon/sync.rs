//! The `/hearth/sync/1` messages (CBOR): how a node introduces itself to a peer, learns the
//! community's certificates and head, and fetches the version records, signed deltas (plain
//! rounds) and signed secure-aggregation messages (secure rounds) it missed. Every answer is
//! checked by the asking node as if it came from gossip: certificates by the community's
//! authority, deltas and messages by their signatures and the round rules, versions by
//! recomputing them (`Community::verify_version`, `Community::verify_secure_round`).
//!
//! Sizes: a request is at most [`MAX_REQUEST`] bytes; an answer carries at most one delta
//! envelope (bounded by the manifest's `max_message_bytes`), at most [`MAX_CERTIFICATES`]
//! certificates, or one page of a round's messages — at most [`MAX_PAGE_MESSAGES`] envelopes
//! of together at most `max_message_bytes` ([`page`]) — so every answer stays under the network
//! layer's response limit (`max_message_bytes` + 64 KiB). A round has at most
//! [`MESSAGES_PER_MEMBER`] · `max_cohort` messages ([`check_page`]).

use std::future::Future;

use anyhow::{bail, ensure};
use hearth_federation::MESSAGES_PER_MEMBER;
use hearth_protocol::{Certificate, Hash32, Kind, Limits, Signed};
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use super::persist::WireRecord;

/// Largest request, in bytes.
pub const MAX_REQUEST: usize = 16 * 1024;
/// Most certificates in one [`Response::Status`].
pub const MAX_CERTIFICATES: usize = 1024;
/// Most envelopes in one [`Response::RoundMessages`] page.
pub const MAX_PAGE_MESSAGES: usize = 256;

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
    /// A page of the signed secure-aggregation messages of a round, from position `from` of
    /// the answering node's list.
    RoundMessages {
        /// Round.
        round: u64,
        /// Position of the first envelope wanted.
        from: u32,
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
    /// Answer to [`Request::RoundMessages`] ([`page`]).
    RoundMessages {
        /// How many messages of the round the node holds.
        total: u32,
        /// Those from the asked position on, as many as fit the page.
        envelopes: Vec<ByteBuf>,
    },
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

/// The answer to [`Request::RoundMessages`]: the envelopes of `all` from `from` on, as many as
/// fit in `max_bytes` (the manifest's `max_message_bytes`, which every accepted envelope fits)
/// and [`MAX_PAGE_MESSAGES`].
pub fn page(all: &[Vec<u8>], from: u32, max_bytes: usize) -> Response {
    let mut bytes = 0;
    let envelopes = all
        .iter()
        .skip(from as usize)
        .take(MAX_PAGE_MESSAGES)
        .take_while(|e| {
            bytes += e.len();
            bytes <= max_bytes
        })
        .map(|e| ByteBuf::from(e.clone()))
        .collect();
    Response::RoundMessages {
        total: u32::try_from(all.len()).unwrap_or(u32::MAX),
        envelopes,
    }
}

/// Whether a message of `kind` is a secure-aggregation message a node keeps for peers that
/// catch up (keys, shares, masked input, survivor set, unmasking shares).
pub fn is_round_message(kind: Kind) -> bool {
    matches!(
        kind,
        Kind::Keys | Kind::Shares | Kind::Masked | Kind::Survivors | Kind::Unmasking
    )
}

/// Checks a page of round messages against the limits before anything is kept: at most
/// [`MESSAGES_PER_MEMBER`] · `max_cohort` messages in the round, at most [`MAX_PAGE_MESSAGES`]
/// in the page, together at most `max_message_bytes`.
pub fn check_page(total: u32, envelopes: &[ByteBuf], limits: &Limits) -> anyhow::Result<()> {
    let most = MESSAGES_PER_MEMBER as u64 * u64::from(limits.max_cohort);
    ensure!(
        u64::from(total) <= most,
        "a round of {total} messages (limit {most})"
    );
    ensure!(
        envelopes.len() <= MAX_PAGE_MESSAGES,
        "a page of {} messages (limit {MAX_PAGE_MESSAGES})",
        envelopes.len()
    );
    let bytes: usize = envelopes.iter().map(|e| e.len()).sum();
    ensure!(
        bytes <= limits.message_bytes(),
        "a page of {bytes} bytes (limit {})",
        limits.message_bytes()
    );
    Ok(())
}

/// Fetches every secure-aggregation message a peer holds for `round`, page by page, through
/// `ask` (one request-response exchange with the peer). Each page is checked with
/// [`check_page`]; the peer must keep its total and make progress on every page.
pub async fn fetch_round_messages<F, Fut>(
    mut ask: F,
    round: u64,
    limits: &Limits,
) -> anyhow::Result<Vec<Vec<u8>>>
where
    F: FnMut(Request) -> Fut,
    Fut: Future<Output = anyhow::Result<Response>>,
{
    let mut out: Vec<Vec<u8>> = Vec::new();
    let mut expected = None;
    loop {
        let from = u32::try_from(out.len())?;
        let (total, envelopes) = match ask(Request::RoundMessages { round, from }).await? {
            Response::RoundMessages { total, envelopes } => (total, envelopes),
            Response::Error(e) => bail!("the peer refused: {e}"),
            other => bail!("unexpected answer {other:?}"),
        };
        check_page(total, &envelopes, limits)?;
        if *expected.get_or_insert(total) != total {
            bail!("the peer's message count changed from {expected:?} to {total}");
        }
        let total = total as usize;
        if out.len() < total && envelopes.is_empty() {
            bail!("the peer sent an empty page at {from} of {total} messages");
        }
        out.extend(envelopes.into_iter().map(ByteBuf::into_vec));
        ensure!(
            out.len() <= total,
            "the peer sent {} messages of {total}",
            out.len()
        );
        if out.len() == total {
            return Ok(out);
        }
    }
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
        let r = Request::RoundMessages { round: 7, from: 3 };
        assert_eq!(decode_request(&encode(&r).unwrap()).unwrap(), r);
        let resp = page(&[vec![1], vec![2, 2]], 0, 100);
        assert_eq!(decode_response(&encode(&resp).unwrap()).unwrap(), resp);
    }

    fn sizes(r: &Response) -> (u32, Vec<usize>) {
        match r {
            Response::RoundMessages { total, envelopes } => {
                (*total, envelopes.iter().map(|e| e.len()).collect())
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn pages_hold_what_fits_at_and_past_the_limits() {
        let all = vec![vec![1u8; 10], vec![2u8; 10], vec![3u8; 10]];
        assert_eq!(sizes(&page(&all, 0, 30)), (3, vec![10, 10, 10]));
        assert_eq!(sizes(&page(&all, 0, 29)), (3, vec![10, 10]));
        assert_eq!(sizes(&page(&all, 1, 20)), (3, vec![10, 10]));
        assert_eq!(sizes(&page(&all, 3, 30)), (3, vec![]));
        assert_eq!(sizes(&page(&all, 9, 30)), (3, vec![]));
        let many = vec![vec![0u8; 1]; MAX_PAGE_MESSAGES + 1];
        assert_eq!(sizes(&page(&many, 0, 1 << 20)).1.len(), MAX_PAGE_MESSAGES);
        assert_eq!(sizes(&page(&many, 1, 1 << 20)).1.len(), MAX_PAGE_MESSAGES);
        // A full page stays under the network layer's response limit.
        let limits = Limits::default();
        let max = limits.message_bytes();
        let big = vec![vec![7u8; max / MAX_PAGE_MESSAGES]; MAX_PAGE_MESSAGES];
        let full = page(&big, 0, max);
        assert_eq!(sizes(&full).1.len(), MAX_PAGE_MESSAGES);
        assert!(encode(&full).unwrap().len() <= max + 64 * 1024);
    }

    #[test]
    fn pages_are_checked_at_and_past_the_limits() {
        let limits = Limits {
            max_cohort: 4,
            max_message_bytes: 1 << 16,
            ..Limits::default()
        };
        let most = (MESSAGES_PER_MEMBER * 4) as u32;
        let one = |n: usize| vec![ByteBuf::from(vec![0u8; n])];
        check_page(most, &one(1), &limits).unwrap();
        let e = check_page(most + 1, &one(1), &limits).unwrap_err();
        assert!(e.to_string().contains("limit 20"), "{e}");
        check_page(1, &one(1 << 16), &limits).unwrap();
        let e = check_page(1, &one((1 << 16) + 1), &limits).unwrap_err();
        assert!(e.to_string().contains("bytes"), "{e}");
        let full = vec![ByteBuf::from(vec![1u8]); MAX_PAGE_MESSAGES];
        check_page(most, &full, &limits).unwrap();
        let mut over = full.clone();
        over.push(ByteBuf::from(vec![1u8]));
        assert!(check_page(most, &over, &limits).is_err());
    }

    /// A peer serving `all` by pages of at most `max_bytes`.
    fn peer(
        all: Vec<Vec<u8>>,
        max_bytes: usize,
    ) -> impl FnMut(Request) -> std::future::Ready<anyhow::Result<Response>> {
        move |r| {
            let Request::RoundMessages { from, .. } = r else {
                panic!("{r:?}")
            };
            std::future::ready(Ok(page(&all, from, max_bytes)))
        }
    }

    fn block_on<F: Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn a_round_is_fetched_page_by_page_and_lying_peers_are_refused() {
        let limits = Limits::default();
        let all: Vec<Vec<u8>> = (0..7u8).map(|i| vec![i; 100]).collect();
        let got = block_on(fetch_round_messages(peer(all.clone(), 250), 3, &limits)).unwrap();
        assert_eq!(got, all);
        let none = block_on(fetch_round_messages(peer(vec![], 250), 3, &limits)).unwrap();
        assert!(none.is_empty());
        // A peer whose envelopes never fit its pages makes no progress.
        let e = block_on(fetch_round_messages(peer(all.clone(), 50), 3, &limits)).unwrap_err();
        assert!(e.to_string().contains("empty page"), "{e}");
        // A peer that changes its count.
        let mut calls = 0u32;
        let shifty = |_r: Request| {
            calls += 1;
            std::future::ready(Ok(Response::RoundMessages {
                total: 5 + calls,
                envelopes: vec![ByteBuf::from(vec![1u8])],
            }))
        };
        let e = block_on(fetch_round_messages(shifty, 3, &limits)).unwrap_err();
        assert!(e.to_string().contains("changed"), "{e}");
        // A peer that claims more messages than a round can have.
        let huge = |_r: Request| {
            std::future::ready(Ok(Response::RoundMessages {
                total: u32::MAX,
                envelopes: vec![],
            }))
        };
        let e = block_on(fetch_round_messages(huge, 3, &limits)).unwrap_err();
        assert!(e.to_string().contains("limit"), "{e}");
        // A peer that sends more than it said.
        let more = |_r: Request| {
            std::future::ready(Ok(Response::RoundMessages {
                total: 1,
                envelopes: vec![ByteBuf::from(vec![1u8]), ByteBuf::from(vec![2u8])],
            }))
        };
        let e = block_on(fetch_round_messages(more, 3, &limits)).unwrap_err();
        assert!(e.to_string().contains("2 messages of 1"), "{e}");
    }
}
