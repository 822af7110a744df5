//! Unit tests of the API over a tiny model.
