//! What the ACME flow keeps between runs and servers, behind a small object-safe trait.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use bmcert_store::Fence;
use bmcert_topology::{DomainName, Target};
use zeroize::Zeroizing;

/// A boxed `Send` future, as in instant-acme's `HttpClient`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The records the ACME flow keeps: a small key-value area (terms acceptance, account
/// credentials, HTTP-01 tokens, contact addresses). Issued certificates do not go here:
/// they go through the installation's [`InstallGate`](crate::InstallGate).
///
/// [`StoreState`](crate::StoreState) keeps them in the installation's store;
/// [`MemoryState`] is the in-process implementation for tests.
///
/// # Fencing
///
/// A renewal runs under a lock of the store (`bmcert-renew` takes it); every write the
/// order makes then carries the lock's [`Fence`] (the `*_fenced` methods), and the state
/// refuses it with [`StateError::Fenced`] once the lock is no longer held with that token,
/// atomically with the write. So a holder that stalled past its lease (a paused process, a
/// slow network) cannot install over the work of the server that took over.
/// [`StoreState`](crate::StoreState) checks fences in the store; the default `*_fenced`
/// methods of an implementation that keeps no locks refuse any fenced write (they cannot
/// check it) and pass unfenced ones to the plain methods.
pub trait AcmeState: fmt::Debug + Send + Sync {
    /// Reads a record.
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, StateError>>;
    /// Writes a record. `secret` records (the account key) must be kept like a private key
    /// (mode 0600 on disk, never logged).
    fn put<'a>(
        &'a self,
        key: &'a str,
        value: Vec<u8>,
        secret: bool,
    ) -> BoxFuture<'a, Result<(), StateError>>;
    /// Removes a record; removing a missing record is not an error.
    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), StateError>>;
    /// The keys of the records under `prefix` (for instance [`keys::HTTP01_PREFIX`]), in any
    /// order: the client sweeps the challenge records that a stopped server left behind.
    fn keys<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<Vec<String>, StateError>>;
    /// [`put`](Self::put), only while `fence` (when given) still holds.
    fn put_fenced<'a>(
        &'a self,
        key: &'a str,
        value: Vec<u8>,
        secret: bool,
        fence: Option<&'a Fence>,
    ) -> BoxFuture<'a, Result<(), StateError>> {
        match fence {
            None => self.put(key, value, secret),
            Some(f) => Box::pin(async move { Err(StateError::unfenceable(f)) }),
        }
    }

    /// [`delete`](Self::delete), only while `fence` (when given) still holds.
    fn delete_fenced<'a>(
        &'a self,
        key: &'a str,
        fence: Option<&'a Fence>,
    ) -> BoxFuture<'a, Result<(), StateError>> {
        match fence {
            None => self.delete(key),
            Some(f) => Box::pin(async move { Err(StateError::unfenceable(f)) }),
        }
    }
}

/// Why a state operation failed.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// The store failed (its typed error: unreachable, I/O, conflict...).
    #[error(transparent)]
    Store(#[from] bmcert_store::StoreError),
    /// A record key the store does not accept.
    #[error("`{key}` is not a record key: {reason}")]
    BadKey {
        /// The key.
        key: String,
        /// Why.
        reason: bmcert_store::RecordKeyError,
    },
    /// A fenced write whose lock is no longer held with its token: nothing was written.
    #[error("the lock `{lock}` is no longer held with token {token}: the write was refused (another server may have taken over the work)")]
    Fenced {
        /// The lock's name.
        lock: String,
        /// The stale token.
        token: u64,
    },
    /// A fenced write to a state that keeps no locks (it cannot check the fence).
    #[error("this ACME state keeps no locks, so a write fenced by the lock `{lock}` cannot be checked; keep the state in the store (StoreState)")]
    Unfenceable {
        /// The lock's name.
        lock: String,
    },
    /// The in-memory state's lock was poisoned by a panic.
    #[error("the in-memory ACME state was poisoned by a panic")]
    Poisoned,
}

impl StateError {
    fn unfenceable(fence: &Fence) -> Self {
        Self::Unfenceable {
            lock: fence.lock.to_string(),
        }
    }
}

