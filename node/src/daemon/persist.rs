//! What the daemon keeps in the store: the community head and its version records, the signed
//! deltas behind each version and the signed secure-aggregation messages of each round (served
//! to peers that catch up), member certificates and the privacy ledger.
//!
//! | column family | key | value |
//! | --- | --- | --- |
//! | `adapters` | `community/head` | [`StoredState`] of the head |
//! | `rounds` | `record/<round u64be>` | [`WireRecord`] of the version the round produced |
//! | `deltas` | `<round u64be><content hash>` | the delta's signed envelope, as received |
//! | `deltas` | `<round u64be>m<SHA-256 of the envelope>` | a secure-aggregation message's signed envelope, as received or published |
//! | `peers` | `cert/<member id>` | a verified member certificate |
//! | `ledger` | `ledger` | the privacy ledger's records |
//!
//! A new head is written in one batch with its record (and the ledger goes in its own synced
//! write before any release is published), so a crash leaves either the old head or the new one.

use hearth_federation::{Adapter, OptimizerState, State, VersionRecord};
use hearth_protocol::{Certificate, Hash32, LoraShape, Signed};
use hearth_training::{Budget, Ledger, Record};
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use crate::store::{Cf, Store};

const KEY_HEAD: &[u8] = b"community/head";
const KEY_LEDGER: &[u8] = b"ledger";
const RECORD_PREFIX: &[u8] = b"record/";
const CERT_PREFIX: &[u8] = b"cert/";
const STATE_PREFIX: &[u8] = b"state/";
/// Past heads kept (beside the head) so that a node can go back to a fork point: a fork deeper
/// than this cannot be left automatically (docs/PROTOCOL.md §14.8).
pub const KEEP_STATES: u64 = 16;
/// Marks a secure-aggregation message among a round's deltas (a delta key has a hash there).
const MESSAGE_MARK: u8 = b'm';

/// A version record as stored and as sent over `/hearth/sync/1`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireRecord {
    /// Round that produced the version.
    pub round: u64,
    /// Version it started from.
    pub parent: Hash32,
    /// The version.
    pub version: Hash32,
    /// Content hashes of its inputs, sorted.
    pub inputs: Vec<Hash32>,
    /// Hash of the optimizer state after the round.
    pub optimizer: Hash32,
}

impl From<&VersionRecord> for WireRecord {
    fn from(r: &VersionRecord) -> Self {
        WireRecord {
            round: r.round,
            parent: r.parent,
            version: r.version,
            inputs: r.inputs.clone(),
            optimizer: r.optimizer,
        }
    }
}

impl From<WireRecord> for VersionRecord {
    fn from(r: WireRecord) -> Self {
        VersionRecord {
            round: r.round,
            parent: r.parent,
            version: r.version,
            inputs: r.inputs,
            optimizer: r.optimizer,
        }
    }
}

/// The community state as stored: adapter and optimizer moments as little-endian `f32` bytes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredState {
    /// Round that produced it (0: genesis).
    pub round: u64,
    /// Adapter values, wire order.
    pub adapter: ByteBuf,
    /// `none`, `momentum` or `adam`.
    pub optimizer: String,
    /// First moment (empty for `none`).
    pub m: ByteBuf,
    /// Second moment (`adam` only).
    pub v: ByteBuf,
}

fn f32s_to_bytes(values: &[f32]) -> ByteBuf {
    ByteBuf::from(
        values
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect::<Vec<u8>>(),
    )
}

