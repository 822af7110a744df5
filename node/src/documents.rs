//! The member's private documents in the store: `hearth ingest` reads a folder (with the
//! training crate's [`ingest`], which reports bad files by name and skips them) and keeps every
//! usable document sealed (encrypted at rest) in the `documents` column family under
//! `<source>\0<path>`; `hearth forget <source>` removes a whole folder again. Training and
//! evaluation read them back from the store, never from the folder.

use std::path::Path;

use anyhow::Context as _;
use hearth_models::Role;
use hearth_training::data::{Content, Document, ingest};
use serde::{Deserialize, Serialize};

use crate::store::{Cf, Store};

/// One document as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Stored {
    source: String,
    path: String,
    text: Option<String>,
    chats: Vec<Vec<(String, String)>>,
}

fn role(name: &str) -> Option<Role> {
    Some(match name {
        "system" => Role::System,
        "user" => Role::User,
        "assistant" => Role::Assistant,
        _ => return None,
    })
}

/// What [`ingest_folder`] did.
#[derive(Debug, Clone, Default)]
pub struct Ingested {
    /// Documents stored.
    pub documents: usize,
    /// Bytes read.
    pub bytes: u64,
    /// Files (or lines) left out, with the reason.
    pub skipped: Vec<String>,
}

fn source_name(folder: &Path) -> anyhow::Result<String> {
    let abs =
        std::fs::canonicalize(folder).with_context(|| format!("reading {}", folder.display()))?;
    Ok(abs.to_string_lossy().into_owned())
}

/// Reads `folder` and stores its documents (replacing what an earlier ingest of the same folder
/// stored), in one batch.
pub fn ingest_folder(store: &Store, folder: &Path) -> anyhow::Result<Ingested> {
    let source = source_name(folder)?;
    let found = ingest(folder)?;
    let mut batch = store.batch();
    for (key, _) in store.scan_prefix(Cf::Documents, &prefix(&source))? {
        batch.delete(Cf::Documents, &key);
    }
    for doc in &found.documents {
        let path = doc.path.to_string_lossy().into_owned();
        let (text, chats) = match &doc.content {
            Content::Text(t) => (Some(t.clone()), Vec::new()),
            Content::Chats(chats) => (
                None,
                chats
                    .iter()
                    .map(|c| {
                        c.iter()
                            .map(|(r, m)| (r.as_str().to_string(), m.clone()))
                            .collect()
                    })
                    .collect(),
            ),
        };
        let stored = Stored {
            source: source.clone(),
            path: path.clone(),
            text,
            chats,
        };
        let key = [prefix(&source), path.into_bytes()].concat();
        batch.put_secret(Cf::Documents, &key, &serde_cbor::to_vec(&stored)?)?;
    }
    store.write(batch)?;
    Ok(Ingested {
        documents: found.documents.len(),
        bytes: found.bytes,
        skipped: found.skipped.iter().map(ToString::to_string).collect(),
    })
}

fn prefix(source: &str) -> Vec<u8> {
    [source.as_bytes(), b"\0"].concat()
}

/// Removes every document an ingest of `folder` stored; returns how many.
pub fn forget(store: &Store, folder: &Path) -> anyhow::Result<usize> {
    let source = match std::fs::canonicalize(folder) {
        Ok(p) => p.to_string_lossy().into_owned(),
        Err(_) => folder.to_string_lossy().into_owned(),
    };
    let keys = store.scan_prefix(Cf::Documents, &prefix(&source))?;
    let mut batch = store.batch();
    for (key, _) in &keys {
        batch.delete(Cf::Documents, key);
    }
    store.write(batch)?;
    Ok(keys.len())
}

/// Every stored document, in key order (source, then path).
pub fn load(store: &Store) -> anyhow::Result<Vec<Document>> {
    let mut out = Vec::new();
    for (key, _) in store.scan_prefix(Cf::Documents, &[])? {
        let bytes = store
            .get_secret(Cf::Documents, &key)?
            .context("a document vanished while reading")?;
        let s: Stored = serde_cbor::from_slice(&bytes)
            .map_err(|e| anyhow::anyhow!("corrupt document in the store: {e}"))?;
        let content = match s.text {
            Some(t) => Content::Text(t),
            None => Content::Chats(
                s.chats
                    .into_iter()
                    .map(|c| {
                        c.into_iter()
                            .map(|(r, m)| {
                                role(&r).map(|r| (r, m)).with_context(|| {
                                    format!("unknown chat role {r:?} in the store")
                                })
                            })
                            .collect::<anyhow::Result<Vec<_>>>()
                    })
                    .collect::<anyhow::Result<Vec<_>>>()?,
            ),
        };
        out.push(Document {
            path: s.path.into(),
            content,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::Unlock;

    #[test]
    fn ingest_stores_sealed_documents_and_forget_removes_them() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("key");
        std::fs::write(&key, [3u8; 32]).unwrap();
        let store = Store::create(&dir.path().join("s"), &Unlock::KeyFile(key)).unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        std::fs::write(data.join("a.txt"), "the secret recipe is cardamom").unwrap();
        std::fs::write(
            data.join("c.jsonl"),
            "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"},{\"role\":\"assistant\",\"content\":\"hello\"}]}\nnot json\n",
        )
        .unwrap();
        std::fs::write(data.join("b.bin"), [0u8, 159, 146, 150]).unwrap();
        let report = ingest_folder(&store, &data).unwrap();
        assert_eq!(report.documents, 2);
        assert!(!report.skipped.is_empty());
        // Sealed at rest: the raw bytes in the column family do not contain the text.
        for (_, raw) in store.scan_prefix(Cf::Documents, &[]).unwrap() {
            assert!(!raw.windows(8).any(|w| w == b"cardamom"));
        }
        let docs = load(&store).unwrap();
        assert_eq!(docs.len(), 2);
        assert!(
            docs.iter()
                .any(|d| matches!(&d.content, Content::Text(t) if t.contains("cardamom")))
        );
        assert!(docs.iter().any(|d| matches!(&d.content, Content::Chats(c) if c[0][1] == (Role::Assistant, "hello".to_string()))));
        // Ingesting again replaces rather than duplicates.
        std::fs::remove_file(data.join("a.txt")).unwrap();
        assert_eq!(ingest_folder(&store, &data).unwrap().documents, 1);
        assert_eq!(load(&store).unwrap().len(), 1);
        assert_eq!(forget(&store, &data).unwrap(), 1);
        assert!(load(&store).unwrap().is_empty());
    }
}
