//! [`AcmeState`] over a `bmcert-store` [`Store`]: records in its key-value area, installs as
//! bundles with source `acme`.

use std::sync::Arc;

use bmcert_store::{
    Bundle, BundleMeta, Condition, Fence, Fingerprint, KeyFormat, RecordKey, SecretKey, Source,
    Store, StoreError,
};
use bmcert_topology::Target;
use time::OffsetDateTime;

use crate::state::{AcmeState, BoxFuture, Issued, StateError};

/// The ACME flow's state kept in a [`Store`] (the installation's store: every server sees the
/// account, the accepted terms and the HTTP-01 tokens).
///
/// Plain writes are unconditional (last writer wins). The `*_fenced` writes of
/// [`AcmeState`] carry the caller's lock as a store [`Condition`]'s fence: the store checks
/// it atomically with the write and refuses with [`StateError::Fenced`] once the lock has
/// expired or been taken by another server. `AcmeClient::issue_fenced` makes every write of
/// an order (account registration, HTTP-01 tokens, the install) that way.
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
    RecordKey::new(k).map_err(|e| StateError::Backend(e.to_string()))
}

fn err(e: impl std::fmt::Display) -> StateError {
    StateError::Backend(e.to_string())
}

/// A store error as a state error, keeping a fence refusal typed.
fn store_err(e: StoreError) -> StateError {
    match e {
        StoreError::Fenced { lock, token } => StateError::Fenced { lock, token },
        other => StateError::Backend(other.to_string()),
    }
}

/// An unconditional write, or one fenced by `fence`.
fn condition(fence: Option<&Fence>) -> Condition {
    Condition {
        fence: fence.cloned(),
        ..Condition::none()
    }
}

impl AcmeState for StoreState {
    fn get<'a>(&'a self, k: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, StateError>> {
        Box::pin(async move {
            let k = key(k)?;
            let record = self.store.get(&k).await.map_err(store_err)?;
            Ok(record.map(|r| r.secret_value().to_vec()))
        })
    }

    fn put<'a>(
        &'a self,
        k: &'a str,
        value: Vec<u8>,
        secret: bool,
    ) -> BoxFuture<'a, Result<(), StateError>> {
        self.put_fenced(k, value, secret, None)
    }

    fn delete<'a>(&'a self, k: &'a str) -> BoxFuture<'a, Result<(), StateError>> {
        self.delete_fenced(k, None)
    }

    fn install<'a>(
        &'a self,
        target: &'a Target,
        issued: &'a Issued,
    ) -> BoxFuture<'a, Result<(), StateError>> {
        self.install_fenced(target, issued, None)
    }

    fn put_fenced<'a>(
        &'a self,
        k: &'a str,
        value: Vec<u8>,
        _secret: bool,
        fence: Option<&'a Fence>,
    ) -> BoxFuture<'a, Result<(), StateError>> {
        // Every record of the store is kept like a secret (0600, zeroized, never printed).
        Box::pin(async move {
            let k = key(k)?;
            let value = zeroize::Zeroizing::new(value);
            self.store
                .put(&k, &value, &condition(fence))
                .await
                .map_err(store_err)?;
            Ok(())
        })
    }

    fn delete_fenced<'a>(
        &'a self,
        k: &'a str,
        fence: Option<&'a Fence>,
    ) -> BoxFuture<'a, Result<(), StateError>> {
        Box::pin(async move {
            let k = key(k)?;
            self.store
                .delete(&k, &condition(fence))
                .await
                .map_err(store_err)?;
            Ok(())
        })
    }

    fn install_fenced<'a>(
        &'a self,
        target: &'a Target,
        issued: &'a Issued,
        fence: Option<&'a Fence>,
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
                .ok_or_else(|| StateError::Backend("the issued chain is empty".into()))?;
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
                .install(target, &bundle, &condition(fence))
                .await
                .map_err(store_err)?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bmcert_store::{DirStore, Lease};
    use std::time::Duration;
    use zeroize::Zeroizing;

    fn issued(name: &str) -> Issued {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec![name.to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        Issued::new(
            vec![bmcert_topology::DomainName::new(name).unwrap()],
            cert.pem(),
            OffsetDateTime::now_utc().unix_timestamp() + 86_400,
            Zeroizing::new(key.serialize_der()),
            Zeroizing::new(key.serialize_pem()),
        )
    }

    fn setup() -> (tempfile::TempDir, StoreState, Lease) {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(DirStore::open(dir.path().join("store")).unwrap());
        let lock = RecordKey::new("locks/renewal").unwrap();
        let lease =
            bmcert_store::block_on(store.lock(&lock, "a", Duration::from_secs(60))).unwrap();
        (dir, StoreState::new(store), lease)
    }

    #[tokio::test]
    async fn fenced_writes_pass_while_the_lock_is_held() {
        let (_dir, state, lease) = setup();
        let fence = lease.fence();
        state
            .put_fenced("acme/http01/tok", b"v".to_vec(), false, Some(&fence))
            .await
            .unwrap();
        state
            .install_fenced(&Target::System, &issued("a.example.test"), Some(&fence))
            .await
            .unwrap();
        let current = state.store().current(&Target::System).await.unwrap();
        assert_eq!(
            current.unwrap().bundle.meta().names,
            ["a.example.test".to_owned()]
        );
        state
            .delete_fenced("acme/http01/tok", Some(&fence))
            .await
            .unwrap();
        assert_eq!(state.get("acme/http01/tok").await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_lost_lock_refuses_every_fenced_write_and_changes_nothing() {
        let (_dir, state, lease) = setup();
        state
            .install(&Target::System, &issued("old.example.test"))
            .await
            .unwrap();
        state
            .put("acme/http01/tok", b"old".to_vec(), false)
            .await
            .unwrap();
        // The lease is lost and another server takes the lock.
        state.store().unlock(&lease).await.unwrap();
        let other = state
            .store()
            .lock(&lease.lock, "b", Duration::from_secs(60))
            .await
            .unwrap();
        assert!(other.token > lease.token);
        let fence = lease.fence();
        let fenced = StateError::Fenced {
            lock: lease.lock.to_string(),
            token: lease.token,
        };
        assert_eq!(
            state
                .install_fenced(&Target::System, &issued("new.example.test"), Some(&fence))
                .await,
            Err(fenced.clone())
        );
        assert_eq!(
            state
                .put_fenced("acme/http01/tok", b"new".to_vec(), false, Some(&fence))
                .await,
            Err(fenced.clone())
        );
        assert_eq!(
            state.delete_fenced("acme/http01/tok", Some(&fence)).await,
            Err(fenced)
        );
        let current = state
            .store()
            .current(&Target::System)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(current.bundle.meta().names, ["old.example.test".to_owned()]);
        assert_eq!(current.version, 1);
        assert_eq!(
            state.get("acme/http01/tok").await.unwrap().as_deref(),
            Some(&b"old"[..])
        );
        // The current holder's fence passes.
        state
            .install_fenced(
                &Target::System,
                &issued("new.example.test"),
                Some(&other.fence()),
            )
            .await
            .unwrap();
    }
}
