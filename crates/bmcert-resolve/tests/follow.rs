//! Following a real directory store: start-up load, then install, renewal, disable,
//! rollback and a bundle that cannot be used, each seen on the next lookup; a change whose
//! read failed while the store was unreachable is read again.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bmcert_resolve::{
    apply_target, load_all, retry_failed, FollowerThread, LiveIndex, LoadError, Reason, Service,
};
use bmcert_store::testing::RawStorage;
use bmcert_store::testing::{Fault, FaultyStore, Op};
use bmcert_store::{block_on, Condition, DirStore, Store, StoreError};
use bmcert_store::{KeyFormat, SecretKey};
use bmcert_topology::{DomainName, Target, Topology};
use common::{install, install_mismatched, is_damaged_key, sha256_hex, Leaf, Pki};

const TOPOLOGY: &str = r#"
[system]
url = "https://mail.example.test"
[[domain]]
name = "acme.test"
url = "https://webmail.acme.test"
"#;

/// acme.test's target; the system certificate and two successive ones of acme.test, from
/// one CA.
fn leaves() -> (Target, Leaf, Leaf, Leaf) {
    let pki = Pki::new();
    (
        Target::Domain(DomainName::new("acme.test").unwrap()),
        pki.leaf(&["mail.example.test"]),
        pki.leaf(&["webmail.acme.test"]),
        pki.leaf(&["webmail.acme.test"]),
    )
}

/// The live index of [`TOPOLOGY`], empty.
fn index() -> LiveIndex {
    LiveIndex::new(&Topology::from_toml_str(TOPOLOGY).unwrap())
}

/// Installs the system certificate and the first of acme.test.
fn install_first(store: &dyn Store, acme_target: &Target, system: &Leaf, acme1: &Leaf) {
    install(store, &Target::System, system, &["mail.example.test"]);
    install(store, acme_target, acme1, &["webmail.acme.test"]);
}

/// Polls `done` (bounded: 10 s) until it holds; fails with `what` otherwise.
fn wait_until(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

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
    let dir_store = Arc::new(DirStore::open(dir.path().join("store")).unwrap());
    let store: Arc<dyn Store> = dir_store.clone();
    let (acme_target, system, acme1, acme2) = leaves();
    let (system_fp, acme1_fp, acme2_fp) = (
        sha256_hex(&system.cert),
        sha256_hex(&acme1.cert),
        sha256_hex(&acme2.cert),
    );
    install_first(&*store, &acme_target, &system, &acme1);

    let index = Arc::new(index());
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

    // The current bundle damaged on disk (its key replaced by another valid key, which no
    // change reports): the next read (a reload, or a change as here) finds it damaged, the
    // certificate served before stays, the error is listed.
    install(&*store, &acme_target, &acme2, &["webmail.acme.test"]);
    wait_for(&index, "webmail.acme.test", &acme2_fp);
    let other_key = SecretKey::new(KeyFormat::Pkcs8, acme1.key_der.clone());
    block_on(dir_store.swap_key(&acme_target, &other_key)).unwrap();
    assert!(!block_on(apply_target(&*store, &index, &acme_target)));
    let failures = index.failures();
    assert_eq!(failures[0].target, acme_target);
    assert!(is_damaged_key(&failures[0].error), "{}", failures[0]);
    assert!(failures[0].kept_previous);
    assert_eq!(served(&index, "webmail.acme.test"), acme2_fp);

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

/// A directory store whose bundle reads fail while it is "failing", and whose reads and
/// watches all fail while it is "down", as a store that cannot be reached does (every other
/// call goes through unchanged).
type Unreachable = FaultyStore<DirStore>;

fn unreachable(dir: &std::path::Path) -> Unreachable {
    FaultyStore::new(DirStore::open(dir.join("store")).unwrap())
}

fn refused() -> Fault {
    Fault::Unavailable("connection refused".into())
}

/// Bundle reads fail (`true`) or pass again.
fn set_failing(store: &Unreachable, failing: bool) {
    if failing {
        store.fail(Op::Current, refused());
    } else {
        store.heal(Op::Current);
    }
}

/// Reads and watches fail (`true`) or pass again.
fn set_down(store: &Unreachable, down: bool) {
    for op in [Op::Revision, Op::Current, Op::List, Op::Watch] {
        if down {
            store.fail(op, refused());
        } else {
            store.heal(op);
        }
    }
}

#[test]
fn a_change_whose_read_failed_is_read_again_when_the_store_is_back() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(unreachable(dir.path()));
    let (acme_target, system, acme1, acme2) = leaves();
    install_first(&*store, &acme_target, &system, &acme1);

    let index = Arc::new(index());
    let follower = FollowerThread::start(store.clone(), index.clone()).unwrap();
    assert_eq!(served(&index, "webmail.acme.test"), sha256_hex(&acme1.cert));

    // The renewal's change arrives, but its bundle cannot be read: the old one stays.
    set_failing(&store, true);
    install(&*store, &acme_target, &acme2, &["webmail.acme.test"]);
    wait_until("the failed read was never reported", || {
        !index.failures().is_empty()
    });
    let failure = &index.failures()[0];
    assert_eq!(failure.target, acme_target);
    assert!(matches!(failure.error, LoadError::Store(_)), "{failure}");
    assert!(failure.kept_previous);
    assert_eq!(served(&index, "webmail.acme.test"), sha256_hex(&acme1.cert));

    // The store is back; no further change comes, yet the renewal is served.
    set_failing(&store, false);
    wait_for(&index, "webmail.acme.test", &sha256_hex(&acme2.cert));
    assert!(index.failures().is_empty());
    follower.stop();
}

