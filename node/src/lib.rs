//! The Hearth node: the `hearth` command line and, later, the daemon.
#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]
