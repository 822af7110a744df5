//! Malicious members: what they send instead of their honest delta, crafted before it is
//! quantized and sealed (so it goes through the same envelope, signature and verification as an
//! honest one).
//!
//! Attackers know the community's verification bound `B` ([`hearth_federation::norm_bound`])
//! and stay just inside it, since a delta past it is rejected outright. Under local DP that
//! bound is large (the honest noise norm `σ·C·√d`), which is what makes model replacement
//! dangerous there; see docs/PRIVACY.md's threat model and docs/SIMULATIONS.md.

use crate::rng::Rng;
use crate::scenario::AttackKind;

/// Share of the verification bound an attacker uses.
pub const BOUND_SHARE: f64 = 0.99;

/// `train` with `trigger` followed by `target` inserted after every `every` tokens (and at the
/// end): what a backdoor attacker trains on.
pub fn poison(train: &[u32], trigger: &[u32], target: &[u32], every: usize) -> Vec<u32> {
    let every = every.max(1);
    let phrase = trigger.len() + target.len();
    let mut out = Vec::with_capacity(train.len() + (train.len() / every + 1) * phrase);
    for chunk in train.chunks(every) {
        out.extend_from_slice(chunk);
        out.extend_from_slice(trigger);
        out.extend_from_slice(target);
    }
    out
}

/// Whether the crafted vector still goes through clipping and noise (a protocol-following
/// attacker), or is sent as is.
pub fn follows_protocol(kind: AttackKind) -> bool {
    matches!(kind, AttackKind::Alie)
}

/// The vector an attacker of `kind` sends in place of `honest` (its raw, unclipped delta),
/// for kinds that need no collusion (all but ALIE). `bound` is the verification norm bound.
pub fn craft(kind: AttackKind, boost: f64, honest: &[f32], bound: f64, rng: &mut Rng) -> Vec<f32> {
    match kind {
        AttackKind::SignFlip => {
            let v: Vec<f32> = honest
                .iter()
                .map(|&x| (-boost * f64::from(x)) as f32)
                .collect();
            within(v, bound)
        }
        // A backdoor attacker's `honest` is its delta trained on poisoned data.
        AttackKind::Scaling | AttackKind::Backdoor => {
            let v: Vec<f32> = honest
                .iter()
                .map(|&x| (boost * f64::from(x)) as f32)
                .collect();
            within(v, bound)
        }
        AttackKind::Noise => {
            let v: Vec<f32> = honest.iter().map(|_| rng.normal() as f32).collect();
            let n = l2(&v).max(f64::MIN_POSITIVE);
            v.iter()
                .map(|&x| (f64::from(x) / n * bound * BOUND_SHARE) as f32)
                .collect()
        }
        // Needs the other attackers' deltas: see `alie`. Alone, it sends its honest delta.
        AttackKind::Alie => honest.to_vec(),
    }
}

/// "A little is enough" (Baruch, Baruch and Goldberg, NeurIPS 2019): from the vectors the `m`
/// attackers would have sent honestly, every attacker sends `μ − z·s` (coordinate-wise mean and
/// standard deviation), with `z = Φ⁻¹((n − k)/n)`, `k = ⌊n/2 + 1⌋ − m`, for `n` contributions:
/// the largest shift that still hides among the honest spread. Kept inside `bound`.
pub fn alie(honest: &[Vec<f32>], n: usize, bound: f64) -> Vec<f32> {
    let m = honest.len();
    let Some(first) = honest.first() else {
        return Vec::new();
    };
    let d = first.len();
    let k = (n / 2 + 1).saturating_sub(m);
    let p = ((n.saturating_sub(k)) as f64 / n.max(1) as f64).clamp(0.5, 0.999);
    let z = inverse_normal_cdf(p);
    let mut out = vec![0.0f32; d];
    for (j, o) in out.iter_mut().enumerate() {
        let mean = honest.iter().map(|v| f64::from(v[j])).sum::<f64>() / m as f64;
        let var = honest
            .iter()
            .map(|v| (f64::from(v[j]) - mean).powi(2))
            .sum::<f64>()
            / m as f64;
        *o = (mean - z * var.sqrt()) as f32;
    }
    within(out, bound)
}

