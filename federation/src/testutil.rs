//! Fixtures for the crate's tests: a small community, member keys and certificates, signed
//! deltas, honest and malicious updates.

use hearth_protocol::{LoraShape, Target};

/// A small LoRA shape: 2 layers × (attn_q 4×2, attn_v 3×2) = 28 values.
pub(crate) fn shape() -> LoraShape {
    LoraShape {
        rank: 2,
        alpha: 4.0,
        layers: 2,
        targets: vec![
            Target {
                module: "attn_q".into(),
                in_dim: 4,
                out_dim: 4,
            },
            Target {
                module: "attn_v".into(),
                in_dim: 4,
                out_dim: 3,
            },
        ],
        ffa_seed: 7,
    }
}
