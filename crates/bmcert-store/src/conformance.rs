//! A conformance suite for [`Store`] implementations.
//!
//! Every backend's tests run [`run_all`] (or the single checks) unchanged, so a future
//! backend gets a ready test suite. The checks panic with a message on a violation, like
//! assertions in a test. They use fake certificate bytes: a store does not parse
//! certificates.
//!
//! The checks need no async runtime of their own (timeouts use a helper thread), so a
//! tokio-based backend runs them inside its runtime and [`DirStore`](crate::DirStore) runs
//! them under [`block_on`](crate::block_on).
//!
//! The bundles are real (self-signed P-256 certificates made with rcgen): every store
//! proves what it holds. [`corruption`] damages a backend's raw storage through its
//! [`RawStorage`] hook and checks the per-target verdicts.
// A test suite: failing loudly is its job.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
// Rows of `Store::list` are compared whole; their size does not matter here.
#![allow(clippy::result_large_err)]

use core::future::{poll_fn, Future};
use core::pin::pin;
use core::task::Poll;
use core::time::Duration;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Waker;
use std::thread;

use bmcert_topology::Target;
use rustls_pki_types::CertificateDer;
use time::OffsetDateTime;

use crate::testing::{RawItem, RawStorage};
use crate::{
    Bundle, BundleMeta, Change, ChangeKey, ChangeKind, Condition, KeyFormat, Listed, RecordKey,
    Revision, SecretKey, Source, Store, StoreError, Watch, HISTORY_DEPTH,
};

/// Makes a fresh, empty store for one check.
pub type NewStore<'a> = &'a dyn Fn() -> Arc<dyn Store>;

/// Runs every check, each on a fresh store from `new_store`.
pub async fn run_all(new_store: NewStore<'_>) {
    install_and_read_back(&*new_store()).await;
    revisions_increase(&*new_store()).await;
    compare_and_swap_on_bundles(&*new_store()).await;
    history_and_rollback(&*new_store()).await;
    disable_deletes_every_version(&*new_store()).await;
    list_is_sorted_with_metadata(&*new_store()).await;
    list_meta_is_list_without_keys(&*new_store()).await;
    records_round_trip_with_cas(&*new_store()).await;
    records_by_prefix_with_values(&*new_store()).await;
    watch_delivers_and_resumes(&*new_store()).await;
    locks_expire_and_fence(&*new_store()).await;
}

/// A bundle distinguishable by `n`: a P-256 certificate for `n{n}.example.test` issued by
/// a test authority, its key, and the authority's certificate (made once per `n` and
/// process, then copied), so the store's proof of every bundle it holds passes.
pub fn sample_bundle(n: u32) -> Bundle {
    static MADE: Mutex<Vec<(u32, Bundle)>> = Mutex::new(Vec::new());
    let mut made = MADE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((_, b)) = made.iter().find(|(m, _)| *m == n) {
        return b.clone_bundle();
    }
    let (leaf, key, issuer) =
        issued_leaf(&format!("n{n}.example.test"), 2_000_000_000 + i64::from(n));
    let source = if n % 2 == 0 {
        Source::Files
    } else {
        Source::Acme
    };
    let installed_at = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
    let meta = BundleMeta::for_leaf(source, installed_at, &leaf).unwrap();
    let bundle = Bundle::new(vec![leaf, issuer], key, meta).unwrap();
    made.push((n, bundle.clone_bundle()));
    bundle
}

/// A P-256 certificate for `name` valid until `not_after` (Unix seconds) issued by a
/// fresh test authority: the leaf, its key and the authority's certificate.
fn issued_leaf(
    name: &str,
    not_after: i64,
) -> (CertificateDer<'static>, SecretKey, CertificateDer<'static>) {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "bmcert conformance authority");
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let mut params = rcgen::CertificateParams::new(vec![name.to_owned()]).unwrap();
    params.not_after = OffsetDateTime::from_unix_timestamp(not_after).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    (
        cert.der().clone(),
        SecretKey::new(KeyFormat::Pkcs8, key.serialize_der()),
        ca.der().clone(),
    )
}

/// A certificate for `name` valid until `not_after` (Unix seconds) and its key.
pub fn sample_leaf(name: &str, not_after: i64) -> (CertificateDer<'static>, SecretKey) {
    let (leaf, key, _) = issued_leaf(name, not_after);
    (leaf, key)
}

fn domain(name: &str) -> Target {
    format!("domain:{name}").parse().unwrap()
}

