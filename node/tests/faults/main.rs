//! Faults at the process level: `hearth node` killed with SIGKILL at random points and
//! restarted, or left without disk space, next to peers that keep the community going (the
//! `hearth-node` integration test `faults`; needs the binary, hence here rather than in `tests/`).

/// A full disk under a running node: it stops with a clear error (no abort) and starts again.
mod full_disk;

/// A local community of `hearth node` processes: homes, manifest, ports, logs, captures.
mod harness;

/// kill -9 at seeded random points, at least 20 times: the store, ledger and chain survive,
/// and the node catches up and ends on the community's version.
mod kill;
