//! Architecture rules that must never regress, checked against `cargo metadata`.
//!
//! `protocol` and `federation` are pure state machines: given messages, the time and a seed they
//! return outputs. They must never (even transitively) depend on an async runtime, the network
//! stack, the model framework or the store. `models` must never depend on the network or the store.

use std::collections::BTreeSet;
use std::process::Command;

/// Crates (or crate-name prefixes ending in `-`/`_`) that do IO or pull in heavy frameworks.
const IO_CRATES: &[&str] = &[
    "tokio",
    "async-std",
    "smol",
    "mio",
    "socket2",
    "libp2p",
    "libp2p-",
    "burn",
    "burn-",
    "rocksdb",
    "librocksdb-sys",
    "hyper",
    "axum",
    "reqwest",
    "opendp",
    "getrandom",
    "rand",
];

fn is_forbidden(name: &str) -> bool {
    IO_CRATES.iter().any(|f| {
        if f.ends_with('-') {
            name.starts_with(f)
        } else {
            name == *f
        }
    })
}

/// The normal (non-dev, non-build) dependencies of `package`, as `cargo tree -p` resolves them
/// when building that package alone (so features other workspace members enable do not count);
/// `depth` 1 gives the direct dependencies.
fn dependencies(package: &str, depth: Option<u32>) -> BTreeSet<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut args = vec![
        "tree".to_string(),
        "-p".into(),
        package.into(),
        "-e".into(),
        "normal".into(),
        "--prefix".into(),
        "none".into(),
        "--format".into(),
        "{p}".into(),
    ];
    if let Some(d) = depth {
        args.extend(["--depth".into(), d.to_string()]);
    }
    let out = Command::new(cargo)
        .args(&args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo tree");
    assert!(
        out.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != package)
        .map(str::to_string)
        .collect()
}

fn forbidden_in(root: &str) -> Vec<String> {
    dependencies(root, None)
        .into_iter()
        .filter(|d| is_forbidden(d))
        .collect()
}

#[test]
fn protocol_does_no_io() {
    let bad = forbidden_in("hearth-protocol");
    assert!(bad.is_empty(), "hearth-protocol must not depend on {bad:?}");
}

#[test]
fn federation_does_no_io() {
    // federation uses training's types, and training runs Burn and OpenDP, so those may appear
    // transitively; federation itself must not use them directly, and must never reach the
    // runtime, the network or the store.
    let direct: Vec<_> = dependencies("hearth-federation", Some(1))
        .into_iter()
        .filter(|d| is_forbidden(d))
        .collect();
    assert!(
        direct.is_empty(),
        "hearth-federation must not depend directly on {direct:?}"
    );
    let bad: Vec<_> = forbidden_in("hearth-federation")
        .into_iter()
        .filter(|d| {
            !d.starts_with("burn") && !["opendp", "getrandom", "rand"].contains(&d.as_str())
        })
        .collect();
    assert!(
        bad.is_empty(),
        "hearth-federation must not depend on {bad:?}"
    );
}

#[test]
fn models_has_no_network_or_store() {
    let bad: Vec<_> = forbidden_in("hearth-models")
        .into_iter()
        .filter(|d| {
            d.starts_with("libp2p") || d == "rocksdb" || d == "librocksdb-sys" || d == "axum"
        })
        .collect();
    assert!(bad.is_empty(), "hearth-models must not depend on {bad:?}");
}

#[test]
fn the_rule_catches_a_forbidden_crate() {
    // The check itself must be able to fail: the node depends on libp2p, tokio and rocksdb.
    let node = forbidden_in("hearth-node");
    for expected in ["libp2p", "tokio", "rocksdb"] {
        assert!(
            node.iter().any(|d| d == expected),
            "{expected} not found in {node:?}"
        );
    }
    assert!(is_forbidden("libp2p-gossipsub") && !is_forbidden("serde"));
}
