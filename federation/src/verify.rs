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
