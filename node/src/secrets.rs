//! Encryption at rest: a 32-byte store key from a passphrase (argon2id) or a key file, and an AEAD
//! (XChaCha20-Poly1305) that seals secret values bound to where they are stored.

use std::path::{Path, PathBuf};

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, Zeroizing};

use crate::error::{Error, Result};

/// How the member unlocks their store.
#[derive(Clone)]
pub enum Unlock {
    /// A passphrase, stretched with argon2id and a per-store salt.
    Passphrase(Zeroizing<String>),
    /// A file holding exactly 32 random bytes (for unattended nodes).
    KeyFile(PathBuf),
}

impl std::fmt::Debug for Unlock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unlock::Passphrase(_) => f.write_str("Unlock::Passphrase(..)"),
            Unlock::KeyFile(p) => f.debug_tuple("Unlock::KeyFile").field(p).finish(),
        }
    }
}

/// The parameters of the key derivation, stored (not secret) in the store's `meta` family.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfParams {
    /// Random per-store salt.
    #[serde(with = "serde_bytes")]
    pub salt: Vec<u8>,
    /// Memory cost in KiB.
    pub m_cost: u32,
    /// Iterations.
    pub t_cost: u32,
    /// Lanes.
    pub p_cost: u32,
}

impl KdfParams {
    /// OWASP's argon2id recommendation (19 MiB, 2 iterations, 1 lane) with a fresh salt.
    pub fn new_random() -> Result<Self> {
        let mut salt = vec![0u8; 16];
        random_fill(&mut salt)?;
        Ok(Self {
            salt,
            m_cost: 19 * 1024,
            t_cost: 2,
            p_cost: 1,
        })
    }
}

/// The key that seals secret values. Zeroed on drop.
pub struct SealKey(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for SealKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealKey(..)")
    }
}

impl SealKey {
    /// Derives the key for `unlock` with the store's parameters.
    pub fn derive(unlock: &Unlock, kdf: &KdfParams) -> Result<Self> {
        match unlock {
            Unlock::Passphrase(pass) => {
                let params = argon2::Params::new(kdf.m_cost, kdf.t_cost, kdf.p_cost, Some(32))
                    .map_err(|e| Error::Corrupt {
                        cf: "meta",
                        reason: format!("kdf params: {e}"),
                    })?;
                let argon = argon2::Argon2::new(
                    argon2::Algorithm::Argon2id,
                    argon2::Version::V0x13,
                    params,
                );
                let mut key = Zeroizing::new([0u8; 32]);
                argon
                    .hash_password_into(pass.as_bytes(), &kdf.salt, key.as_mut())
                    .map_err(|e| Error::Corrupt {
                        cf: "meta",
                        reason: format!("kdf: {e}"),
                    })?;
                Ok(Self(key))
            }
            Unlock::KeyFile(path) => Self::from_key_file(path),
        }
    }

    fn from_key_file(path: &Path) -> Result<Self> {
        let bad = |reason: String| Error::KeyFile {
            path: path.to_path_buf(),
            reason,
        };
        let meta = std::fs::metadata(path).map_err(|e| bad(e.to_string()))?;
        if meta.len() != 32 {
            return Err(bad(format!(
                "must hold exactly 32 bytes, holds {}",
                meta.len()
            )));
        }
        let mut bytes = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
        let mut key = Zeroizing::new([0u8; 32]);
        if bytes.len() != 32 {
            bytes.zeroize();
            return Err(bad("changed while being read".into()));
        }
        key.copy_from_slice(&bytes);
        bytes.zeroize();
        Ok(Self(key))
    }

    /// Seals `plaintext`, binding it to `context` (the column family and key it is stored under),
    /// so a sealed value moved elsewhere in the store fails to open.
    pub fn seal(&self, context: &[u8], plaintext: &[u8]) -> Result<Vec<u8>> {
        let cipher = XChaCha20Poly1305::new(self.0.as_ref().into());
        let mut nonce = [0u8; 24];
        random_fill(&mut nonce)?;
        let sealed = cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: context,
                },
            )
            .map_err(|_| Error::Random("aead encryption failed".into()))?;
        let mut out = Vec::with_capacity(24 + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// Opens a value sealed by [`SealKey::seal`] under the same context; `None` when it fails
    /// authentication (wrong key, tampered, or moved).
    pub fn open(&self, context: &[u8], sealed: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        if sealed.len() < 24 + 16 {
            return None;
        }
        let (nonce, body) = sealed.split_at(24);
        let cipher = XChaCha20Poly1305::new(self.0.as_ref().into());
        cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: body,
                    aad: context,
                },
            )
            .ok()
            .map(Zeroizing::new)
    }
}

/// Writes a new random 32-byte key file (mode 0600 on Unix). Fails if the file exists.
pub fn write_new_key_file(path: &Path) -> Result<()> {
    use std::io::Write;
    let mut key = Zeroizing::new([0u8; 32]);
    random_fill(key.as_mut())?;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let bad = |e: std::io::Error| Error::KeyFile {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let mut file = opts.open(path).map_err(bad)?;
    file.write_all(key.as_ref()).map_err(bad)?;
    file.sync_all().map_err(bad)
}

/// Fills `buf` from the operating system's random source.
pub fn random_fill(buf: &mut [u8]) -> Result<()> {
    getrandom::fill(buf).map_err(|e| Error::Random(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fast_kdf() -> KdfParams {
        KdfParams {
            salt: vec![7; 16],
            m_cost: 64,
            t_cost: 1,
            p_cost: 1,
        }
    }

    #[test]
    fn seal_open_round_trip_and_binding() {
        let key = SealKey::derive(
            &Unlock::Passphrase(Zeroizing::new("pw".into())),
            &fast_kdf(),
        )
        .unwrap();
        let sealed = key.seal(b"identity/k", b"secret").unwrap();
        assert_eq!(
            key.open(b"identity/k", &sealed).unwrap().as_slice(),
            b"secret"
        );
        assert!(
            key.open(b"identity/other", &sealed).is_none(),
            "moved value must not open"
        );
        let mut flipped = sealed.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert!(key.open(b"identity/k", &flipped).is_none());
        assert!(key.open(b"identity/k", &sealed[..20]).is_none());
        let other = SealKey::derive(
            &Unlock::Passphrase(Zeroizing::new("pw2".into())),
            &fast_kdf(),
        )
        .unwrap();
        assert!(other.open(b"identity/k", &sealed).is_none());
    }

    #[test]
    fn key_file_must_be_32_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.key");
        write_new_key_file(&good).unwrap();
        assert!(
            write_new_key_file(&good).is_err(),
            "must not overwrite a key file"
        );
        assert!(SealKey::derive(&Unlock::KeyFile(good), &fast_kdf()).is_ok());
        for len in [0usize, 31, 33] {
            let p = dir.path().join(format!("k{len}"));
            std::fs::write(&p, vec![1u8; len]).unwrap();
            let err = SealKey::derive(&Unlock::KeyFile(p), &fast_kdf()).unwrap_err();
            assert!(err.to_string().contains("exactly 32 bytes"), "{err}");
        }
        let missing = SealKey::derive(&Unlock::KeyFile(dir.path().join("nope")), &fast_kdf());
        assert!(matches!(missing, Err(Error::KeyFile { .. })));
    }
}
