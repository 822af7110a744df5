//! The end-to-end test binary. Each module says what it covers.

/// Crate boundaries: protocol and federation never depend on IO crates.
mod tidy;

/// Building a local community of homes for the end-to-end tests.
mod community;
/// Nodes over real libp2p on loopback: rounds, agreement, catch-up, strangers, leaks.
mod e2e;
