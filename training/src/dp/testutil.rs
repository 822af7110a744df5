//! Helpers shared by the noise tests.

/// Asserts that zero-mean `samples` have standard deviation `expected` within a 4σ band of the
/// estimator: with the mean known to be 0, `√(Σx²/N)` has relative std ≈ `1/√(2N)`.
pub(crate) fn assert_std(samples: &[f64], expected: f64) {
    let n = samples.len() as f64;
    let mean = samples.iter().sum::<f64>() / n;
    let std = (samples.iter().map(|x| x * x).sum::<f64>() / n).sqrt();
    let band = 4.0 * expected / (2.0 * n).sqrt();
    assert!(
        (std - expected).abs() <= band,
        "std {std} vs expected {expected} (band ±{band}, n {n})"
    );
    // The mean of N zero-mean samples has std expected/√N.
    assert!(
        mean.abs() <= 4.0 * expected / n.sqrt(),
        "mean {mean} too far from 0 (std {expected}, n {n})"
    );
}
