//! [`Installation`]: what an installation is to the services that link bmcert.

use std::path::Path;
use std::sync::Arc;

use bmcert_acme::{
    http01_response_from_state, AcmeClient, AcmeConfig, AcmeError, ChallengeBoard,
    ResolvesServerCertWithAcme, StoreState,
};
use bmcert_renew::{AcmeIssuer, Notifier, Renewer, RenewerConfig, SystemClock};
use bmcert_resolve::{
    FollowerThread, LiveIndex, ResolvesServerCertUsingSniWithFallback, ResolvesSystemCert, Service,
};
use bmcert_store::{DirStore, Store, StoreError};
use bmcert_topology::{SharedTopology, Topology};
use rustls::server::ResolvesServerCert;

use crate::CertManager;

/// One installation: its store and its topology, and everything a service needs from them.
///
/// It owns the only copy of the topology ([`set_topology`](Self::set_topology) changes
/// resolution, the install gate's checks and the names renewals order at once) and hands
/// out:
///
/// - the rustls resolvers: [`https_resolver`](Self::https_resolver) (SNI, dedicated or
///   system certificate) and [`mail_resolver`](Self::mail_resolver) (always the system
///   certificate), over one live index;
/// - the store follower that keeps that index in step with the store
///   ([`follow`](Self::follow));
/// - Let's Encrypt: [`acme_client`](Self::acme_client) (issues through the gate),
///   [`renewer`](Self::renewer), the HTTP-01 answer ([`http01_response`](Self::http01_response))
///   and the TLS-ALPN-01 wrapper ([`tls_alpn01`](Self::tls_alpn01)), all on one challenge
///   board;
/// - the admin operations: [`manager`](Self::manager) (check, install, disable, list, roll
///   back, export, bootstrap), and the ACME terms, accept, issue and renew through the client
///   and the renewer.
///
/// ```
/// use bmcert::{block_on, Installation, Service, Target, Topology};
///
/// let topology = Topology::from_toml_str("[system]\nurl = \"https://mail.example.test\"\n").unwrap();
/// let dir = tempfile::tempdir().unwrap();
/// let installation = Installation::open_dir(&dir.path().join("store"), topology).unwrap();
/// let follower = installation.follow().unwrap();
/// // An empty store: the bootstrap certificate lets the servers answer from the first start.
/// block_on(installation.manager().bootstrap(rustls_pki_types::UnixTime::now())).unwrap();
/// let served = || installation.index().resolve(Service::Imap, None);
/// let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
/// while served().is_none() && std::time::Instant::now() < deadline {
///     std::thread::sleep(std::time::Duration::from_millis(10));
/// }
/// assert!(served().is_some());
/// follower.stop();
/// # let _ = Target::System;
/// ```
#[derive(Clone, Debug)]
pub struct Installation {
    store: Arc<dyn Store>,
    topology: SharedTopology,
    manager: CertManager,
    index: Arc<LiveIndex>,
    board: ChallengeBoard,
}

impl Installation {
    /// The installation over `store`, described by `topology`.
    pub fn new(store: Arc<dyn Store>, topology: Topology) -> Self {
        let index = Arc::new(LiveIndex::new(&topology));
        let topology = SharedTopology::new(topology);
        Self {
            manager: CertManager::with_shared_topology(store.clone(), topology.clone()),
            store,
            topology,
            index,
            board: ChallengeBoard::new(),
        }
    }

    /// The installation over the directory store at `dir` (the embedded default).
    pub fn open_dir(dir: &Path, topology: Topology) -> Result<Self, StoreError> {
        Ok(Self::new(Arc::new(DirStore::open(dir)?), topology))
    }

    /// The same installation whose admin operations complete chains with the platform's
    /// trust anchors ([`CertManager::with_platform_roots`]).
    pub fn with_platform_roots(
        mut self,
        roots: Vec<rustls_pki_types::CertificateDer<'static>>,
    ) -> Self {
        self.manager = self.manager.with_platform_roots(roots);
        self
    }

    /// Replaces the topology everywhere at once: the name map the resolvers use (the
    /// certificates carried over, each served only for a URL host it names), the host the
    /// gate checks against, and the names the next renewals order.
    pub fn set_topology(&self, topology: Topology) {
        self.index.set_topology(&topology);
        self.topology.set(topology);
    }

