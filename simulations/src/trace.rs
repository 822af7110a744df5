//! Churn traces: which members are down or slow in which rounds, read from a file
//! (`churn.trace`), in addition to the per-round probabilities of [`crate::scenario::ChurnSpec`].
//!
//! # Format
//!
//! UTF-8 text, one entry per line, `round,member,state`:
//!
//! ```text
//! # hearth-sim churn trace (comments and blank lines are ignored)
//! round,member,state
//! 1,0,down
//! 2-4,7,down
//! 3,2,slow
//! 5,7,up
//! ```
//!
//! - `round`: a round number (1 is the first) or an inclusive range `first-last`;
//! - `member`: a member index (0-based, as in `members.csv`) or an inclusive range;
//! - `state`: `down` (drops out that round, like a `churn.dropout` draw: in distributed mode
//!   after the shares phase), `slow` (straggles by `churn.straggler_delay_secs`), or `up`
//!   (neither, whatever the probabilities would draw).
//!
//! A first line `round,member,state` (after any comments) is an optional header. A (round, member) the trace does not
//! name falls back to the probabilities; when lines overlap, the last one wins. Rounds past the
//! scenario's `rounds` and members past `members` are errors (a trace for another scenario must
//! not be applied silently), and so are files over [`MAX_TRACE_BYTES`] and traces naming more
//! than [`MAX_TRACE_ENTRIES`] (round, member) pairs once ranges are expanded.
//!
//! ```
//! use hearth_simulations::trace::{State, Trace};
//!
//! let t = Trace::parse("round,member,state\n1-2,0,down\n2,0,up\n", 3, 5)?;
//! assert_eq!(t.state(1, 0), Some(State::Down));
//! assert_eq!(t.state(2, 0), Some(State::Up));
//! assert_eq!(t.state(1, 1), None);
//! # Ok::<(), hearth_simulations::Error>(())
//! ```

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use crate::error::{Error, Result};

/// Largest trace file read.
pub const MAX_TRACE_BYTES: u64 = 16 << 20;
/// Most (round, member) pairs a trace may name, ranges expanded.
pub const MAX_TRACE_ENTRIES: usize = 1 << 20;

/// A member's state in one round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Neither down nor slow.
    Up,
    /// Drops out.
    Down,
    /// Straggles.
    Slow,
}

/// A parsed churn trace.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Trace {
    states: HashMap<(u64, u32), State>,
}

impl Trace {
    /// Reads and parses the trace at `path` for a run of `members` members and `rounds` rounds.
    pub fn load(path: &Path, members: usize, rounds: u64) -> Result<Self> {
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let size = file.metadata().map_err(|e| Error::io(path, e))?.len();
        if size > MAX_TRACE_BYTES {
            return Err(bad(
                path,
                format!("{size} bytes, more than {MAX_TRACE_BYTES}"),
            ));
        }
        let mut text = String::new();
        file.take(MAX_TRACE_BYTES + 1)
            .read_to_string(&mut text)
            .map_err(|e| Error::io(path, e))?;
        if text.len() as u64 > MAX_TRACE_BYTES {
            return Err(bad(path, format!("more than {MAX_TRACE_BYTES} bytes")));
        }
        Self::parse(&text, members, rounds).map_err(|e| match e {
            Error::Data { reason } => bad(path, reason),
            other => other,
        })
    }

    /// Parses trace text (see the module docs).
    pub fn parse(text: &str, members: usize, rounds: u64) -> Result<Self> {
        let mut states = HashMap::new();
        let mut entries = 0usize;
        let mut first = true;
        for (i, raw) in text.lines().enumerate() {
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            if std::mem::take(&mut first) && line.replace(' ', "") == "round,member,state" {
                continue;
            }
            let at = |reason: String| Error::Data {
                reason: format!("churn trace line {}: {reason}", i + 1),
            };
            let fields: Vec<&str> = line.split(',').map(str::trim).collect();
            let [round, member, state] = fields.as_slice() else {
                return Err(at(format!(
                    "expected `round,member,state`, found {} fields",
                    fields.len()
                )));
            };
            let (r0, r1) = range(round).map_err(|e| at(format!("round {e}")))?;
            if r0 == 0 || r1 > rounds {
                return Err(at(format!(
                    "round {round} is outside the run's rounds 1-{rounds}"
                )));
            }
            let (m0, m1) = range(member).map_err(|e| at(format!("member {e}")))?;
            if m1 >= members as u64 {
                return Err(at(format!(
                    "member {member} is outside the run's members 0-{}",
                    members.saturating_sub(1)
                )));
            }
            let state = match *state {
                "up" => State::Up,
                "down" => State::Down,
                "slow" => State::Slow,
                other => {
                    return Err(at(format!("state {other:?} is not one of up, down, slow")));
                }
            };
            let count = (r1 - r0 + 1).saturating_mul(m1 - m0 + 1);
            entries = entries.saturating_add(usize::try_from(count).unwrap_or(usize::MAX));
            if entries > MAX_TRACE_ENTRIES {
                return Err(at(format!(
                    "the trace names more than {MAX_TRACE_ENTRIES} (round, member) pairs"
                )));
            }
            for r in r0..=r1 {
                for m in m0..=m1 {
                    // m < members ≤ MAX_MEMBERS, so it fits in u32.
                    states.insert((r, m as u32), state);
                }
            }
        }
        Ok(Trace { states })
    }

