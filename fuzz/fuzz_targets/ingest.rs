//! Feeds an arbitrary file to document ingestion, as if a member had put it in the folder they
//! train on: the first byte picks the kind (`.jsonl` chat records, `.txt`, `.md`), the rest is
//! the file. What is ingested is then encoded into a training dataset (byte tokens).
#![no_main]

use hearth_fuzz::{scratch_dir, write};
use hearth_training::data::{ByteEncoder, Dataset, HELD_OUT_FRACTION, ingest};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, file)) = data.split_first() else {
        return;
    };
    let dir = scratch_dir("ingest");
    let names = ["chats.jsonl", "notes.txt", "notes.md"];
    for name in names {
        // One file at a time: remove what an earlier input left.
        let _ = std::fs::remove_file(dir.join(name));
    }
    write(&dir.join(names[usize::from(selector) % names.len()]), file);
    let ingested = match ingest(dir) {
        Ok(ingested) => ingested,
        Err(e) => panic!("the folder itself is readable: {e}"),
    };
    assert!(
        ingested.documents.len() <= 1,
        "one file gives at most one document"
    );
    let _ = Dataset::from_documents(&ingested.documents, &ByteEncoder, HELD_OUT_FRACTION);
});
