//! The content checks of a delta, after the envelope, certificate, round, timing, cohort and
//! replay checks have passed (those live in [`crate::round`]): base version, DP parameters,
//! shapes, finite values, quantization range and the L2 norm bound.
//!
//! # The norm bound
//!
//! A member's delta is `x = clip_C(Δ) + g + e`: the clipped update (`‖clip_C(Δ)‖ ≤ C`), the
//! Gaussian noise it added (`g ~ N(0, τ²·I_d)`, `τ` the delta's `noise_std`: `σ·C` in local
//! mode, the member's share in distributed mode) and the quantization error `e` (`|e_j| ≤ s/2`
//! at scale `s`). By the triangle inequality `‖x‖ ≤ C + ‖g‖ + ‖e‖`, and:
//!
//! * `‖g‖/τ` is a 1-Lipschitz function of a standard Gaussian vector with `E‖g‖/τ ≤ √d`, so by
//!   Gaussian concentration `P(‖g‖ ≥ τ(√d + u)) ≤ exp(−u²/2)`. With `u = `[`TAIL_U`]` = 9` an
//!   honest delta is rejected with probability below `2.6·10⁻¹⁸`.
//! * `‖e‖ ≤ (s/2)·√d`. The scale is chosen by the sender, so it is capped (the quantization range
//!   check): `s ≤ `[`max_scale`]` = C·2⁻⁹/√d`, which makes `‖e‖ ≤ C·2⁻¹⁰`. Honest scales (the
//!   training crate's `fit_scale`, about `max|x|/2³¹`) are many orders of magnitude finer.
//!
//! The bound is therefore `B = (C + τ(√d + 9) + C·2⁻¹⁰)·(1 + 2⁻²⁰)`, the last factor absorbing
//! `f32`/`f64` rounding ([`norm_bound`]). `τ` is taken from the delta only after it has been
//! checked against the manifest (local: `τ = σ·C`; distributed: `τ ≤ σ·C`), so a sender cannot
//! widen its own bound. Note what this means in local mode: at `d = 184,320`, `σ = 1` the noise
//! alone has norm ≈ 429·C, and a malicious member may put that whole norm into one direction.
//! Norm bounding limits a model-replacement attack to `B/n` per round, not to `C/n`; robust
//! rules (trimmed mean, median) and distributed mode are what narrow it further (see
//! docs/PRIVACY.md, "Threat model").
//!
//! The norm itself is computed exactly: `Σ q_j²` in `i128` (no overflow: `d·2⁶²` < `2¹²⁷`), then
//! one rounding to `f64`, a square root and a multiplication by `s` — the same on every node.

use hearth_protocol::{DeltaSubmission, Hash32, Manifest, MemberId, PrivacyMode};

use crate::reject::{Reason, Rejection};

/// Gaussian tail parameter of the norm bound: an honest delta exceeds it with probability at most
/// `exp(−TAIL_U²/2)`.
pub const TAIL_U: f64 = 9.0;

/// Relative allowance for floating-point rounding in the norm bound: `2⁻²⁰`.
const ROUNDING_SLACK: f64 = 1.0 / (1u64 << 20) as f64;

/// Relative tolerance when comparing a delta's claimed noise std with `σ·C`.
const STD_TOLERANCE: f64 = 1e-9;

/// The coarsest quantization scale a delta of `d` values may use: `C·2⁻⁹/√d`, so that rounding
/// adds at most `C·2⁻¹⁰` to its norm.
pub fn max_scale(clip_norm: f64, d: usize) -> f64 {
    clip_norm / 512.0 / (d.max(1) as f64).sqrt()
}

/// The L2 bound on a delta of `d` values whose members add Gaussian noise of std `noise_std`,
/// clipped to `clip_norm` (derivation in the module docs).
pub fn norm_bound(clip_norm: f64, noise_std: f64, d: usize) -> f64 {
    let root_d = (d as f64).sqrt();
    (clip_norm + noise_std * (root_d + TAIL_U) + clip_norm / 1024.0) * (1.0 + ROUNDING_SLACK)
}

/// L2 norm of a quantized vector at `scale`: `√(Σ q²)·s`, the sum exact in `i128`.
pub fn quantized_norm(values: &[i32], scale: f32) -> f64 {
    let sum: i128 = values.iter().map(|&q| i128::from(q) * i128::from(q)).sum();
    (sum as f64).sqrt() * f64::from(scale)
}

/// What a delta is checked against.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Target<'a> {
    pub manifest: &'a Manifest,
    pub parent: Hash32,
}

/// A delta that passed every content check.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Checked {
    pub norm: f64,
}

