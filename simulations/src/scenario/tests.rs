use super::*;

const MINIMAL: &str = "name = 't'\nseed = 3\nrounds = 4\nmembers = 5\n";

fn with(extra: &str) -> Result<Scenario> {
    Scenario::from_toml_str(&format!("{MINIMAL}{extra}"))
}

fn key_of(e: Error) -> String {
    match e {
        Error::Scenario { key, .. } => key,
        other => panic!("not a scenario error: {other}"),
    }
}

#[test]
fn minimal_scenario_gets_the_documented_defaults() {
    let s = with("").unwrap();
    assert_eq!(s.arms, default_arms());
    assert_eq!(s.data.source, DataSource::Shakespeare);
    assert_eq!(s.model.targets, vec![Target::Q, Target::V]);
    assert_eq!(s.privacy.mode, PrivacyModeSpec::Local);
    assert_eq!(s.schedule.sampling_rate, 1.0);
    assert_eq!(s.full_nodes(), 5);
    assert_eq!(s.central_steps(), s.training.local_steps);
    let big =
        Scenario::from_toml_str("name = 't'\nseed = 3\nrounds = 4\nmembers = 1000\n").unwrap();
    assert_eq!(big.full_nodes(), 32);
    // A scenario survives a round trip through TOML (the run writes it next to its outputs).
    let text = toml::to_string(&s).unwrap();
    assert_eq!(Scenario::from_toml_str(&text).unwrap(), s);
}

#[test]
fn unknown_and_mistyped_keys_are_named() {
    let e = with("[privacy]\nnoise_multipler = 1.0\n").unwrap_err();
    let text = e.to_string();
    assert!(text.contains("noise_multipler"), "{text}");
    let e = with("[training]\nlocal_steps = 'five'\n").unwrap_err();
    assert!(e.to_string().contains("local_steps"), "{e}");
    let e = Scenario::from_toml_str("name = 't'\nseed = 3\nrounds = 4\n").unwrap_err();
    assert!(e.to_string().contains("members"), "{e}");
    let e = with("arms = ['federated', 'sideways']\n").unwrap_err();
    assert!(e.to_string().contains("sideways"), "{e}");
}

#[test]
fn limits_at_and_past() {
    let members = |n: usize| {
        Scenario::from_toml_str(&format!(
            "name = 't'\nseed = 1\nrounds = 1\nmembers = {n}\n"
        ))
    };
    assert!(members(2).is_ok());
    assert_eq!(key_of(members(1).unwrap_err()), "members");
    assert!(members(MAX_MEMBERS).is_ok());
    assert_eq!(key_of(members(MAX_MEMBERS + 1).unwrap_err()), "members");
    assert!(with("[eval]\nmembers = 5\n").is_ok());
    assert_eq!(
        key_of(with("[eval]\nmembers = 6\n").unwrap_err()),
        "eval.members"
    );
    assert!(with("[attack]\nfraction = 0.5\n").is_ok());
    assert_eq!(
        key_of(with("[attack]\nfraction = 0.51\n").unwrap_err()),
        "attack.fraction"
    );
    assert!(with("[aggregation]\ntrim_beta = 0.0\n").is_ok());
    assert_eq!(
        key_of(with("[aggregation]\ntrim_beta = 0.5\n").unwrap_err()),
        "aggregation.trim_beta"
    );
    assert!(with("[training]\nseq_len = 256\n").is_ok());
    assert_eq!(
        key_of(with("[training]\nseq_len = 257\n").unwrap_err()),
        "training.seq_len"
    );
    assert!(with("[network]\nfull_nodes = 5\n").is_ok());
    assert_eq!(
        key_of(with("[network]\nfull_nodes = 6\n").unwrap_err()),
        "network.full_nodes"
    );
    assert_eq!(
        key_of(with("[network]\nfull_nodes = 0\n").unwrap_err()),
        "network.full_nodes"
    );
    // Certificates last 300 days: 43,199 rounds of 600 s fit, 43,200 do not.
    let rounds = |r: u64| {
        Scenario::from_toml_str(&format!(
            "name = 't'\nseed = 1\nrounds = {r}\nmembers = 2\n"
        ))
    };
    assert_eq!(key_of(rounds(0).unwrap_err()), "rounds");
    assert!(rounds(43_198).is_ok());
    assert_eq!(key_of(rounds(43_199).unwrap_err()), "rounds");
}

