//! Fixed-point quantization of a delta for the wire: `f32` values → `i32` integers and one `f32`
//! scale, and back.
//!
//! A value `x` becomes `q = round(x / s)` (round half away from zero) and comes back as `q·s`.
//! Scales chosen by this module are powers of two, so `x / s` and `q·s` are exact in floating
//! point and the only error is the rounding itself:
//!
//! * not saturated: `|q·s − x| ≤ s/2`, plus at most `|x|·2⁻²⁴` when `q·s` is rounded back to `f32`
//!   (and, for a scale that is not a power of two, a further `|x|·2⁻⁵²` from the division);
//! * saturated (`|x/s| > 2³¹ − 1`): `q` is clamped to `±(2³¹ − 1)` and the error is unbounded,
//!   so [`quantize`] counts those values and [`quantize_exact`] refuses them.
//!
//! `i32::MIN` is never produced, so every quantized value can be negated and the range is
//! symmetric.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result, positive};

/// Largest magnitude a quantized value may take: `2³¹ − 1`.
pub const MAX_QUANT: i32 = i32::MAX;

/// A quantized vector: integers and the scale `s` (real units per integer step).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Quantized {
    /// `round(x / scale)` per coordinate.
    pub values: Vec<i32>,
    /// Real units per integer step; finite and > 0 when produced by this module.
    pub scale: f32,
}

impl Quantized {
    /// Converts back to real values `q·s`.
    ///
    /// The scale may come from the network: it is checked (finite, > 0) before use.
    pub fn dequantize(&self) -> Result<Vec<f32>> {
        let s = f64::from(check_scale(self.scale)?);
        Ok(self
            .values
            .iter()
            .map(|&q| (f64::from(q) * s) as f32)
            .collect())
    }

    /// Worst-case rounding error per coordinate of a non-saturated value: `s/2`.
    pub fn max_error(&self) -> f32 {
        self.scale / 2.0
    }
}

/// Checks a scale: finite and strictly positive.
pub fn check_scale(scale: f32) -> Result<f32> {
    positive("quantization scale", f64::from(scale))?;
    Ok(scale)
}

/// The smallest power of two `≥ x` that is a normal `f32`.
///
/// Errors if `x` is not finite and positive, or if the power of two is outside the normal `f32`
/// range (`2⁻¹²⁶ ..= 2¹²⁷`).
pub fn power_of_two_at_least(x: f64) -> Result<f32> {
    positive("scale bound", x)?;
    // log2 may be off by one ulp near exact powers; step until 2^e >= x and 2^(e-1) < x.
    let mut e = (x.log2().ceil() as i32).clamp(-1100, 1100);
    while 2f64.powi(e) < x {
        e += 1;
    }
    while 2f64.powi(e - 1) >= x {
        e -= 1;
    }
    let e = e.max(-126);
    if !(-126..=127).contains(&e) {
        return Err(Error::InvalidParameter {
            name: "scale bound",
            value: x.to_string(),
            rule: "the power of two above it must be a normal f32 (2^-126 ..= 2^127)",
        });
    }
    Ok(2f64.powi(e) as f32)
}

/// The power-of-two scale that quantizes `values` without saturating: `max|x| / s ≤ 2³¹ − 1`.
///
/// An all-zero vector gets the smallest normal scale `2⁻¹²⁶`.
pub fn fit_scale(values: &[f32]) -> Result<f32> {
    crate::dp::clip::check_finite(values)?;
    let max = values.iter().fold(0f32, |m, x| m.max(x.abs()));
    if max == 0.0 {
        return Ok(f32::MIN_POSITIVE);
    }
    power_of_two_at_least((f64::from(max) / f64::from(MAX_QUANT)).max(f64::from(f32::MIN_POSITIVE)))
}

/// Quantizes `values` at `scale`, clamping values beyond `±(2³¹ − 1)` steps.
///
/// Returns the quantized vector and how many values were clamped. Errors on a non-finite value or
/// an invalid scale.
pub fn quantize(values: &[f32], scale: f32) -> Result<(Quantized, usize)> {
    let s = f64::from(check_scale(scale)?);
    crate::dp::clip::check_finite(values)?;
    let limit = f64::from(MAX_QUANT);
    let mut saturated = 0;
    let out = values
        .iter()
        .map(|&x| {
            let q = (f64::from(x) / s).round();
            if q.abs() > limit {
                saturated += 1;
                (q.signum() * limit) as i32
            } else {
                q as i32
            }
        })
        .collect();
    Ok((Quantized { values: out, scale }, saturated))
}

