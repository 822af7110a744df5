//! The end-to-end test binary. Each module says what it covers.

/// Crate boundaries: protocol and federation never depend on IO crates.
mod tidy;
