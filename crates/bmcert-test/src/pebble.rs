//! ACME clients for the pebble of [`crate::peers::Pebble`] (feature `pebble`).
//!
//! Behind a feature because it links `bmcert-acme` (and `bmcert-store`, for the store-backed
//! client): the crates below them in the dependency graph use this crate's fixtures without
//! it. `bmcert-acme`'s own integration tests enable it too; cargo accepts that
//! dev-dependency cycle, and an integration test links the one `bmcert_acme` library this
//! module links, so the types are the same.

// Test helpers fail loudly: a peer that is half configured is a broken test set-up.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bmcert_acme::{
    AcmeClient, AcmeConfig, ChallengeBoard, Directory, MemoryState, Progress, RetryBudget,
    StoreState,
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

/// An ACME client keeping its account and certificates in `store` (through
/// [`StoreState`]), publishing its challenges on `board`, and adding one to `orders` for
/// every order it places ([`Progress::Ordered`]): one "server" of an installation, for the
/// tests that count the orders pebble saw.
///
/// # Panics
///
/// When the client cannot be built from `config`.
pub fn store_client_counting_orders(
    config: AcmeConfig,
    store: &Arc<dyn Store>,
    board: ChallengeBoard,
    orders: &Arc<AtomicU32>,
) -> Arc<AcmeClient> {
    let orders = orders.clone();
    let client = AcmeClient::new(config, Arc::new(StoreState::new(store.clone())), board)
        .unwrap_or_else(|e| panic!("an ACME client over the store: {e}"))
        .with_progress(move |p| {
            if matches!(p, Progress::Ordered { .. }) {
                orders.fetch_add(1, Ordering::SeqCst);
            }
        });
    Arc::new(client)
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
}
