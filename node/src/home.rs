//! The member's data directory and what it holds: the store, the identity key, the community
//! manifest and certificates, and the invite file format.
//!
//! Layout of a home folder (`--home`, `$HEARTH_HOME`, or the platform's data directory):
//!
//! ```text
//! <home>/store/     RocksDB (see `store`): identity key sealed, community, documents, adapters...
//! <home>/node.toml  optional node configuration
//! ```
//!
//! Store keys used here (family `identity`): `signing-key` (sealed, 32-byte ed25519 seed),
//! `manifest` (CBOR `Signed<Manifest>`), `certificate` (CBOR `Signed<Certificate>`, this member's),
//! and in family `peers`: `bootstrap` (CBOR list of multiaddrs from the invite).

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use hearth_protocol::{Certificate, Keypair, Manifest, MemberId, Signed};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::secrets::{Unlock, random_fill};
use crate::store::{Cf, Store};

const KEY_SIGNING: &[u8] = b"signing-key";
const KEY_MANIFEST: &[u8] = b"manifest";
const KEY_CERTIFICATE: &[u8] = b"certificate";
const KEY_BOOTSTRAP: &[u8] = b"bootstrap";

/// Largest invite file accepted.
pub const MAX_INVITE_BYTES: u64 = 256 * 1024;

/// Resolves the home folder: `explicit`, else `$HEARTH_HOME`, else `<data dir>/hearth`.
pub fn resolve_home(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    if let Some(p) = std::env::var_os("HEARTH_HOME") {
        return Ok(PathBuf::from(p));
    }
    dirs::data_dir().map(|d| d.join("hearth")).ok_or_else(|| {
        anyhow::anyhow!("no data directory on this platform: pass --home or set HEARTH_HOME")
    })
}

/// How to unlock the store: `--key-file`, else `$HEARTH_PASSPHRASE`, else a prompt on the terminal.
pub fn unlock_from(key_file: Option<&Path>, confirm: bool) -> anyhow::Result<Unlock> {
    if let Some(path) = key_file {
        return Ok(Unlock::KeyFile(path.to_path_buf()));
    }
    if let Ok(pass) = std::env::var("HEARTH_PASSPHRASE") {
        return Ok(Unlock::Passphrase(Zeroizing::new(pass)));
    }
    if !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        bail!("no passphrase: set HEARTH_PASSPHRASE or pass --key-file (stdin is not a terminal)");
    }
    let pass = Zeroizing::new(
        rpassword::prompt_password("passphrase: ").context("reading the passphrase")?,
    );
    if confirm {
        let again = Zeroizing::new(
            rpassword::prompt_password("again: ").context("reading the passphrase")?,
        );
        if *pass != *again {
            bail!("the two passphrases differ");
        }
    }
    Ok(Unlock::Passphrase(pass))
}

/// An opened home: the store and the member's identity.
#[derive(Debug)]
pub struct Home {
    /// The folder.
    pub path: PathBuf,
    /// The open store.
    pub store: Store,
    /// The member's signing key.
    pub key: Keypair,
}

impl Home {
    /// Creates a new home with a fresh identity.
    pub fn init(path: &Path, unlock: &Unlock) -> anyhow::Result<Self> {
        std::fs::create_dir_all(path).with_context(|| format!("creating {}", path.display()))?;
        let store = Store::create(&path.join("store"), unlock)?;
        let mut seed = Zeroizing::new([0u8; 32]);
        random_fill(seed.as_mut())?;
        store.put_secret(Cf::Identity, KEY_SIGNING, seed.as_ref())?;
        let key = Keypair::from_seed(*seed);
        Ok(Self {
            path: path.to_path_buf(),
            store,
            key,
        })
    }

    /// Opens an existing home.
    pub fn open(path: &Path, unlock: &Unlock) -> anyhow::Result<Self> {
        let store = Store::open(&path.join("store"), unlock)?;
        let seed = store
            .get_secret(Cf::Identity, KEY_SIGNING)?
            .ok_or_else(|| {
                anyhow::anyhow!("the store has no identity key (was `hearth init` interrupted?)")
            })?;
        let seed: [u8; 32] = seed
            .as_slice()
            .try_into()
            .context("the identity key is not 32 bytes")?;
        Ok(Self {
            path: path.to_path_buf(),
            store,
            key: Keypair::from_seed(seed),
        })
    }

    /// This member's id (its libp2p PeerId text form).
    pub fn member_id(&self) -> MemberId {
        self.key.member_id()
    }

