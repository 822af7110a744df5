//! L2 clipping of a whole delta vector: the step that bounds one member's influence.

use crate::error::{Error, Result, positive};

/// Margin kept below the clipping bound, as a fraction of it.
///
/// Clipping scales by `C/‖Δ‖·(1 − 2⁻²⁰)` so that after rounding each coordinate to `f32`
/// (relative error ≤ 2⁻²⁴) and summing squares in `f64` (relative error ≤ d·2⁻⁵³, under 2⁻²⁶ for
/// any d < 2²⁷) the true norm still stays at or below `C`. The cost is a 10⁻⁶ shrink of clipped
/// vectors, far below anything training can notice.
const MARGIN: f64 = 1.0 / (1u64 << 20) as f64;

/// What [`clip`] did to a delta.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Clip {
    /// L2 norm of the delta before clipping (`f64` accumulation).
    pub norm: f64,
    /// Factor every coordinate was multiplied by: `1` when the norm was already within the bound.
    pub factor: f64,
}

impl Clip {
    /// Whether the delta had to be scaled down.
    pub fn clipped(&self) -> bool {
        self.factor < 1.0
    }
}

/// L2 norm of `values`, accumulated in `f64`.
pub fn l2_norm(values: &[f32]) -> f64 {
    values
        .iter()
        .map(|&x| f64::from(x) * f64::from(x))
        .sum::<f64>()
        .sqrt()
}

/// Returns the index and value of the first non-finite entry, as an error.
pub(crate) fn check_finite(values: &[f32]) -> Result<()> {
    match values.iter().position(|x| !x.is_finite()) {
        Some(index) => Err(Error::NonFinite {
            index,
            value: values[index],
        }),
        None => Ok(()),
    }
}

/// Clips `delta` in place to L2 norm at most `bound` (the clipping norm `C`).
///
/// The whole vector is scaled by `min(1, C/‖Δ‖)`, so its direction is kept; a clipped vector is
/// shrunk by a further `2⁻²⁰` so that `f32` rounding cannot push its norm back above `C`. Returns the norm before clipping, which callers may log
/// locally but must not publish: it is a function of private data.
///
/// Errors if `bound` is not finite and positive or if any value is NaN or infinite (the vector
/// is left untouched then).
pub fn clip(delta: &mut [f32], bound: f64) -> Result<Clip> {
    positive("clipping norm", bound)?;
    check_finite(delta)?;
    let norm = l2_norm(delta);
    if norm <= bound {
        return Ok(Clip { norm, factor: 1.0 });
    }
    let mut factor = bound / norm * (1.0 - MARGIN);
    scale(delta, factor);
    // The margin makes this loop body run at most once in practice; it stays as a guard so the
    // bound holds by construction rather than by the argument above alone.
    let mut after = l2_norm(delta);
    while after > bound * (1.0 - MARGIN / 2.0) {
        let again = bound / after * (1.0 - MARGIN);
        scale(delta, again);
        factor *= again;
        after = l2_norm(delta);
    }
    Ok(Clip { norm, factor })
}

fn scale(values: &mut [f32], factor: f64) {
    for x in values.iter_mut() {
        *x = (f64::from(*x) * factor) as f32;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn clipping_bounds_the_norm(
            mut v in prop::collection::vec(-1.0e6f32..1.0e6, 0..300),
            bound in 1.0e-6f64..1.0e3,
        ) {
            let before = l2_norm(&v);
            let original = v.clone();
            let c = clip(&mut v, bound).unwrap();
            prop_assert!(l2_norm(&v) <= bound);
            prop_assert_eq!(c.norm, before);
            if before <= bound {
                prop_assert_eq!(&v, &original);
                prop_assert_eq!(c.factor, 1.0);
            } else {
                prop_assert!(c.clipped());
                // Clipping keeps the norm at the bound (up to the margin) and the direction.
                prop_assert!(l2_norm(&v) >= bound * (1.0 - 4.0 * MARGIN));
                for (a, b) in v.iter().zip(&original) {
                    let expect = f64::from(*b) * c.factor;
                    prop_assert!((f64::from(*a) - expect).abs() <= expect.abs() * 1e-6 + 1e-30);
                }
            }
        }
    }

    #[test]
    fn exactly_at_the_bound_is_untouched() {
        let mut v = vec![3.0f32, 4.0];
        let c = clip(&mut v, 5.0).unwrap();
        assert_eq!(v, vec![3.0, 4.0]);
        assert_eq!(
            c,
            Clip {
                norm: 5.0,
                factor: 1.0
            }
        );
        let c = clip(&mut v, 4.999_999).unwrap();
        assert!(c.clipped());
        assert!(l2_norm(&v) <= 4.999_999);
    }

    #[test]
    fn bad_inputs_are_errors() {
        let mut v = vec![1.0f32, 2.0];
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            let e = clip(&mut v, bad).unwrap_err();
            assert!(e.to_string().contains("clipping norm"), "{e}");
        }
        let mut w = vec![1.0f32, f32::NAN, 2.0];
        let e = clip(&mut w, 1.0).unwrap_err();
        assert!(matches!(e, Error::NonFinite { index: 1, .. }), "{e}");
        let mut w = vec![f32::NEG_INFINITY];
        assert!(matches!(
            clip(&mut w, 1.0),
            Err(Error::NonFinite { index: 0, .. })
        ));
        assert_eq!(
            w[0],
            f32::NEG_INFINITY,
            "a refused vector is left as it was"
        );
    }

    #[test]
    fn huge_values_do_not_overflow_the_norm() {
        let mut v = vec![f32::MAX; 1000];
        let c = clip(&mut v, 1.0).unwrap();
        assert!(c.norm.is_finite());
        assert!(l2_norm(&v) <= 1.0);
    }
}
