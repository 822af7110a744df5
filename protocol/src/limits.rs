//! Limits on every size and count that untrusted input can make a node store or process.
//!
//! A community's manifest carries its [`Limits`]; until a manifest is known (e.g. while decoding
//! the manifest itself) nodes use [`Limits::default`].

use serde::{Deserialize, Serialize};

use crate::error::Error;

/// Largest `max_message_bytes` any manifest may set (64 MiB), so that a manifest cannot disable
/// the size limit.
pub const HARD_MAX_MESSAGE_BYTES: u32 = 64 * 1024 * 1024;

/// Bytes reserved in a message for everything except the bulk data when checking that the
/// largest allowed delta (or masked input, share bundle, list) still fits in a message.
const OVERHEAD_BYTES: u64 = 4096;

/// Limits on sizes and counts. Every field is a maximum and must be at least 1.
///
/// The defaults fit the default model (SmolLM2-135M, FFA-LoRA rank 8 on `attn_q` and `attn_v` of
/// 30 layers: 60 tensors, 184,320 values, about 738 KB per delta) with a wide margin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Largest encoded envelope, in bytes. Default 4 MiB (4,194,304).
    pub max_message_bytes: u32,
    /// Longest name (community, base model, target module, tensor), in UTF-8 bytes. Default 128.
    pub max_name_bytes: u32,
    /// Most tensors in a delta, and most (layer, target) pairs in a LoRA shape. Default 512.
    pub max_tensors: u32,
    /// Most elements in one tensor. Default 524,288 (2^19).
    pub max_tensor_elements: u32,
    /// Most elements in a whole delta, and in a masked secure-aggregation input.
    /// Default 1,000,000.
    pub max_delta_elements: u32,
    /// Most target modules in a LoRA shape. Default 16.
    pub max_targets: u32,
    /// Largest LoRA rank. Default 256.
    pub max_rank: u32,
    /// Most transformer layers in a LoRA shape. Default 256.
    pub max_layers: u32,
    /// Longest certificate validity (`expires - issued`), in seconds. Default 400 days
    /// (34,560,000).
    pub max_certificate_validity_secs: u64,
    /// Most roles in a certificate. Default 4.
    pub max_roles: u32,
    /// Most member ids in a revocation list. Default 10,000.
    pub max_revoked: u32,
    /// Most members in a cohort: bounds survivor sets, included deltas of a version announcement,
    /// and entries of each list of an unmasking message. Default 4,096.
    pub max_cohort: u32,
    /// Most encrypted shares in one message. Default 1,024.
    pub max_shares: u32,
    /// Largest single share or share ciphertext, in bytes. Default 512.
    pub max_share_bytes: u32,
    /// Replay window: most senders tracked at once. Default 4,096.
    pub replay_senders: u32,
    /// Replay window: most (round, nonce) pairs remembered per sender. Default 64.
    pub replay_nonces: u32,
    /// Replay window: messages more than this many rounds behind the current round are stale.
    /// Default 8.
    pub replay_rounds: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_bytes: 4 * 1024 * 1024,
            max_name_bytes: 128,
            max_tensors: 512,
            max_tensor_elements: 1 << 19,
            max_delta_elements: 1_000_000,
            max_targets: 16,
            max_rank: 256,
            max_layers: 256,
            max_certificate_validity_secs: 400 * 24 * 3600,
            max_roles: 4,
            max_revoked: 10_000,
            max_cohort: 4096,
            max_shares: 1024,
            max_share_bytes: 512,
            replay_senders: 4096,
            replay_nonces: 64,
            replay_rounds: 8,
        }
    }
}

impl Limits {
    /// `max_message_bytes` as a `usize`.
    pub fn message_bytes(&self) -> usize {
        self.max_message_bytes as usize
    }

