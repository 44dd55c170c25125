//! Let's Encrypt through ACME: the entry points services and the CLI use.
//!
//! Everything of [`bmcert_acme`] is re-exported here; [`client_for_store`] builds the
//! installation's client over its store, so the account, the accepted terms and the HTTP-01
//! tokens are shared by every server, and issued certificates are installed with source
//! `acme` after the bundle report.
//!
//! A service answers challenges with [`http01_response`] (its HTTP server on port 80 calls it
//! for `/.well-known/acme-challenge/` paths) and/or wraps its rustls resolver in
//! [`ResolvesServerCertWithAcme`] (TLS-ALPN-01 on port 443), both over the client's
//! [`ChallengeBoard`].

use std::path::Path;
use std::sync::Arc;

pub use bmcert_acme::*;

/// The installation's ACME client over `store`, publishing challenges on a new board.
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
    let store = bmcert_store::DirStore::open(dir).map_err(|e| AcmeError::Store {
        during: "opening the store",
        reason: format!("{}: {e}", dir.display()),
    })?;
    client_for_store(Arc::new(store), config)
}
