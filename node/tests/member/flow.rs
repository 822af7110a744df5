//! The member's whole path through the `hearth` binary, as a person would type it: init →
//! community create → invite → join → ingest → train → chat → export → import, plus status,
//! peers, budget and revoke, and the mistakes people make (wrong passphrase, malformed invite,
//! expired certificate, missing model, bad config key): each a clear error, no panic, no trace.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use hearth_node::home::{Home, Invite, unix_now};
use hearth_node::secrets::Unlock;
use hearth_protocol::{Certificate, Role, Signed};

use crate::common::tiny;

/// One person's data directory and how they unlock it.
struct Person {
    home: PathBuf,
    unlock: Secret,
}

enum Secret {
    Passphrase(&'static str),
    KeyFile(PathBuf),
}

struct Out {
    ok: bool,
    stdout: String,
    stderr: String,
}

impl Person {
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = self.bare(args);
        match &self.unlock {
            Secret::Passphrase(p) => {
                cmd.env("HEARTH_PASSPHRASE", p);
            }
            Secret::KeyFile(k) => {
                cmd.arg("--key-file").arg(k);
            }
        }
        cmd
    }

    /// `hearth <args> --home <home>` without the unlock secret.
    fn bare(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_hearth"));
        cmd.args(args)
            .arg("--home")
            .arg(&self.home)
            .env_remove("HEARTH_API_TOKEN")
            .env_remove("HEARTH_PASSPHRASE")
            .env_remove("HEARTH_CONFIG")
            .env_remove("HEARTH_HOME")
            .env_remove("HEARTH_MODEL")
            .env_remove("RUST_BACKTRACE")
            .env("RAYON_NUM_THREADS", "1")
            .stdin(Stdio::null());
        cmd
    }

    fn run(&self, args: &[&str]) -> Out {
        self.run_with(self.command(args))
    }

    fn run_with(&self, mut cmd: Command) -> Out {
        let out = cmd.output().unwrap();
        let out = Out {
            ok: out.status.success(),
            stdout: String::from_utf8(out.stdout).unwrap(),
            stderr: String::from_utf8(out.stderr).unwrap(),
        };
        // Whatever happened, a person never sees a panic or a stack trace.
        for text in [&out.stdout, &out.stderr] {
            assert!(
                !text.contains("panicked") && !text.contains("stack backtrace"),
                "{text}"
            );
        }
        out
    }

