//! ACME clients for the pebble of [`crate::peers::Pebble`] (feature `pebble`), and the
//! bounded waits for pebble's fixed validation ports.
//!
//! Behind a feature because it links `bmcert-acme` (and `bmcert-store`, for the store-backed
//! client): the crates below them in the dependency graph use this crate's fixtures without
//! it. `bmcert-acme`'s own integration tests enable it too; cargo accepts that
//! dev-dependency cycle, and an integration test links the one `bmcert_acme` library this
//! module links, so the types are the same.

// Test helpers fail loudly: a peer that is half configured is a broken test set-up.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::fmt::Display;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bmcert_acme::{
    AcmeClient, AcmeConfig, ChallengeBoard, Directory, Http01Listener, MemoryState, Progress,
    RetryBudget, StoreState,
};
use bmcert_store::Store;

use crate::peers::Pebble;

/// How long the tests let one order poll pebble. Pebble validates at once
/// (`PEBBLE_VA_NOSLEEP=1`); a minute covers a loaded CI machine and still bounds a stuck test.
pub const POLL_TOTAL: Duration = Duration::from_secs(60);

impl Pebble {
    /// The configuration every pebble test starts from: pebble's directory, trusting pebble's
    /// HTTPS CA for it; the issued chains checked against pebble's current issuing root (read
    /// from management `/roots/0` with a client of this configuration, since pebble makes a
    /// new root at every start); orders polled for [`POLL_TOTAL`].
    ///
    /// `retry` replaces the HTTP retry budget (after the root was read, with the default
    /// one); `None` keeps [`RetryBudget::default`]. Tests that expect a dead directory pass a
    /// short one so that they fail fast.
    ///
    /// # Panics
    ///
    /// When pebble's CA file holds no certificate, or the root cannot be fetched or parsed.
    pub async fn acme_config(&self, retry: Option<RetryBudget>) -> AcmeConfig {
        let mut config = AcmeConfig::new(Directory::Url(self.directory.clone()));
        config.directory_roots = AcmeConfig::certificates_from_pem(&self.ca_pem, "pebble CA")
            .unwrap_or_else(|e| panic!("pebble's CA file {}: {e}", self.ca_path.display()));
        let root = self.root_pem(&config).await;
        config.chain_roots = AcmeConfig::certificates_from_pem(&root, "pebble root")
            .unwrap_or_else(|e| panic!("pebble's root from {}: {e}", self.root_url()));
        config.poll.total = POLL_TOTAL;
        if let Some(retry) = retry {
            config.retry = retry;
        }
        config
    }

    /// Pebble's issuing root (PEM), fetched from [`Pebble::root_url`] by an [`AcmeClient`]
    /// of `config` (which must trust pebble's HTTPS CA).
    ///
    /// # Panics
    ///
    /// When the client cannot be built or the fetch fails.
    pub async fn root_pem(&self, config: &AcmeConfig) -> Vec<u8> {
        let probe = AcmeClient::new(config.clone(), MemoryState::new(), ChallengeBoard::new())
            .unwrap_or_else(|e| panic!("an ACME client for pebble: {e}"));
        probe
            .fetch(&self.root_url())
            .await
            .unwrap_or_else(|e| panic!("pebble's root from {}: {e}", self.root_url()))
    }
}

/// An ACME client keeping its account in `store` (through [`StoreState`]) and installing
/// its certificates through the installation's gate over `store` and `topology`
/// (`bmcert::CertManager`), publishing its challenges on `board`, and adding one to
/// `orders` for every order it places ([`Progress::Ordered`]): one "server" of an
/// installation, for the tests that count the orders pebble saw.
///
/// # Panics
///
/// When the client cannot be built from `config`.
pub fn store_client_counting_orders(
    config: AcmeConfig,
    store: &Arc<dyn Store>,
    topology: &bmcert_topology::Topology,
    board: ChallengeBoard,
    orders: &Arc<AtomicU32>,
) -> Arc<AcmeClient> {
    let orders = orders.clone();
    let gate = Arc::new(bmcert::CertManager::new(store.clone(), topology.clone()));
    let client = AcmeClient::new(config, Arc::new(StoreState::new(store.clone())), board)
        .unwrap_or_else(|e| panic!("an ACME client over the store: {e}"))
        .with_gate(gate)
        .with_progress(move |p| {
            if matches!(p, Progress::Ordered { .. }) {
                orders.fetch_add(1, Ordering::SeqCst);
            }
        });
    Arc::new(client)
}

/// How long to wait for one of pebble's fixed validation ports (HTTP-01, TLS-ALPN-01) on
/// 127.0.0.1, and how often to try: the listener of the test before (in this test binary or
/// the one cargo ran just before) may still be closing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortWait {
    /// The pause between two attempts.
    pub every: Duration,
    /// The whole wait; the helper panics after it.
    pub within: Duration,
}

