//! The official `openai` Python package against `hearth serve` on the tiny model
//! (tools/openai_client_check.py). Opt-in: it needs a Python with `openai` and `prometheus-client`
//! installed (docs/API.md), named by `$HEARTH_OPENAI_PYTHON`:
//!
//! ```sh
//! HEARTH_OPENAI_PYTHON=/work/venv-openai/bin/python cargo test -p hearth-node --test member -- --ignored openai
//! ```
//!
//! docs/API.md records the same script against the real model.

use std::process::Command;

use crate::common::{Served, member};

#[test]
#[ignore = "needs $HEARTH_OPENAI_PYTHON: a Python with the openai package (docs/API.md)"]
fn the_official_openai_client_works_against_hearth_serve() {
    let python = std::env::var("HEARTH_OPENAI_PYTHON").expect(
        "set HEARTH_OPENAI_PYTHON to a Python with `openai` and `prometheus-client` (docs/API.md)",
    );
    let m = member(true);
    let s = Served::start(&m, Some("client-token"), &["--max-tokens", "64"]);
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tools/openai_client_check.py"
    );
    let out = Command::new(python)
        .args([
            script,
            "--base-url",
            &format!("{}/v1", s.base),
            "--token",
            "client-token",
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
