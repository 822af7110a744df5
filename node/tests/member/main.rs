//! The member's experience, driven through the `hearth` binary as a user would, over a tiny model
//! and a one-member community (the `hearth-node` integration tests: one binary, one module per
//! area).

/// Homes with a community, the tiny model, running the binary, talking HTTP.
mod common;

/// `hearth export` / `hearth import`: PEFT round trips and adapters that do not fit.
mod adapters;
/// `hearth serve`: the OpenAI-compatible API, streaming and not, limits, token, metrics.
mod api;
/// `hearth chat`: one-shot and conversation over stdin.
mod chat;
/// The whole path init → create → invite → join → ingest → train → chat → export → import, plus
/// status, peers, budget, revoke, the config file and the usual mistakes.
mod flow;
/// The official `openai` Python client against `hearth serve` (opt-in: needs the package).
mod openai_client;
