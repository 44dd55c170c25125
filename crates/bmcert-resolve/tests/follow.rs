//! Following a real directory store: start-up load, then install, renewal, disable,
//! rollback and a bundle that cannot be used, each seen on the next lookup; a change whose
//! read failed while the store was unreachable is read again.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bmcert_resolve::{
    load_all, retry_failed, FollowerThread, LiveIndex, LoadError, Reason, Service,
};
use bmcert_store::{
    block_on, Bundle, Condition, DirStore, Installed, Lease, Listed, Record, RecordKey, Revision,
    Store, StoreError, StoreFuture, Watch,
};
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

/// A directory store whose bundle reads fail while `failing` is set, and whose reads and
/// watches all fail while `down` is set, as a store that cannot be reached does (every other
/// call goes through unchanged).
#[derive(Debug)]
struct Unreachable {
    inner: DirStore,
    failing: AtomicBool,
    down: AtomicBool,
}

impl Unreachable {
    fn new(dir: &std::path::Path) -> Self {
        Self {
            inner: DirStore::open(dir.join("store")).unwrap(),
            failing: AtomicBool::new(false),
            down: AtomicBool::new(false),
        }
    }

    fn refused<'a, T: Send + 'a>(&self) -> Option<StoreFuture<'a, T>> {
        self.down
            .load(Ordering::SeqCst)
            .then(|| -> StoreFuture<'a, T> {
                Box::pin(async { Err(StoreError::Unavailable("connection refused".into())) })
            })
    }
}

impl Store for Unreachable {
    fn revision(&self) -> StoreFuture<'_, Revision> {
        self.refused().unwrap_or_else(|| self.inner.revision())
    }
    fn current<'a>(&'a self, target: &'a Target) -> StoreFuture<'a, Option<Installed>> {
        if self.failing.load(Ordering::SeqCst) {
            return Box::pin(async { Err(StoreError::Unavailable("connection refused".into())) });
        }
        self.refused().unwrap_or_else(|| self.inner.current(target))
    }
    fn history<'a>(&'a self, target: &'a Target) -> StoreFuture<'a, Vec<Installed>> {
        self.inner.history(target)
    }
    fn list(&self) -> StoreFuture<'_, Vec<Listed>> {
        self.refused().unwrap_or_else(|| self.inner.list())
    }
    fn install<'a>(
        &'a self,
        target: &'a Target,
        bundle: &'a Bundle,
        condition: &'a Condition,
    ) -> StoreFuture<'a, Installed> {
        self.inner.install(target, bundle, condition)
    }
    fn rollback<'a>(
        &'a self,
        target: &'a Target,
        condition: &'a Condition,
    ) -> StoreFuture<'a, Installed> {
        self.inner.rollback(target, condition)
    }
    fn disable<'a>(
        &'a self,
        target: &'a Target,
        condition: &'a Condition,
    ) -> StoreFuture<'a, Option<Revision>> {
        self.inner.disable(target, condition)
    }
    fn get<'a>(&'a self, key: &'a RecordKey) -> StoreFuture<'a, Option<Record>> {
        self.inner.get(key)
    }
    fn put<'a>(
        &'a self,
        key: &'a RecordKey,
        value: &'a [u8],
        condition: &'a Condition,
    ) -> StoreFuture<'a, Revision> {
        self.inner.put(key, value, condition)
    }
    fn delete<'a>(
        &'a self,
        key: &'a RecordKey,
        condition: &'a Condition,
    ) -> StoreFuture<'a, Option<Revision>> {
        self.inner.delete(key, condition)
    }
    fn keys<'a>(&'a self, prefix: &'a str) -> StoreFuture<'a, Vec<RecordKey>> {
        self.inner.keys(prefix)
    }
    fn watch(&self, after: Revision) -> StoreFuture<'_, Watch> {
        self.refused().unwrap_or_else(|| self.inner.watch(after))
    }
    fn lock<'a>(
        &'a self,
        name: &'a RecordKey,
        holder: &'a str,
        ttl: Duration,
    ) -> StoreFuture<'a, Lease> {
        self.inner.lock(name, holder, ttl)
    }
    fn renew<'a>(&'a self, lease: &'a Lease, ttl: Duration) -> StoreFuture<'a, Lease> {
        self.inner.renew(lease, ttl)
    }
    fn unlock<'a>(&'a self, lease: &'a Lease) -> StoreFuture<'a, ()> {
        self.inner.unlock(lease)
    }
}

