use std::ops::ControlFlow;

use burn::module::Module;
use burn::tensor::{Device, Int, Tensor, TensorData};
use hearth_models::{Llama, LlamaConfig, LoraConfig, Target};

use super::score::ln_normal_cdf;
use super::*;
use crate::data::{ByteEncoder, Dataset};
use crate::{
    Budget, Cohort, Ledger, Mode, Noise, NoiseParams, Noised, Schedule, TrainConfig, Trainer,
    community_delta, l2_norm, pretrain, release, rho_for_epsilon, train_community,
};

#[test]
fn draw_is_seeded_and_limits_hold_at_and_past() {
    let a = Canary::draw("my PIN is", 6, 7).unwrap();
    assert_eq!(a, Canary::draw("my PIN is", 6, 7).unwrap());
    assert_ne!(
        a.secret(),
        Canary::draw("my PIN is", 6, 8).unwrap().secret()
    );
    assert!(a.secret() < 1_000_000);
    assert_eq!(a.space(), 1_000_000);
    // Secrets are spread over the space: 200 draws of 2 digits hit most of the 100 values.
    let seen: std::collections::BTreeSet<u64> = (0..200)
        .map(|s| Canary::draw("x", 2, s).unwrap().secret())
        .collect();
    assert!(seen.len() > 75, "{}", seen.len());
    assert!(Canary::new("x", 0, 0).is_err());
    assert!(Canary::new("x", MAX_DIGITS, 10u64.pow(MAX_DIGITS) - 1).is_ok());
    assert!(Canary::new("x", MAX_DIGITS + 1, 0).is_err());
    assert!(Canary::new("x", 4, 9_999).is_ok());
    let e = Canary::new("x", 4, 10_000).unwrap_err();
    assert_eq!(
        e.to_string(),
        "training config: canary secret 10000 has more than 4 digits"
    );
    assert!(Canary::new("", 4, 1).is_err());
    assert!(Canary::new("a\nb", 4, 1).is_err());
}

#[test]
fn sentences_pad_and_space_the_digits() {
    let c = Canary::new("my PIN is", 4, 4815).unwrap();
    assert_eq!(c.sentence(), "my PIN is 4 8 1 5");
    assert_eq!(c.sentence_for(42), "my PIN is 0 0 4 2");
    assert_eq!(c.sentence_for(0), "my PIN is 0 0 0 0");
}

#[test]
fn insert_spreads_copies_between_lines() {
    let c = Canary::new("pin", 2, 7).unwrap();
    let text = "a\nb\nc\nd\ne\nf";
    let out = c.insert(text, 2);
    assert_eq!(out, "a\nb\npin 0 7\nc\nd\npin 0 7\ne\nf");
    assert_eq!(c.insert(text, 0), text);
    // More copies than lines: all present, the other lines kept in order.
    let many = c.insert("a\nb", 5);
    assert_eq!(many.matches("pin 0 7").count(), 5);
    let rest: Vec<&str> = many.lines().filter(|l| !l.starts_with("pin")).collect();
    assert_eq!(rest, ["a", "b"]);
    assert_eq!(c.insert("", 2), "pin 0 7\npin 0 7");
}

#[test]
fn normal_cdf_matches_reference_values() {
    // Φ(0) = 0.5, Φ(−1.959964) = 0.025, Φ(1) = 0.8413447, Φ(−10) = 7.6198530e−24,
    // Φ(−30) = 4.906714e−198 (ln = −454.3212).
    for (z, phi) in [
        (0.0, 0.5),
        (-1.959_964, 0.025),
        (1.0, 0.841_344_746),
        (-10.0, 7.619_853e-24),
    ] {
        let got = ln_normal_cdf(z).exp();
        assert!(
            ((got - phi) / phi).abs() < 1e-6,
            "Φ({z}) = {got}, not {phi}"
        );
    }
    assert!((ln_normal_cdf(-30.0) + 454.3212).abs() < 1e-3);
    assert!(ln_normal_cdf(8.0) < 0.0 && ln_normal_cdf(8.0) > -1e-14);
}

