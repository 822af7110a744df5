//! [`Signed`]: a body plus the ed25519 signature of an (admin) key over its canonical encoding.
//!
//! Used for the objects that stand on their own, outside any envelope: the community manifest,
//! member certificates and revocation lists. The signature covers `T::DOMAIN || cbor(body)`.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::codec::to_cbor;
use crate::error::Error;
use crate::identity::{Keypair, MemberId, Signature};

/// A type that can be signed on its own. Its domain string ends in a NUL byte and is unique
/// among all Hearth signature domains.
pub trait Signable: Serialize + DeserializeOwned {
    /// Signature domain, e.g. `b"hearth/certificate/v1\0"`.
    const DOMAIN: &'static [u8];
    /// Name for error messages, e.g. `"certificate"`.
    const WHAT: &'static str;
}

/// A body and a signature over `T::DOMAIN || canonical CBOR of body`.
///
/// On the wire: a map `{"body": <T>, "signature": <64 bytes>}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Signed<T> {
    /// The signed content.
    pub body: T,
    /// ed25519 signature by the signer over the domain and the body.
    pub signature: Signature,
}

impl<T: Signable> Signed<T> {
    /// Signs `body` with `key`.
    pub fn sign(body: T, key: &Keypair) -> Result<Self, Error> {
        let bytes = to_cbor(T::WHAT, &body)?;
        let signature = key.sign_parts(&[T::DOMAIN, &bytes]);
        Ok(Signed { body, signature })
    }

    /// Checks that `signer` signed this body. The body is re-encoded canonically, so a body that
    /// arrived in a non-canonical encoding does not verify.
    pub fn verify_signature(&self, signer: &MemberId) -> Result<(), Error> {
        let bytes = to_cbor(T::WHAT, &self.body)?;
        signer.verify_parts(T::WHAT, &[T::DOMAIN, &bytes], &self.signature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Note {
        text: String,
    }

    impl Signable for Note {
        const DOMAIN: &'static [u8] = b"hearth/test-note/v1\0";
        const WHAT: &'static str = "note";
    }

    #[test]
    fn sign_verify_and_tamper() {
        let admin = Keypair::from_seed([1; 32]);
        let signed = Signed::sign(
            Note {
                text: "hello".into(),
            },
            &admin,
        )
        .unwrap();
        signed.verify_signature(&admin.member_id()).unwrap();

        let mut tampered = signed.clone();
        tampered.body.text.push('!');
        assert_eq!(
            tampered.verify_signature(&admin.member_id()),
            Err(Error::BadSignature {
                what: "note",
                signer: admin.member_id()
            })
        );
        let other = Keypair::from_seed([2; 32]).member_id();
        assert!(matches!(
            signed.verify_signature(&other),
            Err(Error::BadSignature { .. })
        ));
    }
}
