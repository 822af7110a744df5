//! [`ingest`]: reads a member's folder of private files into [`Document`]s, skipping (and
//! reporting) every file or line that cannot be used.
//!
//! Accepted: `.txt` and `.md` as plain text, `.jsonl` as chat records, one JSON object per line:
//! `{"messages": [{"role": "system"|"user"|"assistant", "content": "..."}]}` (other keys are
//! ignored, blank lines too). Folders are walked recursively in byte order of the file names, so
//! the result is the same on every run. Hidden entries (names starting with `.`, such as `.git`)
//! are passed over silently; symbolic links are not followed (reported), nor anything else that is
//! not a regular file or folder.
//!
//! Reported in [`Ingest::skipped`] and left out, never an error: files over
//! [`Limits::max_file_bytes`], files past [`Limits::max_total_bytes`] or [`Limits::max_files`],
//! other extensions, binary files (a NUL byte), invalid UTF-8, and — one line at a time, the rest
//! of the file kept — malformed JSON lines. Only an unreadable root folder is an error.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use hearth_models::Role;
use serde::Deserialize;

use crate::error::{Error, Result};

/// Largest file read, in bytes (16 MiB).
pub const MAX_FILE_BYTES: u64 = 16 << 20;
/// Largest total of all files read, in bytes (256 MiB).
pub const MAX_TOTAL_BYTES: u64 = 256 << 20;
/// Most files read.
pub const MAX_FILES: usize = 100_000;
/// Deepest folder nesting walked below the root.
pub const MAX_DEPTH: usize = 32;

/// Size limits of [`ingest_with`]; [`Default`] gives the crate's constants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest file read, in bytes; larger files are skipped.
    pub max_file_bytes: u64,
    /// Largest total of all files read; files that would go past it are skipped.
    pub max_total_bytes: u64,
    /// Most files read; later files are skipped.
    pub max_files: usize,
    /// Deepest folder nesting walked; deeper folders are skipped.
    pub max_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_file_bytes: MAX_FILE_BYTES,
            max_total_bytes: MAX_TOTAL_BYTES,
            max_files: MAX_FILES,
            max_depth: MAX_DEPTH,
        }
    }
}

/// A chat: messages in order.
pub type Chat = Vec<(Role, String)>;

/// What a document holds.
#[derive(Debug, Clone, PartialEq)]
pub enum Content {
    /// Plain text (`.txt`, `.md`).
    Text(String),
    /// Chat records (`.jsonl`), in file order; encoded with the tokenizer's chat template.
    Chats(Vec<Chat>),
}

/// One usable file.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    /// Path relative to the ingested folder.
    pub path: PathBuf,
    /// Its content.
    pub content: Content,
}

/// A file, or one line of it, that was left out, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// Path relative to the ingested folder.
    pub path: PathBuf,
    /// The 1-based line, for a malformed chat record.
    pub line: Option<usize>,
    /// Why it was left out.
    pub reason: String,
}

impl std::fmt::Display for Skipped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}: {}", self.path.display(), self.reason),
            None => write!(f, "{}: {}", self.path.display(), self.reason),
        }
    }
}

/// The result of [`ingest`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Ingest {
    /// Usable documents, in walk order.
    pub documents: Vec<Document>,
    /// What was left out, in walk order.
    pub skipped: Vec<Skipped>,
    /// Bytes read from the documents' files.
    pub bytes: u64,
}

/// Ingests `root` with the default [`Limits`].
pub fn ingest(root: impl AsRef<Path>) -> Result<Ingest> {
    ingest_with(root, Limits::default())
}

/// Ingests `root` with explicit limits.
pub fn ingest_with(root: impl AsRef<Path>, limits: Limits) -> Result<Ingest> {
    let root = root.as_ref();
    let meta = fs::metadata(root).map_err(|e| Error::io(root, e))?;
    if !meta.is_dir() {
        return Err(Error::Data {
            reason: format!("{} is not a folder", root.display()),
        });
    }
    let mut out = Ingest::default();
    let mut files = 0usize;
    walk(root, root, 0, &limits, &mut files, &mut out)?;
    Ok(out)
}

