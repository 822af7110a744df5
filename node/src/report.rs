//! What `hearth status`, `hearth peers` and `hearth budget` show, and the revocation list the
//! admin signs with `hearth revoke`. A running node puts these reports in the API's `/status`
//! (its store is locked while it runs); a stopped node's are read from the store.

use std::collections::BTreeSet;

use anyhow::Context as _;
use hearth_protocol::{Manifest, MemberId, RevocationList, Signed};
use hearth_training::{Budget, Ledger, Record};
use serde::{Deserialize, Serialize};

use crate::daemon::persist;
use crate::home::{Home, unix_now};
use crate::store::{Cf, Store};

const KEY_REVOCATIONS: &[u8] = b"revocations";

/// The member's privacy ledger, readable.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PrivacyReport {
    /// `local` or `distributed`.
    pub mode: String,
    /// The budget, zCDP ρ.
    pub budget_rho: f64,
    /// δ of the (ε, δ) figures.
    pub delta: f64,
    /// ρ spent.
    pub spent_rho: f64,
    /// ε spent at δ.
    pub epsilon: f64,
    /// ε of the whole budget at δ.
    pub epsilon_budget: f64,
    /// Every release charged, oldest first.
    pub releases: Vec<Record>,
}

impl PrivacyReport {
    /// The report of `ledger` in a community of privacy mode `mode`.
    pub fn new(mode: &str, ledger: &Ledger) -> Self {
        let budget = ledger.budget();
        let eps = |rho: f64| {
            hearth_training::epsilon(rho, budget.delta)
                .unwrap_or_else(|_| hearth_training::standard_epsilon(rho, budget.delta))
        };
        Self {
            mode: mode.into(),
            budget_rho: budget.rho,
            delta: budget.delta,
            spent_rho: ledger.spent(),
            epsilon: eps(ledger.spent()),
            epsilon_budget: eps(budget.rho),
            releases: ledger.records().to_vec(),
        }
    }

    /// The stored ledger's report.
    pub fn load(store: &Store, manifest: &Manifest) -> anyhow::Result<Self> {
        let p = &manifest.privacy;
        let ledger = persist::load_ledger(
            store,
            Budget {
                rho: p.budget_rho,
                delta: p.delta,
            },
        )?;
        Ok(Self::new(mode_name(manifest), &ledger))
    }
}

/// `local` or `distributed`.
pub fn mode_name(manifest: &Manifest) -> &'static str {
    match manifest.privacy.mode {
        hearth_protocol::PrivacyMode::Local => "local",
        hearth_protocol::PrivacyMode::Distributed => "distributed",
    }
}

/// A member this node holds a certificate of.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemberReport {
    /// Member id.
    pub id: String,
    /// Roles granted.
    pub roles: Vec<String>,
    /// Certificate expiry, unix seconds.
    pub expires: u64,
    /// On the admin's revocation list.
    pub revoked: bool,
    /// Connected to this node now (only known while the node runs).
    pub connected: bool,
}

/// The members known from the certificates in `home` (this member's own included), with
/// `connected` peers marked.
pub fn members(home: &Home, connected: &BTreeSet<String>) -> anyhow::Result<Vec<MemberReport>> {
    let store = &home.store;
    let revoked: BTreeSet<MemberId> = load_revocations(store)?
        .map(|l| l.body.revoked.into_iter().collect())
        .unwrap_or_default();
    let mut certificates = persist::certificates(store)?;
    if let Some(own) = home.certificate()?
        && !certificates
            .iter()
            .any(|c| c.body.member == own.body.member)
    {
        certificates.push(own);
    }
    let mut out: Vec<MemberReport> = certificates
        .into_iter()
        .map(|c| {
            let id = c.body.member.to_string();
            MemberReport {
                connected: connected.contains(&id),
                revoked: revoked.contains(&c.body.member),
                roles: c.body.roles.iter().map(|r| format!("{r:?}")).collect(),
                expires: c.body.expires,
                id,
            }
        })
        .collect();
    out.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(out)
}

/// The admin's revocation list in force here, if any.
pub fn load_revocations(store: &Store) -> anyhow::Result<Option<Signed<RevocationList>>> {
    match store.get(Cf::Peers, KEY_REVOCATIONS)? {
        None => Ok(None),
        Some(bytes) => Ok(Some(
            serde_cbor::from_slice(&bytes).context("the stored revocation list is corrupt")?,
        )),
    }
}

/// Stores `list` unless the stored one is as new (higher or equal sequence); whether it was
/// stored. The caller verifies the list first.
pub fn store_revocations(store: &Store, list: &Signed<RevocationList>) -> anyhow::Result<bool> {
    if load_revocations(store)?.is_some_and(|old| old.body.sequence >= list.body.sequence) {
        return Ok(false);
    }
    store.put(Cf::Peers, KEY_REVOCATIONS, &serde_cbor::to_vec(list)?)?;
    Ok(true)
}

/// Adds `member` to the community's revocation list, signed with this home's key, which must
/// be the community's admin key; stores and returns the new list.
pub fn revoke(home: &Home, member: MemberId) -> anyhow::Result<Signed<RevocationList>> {
    let signed = home
        .manifest()?
        .context("this node is in no community; only a community's admin can revoke members")?;
    let community = signed
        .verify()
        .context("the stored manifest does not verify")?;
    anyhow::ensure!(
        signed.body.admin == home.member_id(),
        "only the community's admin ({}) can revoke members; this node is {}",
        signed.body.admin,
        home.member_id()
    );
    anyhow::ensure!(member != home.member_id(), "the admin cannot revoke itself");
    let previous = load_revocations(&home.store)?;
    let (sequence, mut revoked) = match previous {
        Some(l) => (l.body.sequence + 1, l.body.revoked),
        None => (1, Vec::new()),
    };
    anyhow::ensure!(
        !revoked.contains(&member),
        "{member} is already revoked (list #{})",
        sequence - 1
    );
    revoked.push(member);
    revoked.sort();
    let max = signed.body.limits.max_revoked;
    anyhow::ensure!(
        revoked.len() <= max as usize,
        "the community's limit of {max} revoked members is reached"
    );
    let list = RevocationList {
        community,
        sequence,
        issued: unix_now(),
        revoked,
    };
    let list = Signed::sign(list, &home.key)?;
    store_revocations(&home.store, &list)?;
    Ok(list)
}

/// What a running node is doing.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeReport {
    /// Peers connected now.
    pub peers: Vec<String>,
    /// The latest round this node started.
    pub round: Option<u64>,
    /// Whether a round is open (not yet closed) now.
    pub round_open: bool,
    /// Whether local training (or a DP release) is running.
    pub training: bool,
    /// Deltas this node published.
    pub contributions: u64,
    /// Versions this node computed.
    pub rounds_closed: u64,
    /// Versions it fetched, verified and adopted.
    pub rounds_adopted: u64,
    /// Rounds that closed without an update.
    pub rounds_failed: u64,
}
