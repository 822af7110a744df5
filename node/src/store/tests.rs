use super::*;

fn pass(p: &str) -> Unlock {
    Unlock::Passphrase(Zeroizing::new(p.to_string()))
}

#[test]
fn create_reopen_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    {
        let store = Store::create(&path, &pass("correct horse")).unwrap();
        store.put(Cf::Rounds, b"r1", b"public").unwrap();
        store
            .put_secret(Cf::Identity, b"signing-key", b"very secret")
            .unwrap();
        // The raw bytes on disk are not the plaintext.
        let raw = store.get(Cf::Identity, b"signing-key").unwrap().unwrap();
        assert!(!raw.windows(11).any(|w| w == b"very secret"));
    }
    let store = Store::open(&path, &pass("correct horse")).unwrap();
    assert_eq!(store.get(Cf::Rounds, b"r1").unwrap().unwrap(), b"public");
    assert_eq!(
        store
            .get_secret(Cf::Identity, b"signing-key")
            .unwrap()
            .unwrap()
            .as_slice(),
        b"very secret"
    );
    assert!(store.get_secret(Cf::Identity, b"absent").unwrap().is_none());
}

#[test]
fn wrong_passphrase_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    drop(Store::create(&path, &pass("right")).unwrap());
    let err = Store::open(&path, &pass("wrong")).unwrap_err();
    assert!(matches!(err, Error::WrongPassphrase), "{err}");
    assert_eq!(
        err.to_string(),
        "wrong passphrase or key file for the store"
    );
    // The store is still intact for the right passphrase.
    assert!(Store::open(&path, &pass("right")).is_ok());
}

#[test]
fn key_file_unlock() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("store.key");
    crate::secrets::write_new_key_file(&key).unwrap();
    let path = dir.path().join("store");
    Store::create(&path, &Unlock::KeyFile(key.clone()))
        .unwrap()
        .put_secret(Cf::Documents, b"d", b"x")
        .unwrap();
    let store = Store::open(&path, &Unlock::KeyFile(key)).unwrap();
    assert_eq!(
        store
            .get_secret(Cf::Documents, b"d")
            .unwrap()
            .unwrap()
            .as_slice(),
        b"x"
    );
    drop(store);
    assert!(matches!(
        Store::open(&path, &pass("")),
        Err(Error::WrongPassphrase)
    ));
}

#[test]
fn missing_and_existing_stores() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let err = Store::open(&path, &pass("p")).unwrap_err();
    assert!(err.to_string().contains("hearth init"), "{err}");
    drop(Store::create(&path, &pass("p")).unwrap());
    assert!(matches!(
        Store::create(&path, &pass("p")),
        Err(Error::AlreadyInitialized(_))
    ));
}

#[test]
fn newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    Store::create(&path, &pass("p"))
        .unwrap()
        .put(Cf::Meta, META_SCHEMA, &(SCHEMA_VERSION + 1).to_be_bytes())
        .unwrap();
    let err = Store::open(&path, &pass("p")).unwrap_err();
    assert!(
        matches!(err, Error::NewerStore { found, .. } if found == SCHEMA_VERSION + 1),
        "{err}"
    );
    assert!(err.to_string().contains("upgrade hearth"));
}

#[test]
fn tampered_or_moved_secret_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::create(&dir.path().join("s"), &pass("p")).unwrap();
    store
        .put_secret(Cf::Adapters, b"personal", b"weights")
        .unwrap();
    let mut raw = store.get(Cf::Adapters, b"personal").unwrap().unwrap();
    // Moved to another key: fails.
    store.put(Cf::Adapters, b"other", &raw).unwrap();
    assert!(matches!(
        store.get_secret(Cf::Adapters, b"other"),
        Err(Error::Tampered { .. })
    ));
    // Flipped byte: fails.
    raw[30] ^= 0x40;
    store.put(Cf::Adapters, b"personal", &raw).unwrap();
    assert!(matches!(
        store.get_secret(Cf::Adapters, b"personal"),
        Err(Error::Tampered { .. })
    ));
}

#[test]
fn batch_applies_all_keys_and_scan_is_ordered() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::create(&dir.path().join("s"), &pass("p")).unwrap();
    let mut batch = store.batch();
    for i in (0u8..5).rev() {
        batch.put(Cf::Ledger, &[b'r', i], &[i]);
    }
    batch.put(Cf::Ledger, b"s0", b"not in prefix");
    batch.put_secret(Cf::Documents, b"doc", b"text").unwrap();
    store.write(batch).unwrap();
    let rows = store.scan_prefix(Cf::Ledger, b"r").unwrap();
    assert_eq!(
        rows.iter().map(|(_, v)| v[0]).collect::<Vec<_>>(),
        vec![0, 1, 2, 3, 4]
    );
    let mut batch = store.batch();
    batch.delete(Cf::Ledger, &[b'r', 2]);
    store.write(batch).unwrap();
    assert_eq!(store.scan_prefix(Cf::Ledger, b"r").unwrap().len(), 4);
    assert!(store.get_secret(Cf::Documents, b"doc").unwrap().is_some());
}

#[test]
fn a_store_open_elsewhere_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    let _first = Store::create(&path, &pass("p")).unwrap();
    let err = Store::open(&path, &pass("p")).unwrap_err();
    assert!(err.to_string().to_lowercase().contains("lock"), "{err}");
}

#[test]
fn corrupt_store_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    drop(Store::create(&path, &pass("p")).unwrap());
    // Destroy every MANIFEST file RocksDB points to.
    for entry in std::fs::read_dir(&path).unwrap() {
        let p = entry.unwrap().path();
        if p.file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("MANIFEST")
        {
            std::fs::write(&p, b"garbage").unwrap();
        }
    }
    assert!(matches!(Store::open(&path, &pass("p")), Err(Error::Db(_))));
}
