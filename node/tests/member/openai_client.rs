//! The official `openai` Python package against `hearth serve` on the tiny model
//! (tools/openai_client_check.py). Opt-in: it needs a Python with `openai` and `prometheus-client`
//! installed (docs/API.md), named by `$HEARTH_OPENAI_PYTHON`:
//!
//! ```sh
//! HEARTH_OPENAI_PYTHON=/work/venv-openai/bin/python cargo test -p hearth-node --features openai-client-tests --test member openai
//! ```
//!
//! docs/API.md records the same script against the real model.

use std::process::Command;

use crate::common::{Served, member};

#[test]
#[cfg_attr(
    not(feature = "openai-client-tests"),
    ignore = "needs $HEARTH_OPENAI_PYTHON, a Python with the openai package: scripts/test.sh runs it with --features openai-client-tests (docs/API.md)"
)]
fn the_official_openai_client_works_against_hearth_serve() {
    let m = member(true);
    let s = Served::start(&m, Some("client-token"), &["--max-tokens", "64"]);
    run_check(&s.base, "client-token");
}

/// A running `hearth node` (a one-member community, following, no peers) with its API on a free
/// loopback port; killed when dropped.
struct Node {
    child: std::process::Child,
    base: String,
}

impl Node {
    fn start(m: &crate::common::Member, token: &str) -> Self {
        use std::io::{BufRead as _, BufReader};
        let mut child = m
            .hearth(&[
                "node",
                "--api-addr",
                "127.0.0.1:0",
                "--api-token",
                token,
                "--listen",
                "/ip4/127.0.0.1/tcp/0",
                "--no-mdns",
                "--follow",
                "--max-tokens",
                "64",
                "--context",
                "128",
                "--max-runtime",
                "600",
            ])
            .env_remove("RUST_LOG")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let base = loop {
            let line = lines
                .next()
                .expect("hearth node exited before serving its API")
                .unwrap();
            eprintln!("{line}");
            if let Some(url) = line
                .split_whitespace()
                .find(|w| w.starts_with("http://") && w.ends_with("/v1"))
            {
                break url.trim_end_matches("/v1").to_string();
            }
        };
        // Keep reading the log so the node never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Self { child, base }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
#[cfg_attr(
    not(feature = "openai-client-tests"),
    ignore = "needs $HEARTH_OPENAI_PYTHON, a Python with the openai package: scripts/test.sh runs it with --features openai-client-tests (docs/API.md)"
)]
fn the_official_openai_client_works_against_a_running_hearth_node() {
    let m = member(true);
    let node = Node::start(&m, "node-token");
    run_check(&node.base, "node-token");
}

/// Runs tools/openai_client_check.py with `$HEARTH_OPENAI_PYTHON` against the API at `base`.
fn run_check(base: &str, token: &str) {
    let python = std::env::var("HEARTH_OPENAI_PYTHON").expect(
        "set HEARTH_OPENAI_PYTHON to a Python with `openai` and `prometheus-client` (docs/API.md)",
    );
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tools/openai_client_check.py"
    );
    let out = Command::new(python)
        .args([
            script,
            "--base-url",
            &format!("{base}/v1"),
            "--token",
            token,
        ])
        .args(["--model", "hearth-personal", "--max-tokens", "16"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("all checks passed"), "{stdout}");
}
