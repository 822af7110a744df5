//! Routing a received secure-aggregation message to the group's aggregator and member, the
//! rejection reason of each failure, and the digest that tells a repeated message from a
//! different one.

use hearth_protocol::{Hash32, Hasher, Kind, MemberId, Payload};

use crate::reject::Reason;
use crate::secagg::{Aggregator, Error, Member};

/// Domain of the digest that tells a repeated message from a different one (local only).
const MESSAGE_DOMAIN: &[u8] = b"hearth/secagg-message/v1\0";

/// Hands a message to the group's aggregator and, if the node is in that group, its member.
pub(super) fn route(
    aggregator: &mut Aggregator,
    member: Option<&mut Member>,
    sender: &MemberId,
    payload: &Payload,
    elements: usize,
) -> Result<(), Error> {
    match payload {
        Payload::Keys(k) => {
            aggregator.on_keys(sender, k)?;
            member.map_or(Ok(()), |m| m.on_keys(sender, k))
        }
        Payload::Shares(s) => {
            let cohort = aggregator.cohort();
            let from = cohort.index(sender)?;
            for share in &s.shares {
                let to = cohort.index(&share.recipient).ok();
                if to.is_none_or(|to| !cohort.graph().adjacent(from, to)) {
                    return Err(Error::BadMessage {
                        member: *sender,
                        what: "encrypted shares",
                        reason: format!("{} is not a neighbour in its group", share.recipient),
                    });
                }
            }
            member.map_or(Ok(()), |m| m.on_shares(sender, s))
        }
        Payload::Masked(y) => {
            if y.values.len() != elements {
                return Err(Error::LengthMismatch {
                    member: *sender,
                    found: y.values.len(),
                    expected: elements,
                });
            }
            aggregator.on_masked_input(sender, y.clone())?;
            member.map_or(Ok(()), |m| m.on_masked_input(sender, y))
        }
        Payload::Survivors(s) => {
            aggregator.on_survivor_set(sender, s)?;
            member.map_or(Ok(()), |m| m.on_survivor_set(sender, s))
        }
        Payload::Unmasking(u) => aggregator.on_unmasking(sender, u),
        _ => Err(Error::BadMessage {
            member: *sender,
            what: "message",
            reason: "not a secure-aggregation message".into(),
        }),
    }
}

/// The rejection reason of a secure-aggregation error.
pub(super) fn reason(e: &Error) -> Reason {
    match e {
        Error::Equivocation { .. } => Reason::Equivocation,
        Error::LengthMismatch { .. } => Reason::WrongShape,
        Error::NotInCohort(_) => Reason::NotInCohort,
        Error::WrongRound { .. } => Reason::RoundMismatch,
        _ => Reason::SecureAggregation,
    }
}

/// The kind and content digest of a secure-aggregation payload (`None` for other kinds).
pub(super) fn digest(payload: &Payload) -> Option<(Kind, Hash32)> {
    let mut h = Hasher::new(MESSAGE_DOMAIN);
    h.u32(payload.kind() as u32);
    match payload {
        Payload::Keys(k) => {
            h.u64(k.round);
            for key in [&k.cipher_key, &k.mask_key, &k.seed_commitment] {
                h.bytes(&key.0);
            }
        }
        Payload::Shares(s) => {
            h.u64(s.round).u64(s.shares.len() as u64);
            for share in &s.shares {
                h.bytes(share.recipient.as_bytes()).bytes(&share.ciphertext);
            }
        }
        Payload::Masked(y) => {
            h.u64(y.round).u64(y.values.len() as u64);
            for v in &y.values {
                h.u32(*v);
            }
            h.u64(y.peers.len() as u64);
            for p in &y.peers {
                h.bytes(p.as_bytes());
            }
        }
        Payload::Survivors(s) => {
            h.u64(s.round).u64(s.survivors.len() as u64);
            for m in &s.survivors {
                h.bytes(m.as_bytes());
            }
        }
        Payload::Unmasking(u) => {
            h.u64(u.round);
            for list in [&u.self_mask_shares, &u.key_shares] {
                h.u64(list.len() as u64);
                for s in list {
                    h.bytes(s.member.as_bytes()).bytes(&s.share);
                }
            }
        }
        _ => return None,
    }
    Some((payload.kind(), h.finish()))
}
