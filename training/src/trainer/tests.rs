use std::ops::ControlFlow;

use burn::tensor::Device;
use hearth_models::{AdapterWeights, Factor, Llama, LlamaConfig, LoraConfig, Target};

use super::run::Order;
use super::*;
use crate::checkpoint::Checkpoint;
use crate::data::{ByteEncoder, Dataset};

fn go(_: &StepInfo) -> ControlFlow<()> {
    ControlFlow::Continue(())
}

fn tiny_model(seed: u64) -> Llama {
    Llama::init_random(
        &LlamaConfig::tiny(ByteEncoder::VOCAB),
        seed,
        &Device::flex().autodiff(),
    )
    .unwrap()
}

/// A learnable toy set: a short pattern repeated.
fn pattern() -> Dataset {
    let text = "the cat sat on the mat. ".repeat(40);
    Dataset::from_split_text(&text[..800], &text[800..], &ByteEncoder).unwrap()
}

fn lora() -> LoraConfig {
    LoraConfig::new(4, 8.0, vec![Target::Q, Target::V]).with_seed(11)
}

fn config() -> TrainConfig {
    TrainConfig::new()
        .with_seq_len(16)
        .with_batch_size(2)
        .with_learning_rate(1e-2)
        .with_warmup_steps(2)
        .with_seed(5)
        .with_quiet(true)
}

fn max_abs_diff(a: &AdapterWeights, b: &AdapterWeights) -> f32 {
    a.tensors
        .iter()
        .zip(&b.tensors)
        .flat_map(|(x, y)| x.values.iter().zip(&y.values).map(|(p, q)| (p - q).abs()))
        .fold(0.0, f32::max)
}

#[test]
fn personal_training_lowers_the_loss_on_a_pattern() {
    let all = LoraConfig::new(8, 16.0, Target::ALL.to_vec()).with_seed(3);
    let c = config().with_max_steps(60);
    let out = train_personal(
        &Trainer::new(c).unwrap(),
        tiny_model(1),
        all,
        &pattern(),
        go,
    )
    .unwrap();
    let r = &out.report;
    assert_eq!(
        (r.steps, r.stop, r.resumed_from),
        (60, Stop::MaxSteps, None)
    );
    assert_eq!(r.tokens, 60 * 2 * 16);
    let (first, last) = (r.initial_loss.unwrap(), r.final_loss.unwrap());
    let (before, after) = (r.held_out_before.unwrap(), r.held_out_after.unwrap());
    // A random tiny model is near uniform over 259 tokens (ln 259 = 5.56).
    assert!((first - 5.56).abs() < 0.3, "{first}");
    // The frozen random base caps what LoRA can reach (its tied embedding, std 0.02 after the
    // final RMSNorm, keeps every logit within about ±1.3), so the bar is a drop of 0.7 nats.
    assert!(last < first - 0.7, "train loss {first} → {last}");
    assert!(after < before - 0.7, "held-out loss {before} → {after}");
    assert_eq!(out.curve.len(), 60);
    assert!(r.tokens_per_sec > 0.0);
    // Standard LoRA: both factors moved.
    let start = {
        let mut m = tiny_model(1);
        let s = m.add_adapter(LoraConfig::new(8, 16.0, Target::ALL.to_vec()).with_seed(3));
        m.adapter_weights(s.unwrap()).unwrap()
    };
    for (t, s) in out.adapter.tensors.iter().zip(&start.tensors) {
        assert_ne!(t.values, s.values, "{} did not train", t.key.name());
    }
}

