//! Following a real directory store: start-up load, then install, renewal, disable,
//! rollback and a bundle that cannot be used, each seen on the next lookup.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bmcert_resolve::{FollowerThread, LiveIndex, LoadError, Reason, Service};
use bmcert_store::{block_on, Condition, DirStore, Store};
use bmcert_topology::{DomainName, Target, Topology};
use common::{install, install_mismatched, sha256_hex, Pki};

const TOPOLOGY: &str = r#"
[system]
url = "https://mail.example.test"
[[domain]]
name = "acme.test"
url = "https://webmail.acme.test"
"#;

/// The fingerprint of what a lookup of `name` serves.
fn served(index: &LiveIndex, name: &str) -> String {
    let cert = index.resolve(Service::Https, Some(name)).unwrap();
    sha256_hex(&cert.cert[0])
}

/// Waits (bounded) until `name` is served `expected`.
fn wait_for(index: &LiveIndex, name: &str, expected: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while served(index, name) != expected {
        assert!(
            Instant::now() < deadline,
            "{name} still served {}",
            served(index, name)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn follows_install_renewal_disable_rollback_and_keeps_previous_on_failure() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(DirStore::open(dir.path().join("store")).unwrap());
    let pki = Pki::new();
    let acme_target = Target::Domain(DomainName::new("acme.test").unwrap());
    let system = pki.leaf(&["mail.example.test"]);
    let acme1 = pki.leaf(&["webmail.acme.test"]);
    let acme2 = pki.leaf(&["webmail.acme.test"]);
    let (system_fp, acme1_fp, acme2_fp) = (
        sha256_hex(&system.cert),
        sha256_hex(&acme1.cert),
        sha256_hex(&acme2.cert),
    );
    install(&*store, &Target::System, &system, &["mail.example.test"]);
    install(&*store, &acme_target, &acme1, &["webmail.acme.test"]);

    let index = Arc::new(LiveIndex::new(&Topology::from_toml_str(TOPOLOGY).unwrap()));
    let follower = FollowerThread::start(store.clone(), index.clone()).unwrap();
    // Loaded at start.
    assert_eq!(served(&index, "webmail.acme.test"), acme1_fp);
    assert_eq!(served(&index, "unknown.test"), system_fp);

    // Renewal.
    install(&*store, &acme_target, &acme2, &["webmail.acme.test"]);
    wait_for(&index, "webmail.acme.test", &acme2_fp);

    // Rollback to the first version.
    block_on(store.rollback(&acme_target, &Condition::none())).unwrap();
    wait_for(&index, "webmail.acme.test", &acme1_fp);

    // A bundle whose key is not the certificate's: the previous one stays, the error is listed.
    install_mismatched(&*store, &acme_target, &acme2, &acme1);
    let deadline = Instant::now() + Duration::from_secs(10);
    while index.failures().is_empty() {
        assert!(Instant::now() < deadline, "the failure was never reported");
        std::thread::sleep(Duration::from_millis(20));
    }
    let failures = index.failures();
    assert_eq!(failures[0].target, acme_target);
    assert_eq!(failures[0].error, LoadError::KeyMismatch);
    assert!(failures[0].kept_previous);
    assert_eq!(served(&index, "webmail.acme.test"), acme1_fp);

    // Disable: the domain falls back to the system certificate.
    block_on(store.disable(&acme_target, &Condition::none())).unwrap();
    wait_for(&index, "webmail.acme.test", &system_fp);
    assert_eq!(
        index
            .explain(Service::Https, Some("webmail.acme.test"))
            .reason,
        Reason::FallbackToSystem
    );
    assert!(
        index.failures().is_empty(),
        "the disable cleared the failure"
    );
    follower.stop();
}
