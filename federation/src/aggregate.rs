//! Aggregation rules, computed bit-identically on every node.
//!
//! Inputs are integer vectors with a real step (`value = integer × factor`): a quantized delta
//! (`i32`, factor = its scale) or a secure-aggregation group sum (`i64`, factor = scale / group
//! size, i.e. the group mean). Callers pass them sorted by content hash; the rules then do a
//! fixed sequence of IEEE-754 `f64` operations (`+ − × ÷ √` only, no fused multiply-add, no
//! transcendental functions), which every conforming platform rounds identically:
//!
//! * [`Rule::Mean`]: `u_j = (Σ_i w_i·f_i·v_ij) / Σ_i w_i`, summed in input order;
//! * [`Rule::TrimmedMean`] `{β}`: per coordinate, sort the `n` values (`f64::total_cmp`), drop
//!   `k = ⌊β·n⌋` at each end, average the rest in sorted order (unweighted);
//! * [`Rule::Median`]: per coordinate the middle value, or the mean of the two middle values
//!   (unweighted).
//!
//! The sorted order of a multiset is unique, so the robust rules do not even depend on the input
//! order. Norm bounding is applied to every input first ([`bounded_factor`]).

use hearth_protocol::Rule;

/// The integer values of one input.
#[derive(Debug, Clone, Copy)]
pub enum Values<'a> {
    /// A quantized delta.
    I32(&'a [i32]),
    /// A group sum.
    I64(&'a [i64]),
}

impl Values<'_> {
    /// Number of values.
    pub fn len(&self) -> usize {
        match self {
            Values::I32(v) => v.len(),
            Values::I64(v) => v.len(),
        }
    }

    /// Whether there are no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn get(&self, j: usize) -> f64 {
        match self {
            Values::I32(v) => f64::from(v[j]),
            Values::I64(v) => v[j] as f64,
        }
    }

    /// L2 norm of the integers: `Σ v²` exact in `i128` when it fits, then one rounding and a
    /// square root. `None` if the sum of squares overflows `i128`.
    pub fn norm(&self) -> Option<f64> {
        let mut sum: i128 = 0;
        match self {
            Values::I32(v) => {
                for &x in *v {
                    sum = sum.checked_add(i128::from(x) * i128::from(x))?;
                }
            }
            Values::I64(v) => {
                for &x in *v {
                    let x = i128::from(x);
                    sum = sum.checked_add(x.checked_mul(x)?)?;
                }
            }
        }
        Some((sum as f64).sqrt())
    }
}

/// One input: `value_j = values_j × factor`, with a weight for the mean.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    /// Integer values.
    pub values: Values<'a>,
    /// Real value of one integer step (after norm bounding).
    pub factor: f64,
    /// Weight in [`Rule::Mean`] (ignored by the robust rules).
    pub weight: f64,
}

/// The step factor of an input whose integers have L2 norm `int_norm` at `step`, bounded to L2
/// norm `bound`: `step` if `int_norm·step ≤ bound`, else `step·bound/(int_norm·step)`.
pub fn bounded_factor(int_norm: f64, step: f64, bound: f64) -> f64 {
    let norm = int_norm * step;
    if norm <= bound {
        step
    } else {
        step * (bound / norm)
    }
}