    /// The current topology.
    pub fn topology(&self) -> Arc<Topology> {
        self.topology.get()
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The admin operations: check, install, disable, list, roll back, export, bootstrap;
    /// every install goes through its gate.
    pub fn manager(&self) -> &CertManager {
        &self.manager
    }

    /// The live index the resolvers read (for `explain`, `failures`, `snapshot`).
    pub fn index(&self) -> &Arc<LiveIndex> {
        &self.index
    }

    /// The HTTPS resolver: per SNI, the domain's dedicated certificate or the system one.
    pub fn https_resolver(&self) -> Arc<ResolvesServerCertUsingSniWithFallback> {
        Arc::new(ResolvesServerCertUsingSniWithFallback::new(
            self.index.clone(),
        ))
    }

    /// A mail resolver (IMAP, SMTP, ...): always the system certificate.
    pub fn mail_resolver(&self, service: Service) -> Arc<ResolvesSystemCert> {
        Arc::new(ResolvesSystemCert::new(self.index.clone(), service))
    }

    /// Starts the thread that loads every certificate of the store into the index and then
    /// follows the store's changes; stop it with [`FollowerThread::stop`].
    pub fn follow(&self) -> Result<FollowerThread, StoreError> {
        FollowerThread::start(self.store.clone(), self.index.clone())
    }

    /// The installation's ACME client: its account, terms and HTTP-01 tokens in the store
    /// (shared by every server), its challenges on this installation's board, and what it
    /// obtains installed through the gate (source `acme`). Returned unshared so the caller
    /// can still add a progress callback ([`AcmeClient::with_progress`]); share it in an
    /// `Arc` with [`renewer`](Self::renewer).
    pub fn acme_client(&self, config: AcmeConfig) -> Result<AcmeClient, AcmeError> {
        Ok(AcmeClient::new(
            config,
            Arc::new(StoreState::new(self.store.clone())),
            self.board.clone(),
        )?
        .with_gate(Arc::new(self.manager.clone())))
    }

    /// The renewer: renewals through `acme` with the names of the current topology,
    /// warnings through `notifier`, the system clock. Start it with [`Renewer::start`].
    pub fn renewer(
        &self,
        acme: Arc<AcmeClient>,
        notifier: Arc<dyn Notifier>,
        config: RenewerConfig,
    ) -> Renewer {
        let issuer = AcmeIssuer::with_shared_topology(acme, self.topology.clone());
        Renewer::new(
            self.store.clone(),
            Arc::new(issuer),
            notifier,
            Arc::new(SystemClock),
            config,
        )
    }

    /// The HTTP-01 answer for a request `path` on port 80: the key authorization of a
    /// pending token (published by this server or, through the store, by another), `None`
    /// (answer 404) otherwise.
    pub async fn http01_response(&self, path: &str) -> Option<String> {
        if let Some(body) = bmcert_acme::http01_response(path, &self.board) {
            return Some(body);
        }
        http01_response_from_state(path, &StoreState::new(self.store.clone())).await
    }

    /// Answers HTTP-01 on `addr` from this installation ([`http01_response`](Self::http01_response):
    /// this server's orders and, through the store, any other server's), for a front
    /// server (nginx) proxying `/.well-known/acme-challenge/` here. Bounded like every
    /// challenge listener; stops when dropped.
    pub async fn http01_listener(
        &self,
        addr: std::net::SocketAddr,
    ) -> Result<bmcert_acme::Http01Listener, AcmeError> {
        bmcert_acme::Http01Listener::serve(addr, Arc::new(self.clone())).await
    }

    /// The shared topology (the renewer's issuer reads it at each order).
    #[cfg(feature = "agent")]
    pub(crate) fn shared_topology(&self) -> &SharedTopology {
        &self.topology
    }

    /// Wraps `inner` (usually [`https_resolver`](Self::https_resolver)) to answer
    /// TLS-ALPN-01 on port 443; add `b"acme-tls/1"` to the server's ALPN protocols.
    pub fn tls_alpn01(&self, inner: Arc<dyn ResolvesServerCert>) -> ResolvesServerCertWithAcme {
        ResolvesServerCertWithAcme::new(inner, self.board.clone())
    }
}

impl bmcert_acme::Http01Source for Installation {
    fn answer<'a>(&'a self, path: &'a str) -> bmcert_acme::BoxFuture<'a, Option<String>> {
        Box::pin(self.http01_response(path))
    }
}