#[test]
fn cross_field_rules_name_their_key() {
    let cases = [
        (
            "[privacy]\nnoise_multiplier = 1.0\nepsilon = 8.0\n",
            "privacy.epsilon",
        ),
        (
            "[privacy]\nnoise_multiplier = -1.0\n",
            "privacy.noise_multiplier",
        ),
        ("[privacy]\nepsilon = 0.0\n", "privacy.epsilon"),
        ("[privacy]\nclip_norm = 0.0\n", "privacy.clip_norm"),
        ("[privacy]\ndelta = 0.5\n", "privacy.delta"),
        ("[schedule]\nsubmit_secs = 500\n", "schedule.submit_secs"),
        (
            "[schedule]\nsampling_rate = 0.0\n",
            "schedule.sampling_rate",
        ),
        (
            "[schedule]\nsampling_rate = 1.5\n",
            "schedule.sampling_rate",
        ),
        ("[churn]\ndropout = 2.0\n", "churn.dropout"),
        ("[churn]\ncompute_secs = [10, 5]\n", "churn.compute_secs"),
        ("[network]\nlatency_ms = [10, 5]\n", "network.latency_ms"),
        (
            "[network]\nlatency_ms = [10, 300001]\n",
            "network.latency_ms",
        ),
        ("[network]\nloss = -0.1\n", "network.loss"),
        (
            "[[network.partitions]]\nrounds = [2, 1]\ngroups = 2\n",
            "network.partitions[0]",
        ),
        (
            "[[network.partitions]]\nrounds = [1, 2]\ngroups = 9\n",
            "network.partitions[0]",
        ),
        ("[model]\nheads = 3\n", "model.heads"),
        ("[model]\nkv_heads = 3\n", "model.kv_heads"),
        ("[model]\ntargets = []\n", "model.targets"),
        ("[model]\ntargets = ['q_proj', 'q_proj']\n", "model.targets"),
        (
            "[model]\nbase = 'pretrained'\n[model.pretrain]\nplays = []\n",
            "model.pretrain.plays",
        ),
        ("[data]\nsource = 'dirichlet'\nalpha = 0.0\n", "data.alpha"),
        ("arms = []\n", "arms"),
        ("arms = ['local', 'local']\n", "arms"),
        ("[eval]\nevery = 0\n", "eval.every"),
        ("[attack]\nboost = 0.0\n", "attack.boost"),
    ];
    for (extra, key) in cases {
        let e = with(extra).expect_err(extra);
        let text = e.to_string();
        assert_eq!(key_of(e), key, "{extra}: {text}");
        assert!(text.contains(&format!("`{key}`")), "{text}");
    }
    assert!(with("[privacy]\nepsilon = inf\n").is_ok());
}

#[test]
fn load_resolves_paths_against_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.toml");
    std::fs::write(
        &path,
        format!("{MINIMAL}[data]\nplays_dir = 'corpus'\n[churn]\ntrace = 't.csv'\n"),
    )
    .unwrap();
    let s = Scenario::load(&path).unwrap();
    assert_eq!(s.data.plays_dir, Some(dir.path().join("corpus")));
    assert_eq!(s.churn.trace, Some(dir.path().join("t.csv")));
    let swept = crate::sweep::load(&path).unwrap();
    assert_eq!(
        swept[0].scenario.churn.trace,
        Some(dir.path().join("t.csv"))
    );
    let e = Scenario::load(&dir.path().join("missing.toml")).unwrap_err();
    assert!(matches!(e, Error::Io { .. }));
    std::fs::write(&path, "name = \n").unwrap();
    let e = Scenario::load(&path).unwrap_err();
    assert!(
        matches!(e, Error::Parse { .. }) && e.to_string().contains("s.toml"),
        "{e}"
    );
}

#[test]
fn backdoor_phrases_at_and_past_their_limits() {
    let phrase = |key: &str, n: usize| {
        with(&format!(
            "[attack]\nkind = 'backdoor'\n{key} = '{}'\n",
            "x".repeat(n)
        ))
    };
    for key in ["trigger", "target"] {
        assert!(phrase(key, MAX_PHRASE_BYTES).is_ok());
        assert_eq!(
            key_of(phrase(key, MAX_PHRASE_BYTES + 1).unwrap_err()),
            format!("attack.{key}")
        );
        assert_eq!(key_of(phrase(key, 0).unwrap_err()), format!("attack.{key}"));
    }
    assert_eq!(
        key_of(with("[attack]\npoison_every = 0\n").unwrap_err()),
        "attack.poison_every"
    );
    // The probe (context, trigger, target) must fit the model's context.
    let e = with(
        "[model]\ncontext = 64\n[training]\nseq_len = 32\n[attack]\ntarget = 'a long target phrase'\n",
    );
    assert_eq!(key_of(e.unwrap_err()), "attack.target");
}

#[test]
fn libp2p_transport_rules_name_their_key() {
    let p2p = |extra: &str| with(&format!("[network]\ntransport = 'libp2p'\n{extra}"));
    assert!(p2p("").is_ok());
    assert_eq!(
        key_of(p2p("loss = 0.1\n").unwrap_err()),
        "network.transport"
    );
    assert_eq!(
        key_of(p2p("full_nodes = 3\n").unwrap_err()),
        "network.full_nodes"
    );
    assert_eq!(
        key_of(p2p("settle_ms = 0\n").unwrap_err()),
        "network.settle_ms"
    );
    let members = |n: usize| {
        Scenario::from_toml_str(&format!(
            "name = 't'\nseed = 1\nrounds = 1\nmembers = {n}\n[network]\ntransport = 'libp2p'\nfull_nodes = {n}\n"
        ))
    };
    assert!(members(crate::p2p::MAX_NODES).is_ok());
    assert_eq!(
        key_of(members(crate::p2p::MAX_NODES + 1).unwrap_err()),
        "members"
    );
}
