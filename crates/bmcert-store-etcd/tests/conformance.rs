//! The `Store` conformance suite, unchanged, against the etcd cluster of
//! `scripts/peers/etcd.sh` (`BMCERT_ETCD_ENDPOINTS`); each check gets a fresh key prefix.

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use bmcert_store::testing::RawStorage;
use bmcert_store::{block_on, conformance, Store};

#[test]
fn etcd_store_passes_the_conformance_suite() {
    let Some(endpoints) = common::endpoints() else {
        return;
    };
    let run = std::process::id();
    let n = AtomicU32::new(0);
    let new_store = || -> Arc<dyn Store> {
        let prefix = format!("/conformance-{run}-{}/", n.fetch_add(1, Ordering::SeqCst));
        Arc::new(common::connect(&endpoints, &prefix))
    };
    block_on(conformance::run_all(&new_store));
    assert_eq!(
        n.load(Ordering::SeqCst),
        11,
        "every check ran on its own store"
    );
}

#[test]
fn etcd_store_passes_the_corruption_suite() {
    let Some(endpoints) = common::endpoints() else {
        return;
    };
    let run = std::process::id();
    let n = AtomicU32::new(0);
    let new_store = || -> (Arc<dyn Store>, Arc<dyn RawStorage>) {
        let prefix = format!("/corruption-{run}-{}/", n.fetch_add(1, Ordering::SeqCst));
        let store = Arc::new(common::connect(&endpoints, &prefix));
        (store.clone(), store)
    };
    block_on(conformance::corruption(&new_store));
    // The bundle and history values, 3 harms each; key swap, stale metadata, disable
    // (twice), strays; plus the call that asks for the items.
    assert_eq!(n.load(Ordering::SeqCst), 1 + 2 * 3 + 2 + 2 + 1);
}
