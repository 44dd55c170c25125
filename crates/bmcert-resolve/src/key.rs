//! Turning a stored chain and key into a rustls [`CertifiedKey`].

use std::sync::Arc;

use rustls::crypto::aws_lc_rs::sign::any_supported_type;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

/// Why a target's certificate could not be made ready for handshakes.
///
/// None of the messages contains key material.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum LoadError {
    /// The store could not read the target's current bundle.
    #[error("the store could not read the certificate: {0}")]
    Store(#[source] bmcert_store::StoreError),
    /// The target's current bundle in the store failed the store's proof (a damaged file or
    /// value, a key that does not sign for the certificate, metadata that is not the
    /// certificate's): the last good certificate stays in service, or the newest good
    /// version the store still keeps. Only an install or a disable repairs it.
    #[error("{0}")]
    Damaged(Box<bmcert_store::Damaged>),
    /// The bundle has no certificate.
    #[error(
        "the bundle has no certificate; install a bundle with at least the server certificate"
    )]
    EmptyChain,
    /// The private key is of a type or encoding rustls (aws-lc-rs) cannot sign with.
    #[error("the private key cannot be used for TLS: {0}; use an RSA (2048 bits or more), ECDSA P-256/P-384 or Ed25519 key")]
    UnsupportedKey(#[source] rustls::Error),
    /// The private key does not belong to the server certificate.
    #[error("the private key does not match the server certificate; install the key that was generated with this certificate's request")]
    KeyMismatch,
    /// The certificate does not name the target's external URL host in the current topology
    /// (the URL changed, or the domain gained its own URL, after it was installed): it is not
    /// served for that host.
    #[error("the certificate does not name {host}, the target's external URL host now; install a certificate checked for it (bmcert install, or bmcert acme issue)")]
    NotForHost {
        /// The target's URL host in the current topology.
        host: String,
    },
}

/// Whether the server certificate of `certified` names `host` (RFC 6125/9525 matching by
/// webpki), so serving it for the target whose URL has that host passes a client's check.
pub(crate) fn names_host(certified: &CertifiedKey, host: &bmcert_topology::Host) -> bool {
    let Some(leaf) = certified.cert.first() else {
        return false;
    };
    let Ok(ee) = webpki::EndEntityCert::try_from(leaf) else {
        return false;
    };
    let Ok(name) = rustls::pki_types::ServerName::try_from(host.to_string()) else {
        return false;
    };
    ee.verify_is_valid_for_subject_name(&name).is_ok()
}

/// Builds the [`CertifiedKey`] rustls serves from a chain (server certificate first) and its
/// private key, with the aws-lc-rs provider.
///
/// Refuses an empty chain, a key aws-lc-rs cannot sign with, and a key whose public half is
/// not the server certificate's. When the provider cannot tell whether they match (it cannot
/// derive the public key), the pair is accepted and a warning is logged: the store already
/// checked the pair when the bundle was installed.
pub fn certified_key(
    chain: Vec<CertificateDer<'static>>,
    key: &PrivateKeyDer<'_>,
) -> Result<Arc<CertifiedKey>, LoadError> {
    if chain.is_empty() {
        return Err(LoadError::EmptyChain);
    }
    let signer = any_supported_type(key).map_err(LoadError::UnsupportedKey)?;
    let certified = CertifiedKey::new(chain, signer);
    match certified.keys_match() {
        Ok(()) => {}
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            return Err(LoadError::KeyMismatch)
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot check that the private key matches the certificate; accepting it");
        }
    }
    Ok(Arc::new(certified))
}
