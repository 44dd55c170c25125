//! How bundles, history and lock state are encoded in etcd values (JSON, binary as hex).

use bmcert_store::{
    Bundle, BundleMeta, Damage, Fingerprint, KeyFormat, Part, SecretKey, StoreError,
};
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
    /// The digest of the chain ([`Bundle::chain_digest`]); absent in values written before
    /// it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    chain_sha256: Option<Fingerprint>,
}

impl core::fmt::Debug for StoredBundle {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("StoredBundle")
            .field("version", &self.version)
            .field("certificates", &self.chain.len())
            .field("key", &"[secret key elided]")
            .field("meta", &self.meta)
            .finish()
    }
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
            chain_sha256: Some(bundle.chain_digest()),
        }
    }

    /// The bundle, proven whole ([`Bundle::verified`]).
    pub(crate) fn to_bundle(&self) -> Result<Bundle, Damage> {
        let mut chain = Vec::with_capacity(self.chain.len());
        for c in &self.chain {
            let der = hex::decode(c).map_err(|e| Damage::Unreadable {
                part: Part::Certificate,
                reason: format!("a certificate is not valid hex: {e}"),
            })?;
            chain.push(CertificateDer::from(der));
        }
        let key = Zeroizing::new(hex::decode(&self.key).map_err(|_| Damage::Unreadable {
            part: Part::Key,
            reason: "the key is not valid hex".into(),
        })?);
        let key = SecretKey::new(self.key_format, key.to_vec());
        Bundle::verified_stored(chain, key, self.meta.clone(), self.chain_sha256.as_ref())
    }

    /// A copy under another version number.
    pub(crate) fn with_version(&self, version: u64) -> Self {
        Self {
            version,
            chain: self.chain.clone(),
            key_format: self.key_format,
            key: self.key.clone(),
            meta: self.meta.clone(),
            chain_sha256: self.chain_sha256,
        }
    }
}

/// A bundle value read for its metadata only ([`Store::list_meta`](bmcert_store::Store::list_meta)):
/// the chain and the key are skipped by the decoder, not decoded or kept.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct StoredMetaOnly {
    pub(crate) version: u64,
    pub(crate) meta: BundleMeta,
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
        .map_err(|e| StoreError::Unavailable(format!("cannot encode a store value: {e}").into()))
}

pub(crate) fn decode<T: serde::de::DeserializeOwned>(
    what: &str,
    bytes: &[u8],
) -> Result<T, StoreError> {
    // Only the position: serde_json's messages can quote the offending value, which may be
    // key material.
    serde_json::from_slice(bytes).map_err(|e| {
        corrupt(
            what,
            &format!(
                "{:?} error at line {} column {}",
                e.classify(),
                e.line(),
                e.column()
            ),
        )
    })
}

pub(crate) fn corrupt(what: &str, reason: &str) -> StoreError {
    StoreError::Corrupt {
        path: what.into(),
        reason: format!("etcd value unreadable: {reason}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bmcert_store::Source;

    /// A real bundle (the store proves every bundle): a self-signed certificate and its key.
    fn bundle() -> Bundle {
        let ck = rcgen::generate_simple_self_signed(vec!["a.test".to_owned()]).unwrap();
        let leaf = CertificateDer::from(ck.cert.der().to_vec());
        let meta =
            BundleMeta::for_leaf(Source::Acme, time::OffsetDateTime::UNIX_EPOCH, &leaf).unwrap();
        Bundle::new(
            vec![leaf],
            SecretKey::new(KeyFormat::Pkcs8, ck.signing_key.serialize_der()),
            meta,
        )
        .unwrap()
    }

    #[test]
    fn a_bundle_round_trips_whole() {
        let b = bundle();
        let stored = StoredBundle::from_bundle(7, &b);
        let bytes = encode(&stored).unwrap();
        let back: StoredBundle = decode("k", &bytes).unwrap();
        assert_eq!(back.version, 7);
        assert_eq!(back.to_bundle().unwrap(), b);
    }

    #[test]
    fn damaged_values_never_quote_their_content() {
        let secret = hex::encode(b"TOPSECRET");
        // A key where a version number should be: serde_json would quote it.
        let bad = format!("{{\"version\":\"{secret}\"}}");
        let err = decode::<StoredBundle>("/p/bundle/system", bad.as_bytes()).unwrap_err();
        let shown = format!("{err} {err:?}");
        assert!(!shown.contains(&secret), "{shown}");
        assert!(shown.contains("/p/bundle/system"), "{shown}");
        let stored = StoredBundle::from_bundle(1, &bundle());
        let mut v: serde_json::Value = serde_json::from_slice(&encode(&stored).unwrap()).unwrap();
        v["key"] = serde_json::Value::String(format!("{secret}zz"));
        let damaged: StoredBundle = serde_json::from_value(v).unwrap();
        let err = damaged.to_bundle().unwrap_err();
        assert!(!format!("{err} {err:?}").contains(&secret));
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_values_decode_or_fail_cleanly(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            crate::fuzzing::decode_values(&bytes);
        }
    }
}
