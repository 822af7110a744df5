//! SHA-256 hashes: the [`Hash32`] newtype and a domain-separated, length-prefixed [`Hasher`].
//!
//! Hashes name things: a community (hash of its manifest), a delta (hash of its contents), an
//! adapter version (hash of its tensors), the base model (plain SHA-256 of its weights file).

use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};

use crate::codec::fixed_bytes_serde;
use crate::error::Error;

/// A SHA-256 digest. Displayed and parsed as 64 lower-case hex characters.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Hash32(pub [u8; 32]);

impl Hash32 {
    /// The all-zero hash, used as the parent of the first adapter version.
    pub const ZERO: Hash32 = Hash32([0; 32]);

    /// Plain SHA-256 of `bytes` (e.g. of a base model's weights file, comparable with
    /// `sha256sum`).
    pub fn digest(bytes: &[u8]) -> Hash32 {
        Hash32(Sha256::digest(bytes).into())
    }

    /// The raw digest bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The first 8 hex characters, for log lines.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..4])
    }
}

impl fmt::Display for Hash32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for Hash32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash32({})", self.short())
    }
}

impl FromStr for Hash32 {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self, Error> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(text, &mut out).map_err(|e| Error::InvalidHash {
            reason: format!("{e} (expected 64 hex characters)"),
        })?;
        Ok(Hash32(out))
    }
}

fixed_bytes_serde!(Hash32, 32, "a 32-byte sha256 digest");

/// Domain-separated SHA-256 over typed, length-prefixed fields.
///
/// The hash input is `domain` (which ends in a NUL byte) followed by the fields in order:
/// integers as fixed-width big-endian, byte strings and text as a `u64` big-endian length then
/// the bytes, integer and float slices as a `u64` count then each value little-endian (floats by
/// their IEEE-754 bits). Every field is self-delimiting, so different field sequences cannot
/// collide.
#[derive(Debug, Clone)]
pub struct Hasher {
    inner: Sha256,
}

impl Hasher {
    /// Starts a hash in `domain` (e.g. `b"hearth/delta/v1\0"`).
    pub fn new(domain: &[u8]) -> Self {
        let mut inner = Sha256::new();
        inner.update(domain);
        Hasher { inner }
    }

    /// Appends a `u32` (4 bytes big-endian).
    pub fn u32(&mut self, value: u32) -> &mut Self {
        self.inner.update(value.to_be_bytes());
        self
    }

    /// Appends a `u64` (8 bytes big-endian).
    pub fn u64(&mut self, value: u64) -> &mut Self {
        self.inner.update(value.to_be_bytes());
        self
    }

    /// Appends an `f64` by its IEEE-754 bits (8 bytes big-endian).
    pub fn f64(&mut self, value: f64) -> &mut Self {
        self.u64(value.to_bits())
    }

    /// Appends a length-prefixed byte string.
    pub fn bytes(&mut self, bytes: &[u8]) -> &mut Self {
        self.u64(bytes.len() as u64);
        self.inner.update(bytes);
        self
    }

    /// Appends a length-prefixed UTF-8 string.
    pub fn str(&mut self, text: &str) -> &mut Self {
        self.bytes(text.as_bytes())
    }

    /// Appends a 32-byte hash (no length prefix: it has a fixed size).
    pub fn hash(&mut self, hash: &Hash32) -> &mut Self {
        self.inner.update(hash.0);
        self
    }

    /// Appends a count-prefixed slice of `i32`, each 4 bytes little-endian.
    pub fn i32s(&mut self, values: &[i32]) -> &mut Self {
        self.u64(values.len() as u64);
        self.le_words(values.iter().map(|v| v.to_le_bytes()));
        self
    }

    /// Appends a count-prefixed slice of `f32`, each by its IEEE-754 bits, 4 bytes little-endian.
    pub fn f32s(&mut self, values: &[f32]) -> &mut Self {
        self.u64(values.len() as u64);
        self.le_words(values.iter().map(|v| v.to_bits().to_le_bytes()));
        self
    }

    fn le_words(&mut self, words: impl Iterator<Item = [u8; 4]>) {
        // Feed the hash in blocks rather than 4 bytes at a time.
        let mut block = [0u8; 4096];
        let mut used = 0;
        for word in words {
            block[used..used + 4].copy_from_slice(&word);
            used += 4;
            if used == block.len() {
                self.inner.update(block);
                used = 0;
            }
        }
        self.inner.update(&block[..used]);
    }

