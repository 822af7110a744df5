//! Member certificates, revocation lists, and the [`Authority`] that checks them.
//!
//! Admission is by certificate: the admin signs `{member, community, issued, expires, roles}`.
//! A node drops any message whose sender has no valid certificate before spending work on it.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::codec::check_limit;
use crate::error::Error;
use crate::hash::Hash32;
use crate::identity::MemberId;
use crate::limits::Limits;
use crate::manifest::Manifest;
use crate::signed::{Signable, Signed};

/// What a certified member may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Takes part in rounds: submits deltas and secure-aggregation messages.
    Contributor,
    /// Signs version announcements that late joiners may count towards a quorum.
    Announcer,
    /// Follows the community (syncs adapter versions) without contributing.
    Observer,
}

impl Role {
    /// The role's wire name.
    pub fn name(self) -> &'static str {
        match self {
            Role::Contributor => "contributor",
            Role::Announcer => "announcer",
            Role::Observer => "observer",
        }
    }
}

/// An admin-signed statement that `member` belongs to `community` from `issued` until `expires`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Certificate {
    /// The certified member.
    pub member: MemberId,
    /// The community (manifest hash).
    pub community: Hash32,
    /// Start of validity, unix seconds (inclusive).
    pub issued: u64,
    /// End of validity, unix seconds (exclusive).
    pub expires: u64,
    /// Roles granted, no duplicates.
    pub roles: Vec<Role>,
}

impl Certificate {
    /// Whether the certificate grants `role`.
    pub fn has_role(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    /// Returns [`Error::MissingRole`] unless the certificate grants `role`.
    pub fn require(&self, role: Role) -> Result<(), Error> {
        if self.has_role(role) {
            Ok(())
        } else {
            Err(Error::MissingRole {
                member: self.member,
                role: role.name(),
            })
        }
    }

    /// Checks sizes and the validity interval (not the signature, community or clock).
    pub fn validate(&self, limits: &Limits) -> Result<(), Error> {
        check_limit("certificate roles", self.roles.len(), limits.max_roles)?;
        for (i, role) in self.roles.iter().enumerate() {
            if self.roles[..i].contains(role) {
                return Err(Error::InvalidValue {
                    field: "certificate.roles",
                    reason: format!("{} listed twice", role.name()),
                });
            }
        }
        if self.expires <= self.issued {
            return Err(Error::InvalidValue {
                field: "certificate.expires",
                reason: format!("{} is not after issued {}", self.expires, self.issued),
            });
        }
        let validity = self.expires - self.issued;
        if validity > limits.max_certificate_validity_secs {
            return Err(Error::LimitExceeded {
                what: "certificate validity secs",
                found: validity,
                max: limits.max_certificate_validity_secs,
            });
        }
        Ok(())
    }
}

impl Signable for Certificate {
    const DOMAIN: &'static [u8] = b"hearth/certificate/v1\0";
    const WHAT: &'static str = "certificate";
}

/// The admin's complete list of revoked members. A list with a higher `sequence` replaces the
/// previous one entirely.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevocationList {
    /// The community (manifest hash).
    pub community: Hash32,
    /// Increases with every new list.
    pub sequence: u64,
    /// When the list was made, unix seconds.
    pub issued: u64,
    /// Revoked members.
    pub revoked: Vec<MemberId>,
}

impl RevocationList {
    /// Checks the list's length.
    pub fn validate(&self, limits: &Limits) -> Result<(), Error> {
        check_limit("revoked members", self.revoked.len(), limits.max_revoked)
    }
}

impl Signable for RevocationList {
    const DOMAIN: &'static [u8] = b"hearth/revocations/v1\0";
    const WHAT: &'static str = "revocation list";
}

/// The community's trust anchor: its id, its admin key and the current revocations.
///
/// Checks certificates and applies revocation lists; holds no clock (callers pass `now`).
#[derive(Debug, Clone)]
pub struct Authority {
    community: Hash32,
    admin: MemberId,
    revoked: HashSet<MemberId>,
    sequence: Option<u64>,
}

impl Authority {
    /// An authority for `community` whose admin is `admin`, with nobody revoked.
    pub fn new(community: Hash32, admin: MemberId) -> Self {
        Authority {
            community,
            admin,
            revoked: HashSet::new(),
            sequence: None,
        }
    }

    /// Verifies a signed manifest and builds its authority.
    pub fn from_manifest(manifest: &Signed<Manifest>) -> Result<Self, Error> {
        let community = manifest.verify()?;
        Ok(Authority::new(community, manifest.body.admin))
    }