/// Aggregates `inputs` (all of length `d`, sorted by content hash) with `rule`. Returns zeros
/// for no inputs.
pub fn aggregate(rule: Rule, inputs: &[Input<'_>], d: usize) -> Vec<f64> {
    let mut out = vec![0.0f64; d];
    if inputs.is_empty() {
        return out;
    }
    match rule {
        Rule::Mean => {
            let mut total = 0.0f64;
            for input in inputs {
                let c = input.weight * input.factor;
                total += input.weight;
                for (j, o) in out.iter_mut().enumerate() {
                    *o += c * input.values.get(j);
                }
            }
            if total > 0.0 {
                for o in &mut out {
                    *o /= total;
                }
            }
        }
        Rule::TrimmedMean { beta } => {
            let n = inputs.len();
            let k = trim_count(beta, n);
            let kept = (n - 2 * k) as f64;
            per_coordinate(inputs, &mut out, |sorted| {
                let mut sum = 0.0;
                for v in &sorted[k..n - k] {
                    sum += *v;
                }
                sum / kept
            });
        }
        Rule::Median => {
            per_coordinate(inputs, &mut out, |sorted| {
                let n = sorted.len();
                if n % 2 == 1 {
                    sorted[n / 2]
                } else {
                    (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
                }
            });
        }
    }
    out
}

/// Values trimmed at each end by a trimmed mean of `n` inputs: `⌊β·n⌋`, at most `(n−1)/2`.
pub fn trim_count(beta: f64, n: usize) -> usize {
    let k = if beta.is_finite() && beta > 0.0 {
        (beta * n as f64) as usize
    } else {
        0
    };
    k.min(n.saturating_sub(1) / 2)
}

fn per_coordinate(inputs: &[Input<'_>], out: &mut [f64], reduce: impl Fn(&[f64]) -> f64) {
    let mut column = vec![0.0f64; inputs.len()];
    for (j, o) in out.iter_mut().enumerate() {
        for (c, input) in column.iter_mut().zip(inputs) {
            *c = input.values.get(j) * input.factor;
        }
        column.sort_by(f64::total_cmp);
        *o = reduce(&column);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn inputs<'a>(deltas: &'a [(Vec<i32>, f64, f64)]) -> Vec<Input<'a>> {
        deltas
            .iter()
            .map(|(v, f, w)| Input {
                values: Values::I32(v),
                factor: *f,
                weight: *w,
            })
            .collect()
    }

    /// Straightforward references: the real values as `f64`, each rule from its definition.
    fn reference(rule: Rule, deltas: &[(Vec<i32>, f64, f64)], d: usize) -> Vec<f64> {
        let real: Vec<Vec<f64>> = deltas
            .iter()
            .map(|(v, f, _)| v.iter().map(|&q| f64::from(q) * f).collect())
            .collect();
        (0..d)
            .map(|j| {
                let mut col: Vec<f64> = real.iter().map(|r| r[j]).collect();
                col.sort_by(|a, b| a.partial_cmp(b).unwrap());
                let n = col.len();
                match rule {
                    Rule::Mean => {
                        let w: f64 = deltas.iter().map(|d| d.2).sum();
                        real.iter()
                            .zip(deltas)
                            .map(|(r, d)| r[j] * d.2)
                            .sum::<f64>()
                            / w
                    }
                    Rule::TrimmedMean { beta } => {
                        let k = ((beta * n as f64).floor() as usize).min((n - 1) / 2);
                        col[k..n - k].iter().sum::<f64>() / (n - 2 * k) as f64
                    }
                    Rule::Median => {
                        if n % 2 == 1 {
                            col[n / 2]
                        } else {
                            0.5 * (col[n / 2 - 1] + col[n / 2])
                        }
                    }
                }
            })
            .collect()
    }

    fn arb_deltas() -> impl Strategy<Value = (Vec<(Vec<i32>, f64, f64)>, usize)> {
        (1usize..12, 1usize..24).prop_flat_map(|(d, n)| {
            (
                prop::collection::vec(
                    (
                        prop::collection::vec(-1_000_000i32..1_000_000, d),
                        1e-9f64..1e-3,
                        1.0f64..100.0,
                    ),
                    n,
                ),
                Just(d),
            )
        })
    }

    fn arb_rule() -> impl Strategy<Value = Rule> {
        prop_oneof![
            Just(Rule::Mean),
            Just(Rule::Median),
            (0.0f64..0.49).prop_map(|beta| Rule::TrimmedMean { beta }),
        ]
    }

    proptest! {
        #[test]
        fn rules_match_their_references((deltas, d) in arb_deltas(), rule in arb_rule()) {
            let got = aggregate(rule, &inputs(&deltas), d);
            let want = reference(rule, &deltas, d);
            let scale = deltas
                .iter()
                .flat_map(|(v, f, _)| v.iter().map(move |&q| (f64::from(q) * f).abs()))
                .fold(0.0, f64::max);
            for (g, w) in got.iter().zip(&want) {
                prop_assert!((g - w).abs() <= 1e-12 * scale + 1e-300, "{} vs {}", g, w);
            }
        }

        #[test]
        fn robust_rules_ignore_input_order(
            (deltas, d) in arb_deltas(),
            rule in prop_oneof![
                Just(Rule::Median),
                (0.0f64..0.49).prop_map(|beta| Rule::TrimmedMean { beta }),
            ],
            rotate in 0usize..24,
        ) {
            let mut other = deltas.clone();
            let n = other.len();
            other.rotate_left(rotate % n);
            other.reverse();
            let a = aggregate(rule, &inputs(&deltas), d);
            let b = aggregate(rule, &inputs(&other), d);
            prop_assert_eq!(
                a.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                b.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
            );
        }
    }

    #[test]
    fn trim_counts() {
        assert_eq!(trim_count(0.0, 10), 0);
        assert_eq!(trim_count(0.1, 10), 1);
        assert_eq!(trim_count(0.19, 10), 1);
        assert_eq!(trim_count(0.2, 10), 2);
        assert_eq!(trim_count(0.49, 10), 4);
        assert_eq!(trim_count(0.49, 2), 0);
        assert_eq!(trim_count(0.4, 3), 1);
        assert_eq!(trim_count(f64::NAN, 3), 0);
    }

    #[test]
    fn norm_bounding_scales_down_only_above_the_bound() {
        assert_eq!(bounded_factor(5.0, 0.5, 10.0), 0.5);
        assert_eq!(bounded_factor(5.0, 0.5, 2.5), 0.5);
        let f = bounded_factor(5.0, 0.5, 1.0);
        assert!((5.0 * f - 1.0).abs() < 1e-15);
        let v = [3i64, 4];
        assert_eq!(Values::I64(&v).norm(), Some(5.0));
        let huge = [i64::MAX; 4];
        assert_eq!(Values::I64(&huge).norm(), None);
        let big = [i32::MAX; 1000];
        let n = Values::I32(&big).norm().unwrap();
        assert!((n / (f64::from(i32::MAX) * 1000f64.sqrt()) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn trimmed_mean_resists_sign_flipping_attackers() {
        // 40 honest members around a common direction, 10 attackers (20%) sending its negation
        // scaled 5x (so the plain mean points the wrong way).
        let d = 64;
        let direction: Vec<f64> = (0..d)
            .map(|j| if j % 3 == 0 { 1.0 } else { -0.5 })
            .collect();
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut noise = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f64 / (1u64 << 53) as f64 - 0.5
        };
        let step = 1e-6;
        let mut deltas: Vec<(Vec<i32>, f64, f64)> = (0..40)
            .map(|_| {
                let v = direction
                    .iter()
                    .map(|x| ((x + 0.8 * noise()) / step).round() as i32)
                    .collect();
                (v, step, 1.0)
            })
            .collect();
        let honest = aggregate(Rule::Mean, &inputs(&deltas), d);
        for _ in 0..10 {
            let v = direction
                .iter()
                .map(|x| (-5.0 * x / step).round() as i32)
                .collect();
            deltas.push((v, step, 1.0));
        }
        let dist = |u: &[f64]| {
            u.iter()
                .zip(&honest)
                .map(|(a, b)| (a - b) * (a - b))
                .sum::<f64>()
                .sqrt()
        };
        let mean = dist(&aggregate(Rule::Mean, &inputs(&deltas), d));
        let trimmed = dist(&aggregate(
            Rule::TrimmedMean { beta: 0.2 },
            &inputs(&deltas),
            d,
        ));
        let median = dist(&aggregate(Rule::Median, &inputs(&deltas), d));
        let honest_norm = dist(&vec![0.0; d]);
        assert!(trimmed < mean / 4.0, "trimmed {trimmed} vs mean {mean}");
        assert!(median < mean / 4.0, "median {median} vs mean {mean}");
        // The plain mean is dragged past zero; the trimmed mean stays near the honest mean.
        assert!(mean > honest_norm, "mean {mean} vs {honest_norm}");
        assert!(
            trimmed < 0.3 * honest_norm,
            "trimmed {trimmed} vs {honest_norm}"
        );
    }
}
