use super::*;
use crate::data::{Corpus, Play};

fn scenario(extra: &str) -> Scenario {
    Scenario::from_toml_str(&format!(
        "name = 't'\nseed = 2\nrounds = 1\nmembers = 2\n[training]\nlocal_steps = 3\nseq_len = 16\nbatch_size = 2\n{extra}"
    ))
    .unwrap()
}

fn text(n: usize) -> Vec<u32> {
    "to be or not to be, that is the question. "
        .bytes()
        .cycle()
        .take(n)
        .map(u32::from)
        .collect()
}

#[test]
fn wire_shape_and_layout_round_trip() {
    let s = scenario("[model]\ntargets = ['v_proj', 'q_proj', 'down_proj']\nlora_rank = 2\n");
    let base = Base::random(&s).unwrap();
    let shape = base.shape();
    let modules: Vec<&str> = shape.targets.iter().map(|t| t.module.as_str()).collect();
    assert_eq!(
        modules,
        ["attn_q", "attn_v", "ffn_down"],
        "Target::ALL order"
    );
    assert_eq!(
        (shape.targets[1].in_dim, shape.targets[1].out_dim),
        (64, 32)
    );
    assert_eq!(
        (shape.targets[2].in_dim, shape.targets[2].out_dim),
        (128, 64)
    );
    assert_eq!(base.elements() as u64, shape.elements());
    let model: Vec<f32> = (0..base.elements()).map(|i| i as f32).collect();
    let wire = base.to_wire(&model);
    assert_ne!(wire, model);
    assert_eq!(base.from_wire(&wire), model);
    // The first tensor is layer 0's q B: model [r = 2, out = 64], wire [64, 2].
    assert_eq!(wire[0..4], [0.0, 64.0, 1.0, 65.0]);
}

#[test]
fn batched_evaluation_matches_the_models_evaluate() {
    let s = scenario("");
    let base = Base::random(&s).unwrap();
    let mut ev = base.evaluator().unwrap();
    ev.set(&vec![0.01; base.elements()]).unwrap();
    let a = text(70);
    let b = text(33);
    let c = text(1);
    let out = ev.evaluate(&[&a, &b, &c], 17).unwrap();
    for (stream, got) in [(&a, out[0]), (&b, out[1])] {
        let want = hearth_models::evaluate(&ev.model, stream, 17, |_| {}).unwrap();
        assert_eq!(got.tokens, want.tokens);
        assert_eq!(got.correct, want.correct);
        assert!(
            (got.nll_sum - want.nll_sum).abs() < 1e-3 * want.nll_sum,
            "{got:?} {want:?}"
        );
    }
    assert_eq!(out[2].tokens, 0);
    assert!(
        ev.evaluate(&[&[999]], 17).is_err(),
        "token past the vocabulary"
    );
}

#[test]
fn local_training_moves_b_and_is_deterministic() {
    let s = scenario("");
    let base = Base::random(&s).unwrap();
    let zero = vec![0.0; base.elements()];
    let data = text(400);
    let a = base.train(&s, &zero, &data, 3, 11).unwrap();
    assert_eq!(a, base.train(&s, &zero, &data, 3, 11).unwrap());
    assert!(a.iter().any(|x| *x != 0.0));
    assert_ne!(a, base.train(&s, &zero, &data, 3, 12).unwrap());
    assert!(
        base.train(&s, &zero, &data[..10], 3, 11).is_err(),
        "no window"
    );
}

#[test]
fn pretraining_lowers_the_loss_and_is_cached() {
    let dir = tempfile::tempdir().unwrap();
    let s = scenario(&format!(
        "[model]\nbase = 'pretrained'\n[model.pretrain]\nplays = ['p']\nsteps = 30\nbatch_size = 4\nseq_len = 32\nlearning_rate = 0.01\ncache_dir = '{}'\n",
        dir.path().display()
    ));
    let speech = String::from_utf8(text(3000).iter().map(|&t| t as u8).collect()).unwrap();
    let corpus = Corpus {
        plays: vec![Play {
            name: "p".into(),
            speeches: vec![("A".into(), speech)],
        }],
    };
    let out = dir.path().join("run");
    let trained = crate::pretrain::base(&s, &corpus, &out).unwrap();
    let files: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(files.len(), 1, "one cached base");
    let again = crate::pretrain::base(&s, &corpus, &out).unwrap();
    assert_eq!(trained.id(), again.id(), "loaded from the cache");
    let random = Base::random(&s).unwrap();
    let probe = text(200);
    let loss = |b: &Base| {
        let mut ev = b.evaluator().unwrap();
        ev.set(&vec![0.0; b.elements()]).unwrap();
        ev.evaluate(&[&probe], 33).unwrap()[0].mean_nll()
    };
    let (before, after) = (loss(&random), loss(&trained));
    assert!(after < before - 1.0, "pre-training: {before} -> {after}");
    assert_eq!(loss(&again), after);
}