#[test]
fn community_training_changes_only_b_from_the_global_weights() {
    let ffa = lora().with_ffa(true);
    let mut global = {
        let mut m = tiny_model(1);
        let s = m.add_adapter(ffa.clone()).unwrap();
        m.adapter_weights(s).unwrap()
    };
    let b: Vec<f32> = (0..global.b_len())
        .map(|i| ((i % 7) as f32 - 3.0) * 1e-3)
        .collect();
    global.set_flat_b(&b).unwrap();
    let trainer = Trainer::new(config().with_max_steps(8)).unwrap();
    let out = train_community(&trainer, tiny_model(1), &global, &pattern(), go).unwrap();
    assert_eq!(out.adapter.config, ffa);
    for (t, g) in out.adapter.tensors.iter().zip(&global.tensors) {
        match t.key.factor {
            Factor::A => assert_eq!(t.values, g.values, "{} changed", t.key.name()),
            Factor::B => assert_ne!(t.values, g.values, "{} did not train", t.key.name()),
        }
    }
    // A is still the one the public seed derives.
    let a = &out.adapter.tensors[0];
    let d_in = a.dims[0];
    let peft = ffa.init_a(0, Target::Q, d_in);
    let burn_layout: Vec<f32> = (0..d_in * 4)
        .map(|k| peft[(k % 4) * d_in + k / 4])
        .collect();
    assert_eq!(a.values, burn_layout);
    // The delta is B_local − B_global, flat; adding it back gives the local B.
    let delta = community_delta(&out.adapter, &global).unwrap();
    assert_eq!(delta.len(), global.b_len());
    assert!(delta.iter().any(|&d| d != 0.0));
    let mut rebuilt = global.clone();
    rebuilt.apply_delta_b(&delta, 1.0).unwrap();
    assert!(max_abs_diff(&rebuilt, &out.adapter) < 1e-6);
    // The loss went down on this member's data.
    assert!(out.report.held_out_after < out.report.held_out_before);
}

#[test]
fn community_training_refuses_bad_starting_adapters() {
    let trainer = Trainer::new(config().with_max_steps(1)).unwrap();
    let standard = {
        let mut m = tiny_model(1);
        let s = m.add_adapter(lora()).unwrap();
        m.adapter_weights(s).unwrap()
    };
    let err = train_community(&trainer, tiny_model(1), &standard, &pattern(), go).unwrap_err();
    assert!(err.to_string().contains("must be ffa-lora"), "{err}");
    let mut forged = {
        let mut m = tiny_model(1);
        let s = m.add_adapter(lora().with_ffa(true)).unwrap();
        m.adapter_weights(s).unwrap()
    };
    forged.tensors[0].values[0] += 1.0;
    let err = train_community(&trainer, tiny_model(1), &forged, &pattern(), go).unwrap_err();
    assert!(
        err.to_string().contains("not those of its seed 11"),
        "{err}"
    );
    let other_seed = {
        let mut m = tiny_model(1);
        let s = m.add_adapter(lora().with_ffa(true).with_seed(12)).unwrap();
        m.adapter_weights(s).unwrap()
    };
    assert!(community_delta(&other_seed, &standard).is_err());
}

#[test]
fn other_adapters_stay_frozen() {
    let mut model = tiny_model(1);
    let under = model.add_adapter(lora().with_ffa(true)).unwrap();
    let mut community = model.adapter_weights(under).unwrap();
    community
        .set_flat_b(&vec![0.01; community.b_len()])
        .unwrap();
    model.set_adapter_weights(under, &community).unwrap();
    let trainer = Trainer::new(config().with_max_steps(3)).unwrap();
    let out = train_personal(&trainer, model, lora().with_seed(4), &pattern(), go).unwrap();
    assert_eq!(out.slot, 1);
    assert_eq!(out.model.adapter_weights(under).unwrap(), community);
}

