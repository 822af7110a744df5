//! The end-to-end test binary. Each module says what it covers.

/// Crate boundaries: protocol and federation never depend on IO crates.
mod tidy;

/// `hearth node`'s local API: models, status and metrics follow the rounds.
mod api;
/// Attacker tooling: chosen schedules, attacker peers, hand-made deltas and envelopes.
mod attack;
/// Building a local community of homes for the end-to-end tests.
mod community;
/// Nodes over real libp2p on loopback: rounds, agreement, catch-up, strangers, leaks.
mod e2e;
/// Partition 3+3 and heal over real libp2p.
mod faults;
/// Load: 20+ nodes and a flooding attacker; rounds complete, scoring pushes it out, peak RSS.
mod load;
/// The tamper matrix: one rejection reason per attack, nothing forwarded, rounds complete.
mod tamper;
