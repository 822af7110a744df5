//! The simulation harness: many virtual members driving the federation state machine
//! (issue "simulations"; not built yet).
#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]
