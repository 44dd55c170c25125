//! Helpers shared by the etcd tests.
#![allow(dead_code)]

use bmcert_store_etcd::{EtcdOptions, EtcdStore};

/// The endpoints of the shared test cluster, or `None` (with a message) when the tests run
/// without `scripts/test-all`.
pub(crate) fn endpoints() -> Option<Vec<String>> {
    match std::env::var("BMCERT_ETCD_ENDPOINTS") {
        Ok(v) if !v.trim().is_empty() => Some(v.split(',').map(str::to_owned).collect()),
        _ => {
            eprintln!("skipped: BMCERT_ETCD_ENDPOINTS is not set (scripts/test-all starts an etcd cluster)");
            None
        }
    }
}

/// A store under `prefix` on `endpoints`.
pub(crate) fn connect(endpoints: &[String], prefix: &str) -> EtcdStore {
    let mut options = EtcdOptions::new(endpoints.to_vec());
    options.prefix = prefix.to_owned();
    EtcdStore::connect(options).expect("connect to etcd")
}