/// What is installed is read back whole: chain, key and metadata.
pub async fn install_and_read_back(store: &dyn Store) {
    let target = domain("acme.test");
    assert!(store.current(&target).await.unwrap().is_none());
    let bundle = sample_bundle(1);
    let installed = store
        .install(&target, &bundle, &Condition::none())
        .await
        .unwrap();
    assert_eq!(installed.version, 1);
    assert_eq!(installed.bundle, bundle);
    let current = store
        .current(&target)
        .await
        .unwrap()
        .expect("installed bundle");
    assert_eq!(current.bundle, bundle);
    assert_eq!(current.revision, installed.revision);
    assert_eq!(current.target, target);
    assert!(store.current(&Target::System).await.unwrap().is_none());
}

/// Every write gets a larger revision, and `revision()` is the last one.
pub async fn revisions_increase(store: &dyn Store) {
    let start = store.revision().await.unwrap();
    let a = store
        .install(&Target::System, &sample_bundle(1), &Condition::none())
        .await
        .unwrap()
        .revision;
    let key = RecordKey::new("test/rev").unwrap();
    let b = store.put(&key, b"x", &Condition::none()).await.unwrap();
    let c = store
        .delete(&key, &Condition::none())
        .await
        .unwrap()
        .unwrap();
    assert!(start < a && a < b && b < c, "{start} {a} {b} {c}");
    assert_eq!(store.revision().await.unwrap(), c);
}

/// Conditional installs: create-only, and expected-revision swaps; a lost swap changes
/// nothing.
pub async fn compare_and_swap_on_bundles(store: &dyn Store) {
    let target = domain("cas.test");
    let first = store
        .install(&target, &sample_bundle(1), &Condition::absent())
        .await
        .unwrap();
    let lost = store
        .install(&target, &sample_bundle(2), &Condition::absent())
        .await
        .unwrap_err();
    assert!(
        matches!(lost, StoreError::Conflict { actual: Some(r), .. } if r == first.revision),
        "{lost:?}"
    );
    let stale = Condition::at(Revision(first.revision.0 + 1000));
    assert!(matches!(
        store.install(&target, &sample_bundle(3), &stale).await,
        Err(StoreError::Conflict { .. })
    ));
    assert_eq!(
        store.current(&target).await.unwrap().unwrap().bundle,
        sample_bundle(1)
    );
    let second = store
        .install(&target, &sample_bundle(4), &Condition::at(first.revision))
        .await
        .unwrap();
    assert_eq!(second.version, 2);
    assert!(matches!(
        store
            .rollback(&target, &Condition::at(first.revision))
            .await,
        Err(StoreError::Conflict { .. })
    ));
    assert!(matches!(
        store.disable(&target, &Condition::at(first.revision)).await,
        Err(StoreError::Conflict { .. })
    ));
    assert_eq!(
        store.current(&target).await.unwrap().unwrap().bundle,
        sample_bundle(4)
    );
}

/// The last `HISTORY_DEPTH` previous versions are kept; rollback walks back through them.
pub async fn history_and_rollback(store: &dyn Store) {
    let target = Target::System;
    assert!(matches!(
        store.rollback(&target, &Condition::none()).await,
        Err(StoreError::NoPreviousVersion { .. })
    ));
    for n in 1..=5 {
        store
            .install(&target, &sample_bundle(n), &Condition::none())
            .await
            .unwrap();
    }
    let history = store.history(&target).await.unwrap();
    let versions: Vec<u64> = history.iter().map(|i| i.version).collect();
    assert_eq!(versions, vec![4, 3, 2]);
    assert_eq!(history.len(), HISTORY_DEPTH);
    assert_eq!(history[0].bundle, sample_bundle(4));

    let before = store.revision().await.unwrap();
    let back = store.rollback(&target, &Condition::none()).await.unwrap();
    assert_eq!((back.version, &back.bundle), (4, &sample_bundle(4)));
    assert!(back.revision > before);
    let current = store.current(&target).await.unwrap().unwrap();
    assert_eq!((current.version, current.revision), (4, back.revision));
    assert_eq!(
        store
            .rollback(&target, &Condition::none())
            .await
            .unwrap()
            .version,
        3
    );
    assert_eq!(
        store
            .rollback(&target, &Condition::none())
            .await
            .unwrap()
            .version,
        2
    );
    assert!(matches!(
        store.rollback(&target, &Condition::none()).await,
        Err(StoreError::NoPreviousVersion { .. })
    ));
    // A new install after rollbacks gets a fresh version number.
    let next = store
        .install(&target, &sample_bundle(6), &Condition::none())
        .await
        .unwrap();
    assert_eq!(next.version, 6);
}