/// Checks the content of `delta` from `sender`, in the documented order: hash, base version,
/// DP parameters, shape, finite values, quantization range, norm.
pub(crate) fn check_delta(
    target: Target<'_>,
    sender: MemberId,
    delta: &DeltaSubmission,
) -> Result<Checked, Rejection> {
    let reject = |reason, detail: String| Err(Rejection::new(Some(sender), reason, detail));
    let m = target.manifest;
    let computed = delta.compute_hash();
    if computed != delta.hash {
        return reject(
            Reason::Malformed,
            format!(
                "content hash {} but contents hash to {computed}",
                delta.hash
            ),
        );
    }
    if delta.base_version != target.parent {
        return reject(
            Reason::WrongBase,
            format!(
                "computed on {}, the round's parent is {}",
                delta.base_version.short(),
                target.parent.short()
            ),
        );
    }
    let p = &m.privacy;
    let dp = &delta.dp;
    let full = p.noise_multiplier * p.clip_norm;
    let std_ok = match p.mode {
        PrivacyMode::Local => (dp.noise_std - full).abs() <= STD_TOLERANCE * full,
        PrivacyMode::Distributed => {
            dp.noise_std >= 0.0 && dp.noise_std <= full * (1.0 + STD_TOLERANCE)
        }
    };
    if dp.mode != p.mode
        || dp.clip_norm.to_bits() != p.clip_norm.to_bits()
        || dp.noise_multiplier.to_bits() != p.noise_multiplier.to_bits()
        || !std_ok
    {
        return reject(
            Reason::DpMismatch,
            format!(
                "{:?} C {} sigma {} std {}; the community uses {:?} C {} sigma {} (std {full})",
                dp.mode,
                dp.clip_norm,
                dp.noise_multiplier,
                dp.noise_std,
                p.mode,
                p.clip_norm,
                p.noise_multiplier
            ),
        );
    }
    if let Err(e) = delta.check_shape(&m.lora) {
        return reject(Reason::WrongShape, e.to_string());
    }
    if let Some((i, layer)) = delta
        .layers
        .iter()
        .enumerate()
        .find(|(_, l)| l.values.len() as u64 != u64::from(l.rows) * u64::from(l.cols))
    {
        return reject(
            Reason::WrongShape,
            format!(
                "tensor {i} ({}) holds {} values",
                layer.name,
                layer.values.len()
            ),
        );
    }
    let scale = delta.scale;
    if !scale.is_finite() || scale <= 0.0 {
        return reject(Reason::NonFinite, format!("scale {scale}"));
    }
    let d = delta.elements();
    let coarsest = max_scale(p.clip_norm, d);
    if f64::from(scale) > coarsest {
        return reject(
            Reason::QuantizationRange,
            format!("scale {scale} is coarser than {coarsest} (C·2^-9/√d)"),
        );
    }
    if let Some(i) = delta
        .layers
        .iter()
        .flat_map(|l| l.values.iter())
        .position(|&q| q == i32::MIN)
    {
        return reject(
            Reason::QuantizationRange,
            format!("value {i} is i32::MIN (the range is ±(2^31 − 1))"),
        );
    }
    let values = || delta.layers.iter().flat_map(|l| l.values.iter().copied());
    let max = values().map(i32::unsigned_abs).max().unwrap_or(0);
    let largest = (f64::from(max) * f64::from(scale)) as f32;
    if !largest.is_finite() {
        return reject(Reason::NonFinite, format!("dequantized value {largest}"));
    }
    let sum: i128 = values().map(|q| i128::from(q) * i128::from(q)).sum();
    let norm = (sum as f64).sqrt() * f64::from(scale);
    let bound = norm_bound(p.clip_norm, dp.noise_std, d);
    if norm.is_nan() || norm > bound {
        return reject(
            Reason::OverNorm,
            format!("L2 norm {norm} exceeds the bound {bound}"),
        );
    }
    Ok(Checked { norm })
}

#[cfg(test)]
mod tests {
    use hearth_protocol::{PrivacyMode, Rule};

    use super::*;
    use crate::testutil::{honest, manifest, member, submission};

    fn one_hot(m: &Manifest, parent: Hash32, q: i32, scale: f32) -> DeltaSubmission {
        let mut d = submission(m, 1, parent, &vec![0.0; m.lora.elements() as usize]);
        for layer in &mut d.layers {
            layer.values.fill(0);
        }
        d.layers[0].values[0] = q;
        DeltaSubmission::new(1, parent, d.layers, scale, 1, d.dp)
    }

