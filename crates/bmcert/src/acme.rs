//! Let's Encrypt through ACME: the entry points services and the CLI use.
//!
//! The API of `bmcert-acme` is re-exported here (its test doubles `MemoryState` and
//! `RequestCounts` only with the feature `testing`); [`client_for_manager`] builds the
//! installation's client over its store, so the account, the accepted terms and the HTTP-01
//! tokens are shared by every server, and issued certificates, checked like an upload, go
//! through the installation's gate ([`CertManager::install_checked`], source `acme`).
//! [`client_for_store`] builds one that only reads terms, registers and answers challenges.
//!
//! A service answers challenges with [`http01_response`] (its HTTP server on port 80 calls it
//! for `/.well-known/acme-challenge/` paths) and/or wraps its rustls resolver in
//! [`ResolvesServerCertWithAcme`] (TLS-ALPN-01 on port 443), both over the client's
//! [`ChallengeBoard`].

use std::path::Path;
use std::sync::Arc;

pub use bmcert_acme::{
    ari_certificate_id, http01_response, http01_response_from_state, keys, order_names,
    parse_renewal_info, parse_request_line, parse_retry_after, AcmeClient, AcmeConfig, AcmeError,
    AcmeState, BoxFuture, ChallengeBoard, ChallengeKind, Directory, GateError, Http01Listener,
    InstallGate, IssueRequest, Issued, KeyKind, NoCertificate, PollSchedule, Problem, Progress,
    RenewalWindow, ResolvesServerCertWithAcme, RetryBudget, StateError, StoreState, Subproblem,
    TlsAlpn01Listener, TokenLookup, ACME_TLS_ALPN, DEFAULT_ARI_RETRY, HTTP01_PATH_PREFIX,
    MAX_ARI_RETRY, MIN_ARI_RETRY,
};
/// Test doubles and counters (feature `testing`): an in-process state and gate, and the
/// client's request counts.
#[cfg(feature = "testing")]
pub use bmcert_acme::{MemoryState, RequestCounts};

use crate::{CertManager, ManagerError};

/// The facade's gate for ACME certificates: [`CertManager::install_checked`] with source
/// `acme`.
impl InstallGate for CertManager {
    fn install_acme<'a>(
        &'a self,
        target: &'a bmcert_topology::Target,
        checked: bmcert_bundle::CheckedBundle,
        fence: Option<&'a bmcert_store::Fence>,
    ) -> BoxFuture<'a, Result<(), GateError>> {
        Box::pin(async move {
            self.install_checked(target, checked, bmcert_store::Source::Acme, fence)
                .await
                .map(|_| ())
                .map_err(|e| match e {
                    ManagerError::Store(s) => GateError::Store(s),
                    ManagerError::Topology(t) => GateError::Topology(t),
                    ManagerError::CheckedForAnotherHost {
                        checked, current, ..
                    } => GateError::CheckedForAnotherHost { checked, current },
                    _ => GateError::UnsupportedKey,
                })
        })
    }
}

/// The installation's ACME client over `manager`'s store, publishing challenges on a new
/// board, installing what it obtains through `manager`'s gate.
pub fn client_for_manager(
    manager: &CertManager,
    config: AcmeConfig,
) -> Result<AcmeClient, AcmeError> {
    Ok(client_for_store(manager.store().clone(), config)?.with_gate(Arc::new(manager.clone())))
}

/// An ACME client over `store` without an install gate: terms, account and challenges
/// ([`AcmeClient::issue`] refuses with [`AcmeError::NoGate`]; use [`client_for_manager`]).
pub fn client_for_store(
    store: Arc<dyn bmcert_store::Store>,
    config: AcmeConfig,
) -> Result<AcmeClient, AcmeError> {
    AcmeClient::new(
        config,
        Arc::new(StoreState::new(store)),
        ChallengeBoard::new(),
    )
}

/// [`client_for_store`] over the directory store at `dir` (the embedded default).
pub fn client_for_dir(dir: &Path, config: AcmeConfig) -> Result<AcmeClient, AcmeError> {
    // The store's error names the directory.
    let store = bmcert_store::DirStore::open(dir).map_err(|e| AcmeError::Store {
        during: "opening the store",
        source: StateError::Store(e),
    })?;
    client_for_store(Arc::new(store), config)
}