    /// Checks the cross-field rules: every limit is at least 1; `max_message_bytes` is at most
    /// [`HARD_MAX_MESSAGE_BYTES`]; one tensor is no larger than a whole delta; and the largest
    /// delta, masked input, share bundle, survivor set and revocation list each fit in a message.
    pub fn validate(&self) -> Result<(), Error> {
        let counts: [(&'static str, u64); 17] = [
            ("max_message_bytes", self.max_message_bytes.into()),
            ("max_name_bytes", self.max_name_bytes.into()),
            ("max_tensors", self.max_tensors.into()),
            ("max_tensor_elements", self.max_tensor_elements.into()),
            ("max_delta_elements", self.max_delta_elements.into()),
            ("max_targets", self.max_targets.into()),
            ("max_rank", self.max_rank.into()),
            ("max_layers", self.max_layers.into()),
            (
                "max_certificate_validity_secs",
                self.max_certificate_validity_secs,
            ),
            ("max_roles", self.max_roles.into()),
            ("max_revoked", self.max_revoked.into()),
            ("max_cohort", self.max_cohort.into()),
            ("max_shares", self.max_shares.into()),
            ("max_share_bytes", self.max_share_bytes.into()),
            ("replay_senders", self.replay_senders.into()),
            ("replay_nonces", self.replay_nonces.into()),
            ("replay_rounds", self.replay_rounds.into()),
        ];
        for (field, value) in counts {
            if value == 0 {
                return Err(Error::InvalidValue {
                    field,
                    reason: "must be at least 1".into(),
                });
            }
        }
        if self.max_message_bytes > HARD_MAX_MESSAGE_BYTES {
            return Err(Error::InvalidValue {
                field: "max_message_bytes",
                reason: format!(
                    "{} is above the hard maximum {HARD_MAX_MESSAGE_BYTES}",
                    self.max_message_bytes
                ),
            });
        }
        if self.max_tensor_elements > self.max_delta_elements {
            return Err(Error::InvalidValue {
                field: "max_tensor_elements",
                reason: format!(
                    "{} is above max_delta_elements {}",
                    self.max_tensor_elements, self.max_delta_elements
                ),
            });
        }
        let name = u64::from(self.max_name_bytes) + 16;
        let needs: [(&'static str, u64); 4] = [
            (
                "max_delta_elements",
                4 * u64::from(self.max_delta_elements) + u64::from(self.max_tensors) * (name + 16),
            ),
            (
                "max_shares",
                u64::from(self.max_shares) * (u64::from(self.max_share_bytes) + 64),
            ),
            ("max_cohort", u64::from(self.max_cohort) * 34),
            ("max_revoked", u64::from(self.max_revoked) * 34),
        ];
        for (field, bytes) in needs {
            if bytes + OVERHEAD_BYTES > u64::from(self.max_message_bytes) {
                return Err(Error::InvalidValue {
                    field,
                    reason: format!(
                        "its largest message needs about {} bytes, more than max_message_bytes {}",
                        bytes + OVERHEAD_BYTES,
                        self.max_message_bytes
                    ),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_fit_the_default_model() {
        let limits = Limits::default();
        limits.validate().unwrap();
        // SmolLM2-135M, rank 8 on attn_q (576) and attn_v (192), 30 layers.
        assert!(30 * 2 <= limits.max_tensors);
        assert!(576 * 8 <= limits.max_tensor_elements);
        assert!(30 * 8 * (576 + 192) <= limits.max_delta_elements);
        assert!(4 * 184_320 + 60 * 200 < limits.max_message_bytes);
    }

    #[test]
    fn zero_limits_are_rejected() {
        let l = Limits {
            replay_rounds: 0,
            ..Limits::default()
        };
        assert!(matches!(
            l.validate(),
            Err(Error::InvalidValue {
                field: "replay_rounds",
                ..
            })
        ));
    }

    #[test]
    fn hard_message_cap_at_and_past_the_limit() {
        let at = Limits {
            max_message_bytes: HARD_MAX_MESSAGE_BYTES,
            ..Limits::default()
        };
        at.validate().unwrap();
        let past = Limits {
            max_message_bytes: HARD_MAX_MESSAGE_BYTES + 1,
            ..Limits::default()
        };
        assert!(matches!(
            past.validate(),
            Err(Error::InvalidValue {
                field: "max_message_bytes",
                ..
            })
        ));
    }

    #[test]
    fn cross_field_rules() {
        let d = Limits::default();
        let l = Limits {
            max_tensor_elements: d.max_delta_elements + 1,
            ..d
        };
        assert!(matches!(
            l.validate(),
            Err(Error::InvalidValue {
                field: "max_tensor_elements",
                ..
            })
        ));
        let l = Limits {
            max_delta_elements: d.max_message_bytes / 4,
            max_tensor_elements: 1,
            ..d
        };
        assert!(matches!(
            l.validate(),
            Err(Error::InvalidValue {
                field: "max_delta_elements",
                ..
            })
        ));
        let l = Limits {
            max_shares: 100_000,
            ..d
        };
        assert!(matches!(
            l.validate(),
            Err(Error::InvalidValue {
                field: "max_shares",
                ..
            })
        ));
        let l = Limits {
            max_revoked: d.max_message_bytes / 34,
            ..d
        };
        assert!(matches!(
            l.validate(),
            Err(Error::InvalidValue {
                field: "max_revoked",
                ..
            })
        ));
    }
}
