//! Delta submissions (a member's quantized, noised LoRA B-matrix update for one round) and
//! version announcements (the adapter version a node computed from a round's deltas).

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::codec::{check_limit, check_name, check_range, packed_i32};
use crate::error::Error;
use crate::hash::{Hash32, Hasher};
use crate::limits::Limits;
use crate::manifest::{LoraShape, PrivacyMode};

/// Domain of [`DeltaSubmission::compute_hash`].
pub const DELTA_DOMAIN: &[u8] = b"hearth/delta/v1\0";

/// One quantized B-matrix delta. The real value of element `i` is `values[i] * scale` (the
/// submission's scale), row-major.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerDelta {
    /// Tensor name, `blk.<layer>.<module>` (see [`LoraShape::tensors`]).
    pub name: String,
    /// Rows (the target's output dimension).
    pub rows: u32,
    /// Columns (the LoRA rank).
    pub cols: u32,
    /// `rows * cols` quantized values. On the wire: one byte string of little-endian `i32`s.
    #[serde(with = "packed_i32")]
    pub values: Vec<i32>,
}

/// The differential-privacy parameters a member actually used for one delta.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DpParams {
    /// Privacy mode of the community when the delta was made.
    pub mode: PrivacyMode,
    /// L2 norm the delta was clipped to.
    pub clip_norm: f64,
    /// Noise multiplier σ of the community.
    pub noise_multiplier: f64,
    /// Standard deviation of the Gaussian noise this member added (σ·C in local mode, its share
    /// of it in distributed mode).
    pub noise_std: f64,
}

impl DpParams {
    fn validate(&self) -> Result<(), Error> {
        check_range("dp.clip_norm", self.clip_norm, 0.0, true, 1e9)?;
        check_range(
            "dp.noise_multiplier",
            self.noise_multiplier,
            0.0,
            false,
            1e6,
        )?;
        check_range("dp.noise_std", self.noise_std, 0.0, false, 1e12)
    }
}

/// A member's update for one round: `B_local - B_global(base_version)`, clipped, noised and
/// quantized.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeltaSubmission {
    /// Round the delta is for (equals the envelope's round).
    pub round: u64,
    /// Adapter version the delta was computed against.
    pub base_version: Hash32,
    /// One entry per B matrix, in [`LoraShape::tensors`] order.
    pub layers: Vec<LayerDelta>,
    /// Quantization step: real value = quantized value × scale. Finite and positive.
    pub scale: f32,
    /// Number of local training examples behind the delta (weight for the mean).
    pub sample_count: u32,
    /// DP parameters used.
    pub dp: DpParams,
    /// [`DeltaSubmission::compute_hash`] of the fields above.
    pub hash: Hash32,
}

impl DeltaSubmission {
    /// Builds a submission and fills in its content hash.
    pub fn new(
        round: u64,
        base_version: Hash32,
        layers: Vec<LayerDelta>,
        scale: f32,
        sample_count: u32,
        dp: DpParams,
    ) -> Self {
        let mut delta = DeltaSubmission {
            round,
            base_version,
            layers,
            scale,
            sample_count,
            dp,
            hash: Hash32::ZERO,
        };
        delta.hash = delta.compute_hash();
        delta
    }

    /// The content hash: SHA-256 over [`DELTA_DOMAIN`], then (as in [`Hasher`]) round (`u64`),
    /// base version (32 bytes), layer count (`u64`), per layer name, rows (`u32`), cols (`u32`)
    /// and values, then the scale's bits (`u32`), sample count (`u32`), the mode's wire name,
    /// clip norm, noise multiplier and noise std (`f64` bits).
    pub fn compute_hash(&self) -> Hash32 {
        let mut h = Hasher::new(DELTA_DOMAIN);
        h.u64(self.round)
            .hash(&self.base_version)
            .u64(self.layers.len() as u64);
        for layer in &self.layers {
            h.str(&layer.name)
                .u32(layer.rows)
                .u32(layer.cols)
                .i32s(&layer.values);
        }
        let mode = match self.dp.mode {
            PrivacyMode::Distributed => "distributed",
            PrivacyMode::Local => "local",
        };
        h.u32(self.scale.to_bits())
            .u32(self.sample_count)
            .str(mode)
            .f64(self.dp.clip_norm)
            .f64(self.dp.noise_multiplier)
            .f64(self.dp.noise_std);
        h.finish()
    }

    /// Total number of values over all layers.
    pub fn elements(&self) -> usize {
        self.layers.iter().map(|l| l.values.len()).sum()
    }