/// A run of `steps` with a checkpoint every 2 steps into `dir`, stopped by the callback after
/// step `crash_after` if given.
fn run(dir: Option<&std::path::Path>, crash_after: Option<u64>) -> Outcome {
    let c = config().with_max_steps(6).with_checkpoint_every(2);
    let mut trainer = Trainer::new(c).unwrap();
    if let Some(dir) = dir {
        trainer = trainer.with_checkpoint_dir(dir);
    }
    train_personal(&trainer, tiny_model(1), lora(), &pattern(), |info| {
        if Some(info.point.step) == crash_after {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })
    .unwrap()
}

#[test]
fn resume_after_a_crash_equals_an_uninterrupted_run_bit_for_bit() {
    let whole = run(None, None);
    assert_eq!(whole.report.steps, 6);
    let dir = tempfile::tempdir().unwrap();
    let crashed = run(Some(dir.path()), Some(3));
    assert_eq!(
        (crashed.report.steps, crashed.report.stop),
        (3, Stop::Callback)
    );
    // Step 3 was done but not checkpointed: the newest checkpoint is step 2.
    let latest = Checkpoint::latest(dir.path()).unwrap().unwrap();
    assert!(latest.ends_with("step-0000000002.ckpt"), "{latest:?}");
    let resumed = run(Some(dir.path()), None);
    assert_eq!(resumed.report.resumed_from, Some(2));
    assert_eq!(resumed.report.steps, 6);
    assert_eq!(resumed.report.tokens, whole.report.tokens);
    // Exactly equal: Burn's CPU kernels here are deterministic run to run.
    assert_eq!(max_abs_diff(&resumed.adapter, &whole.adapter), 0.0);
    assert_eq!(resumed.adapter, whole.adapter);
    assert_eq!(resumed.curve, {
        let mut c = whole.curve.clone();
        // Throughput differs between runs; the losses and rates must not.
        for (p, q) in c.iter_mut().zip(&resumed.curve) {
            p.tokens_per_sec = q.tokens_per_sec;
        }
        c
    });
    assert_eq!(resumed.report.held_out_before, whole.report.held_out_before);
    assert_eq!(resumed.report.held_out_after, whole.report.held_out_after);
    // Resuming a finished run does no step and returns the same adapter.
    let again = run(Some(dir.path()), None);
    assert_eq!(
        (again.report.resumed_from, again.report.steps),
        (Some(6), 6)
    );
    assert_eq!(again.adapter, whole.adapter);
}

#[test]
fn checkpoints_of_another_run_or_corrupt_ones_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    run(Some(dir.path()), Some(2));
    // Another seed is another run.
    let trainer = Trainer::new(config().with_max_steps(6).with_seed(6))
        .unwrap()
        .with_checkpoint_dir(dir.path());
    let err = train_personal(&trainer, tiny_model(1), lora(), &pattern(), go).unwrap_err();
    assert!(
        err.to_string().contains("belongs to a different run"),
        "{err}"
    );
    // A truncated newest checkpoint is an error naming the file.
    let latest = Checkpoint::latest(dir.path()).unwrap().unwrap();
    let bytes = std::fs::read(&latest).unwrap();
    std::fs::write(&latest, &bytes[..bytes.len() - 10]).unwrap();
    let trainer = Trainer::new(config().with_max_steps(6))
        .unwrap()
        .with_checkpoint_dir(dir.path());
    let err = train_personal(&trainer, tiny_model(1), lora(), &pattern(), go).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("step-0000000002.ckpt") && msg.contains("truncated or corrupt"),
        "{msg}"
    );
}

#[test]
fn accumulating_two_batches_of_one_matches_one_batch_of_two() {
    let train = |batch: usize, accum: usize| {
        let c = config()
            .with_batch_size(batch)
            .with_grad_accum(accum)
            .with_max_steps(3);
        let trainer = Trainer::new(c).unwrap();
        train_personal(&trainer, tiny_model(1), lora(), &pattern(), go).unwrap()
    };
    let big = train(2, 1);
    let acc = train(1, 2);
    assert_eq!(big.report.tokens, acc.report.tokens);
    let diff = max_abs_diff(&big.adapter, &acc.adapter);
    assert!(diff < 1e-5, "max difference {diff}");
    for (p, q) in big.curve.iter().zip(&acc.curve) {
        assert!((p.loss - q.loss).abs() < 1e-5, "{} vs {}", p.loss, q.loss);
    }
    // A different example order does change the result (the comparison is not vacuous).
    let c = config().with_max_steps(3).with_seed(99);
    let other = train_personal(
        &Trainer::new(c).unwrap(),
        tiny_model(1),
        lora(),
        &pattern(),
        go,
    );
    assert!(max_abs_diff(&big.adapter, &other.unwrap().adapter) > 1e-4);
}