/// Scales `v` down to [`BOUND_SHARE`] of `bound` if it is longer.
fn within(v: Vec<f32>, bound: f64) -> Vec<f32> {
    let n = l2(&v);
    let max = bound * BOUND_SHARE;
    if n <= max {
        return v;
    }
    v.iter().map(|&x| (f64::from(x) * max / n) as f32).collect()
}

fn l2(v: &[f32]) -> f64 {
    v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt()
}

/// Φ⁻¹(p) for `p` in (0, 1) (Acklam's rational approximation, relative error < 1.2·10⁻⁹).
pub fn inverse_normal_cdf(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    let p = p.clamp(1e-300, 1.0 - 1e-16);
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    if p < 0.02425 {
        tail((-2.0 * p.ln()).sqrt())
    } else if p > 1.0 - 0.02425 {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::stream;

    #[test]
    fn inverse_cdf_matches_known_quantiles() {
        for (p, z) in [
            (0.5, 0.0),
            (0.975, 1.959_963_984_540_054),
            (0.841_344_746, 1.0),
            (0.01, -2.326_347_874_040_841),
        ] {
            assert!((inverse_normal_cdf(p) - z).abs() < 1e-6, "{p}");
        }
    }

    #[test]
    fn crafted_vectors_stay_inside_the_bound() {
        let honest: Vec<f32> = (0..100).map(|i| (i as f32 - 50.0) / 100.0).collect();
        let mut rng = stream(1, &[]);
        let flip = craft(AttackKind::SignFlip, 2.0, &honest, 100.0, &mut rng);
        assert_eq!(flip[0], -2.0 * honest[0]);
        let flip = craft(AttackKind::SignFlip, 2.0, &honest, 5.0, &mut rng);
        assert!((l2(&flip) - 4.95).abs() < 1e-4 && flip[0] > 0.0);
        let scaled = craft(AttackKind::Scaling, 1000.0, &honest, 5.0, &mut rng);
        assert!((l2(&scaled) - 4.95).abs() < 1e-4);
        assert!(scaled[0] < 0.0 && scaled[99] > 0.0, "same direction");
        let small = craft(AttackKind::Scaling, 1.0, &honest, 100.0, &mut rng);
        assert_eq!(small, honest, "already inside: unchanged");
        let noise = craft(AttackKind::Noise, 1.0, &honest, 5.0, &mut rng);
        assert!((l2(&noise) - 4.95).abs() < 1e-4);
        assert!(follows_protocol(AttackKind::Alie) && !follows_protocol(AttackKind::SignFlip));
        let backdoor = craft(AttackKind::Backdoor, 1000.0, &honest, 5.0, &mut rng);
        assert_eq!(backdoor, scaled, "a backdoor is sent as model replacement");
    }

    #[test]
    fn poison_inserts_the_phrase_after_every_chunk() {
        let p = poison(&[1, 2, 3, 4, 5], &[8], &[9, 9], 2);
        assert_eq!(p, [1, 2, 8, 9, 9, 3, 4, 8, 9, 9, 5, 8, 9, 9]);
        assert_eq!(poison(&[], &[8], &[9], 2), Vec::<u32>::new());
        assert_eq!(poison(&[1], &[8], &[9], 0), [1, 8, 9], "every 0 is every 1");
    }

    #[test]
    fn alie_shifts_by_z_standard_deviations() {
        let a = vec![vec![1.0f32, 0.0], vec![3.0, 0.0]];
        // n = 10 contributions, m = 2 attackers: k = 4, z = Φ⁻¹(0.6) ≈ 0.2533.
        let v = alie(&a, 10, 100.0);
        let z = inverse_normal_cdf(0.6);
        assert!((f64::from(v[0]) - (2.0 - z)).abs() < 1e-6, "{v:?}");
        assert_eq!(v[1], 0.0);
        assert!(alie(&[], 10, 1.0).is_empty());
    }
}