#[test]
fn a_change_whose_read_failed_is_read_again_when_the_store_is_back() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Unreachable::new(dir.path()));
    let pki = Pki::new();
    let acme_target = Target::Domain(DomainName::new("acme.test").unwrap());
    let system = pki.leaf(&["mail.example.test"]);
    let acme1 = pki.leaf(&["webmail.acme.test"]);
    let acme2 = pki.leaf(&["webmail.acme.test"]);
    install(&*store, &Target::System, &system, &["mail.example.test"]);
    install(&*store, &acme_target, &acme1, &["webmail.acme.test"]);

    let index = Arc::new(LiveIndex::new(&Topology::from_toml_str(TOPOLOGY).unwrap()));
    let follower = FollowerThread::start(store.clone(), index.clone()).unwrap();
    assert_eq!(served(&index, "webmail.acme.test"), sha256_hex(&acme1.cert));

    // The renewal's change arrives, but its bundle cannot be read: the old one stays.
    store.failing.store(true, Ordering::SeqCst);
    install(&*store, &acme_target, &acme2, &["webmail.acme.test"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while index.failures().is_empty() {
        assert!(
            Instant::now() < deadline,
            "the failed read was never reported"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let failure = &index.failures()[0];
    assert_eq!(failure.target, acme_target);
    assert!(matches!(failure.error, LoadError::Store(_)), "{failure}");
    assert!(failure.kept_previous);
    assert_eq!(served(&index, "webmail.acme.test"), sha256_hex(&acme1.cert));

    // The store is back; no further change comes, yet the renewal is served.
    store.failing.store(false, Ordering::SeqCst);
    wait_for(&index, "webmail.acme.test", &sha256_hex(&acme2.cert));
    assert!(index.failures().is_empty());
    follower.stop();
}

#[test]
fn retry_failed_reads_again_only_what_the_store_could_not_read() {
    let dir = tempfile::tempdir().unwrap();
    let store = Unreachable::new(dir.path());
    let pki = Pki::new();
    let acme_target = Target::Domain(DomainName::new("acme.test").unwrap());
    let system = pki.leaf(&["mail.example.test"]);
    let acme1 = pki.leaf(&["webmail.acme.test"]);
    let acme2 = pki.leaf(&["webmail.acme.test"]);
    install(&store, &Target::System, &system, &["mail.example.test"]);
    install_mismatched(&store, &acme_target, &acme2, &acme1);
    let index = LiveIndex::new(&Topology::from_toml_str(TOPOLOGY).unwrap());

    store.failing.store(true, Ordering::SeqCst);
    block_on(load_all(&store, &index)).unwrap();
    assert_eq!(index.failures().len(), 2, "{:?}", index.failures());
    assert_eq!(
        block_on(retry_failed(&store, &index)),
        0,
        "still unreachable"
    );

    store.failing.store(false, Ordering::SeqCst);
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
    assert_eq!(failures[0].error, LoadError::KeyMismatch);
    // A bundle that was read but cannot be used is left to the next install.
    assert_eq!(block_on(retry_failed(&store, &index)), 0);
}

#[test]
fn a_follower_spawned_while_the_store_is_down_loads_when_it_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Unreachable::new(dir.path()));
    let pki = Pki::new();
    let acme_target = Target::Domain(DomainName::new("acme.test").unwrap());
    let system = pki.leaf(&["mail.example.test"]);
    let acme1 = pki.leaf(&["webmail.acme.test"]);
    let acme2 = pki.leaf(&["webmail.acme.test"]);
    install(&*store, &Target::System, &system, &["mail.example.test"]);
    install(&*store, &acme_target, &acme1, &["webmail.acme.test"]);
    let index = Arc::new(LiveIndex::new(&Topology::from_toml_str(TOPOLOGY).unwrap()));

    store.down.store(true, Ordering::SeqCst);
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

    store.down.store(false, Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !follower.has_loaded() {
        assert!(
            Instant::now() < deadline,
            "never loaded after the store came back"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(served(&index, "webmail.acme.test"), sha256_hex(&acme1.cert));
    // And it follows from there.
    install(&*store, &acme_target, &acme2, &["webmail.acme.test"]);
    wait_for(&index, "webmail.acme.test", &sha256_hex(&acme2.cert));
    follower.stop();
}

#[test]
fn a_follower_spawned_while_the_store_is_down_stops_promptly() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Unreachable::new(dir.path()));
    store.down.store(true, Ordering::SeqCst);
    let index = Arc::new(LiveIndex::new(&Topology::from_toml_str(TOPOLOGY).unwrap()));
    let follower = FollowerThread::spawn(store, index).unwrap();
    let started = Instant::now();
    follower.stop();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "stop waited for the store"
    );
}
