//! Node-side federation settings: plain structs with documented defaults and [`Config::validate`].
//!
//! Fields marked *consensus* change the computed adapter versions or the accepted inputs: every
//! node of a community must use the same value (they are candidates for the next manifest
//! version; until then the defaults are the community's values).

use crate::error::{Error, Result};

/// How the weighted mean weighs a member's delta.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Weighting {
    /// Every member counts once (default). Matches user-level DP, where one member is the unit,
    /// and gives a member nothing to gain by inflating its `sample_count`.
    #[default]
    Uniform,
    /// Weight `clamp(sample_count, 1, cap)` (FedAvg's weighting with a cap). Only for plain
    /// (local DP) rounds: under secure aggregation only unweighted sums exist. Note that
    /// `sample_count` is sent in the clear and is not covered by DP.
    SampleCount {
        /// Largest weight one member can get.
        cap: u32,
    },
}

impl Weighting {
    /// The weight of a delta with `sample_count` examples.
    pub fn weight(self, sample_count: u32) -> f64 {
        match self {
            Weighting::Uniform => 1.0,
            Weighting::SampleCount { cap } => f64::from(sample_count.clamp(1, cap.max(1))),
        }
    }
}

/// Federation settings of a node.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Messages may arrive this many seconds before their phase opens by our clock (peers'
    /// clocks run a little ahead). Default 30. Deadlines are never extended.
    pub clock_skew_secs: u64,
    /// *Consensus.* Smallest secure-aggregation group. Default 8.
    pub min_group_size: usize,
    /// *Consensus.* Weighting of [`Rule::Mean`](hearth_protocol::Rule). Default uniform.
    pub weighting: Weighting,
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
            min_group_size: 8,
            weighting: Weighting::Uniform,
            max_members: 65_536,
            max_chain: 1_024,
            max_late: 1_024,
        }
    }
}

impl Config {
    /// Checks that counts are at least 1 and a sample-count cap is positive.
    pub fn validate(&self) -> Result<()> {
        let counts = [
            ("min_group_size", self.min_group_size),
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
        if let Weighting::SampleCount { cap: 0 } = self.weighting {
            return Err(Error::Config {
                field: "weighting.cap",
                reason: "must be at least 1".into(),
            });
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
        let c = Config {
            weighting: Weighting::SampleCount { cap: 0 },
            ..Config::default()
        };
        assert!(c.validate().is_err());
    }

    #[test]
    fn weights() {
        assert_eq!(Weighting::Uniform.weight(500), 1.0);
        let w = Weighting::SampleCount { cap: 100 };
        assert_eq!(w.weight(0), 1.0);
        assert_eq!(w.weight(40), 40.0);
        assert_eq!(w.weight(100), 100.0);
        assert_eq!(w.weight(101), 100.0);
    }
}