#[test]
fn step_and_time_limits() {
    let steps = |n: usize| {
        let trainer = Trainer::new(config().with_max_steps(n)).unwrap();
        train_personal(&trainer, tiny_model(1), lora(), &pattern(), go).unwrap()
    };
    let none = steps(0);
    assert_eq!((none.report.steps, none.report.stop), (0, Stop::MaxSteps));
    assert_eq!(none.report.initial_loss, None);
    assert_eq!(none.report.held_out_before, none.report.held_out_after);
    assert_eq!(steps(2).report.steps, 2);
    let c = config().with_max_steps(1000).with_max_seconds(Some(0.2));
    let timed = train_personal(
        &Trainer::new(c).unwrap(),
        tiny_model(1),
        lora(),
        &pattern(),
        go,
    );
    let r = timed.unwrap().report;
    assert_eq!(r.stop, Stop::MaxDuration);
    assert!(r.steps >= 1 && r.steps < 1000, "{}", r.steps);
    assert!(r.elapsed.as_secs_f64() < 5.0);
}

#[test]
fn sequence_length_limit_at_and_past_the_context() {
    let long = Dataset::new((0..600).map(|i| i % 200).collect(), vec![]);
    let run = |seq_len: usize| {
        let c = config()
            .with_seq_len(seq_len)
            .with_batch_size(1)
            .with_max_steps(1);
        train_personal(&Trainer::new(c).unwrap(), tiny_model(1), lora(), &long, go)
    };
    let at = run(256).unwrap();
    assert_eq!((at.report.steps, at.report.held_out_before), (1, None));
    let err = run(257).unwrap_err();
    assert!(
        err.to_string().contains("exceeds the model's context 256"),
        "{err}"
    );
}

#[test]
fn unusable_data_and_models_are_errors() {
    let trainer = Trainer::new(config().with_max_steps(1)).unwrap();
    let short = Dataset::new(vec![1; 16], vec![]);
    let err = train_personal(&trainer, tiny_model(1), lora(), &short, go).unwrap_err();
    assert_eq!(
        err.to_string(),
        "training data: 16 training tokens make no window of 17 tokens"
    );
    let exact = Dataset::new(vec![1; 17], vec![]);
    assert!(train_personal(&trainer, tiny_model(1), lora(), &exact, go).is_ok());
    let outside = Dataset::new(vec![259; 40], vec![]);
    let err = train_personal(&trainer, tiny_model(1), lora(), &outside, go).unwrap_err();
    assert!(err.to_string().contains("token id 259 is outside"), "{err}");
    let plain = Llama::init_random(&LlamaConfig::tiny(259), 1, &Device::flex()).unwrap();
    let err = train_personal(&trainer, plain, lora(), &pattern(), go).unwrap_err();
    assert!(err.to_string().contains("autodiff device"), "{err}");
    let err = trainer.train(tiny_model(1), 0, &pattern(), go).unwrap_err();
    assert!(err.to_string().contains("no adapter in slot 0"), "{err}");
}

#[test]
fn curve_files_are_written() {
    let dir = tempfile::tempdir().unwrap();
    let trainer = Trainer::new(config().with_max_steps(4))
        .unwrap()
        .with_curve_dir(dir.path())
        .with_title("tiny");
    train_personal(&trainer, tiny_model(1), lora(), &pattern(), go).unwrap();
    let csv = std::fs::read_to_string(dir.path().join("loss.csv")).unwrap();
    assert_eq!(csv.lines().count(), 5);
    let svg = std::fs::read_to_string(dir.path().join("loss.svg")).unwrap();
    assert!(svg.contains("tiny"));
}