    /// The digest.
    pub fn finish(&self) -> Hash32 {
        Hash32(self.inner.clone().finalize().into())
    }
}

/// Domain of [`adapter_hash`].
pub const ADAPTER_DOMAIN: &[u8] = b"hearth/adapter/v1\0";

/// One named 2-D `f32` tensor of an adapter, for [`adapter_hash`].
#[derive(Debug, Clone, Copy)]
pub struct TensorRef<'a> {
    /// Tensor name (e.g. `blk.3.attn_q`).
    pub name: &'a str,
    /// Number of rows.
    pub rows: u32,
    /// Number of columns.
    pub cols: u32,
    /// Row-major values, `rows * cols` of them.
    pub values: &'a [f32],
}

/// The version name of a community adapter: a hash over its tensors in the order given
/// (callers sort them by name). Input: [`ADAPTER_DOMAIN`], the tensor count (`u64`), then per
/// tensor its name, rows (`u32`), cols (`u32`) and values (as in [`Hasher::f32s`]).
pub fn adapter_hash(tensors: &[TensorRef<'_>]) -> Hash32 {
    let mut hasher = Hasher::new(ADAPTER_DOMAIN);
    hasher.u64(tensors.len() as u64);
    for tensor in tensors {
        hasher
            .str(tensor.name)
            .u32(tensor.rows)
            .u32(tensor.cols)
            .f32s(tensor.values);
    }
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_known_answer_and_text_form() {
        let h = Hash32::digest(b"abc");
        assert_eq!(
            h.to_string(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(h.to_string().parse::<Hash32>().unwrap(), h);
        assert_eq!(h.short(), "ba7816bf");
        assert!(matches!(
            "ba78".parse::<Hash32>(),
            Err(Error::InvalidHash { .. })
        ));
        assert!(matches!(
            "zz".repeat(32).parse::<Hash32>(),
            Err(Error::InvalidHash { .. })
        ));
    }

    #[test]
    fn hasher_matches_its_documented_layout() {
        let mut manual = Vec::new();
        manual.extend_from_slice(b"d\0");
        manual.extend_from_slice(&7u32.to_be_bytes());
        manual.extend_from_slice(&2u64.to_be_bytes());
        manual.extend_from_slice(b"ab");
        manual.extend_from_slice(&2u64.to_be_bytes());
        manual.extend_from_slice(&(-1i32).to_le_bytes());
        manual.extend_from_slice(&5i32.to_le_bytes());
        let got = Hasher::new(b"d\0").u32(7).str("ab").i32s(&[-1, 5]).finish();
        assert_eq!(got, Hash32::digest(&manual));

        // Large slices go through the block buffer; compare against the plain layout.
        let values: Vec<f32> = (0..5000).map(|i| i as f32 * 0.5).collect();
        let mut manual = b"d\0".to_vec();
        manual.extend_from_slice(&5000u64.to_be_bytes());
        for v in &values {
            manual.extend_from_slice(&v.to_bits().to_le_bytes());
        }
        assert_eq!(
            Hasher::new(b"d\0").f32s(&values).finish(),
            Hash32::digest(&manual)
        );
    }

    #[test]
    fn fields_are_self_delimiting() {
        let a = Hasher::new(b"d\0").str("ab").str("c").finish();
        let b = Hasher::new(b"d\0").str("a").str("bc").finish();
        assert_ne!(a, b);
        let c = Hasher::new(b"e\0").str("ab").str("c").finish();
        assert_ne!(a, c);
    }

    #[test]
    fn adapter_hash_depends_on_every_part() {
        let values = [1.0f32, 2.0, 3.0, 4.0];
        let base = TensorRef {
            name: "blk.0.attn_q",
            rows: 2,
            cols: 2,
            values: &values,
        };
        let h = adapter_hash(&[base]);
        assert_ne!(
            h,
            adapter_hash(&[TensorRef {
                rows: 1,
                cols: 4,
                ..base
            }])
        );
        assert_ne!(
            h,
            adapter_hash(&[TensorRef {
                name: "blk.1.attn_q",
                ..base
            }])
        );
        let changed = [1.0f32, 2.0, 3.0, 4.5];
        assert_ne!(
            h,
            adapter_hash(&[TensorRef {
                values: &changed,
                ..base
            }])
        );
        assert_ne!(h, adapter_hash(&[]));
        assert_eq!(h, adapter_hash(&[base]));
    }
}