    /// Runs and expects success; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.ok,
            "hearth {args:?} failed:\n{}\n{}",
            out.stdout, out.stderr
        );
        out.stdout
    }

    /// Runs and expects failure; returns stderr.
    fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(!out.ok, "hearth {args:?} should fail:\n{}", out.stdout);
        assert!(out.stderr.starts_with("error: "), "{}", out.stderr);
        out.stderr
    }

    fn member_id(&self) -> String {
        let out = self.ok(&["whoami"]);
        out.split_whitespace()
            .find(|w| w.starts_with("12D3KooW"))
            .unwrap_or_else(|| panic!("no member id in {out}"))
            .to_string()
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn a_member_goes_from_init_to_import_and_mistakes_get_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("tiny.gguf");
    hearth_models::tiny::write_gguf(&model, &tiny(), 7).unwrap();
    let admin = Person {
        home: dir.path().join("admin"),
        unlock: Secret::Passphrase("correct horse battery staple"),
    };
    let key = dir.path().join("bob.key");
    std::fs::write(&key, [3u8; 32]).unwrap();
    let bob = Person {
        home: dir.path().join("bob"),
        unlock: Secret::KeyFile(key),
    };

    // init, and the wrong passphrase.
    let out = admin.ok(&["init"]);
    assert!(out.contains("member id: 12D3KooW"), "{out}");
    let wrong = Person {
        home: admin.home.clone(),
        unlock: Secret::Passphrase("battery staple horse correct"),
    };
    let e = wrong.fails(&["whoami"]);
    assert!(e.contains("passphrase"), "{e}");
    bob.ok(&["init"]);
    let bob_id = bob.member_id();

    // community create: a missing model first, then the real one.
    let missing = dir.path().join("no-such-model.gguf");
    let create = |model: &Path| {
        admin.run(&[
            "community",
            "create",
            "--name",
            "flow",
            "--model",
            s(model),
            "--privacy",
            "local",
            "--rule",
            "mean",
            "--rank",
            "2",
            "--round-secs",
            "60",
        ])
    };
    let out = create(&missing);
    assert!(
        !out.ok && out.stderr.contains("no-such-model.gguf"),
        "{}",
        out.stderr
    );
    let out = create(&model);
    assert!(out.ok, "{}", out.stderr);

    // invite → join; a malformed and a truncated invite; an expired certificate.
    let invite = dir.path().join("bob.invite");
    admin.ok(&["invite", &bob_id, "--out", s(&invite)]);
    let garbage = dir.path().join("garbage.invite");
    std::fs::write(&garbage, b"this is not an invite").unwrap();
    let e = bob.fails(&["join", s(&garbage)]);
    assert!(e.contains("invite"), "{e}");
    let bytes = std::fs::read(&invite).unwrap();
    let truncated = dir.path().join("truncated.invite");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let e = bob.fails(&["join", s(&truncated)]);
    assert!(e.contains("invite"), "{e}");
    let expired = dir.path().join("expired.invite");
    {
        let home = Home::open(
            &admin.home,
            &Unlock::Passphrase("correct horse battery staple".to_string().into()),
        )
        .unwrap();
        let manifest = home.manifest().unwrap().unwrap();
        let now = unix_now();
        let certificate = Signed::sign(
            Certificate {
                member: bob_id.parse().unwrap(),
                community: manifest.verify().unwrap(),
                issued: now - 10 * 86_400,
                expires: now - 86_400,
                roles: vec![Role::Contributor],
            },
            &home.key,
        )
        .unwrap();
        Invite {
            version: Invite::VERSION,
            manifest,
            certificate,
            bootstrap: vec![],
        }
        .write(&expired)
        .unwrap();
    }
    let e = bob.fails(&["join", s(&expired)]);
    assert!(e.contains("expired"), "{e}");
    let out = bob.ok(&["join", s(&invite)]);
    assert!(out.contains("flow"), "{out}");

    // ingest → train → chat.
    let notes = dir.path().join("notes");
    std::fs::create_dir(&notes).unwrap();
    let text = "The hearth keeps the house warm. ".repeat(40);
    std::fs::write(notes.join("hearth.txt"), &text).unwrap();
    let out = bob.ok(&["ingest", s(&notes)]);
    assert!(out.contains("stored 1 documents"), "{out}");
    let out = bob.ok(&[
        "train",
        "--model",
        s(&model),
        "--secs",
        "1",
        "--steps",
        "3",
        "--rank",
        "2",
        "--seq-len",
        "16",
        "--threads",
        "1",
    ]);
    assert!(out.to_lowercase().contains("personal"), "{out}");
    // (The tiny random model may well answer with an end token at once: success is the check.)
    bob.ok(&[
        "chat",
        "--model",
        s(&model),
        "--prompt",
        "The hearth",
        "--max-tokens",
        "4",
        "--seed",
        "1",
        "--context",
        "64",
    ]);
    let e = bob.fails(&["chat", "--model", s(&missing), "--prompt", "hi"]);
    assert!(e.contains("no-such-model.gguf"), "{e}");

    // status, peers, budget of a stopped node.
    let out = bob.ok(&["status", "--api-addr", "127.0.0.1:9"]);
    assert!(out.contains("flow") && out.contains("stopped"), "{out}");
    assert!(out.contains("adapter trained"), "{out}");
    let out = bob.ok(&["peers", "--api-addr", "127.0.0.1:9"]);
    assert!(out.contains(&bob_id), "{out}");
    let out = bob.ok(&["budget", "--api-addr", "127.0.0.1:9"]);
    assert!(out.contains("no release yet"), "{out}");
    let json = bob.ok(&["budget", "--api-addr", "127.0.0.1:9", "--json"]);
    let budget: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(budget["spent_rho"], 0.0, "{json}");
    assert_eq!(budget["mode"], "local", "{json}");

    // export → import into another home → export again: the same adapter, byte for byte.
    let exported = dir.path().join("bob-personal");
    bob.ok(&[
        "export",
        "--adapter",
        "personal",
        "--out",
        s(&exported),
        "--model",
        s(&model),
    ]);
    let carol_key = dir.path().join("carol.key");
    std::fs::write(&carol_key, [4u8; 32]).unwrap();
    let carol = Person {
        home: dir.path().join("carol"),
        unlock: Secret::KeyFile(carol_key),
    };
    carol.ok(&["init"]);
    let carol_invite = dir.path().join("carol.invite");
    admin.ok(&["invite", &carol.member_id(), "--out", s(&carol_invite)]);
    carol.ok(&["join", s(&carol_invite)]);
    carol.ok(&["import", s(&exported), "--model", s(&model)]);
    let again = dir.path().join("carol-personal");
    carol.ok(&[
        "export",
        "--adapter",
        "personal",
        "--out",
        s(&again),
        "--model",
        s(&model),
    ]);
    for file in ["adapter_config.json", "adapter_model.safetensors"] {
        let (a, b) = (
            std::fs::read(exported.join(file)).unwrap(),
            std::fs::read(again.join(file)).unwrap(),
        );
        assert!(a == b, "{file} differs after export → import → export");
    }
    let loaded = hearth_models::peft::load(&again, &tiny()).unwrap();
    assert!(!loaded.tensors.is_empty());

    // revoke: admin only, once.
    let e = bob.fails(&["revoke", &carol.member_id()]);
    assert!(e.contains("only the community's admin"), "{e}");
    let out = admin.ok(&["revoke", &bob_id]);
    assert!(out.contains("revocation list #1"), "{out}");
    let e = admin.fails(&["revoke", &bob_id]);
    assert!(e.contains("already revoked"), "{e}");
    let e = admin.fails(&["revoke", "not-a-member"]);
    assert!(e.contains("not a member id"), "{e}");

    // A config file with a misspelt key, and one with a bad value: named, nothing started.
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[node]\ntrain_sec = 30\n").unwrap();
    let e = bob.fails(&["node", "--config", s(&bad), "--model", s(&model)]);
    assert!(e.contains("train_sec") && e.contains("train_secs"), "{e}");
    std::fs::write(&bad, "[api]\nmax_concurrent = 0\n").unwrap();
    let e = bob.fails(&["node", "--config", s(&bad)]);
    assert!(e.contains("api.max_concurrent"), "{e}");
    let e = bob.fails(&["serve", "--config", s(&bad)]);
    assert!(e.contains("api.max_concurrent"), "{e}");
    // The same file in the data directory is read without --config.
    std::fs::copy(&bad, bob.home.join("config.toml")).unwrap();
    let out = bob.run_with(bob.bare(&["config"]));
    assert!(
        !out.ok && out.stderr.contains("api.max_concurrent"),
        "{}",
        out.stderr
    );
    std::fs::write(bob.home.join("config.toml"), "[node]\nthreads = 1\n").unwrap();
    let out = bob.run_with(bob.bare(&["config"]));
    assert!(out.ok, "{}", out.stderr);
    assert!(
        out.stdout.contains("threads = 1") && out.stdout.contains("(valid)"),
        "{}",
        out.stdout
    );
}