/// Quantizes `values` at `scale`, refusing (with [`Error::Saturated`]) if any value would clamp.
pub fn quantize_exact(values: &[f32], scale: f32) -> Result<Quantized> {
    let (q, saturated) = quantize(values, scale)?;
    if saturated > 0 {
        return Err(Error::Saturated {
            count: saturated,
            len: values.len(),
            scale,
        });
    }
    Ok(q)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn round_trip_error_is_at_most_half_a_step(
            v in prop::collection::vec(-1.0e3f32..1.0e3, 0..200),
            exp in -30i32..4,
        ) {
            let s = 2f32.powi(exp);
            let (q, saturated) = quantize(&v, s).unwrap();
            let back = q.dequantize().unwrap();
            prop_assert_eq!(back.len(), v.len());
            if saturated == 0 {
                for (x, y) in v.iter().zip(&back) {
                    let err = f64::from((x - y).abs());
                    let bound = f64::from(s) / 2.0 + f64::from(x.abs()) * 2f64.powi(-23);
                    prop_assert!(err <= bound, "x {} back {} s {}", x, y, s);
                }
            }
        }

        #[test]
        fn fitted_scale_never_saturates(v in prop::collection::vec(-3.0e38f32..3.0e38, 1..100)) {
            let s = fit_scale(&v).unwrap();
            let q = quantize_exact(&v, s).unwrap();
            let back = q.dequantize().unwrap();
            for (x, y) in v.iter().zip(&back) {
                prop_assert!(f64::from((x - y).abs()) <= f64::from(s) / 2.0 + f64::from(x.abs()) * 2f64.powi(-23));
            }
        }
    }

    #[test]
    fn saturation_at_and_past_the_limit() {
        // 2^31 - 1 steps is the last representable magnitude; 2^31 steps saturate.
        let s = 1.0f32;
        let at = (f64::from(MAX_QUANT) * f64::from(s)) as f32; // rounds to 2^31 in f32
        assert_eq!(f64::from(at), 2f64.powi(31));
        let (q, saturated) = quantize(&[at, -at], s).unwrap();
        assert_eq!(saturated, 2);
        assert_eq!(q.values, vec![MAX_QUANT, -MAX_QUANT]);
        let below = 2f32.powi(30);
        let (q, saturated) = quantize(&[below, -below], s).unwrap();
        assert_eq!(saturated, 0);
        assert_eq!(q.values, vec![1 << 30, -(1 << 30)]);
        assert!(matches!(
            quantize_exact(&[1.0, at], s),
            Err(Error::Saturated {
                count: 1,
                len: 2,
                ..
            })
        ));
        // With a scale of 2, 2^31 real units is 2^30 steps: fine.
        assert!(quantize_exact(&[at], 2.0).is_ok());
    }

    #[test]
    fn halves_round_away_from_zero() {
        let (q, _) = quantize(&[0.5, -0.5, 1.5, -2.5, 0.49], 1.0).unwrap();
        assert_eq!(q.values, vec![1, -1, 2, -3, 0]);
    }

    #[test]
    fn bad_scales_and_values_are_errors() {
        for bad in [0.0f32, -1.0, f32::NAN, f32::INFINITY] {
            assert!(quantize(&[1.0], bad).is_err());
            let q = Quantized {
                values: vec![1],
                scale: bad,
            };
            assert!(q.dequantize().is_err(), "scale {bad} from the wire");
        }
        assert!(matches!(
            quantize(&[1.0, f32::NAN], 1.0),
            Err(Error::NonFinite { index: 1, .. })
        ));
    }

    #[test]
    fn powers_of_two() {
        assert_eq!(power_of_two_at_least(1.0).unwrap(), 1.0);
        assert_eq!(power_of_two_at_least(1.000_001).unwrap(), 2.0);
        assert_eq!(power_of_two_at_least(0.75).unwrap(), 1.0);
        assert_eq!(power_of_two_at_least(0.5).unwrap(), 0.5);
        assert_eq!(power_of_two_at_least(3e-10).unwrap(), 2f32.powi(-31));
        assert_eq!(
            power_of_two_at_least(2f64.powi(-126)).unwrap(),
            f32::MIN_POSITIVE
        );
        assert!(
            power_of_two_at_least(2f64.powi(-127)).is_ok(),
            "rounded up to 2^-126"
        );
        assert_eq!(
            power_of_two_at_least(2f64.powi(127)).unwrap(),
            2f32.powi(127)
        );
        assert!(power_of_two_at_least(2f64.powi(127) * 1.5).is_err());
        assert!(power_of_two_at_least(0.0).is_err());
        assert!(power_of_two_at_least(f64::NAN).is_err());
        assert_eq!(fit_scale(&[0.0, 0.0]).unwrap(), f32::MIN_POSITIVE);
    }
}