/// Disabling deletes the current bundle and every older version: nothing to roll back to.
pub async fn disable_deletes_every_version(store: &dyn Store) {
    let target = domain("off.test");
    assert_eq!(
        store.disable(&target, &Condition::none()).await.unwrap(),
        None
    );
    store
        .install(&target, &sample_bundle(1), &Condition::none())
        .await
        .unwrap();
    store
        .install(&target, &sample_bundle(2), &Condition::none())
        .await
        .unwrap();
    let rev = store
        .disable(&target, &Condition::none())
        .await
        .unwrap()
        .expect("a change");
    assert_eq!(store.revision().await.unwrap(), rev);
    assert!(store.current(&target).await.unwrap().is_none());
    assert!(store.list().await.unwrap().is_empty());
    assert_eq!(
        store.disable(&target, &Condition::none()).await.unwrap(),
        None
    );
    assert!(store.history(&target).await.unwrap().is_empty());
    assert!(matches!(
        store.rollback(&target, &Condition::none()).await,
        Err(StoreError::NoPreviousVersion { .. })
    ));
    // A later install gets a version number never used before.
    let next = store
        .install(&target, &sample_bundle(3), &Condition::none())
        .await
        .unwrap();
    assert_eq!(next.version, 3);
    assert!(store.history(&target).await.unwrap().is_empty());
}

/// `list` returns every target with a current bundle, sorted, with its metadata.
pub async fn list_is_sorted_with_metadata(store: &dyn Store) {
    for (n, t) in [(1, "zeta.test"), (2, "alpha.test")] {
        store
            .install(&domain(t), &sample_bundle(n), &Condition::none())
            .await
            .unwrap();
    }
    store
        .install(&Target::System, &sample_bundle(3), &Condition::none())
        .await
        .unwrap();
    let listed: Vec<Listed> = store
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.expect("every target is whole"))
        .collect();
    let targets: Vec<String> = listed.iter().map(|l| l.target.to_string()).collect();
    assert_eq!(targets, ["system", "domain:alpha.test", "domain:zeta.test"]);
    assert_eq!(&listed[1].meta, sample_bundle(2).meta());
    assert_eq!(listed[0].version, 1);
}

/// `list_meta` gives the rows `list` gives (target, version, revision, metadata, sorted)
/// after installs, a rollback and a disable, the recorded `not_before` included.
pub async fn list_meta_is_list_without_keys(store: &dyn Store) {
    assert!(store.list_meta().await.unwrap().is_empty());
    let (a, b) = (domain("a.test"), domain("b.test"));
    for (t, n) in [(&b, 1), (&a, 2), (&Target::System, 3), (&a, 4), (&b, 5)] {
        store
            .install(t, &sample_bundle(n), &Condition::none())
            .await
            .unwrap();
    }
    store.rollback(&b, &Condition::none()).await.unwrap();
    let c = domain("c.test");
    store
        .install(&c, &sample_bundle(6), &Condition::none())
        .await
        .unwrap();
    store.disable(&c, &Condition::none()).await.unwrap();
    let whole = |rows: Vec<Result<Listed, crate::Damaged>>| -> Vec<Listed> {
        rows.into_iter()
            .map(|r| r.expect("every target is whole"))
            .collect()
    };
    let listed = whole(store.list().await.unwrap());
    let meta = whole(store.list_meta().await.unwrap());
    assert_eq!(meta, listed);
    let targets: Vec<String> = meta.iter().map(|l| l.target.to_string()).collect();
    assert_eq!(targets, ["system", "domain:a.test", "domain:b.test"]);
    // b.test was rolled back to its first bundle.
    assert_eq!(
        (meta[2].version, &meta[2].meta),
        (1, sample_bundle(1).meta())
    );
    assert_eq!(&meta[1].meta, sample_bundle(4).meta());
    assert!(meta.iter().all(|l| l.meta.not_before.is_some()));
}

