//! Canary exposure (Carlini, Liu, Erlingsson, Kos & Song 2019, "The Secret Sharer"): how much a
//! model memorised a secret from one member's data.
//!
//! A [`Canary`] is a sentence with a random secret, `my PIN is 4 8 1 5 9 2`: a fixed prefix, then
//! `digits` decimal digits separated by spaces, drawn uniformly from the space `R` of
//! `|R| = 10^digits` secrets. It is inserted into one member's training text
//! ([`Canary::insert`]); after training, every candidate secret `r ∈ R` is scored by its
//! log-perplexity under the model — the negative log-likelihood, in nats, of the sentence's
//! tokens after the prefix, given the prefix — and the true secret's rank among them (1 = most
//! likely) gives
//!
//! ```text
//! exposure = log2 |R| − log2 rank.
//! ```
//!
//! A model that learned nothing about the secret ranks it uniformly: expected exposure
//! `1/ln 2 ≈ 1.44` bits, and exposure `≥ k` with probability `2^−k`. A model that memorised it
//! ranks it first: exposure `log2 |R|` (19.9 bits for six digits).
//!
//! Scoring all of `R` is only affordable for small spaces. [`exposure`] enumerates `R` when it
//! holds at most [`ExposureConfig::candidates`] other secrets, and otherwise scores a uniform
//! sample of that many and estimates the rank from the fraction of the sample that beats the
//! secret (resolving exposure up to about `log2` of the sample size), and from a normal fit to the
//! candidates' log-perplexities, extrapolated into the tail (Carlini et al. §4.3 fit a skew-normal;
//! a normal is the simpler approximation): see [`Exposure`].

mod score;
#[cfg(test)]
mod tests;

use hearth_models::Prng;

pub use score::{Exposure, ExposureConfig, exposure, log_perplexities};

use crate::error::{Error, Result};

/// Most secret digits accepted (`10^18` fits a `u64`).
pub const MAX_DIGITS: u32 = 18;

/// A canary sentence: a prefix and a secret of `digits` decimal digits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Canary {
    prefix: String,
    digits: u32,
    secret: u64,
}

impl Canary {
    /// A canary with a given secret (`secret < 10^digits`). The prefix must be non-empty and on
    /// one line.
    pub fn new(prefix: &str, digits: u32, secret: u64) -> Result<Self> {
        let bad = |reason: String| Err(Error::Config { reason });
        if prefix.is_empty() || prefix.contains('\n') {
            return bad(format!(
                "canary prefix {prefix:?} must be one non-empty line"
            ));
        }
        if !(1..=MAX_DIGITS).contains(&digits) {
            return bad(format!(
                "canary has {digits} digits, not between 1 and {MAX_DIGITS}"
            ));
        }
        let space = 10u64.pow(digits);
        if secret >= space {
            return bad(format!(
                "canary secret {secret} has more than {digits} digits"
            ));
        }
        Ok(Self {
            prefix: prefix.to_string(),
            digits,
            secret,
        })
    }

    /// A canary whose secret is drawn uniformly from the `10^digits` secrets by `Prng(seed)`.
    pub fn draw(prefix: &str, digits: u32, seed: u64) -> Result<Self> {
        let space = Self::new(prefix, digits, 0)?.space();
        let secret = uniform_below(&mut Prng::new(seed), space);
        Self::new(prefix, digits, secret)
    }

    /// The prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Number of secret digits.
    pub fn digits(&self) -> u32 {
        self.digits
    }

    /// The secret.
    pub fn secret(&self) -> u64 {
        self.secret
    }

    /// `|R| = 10^digits`, the number of possible secrets.
    pub fn space(&self) -> u64 {
        10u64.pow(self.digits)
    }

    /// The sentence with the true secret.
    pub fn sentence(&self) -> String {
        self.sentence_for(self.secret)
    }

    /// The sentence with `candidate` as its secret, zero-padded to `digits` digits, each digit
    /// after a space: `my PIN is 0 0 4 2` for candidate 42 of four digits.
    pub fn sentence_for(&self, candidate: u64) -> String {
        let digits = format!("{candidate:0width$}", width = self.digits as usize);
        let mut s = self.prefix.clone();
        for d in digits.chars() {
            s.push(' ');
            s.push(d);
        }
        s
    }

    /// `text` with the canary sentence inserted `copies` times as lines of their own, spread
    /// evenly: copy `k` goes before line `⌊(k+1)·L/(copies+1)⌋` of the `L` lines (the same line may
    /// receive several copies when `copies ≥ L`).
    pub fn insert(&self, text: &str, copies: usize) -> String {
        let lines: Vec<&str> = text.lines().collect();
        let n = lines.len();
        let sentence = self.sentence();
        let mut out = Vec::with_capacity(n + copies);
        let mut k = 0;
        for i in 0..=n {
            while k < copies && (k + 1) * n / (copies + 1) == i {
                out.push(sentence.as_str());
                k += 1;
            }
            if let Some(line) = lines.get(i) {
                out.push(line);
            }
        }
        out.join("\n")
    }
}

/// `lines` lines like `the door code is 3 1 4 1 5 9` (one of eight subjects, then `digits`
/// uniform digits), drawn by `Prng(seed)`. A base pretrained with such lines knows that digits
/// follow `is` and has no favourite secret, as a real language model has seen many numbers;
/// without them a tiny base trained on prose alone has barely seen a digit.
pub fn code_lines(seed: u64, lines: usize, digits: u32) -> String {
    const WHO: [&str; 8] = [
        "my PIN",
        "the door code",
        "his number",
        "her PIN",
        "our room",
        "the code",
        "my badge",
        "your PIN",
    ];
    let mut rng = Prng::new(seed);
    let mut out = String::new();
    for _ in 0..lines {
        out.push_str(WHO[uniform_below(&mut rng, WHO.len() as u64) as usize]);
        out.push_str(" is");
        for _ in 0..digits {
            out.push(' ');
            out.push(char::from(b'0' + uniform_below(&mut rng, 10) as u8));
        }
        out.push('\n');
    }
    out
}

/// A uniform draw from `0..n` (`n > 0`) by rejection, so no value is favoured.
pub(crate) fn uniform_below(rng: &mut Prng, n: u64) -> u64 {
    let zone = u64::MAX - u64::MAX % n;
    loop {
        let x = rng.next_u64();
        if x < zone {
            return x % n;
        }
    }
}
