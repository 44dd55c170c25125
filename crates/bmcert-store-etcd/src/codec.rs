//! How bundles, history and lock state are encoded in etcd values (JSON, binary as hex).

use bmcert_store::{Bundle, BundleMeta, KeyFormat, SecretKey, StoreError};
use rustls_pki_types::CertificateDer;
use zeroize::{Zeroize, Zeroizing};

/// A bundle as one etcd value: chain, key and metadata together, so they are written and
/// read as one unit.
#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) struct StoredBundle {
    pub(crate) version: u64,
    chain: Vec<String>,
    key_format: KeyFormat,
    key: String,
    meta: BundleMeta,
}

impl Drop for StoredBundle {
    fn drop(&mut self) {
        self.key.zeroize();
    }
}

impl StoredBundle {
    pub(crate) fn from_bundle(version: u64, bundle: &Bundle) -> Self {
        Self {
            version,
            chain: bundle.chain().iter().map(hex::encode).collect(),
            key_format: bundle.secret_key().format(),
            key: hex::encode(bundle.secret_key().secret_der()),
            meta: bundle.meta().clone(),
        }
    }

    pub(crate) fn meta(&self) -> &BundleMeta {
        &self.meta
    }

    pub(crate) fn to_bundle(&self, what: &str) -> Result<Bundle, StoreError> {
        let mut chain = Vec::with_capacity(self.chain.len());
        for c in &self.chain {
            let der = hex::decode(c).map_err(|e| corrupt(what, &e.to_string()))?;
            chain.push(CertificateDer::from(der));
        }
        let key = Zeroizing::new(
            hex::decode(&self.key).map_err(|_| corrupt(what, "the key is not valid hex"))?,
        );
        let key = SecretKey::new(self.key_format, key.to_vec());
        Bundle::new(chain, key, self.meta.clone())
            .map_err(|e| corrupt(what, &format!("the stored bundle is invalid: {e}")))
    }

    /// A copy under another version number.
    pub(crate) fn with_version(&self, version: u64) -> Self {
        Self {
            version,
            chain: self.chain.clone(),
            key_format: self.key_format,
            key: self.key.clone(),
            meta: self.meta.clone(),
        }
    }
}

/// One kept previous version.
#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) struct HistoryEntry {
    /// The revision at which it was installed.
    pub(crate) revision: u64,
    pub(crate) bundle: StoredBundle,
}

/// A target's history value: the version counter and the kept versions, newest first.
#[derive(Default, serde::Serialize, serde::Deserialize)]
pub(crate) struct StoredHistory {
    pub(crate) last_version: u64,
    pub(crate) entries: Vec<HistoryEntry>,
}

/// A lock's value (the lock key is attached to an etcd lease).
#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) struct LockValue {
    pub(crate) holder: String,
    /// Unix time in nanoseconds, the granting server's clock.
    pub(crate) expires_at_ns: i128,
    /// The etcd lease the key is attached to.
    pub(crate) lease: i64,
    /// The lease's TTL in seconds as granted.
    pub(crate) lease_ttl: i64,
}

pub(crate) fn encode<T: serde::Serialize>(value: &T) -> Result<Zeroizing<Vec<u8>>, StoreError> {
    serde_json::to_vec(value)
        .map(Zeroizing::new)
        .map_err(|e| StoreError::Unavailable(format!("cannot encode a store value: {e}")))
}

pub(crate) fn decode<T: serde::de::DeserializeOwned>(
    what: &str,
    bytes: &[u8],
) -> Result<T, StoreError> {
    // serde_json errors name a position, never the value's content.
    serde_json::from_slice(bytes).map_err(|e| corrupt(what, &e.to_string()))
}

pub(crate) fn corrupt(what: &str, reason: &str) -> StoreError {
    StoreError::Corrupt {
        path: what.into(),
        reason: format!("etcd value unreadable: {reason}"),
    }
}