/// `records(prefix)` gives the records at or under `prefix` (segment boundaries
/// respected), sorted, with the values and revisions `get` gives.
pub async fn records_by_prefix_with_values(store: &dyn Store) {
    let key = |k: &str| RecordKey::new(k).unwrap();
    assert!(store.records("renewal").await.unwrap().is_empty());
    let written = [
        ("renewal/domain/b.test", &b"b"[..]),
        ("renewal/system", b"s"),
        ("renewal/domain/a.test", b"a"),
        ("renewal", b"top"),
        ("renewalx/system", b"not under"),
        ("warning/system", b"w"),
    ];
    for (k, v) in written {
        store.put(&key(k), v, &Condition::none()).await.unwrap();
    }
    store
        .delete(&key("renewal/domain/b.test"), &Condition::none())
        .await
        .unwrap();
    let got = store.records("renewal").await.unwrap();
    let keys: Vec<&str> = got.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["renewal", "renewal/domain/a.test", "renewal/system"]);
    for (k, record) in &got {
        assert_eq!(Some(record), store.get(k).await.unwrap().as_ref(), "{k}");
    }
    assert_eq!(got[1].1.secret_value(), b"a");
    let domains = store.records("renewal/domain/").await.unwrap();
    assert_eq!(domains.len(), 1);
    assert_eq!(domains[0].0.as_str(), "renewal/domain/a.test");
    assert_eq!(store.records("").await.unwrap().len(), 5);
    assert!(store.records("nothing/here").await.unwrap().is_empty());
}

/// Records: create, read, swap, delete, list by prefix.
pub async fn records_round_trip_with_cas(store: &dyn Store) {
    let account = RecordKey::new("acme/account").unwrap();
    let token = RecordKey::new("acme/http01/Tok-en_1").unwrap();
    let other = RecordKey::new("acme/http01x").unwrap();
    assert!(store.get(&account).await.unwrap().is_none());
    let r1 = store
        .put(&account, b"creds-1", &Condition::absent())
        .await
        .unwrap();
    assert!(matches!(
        store.put(&account, b"creds-2", &Condition::absent()).await,
        Err(StoreError::Conflict { .. })
    ));
    let r2 = store
        .put(&account, b"creds-2", &Condition::at(r1))
        .await
        .unwrap();
    assert!(matches!(
        store.put(&account, b"creds-3", &Condition::at(r1)).await,
        Err(StoreError::Conflict { .. })
    ));
    let got = store.get(&account).await.unwrap().unwrap();
    assert_eq!((got.revision, got.secret_value()), (r2, &b"creds-2"[..]));
    store
        .put(&token, b"key-authorization", &Condition::none())
        .await
        .unwrap();
    store.put(&other, b"", &Condition::none()).await.unwrap();
    assert_eq!(
        store.get(&other).await.unwrap().unwrap().secret_value(),
        b""
    );
    assert_eq!(
        store.keys("acme/http01").await.unwrap(),
        vec![token.clone()]
    );
    assert_eq!(store.keys("acme").await.unwrap().len(), 3);
    assert!(matches!(
        store.delete(&account, &Condition::at(r1)).await,
        Err(StoreError::Conflict { .. })
    ));
    assert!(store
        .delete(&account, &Condition::at(r2))
        .await
        .unwrap()
        .is_some());
    assert!(store.get(&account).await.unwrap().is_none());
    assert_eq!(
        store.delete(&account, &Condition::none()).await.unwrap(),
        None
    );
}

/// The feed delivers every change after the given revision, in order, and can resume.
pub async fn watch_delivers_and_resumes(store: &dyn Store) {
    let start = store.revision().await.unwrap();
    let mut watch = store.watch(start).await.unwrap();
    let target = domain("watch.test");
    let key = RecordKey::new("renewal/system").unwrap();
    let a = store
        .install(&target, &sample_bundle(1), &Condition::none())
        .await
        .unwrap()
        .revision;
    let b = store.put(&key, b"due", &Condition::none()).await.unwrap();
    let c = store
        .disable(&target, &Condition::none())
        .await
        .unwrap()
        .unwrap();
    let expected = [
        Change {
            revision: a,
            key: ChangeKey::Bundle(target.clone()),
            kind: ChangeKind::Put,
        },
        Change {
            revision: b,
            key: ChangeKey::Record(key.clone()),
            kind: ChangeKind::Put,
        },
        Change {
            revision: c,
            key: ChangeKey::Bundle(target.clone()),
            kind: ChangeKind::Delete,
        },
    ];
    for want in &expected {
        let got = next_within(&mut watch, Duration::from_secs(2)).await;
        assert_eq!(&got, want);
    }
    // Resuming after `a` replays `b` and `c`.
    let mut resumed = store.watch(a).await.unwrap();
    for want in &expected[1..] {
        assert_eq!(
            &next_within(&mut resumed, Duration::from_secs(2)).await,
            want
        );
    }
    // Nothing else is pending.
    assert!(watch.try_recv().is_none());
}

