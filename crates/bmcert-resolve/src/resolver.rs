//! The rustls side: [`ResolvesServerCert`] implementations over a [`LiveIndex`].

use std::sync::Arc;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::live::LiveIndex;
use crate::service::Service;

/// Chooses the HTTPS certificate by SNI: a domain's own certificate for its site's names,
/// the system certificate for everything else (system names, a domain without certificate,
/// unknown names, no SNI).
///
/// Returns `None`, which makes rustls abort the handshake, only when neither a matching domain
/// certificate nor the system certificate is available.
#[derive(Clone, Debug)]
pub struct ResolvesServerCertUsingSniWithFallback {
    index: Arc<LiveIndex>,
}

impl ResolvesServerCertUsingSniWithFallback {
    /// An HTTPS resolver reading `index`.
    pub fn new(index: Arc<LiveIndex>) -> Self {
        Self { index }
    }
}

impl ResolvesServerCert for ResolvesServerCertUsingSniWithFallback {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let name = client_hello.server_name();
        let cert = self.index.resolve(Service::Https, name);
        tracing::trace!(
            service = "https",
            sni = name,
            found = cert.is_some(),
            "certificate resolved"
        );
        cert
    }
}

/// Always presents the system certificate, for IMAP, SMTP, POP3 and ManageSieve listeners.
///
/// Reads the same [`LiveIndex`] as the HTTPS resolver, so one update reaches every listener.
#[derive(Clone, Debug)]
pub struct ResolvesSystemCert {
    index: Arc<LiveIndex>,
    service: Service,
}

impl ResolvesSystemCert {
    /// A resolver for a mail `service` reading `index`. Given [`Service::Https`] it still
    /// presents only the system certificate; use [`ResolvesServerCertUsingSniWithFallback`]
    /// for HTTPS.
    pub fn new(index: Arc<LiveIndex>, service: Service) -> Self {
        Self { index, service }
    }
}

impl ResolvesServerCert for ResolvesSystemCert {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let cert = self.index.resolve(self.service, None);
        tracing::trace!(
            service = self.service.as_str(),
            sni = client_hello.server_name(),
            found = cert.is_some(),
            "system certificate resolved"
        );
        cert
    }
}
