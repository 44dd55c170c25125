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
// A test suite: failing loudly is its job.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

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

use crate::{
    Bundle, BundleMeta, Change, ChangeKey, ChangeKind, Condition, Fingerprint, KeyFormat,
    RecordKey, Revision, SecretKey, Source, Store, StoreError, Watch, HISTORY_DEPTH,
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
    records_round_trip_with_cas(&*new_store()).await;
    watch_delivers_and_resumes(&*new_store()).await;
    locks_expire_and_fence(&*new_store()).await;
}

/// A bundle with fake certificate bytes, distinguishable by `n`.
pub fn sample_bundle(n: u32) -> Bundle {
    let leaf = format!("leaf certificate number {n}").into_bytes();
    let chain = vec![
        CertificateDer::from(leaf.clone()),
        CertificateDer::from(b"intermediate".to_vec()),
    ];
    let key = SecretKey::new(
        KeyFormat::Pkcs8,
        format!("private key number {n}").into_bytes(),
    );
    let meta = BundleMeta {
        source: if n % 2 == 0 {
            Source::Files
        } else {
            Source::Acme
        },
        names: vec![format!("n{n}.example.test")],
        not_after: OffsetDateTime::from_unix_timestamp(2_000_000_000 + i64::from(n)).unwrap(),
        installed_at: OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap(),
        fingerprint: Fingerprint::of(&leaf),
    };
    Bundle::new(chain, key, meta).unwrap()
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
    let listed = store.list().await.unwrap();
    let targets: Vec<String> = listed.iter().map(|l| l.target.to_string()).collect();
    assert_eq!(targets, ["system", "domain:alpha.test", "domain:zeta.test"]);
    assert_eq!(&listed[1].meta, sample_bundle(2).meta());
    assert_eq!(listed[0].version, 1);
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
