//! `hearth chat`: a one-shot answer, a conversation over stdin, picking the stack.

use std::io::Write as _;
use std::ops::ControlFlow;
use std::process::Stdio;

use hearth_models::{GenerateConfig, Role};
use hearth_node::api::{Job, Models};

use crate::common::{Member, member};

/// The greedy reply of `stack` to `history`, computed through the library.
fn expected(m: &Member, stack: &str, history: &[(Role, String)], max_tokens: usize) -> String {
    let (models, _) = Models::load_member(&m.open(), Some(&m.model), 256).unwrap();
    let entry = models.get(stack).unwrap();
    let tokenizer = models.tokenizer();
    let job = Job {
        model: entry.model.clone(),
        tokenizer: tokenizer.clone(),
        prompt: tokenizer.encode_chat(history).unwrap(),
        config: GenerateConfig::greedy(max_tokens).with_stop_tokens(tokenizer.stop_ids()),
        stop: Vec::new(),
    };
    let mut text = String::new();
    job.run(|p| {
        text.push_str(p);
        ControlFlow::Continue(())
    })
    .unwrap();
    text
}

#[test]
fn one_shot_prompt_prints_the_answer() {
    let m = member(true);
    let want = expected(&m, "hearth-personal", &[(Role::User, "hello".into())], 8);
    let (ok, out, err) = m.run(&[
        "chat",
        "--prompt",
        "hello",
        "--max-tokens",
        "8",
        "--temperature",
        "0",
    ]);
    assert!(ok, "{err}");
    assert_eq!(out, format!("{want}\n"), "stderr: {err}");

    let want = expected(&m, "hearth-community", &[(Role::User, "hello".into())], 8);
    let (ok, out, err) = m.run(&[
        "chat",
        "--prompt",
        "hello",
        "--max-tokens",
        "8",
        "--temperature",
        "0",
        "--stack",
        "community",
    ]);
    assert!(ok, "{err}");
    assert_eq!(out, format!("{want}\n"));
}

#[test]
fn a_conversation_keeps_its_history_until_reset_or_exit() {
    let m = member(false);
    let first = expected(&m, "hearth-community", &[(Role::User, "hello".into())], 6);
    let second = expected(
        &m,
        "hearth-community",
        &[
            (Role::User, "hello".into()),
            (Role::Assistant, first.clone()),
            (Role::User, "and then".into()),
        ],
        6,
    );
    let mut child = m
        .hearth(&[
            "chat",
            "--max-tokens",
            "6",
            "--temperature",
            "0",
            "--context",
            "256",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"hello\nand then\n/reset\nhello\n/exit\nnever answered\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    );
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("chatting with hearth-community"),
        "{stderr}"
    );
    assert!(stderr.contains("conversation cleared"), "{stderr}");
    // After /reset, "hello" gets the first answer again; /exit ends before the last line.
    assert_eq!(
        stdout,
        format!("{first}\n{second}\n{first}\n"),
        "stderr: {stderr}"
    );
}

#[test]
fn asking_for_a_missing_personal_adapter_says_how_to_get_one() {
    let m = member(false);
    let (ok, _, err) = m.run(&["chat", "--prompt", "hi", "--stack", "personal"]);
    assert!(!ok);
    assert!(
        err.contains("hearth train") && err.contains("hearth import"),
        "{err}"
    );
    let (ok, _, err) = m.run(&["chat", "--prompt", "hi", "--top-p", "0"]);
    assert!(!ok && err.contains("--top-p"), "{err}");
}
