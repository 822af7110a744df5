//! Cost of the privacy steps on a realistic delta: 184,320 values (SmolLM2-135M, FFA-LoRA rank 8
//! on q and v of 30 layers).
//!
//! `cargo run --release -p hearth-training --example bench_dp` prints microseconds per coordinate
//! for clipping, OpenDP's Gaussian (sized domain, fixed granularity), OpenDP's discrete Gaussian
//! share, a whole distributed-mode `release` (clip, quantize, share, ledger charge), the same
//! Gaussian with OpenDP's defaults (unsized domain, finest granularity) on a
//! sample, one ledger charge, and the local-vs-distributed noise anchor of docs/PRIVACY.md.

use std::time::Instant;

use anyhow::Result;
use hearth_training::{
    Budget, Cohort, DistributedGaussian, Gaussian, Ledger, Noise, NoiseParams, clip, epsilon,
    l2_norm, release,
};
use opendp::{
    domains::{AtomDomain, VectorDomain},
    measurements::make_gaussian,
    measures::ZeroConcentratedDivergence,
    metrics::L2Distance,
};

const DIM: usize = 184_320;

/// A reproducible delta-like vector (xorshift, values in ±1e-3).
fn delta(seed: u64) -> Vec<f32> {
    let mut s = seed | 1;
    (0..DIM)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 2e-3
        })
        .collect()
}

/// Process CPU time (user + system, all threads) from /proc/self/stat, in seconds (Linux; the
/// usual 100 ticks per second). CPU time is robust to other processes competing for the cores.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let tick = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (tick(11) + tick(12)) / 100.0
}

fn per_coord(
    label: &str,
    coords: usize,
    runs: u32,
    mut f: impl FnMut() -> Result<()>,
) -> Result<f64> {
    f()?; // warm up
    let (start, cpu) = (Instant::now(), cpu_seconds());
    for _ in 0..runs {
        f()?;
    }
    let per = |secs: f64| secs * 1e6 / f64::from(runs) / coords as f64;
    let us = per(start.elapsed().as_secs_f64());
    let cpu_us = per(cpu_seconds() - cpu);
    println!(
        "{label:<58} wall {us:>8.3} µs/coord ({:>7.1} ms/delta)  cpu {cpu_us:>8.3} µs/coord",
        us * DIM as f64 / 1e3
    );
    Ok(us)
}

fn main() -> Result<()> {
    let params = NoiseParams::new(1.0, 6.9)?;
    let x = delta(7);
    println!("delta: {DIM} values, norm {:.4}", l2_norm(&x));

    per_coord("clip (L2, in place)", DIM, 200, || {
        let mut v = x.clone();
        clip(&mut v, 0.01)?;
        Ok(())
    })?;

    let g = Gaussian::new(DIM, params)?;
    let mut clipped = x.clone();
    clip(&mut clipped, 1.0)?;
    per_coord(
        &format!("gaussian, sized domain, k = {}, all cores", g.granularity()),
        DIM,
        3,
        || {
            g.privatize(&clipped)?;
            Ok(())
        },
    )?;

    let single = make_gaussian::<_, _, ZeroConcentratedDivergence>(
        VectorDomain::new(AtomDomain::<f32>::new_non_nan()).with_size(DIM),
        L2Distance::<f64>::default(),
        g.std(),
        Some(g.granularity()),
    )?;
    per_coord(
        "gaussian, same, one thread (OpenDP directly)",
        DIM,
        1,
        || {
            single.invoke(&clipped)?;
            Ok(())
        },
    )?;

    let cohort = Cohort::new(50, 16)?;
    let dg = DistributedGaussian::new(DIM, params, cohort)?;
    per_coord(
        &format!(
            "discrete gaussian share, s = 2^{}, std {:.2e}, all cores",
            f64::from(dg.scale()).log2(),
            dg.share_std()
        ),
        DIM,
        3,
        || {
            dg.privatize(&clipped)?;
            Ok(())
        },
    )?;

    // The whole release a member makes in the default mode: budget check, clip, quantize, discrete
    // Gaussian share, ledger charge (a fresh ledger each time, so the budget never runs out).
    let noise = Noise::Distributed(dg.clone());
    per_coord(
        "release, distributed (clip + quantize + share + charge)",
        DIM,
        3,
        || {
            let mut ledger = Ledger::new(Budget::default())?;
            let mut v = x.clone();
            release(&mut ledger, 1, &noise, 1.0, &mut v)?;
            Ok(())
        },
    )?;

    // OpenDP's defaults for comparison: no size, k = f32's subnormal step. On a sample only.
    let sample = 5_000;
    let default_k = make_gaussian::<_, _, ZeroConcentratedDivergence>(
        VectorDomain::new(AtomDomain::<f32>::new_non_nan()),
        L2Distance::<f64>::default(),
        6.9,
        None,
    )?;
    let part = clipped[..sample].to_vec();
    per_coord(
        "gaussian, OpenDP defaults (unsized, k = -149)",
        sample,
        1,
        || {
            default_k.invoke(&part)?;
            Ok(())
        },
    )?;

    let default_f64 = make_gaussian::<_, _, ZeroConcentratedDivergence>(
        VectorDomain::new(AtomDomain::<f64>::new_non_nan()),
        L2Distance::<f64>::default(),
        6.9,
        None,
    )?;
    let part64: Vec<f64> = part.iter().map(|&v| f64::from(v)).collect();
    per_coord(
        "gaussian, OpenDP defaults for f64 (unsized, k = -1074)",
        sample,
        1,
        || {
            default_f64.invoke(&part64)?;
            Ok(())
        },
    )?;

    let mut ledger = Ledger::new(Budget {
        rho: 1e6,
        delta: 1e-6,
    })?;
    for round in 0..100 {
        ledger.charge(round, g.mechanism(), 1.0)?;
    }
    let start = Instant::now();
    ledger.charge(100, dg.mechanism(), 1.0)?;
    println!(
        "ledger charge with 100 earlier records (fresh filter replay): {:.2} ms",
        start.elapsed().as_secs_f64() * 1e3
    );

    anchor()?;
    Ok(())
}

/// 50 members, 100 rounds, ε = 8 at δ = 10⁻⁶: noise std on the sum in each mode.
fn anchor() -> Result<()> {
    let (n, t, rounds, delta) = (50u32, 16u32, 100.0, 1e-6);
    let total = hearth_training::rho_for_epsilon(8.0, delta)?;
    let sigma = NoiseParams::noise_for_rho(total / rounds)?;
    let p = NoiseParams::new(1.0, sigma)?;
    let local = Gaussian::new(DIM, p)?;
    let dist = DistributedGaussian::new(DIM, p, Cohort::new(n, t)?)?;
    let s = f64::from(dist.scale());
    let local_sum = local.std() * f64::from(n).sqrt();
    let dist_sum = dist.share_std() * s * f64::from(n).sqrt();
    println!(
        "anchor: rho total {total:.4} (eps {:.3}), sigma {sigma:.3}, per-round rho local {:.6} distributed {:.6}",
        epsilon(total, delta)?,
        local.rho()?,
        dist.rho()?
    );
    println!(
        "anchor: sum noise std / C  local {local_sum:.2}  distributed {dist_sum:.2} (all {n} report), {:.2} ({} report); ratio {:.2}",
        dist.sum_std() * s,
        n - t,
        local_sum / dist_sum
    );
    Ok(())
}
