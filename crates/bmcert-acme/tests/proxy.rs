//! The outgoing proxy at the library's level (issue 16, item 3): the typed errors of a proxy
//! that cannot be reached or refuses the tunnel, and the directory read through a real
//! tinyproxy started here (its log shows the `CONNECT`). The whole order through the proxy,
//! and `HTTPS_PROXY`/`NO_PROXY` from the environment, are checked through the `bmcert` binary
//! (`crates/bmcert-cli/tests/acme_proxy.rs`), whose environment a test can set.
//!
//! No elapsed time is asserted: what was retried is read from the client's counters.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers

use std::sync::atomic::Ordering;
use std::time::Duration;

use bmcert_acme::*;
use bmcert_test::peers::{free_port, Pebble};
use bmcert_test::tinyproxy::Tinyproxy;

fn short_budget() -> RetryBudget {
    RetryBudget {
        first_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(100),
        total: Duration::from_millis(600),
    }
}

fn client(config: AcmeConfig) -> AcmeClient {
    AcmeClient::new(config, MemoryState::new(), ChallengeBoard::new()).unwrap()
}

fn proxy(url: &str) -> ProxySetting {
    ProxySetting::Url(ProxyUrl::parse(url, "the test").unwrap())
}

#[tokio::test]
async fn a_proxy_that_cannot_be_reached_is_a_typed_error_naming_it_without_its_password() {
    // Nothing listens on the proxy's port; the directory is never reached either way.
    let port = free_port();
    let mut config = AcmeConfig::new(Directory::Url("https://127.0.0.1:14000/dir".into()));
    config.retry = short_budget();
    config.proxy = proxy(&format!("http://alice:hunter2@127.0.0.1:{port}"));
    let client = client(config);
    let err = client.terms_url().await.unwrap_err();
    let AcmeError::Unreachable {
        cause: Transport::Proxy(ref p),
        ..
    } = err
    else {
        panic!("not a proxy error: {err:?}");
    };
    assert_eq!(p.proxy, format!("http://alice:***@127.0.0.1:{port}"));
    assert_eq!(p.target, "127.0.0.1:14000");
    assert!(matches!(p.failure, ProxyFailure::Connect(_)), "{p:?}");
    assert!(p.failure.is_transient());
    let text = err.to_string();
    assert!(
        text.contains(&format!(
            "through the proxy http://alice:***@127.0.0.1:{port}"
        )),
        "{text}"
    );
    assert!(!text.contains("hunter2") && !format!("{err:?}").contains("hunter2"));
    // A connection that failed is retried within the budget, like a CA that is down.
    assert!(client.counts().retried.load(Ordering::Relaxed) > 0);
}

#[tokio::test]
async fn through_tinyproxy_the_directory_is_read_and_a_refusal_is_not_retried() {
    let Some(pebble) = Pebble::from_env() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let Some(tinyproxy) = Tinyproxy::start(dir.path(), Some(("bmcert", "right"))) else {
        return;
    };
    let authority = pebble
        .directory
        .strip_prefix("https://")
        .and_then(|r| r.split('/').next())
        .unwrap()
        .to_owned();
    let mut config = AcmeConfig::new(Directory::Url(pebble.directory.clone()));
    config.directory_roots =
        AcmeConfig::certificates_from_pem(&pebble.ca_pem, "pebble CA").unwrap();
    config.retry = short_budget();

    // The right password: the directory comes through the tunnel.
    let mut good = config.clone();
    good.proxy = proxy(&format!("http://bmcert:right@{}", tinyproxy.addr));
    let terms = client(good).terms_url().await.unwrap();
    assert!(terms.is_some(), "pebble names terms");
    assert_eq!(
        tinyproxy.connects(),
        [authority],
        "{}",
        tinyproxy.log_text()
    );

    // A wrong password: the proxy answers no; typed, and sent once.
    let mut bad = config.clone();
    bad.proxy = proxy(&format!("http://bmcert:wrong@{}", tinyproxy.addr));
    let bad = client(bad);
    let err = bad.terms_url().await.unwrap_err();
    let AcmeError::Unreachable {
        cause: Transport::Proxy(ref p),
        ..
    } = err
    else {
        panic!("not a proxy error: {err:?}");
    };
    assert!(matches!(p.failure, ProxyFailure::Refused(_)), "{p:?}");
    assert!(!p.failure.is_transient());
    assert_eq!(bad.counts().retried.load(Ordering::Relaxed), 0);
    assert!(!err.to_string().contains("bmcert:wrong"), "{err}");
    assert_eq!(tinyproxy.connects().len(), 2, "{}", tinyproxy.log_text());

    // Direct: the proxy sees nothing more.
    let mut direct = config;
    direct.proxy = ProxySetting::Direct;
    client(direct).terms_url().await.unwrap();
    assert_eq!(tinyproxy.connects().len(), 2, "{}", tinyproxy.log_text());
}