impl PortWait {
    /// Attempts every `every` until `within` has passed.
    pub const fn new(every: Duration, within: Duration) -> Self {
        Self { every, within }
    }

    /// Runs `attempt` until it succeeds or the wait is over (then panics, naming `what` and
    /// the last error).
    async fn retry<T, E: Display, F: Future<Output = Result<T, E>>>(
        self,
        what: &str,
        mut attempt: impl FnMut() -> F,
    ) -> T {
        let deadline = Instant::now() + self.within;
        loop {
            match attempt().await {
                Ok(value) => return value,
                Err(_) if Instant::now() < deadline => tokio::time::sleep(self.every).await,
                Err(e) => panic!("{what} stays busy after {:?}: {e}", self.within),
            }
        }
    }
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Waits until nothing listens on `127.0.0.1:port` (a test binds it and lets go at once),
/// for tests that need the port closed (nobody answers pebble's validator).
///
/// # Panics
///
/// When the port is still taken after `wait.within`.
pub async fn wait_port_free(port: u16, wait: PortWait) {
    wait.retry(&format!("port {port}"), || async move {
        std::net::TcpListener::bind(loopback(port)).map(drop)
    })
    .await;
}

/// The HTTP-01 responder for pebble's validator on `127.0.0.1:port`, answering from `board`;
/// binding is retried as `wait` says.
///
/// # Panics
///
/// When the port is still taken after `wait.within`.
pub async fn bind_http01(port: u16, board: &ChallengeBoard, wait: PortWait) -> Http01Listener {
    wait.retry(&format!("HTTP-01 port {port}"), || {
        Http01Listener::bind(loopback(port), Arc::new(board.clone()))
    })
    .await
}

/// A plain TCP listener on `127.0.0.1:port`, for a test that answers pebble's validator
/// itself; binding is retried as `wait` says.
///
/// # Panics
///
/// When the port is still taken after `wait.within`.
pub async fn bind_loopback(port: u16, wait: PortWait) -> tokio::net::TcpListener {
    wait.retry(&format!("port {port}"), || {
        tokio::net::TcpListener::bind(loopback(port))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn acme_config_trusts_pebble_and_checks_chains_against_its_current_root() {
        let Some(p) = Pebble::from_env() else { return };
        let fast = RetryBudget {
            first_delay: Duration::from_millis(50),
            max_delay: Duration::from_millis(200),
            total: Duration::from_millis(600),
        };
        let config = p.acme_config(Some(fast)).await;
        assert!(
            matches!(&config.directory, Directory::Url(u) if *u == p.directory),
            "{:?}",
            config.directory
        );
        assert_eq!(
            config.directory_roots,
            AcmeConfig::certificates_from_pem(&p.ca_pem, "pebble CA").unwrap()
        );
        assert_eq!(config.poll.total, POLL_TOTAL);
        assert_eq!(config.retry.total, fast.total);
        assert_eq!(config.retry.max_delay, fast.max_delay);
        // The root read by the client is the one the real curl reads.
        let dir = tempfile::tempdir().unwrap();
        let curl_root = std::fs::read(p.root_with_curl(&dir.path().join("root.pem"))).unwrap();
        assert_eq!(
            config.chain_roots,
            AcmeConfig::certificates_from_pem(&curl_root, "curl root").unwrap()
        );
        assert_eq!(config.chain_roots.len(), 1);
        assert_ne!(config.chain_roots, config.directory_roots);

        let default = p.acme_config(None).await;
        assert_eq!(default.retry.total, RetryBudget::default().total);
        assert_eq!(default.chain_roots, config.chain_roots);
    }

    const WAIT: PortWait = PortWait::new(Duration::from_millis(20), Duration::from_millis(300));

    #[tokio::test]
    async fn a_port_let_go_of_during_the_wait_is_bound() {
        let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = held.local_addr().unwrap().port();
        let release = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            drop(held);
        });
        let listener = bind_loopback(
            port,
            PortWait::new(Duration::from_millis(20), Duration::from_secs(5)),
        )
        .await;
        assert_eq!(listener.local_addr().unwrap().port(), port);
        release.await.unwrap();
        drop(listener);
        wait_port_free(port, WAIT).await;
        let board = ChallengeBoard::new();
        let http = bind_http01(port, &board, WAIT).await;
        assert!(
            std::net::TcpListener::bind(loopback(port)).is_err(),
            "the responder holds the port"
        );
        http.stop().await;
    }

    #[tokio::test]
    async fn a_port_that_stays_taken_panics_after_the_wait() {
        let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = held.local_addr().unwrap().port();
        let waited = tokio::spawn(async move { wait_port_free(port, WAIT).await }).await;
        let message = *waited
            .unwrap_err()
            .into_panic()
            .downcast::<String>()
            .unwrap();
        assert!(
            message.contains(&format!("port {port} stays busy after")),
            "{message}"
        );
        drop(held);
    }
}