fn bytes_to_f32s(bytes: &[u8]) -> anyhow::Result<Vec<f32>> {
    anyhow::ensure!(
        bytes.len().is_multiple_of(4),
        "a stored vector is {} bytes, not a multiple of 4",
        bytes.len()
    );
    Ok(bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

impl StoredState {
    /// Encodes `state`.
    pub fn new(round: u64, state: &State) -> Self {
        let (optimizer, m, v) = match &state.optimizer {
            OptimizerState::None => ("none", &[][..], &[][..]),
            OptimizerState::Momentum { m } => ("momentum", m.as_slice(), &[][..]),
            OptimizerState::Adam { m, v } => ("adam", m.as_slice(), v.as_slice()),
        };
        StoredState {
            round,
            adapter: f32s_to_bytes(&state.adapter.to_flat()),
            optimizer: optimizer.into(),
            m: f32s_to_bytes(m),
            v: f32s_to_bytes(v),
        }
    }

    /// Decodes and checks against the manifest's shape.
    pub fn decode(&self, shape: &LoraShape) -> anyhow::Result<State> {
        let adapter = Adapter::from_flat(shape, &bytes_to_f32s(&self.adapter)?)?;
        let optimizer = match self.optimizer.as_str() {
            "none" => OptimizerState::None,
            "momentum" => OptimizerState::Momentum {
                m: bytes_to_f32s(&self.m)?,
            },
            "adam" => OptimizerState::Adam {
                m: bytes_to_f32s(&self.m)?,
                v: bytes_to_f32s(&self.v)?,
            },
            other => anyhow::bail!("unknown optimizer state {other:?} in the store"),
        };
        let state = State { adapter, optimizer };
        state.check(shape)?;
        Ok(state)
    }
}

fn record_key(round: u64) -> Vec<u8> {
    [RECORD_PREFIX, &round.to_be_bytes()].concat()
}

fn delta_key(round: u64, hash: &Hash32) -> Vec<u8> {
    [&round.to_be_bytes()[..], hash.as_bytes()].concat()
}

fn cbor<T: Serialize>(value: &T) -> anyhow::Result<Vec<u8>> {
    Ok(serde_cbor::to_vec(value)?)
}

fn decode<T: serde::de::DeserializeOwned>(what: &str, bytes: &[u8]) -> anyhow::Result<T> {
    serde_cbor::from_slice(bytes).map_err(|e| anyhow::anyhow!("corrupt {what} in the store: {e}"))
}

/// The head: round, state, and the most recent records (oldest first, up to `keep`).
pub fn load_head(
    store: &Store,
    shape: &LoraShape,
    keep: usize,
) -> anyhow::Result<Option<(u64, State, Vec<VersionRecord>)>> {
    let Some(bytes) = store.get(Cf::Adapters, KEY_HEAD)? else {
        return Ok(None);
    };
    let stored: StoredState = decode("community head", &bytes)?;
    let state = stored.decode(shape)?;
    let mut records: Vec<VersionRecord> = store
        .scan_prefix(Cf::Rounds, RECORD_PREFIX)?
        .into_iter()
        .map(|(_, v)| decode::<WireRecord>("version record", &v).map(Into::into))
        .collect::<anyhow::Result<_>>()?;
    records.retain(|r| r.round <= stored.round);
    if let Some(last) = records.last() {
        anyhow::ensure!(
            last.round == stored.round && last.version == state.version(),
            "the store's community head (round {}) does not match its last version record (round {})",
            stored.round,
            last.round
        );
    }
    let skip = records.len().saturating_sub(keep);
    Ok(Some((stored.round, state, records.split_off(skip))))
}

/// Writes a new head with its record, in one batch.
pub fn commit_version(store: &Store, record: &VersionRecord, state: &State) -> anyhow::Result<()> {
    anyhow::ensure!(
        state.version() == record.version,
        "refusing to store a state that is not the record's version"
    );
    let mut batch = store.batch();
    batch.put(
        Cf::Rounds,
        &record_key(record.round),
        &cbor(&WireRecord::from(record))?,
    );
    let stored = cbor(&StoredState::new(record.round, state))?;
    batch.put(Cf::Adapters, KEY_HEAD, &stored);
    batch.put(Cf::Adapters, &state_key(record.round), &stored);
    if record.round > KEEP_STATES {
        batch.delete(Cf::Adapters, &state_key(record.round - KEEP_STATES - 1));
    }
    store.write(batch)?;
    Ok(())
}

fn state_key(round: u64) -> Vec<u8> {
    [STATE_PREFIX, &round.to_be_bytes()].concat()
}

/// The head this node held after round `round`, if it still keeps it (the last
/// [`KEEP_STATES`] rounds).
pub fn state_at(store: &Store, shape: &LoraShape, round: u64) -> anyhow::Result<Option<State>> {
    let Some(bytes) = store.get(Cf::Adapters, &state_key(round))? else {
        return Ok(None);
    };
    let stored: StoredState = decode("past community head", &bytes)?;
    anyhow::ensure!(
        stored.round == round,
        "the head stored for round {round} says round {}",
        stored.round
    );
    Ok(Some(stored.decode(shape)?))
}

/// Goes back to the head `state` of round `round` (a fork point), in one batch: the head, and
/// no version record or kept state of a later round (their versions are another chain's now).
pub fn rollback(store: &Store, round: u64, state: &State) -> anyhow::Result<()> {
    let mut batch = store.batch();
    for (key, _) in store.scan_prefix(Cf::Rounds, RECORD_PREFIX)? {
        if round_of(&key, RECORD_PREFIX).is_some_and(|r| r > round) {
            batch.delete(Cf::Rounds, &key);
        }
    }
    for (key, _) in store.scan_prefix(Cf::Adapters, STATE_PREFIX)? {
        if round_of(&key, STATE_PREFIX).is_some_and(|r| r > round) {
            batch.delete(Cf::Adapters, &key);
        }
    }
    batch.put(
        Cf::Adapters,
        KEY_HEAD,
        &cbor(&StoredState::new(round, state))?,
    );
    store.write(batch)?;
    Ok(())
}

fn round_of(key: &[u8], prefix: &[u8]) -> Option<u64> {
    let rest = key.strip_prefix(prefix)?;
    Some(u64::from_be_bytes(rest.try_into().ok()?))
}

/// The record of the version `round` produced, if this node has it.
pub fn record(store: &Store, round: u64) -> anyhow::Result<Option<WireRecord>> {
    store
        .get(Cf::Rounds, &record_key(round))?
        .map(|b| decode("version record", &b))
        .transpose()
}

/// Keeps a delta's signed envelope.
pub fn put_delta(store: &Store, round: u64, hash: &Hash32, envelope: &[u8]) -> anyhow::Result<()> {
    store.put(Cf::Deltas, &delta_key(round, hash), envelope)?;
    Ok(())
}

/// A delta's signed envelope, if kept.
pub fn delta(store: &Store, round: u64, hash: &Hash32) -> anyhow::Result<Option<Vec<u8>>> {
    Ok(store.get(Cf::Deltas, &delta_key(round, hash))?)
}

fn message_prefix(round: u64) -> Vec<u8> {
    [&round.to_be_bytes()[..], &[MESSAGE_MARK]].concat()
}

/// Keeps a secure-aggregation message's signed envelope (keys, shares, masked input, survivor
/// set or unmasking shares) of `round`, accepted by the community's checks, so that peers that
/// missed the round can recompute it. The same envelope twice is stored once. Bounded by the
/// community: it accepts one message of each kind per cohort member and round. Pruned with the
/// deltas ([`prune_deltas`]).
pub fn put_round_message(store: &Store, round: u64, envelope: &[u8]) -> anyhow::Result<()> {
    let key = [message_prefix(round), Hash32::digest(envelope).0.to_vec()].concat();
    store.put(Cf::Deltas, &key, envelope)?;
    Ok(())
}

/// Every kept secure-aggregation message of `round`, in key order (by envelope hash).
pub fn round_messages(store: &Store, round: u64) -> anyhow::Result<Vec<Vec<u8>>> {
    Ok(store
        .scan_prefix(Cf::Deltas, &message_prefix(round))?
        .into_iter()
        .map(|(_, v)| v)
        .collect())
}

/// Drops kept deltas and secure-aggregation messages of rounds before `before`.
pub fn prune_deltas(store: &Store, before: u64) -> anyhow::Result<usize> {
    let old: Vec<Vec<u8>> = store
        .scan_prefix(Cf::Deltas, &[])?
        .into_iter()
        .map(|(k, _)| k)
        .filter(|k| {
            k.len() >= 8 && u64::from_be_bytes(k[..8].try_into().unwrap_or([0xff; 8])) < before
        })
        .collect();
    let n = old.len();
    if n > 0 {
        let mut batch = store.batch();
        for k in &old {
            batch.delete(Cf::Deltas, k);
        }
        store.write(batch)?;
    }
    Ok(n)
}

/// Remembers a verified certificate.
pub fn put_certificate(store: &Store, cert: &Signed<Certificate>) -> anyhow::Result<()> {
    let key = [CERT_PREFIX, cert.body.member.as_bytes()].concat();
    store.put(Cf::Peers, &key, &cbor(cert)?)?;
    Ok(())
}

/// Every certificate remembered (to be verified again by the caller).
pub fn certificates(store: &Store) -> anyhow::Result<Vec<Signed<Certificate>>> {
    store
        .scan_prefix(Cf::Peers, CERT_PREFIX)?
        .into_iter()
        .map(|(_, v)| decode("certificate", &v))
        .collect()
}

/// The privacy ledger (a new one on first use).
pub fn load_ledger(store: &Store, budget: Budget) -> anyhow::Result<Ledger> {
    match store.get(Cf::Ledger, KEY_LEDGER)? {
        None => Ok(Ledger::new(budget)?),
        Some(bytes) => {
            let records: Vec<Record> = decode("privacy ledger", &bytes)?;
            Ok(Ledger::restore(budget, records)?)
        }
    }
}

/// Persists the ledger (synced) — before the release it records is published.
pub fn save_ledger(store: &Store, ledger: &Ledger) -> anyhow::Result<()> {
    store.put(Cf::Ledger, KEY_LEDGER, &cbor(&ledger.records().to_vec())?)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use hearth_protocol::Target;

    use super::*;
    use crate::secrets::Unlock;

    fn shape() -> LoraShape {
        LoraShape {
            rank: 2,
            alpha: 4.0,
            layers: 2,
            targets: vec![Target {
                module: "q_proj".into(),
                in_dim: 8,
                out_dim: 3,
            }],
            ffa_seed: 1,
        }
    }

    fn unlock(dir: &tempfile::TempDir) -> Unlock {
        let key = dir.path().join("key");
        if !key.exists() {
            std::fs::write(&key, [7u8; 32]).unwrap();
        }
        Unlock::KeyFile(key)
    }

    fn store(dir: &tempfile::TempDir) -> Store {
        Store::create(&dir.path().join("s"), &unlock(dir)).unwrap()
    }

    #[test]
    fn a_committed_version_is_the_head_after_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(&dir);
        let shape = shape();
        assert!(load_head(&s, &shape, 8).unwrap().is_none());
        let values: Vec<f32> = (0..12).map(|i| i as f32 * 0.5).collect();
        let state = State {
            adapter: Adapter::from_flat(&shape, &values).unwrap(),
            optimizer: OptimizerState::Momentum { m: vec![0.25; 12] },
        };
        let record = VersionRecord {
            round: 3,
            parent: Hash32::ZERO,
            version: state.version(),
            inputs: vec![Hash32::digest(b"d")],
            optimizer: state.optimizer_hash(),
        };
        commit_version(&s, &record, &state).unwrap();
        drop(s);
        let s = Store::open(&dir.path().join("s"), &unlock(&dir)).unwrap();
        let (round, back, records) = load_head(&s, &shape, 8).unwrap().unwrap();
        assert_eq!((round, &back, records), (3, &state, vec![record.clone()]));
        assert_eq!(record_of(&s, 3), Some(WireRecord::from(&record)));
        assert_eq!(record_of(&s, 2), None);
    }

    #[test]
    fn past_heads_are_kept_for_the_fork_window_and_a_rollback_drops_what_came_after() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(&dir);
        let shape = shape();
        let mut parent = Hash32::ZERO;
        let mut states = vec![State::genesis(Adapter::zeros(&shape))];
        let last = 2 * KEEP_STATES;
        for round in 1..=last {
            let values: Vec<f32> = (0..12).map(|i| (i as u64 * round) as f32).collect();
            let state = State::genesis(Adapter::from_flat(&shape, &values).unwrap());
            let record = VersionRecord {
                round,
                parent,
                version: state.version(),
                inputs: vec![Hash32::digest(&round.to_be_bytes())],
                optimizer: state.optimizer_hash(),
            };
            commit_version(&s, &record, &state).unwrap();
            parent = record.version;
            states.push(state);
        }
        // The head and the KEEP_STATES before it are kept; one more is not.
        let oldest = last - KEEP_STATES;
        for round in oldest..=last {
            let kept = state_at(&s, &shape, round).unwrap();
            assert_eq!(
                kept.as_ref(),
                Some(&states[round as usize]),
                "round {round}"
            );
        }
        assert_eq!(state_at(&s, &shape, oldest - 1).unwrap(), None);

        let back = oldest + 2;
        rollback(&s, back, &states[back as usize]).unwrap();
        drop(s);
        let s = Store::open(&dir.path().join("s"), &unlock(&dir)).unwrap();
        let (round, head, records) = load_head(&s, &shape, 1024).unwrap().unwrap();
        assert_eq!((round, &head), (back, &states[back as usize]));
        assert_eq!(records.last().map(|r| r.round), Some(back));
        assert!(record_of(&s, back).is_some());
        assert_eq!(record_of(&s, back + 1), None);
        assert_eq!(state_at(&s, &shape, back + 1).unwrap(), None);
        assert!(state_at(&s, &shape, back).unwrap().is_some());
    }

    fn record_of(s: &Store, round: u64) -> Option<WireRecord> {
        record(s, round).unwrap()
    }

    #[test]
    fn a_state_that_is_not_the_record_is_refused_and_bad_bytes_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(&dir);
        let shape = shape();
        let state = State::genesis(Adapter::zeros(&shape));
        let record = VersionRecord {
            round: 1,
            parent: Hash32::ZERO,
            version: Hash32::digest(b"other"),
            inputs: vec![],
            optimizer: state.optimizer_hash(),
        };
        assert!(commit_version(&s, &record, &state).is_err());
        s.put(Cf::Adapters, KEY_HEAD, b"\xff\x00").unwrap();
        assert!(
            load_head(&s, &shape, 8)
                .unwrap_err()
                .to_string()
                .contains("corrupt community head")
        );
        let mut stored = StoredState::new(1, &state);
        stored.adapter = ByteBuf::from(vec![0u8; 5]);
        assert!(stored.decode(&shape).is_err());
        stored.adapter = ByteBuf::from(vec![0u8; 8]);
        assert!(stored.decode(&shape).is_err()); // 2 values, the shape has 12
    }

    #[test]
    fn deltas_are_kept_by_round_and_pruned() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(&dir);
        let (a, b) = (Hash32::digest(b"a"), Hash32::digest(b"b"));
        put_delta(&s, 1, &a, b"one").unwrap();
        put_delta(&s, 2, &b, b"two").unwrap();
        assert_eq!(delta(&s, 1, &a).unwrap().as_deref(), Some(&b"one"[..]));
        assert_eq!(delta(&s, 2, &a).unwrap(), None);
        assert_eq!(prune_deltas(&s, 2).unwrap(), 1);
        assert_eq!(delta(&s, 1, &a).unwrap(), None);
        assert!(delta(&s, 2, &b).unwrap().is_some());
    }

    #[test]
    fn round_messages_are_kept_once_by_round_and_pruned_with_the_deltas() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(&dir);
        let d = Hash32::digest(b"d");
        put_delta(&s, 3, &d, b"delta").unwrap();
        for m in [&b"keys"[..], b"masked", b"keys"] {
            put_round_message(&s, 3, m).unwrap();
        }
        put_round_message(&s, 4, b"later").unwrap();
        let mut three = round_messages(&s, 3).unwrap();
        three.sort();
        assert_eq!(three, vec![b"keys".to_vec(), b"masked".to_vec()]);
        assert_eq!(round_messages(&s, 4).unwrap(), vec![b"later".to_vec()]);
        assert!(round_messages(&s, 2).unwrap().is_empty());
        // The delta of the round is not a message, and is still found by its hash.
        assert_eq!(delta(&s, 3, &d).unwrap().as_deref(), Some(&b"delta"[..]));
        assert_eq!(prune_deltas(&s, 4).unwrap(), 3);
        assert!(round_messages(&s, 3).unwrap().is_empty());
        assert_eq!(round_messages(&s, 4).unwrap().len(), 1);
    }

    #[test]
    fn the_ledger_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(&dir);
        let budget = Budget::default();
        let mut ledger = load_ledger(&s, budget).unwrap();
        assert_eq!(ledger.spent(), 0.0);
        let noise = hearth_training::Noise::Local(
            hearth_training::Gaussian::new(
                16,
                hearth_training::NoiseParams::new(1.0, 2.0).unwrap(),
            )
            .unwrap(),
        );
        ledger.charge(1, noise.mechanism(), 1.0).unwrap();
        save_ledger(&s, &ledger).unwrap();
        let back = load_ledger(&s, budget).unwrap();
        assert_eq!(back.records(), ledger.records());
        let rho = noise.rho().unwrap();
        assert!(
            (0.125..0.13).contains(&rho),
            "ρ = 1/(2σ²) up to OpenDP's rounding: {rho}"
        );
        assert!((back.spent() - rho).abs() < 1e-12);
    }
}