    /// The community manifest, if this node created or joined one.
    pub fn manifest(&self) -> anyhow::Result<Option<Signed<Manifest>>> {
        self.get_cbor(Cf::Identity, KEY_MANIFEST)
    }

    /// This member's certificate, if any.
    pub fn certificate(&self) -> anyhow::Result<Option<Signed<Certificate>>> {
        self.get_cbor(Cf::Identity, KEY_CERTIFICATE)
    }

    /// Bootstrap addresses from the invite.
    pub fn bootstrap(&self) -> anyhow::Result<Vec<String>> {
        Ok(self.get_cbor(Cf::Peers, KEY_BOOTSTRAP)?.unwrap_or_default())
    }

    /// Records the community this member belongs to, atomically.
    pub fn set_membership(
        &self,
        manifest: &Signed<Manifest>,
        certificate: &Signed<Certificate>,
        bootstrap: &[String],
    ) -> anyhow::Result<()> {
        let mut batch = self.store.batch();
        batch.put(Cf::Identity, KEY_MANIFEST, &serde_cbor::to_vec(manifest)?);
        batch.put(
            Cf::Identity,
            KEY_CERTIFICATE,
            &serde_cbor::to_vec(certificate)?,
        );
        batch.put(Cf::Peers, KEY_BOOTSTRAP, &serde_cbor::to_vec(&bootstrap)?);
        self.store.write(batch)?;
        Ok(())
    }

    fn get_cbor<T: serde::de::DeserializeOwned>(
        &self,
        cf: Cf,
        key: &[u8],
    ) -> anyhow::Result<Option<T>> {
        match self.store.get(cf, key)? {
            None => Ok(None),
            Some(bytes) => Ok(Some(serde_cbor::from_slice(&bytes).with_context(|| {
                format!("corrupt {} in the store", String::from_utf8_lossy(key))
            })?)),
        }
    }
}

/// What an admin hands a new member: the community manifest, the member's certificate and
/// addresses of peers to join through. Carries nothing secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Invite {
    /// Format version of the invite file.
    pub version: u32,
    /// The admin-signed community manifest.
    pub manifest: Signed<Manifest>,
    /// The admin-signed certificate of the invited member.
    pub certificate: Signed<Certificate>,
    /// Multiaddrs (with `/p2p/<peer id>`) of peers to dial first.
    pub bootstrap: Vec<String>,
}

impl Invite {
    /// The invite format this build writes and reads.
    pub const VERSION: u32 = 1;

    /// Reads and checks an invite file: size, format, manifest signature and fields, certificate
    /// signature, community and validity at `now`, and that it was issued to `member`.
    pub fn read(path: &Path, member: &MemberId, now: u64) -> anyhow::Result<Self> {
        let len = std::fs::metadata(path)
            .with_context(|| format!("reading {}", path.display()))?
            .len();
        if len > MAX_INVITE_BYTES {
            bail!(
                "{} is {len} bytes; an invite is at most {MAX_INVITE_BYTES}",
                path.display()
            );
        }
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let invite: Invite = serde_cbor::from_slice(&bytes)
            .map_err(|e| anyhow::anyhow!("{} is not a hearth invite: {e}", path.display()))?;
        if invite.version != Self::VERSION {
            bail!(
                "invite format {} is not supported (this hearth reads {})",
                invite.version,
                Self::VERSION
            );
        }
        let community = invite
            .manifest
            .verify()
            .context("the invite's manifest does not verify")?;
        let authority = hearth_protocol::Authority::from_manifest(&invite.manifest)?;
        authority
            .verify_certificate(&invite.certificate, now, &invite.manifest.body.limits)
            .context("the invite's certificate is not valid")?;
        if invite.certificate.body.member != *member {
            bail!(
                "this invite is for member {}, but this node is {member}; ask the admin for an invite for your id",
                invite.certificate.body.member
            );
        }
        debug_assert_eq!(invite.certificate.body.community, community);
        Ok(invite)
    }

    /// Writes the invite file.
    pub fn write(&self, path: &Path) -> anyhow::Result<()> {
        std::fs::write(path, serde_cbor::to_vec(self)?)
            .with_context(|| format!("writing {}", path.display()))
    }
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use hearth_protocol::{
        BaseModel, Certificate, Hash32, Keypair, LoraShape, Manifest, Role, Signed, Target,
    };

    use super::*;