/// Locks: exclusive until expiry, fencing tokens grow, a stale token is refused.
pub async fn locks_expire_and_fence(store: &dyn Store) {
    let name = RecordKey::new("renewal").unwrap();
    let ttl = Duration::from_millis(400);
    let first = store.lock(&name, "server-a", ttl).await.unwrap();
    match store.lock(&name, "server-b", ttl).await {
        Err(StoreError::LockHeld { holder, .. }) => assert_eq!(holder, "server-a"),
        other => panic!("second lock should be refused, got {other:?}"),
    }
    let key = RecordKey::new("renewal/system").unwrap();
    store
        .put(&key, b"a", &Condition::none().fenced_by(&first))
        .await
        .expect("the holder writes with its fence");
    let first = store.renew(&first, ttl).await.unwrap();
    sleep(ttl + Duration::from_millis(200)).await;
    let second = store.lock(&name, "server-b", ttl).await.unwrap();
    assert!(second.token > first.token);
    let refused = store
        .put(&key, b"stale", &Condition::none().fenced_by(&first))
        .await
        .unwrap_err();
    assert!(matches!(refused, StoreError::Fenced { .. }), "{refused:?}");
    assert!(matches!(
        store
            .install(
                &Target::System,
                &sample_bundle(1),
                &Condition::none().fenced_by(&first)
            )
            .await,
        Err(StoreError::Fenced { .. })
    ));
    assert!(store.current(&Target::System).await.unwrap().is_none());
    assert_eq!(store.get(&key).await.unwrap().unwrap().secret_value(), b"a");
    assert!(matches!(
        store.renew(&first, ttl).await,
        Err(StoreError::Fenced { .. })
    ));
    // Releasing a lost lock is harmless and does not release the new holder's.
    store.unlock(&first).await.unwrap();
    assert!(store.lock(&name, "server-c", ttl).await.is_err());
    store.unlock(&second).await.unwrap();
    let third = store.lock(&name, "server-c", ttl).await.unwrap();
    assert!(third.token > second.token);
}

/// The next change of `watch`, failing the check after `timeout`.
pub async fn next_within(watch: &mut Watch, timeout: Duration) -> Change {
    let mut next = pin!(watch.recv());
    let mut delay = pin!(sleep(timeout));
    let item = poll_fn(|cx| {
        if let Poll::Ready(item) = next.as_mut().poll(cx) {
            return Poll::Ready(Some(item));
        }
        if delay.as_mut().poll(cx).is_ready() {
            return Poll::Ready(None);
        }
        Poll::Pending
    })
    .await;
    match item {
        Some(Some(Ok(change))) => change,
        Some(Some(Err(e))) => panic!("the watch failed: {e}"),
        Some(None) => panic!("the watch ended"),
        None => panic!("no change within {timeout:?}"),
    }
}