    /// Checks counts and sizes against `limits`, each tensor's data against its shape, the
    /// scale and DP parameters, and finally the content hash.
    pub fn validate(&self, limits: &Limits) -> Result<(), Error> {
        check_limit("tensors", self.layers.len(), limits.max_tensors)?;
        let mut names = HashSet::with_capacity(self.layers.len());
        for layer in &self.layers {
            check_name("tensor name", &layer.name, limits.max_name_bytes)?;
            if !names.insert(layer.name.as_str()) {
                return Err(Error::ShapeMismatch {
                    layer: layer.name.clone(),
                    reason: "tensor listed twice".into(),
                });
            }
            check_limit(
                "tensor elements",
                layer.values.len(),
                limits.max_tensor_elements,
            )?;
            let expected = u64::from(layer.rows) * u64::from(layer.cols);
            if expected != layer.values.len() as u64 {
                return Err(Error::ShapeMismatch {
                    layer: layer.name.clone(),
                    reason: format!(
                        "{} x {} needs {expected} values, found {}",
                        layer.rows,
                        layer.cols,
                        layer.values.len()
                    ),
                });
            }
        }
        check_limit("delta elements", self.elements(), limits.max_delta_elements)?;
        check_range(
            "delta.scale",
            self.scale.into(),
            0.0,
            true,
            f64::from(f32::MAX),
        )?;
        self.dp.validate()?;
        let computed = self.compute_hash();
        if computed != self.hash {
            return Err(Error::HashMismatch {
                what: "delta",
                claimed: self.hash,
                computed,
            });
        }
        Ok(())
    }

    /// Checks that the tensors are exactly the community's B matrices, in order.
    pub fn check_shape(&self, shape: &LoraShape) -> Result<(), Error> {
        let expected = shape.tensors();
        if expected.len() != self.layers.len() {
            return Err(Error::ShapeMismatch {
                layer: "delta".into(),
                reason: format!(
                    "{} tensors, the community adapter has {}",
                    self.layers.len(),
                    expected.len()
                ),
            });
        }
        for (layer, want) in self.layers.iter().zip(&expected) {
            if layer.name != want.name || layer.rows != want.rows || layer.cols != want.cols {
                return Err(Error::ShapeMismatch {
                    layer: layer.name.clone(),
                    reason: format!(
                        "found {} {}x{}, expected {} {}x{}",
                        layer.name, layer.rows, layer.cols, want.name, want.rows, want.cols
                    ),
                });
            }
        }
        Ok(())
    }
}

/// A node's statement of the adapter version it computed for a round.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionAnnouncement {
    /// The round aggregated (equals the envelope's round).
    pub round: u64,
    /// The version the round started from.
    pub parent: Hash32,
    /// The resulting version ([`adapter_hash`](crate::adapter_hash) of the new adapter).
    pub version: Hash32,
    /// Content hashes of the deltas included, strictly increasing (sorted, no duplicates).
    pub deltas: Vec<Hash32>,
}

