//! The Hearth node: the `hearth` command line and the `hearth node` daemon.
//!
//! - [`Store`]: the local RocksDB store, with secrets sealed at rest ([`Unlock`]).
//! - [`network`]: the libp2p swarm behind a [`network::Client`] handle.
//! - [`daemon`]: the peer daemon driving the `federation` state machine over the network.
//! - [`documents`]: the member's private documents, sealed in the store.
//! - [`bridge`]: the community adapter between its wire form and the model's.
//! - [`config`]: the TOML configuration file.
#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod api;
pub mod bridge;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod documents;
mod error;
pub mod home;
pub mod local;
pub mod model;
pub mod network;
pub mod probe;
pub mod report;
pub mod secrets;
pub mod store;

pub use error::{Error, Result};
pub use secrets::Unlock;
pub use store::{Batch, Cf, Store};
