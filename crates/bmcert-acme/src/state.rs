//! What the ACME flow keeps between runs and servers, behind a small object-safe trait.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use bmcert_topology::{DomainName, Target};
use zeroize::Zeroizing;

/// A boxed `Send` future, as in instant-acme's `HttpClient`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The store operations the ACME flow needs: a small key-value area (terms acceptance,
/// account credentials, HTTP-01 tokens) and the install of an issued certificate.
///
/// The `bmcert` facade implements it over `bmcert-store` (records and the per-target install
/// with source `acme`); [`MemoryState`] is the ready-made in-process implementation.
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
    /// Installs an issued certificate for `target` (source `acme`), after the flow's checks.
    fn install<'a>(
        &'a self,
        target: &'a Target,
        issued: &'a Issued,
    ) -> BoxFuture<'a, Result<(), StateError>>;
}

/// A store failure, as text from the backend.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct StateError(pub String);

/// Record keys used by this crate.
pub mod keys {
    /// The accepted terms of service: JSON `{ "url": ..., "accepted_at": ... }`.
    pub const TERMS: &str = "acme/terms";
    /// The account credentials (secret): instant-acme's `AccountCredentials` JSON plus the
    /// contact. One per installation and directory.
    pub const ACCOUNT: &str = "acme/account";
    /// Prefix of HTTP-01 tokens: `acme/http01/TOKEN` holds the key authorization.
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
    StateError("memory state lock poisoned".into())
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

    fn install<'a>(
        &'a self,
        target: &'a Target,
        issued: &'a Issued,
    ) -> BoxFuture<'a, Result<(), StateError>> {
        Box::pin(async move {
            let mut map = self.installed.lock().map_err(|_| poisoned())?;
            map.insert(
                target.clone(),
                (
                    issued.chain_pem.clone(),
                    Zeroizing::new(issued.secret_key_pem().to_owned()),
                ),
            );
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
}
