//! The Hearth node: the `hearth` command line and, later, the daemon.
//!
//! - [`Store`]: the local RocksDB store, with secrets sealed at rest ([`Unlock`]).
//! - [`network`]: the libp2p swarm behind a [`network::Client`] handle.
#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod cli;
mod error;
pub mod home;
pub mod model;
pub mod network;
pub mod secrets;
pub mod store;

pub use error::{Error, Result};
pub use secrets::Unlock;
pub use store::{Batch, Cf, Store};
