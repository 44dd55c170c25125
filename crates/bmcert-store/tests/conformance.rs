//! The `Store` conformance suite against the directory backend.
// Test code: failing loudly is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, Mutex};

use bmcert_store::testing::RawStorage;
use bmcert_store::{block_on, conformance, DirStore, Store};

#[test]
fn dir_store_passes_the_conformance_suite() {
    let root = tempfile::tempdir().unwrap();
    let counter = Mutex::new(0u32);
    let new_store = || -> Arc<dyn Store> {
        let mut n = counter.lock().unwrap();
        *n += 1;
        Arc::new(DirStore::open(root.path().join(format!("store-{n}"))).unwrap())
    };
    block_on(conformance::run_all(&new_store));
    assert!(
        *counter.lock().unwrap() >= 9,
        "every check ran on its own store"
    );
}

#[test]
fn dir_store_passes_the_corruption_suite() {
    let root = tempfile::tempdir().unwrap();
    let counter = Mutex::new(0u32);
    let new_store = || -> (Arc<dyn Store>, Arc<dyn RawStorage>) {
        let mut n = counter.lock().unwrap();
        *n += 1;
        let store = Arc::new(DirStore::open(root.path().join(format!("store-{n}"))).unwrap());
        (store.clone(), store)
    };
    block_on(conformance::corruption(&new_store));
    // 4 per-target files and 2 store-wide ones, 3 harms each; key swap, stale
    // metadata, disable (twice), strays; plus the call that asks for the items.
    assert_eq!(*counter.lock().unwrap(), 1 + 6 * 3 + 2 + 2 + 1);
}