#[test]
fn retry_failed_reads_again_only_what_the_store_could_not_read() {
    let dir = tempfile::tempdir().unwrap();
    let store = unreachable(dir.path());
    let (acme_target, system, acme1, acme2) = leaves();
    install(&store, &Target::System, &system, &["mail.example.test"]);
    install_mismatched(&store, store.inner(), &acme_target, &acme2, &acme1);
    let index = index();

    set_failing(&store, true);
    block_on(load_all(&store, &index)).unwrap();
    assert_eq!(index.failures().len(), 2, "{:?}", index.failures());
    assert_eq!(
        block_on(retry_failed(&store, &index)),
        0,
        "still unreachable"
    );

    set_failing(&store, false);
    assert_eq!(
        block_on(retry_failed(&store, &index)),
        1,
        "the system bundle"
    );
    assert_eq!(
        served(&index, "mail.example.test"),
        sha256_hex(&system.cert)
    );
    let failures = index.failures();
    assert_eq!(failures.len(), 1);
    assert!(is_damaged_key(&failures[0].error), "{}", failures[0]);
    // A bundle that was read but cannot be used is left to the next install.
    assert_eq!(block_on(retry_failed(&store, &index)), 0);
}

#[test]
fn a_follower_spawned_while_the_store_is_down_loads_when_it_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(unreachable(dir.path()));
    let (acme_target, system, acme1, acme2) = leaves();
    install_first(&*store, &acme_target, &system, &acme1);
    let index = Arc::new(index());

    set_down(&store, true);
    assert!(matches!(
        FollowerThread::start(store.clone(), index.clone()),
        Err(StoreError::Unavailable(_))
    ));
    let follower = FollowerThread::spawn(store.clone(), index.clone()).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert!(!follower.has_loaded());
    assert!(index
        .resolve(Service::Https, Some("webmail.acme.test"))
        .is_none());

    set_down(&store, false);
    wait_until("never loaded after the store came back", || {
        follower.has_loaded()
    });
    assert_eq!(served(&index, "webmail.acme.test"), sha256_hex(&acme1.cert));
    // And it follows from there.
    install(&*store, &acme_target, &acme2, &["webmail.acme.test"]);
    wait_for(&index, "webmail.acme.test", &sha256_hex(&acme2.cert));
    follower.stop();
}

#[test]
fn a_follower_spawned_while_the_store_is_down_stops_promptly() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(unreachable(dir.path()));
    set_down(&store, true);
    let index = Arc::new(index());
    let follower = FollowerThread::spawn(store, index).unwrap();
    let started = Instant::now();
    follower.stop();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "stop waited for the store"
    );
}

#[test]
fn a_follower_starts_with_a_damaged_target_and_serves_its_previous_good_version() {
    let dir = tempfile::tempdir().unwrap();
    let dir_store = Arc::new(DirStore::open(dir.path().join("store")).unwrap());
    let store: Arc<dyn Store> = dir_store.clone();
    let (acme_target, system, acme1, acme2) = leaves();
    install_first(&*store, &acme_target, &system, &acme1);
    // Version 2 installed whole, then its key replaced on disk by another valid key.
    install_mismatched(&*store, &*dir_store, &acme_target, &acme2, &acme1);
    assert!(matches!(
        block_on(store.current(&acme_target)),
        Err(StoreError::Damaged(_))
    ));

    let index = Arc::new(index());
    let follower = FollowerThread::start(store.clone(), index.clone())
        .expect("a damaged target does not stop the start");
    // The damaged target is served its previous good version from the store, said loudly;
    // every other name is served as usual.
    assert_eq!(served(&index, "webmail.acme.test"), sha256_hex(&acme1.cert));
    assert_eq!(served(&index, "unknown.test"), sha256_hex(&system.cert));
    let failures = index.failures();
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0].target, acme_target);
    assert!(is_damaged_key(&failures[0].error), "{}", failures[0]);
    assert!(failures[0].kept_previous);
    assert!(
        failures[0].to_string().contains("bmcert install"),
        "{}",
        failures[0]
    );

    // An install repairs it: served at once, the failure cleared.
    install(&*store, &acme_target, &acme2, &["webmail.acme.test"]);
    wait_for(&index, "webmail.acme.test", &sha256_hex(&acme2.cert));
    assert!(index.failures().is_empty());
    follower.stop();
}