    /// The state the trace gives `member` in `round`, if it names them.
    pub fn state(&self, round: u64, member: usize) -> Option<State> {
        let m = u32::try_from(member).ok()?;
        self.states.get(&(round, m)).copied()
    }

    /// Number of (round, member) pairs named.
    pub fn len(&self) -> usize {
        self.states.len()
    }

    /// Whether the trace names nothing.
    pub fn is_empty(&self) -> bool {
        self.states.is_empty()
    }
}

/// `n` or `a-b` (inclusive, `a ≤ b`).
fn range(field: &str) -> std::result::Result<(u64, u64), String> {
    let parse = |s: &str| {
        s.trim()
            .parse::<u64>()
            .map_err(|_| format!("{field:?} is not a number or a range `first-last`"))
    };
    let (a, b) = match field.split_once('-') {
        Some((a, b)) => (parse(a)?, parse(b)?),
        None => {
            let n = parse(field)?;
            (n, n)
        }
    };
    if a > b {
        return Err(format!("range {field:?} runs backwards"));
    }
    Ok((a, b))
}

fn bad(path: &Path, reason: String) -> Error {
    Error::Data {
        reason: format!("churn trace {}: {reason}", path.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_ranges_overrides_and_comments() {
        let text =
            "round,member,state\n# outage\n2-3, 1-2 ,down\n\n3,2,up # back early\n1,0,slow\n";
        let t = Trace::parse(text, 3, 3).unwrap();
        assert_eq!(t.len(), 5);
        assert_eq!(t.state(2, 1), Some(State::Down));
        assert_eq!(t.state(3, 1), Some(State::Down));
        assert_eq!(t.state(3, 2), Some(State::Up), "the last line wins");
        assert_eq!(t.state(1, 0), Some(State::Slow));
        assert_eq!(t.state(1, 1), None);
        assert_eq!(t.state(1, usize::MAX), None);
        assert!(Trace::parse("", 3, 3).unwrap().is_empty());
    }

    #[test]
    fn bad_lines_are_named() {
        let err = |text: &str| Trace::parse(text, 4, 5).unwrap_err().to_string();
        assert!(
            err("1,0\n").contains("line 1: expected"),
            "{}",
            err("1,0\n")
        );
        assert!(err("1,0,gone\n").contains("state \"gone\""));
        assert!(err("x,0,down\n").contains("round \"x\""));
        assert!(err("3-2,0,down\n").contains("backwards"));
        assert!(err("ok\n").contains("line 1"));
        // At and past the run's rounds and members.
        assert!(Trace::parse("5,3,down\n", 4, 5).is_ok());
        assert!(err("0,0,down\n").contains("outside the run's rounds"));
        assert!(err("6,0,down\n").contains("outside the run's rounds"));
        assert!(err("1,4,down\n").contains("outside the run's members 0-3"));
        assert!(err("round,member,state\n1,0,down\nround,member,state\n").contains("line 3"));
    }

    #[test]
    fn entry_limit_at_and_past() {
        let members = 1024;
        let rounds = (MAX_TRACE_ENTRIES / members) as u64;
        let at = format!("1-{rounds},0-{},down\n", members - 1);
        assert_eq!(
            Trace::parse(&at, members, rounds + 1).unwrap().len(),
            MAX_TRACE_ENTRIES
        );
        let past = format!("{at}{},0,down\n", rounds + 1);
        let e = Trace::parse(&past, members, rounds + 1).unwrap_err();
        assert!(e.to_string().contains("more than"), "{e}");
        // Huge ranges are refused before anything is expanded.
        let huge = format!("1-100000,0-{},down\n", 99_999);
        assert!(Trace::parse(&huge, 100_000, 100_000).is_err());
    }

    #[test]
    fn file_size_limit_at_and_past() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.csv");
        // Padding in a comment: the content is one entry.
        let line = "1,0,down #";
        let mut text = String::from(line);
        text.push_str(&"x".repeat(MAX_TRACE_BYTES as usize - line.len()));
        std::fs::write(&path, &text).unwrap();
        assert_eq!(Trace::load(&path, 1, 1).unwrap().len(), 1);
        text.push('x');
        std::fs::write(&path, &text).unwrap();
        let e = Trace::load(&path, 1, 1).unwrap_err().to_string();
        assert!(e.contains("more than") && e.contains("t.csv"), "{e}");
        let e = Trace::load(&dir.path().join("missing.csv"), 1, 1).unwrap_err();
        assert!(matches!(e, Error::Io { .. }), "{e}");
    }
}
