//! [`AcmeState`] over a `bmcert-store` [`Store`]: records in its key-value area, installs as
//! bundles with source `acme`.

use std::sync::Arc;

use bmcert_store::{
    Bundle, BundleMeta, Condition, Fingerprint, KeyFormat, RecordKey, SecretKey, Source, Store,
};
use bmcert_topology::Target;
use time::OffsetDateTime;

use crate::state::{AcmeState, BoxFuture, Issued, StateError};

/// The ACME flow's state kept in a [`Store`] (the installation's store: every server sees the
/// account, the accepted terms and the HTTP-01 tokens).
///
/// Records are written unconditionally (last writer wins): the account is registered under
/// the caller's lock when several servers may order at once (the renewal lock).
#[derive(Debug, Clone)]
pub struct StoreState {
    store: Arc<dyn Store>,
}

impl StoreState {
    /// Wraps a store.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }

    /// The wrapped store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }
}

fn key(k: &str) -> Result<RecordKey, StateError> {
    RecordKey::new(k).map_err(|e| StateError(e.to_string()))
}

fn err(e: impl std::fmt::Display) -> StateError {
    StateError(e.to_string())
}

impl AcmeState for StoreState {
    fn get<'a>(&'a self, k: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, StateError>> {
        Box::pin(async move {
            let k = key(k)?;
            let record = self.store.get(&k).await.map_err(err)?;
            Ok(record.map(|r| r.secret_value().to_vec()))
        })
    }

    fn put<'a>(
        &'a self,
        k: &'a str,
        value: Vec<u8>,
        _secret: bool,
    ) -> BoxFuture<'a, Result<(), StateError>> {
        // Every record of the store is kept like a secret (0600, zeroized, never printed).
        Box::pin(async move {
            let k = key(k)?;
            let value = zeroize::Zeroizing::new(value);
            self.store
                .put(&k, &value, &Condition::none())
                .await
                .map_err(err)?;
            Ok(())
        })
    }

    fn delete<'a>(&'a self, k: &'a str) -> BoxFuture<'a, Result<(), StateError>> {
        Box::pin(async move {
            let k = key(k)?;
            self.store
                .delete(&k, &Condition::none())
                .await
                .map_err(err)?;
            Ok(())
        })
    }

    fn install<'a>(
        &'a self,
        target: &'a Target,
        issued: &'a Issued,
    ) -> BoxFuture<'a, Result<(), StateError>> {
        Box::pin(async move {
            let chain: Vec<_> = pem::parse_many(&issued.chain_pem)
                .map_err(err)?
                .into_iter()
                .filter(|b| b.tag() == "CERTIFICATE")
                .map(|b| rustls_pki_types::CertificateDer::from(b.into_contents()))
                .collect();
            let leaf = chain
                .first()
                .ok_or_else(|| StateError("the issued chain is empty".into()))?;
            let meta = BundleMeta {
                source: Source::Acme,
                names: issued.names.iter().map(|n| n.as_str().to_owned()).collect(),
                not_after: OffsetDateTime::from_unix_timestamp(issued.not_after).map_err(err)?,
                installed_at: OffsetDateTime::now_utc(),
                fingerprint: Fingerprint::of(leaf),
            };
            let key = SecretKey::new(KeyFormat::Pkcs8, issued.secret_key_pkcs8_der().to_vec());
            let bundle = Bundle::new(chain, key, meta).map_err(err)?;
            self.store
                .install(target, &bundle, &Condition::none())
                .await
                .map_err(err)?;
            Ok(())
        })
    }
}