#[test]
fn community_create_takes_a_probe_file_within_its_limit() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("tiny.gguf");
    hearth_models::tiny::write_gguf(&model, &tiny(), 7).unwrap();
    let admin = Person {
        home: dir.path().join("admin"),
        unlock: Secret::Passphrase("probe admin"),
    };
    admin.ok(&["init"]);
    let create = |probe: &Path, max_increase: &str| {
        admin.run(&[
            "community",
            "create",
            "--name",
            "probed",
            "--model",
            s(&model),
            "--privacy",
            "local",
            "--rank",
            "2",
            "--probe-file",
            s(probe),
            "--probe-max-increase",
            max_increase,
        ])
    };
    let limit = hearth_protocol::MAX_PROBE_BYTES as usize;
    let past = dir.path().join("past.txt");
    std::fs::write(&past, "a".repeat(limit + 1)).unwrap();
    let out = create(&past, "0.05");
    assert!(
        !out.ok && out.stderr.contains("past.txt") && out.stderr.contains("16384"),
        "{}",
        out.stderr
    );
    let binary = dir.path().join("binary.txt");
    std::fs::write(&binary, [0xff, 0xfe, 0x00, 0x41]).unwrap();
    let out = create(&binary, "0.05");
    assert!(
        !out.ok && out.stderr.contains("not UTF-8"),
        "{}",
        out.stderr
    );
    let blank = dir.path().join("blank.txt");
    std::fs::write(&blank, "  \n\t\n").unwrap();
    let out = create(&blank, "0.05");
    assert!(
        !out.ok && out.stderr.contains("aggregation.probe.text"),
        "{}",
        out.stderr
    );
    let missing = dir.path().join("missing.txt");
    let out = create(&missing, "0.05");
    assert!(
        !out.ok && out.stderr.contains("missing.txt"),
        "{}",
        out.stderr
    );
    let at = dir.path().join("at.txt");
    let text = "To be, or not to be, that is the question. ".repeat(limit / 43 + 1);
    std::fs::write(&at, &text[..limit]).unwrap();
    let out = create(&at, "0");
    assert!(
        !out.ok && out.stderr.contains("aggregation.probe.max_increase"),
        "{}",
        out.stderr
    );
    let out = create(&at, "0.05");
    assert!(out.ok, "{}", out.stderr);
    let home = Home::open(
        &admin.home,
        &Unlock::Passphrase("probe admin".to_string().into()),
    )
    .unwrap();
    let manifest = home.manifest().unwrap().unwrap();
    let probe = manifest.body.aggregation.probe.as_ref().unwrap();
    assert_eq!(probe.text.as_bytes(), &text.as_bytes()[..limit]);
    assert_eq!(probe.max_increase, 0.05);
}
