//! Architecture rules that must never regress, checked against `cargo metadata`.
//!
//! `protocol` and `federation` are pure state machines: given messages, the time and a seed they
//! return outputs. They must never (even transitively) depend on an async runtime, the network
//! stack, the model framework or the store. `models` must never depend on the network or the store.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use serde_json::Value;

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

/// Normal (non-dev, non-build) dependency graph of the workspace: package name → dependency names.
fn dependency_graph() -> BTreeMap<String, BTreeSet<String>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["metadata", "--format-version", "1"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo metadata");
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: Value = serde_json::from_slice(&out.stdout).expect("metadata is json");
    let names: BTreeMap<&str, &str> = meta["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .map(|p| {
            (
                p["id"].as_str().expect("id"),
                p["name"].as_str().expect("name"),
            )
        })
        .collect();
    let mut graph = BTreeMap::new();
    for node in meta["resolve"]["nodes"].as_array().expect("resolve nodes") {
        let name = names[node["id"].as_str().expect("id")].to_string();
        let deps: BTreeSet<String> = node["deps"]
            .as_array()
            .expect("deps")
            .iter()
            .filter(|d| {
                d["dep_kinds"]
                    .as_array()
                    .expect("dep_kinds")
                    .iter()
                    .any(|k| k["kind"].is_null())
            })
            .map(|d| names[d["pkg"].as_str().expect("pkg")].to_string())
            .collect();
        graph.entry(name).or_insert_with(BTreeSet::new).extend(deps);
    }
    graph
}

fn closure(graph: &BTreeMap<String, BTreeSet<String>>, root: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut stack = vec![root.to_string()];
    while let Some(n) = stack.pop() {
        for d in graph.get(&n).into_iter().flatten() {
            if seen.insert(d.clone()) {
                stack.push(d.clone());
            }
        }
    }
    seen
}

fn forbidden_in(root: &str, extra_allowed: &[&str]) -> Vec<String> {
    let graph = dependency_graph();
    assert!(graph.contains_key(root), "{root} is not in the workspace");
    closure(&graph, root)
        .into_iter()
        .filter(|d| is_forbidden(d) && !extra_allowed.contains(&d.as_str()))
        .collect()
}

#[test]
fn protocol_does_no_io() {
    let bad = forbidden_in("hearth-protocol", &[]);
    assert!(bad.is_empty(), "hearth-protocol must not depend on {bad:?}");
}

#[test]
fn federation_does_no_io() {
    // federation uses training's types, and training runs Burn and OpenDP, so those may appear
    // transitively; federation itself must not use them directly, and must never reach the
    // runtime, the network or the store.
    let graph = dependency_graph();
    let direct: Vec<_> = graph["hearth-federation"]
        .iter()
        .filter(|d| is_forbidden(d))
        .collect();
    assert!(
        direct.is_empty(),
        "hearth-federation must not depend directly on {direct:?}"
    );
    let bad: Vec<_> = forbidden_in("hearth-federation", &[])
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
    let bad: Vec<_> = forbidden_in("hearth-models", &[])
        .into_iter()
        .filter(|d| {
            d.starts_with("libp2p") || d == "rocksdb" || d == "librocksdb-sys" || d == "axum"
        })
        .collect();
    assert!(bad.is_empty(), "hearth-models must not depend on {bad:?}");
}

#[test]
fn the_rule_catches_a_forbidden_crate() {
    // The check itself must be able to fail: the node depends on the models crate (Burn).
    let node = closure(&dependency_graph(), "hearth-node");
    assert!(
        node.iter().any(|d| is_forbidden(d)),
        "tidy rule found nothing in hearth-node"
    );
    assert!(is_forbidden("libp2p-gossipsub") && is_forbidden("tokio") && !is_forbidden("serde"));
}