/// Record keys used by this crate.
pub mod keys {
    /// The accepted terms of service: JSON `{ "url": ..., "accepted_at": ... }`.
    pub const TERMS: &str = "acme/terms";
    /// The account credentials (secret): instant-acme's `AccountCredentials` JSON plus the
    /// contact. One per installation and directory.
    pub const ACCOUNT: &str = "acme/account";
    /// Prefix of HTTP-01 tokens: `acme/http01/TOKEN` holds the key authorization and when
    /// it was published, JSON `{ "key_authorization": ..., "published_at": ... }` (a record
    /// of the key authorization alone, as older versions wrote, is still answered).
    pub const HTTP01_PREFIX: &str = "acme/http01/";
}

/// A certificate obtained from the CA: chain and locally generated key.
pub struct Issued {
    /// The names covered, as ordered.
    pub names: Vec<DomainName>,
    /// The chain as sent by the CA (leaf first), PEM.
    pub chain_pem: String,
    /// The leaf's `notAfter`, seconds since the Unix epoch.
    pub not_after: i64,
    key_pkcs8_der: Zeroizing<Vec<u8>>,
    key_pem: Zeroizing<String>,
}

impl Issued {
    pub(crate) fn new(
        names: Vec<DomainName>,
        chain_pem: String,
        not_after: i64,
        key_pkcs8_der: Zeroizing<Vec<u8>>,
        key_pem: Zeroizing<String>,
    ) -> Self {
        Self {
            names,
            chain_pem,
            not_after,
            key_pkcs8_der,
            key_pem,
        }
    }

    /// The certificate's private key, PKCS#8 DER. Secret.
    pub fn secret_key_pkcs8_der(&self) -> &[u8] {
        &self.key_pkcs8_der
    }

    /// The certificate's private key, PKCS#8 PEM. Secret.
    pub fn secret_key_pem(&self) -> &str {
        &self.key_pem
    }
}

impl fmt::Debug for Issued {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Issued")
            .field("names", &self.names)
            .field("not_after", &self.not_after)
            .field("key", &"[secret key elided]")
            .finish_non_exhaustive()
    }
}

/// An in-process [`AcmeState`]: records in a map, installs kept per target. For tests and for
/// services that keep ACME state themselves.
///
/// It lives in one process and keeps no locks, so there is no other holder to fence off: a
/// fenced write is accepted as an unfenced one (share state between servers with
/// [`StoreState`](crate::StoreState), which checks fences).
#[derive(Default)]
pub struct MemoryState {
    records: Mutex<HashMap<String, Zeroizing<Vec<u8>>>>,
    installed: Mutex<HashMap<Target, (String, Zeroizing<String>)>>,
}

impl fmt::Debug for MemoryState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryState").finish_non_exhaustive()
    }
}

impl MemoryState {
    /// An empty state.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// The installed chain of `target` (PEM), if any.
    pub fn installed_chain(&self, target: &Target) -> Option<String> {
        self.installed
            .lock()
            .ok()?
            .get(target)
            .map(|(c, _)| c.clone())
    }

    /// The installed key of `target` (PEM), if any. Secret.
    pub fn installed_secret_key_pem(&self, target: &Target) -> Option<Zeroizing<String>> {
        self.installed
            .lock()
            .ok()?
            .get(target)
            .map(|(_, k)| k.clone())
    }

    /// The keys of all records, sorted.
    pub fn record_keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self
            .records
            .lock()
            .map(|r| r.keys().cloned().collect())
            .unwrap_or_default();
        keys.sort();
        keys
    }

    /// Installs a chain and key directly (to set up a "previously installed" certificate).
    pub fn preinstall(&self, target: &Target, chain_pem: &str, key_pem: &str) {
        if let Ok(mut m) = self.installed.lock() {
            m.insert(
                target.clone(),
                (chain_pem.to_owned(), Zeroizing::new(key_pem.to_owned())),
            );
        }
    }
}

fn poisoned() -> StateError {
    StateError::Poisoned
}

impl AcmeState for MemoryState {
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, StateError>> {
        Box::pin(async move {
            let map = self.records.lock().map_err(|_| poisoned())?;
            Ok(map.get(key).map(|v| v.to_vec()))
        })
    }