    /// The community id.
    pub fn community(&self) -> Hash32 {
        self.community
    }

    /// The admin key.
    pub fn admin(&self) -> MemberId {
        self.admin
    }

    /// Sequence number of the revocation list in force, if any.
    pub fn revocation_sequence(&self) -> Option<u64> {
        self.sequence
    }

    /// Whether `member` is revoked.
    pub fn is_revoked(&self, member: &MemberId) -> bool {
        self.revoked.contains(member)
    }

    fn check_community(&self, found: Hash32) -> Result<(), Error> {
        if found != self.community {
            return Err(Error::WrongCommunity {
                expected: self.community,
                found,
            });
        }
        Ok(())
    }

    /// Checks a certificate: sizes, community, admin signature, `issued <= now < expires`, and
    /// that the member is not revoked, in that order.
    pub fn verify_certificate<'c>(
        &self,
        certificate: &'c Signed<Certificate>,
        now: u64,
        limits: &Limits,
    ) -> Result<&'c Certificate, Error> {
        let cert = &certificate.body;
        cert.validate(limits)?;
        self.check_community(cert.community)?;
        certificate.verify_signature(&self.admin)?;
        if now < cert.issued {
            return Err(Error::CertificateNotYetValid {
                member: cert.member,
                issued: cert.issued,
                now,
            });
        }
        if now >= cert.expires {
            return Err(Error::CertificateExpired {
                member: cert.member,
                expires: cert.expires,
                now,
            });
        }
        if self.is_revoked(&cert.member) {
            return Err(Error::Revoked(cert.member));
        }
        Ok(cert)
    }

    /// Checks that `certificate` is valid and belongs to `sender`.
    pub fn admit<'c>(
        &self,
        sender: &MemberId,
        certificate: &'c Signed<Certificate>,
        now: u64,
        limits: &Limits,
    ) -> Result<&'c Certificate, Error> {
        if certificate.body.member != *sender {
            return Err(Error::CertificateMismatch {
                certificate: certificate.body.member,
                sender: *sender,
            });
        }
        self.verify_certificate(certificate, now, limits)
    }

    /// Verifies a revocation list (size, community, admin signature, newer sequence) and makes it
    /// the one in force.
    pub fn apply_revocations(
        &mut self,
        list: &Signed<RevocationList>,
        limits: &Limits,
    ) -> Result<(), Error> {
        list.body.validate(limits)?;
        self.check_community(list.body.community)?;
        list.verify_signature(&self.admin)?;
        if let Some(current) = self.sequence
            && list.body.sequence <= current
        {
            return Err(Error::StaleRevocations {
                found: list.body.sequence,
                current,
            });
        }
        self.revoked = list.body.revoked.iter().copied().collect();
        self.sequence = Some(list.body.sequence);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Keypair;
    use crate::testutil::{admin, authority, certificate, member, revocations};

    #[test]
    fn valid_certificate_is_admitted() {
        let auth = authority();
        let limits = Limits::default();
        let cert = certificate(&member(1), 1_000, 2_000);
        let body = auth
            .admit(&member(1).member_id(), &cert, 1_000, &limits)
            .unwrap();
        assert!(body.has_role(Role::Contributor));
        body.require(Role::Contributor).unwrap();
        assert_eq!(
            body.require(Role::Observer),
            Err(Error::MissingRole {
                member: member(1).member_id(),
                role: "observer"
            })
        );
        auth.verify_certificate(&cert, 1_999, &limits).unwrap();
    }

    #[test]
    fn each_certificate_failure_has_its_own_error() {
        let auth = authority();
        let limits = Limits::default();
        let m = member(1).member_id();
        let cert = certificate(&member(1), 1_000, 2_000);

        assert_eq!(
            auth.verify_certificate(&cert, 2_000, &limits),
            Err(Error::CertificateExpired {
                member: m,
                expires: 2_000,
                now: 2_000
            })
        );
        assert_eq!(
            auth.verify_certificate(&cert, 999, &limits),
            Err(Error::CertificateNotYetValid {
                member: m,
                issued: 1_000,
                now: 999
            })
        );

        let forged = Signed::sign(cert.body.clone(), &Keypair::from_seed([99; 32])).unwrap();
        assert_eq!(
            auth.verify_certificate(&forged, 1_500, &limits),
            Err(Error::BadSignature {
                what: "certificate",
                signer: admin().member_id()
            })
        );

        let mut elsewhere = cert.body.clone();
        elsewhere.community = Hash32::digest(b"another community");
        let elsewhere = Signed::sign(elsewhere, &admin()).unwrap();
        assert!(matches!(
            auth.verify_certificate(&elsewhere, 1_500, &limits),
            Err(Error::WrongCommunity { .. })
        ));

        assert_eq!(
            auth.admit(&member(2).member_id(), &cert, 1_500, &limits),
            Err(Error::CertificateMismatch {
                certificate: m,
                sender: member(2).member_id()
            })
        );

        let mut revoking = authority();
        revoking
            .apply_revocations(&revocations(1, &[m]), &limits)
            .unwrap();
        assert!(revoking.is_revoked(&m));
        assert_eq!(
            revoking.verify_certificate(&cert, 1_500, &limits),
            Err(Error::Revoked(m))
        );
    }

    #[test]
    fn certificate_limits_at_and_past() {
        let auth = authority();
        let limits = Limits {
            max_certificate_validity_secs: 1_000,
            max_roles: 2,
            ..Limits::default()
        };
        let at = certificate(&member(1), 1_000, 2_000);
        auth.verify_certificate(&at, 1_500, &limits).unwrap();
        let past = certificate(&member(1), 1_000, 2_001);
        assert_eq!(
            auth.verify_certificate(&past, 1_500, &limits),
            Err(Error::LimitExceeded {
                what: "certificate validity secs",
                found: 1_001,
                max: 1_000
            })
        );

        let mut two = at.body.clone();
        two.roles = vec![Role::Contributor, Role::Announcer];
        auth.verify_certificate(
            &Signed::sign(two.clone(), &admin()).unwrap(),
            1_500,
            &limits,
        )
        .unwrap();
        let mut three = two.clone();
        three.roles.push(Role::Observer);
        assert_eq!(
            auth.verify_certificate(&Signed::sign(three, &admin()).unwrap(), 1_500, &limits),
            Err(Error::LimitExceeded {
                what: "certificate roles",
                found: 3,
                max: 2
            })
        );
        let mut twice = two;
        twice.roles[1] = Role::Contributor;
        assert!(matches!(
            auth.verify_certificate(&Signed::sign(twice, &admin()).unwrap(), 1_500, &limits),
            Err(Error::InvalidValue {
                field: "certificate.roles",
                ..
            })
        ));
        let backwards = certificate(&member(1), 2_000, 2_000);
        assert!(matches!(
            auth.verify_certificate(&backwards, 2_000, &limits),
            Err(Error::InvalidValue {
                field: "certificate.expires",
                ..
            })
        ));
    }

    #[test]
    fn revocation_lists_replace_by_sequence() {
        let mut auth = authority();
        let limits = Limits::default();
        let a = member(1).member_id();
        let b = member(2).member_id();
        auth.apply_revocations(&revocations(5, &[a]), &limits)
            .unwrap();
        assert_eq!(auth.revocation_sequence(), Some(5));
        assert_eq!(
            auth.apply_revocations(&revocations(5, &[b]), &limits),
            Err(Error::StaleRevocations {
                found: 5,
                current: 5
            })
        );
        assert_eq!(
            auth.apply_revocations(&revocations(4, &[b]), &limits),
            Err(Error::StaleRevocations {
                found: 4,
                current: 5
            })
        );
        auth.apply_revocations(&revocations(6, &[b]), &limits)
            .unwrap();
        assert!(!auth.is_revoked(&a));
        assert!(auth.is_revoked(&b));

        let mut forged = revocations(7, &[]);
        forged.signature = revocations(8, &[a]).signature;
        assert!(matches!(
            auth.apply_revocations(&forged, &limits),
            Err(Error::BadSignature {
                what: "revocation list",
                ..
            })
        ));
        assert!(auth.is_revoked(&b));
    }

    #[test]
    fn revocation_list_length_at_and_past() {
        let mut auth = authority();
        let limits = Limits {
            max_revoked: 3,
            ..Limits::default()
        };
        let ids: Vec<MemberId> = (1..=4).map(|i| member(i).member_id()).collect();
        auth.apply_revocations(&revocations(1, &ids[..3]), &limits)
            .unwrap();
        assert_eq!(
            auth.apply_revocations(&revocations(2, &ids), &limits),
            Err(Error::LimitExceeded {
                what: "revoked members",
                found: 4,
                max: 3
            })
        );
    }

    #[test]
    fn authority_from_manifest() {
        let manifest = Signed::sign(crate::testutil::manifest(), &admin()).unwrap();
        let auth = Authority::from_manifest(&manifest).unwrap();
        assert_eq!(auth.admin(), admin().member_id());
        assert_eq!(auth.community(), manifest.body.community_id().unwrap());
        assert_eq!(auth.community(), authority().community());
    }
}