    fn manifest(admin: &Keypair) -> Signed<Manifest> {
        let body = Manifest {
            name: "test".into(),
            admin: admin.member_id(),
            created: 1_000,
            base_model: BaseModel {
                name: "tiny".into(),
                sha256: Hash32::digest(b"weights"),
            },
            lora: LoraShape {
                rank: 2,
                alpha: 4.0,
                layers: 2,
                targets: vec![Target {
                    module: "q_proj".into(),
                    in_dim: 8,
                    out_dim: 8,
                }],
                ffa_seed: 7,
            },
            privacy: Default::default(),
            aggregation: Default::default(),
            schedule: Default::default(),
            limits: Default::default(),
        };
        Signed::sign(body, admin).unwrap()
    }

    fn invite(admin: &Keypair, member: &Keypair, expires: u64) -> Invite {
        let manifest = manifest(admin);
        let community = manifest.verify().unwrap();
        let body = Certificate {
            member: member.member_id(),
            community,
            issued: 1_000,
            expires,
            roles: vec![Role::Contributor],
        };
        let certificate = Signed::sign(body, admin).unwrap();
        Invite {
            version: Invite::VERSION,
            manifest,
            certificate,
            bootstrap: vec![],
        }
    }

    #[test]
    fn invite_checks() {
        let dir = tempfile::tempdir().unwrap();
        let (admin, alice, bob) = (
            Keypair::from_seed([1; 32]),
            Keypair::from_seed([2; 32]),
            Keypair::from_seed([3; 32]),
        );
        let path = dir.path().join("alice.invite");
        invite(&admin, &alice, 10_000).write(&path).unwrap();
        let read = Invite::read(&path, &alice.member_id(), 2_000).unwrap();
        assert_eq!(read, invite(&admin, &alice, 10_000));

        let err = Invite::read(&path, &bob.member_id(), 2_000)
            .unwrap_err()
            .to_string();
        assert!(err.contains("this invite is for member"), "{err}");
        let err = format!(
            "{:#}",
            Invite::read(&path, &alice.member_id(), 10_001).unwrap_err()
        );
        assert!(err.contains("certificate is not valid"), "{err}");

        // A manifest signed by someone else than its admin.
        let mut forged = invite(&admin, &alice, 10_000);
        forged.manifest.body.name = "renamed".into();
        forged.write(&path).unwrap();
        let err = format!(
            "{:#}",
            Invite::read(&path, &alice.member_id(), 2_000).unwrap_err()
        );
        assert!(err.contains("manifest does not verify"), "{err}");

        let mut future = invite(&admin, &alice, 10_000);
        future.version = 2;
        future.write(&path).unwrap();
        let err = Invite::read(&path, &alice.member_id(), 2_000)
            .unwrap_err()
            .to_string();
        assert!(err.contains("not supported"), "{err}");
    }

    #[test]
    fn invite_files_are_size_limited_and_parsed_safely() {
        let dir = tempfile::tempdir().unwrap();
        let member = Keypair::from_seed([2; 32]).member_id();
        let path = dir.path().join("x.invite");
        std::fs::write(&path, vec![0xffu8; MAX_INVITE_BYTES as usize]).unwrap();
        let at_limit = Invite::read(&path, &member, 0).unwrap_err().to_string();
        assert!(at_limit.contains("not a hearth invite"), "{at_limit}");
        std::fs::write(&path, vec![0u8; MAX_INVITE_BYTES as usize + 1]).unwrap();
        let past = Invite::read(&path, &member, 0).unwrap_err().to_string();
        assert!(past.contains("an invite is at most"), "{past}");
        let missing = Invite::read(&dir.path().join("none"), &member, 0)
            .unwrap_err()
            .to_string();
        assert!(missing.contains("reading"), "{missing}");
    }

    #[test]
    fn home_keeps_identity_and_membership() {
        let dir = tempfile::tempdir().unwrap();
        let unlock = Unlock::Passphrase(Zeroizing::new("pw".into()));
        let id = Home::init(&dir.path().join("h"), &unlock)
            .unwrap()
            .member_id();
        let home = Home::open(&dir.path().join("h"), &unlock).unwrap();
        assert_eq!(home.member_id(), id, "the identity survives a reopen");
        assert!(home.manifest().unwrap().is_none());
        let admin = Keypair::from_seed([1; 32]);
        let inv = invite(&admin, &home.key, 10_000);
        home.set_membership(
            &inv.manifest,
            &inv.certificate,
            &["/ip4/127.0.0.1/tcp/1".into()],
        )
        .unwrap();
        drop(home);
        let home = Home::open(&dir.path().join("h"), &unlock).unwrap();
        assert_eq!(home.manifest().unwrap(), Some(inv.manifest));
        assert_eq!(
            home.bootstrap().unwrap(),
            vec!["/ip4/127.0.0.1/tcp/1".to_string()]
        );
    }
}