#[test]
fn example_order_is_a_seeded_permutation_per_epoch() {
    let mut order = Order::new(9, 10);
    let epoch0: Vec<usize> = (0..10).map(|p| order.get(p)).collect();
    let epoch1: Vec<usize> = (10..20).map(|p| order.get(p)).collect();
    for e in [&epoch0, &epoch1] {
        let mut sorted = e.clone();
        sorted.sort();
        assert_eq!(sorted, (0..10).collect::<Vec<_>>());
    }
    assert_ne!(epoch0, epoch1);
    assert_ne!(epoch0, (0..10).collect::<Vec<_>>());
    // Random access gives the same answer as walking.
    let mut fresh = Order::new(9, 10);
    assert_eq!(fresh.get(13), epoch1[3]);
    assert_eq!(fresh.get(2), epoch0[2]);
}

/// The real SmolLM2 GGUF (`$HEARTH_ASSETS` or `<repo>/assets`); `None` only when it is missing
/// and `HEARTH_SKIP_REAL_MODEL=1`, a test failure with instructions otherwise.
fn real_model_path() -> Option<std::path::PathBuf> {
    let dir = std::env::var_os("HEARTH_ASSETS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../assets"));
    let path = dir.join("SmolLM2-135M-Instruct.Q4_1.gguf");
    if path.is_file() {
        return Some(path);
    }
    if std::env::var("HEARTH_SKIP_REAL_MODEL").as_deref() == Ok("1") {
        eprintln!(
            "skipping: {} is missing and HEARTH_SKIP_REAL_MODEL=1",
            path.display()
        );
        return None;
    }
    panic!(
        "{} is missing: run scripts/fetch-assets.sh (or set HEARTH_SKIP_REAL_MODEL=1)",
        path.display()
    );
}

#[test]
fn real_model_ffa_steps_lower_the_training_loss() {
    let Some(path) = real_model_path() else {
        return;
    };
    use hearth_models::WeightSource;
    let weights = hearth_models::GgufWeights::open(&path).unwrap();
    let tokenizer = hearth_models::Tokenizer::from_gguf(weights.gguf()).unwrap();
    let config = LlamaConfig::from_hparams(weights.hparams())
        .unwrap()
        .with_max_seq_len(64);
    let model = Llama::load_with(&weights, &config, &Device::flex().autodiff()).unwrap();
    let train = "To be, or not to be, that is the question: Whether 'tis nobler in the mind to \
                 suffer the slings and arrows of outrageous fortune, or to take arms against a \
                 sea of troubles, and by opposing end them.";
    let held = "To die, to sleep; no more; and by a sleep to say we end the heart-ache.";
    let data = Dataset::from_split_text(&format!("{train} {train}"), held, &tokenizer).unwrap();
    assert!((2..=4).contains(&data.num_windows(24)));
    let global = {
        let mut m = model.clone();
        let slot = m
            .add_adapter(
                LoraConfig::new(8, 16.0, vec![Target::Q, Target::V])
                    .with_seed(1)
                    .with_ffa(true),
            )
            .unwrap();
        m.adapter_weights(slot).unwrap()
    };
    let c = TrainConfig::new()
        .with_seq_len(24)
        .with_learning_rate(1e-2)
        .with_schedule(Schedule::Constant)
        .with_warmup_steps(0)
        .with_max_steps(8)
        .with_seed(1)
        .with_quiet(true);
    let out = train_community(&Trainer::new(c).unwrap(), model, &global, &data, go).unwrap();
    let r = &out.report;
    eprintln!("{r:?}");
    let mean = |p: &[crate::CurvePoint]| p.iter().map(|p| p.loss).sum::<f64>() / p.len() as f64;
    let windows = data.num_windows(24);
    let (first, last) = (mean(&out.curve[..windows]), mean(&out.curve[8 - windows..]));
    assert!(last < first - 0.1, "train loss per epoch {first} → {last}");
    let (before, after) = (r.held_out_before.unwrap(), r.held_out_after.unwrap());
    assert!(before.is_finite() && after.is_finite() && before < 10.0);
    let delta = community_delta(&out.adapter, &global).unwrap();
    assert_eq!(delta.len(), 30 * 8 * (576 + 192));
}
