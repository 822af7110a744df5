//! A member's private training data: [`ingest`] a folder into [`Document`]s (bad files reported
//! in [`Ingest::skipped`], never fatal), encode and split them into a [`Dataset`] of training
//! windows and a held-out stream, and [`shakespeare::speaker_text`] for the federated benchmark.

mod dataset;
mod ingest;
pub mod shakespeare;

#[cfg(test)]
mod tests;

pub use dataset::{ByteEncoder, Dataset, Encode, HELD_OUT_FRACTION};
pub use ingest::{
    Chat, Content, Document, Ingest, Limits, MAX_DEPTH, MAX_FILE_BYTES, MAX_FILES, MAX_TOTAL_BYTES,
    Skipped, ingest, ingest_with,
};
