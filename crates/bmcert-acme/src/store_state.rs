//! [`AcmeState`] over a `bmcert-store` [`Store`]: records in its key-value area.

use std::sync::Arc;

use bmcert_store::{Condition, Fence, RecordKey, Store, StoreError};

use crate::state::{AcmeState, BoxFuture, StateError};

/// The ACME flow's state kept in a [`Store`] (the installation's store: every server sees the
/// account, the accepted terms and the HTTP-01 tokens).
///
/// Plain writes are unconditional (last writer wins). The `*_fenced` writes of
/// [`AcmeState`] carry the caller's lock as a store [`Condition`]'s fence: the store checks
/// it atomically with the write and refuses with [`StateError::Fenced`] once the lock has
/// expired or been taken by another server. `AcmeClient::issue_fenced` makes every record
/// write of an order (account registration, HTTP-01 tokens) that way, and hands the fence
/// to the [`InstallGate`](crate::InstallGate) with the certificate.
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
    RecordKey::new(k).map_err(|reason| StateError::BadKey {
        key: k.to_owned(),
        reason,
    })
}

/// A store error as a state error, keeping a fence refusal typed.
fn store_err(e: StoreError) -> StateError {
    match e {
        StoreError::Fenced { lock, token } => StateError::Fenced { lock, token },
        other => StateError::Store(other),
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

    fn keys<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<Vec<String>, StateError>> {
        Box::pin(async move {
            // The store's prefixes are whole path segments (`acme/http01` covers
            // `acme/http01/TOKEN`); a trailing slash is the same prefix.
            let keys = self
                .store
                .keys(prefix.trim_end_matches('/'))
                .await
                .map_err(store_err)?;
            Ok(keys.into_iter().map(|k| k.as_str().to_owned()).collect())
        })
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use bmcert_store::{DirStore, Lease};
    use std::time::Duration;

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
        assert_eq!(
            state.get("acme/http01/tok").await.unwrap().as_deref(),
            Some(&b"v"[..])
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
                .put_fenced("acme/http01/tok", b"new".to_vec(), false, Some(&fence))
                .await,
            Err(fenced.clone())
        );
        assert_eq!(
            state.delete_fenced("acme/http01/tok", Some(&fence)).await,
            Err(fenced)
        );
        assert_eq!(
            state.get("acme/http01/tok").await.unwrap().as_deref(),
            Some(&b"old"[..])
        );
        // The current holder's fence passes.
        state
            .put_fenced(
                "acme/http01/tok",
                b"new".to_vec(),
                false,
                Some(&other.fence()),
            )
            .await
            .unwrap();
    }
}
