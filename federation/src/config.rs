//! Node-side federation settings: plain structs with documented defaults and [`Config::validate`].
//!
//! Nothing here changes the computed adapter versions: what every node of a community must agree
//! on (rule, weighting, optimizer, smallest secure-aggregation group) is in the signed manifest's
//! [`Aggregation`](hearth_protocol::Aggregation).

use crate::error::{Error, Result};

/// Federation settings of a node.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Messages may arrive this many seconds before their phase opens by our clock (peers'
    /// clocks run a little ahead). Default 30. Deadlines are never extended.
    pub clock_skew_secs: u64,
    /// Most member certificates held. Default 65,536.
    pub max_members: usize,
    /// Version records kept in memory (the node persists all of them). Default 1,024.
    pub max_chain: usize,
    /// Valid deltas that missed our deadline, kept per round to verify peers' versions.
    /// Default 1,024.
    pub max_late: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            clock_skew_secs: 30,
            max_members: 65_536,
            max_chain: 1_024,
            max_late: 1_024,
        }
    }
}

impl Config {
    /// Checks that counts are at least 1.
    pub fn validate(&self) -> Result<()> {
        let counts = [
            ("max_members", self.max_members),
            ("max_chain", self.max_chain),
            ("max_late", self.max_late),
        ];
        for (field, value) in counts {
            if value == 0 {
                return Err(Error::Config {
                    field,
                    reason: "must be at least 1".into(),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_zeros_do_not() {
        Config::default().validate().unwrap();
        let c = Config {
            max_late: 0,
            ..Config::default()
        };
        assert!(matches!(
            c.validate(),
            Err(Error::Config {
                field: "max_late",
                ..
            })
        ));
    }
}
