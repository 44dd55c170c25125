//! [`open_store`]: one call from a [`StoreConfig`] to the store it names.

use std::sync::Arc;

use bmcert_store::{DirStore, Store, StoreConfig, StoreConfigError};

/// Opens the store `config` names: the directory store, or (with the cargo feature `etcd`)
/// the etcd store, its TLS files read and the cluster checked with one request. A build
/// without the feature refuses an etcd configuration with
/// [`StoreConfigError::EtcdNotBuilt`]. The `bmcert` command, the examples and services
/// open their store through this call, so they share its validation
/// ([`StoreConfig::from_settings`]) and its typed failures
/// ([`StoreConfigError::Store`] with [`UnavailableCause`](bmcert_store::UnavailableCause)).
///
/// ```
/// use bmcert::store::{StoreConfig, StoreConfigError};
///
/// let dir = tempfile::tempdir().unwrap();
/// let config = StoreConfig::parse(dir.path().join("store").to_str().unwrap()).unwrap();
/// let store = bmcert::open_store(&config).unwrap();
/// assert!(bmcert::block_on(store.list()).unwrap().is_empty());
/// # #[cfg(not(feature = "etcd"))]
/// assert!(matches!(
///     bmcert::open_store(&StoreConfig::parse("etcd://127.0.0.1:2379").unwrap()),
///     Err(StoreConfigError::EtcdNotBuilt(_))
/// ));
/// ```
pub fn open_store(config: &StoreConfig) -> Result<Arc<dyn Store>, StoreConfigError> {
    match config {
        StoreConfig::Dir(path) => Ok(Arc::new(DirStore::open(path.clone())?)),
        #[cfg(feature = "etcd")]
        StoreConfig::Etcd(etcd) => Ok(Arc::new(bmcert_store_etcd::EtcdStore::open(etcd)?)),
        #[cfg(not(feature = "etcd"))]
        StoreConfig::Etcd(etcd) => Err(StoreConfigError::EtcdNotBuilt(etcd.url())),
    }
}