/// A runtime-independent sleep (a helper thread wakes the task).
pub async fn sleep(duration: Duration) {
    let done = Arc::new(AtomicBool::new(false));
    let waker: Arc<Mutex<Option<Waker>>> = Arc::new(Mutex::new(None));
    {
        let (done, waker) = (done.clone(), waker.clone());
        thread::spawn(move || {
            thread::sleep(duration);
            done.store(true, Ordering::SeqCst);
            if let Some(w) = waker.lock().unwrap().take() {
                w.wake();
            }
        });
    }
    poll_fn(|cx| {
        *waker.lock().unwrap() = Some(cx.waker().clone());
        if done.load(Ordering::SeqCst) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
}

/// Makes a fresh, empty store with the hook that damages its raw storage.
pub type NewRawStore<'a> = &'a dyn Fn() -> (Arc<dyn Store>, Arc<dyn RawStorage>);

/// How the corruption suite damages a raw item.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Harm {
    /// Keeps the first half.
    Truncate,
    /// Flips one bit: in the middle, or for metadata in the last hexadecimal digit (the
    /// fingerprint's: the proof covers it; `installed_at` is not the certificate's and
    /// cannot be checked).
    FlipBit,
    /// Leaves nothing.
    Empty,
}

impl Harm {
    /// Every harm.
    pub const ALL: [Self; 3] = [Self::Truncate, Self::FlipBit, Self::Empty];

    fn apply(self, item: RawItem, mut bytes: Vec<u8>) -> Vec<u8> {
        match self {
            Self::Truncate => {
                bytes.truncate(bytes.len() / 2);
                bytes
            }
            Self::Empty => Vec::new(),
            Self::FlipBit => {
                let at = match item {
                    RawItem::Metadata => bytes.iter().rposition(u8::is_ascii_hexdigit),
                    _ => None,
                }
                .unwrap_or(bytes.len() / 2);
                if let Some(b) = bytes.get_mut(at) {
                    *b ^= 0x01;
                }
                bytes
            }
        }
    }
}

/// The targets every corruption case starts from: the system target, `a.test` with two
/// versions (the damage hits its current one, version 2), and `b.test`.
struct Scene {
    store: Arc<dyn Store>,
    raw: Arc<dyn RawStorage>,
    a: Target,
    b: Target,
}

impl Scene {
    async fn new(new_store: NewRawStore<'_>) -> Self {
        let (store, raw) = new_store();
        let (a, b) = (domain("a.test"), domain("b.test"));
        for (target, n) in [(&Target::System, 1), (&a, 2), (&a, 3), (&b, 4)] {
            store
                .install(target, &sample_bundle(n), &Condition::none())
                .await
                .unwrap();
        }
        Self { store, raw, a, b }
    }

    /// Lists, and checks that only `a.test` may be damaged: the others are whole, with
    /// what was installed. Returns `a.test`'s row.
    async fn list_others_whole(&self, case: &str) -> Option<Result<Listed, crate::Damaged>> {
        let listed =
            self.store.list().await.unwrap_or_else(|e| {
                panic!("{case}: one damaged target failed the whole list: {e}")
            });
        let mut a_row = None;
        let mut seen = Vec::new();
        for row in listed {
            let target = match &row {
                Ok(l) => l.target.clone(),
                Err(d) => d.target.clone(),
            };
            seen.push(target.to_string());
            if target == self.a {
                a_row = Some(row);
                continue;
            }
            let n = if target == Target::System { 1 } else { 4 };
            let listed = row.unwrap_or_else(|d| panic!("{case}: {target} is damaged too: {d}"));
            assert_eq!(&listed.meta, sample_bundle(n).meta(), "{case}: {target}");
        }
        // The metadata-only read is not held up by one damaged target either.
        let meta = self.store.list_meta().await.unwrap_or_else(|e| {
            panic!("{case}: one damaged target failed the whole metadata list: {e}")
        });
        for (target, n) in [(&Target::System, 1), (&self.b, 4)] {
            let row = meta
                .iter()
                .find_map(|r| r.as_ref().ok().filter(|l| &l.target == target));
            assert_eq!(
                row.map(|l| &l.meta),
                Some(sample_bundle(n).meta()),
                "{case}: list_meta of {target}"
            );
        }
        for (target, n) in [(&Target::System, 1), (&self.b, 4)] {
            let current = self.store.current(target).await.unwrap().unwrap();
            assert_eq!(current.bundle, sample_bundle(n), "{case}: {target}");
        }
        assert!(
            seen.contains(&"system".to_owned()) && seen.contains(&self.b.to_string()),
            "{case}: {seen:?}"
        );
        a_row
    }

    /// `a.test` is reported damaged, alone, by `list` and `current`, naming the target
    /// and the advice that repairs it.
    async fn expect_a_damaged(&self, case: &str) {
        let row = self.list_others_whole(case).await;
        let damaged = match row {
            Some(Err(d)) => d,
            other => panic!("{case}: a.test should be listed as damaged, got {other:?}"),
        };
        assert_eq!(damaged.target, self.a, "{case}");
        let shown = damaged.to_string();
        assert!(
            shown.contains("bmcert install") && shown.contains("bmcert disable"),
            "{case}: {shown}"
        );
        match self.store.current(&self.a).await {
            Err(StoreError::Damaged(d)) => assert_eq!(d.target, self.a, "{case}"),
            other => panic!("{case}: current(a.test) should be Damaged, got {other:?}"),
        }
    }

    /// An install of `a.test` succeeds and repairs it; everything else is as before, and
    /// the older version that was intact (version 1) is still kept when `kept_v1`.
    async fn repair_by_install(&self, case: &str, kept_v1: bool) {
        let fresh = sample_bundle(5);
        let installed = self
            .store
            .install(&self.a, &fresh, &Condition::none())
            .await
            .unwrap_or_else(|e| panic!("{case}: install of the damaged target failed: {e}"));
        assert!(
            installed.version >= 3,
            "{case}: version numbers are never reused"
        );
        let row = self.list_others_whole(case).await;
        assert_eq!(
            row.map(|r| r.map(|l| l.meta)),
            Some(Ok(fresh.meta().clone())),
            "{case}"
        );
        assert_eq!(
            self.store.current(&self.a).await.unwrap().unwrap().bundle,
            fresh,
            "{case}"
        );
        let history = self.store.history(&self.a).await.unwrap();
        if kept_v1 {
            assert!(
                history
                    .iter()
                    .any(|i| i.version == 1 && i.bundle == sample_bundle(2)),
                "{case}: the intact version 1 was lost: {:?}",
                history.iter().map(|i| i.version).collect::<Vec<_>>()
            );
        }
    }
}

/// The corruption suite: damages each raw item the backend keeps ([`RawStorage::items`])
/// in each way ([`Harm`]), swaps in another valid key, edits the metadata's `not_after`,
/// and adds stray entries; checks that a damaged target is reported alone (typed, with the
/// advice that works), that every other target is served whole, that install and disable
/// repair the damaged target, that store-wide files are rebuilt, and that nothing intact
/// is lost. Each case runs on a fresh store from `new_store`.
pub async fn corruption(new_store: NewRawStore<'_>) {
    let items = new_store().1.items();
    for item in items.iter().copied() {
        for harm in Harm::ALL {
            if item.is_per_target() {
                damaged_item(new_store, item, harm).await;
            } else {
                damaged_store_file(new_store, item, harm).await;
            }
        }
    }
    swapped_key(new_store).await;
    stale_not_after(new_store).await;
    disable_repairs(new_store).await;
    strays_are_ignored(new_store).await;
}

/// One per-target item damaged one way.
pub async fn damaged_item(new_store: NewRawStore<'_>, item: RawItem, harm: Harm) {
    let case = format!("{item:?} {harm:?}");
    let scene = Scene::new(new_store).await;
    let bytes = scene.raw.read_raw(&scene.a, item).await.unwrap().unwrap();
    let damaged = harm.apply(item, bytes);
    scene.raw.write_raw(&scene.a, item, &damaged).await.unwrap();
    if item == RawItem::State {
        // Which version is current is damaged: a backend that stores the current bundle
        // apart from it may still serve that bundle, whole; or report the target damaged.
        match scene.list_others_whole(&case).await {
            Some(Ok(listed)) => assert_eq!(&listed.meta, sample_bundle(3).meta(), "{case}"),
            Some(Err(d)) => assert_eq!(d.target, scene.a, "{case}"),
            None => panic!("{case}: a.test vanished from the list"),
        }
    } else {
        scene.expect_a_damaged(&case).await;
    }
    scene.repair_by_install(&case, item != RawItem::State).await;
}

/// The current key replaced by another valid key (of another certificate).
pub async fn swapped_key(new_store: NewRawStore<'_>) {
    let scene = Scene::new(new_store).await;
    let (_, other_key) = sample_leaf("other.example.test", 2_000_000_000);
    scene.raw.swap_key(&scene.a, &other_key).await.unwrap();
    scene.expect_a_damaged("swapped key").await;
    match scene.store.current(&scene.a).await {
        Err(StoreError::Damaged(d)) => assert!(
            matches!(d.damage, crate::Damage::Key(_)),
            "swapped key: {d}"
        ),
        other => panic!("swapped key: {other:?}"),
    }
    scene.repair_by_install("swapped key", true).await;
}

/// The metadata's `not_after` edited to 2099: the certificate says otherwise.
pub async fn stale_not_after(new_store: NewRawStore<'_>) {
    let scene = Scene::new(new_store).await;
    let later = OffsetDateTime::from_unix_timestamp(4_070_908_800).unwrap(); // 2099-01-01
    scene.raw.set_not_after(&scene.a, later).await.unwrap();
    scene.expect_a_damaged("stale not_after").await;
    match scene.store.current(&scene.a).await {
        Err(StoreError::Damaged(d)) => assert!(
            matches!(
                d.damage,
                crate::Damage::Metadata {
                    field: "not_after",
                    ..
                }
            ),
            "stale not_after: {d}"
        ),
        other => panic!("stale not_after: {other:?}"),
    }
    scene.repair_by_install("stale not_after", true).await;
}

/// Disable succeeds on a damaged target (its key swapped, and separately its state
/// emptied) and leaves nothing of it.
pub async fn disable_repairs(new_store: NewRawStore<'_>) {
    for state in [false, true] {
        let case = if state {
            "disable, state emptied"
        } else {
            "disable, key swapped"
        };
        let scene = Scene::new(new_store).await;
        if state {
            scene
                .raw
                .write_raw(&scene.a, RawItem::State, b"")
                .await
                .unwrap();
        } else {
            let (_, other_key) = sample_leaf("other.example.test", 2_000_000_000);
            scene.raw.swap_key(&scene.a, &other_key).await.unwrap();
        }
        let revision = scene
            .store
            .disable(&scene.a, &Condition::none())
            .await
            .unwrap_or_else(|e| panic!("{case}: {e}"));
        assert!(revision.is_some(), "{case}");
        assert!(
            scene.store.current(&scene.a).await.unwrap().is_none(),
            "{case}"
        );
        assert!(
            scene.store.history(&scene.a).await.unwrap().is_empty(),
            "{case}"
        );
        assert!(scene.list_others_whole(case).await.is_none(), "{case}");
        let next = scene
            .store
            .install(&scene.a, &sample_bundle(5), &Condition::none())
            .await
            .unwrap();
        assert!(
            next.version >= 3,
            "{case}: version numbers are never reused"
        );
    }
}

/// A store-wide file damaged one way: it is rebuilt, every target is served whole, writes
/// work with revisions above every earlier one, and a watch sees the next change.
pub async fn damaged_store_file(new_store: NewRawStore<'_>, item: RawItem, harm: Harm) {
    let case = format!("{item:?} {harm:?}");
    let scene = Scene::new(new_store).await;
    let before = scene.store.revision().await.unwrap();
    let bytes = scene
        .raw
        .read_raw(&Target::System, item)
        .await
        .unwrap()
        .unwrap_or_default();
    let damaged = harm.apply(item, bytes);
    scene
        .raw
        .write_raw(&Target::System, item, &damaged)
        .await
        .unwrap();
    let row = scene.list_others_whole(&case).await;
    assert_eq!(
        row.map(|r| r.map(|l| l.meta)),
        Some(Ok(sample_bundle(3).meta().clone())),
        "{case}"
    );
    let now = scene
        .store
        .revision()
        .await
        .unwrap_or_else(|e| panic!("{case}: revision() failed: {e}"));
    let mut watch = scene.store.watch(now).await.unwrap();
    let key = RecordKey::new("test/after-damage").unwrap();
    let written = scene
        .store
        .put(&key, b"x", &Condition::none())
        .await
        .unwrap_or_else(|e| panic!("{case}: a write failed: {e}"));
    assert!(
        written > before,
        "{case}: revision {written} reused (was {before})"
    );
    let installed = scene
        .store
        .install(&scene.b, &sample_bundle(6), &Condition::none())
        .await
        .unwrap();
    assert!(installed.revision > written, "{case}");
    let mut seen = Vec::new();
    while !seen.contains(&ChangeKey::Bundle(scene.b.clone())) {
        let change = next_within(&mut watch, Duration::from_secs(10)).await;
        assert!(change.revision > now, "{case}: {change:?}");
        seen.push(change.key);
    }
    assert_eq!(
        scene.store.revision().await.unwrap(),
        installed.revision,
        "{case}"
    );
}

/// Entries the layout does not name are ignored: nothing is reported damaged, and reads
/// and writes go on.
pub async fn strays_are_ignored(new_store: NewRawStore<'_>) {
    let scene = Scene::new(new_store).await;
    let strays = scene.raw.add_strays(&scene.a).await.unwrap();
    let case = format!("strays {strays:?}");
    let row = scene.list_others_whole(&case).await;
    assert_eq!(
        row.map(|r| r.map(|l| l.meta)),
        Some(Ok(sample_bundle(3).meta().clone())),
        "{case}"
    );
    assert!(scene.store.keys("").await.is_ok(), "{case}");
    scene.repair_by_install(&case, true).await;
    scene
        .store
        .disable(&scene.b, &Condition::none())
        .await
        .unwrap();
    let listed = scene.store.list().await.unwrap();
    assert_eq!(listed.len(), 2, "{case}: {listed:?}");
    assert!(listed.iter().all(Result::is_ok), "{case}: {listed:?}");
}
