//! The federated round state machine: verification, aggregation and secure aggregation, with no IO
//! (issue "federation"; not built yet).
#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]