    fn put<'a>(
        &'a self,
        key: &'a str,
        value: Vec<u8>,
        _secret: bool,
    ) -> BoxFuture<'a, Result<(), StateError>> {
        Box::pin(async move {
            let mut map = self.records.lock().map_err(|_| poisoned())?;
            map.insert(key.to_owned(), Zeroizing::new(value));
            Ok(())
        })
    }

    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), StateError>> {
        Box::pin(async move {
            let mut map = self.records.lock().map_err(|_| poisoned())?;
            map.remove(key);
            Ok(())
        })
    }

    fn keys<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<Vec<String>, StateError>> {
        Box::pin(async move {
            let map = self.records.lock().map_err(|_| poisoned())?;
            Ok(map
                .keys()
                .filter(|k| k.starts_with(prefix))
                .cloned()
                .collect())
        })
    }

    fn put_fenced<'a>(
        &'a self,
        key: &'a str,
        value: Vec<u8>,
        secret: bool,
        _fence: Option<&'a Fence>,
    ) -> BoxFuture<'a, Result<(), StateError>> {
        self.put(key, value, secret)
    }

    fn delete_fenced<'a>(
        &'a self,
        key: &'a str,
        _fence: Option<&'a Fence>,
    ) -> BoxFuture<'a, Result<(), StateError>> {
        self.delete(key)
    }
}

/// The in-process gate of tests: what a checked issued certificate would be installed as,
/// kept per target (chain and key as PEM). It accepts only a [`CheckedBundle`](bmcert_bundle::CheckedBundle), like the
/// installation's gate, but keeps no topology: tests of the ACME flow alone use it.
impl crate::InstallGate for MemoryState {
    fn install_acme<'a>(
        &'a self,
        target: &'a Target,
        checked: bmcert_bundle::CheckedBundle,
        _fence: Option<&'a Fence>,
    ) -> BoxFuture<'a, Result<(), crate::GateError>> {
        Box::pin(async move {
            let chain: String = core::iter::once(checked.leaf())
                .chain(checked.chain())
                .map(|c| bmcert_bundle::pem_encode("CERTIFICATE", c))
                .collect();
            let key = checked.secret_key();
            let key_pem = Zeroizing::new(bmcert_bundle::pem_encode(
                key.format().pem_label(),
                key.secret_der().secret_der(),
            ));
            if let Ok(mut map) = self.installed.lock() {
                map.insert(target.clone(), (chain, key_pem));
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_debug_never_shows_the_key() {
        let issued = Issued::new(
            vec![DomainName::new("a.example.test").unwrap()],
            "chain".into(),
            0,
            Zeroizing::new(vec![0x30, 0x82, 0x01, 0x02]),
            Zeroizing::new(
                "-----BEGIN PRIVATE KEY-----\nSECRETBYTES\n-----END PRIVATE KEY-----\n".into(),
            ),
        );
        let debug = format!("{issued:?}");
        assert!(
            !debug.contains("SECRETBYTES") && !debug.contains("PRIVATE"),
            "{debug}"
        );
        assert!(debug.contains("elided"), "{debug}");
        let state = MemoryState::default();
        assert!(!format!("{state:?}").contains("SECRET"));
    }

    /// A state that implements only the plain methods.
    #[derive(Debug)]
    struct Plain(MemoryState);

    impl AcmeState for Plain {
        fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, StateError>> {
            self.0.get(key)
        }
        fn put<'a>(
            &'a self,
            key: &'a str,
            value: Vec<u8>,
            secret: bool,
        ) -> BoxFuture<'a, Result<(), StateError>> {
            self.0.put(key, value, secret)
        }
        fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), StateError>> {
            self.0.delete(key)
        }
        fn keys<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<Vec<String>, StateError>> {
            self.0.keys(prefix)
        }
    }

    #[test]
    fn a_state_without_locks_refuses_fenced_writes_by_default() {
        let state = Plain(MemoryState::default());
        let fence = Fence {
            lock: bmcert_store::RecordKey::new("locks/renewal").unwrap(),
            token: 7,
        };
        let refused =
            bmcert_store::block_on(state.put_fenced("k", b"v".to_vec(), false, Some(&fence)));
        match refused {
            Err(StateError::Unfenceable { lock }) => assert_eq!(lock, "locks/renewal"),
            other => panic!("{other:?}"),
        }
        assert!(state.0.record_keys().is_empty());
        // Unfenced, the plain method runs.
        bmcert_store::block_on(state.put_fenced("k", b"v".to_vec(), false, None)).unwrap();
        assert_eq!(state.0.record_keys(), ["k".to_owned()]);
    }
}
