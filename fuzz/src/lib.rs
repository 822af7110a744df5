//! Helpers shared by the fuzz targets in `fuzz_targets/`: splitting one input into two files, a
//! scratch folder for decoders that read paths, and the fixed facts the seed corpus is built
//! with (`node/examples/fuzz_seeds.rs` uses the same values; keep them in step).

use std::path::PathBuf;
use std::sync::OnceLock;

use hearth_models::LlamaConfig;

/// The model shape the `peft` target checks adapters against: the smallest valid Llama (the
/// vocabulary is the tiny tokenizer's minimum, 267).
pub fn peft_model() -> LlamaConfig {
    LlamaConfig::new(267, 8, 16, 1, 2, 1, 4)
}

/// The context, in tokens, of the model behind the `api` target.
pub const API_CONTEXT: usize = 32;

/// The most tokens an answer of the `api` target may ask for.
pub const API_MAX_TOKENS: usize = 4;

/// The seed of the member key the seed corpus's invite is issued to.
pub const INVITE_MEMBER_SEED: [u8; 32] = [0x11; 32];

/// The clock the `invite` target checks certificates at (inside the seed certificate's validity).
pub const INVITE_NOW: u64 = 1_700_000_500;

/// Splits an input into two parts: a little-endian `u16` length, that many bytes, the rest.
pub fn split2(data: &[u8]) -> Option<(&[u8], &[u8])> {
    let (len, rest) = data.split_first_chunk::<2>()?;
    let len = usize::from(u16::from_le_bytes(*len));
    (len <= rest.len()).then(|| rest.split_at(len))
}

/// Joins two parts the way [`split2`] splits them (for seeds).
pub fn join2(first: &[u8], second: &[u8]) -> Option<Vec<u8>> {
    let len = u16::try_from(first.len()).ok()?;
    let mut out = len.to_le_bytes().to_vec();
    out.extend_from_slice(first);
    out.extend_from_slice(second);
    Some(out)
}

/// A folder of this process for decoders that read files (created once, emptied by nobody: it
/// holds one input at a time).
pub fn scratch_dir(target: &str) -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("hearth-fuzz-{target}-{}", std::process::id()));
        if let Err(e) = std::fs::create_dir_all(&dir) {
            panic!("cannot create the scratch folder {}: {e}", dir.display());
        }
        dir
    })
}

/// Writes `bytes` to `path`, panicking on failure (a harness failure, not a finding).
pub fn write(path: &std::path::Path, bytes: &[u8]) {
    if let Err(e) = std::fs::write(path, bytes) {
        panic!("cannot write {}: {e}", path.display());
    }
}
