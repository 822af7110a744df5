//! The crate's error type.

/// Everything that can go wrong while ingesting data, fine-tuning, checkpointing, or clipping,
/// noising, quantizing and accounting a delta.
///
/// Messages are lower-case and name the offending values, so they can be logged as they are.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A parameter is outside its valid range (NaN, infinite, zero or negative where it must not be).
    #[error("invalid {name} {value}: {rule}")]
    InvalidParameter {
        /// Which parameter.
        name: &'static str,
        /// The value given, as text (so integers and floats fit).
        value: String,
        /// The rule it breaks.
        rule: &'static str,
    },
    /// The cohort cannot tolerate that many dropouts: at least one share must remain.
    #[error(
        "cohort of {size} members cannot tolerate {tolerated} dropouts (need size > tolerated)"
    )]
    Cohort {
        /// Cohort size `n`.
        size: u32,
        /// Tolerated dropouts/colluders `t`.
        tolerated: u32,
    },
    /// A delta holds a NaN or an infinity.
    #[error("delta value at index {index} is not finite ({value})")]
    NonFinite {
        /// Position of the first offending value.
        index: usize,
        /// The value itself.
        value: f32,
    },
    /// A delta has the wrong number of values.
    #[error("delta has {actual} values, expected {expected}")]
    Length {
        /// Length the mechanism was built for.
        expected: usize,
        /// Length received.
        actual: usize,
    },
    /// Quantization would clip values at the `i32` range, which distributed mode must never do.
    #[error("{count} of {len} values exceed the i32 range at scale {scale}")]
    Saturated {
        /// How many values would saturate.
        count: usize,
        /// Vector length.
        len: usize,
        /// Quantization scale (real units per integer step).
        scale: f32,
    },
    /// No quantization scale keeps the cohort sum inside the modulus `2^32`.
    #[error(
        "no quantization scale keeps the sum of {size} members below 2^31 (needs scale {needed})"
    )]
    Headroom {
        /// Cohort size.
        size: u32,
        /// The smallest scale that would have been needed.
        needed: f64,
    },
    /// The release would take the member's privacy loss past the budget.
    #[error(
        "privacy budget exceeded: release costs rho {cost}, {spent} of the budget rho {budget} is spent (would total {would_total})"
    )]
    BudgetExceeded {
        /// Budget `ρ_max`.
        budget: f64,
        /// ρ already spent.
        spent: f64,
        /// ρ this release would cost.
        cost: f64,
        /// ρ after the release, composed as OpenDP composes it.
        would_total: f64,
    },
    /// A stored ledger record does not check out when it is replayed.
    #[error("ledger record {index} (round {round}) is invalid: {reason}")]
    Record {
        /// Position in the ledger.
        index: usize,
        /// Round it claims.
        round: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// OpenDP refused to build or run a mechanism, a composition or a conversion.
    #[error("opendp: {0}")]
    OpenDp(String),
    /// Reading or writing a file or folder failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or folder.
        path: std::path::PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The training data cannot be used (empty, too short, tokens outside the vocabulary...).
    #[error("training data: {reason}")]
    Data {
        /// What is wrong with it.
        reason: String,
    },
    /// A training configuration breaks a rule.
    #[error("training config: {reason}")]
    Config {
        /// The rule broken, naming the fields.
        reason: String,
    },
    /// A checkpoint file is corrupt, truncated, or from a different run.
    #[error("checkpoint {}: {reason}", path.display())]
    Checkpoint {
        /// The checkpoint file.
        path: std::path::PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Drawing the loss curve failed.
    #[error("plot {}: {reason}", path.display())]
    Plot {
        /// The image being written.
        path: std::path::PathBuf,
        /// The plotting library's error.
        reason: String,
    },
    /// The model refused an operation (adapter shapes, tokens, tokenizer...).
    #[error("model: {0}")]
    Model(#[from] hearth_models::Error),
}

impl Error {
    /// An [`Error::Io`] for `path`.
    pub(crate) fn io(path: impl Into<std::path::PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

impl From<opendp::error::Error> for Error {
    fn from(e: opendp::error::Error) -> Self {
        // OpenDP's error carries a backtrace and is not `Send`-friendly to keep around; its
        // variant and message are what matters.
        Error::OpenDp(format!(
            "{:?}: {}",
            e.variant,
            e.message.unwrap_or_default()
        ))
    }
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Checks that `value` is finite and strictly positive.
pub(crate) fn positive(name: &'static str, value: f64) -> Result<f64> {
    if value.is_finite() && value > 0.0 {
        Ok(value)
    } else {
        Err(Error::InvalidParameter {
            name,
            value: value.to_string(),
            rule: "must be finite and > 0",
        })
    }
}