fn walk(
    root: &Path,
    dir: &Path,
    depth: usize,
    limits: &Limits,
    files: &mut usize,
    out: &mut Ingest,
) -> Result<()> {
    let rel = |p: &Path| p.strip_prefix(root).unwrap_or(p).to_path_buf();
    let skip = |out: &mut Ingest, path: &Path, reason: String| {
        out.skipped.push(Skipped {
            path: rel(path),
            line: None,
            reason,
        });
    };
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if depth == 0 => return Err(Error::io(dir, e)),
        Err(e) => {
            skip(out, dir, format!("cannot read folder: {e}"));
            return Ok(());
        }
    };
    let mut entries: Vec<_> = entries.filter_map(|e| e.ok()).collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        if entry.file_name().as_encoded_bytes().starts_with(b".") {
            continue;
        }
        let Ok(kind) = entry.file_type() else {
            skip(out, &path, "cannot read file type".into());
            continue;
        };
        if kind.is_symlink() {
            skip(out, &path, "symbolic link not followed".into());
        } else if kind.is_dir() {
            if depth + 1 > limits.max_depth {
                skip(
                    out,
                    &path,
                    format!("folder deeper than {} levels", limits.max_depth),
                );
            } else {
                walk(root, &path, depth + 1, limits, files, out)?;
            }
        } else if kind.is_file() {
            read_file(&path, rel(&path), limits, files, out);
        } else {
            skip(out, &path, "not a regular file".into());
        }
    }
    Ok(())
}

/// Which reader a file goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    Chats,
}

fn kind_of(path: &Path) -> Option<Kind> {
    let ext = path.extension()?.to_str()?.to_ascii_lowercase();
    match ext.as_str() {
        "txt" | "md" => Some(Kind::Text),
        "jsonl" => Some(Kind::Chats),
        _ => None,
    }
}

fn read_file(path: &Path, rel: PathBuf, limits: &Limits, files: &mut usize, out: &mut Ingest) {
    let mut skip = |line: Option<usize>, reason: String| {
        out.skipped.push(Skipped {
            path: rel.clone(),
            line,
            reason,
        });
    };
    let Some(kind) = kind_of(path) else {
        skip(
            None,
            "unsupported file type (expected .txt, .md or .jsonl)".into(),
        );
        return;
    };
    if *files >= limits.max_files {
        skip(None, format!("more than {} files", limits.max_files));
        return;
    }
    let size = match fs::metadata(path) {
        Ok(m) => m.len(),
        Err(e) => return skip(None, format!("cannot read: {e}")),
    };
    if size > limits.max_file_bytes {
        return skip(
            None,
            format!(
                "file of {size} bytes exceeds the limit of {} bytes",
                limits.max_file_bytes
            ),
        );
    }
    // The file may grow between the size check and the read: read at most one byte past the
    // limit and check again.
    let mut bytes = Vec::new();
    let read = fs::File::open(path).and_then(|f| {
        f.take(limits.max_file_bytes + 1)
            .read_to_end(&mut bytes)
            .map(|n| n as u64)
    });
    let size = match read {
        Ok(n) => n,
        Err(e) => return skip(None, format!("cannot read: {e}")),
    };
    if size > limits.max_file_bytes {
        return skip(
            None,
            format!("file exceeds the limit of {} bytes", limits.max_file_bytes),
        );
    }
    if out.bytes + size > limits.max_total_bytes {
        return skip(
            None,
            format!(
                "total size limit of {} bytes reached ({} bytes read so far)",
                limits.max_total_bytes, out.bytes
            ),
        );
    }
    if let Some(at) = bytes.iter().position(|&b| b == 0) {
        return skip(None, format!("binary file (nul byte at offset {at})"));
    }
    let text = match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => {
            let at = e.utf8_error().valid_up_to();
            return skip(None, format!("invalid utf-8 at byte offset {at}"));
        }
    };
    let content = match kind {
        Kind::Text => Content::Text(text),
        Kind::Chats => {
            let mut chats = Vec::new();
            for (i, line) in text.lines().enumerate() {
                if line.trim().is_empty() {
                    continue;
                }
                match parse_chat(line) {
                    Ok(chat) => chats.push(chat),
                    Err(reason) => skip(Some(i + 1), reason),
                }
            }
            if chats.is_empty() {
                skip(None, "no valid chat record".into());
                return;
            }
            Content::Chats(chats)
        }
    };
    *files += 1;
    out.bytes += size;
    out.documents.push(Document { path: rel, content });
}

#[derive(Deserialize)]
struct Record {
    messages: Vec<Message>,
}

#[derive(Deserialize)]
struct Message {
    role: String,
    content: String,
}

/// Parses one chat record line.
fn parse_chat(line: &str) -> std::result::Result<Chat, String> {
    let record: Record =
        serde_json::from_str(line).map_err(|e| format!("malformed chat record: {e}"))?;
    if record.messages.is_empty() {
        return Err("chat record has no messages".into());
    }
    record
        .messages
        .into_iter()
        .map(|m| {
            let role = match m.role.as_str() {
                "system" => Role::System,
                "user" => Role::User,
                "assistant" => Role::Assistant,
                other => return Err(format!("unknown chat role {other:?}")),
            };
            Ok((role, m.content))
        })
        .collect()
}