#[test]
fn exposure_from_exact_and_sampled_ranks() {
    // Exact: 9 other secrets, 3 more likely than the secret → rank 4 of 10.
    let others = [0.5, 1.0, 1.5, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0];
    let e = Exposure::from_scores(10, 2.0, &others, true).unwrap();
    assert_eq!((e.below, e.ties, e.rank), (3, 0, 4.0));
    assert!((e.exposure - (10f64.log2() - 2.0)).abs() < 1e-12);
    assert_eq!(e.resolution, 10f64.log2());
    // Most likely of all: exposure log2 |R|; a tie counts half.
    let top = Exposure::from_scores(10, 0.1, &others, true).unwrap();
    assert_eq!(top.exposure, 10f64.log2());
    let tie = Exposure::from_scores(10, 0.5, &others, true).unwrap();
    assert_eq!((tie.ties, tie.rank), (1, 1.5));
    // Sampled: 1 of 4 samples beats it in a space of 1,000,001 → rank 1 + 10⁶/4.
    let e = Exposure::from_scores(1_000_001, 2.0, &[1.0, 3.0, 4.0, 5.0], false).unwrap();
    assert_eq!(e.rank, 250_001.0);
    assert!((e.resolution - (1_000_001f64.log2() - 250_001f64.log2())).abs() < 1e-9);
    // Shapes that cannot give a rank.
    assert!(Exposure::from_scores(10, 2.0, &others[..8], true).is_err());
    assert!(Exposure::from_scores(10, 2.0, &[], false).is_err());
    assert!(Exposure::from_scores(1, 2.0, &[1.0], false).is_err());
    assert!(Exposure::from_scores(10, f64::NAN, &[1.0], false).is_err());
}

#[test]
fn p_value_is_uniform_for_a_secret_unrelated_to_the_model() {
    // A secret at each of the m + 1 positions among m = 99 distinct candidate scores: the
    // p-values are exactly 1/100, 2/100, …, 1, so P(p ≤ a) = a (a valid one-sided test).
    let candidates: Vec<f64> = (0..99).map(|i| f64::from(i) + 0.5).collect();
    let mut ps: Vec<f64> = (0..100)
        .map(|pos| {
            Exposure::from_scores(1_000_000, f64::from(pos), &candidates, false)
                .unwrap()
                .p_value()
        })
        .collect();
    ps.sort_by(f64::total_cmp);
    for (i, p) in ps.iter().enumerate() {
        assert!((p - (i as f64 + 1.0) / 100.0).abs() < 1e-12, "{i}: {p}");
    }
    // Best of all: 1/(m + 1); worst: 1; a tie counts half; exact ranks give rank/|R|.
    let best = Exposure::from_scores(1_000_000, -1.0, &candidates, false).unwrap();
    assert_eq!(best.p_value(), 0.01);
    let worst = Exposure::from_scores(1_000_000, 1e9, &candidates, false).unwrap();
    assert_eq!(worst.p_value(), 1.0);
    let tie = Exposure::from_scores(1_000_000, 0.5, &candidates, false).unwrap();
    assert_eq!(tie.p_value(), 1.5 / 100.0);
    let others = [0.5, 1.0, 1.5, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0];
    let exact = Exposure::from_scores(10, 2.0, &others, true).unwrap();
    assert_eq!(exact.p_value(), exact.rank / 10.0);
}

#[test]
fn fitted_exposure_follows_the_normal_tail() {
    // Candidates at the normal quantiles of a N(50, 2²): the fit recovers μ and s, and a secret
    // 6 s below the mean has Φ(−6) = 9.87e−10, so in 10⁹ secrets rank ≈ 1.99: exposure ≈ 28.9.
    let m = 20_001;
    let scores: Vec<f64> = (1..=m)
        .map(|i| 50.0 + 2.0 * probit(i as f64 / (m + 1) as f64))
        .collect();
    let e = Exposure::from_scores(1_000_000_000, 38.0, &scores, false).unwrap();
    assert!((e.mean_nll - 50.0).abs() < 1e-3 && (e.std_nll - 2.0).abs() < 0.01);
    let expected = 1e9f64.log2() - (1.0 + (1e9 - 1.0) * 9.865_876e-10f64).log2();
    assert!(
        (e.fitted - expected).abs() < 0.05,
        "{} vs {expected}",
        e.fitted
    );
    // Sampling resolves only about log2(20,001) = 14.3 bits; the secret beat all samples.
    assert_eq!(e.below, 0);
    assert!((e.resolution - 14.29).abs() < 0.01, "{}", e.resolution);
    // A secret at the mean: fitted rank is about half the space, exposure about 1 bit.
    let mid = Exposure::from_scores(1_000_000_000, 50.0, &scores, false).unwrap();
    assert!((mid.fitted - 1.0).abs() < 0.01 && (mid.exposure - 1.0).abs() < 0.01);
}

