//! The crate's error type.

use std::path::PathBuf;

/// Everything that can go wrong while loading a scenario or running it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The scenario file is not valid TOML or does not match the scenario's fields (the message
    /// names the key and the line).
    #[error("scenario {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What the TOML parser said.
        message: String,
    },
    /// A scenario value breaks a rule.
    #[error("scenario key `{key}`: {reason}")]
    Scenario {
        /// The dotted key (`privacy.noise_multiplier`).
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// The data could not be read or split as asked.
    #[error("data: {reason}")]
    Data {
        /// What is wrong.
        reason: String,
    },
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Drawing a figure failed.
    #[error("plot {path}: {reason}")]
    Plot {
        /// The figure.
        path: PathBuf,
        /// What plotters said.
        reason: String,
    },
    /// The model code refused something.
    #[error("model: {0}")]
    Model(#[from] hearth_models::Error),
    /// Training or the privacy code refused something.
    #[error("training: {0}")]
    Training(#[from] hearth_training::Error),
    /// The federation state machine refused something.
    #[error("federation: {0}")]
    Federation(#[from] hearth_federation::Error),
    /// The wire protocol refused something.
    #[error("protocol: {0}")]
    Protocol(#[from] hearth_protocol::Error),
    /// The run cannot go on (an invariant of the harness failed).
    #[error("simulation: {reason}")]
    Run {
        /// What happened.
        reason: String,
    },
}

impl Error {
    /// An [`Error::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// An [`Error::Scenario`] for `key`.
    pub fn scenario(key: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Scenario {
            key: key.into(),
            reason: reason.into(),
        }
    }

    /// An [`Error::Run`].
    pub fn run(reason: impl Into<String>) -> Self {
        Error::Run {
            reason: reason.into(),
        }
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