impl VersionAnnouncement {
    /// Checks the delta list's length and order.
    pub fn validate(&self, limits: &Limits) -> Result<(), Error> {
        check_limit("included deltas", self.deltas.len(), limits.max_cohort)?;
        if self.deltas.windows(2).any(|w| w[0] >= w[1]) {
            return Err(Error::InvalidValue {
                field: "version.deltas",
                reason: "not strictly increasing".into(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{delta, manifest};

    #[test]
    fn realistic_delta_matches_the_manifest_shape() {
        let d = delta(3, &manifest().lora);
        assert_eq!(d.elements(), 184_320);
        d.validate(&Limits::default()).unwrap();
        d.check_shape(&manifest().lora).unwrap();
    }

    #[test]
    fn hash_covers_every_field() {
        let d = delta(3, &manifest().lora);
        type Mutation = Box<dyn Fn(&mut DeltaSubmission)>;
        let mutations: Vec<Mutation> = vec![
            Box::new(|d| d.round += 1),
            Box::new(|d| d.base_version = Hash32::digest(b"other")),
            Box::new(|d| d.layers[5].values[7] += 1),
            Box::new(|d| d.layers[5].name.push('x')),
            Box::new(|d| {
                let l = &mut d.layers[0];
                std::mem::swap(&mut l.rows, &mut l.cols);
            }),
            Box::new(|d| d.scale *= 2.0),
            Box::new(|d| d.sample_count += 1),
            Box::new(|d| d.dp.mode = PrivacyMode::Local),
            Box::new(|d| d.dp.clip_norm += 0.5),
            Box::new(|d| d.dp.noise_multiplier += 0.5),
            Box::new(|d| d.dp.noise_std += 0.5),
        ];
        for (i, mutate) in mutations.iter().enumerate() {
            let mut changed = d.clone();
            mutate(&mut changed);
            assert_ne!(changed.compute_hash(), d.hash, "mutation {i}");
        }
        let mut tampered = d.clone();
        tampered.layers[0].values[0] ^= 1;
        assert!(matches!(
            tampered.validate(&Limits::default()),
            Err(Error::HashMismatch { what: "delta", .. })
        ));
    }

    #[test]
    fn delta_limits_at_and_past() {
        let shape = manifest().lora;
        let d = delta(1, &shape);
        let base = Limits::default();

        let at = Limits {
            max_tensors: 60,
            ..base
        };
        d.validate(&at).unwrap();
        let past = Limits {
            max_tensors: 59,
            ..base
        };
        assert_eq!(
            d.validate(&past),
            Err(Error::LimitExceeded {
                what: "tensors",
                found: 60,
                max: 59
            })
        );

        let at = Limits {
            max_tensor_elements: 4608,
            ..base
        };
        d.validate(&at).unwrap();
        let past = Limits {
            max_tensor_elements: 4607,
            ..base
        };
        assert_eq!(
            d.validate(&past),
            Err(Error::LimitExceeded {
                what: "tensor elements",
                found: 4608,
                max: 4607
            })
        );

        let at = Limits {
            max_delta_elements: 184_320,
            ..base
        };
        d.validate(&at).unwrap();
        let past = Limits {
            max_delta_elements: 184_319,
            ..base
        };
        assert_eq!(
            d.validate(&past),
            Err(Error::LimitExceeded {
                what: "delta elements",
                found: 184_320,
                max: 184_319
            })
        );

        let name_len = d.layers[59].name.len() as u32; // "blk.29.attn_v"
        let at = Limits {
            max_name_bytes: name_len,
            ..base
        };
        d.validate(&at).unwrap();
        let past = Limits {
            max_name_bytes: name_len - 1,
            ..base
        };
        assert!(matches!(
            d.validate(&past),
            Err(Error::LimitExceeded {
                what: "tensor name",
                ..
            })
        ));
    }

    #[test]
    fn malformed_deltas_are_rejected() {
        let shape = manifest().lora;
        let limits = Limits::default();
        let base = delta(1, &shape);
        let rehash = |mut d: DeltaSubmission| {
            d.hash = d.compute_hash();
            d
        };

        let mut short = base.clone();
        short.layers[2].values.pop();
        assert!(matches!(
            rehash(short).validate(&limits),
            Err(Error::ShapeMismatch { .. })
        ));
        let mut twice = base.clone();
        twice.layers[1] = twice.layers[0].clone();
        assert!(matches!(
            rehash(twice).validate(&limits),
            Err(Error::ShapeMismatch { .. })
        ));
        for scale in [0.0f32, -1.0, f32::NAN, f32::INFINITY] {
            let mut bad = base.clone();
            bad.scale = scale;
            assert!(matches!(
                rehash(bad).validate(&limits),
                Err(Error::InvalidValue {
                    field: "delta.scale",
                    ..
                })
            ));
        }
        let mut bad = base.clone();
        bad.dp.noise_std = f64::NAN;
        assert!(matches!(
            rehash(bad).validate(&limits),
            Err(Error::InvalidValue {
                field: "dp.noise_std",
                ..
            })
        ));

        let mut renamed = base.clone();
        renamed.layers[3].name = "blk.1.attn_k".into();
        let renamed = rehash(renamed);
        renamed.validate(&limits).unwrap();
        assert!(matches!(
            renamed.check_shape(&shape),
            Err(Error::ShapeMismatch { .. })
        ));
        let mut fewer = base.clone();
        fewer.layers.pop();
        assert!(matches!(
            rehash(fewer).check_shape(&shape),
            Err(Error::ShapeMismatch { .. })
        ));
    }

    #[test]
    fn version_announcement_rules() {
        let limits = Limits {
            max_cohort: 3,
            ..Limits::default()
        };
        let mut hashes: Vec<Hash32> = (0..4u8).map(|i| Hash32::digest(&[i])).collect();
        hashes.sort();
        let mut v = VersionAnnouncement {
            round: 1,
            parent: Hash32::ZERO,
            version: Hash32::digest(b"v1"),
            deltas: hashes[..3].to_vec(),
        };
        v.validate(&limits).unwrap();
        v.deltas = hashes.clone();
        assert_eq!(
            v.validate(&limits),
            Err(Error::LimitExceeded {
                what: "included deltas",
                found: 4,
                max: 3
            })
        );
        v.deltas = vec![hashes[1], hashes[0]];
        assert!(matches!(
            v.validate(&limits),
            Err(Error::InvalidValue { .. })
        ));
        v.deltas = vec![hashes[1], hashes[1]];
        assert!(matches!(
            v.validate(&limits),
            Err(Error::InvalidValue { .. })
        ));
    }
}