/// The inverse normal CDF by bisection on `ln_normal_cdf` (test helper).
fn probit(p: f64) -> f64 {
    let (mut lo, mut hi) = (-40.0, 40.0);
    for _ in 0..200 {
        let mid = (lo + hi) / 2.0;
        if ln_normal_cdf(mid) < p.ln() {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    (lo + hi) / 2.0
}

fn tiny(seed: u64) -> Llama {
    Llama::init_random(
        &LlamaConfig::tiny(ByteEncoder::VOCAB),
        seed,
        &Device::flex().autodiff(),
    )
    .unwrap()
}

#[test]
fn log_perplexity_is_the_nll_after_the_prefix_in_any_batch() {
    let model = tiny(3);
    let canary = Canary::new("pin is", 3, 123).unwrap();
    let candidates = [0, 123, 999, 500, 42];
    let one = log_perplexities(&model, &ByteEncoder, &canary, &candidates, 1).unwrap();
    let all = log_perplexities(&model, &ByteEncoder, &canary, &candidates, 64).unwrap();
    for (a, b) in one.iter().zip(&all) {
        assert!((a - b).abs() < 1e-4, "{a} vs {b}");
    }
    // By hand: the model's mean next-token loss over a sentence, times its predictions, minus the
    // prefix's part (the prefix's own predictions do not depend on the secret).
    let total = |text: &str| {
        let ids: Vec<i64> = text.bytes().map(i64::from).collect();
        let n = ids.len();
        let loss = model.valid().next_token_loss(Tensor::<2, Int>::from_data(
            TensorData::new(ids, [1, n]),
            &model.device(),
        ));
        f64::from(loss.into_scalar::<f32>()) * (n - 1) as f64
    };
    let expected = total(&canary.sentence_for(500)) - total("pin is");
    assert!((all[3] - expected).abs() < 1e-3, "{} vs {expected}", all[3]);
    assert!(log_perplexities(&model, &ByteEncoder, &canary, &[1000], 4).is_err());
    assert!(log_perplexities(&model, &ByteEncoder, &canary, &[1], 0).is_err());
    let config = ExposureConfig {
        candidates: 0,
        ..ExposureConfig::default()
    };
    assert!(exposure(&model, &ByteEncoder, &canary, &config).is_err());
}

/// Memorisation is measurable, and DP hides it: a tiny base trained on code-like lines gives a
/// fresh canary no exposure; the same base after an FFA-LoRA contribution trained (without DP)
/// on one member's data holding the canary many times ranks the true secret at or near the top
/// of the 10⁶ secrets; the same contribution released at ε = 1 gives chance-level exposure. The
/// slower comparison on Shakespeare is the `canary_exposure` example (docs/PRIVACY.md).
#[test]
fn canary_repeated_is_exposed_without_dp_and_hidden_with_it() {
    let device = Device::flex().autodiff();
    let base = Llama::init_random(&LlamaConfig::tiny(ByteEncoder::VOCAB), 1, &device).unwrap();
    let data =
        Dataset::from_split_text(&code_lines(1, 600, 6), &code_lines(4, 60, 6), &ByteEncoder)
            .unwrap();
    let c = TrainConfig::new()
        .with_seq_len(64)
        .with_batch_size(8)
        .with_learning_rate(1e-2)
        .with_warmup_steps(5)
        .with_max_steps(200)
        .with_seed(1)
        .with_quiet(true);
    let (base, r) = pretrain(base, &data, &c).unwrap();
    // Near the corpus's entropy (about 0.6 nats per byte: 6 uniform digits and 1 of 8 subjects
    // in 26 bytes).
    assert!(r.held_out_after.unwrap() < 0.85, "{r:?}");

    let canary = Canary::draw("my PIN is", 6, 2024).unwrap();
    let config = ExposureConfig {
        candidates: 2_000,
        batch: 500,
        seed: 9,
    };
    let before = exposure(&base, &ByteEncoder, &canary, &config).unwrap();
    // The base has no favourite secret: its log-perplexities spread little, the secret's is
    // typical, and its exposure is the small value of an unremarkable rank.
    assert!(before.exposure < 5.0 && before.fitted < 5.0, "{before:?}");
    assert!(before.below > 0 && !before.exact);

    let member = canary.insert(&code_lines(2, 100, 6), 50);
    let data = Dataset::from_split_text(&member, &code_lines(3, 10, 6), &ByteEncoder).unwrap();
    let global = {
        let mut m = base.clone();
        let slot = m
            .add_adapter(
                LoraConfig::new(8, 16.0, vec![Target::Q, Target::V])
                    .with_seed(5)
                    .with_ffa(true),
            )
            .unwrap();
        m.adapter_weights(slot).unwrap()
    };
    let c = c
        .with_max_steps(150)
        .with_schedule(Schedule::Constant)
        .with_learning_rate(5e-2);
    let out = train_community(
        &Trainer::new(c).unwrap(),
        base.clone(),
        &global,
        &data,
        |_| ControlFlow::Continue(()),
    )
    .unwrap();
    let after = exposure(&out.model, &ByteEncoder, &canary, &config).unwrap();
    // The true secret beats every sampled one (exposure at the sample's resolution, 11 bits),
    // and the normal fit puts it far into the tail (15.4 bits measured).
    assert_eq!(after.below, 0, "{after:?}");
    assert!(
        after.exposure > 19.9 && after.resolution > 10.9,
        "{after:?}"
    );
    assert!(after.fitted > 12.0, "{after:?}");
    // Distinguishable from a random candidate: no sampled candidate ranks as well.
    assert!(after.p_value() < 1e-3, "{after:?}");
    assert!(
        after.secret_nll < after.mean_nll - 3.0 * after.std_nll,
        "{after:?}"
    );

    // The same contribution through the DP release, local mode, ε = 1 at δ = 10⁻⁶, clipped at its
    // own norm so that only the noise differs. For any draw P(exposure ≥ b) ≤ e·2⁻ᵇ + δ
    // (docs/PRIVACY.md), so the median of five draws reaching 6 bits has probability below 10⁻³
    // even at the bound, and about 4·10⁻⁵ at chance level.
    let delta = community_delta(&out.adapter, &global).unwrap();
    let rho = rho_for_epsilon(1.0, 1e-6).unwrap();
    let params =
        NoiseParams::new(l2_norm(&delta), NoiseParams::noise_for_rho(rho).unwrap()).unwrap();
    let noise = Noise::new(
        Mode::Local,
        delta.len(),
        params,
        Cohort::new(10, 3).unwrap(),
    )
    .unwrap();
    let mut dp = Vec::new();
    for _ in 0..5 {
        let mut ledger = Ledger::new(Budget {
            rho: rho * 1.01,
            delta: 1e-6,
        })
        .unwrap();
        let mut x = delta.clone();
        let Noised::Local(noised) = release(&mut ledger, 1, &noise, 1.0, &mut x).unwrap().noised
        else {
            panic!("local mode");
        };
        assert!((ledger.epsilon().unwrap() - 1.0).abs() < 0.01);
        let mut w = global.clone();
        w.apply_delta_b(&noised, 1.0).unwrap();
        let mut model = base.clone();
        let slot = model.add_adapter(w.config.clone()).unwrap();
        model.set_adapter_weights(slot, &w).unwrap();
        dp.push(
            exposure(&model, &ByteEncoder, &canary, &config)
                .unwrap()
                .exposure,
        );
    }
    dp.sort_by(f64::total_cmp);
    eprintln!("exposure before {before:?}\nwithout DP {after:?}\nwith DP at ε = 1 {dp:?}");
    assert!(dp[2] < 6.0, "exposure with DP at ε = 1: {dp:?}");
}
