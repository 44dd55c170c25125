//! The `Store` conformance suite, unchanged, against the etcd cluster of
//! `scripts/peers/etcd.sh` (`BMCERT_ETCD_ENDPOINTS`); each check gets a fresh key prefix.

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

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
        9,
        "every check ran on its own store"
    );
}