    #[test]
    fn norm_bound_at_and_past() {
        let m = manifest(Rule::Mean);
        let parent = Hash32::digest(b"parent");
        let target = Target {
            manifest: &m,
            parent,
        };
        let d = m.lora.elements() as usize;
        let bound = norm_bound(1.0, 1.0, d);
        assert!((bound - (1.0 + 28f64.sqrt() + 9.0 + 1.0 / 1024.0)).abs() < 1e-4);
        let s = 1.0f32 / 1_048_576.0;
        let q = (bound / f64::from(s)).floor() as i32;
        let sender = member(1).member_id();
        let at = check_delta(target, sender, &one_hot(&m, parent, q, s)).unwrap();
        assert!(at.norm <= bound && at.norm > bound - 1e-5);
        let past = check_delta(target, sender, &one_hot(&m, parent, q + 1, s)).unwrap_err();
        assert_eq!(past.reason, Reason::OverNorm);
        assert_eq!(quantized_norm(&[3, -4], 0.5), 2.5);
    }

    #[test]
    fn scale_cap_at_and_past() {
        let m = manifest(Rule::Mean);
        let parent = Hash32::digest(b"parent");
        let target = Target {
            manifest: &m,
            parent,
        };
        let cap = max_scale(1.0, 28);
        let mut at = cap as f32;
        if f64::from(at) > cap {
            at = f32::from_bits(at.to_bits() - 1);
        }
        let past = f32::from_bits(at.to_bits() + 1);
        assert!(f64::from(past) > cap);
        let sender = member(1).member_id();
        check_delta(target, sender, &one_hot(&m, parent, 1, at)).unwrap();
        let r = check_delta(target, sender, &one_hot(&m, parent, 1, past)).unwrap_err();
        assert_eq!(r.reason, Reason::QuantizationRange);
    }

    #[test]
    fn distributed_noise_std_may_be_a_share_but_not_more() {
        let mut m = manifest(Rule::Mean);
        m.privacy.mode = PrivacyMode::Distributed;
        let parent = Hash32::digest(b"parent");
        let target = Target {
            manifest: &m,
            parent,
        };
        let sender = member(1).member_id();
        // A noisy delta must not claim a smaller share than it carries: the bound uses the claim.
        let mut noisy = honest(&m, 1, parent, 4);
        noisy.dp.noise_std = 0.25;
        noisy.hash = noisy.compute_hash();
        assert_eq!(
            check_delta(target, sender, &noisy).unwrap_err().reason,
            Reason::OverNorm
        );
        let mut d = one_hot(&m, parent, 1000, 1.0 / 1_048_576.0);
        d.dp.noise_std = 0.25;
        d.hash = d.compute_hash();
        check_delta(target, sender, &d).unwrap();
        d.dp.noise_std = 1.0 + 1e-6;
        d.hash = d.compute_hash();
        assert_eq!(
            check_delta(target, sender, &d).unwrap_err().reason,
            Reason::DpMismatch
        );
    }

    /// Real local-DP deltas at the default model's size (184,320 values, σ = 1, C = 1), noised by
    /// the training crate's OpenDP Gaussian and quantized as the node does, pass the bound; their
    /// norm sits near `σC√d`, within a few `σC` of it, far from the bound's `9σC` margin.
    #[test]
    fn real_opendp_noise_at_model_size_passes_the_bound() {
        use hearth_protocol::{LoraShape, Target as Module};
        let mut m = manifest(Rule::Mean);
        m.lora = LoraShape {
            rank: 8,
            alpha: 16.0,
            layers: 30,
            targets: vec![
                Module {
                    module: "attn_q".into(),
                    in_dim: 576,
                    out_dim: 576,
                },
                Module {
                    module: "attn_v".into(),
                    in_dim: 576,
                    out_dim: 192,
                },
            ],
            ffa_seed: 42,
        };
        let d = m.lora.elements() as usize;
        assert_eq!(d, 184_320);
        let params = hearth_training::NoiseParams::new(1.0, 1.0).unwrap();
        let noise = hearth_training::Gaussian::new(d, params).unwrap();
        let mut delta: Vec<f32> = (0..d).map(|i| ((i % 13) as f32 - 6.0) * 1e-3).collect();
        hearth_training::clip(&mut delta, 1.0).unwrap();
        let noised = noise.privatize(&delta).unwrap();
        let parent = Hash32::digest(b"parent");
        let sub = submission(&m, 1, parent, &noised);
        let target = Target {
            manifest: &m,
            parent,
        };
        let checked = check_delta(target, member(1).member_id(), &sub).unwrap();
        let root_d = (d as f64).sqrt();
        let bound = norm_bound(1.0, 1.0, d);
        assert!(
            (checked.norm - root_d).abs() < 1.0 + 6.0,
            "norm {} vs √d {root_d}",
            checked.norm
        );
        assert!(
            bound - checked.norm > 7.0,
            "norm {} bound {bound}",
            checked.norm
        );
    }
}
