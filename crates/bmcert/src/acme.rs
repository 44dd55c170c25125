//! Let's Encrypt through ACME: the entry points services and the CLI use.
//!
//! The API of `bmcert-acme` is re-exported here (its test doubles `MemoryState` and
//! `RequestCounts` only with the feature `testing`);
//! [`Installation::acme_client`](crate::Installation::acme_client) builds the installation's
//! client over its store, so the account, the accepted terms and the HTTP-01
//! tokens are shared by every server, and issued certificates, checked like an upload, go
//! through the installation's gate ([`CertManager::install_checked`], source `acme`).
//! [`client_for_store`] builds one that only reads terms, registers and answers challenges.
//!
//! A service answers challenges with [`http01_response`] (its HTTP server on port 80 calls it
//! for `/.well-known/acme-challenge/` paths) and/or wraps its rustls resolver in
//! [`ResolvesServerCertWithAcme`] (TLS-ALPN-01 on port 443), both over the client's
//! [`ChallengeBoard`].

use std::sync::Arc;

pub use bmcert_acme::{
    accept_loop, ari_certificate_id, http01_response, http01_response_from_state, keys,
    order_names, parse_renewal_info, parse_request_line, parse_retry_after, AcmeClient, AcmeConfig,
    AcmeError, AcmeState, BadBinding, BoxFuture, ChallengeBoard, ChallengeKind, Directory,
    ExternalAccountBinding, GateError, Http01Listener, Http01Source, InstallGate, IssueRequest,
    Issued, KeyKind, NoCertificate, PollSchedule, Problem, ProfileChoice, Progress, ProxyError,
    ProxyFailure, ProxySetting, ProxyUrl, ProxyUrlError, RenewalWindow, ResolvesServerCertWithAcme,
    RetryBudget, RevokeReason, StateError, StoreState, Subproblem, TlsAlpn01Listener, TokenLookup,
    UnknownRevokeReason, ACME_TLS_ALPN, DEFAULT_ARI_RETRY, HTTP01_PATH_PREFIX, MAX_ARI_RETRY,
    MIN_ARI_RETRY,
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

/// An ACME client over `store` without an install gate: terms, account and challenges
/// ([`AcmeClient::issue`] refuses with [`AcmeError::NoGate`]; use
/// [`Installation::acme_client`](crate::Installation::acme_client) to order).
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
