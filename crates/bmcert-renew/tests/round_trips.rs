//! The renewal pass's store round trips, counted by `bmcert_store::testing::FaultyStore`
//! around a directory store (issue 17): a pass with nothing due costs the same store calls
//! (one metadata list, one read of the renewal records) for 10, 100 and 1,000 targets; the
//! first pass adds only its actions (one write per ACME certificate, recording its planned
//! time), and no bundle (no key) is read unless it is renewed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use bmcert_acme::RenewalWindow;
use bmcert_renew::*;
use bmcert_store::testing::{FaultyStore, NoSyncFs, Op};
use bmcert_store::{Condition, DirStore, DirStoreOptions, Fence, Source, Store};
use bmcert_topology::Target;
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

const T0: OffsetDateTime = datetime!(2027-01-01 0:00 UTC);

/// An issuer for passes where nothing is due: ordering is a failure of the test. With
/// `ari`, it offers renewal windows (none, asked and counted).
#[derive(Debug)]
struct NothingDue {
    ari: bool,
    asked: AtomicU32,
}

impl Issuer for NothingDue {
    fn issue<'a>(
        &'a self,
        target: &'a Target,
        _names: &'a [String],
        _replaces: Option<&'a str>,
        _fence: &'a Fence,
    ) -> BoxFuture<'a, Result<(), IssueError>> {
        panic!("{target} was ordered though nothing is due")
    }

    fn renewal_window<'a>(
        &'a self,
        _target: &'a Target,
        _leaf_der: &'a [u8],
    ) -> BoxFuture<'a, Option<RenewalWindow>> {
        self.asked.fetch_add(1, Ordering::SeqCst);
        Box::pin(async { None })
    }

    fn offers_renewal_window(&self) -> bool {
        self.ari
    }
}

type Counted = FaultyStore<DirStore>;

fn counts(store: &Counted) -> HashMap<Op, u32> {
    store.call_counts().into_iter().collect()
}

/// The calls made since `before`, by operation (those made at least once).
fn since(store: &Counted, before: &HashMap<Op, u32>) -> Vec<(Op, u32)> {
    let mut out: Vec<(Op, u32)> = store
        .call_counts()
        .into_iter()
        .map(|(op, n)| (op, n - before.get(&op).copied().unwrap_or(0)))
        .filter(|(_, n)| *n > 0)
        .collect();
    out.sort_by_key(|(op, _)| format!("{op:?}"));
    out
}

fn calls(of: &[(Op, u32)], op: Op) -> u32 {
    of.iter().find(|(o, _)| *o == op).map_or(0, |(_, n)| *n)
}

/// Installs domains `d{from}..d{to}`, each with a certificate of its own: three in four
/// from ACME (issued 10 days before T0, 90 days), one in four uploaded (a year): none due,
/// none near expiry.
async fn populate(store: &dyn Store, from: usize, to: usize) {
    let nb = T0 - Duration::days(10);
    for i in from..to {
        let name = format!("d{i}.example.test");
        let (source, days) = if i % 4 == 3 {
            (Source::Files, 365)
        } else {
            (Source::Acme, 90)
        };
        let bundle = bmcert_test::renewal::self_signed_bundle(
            &[name.as_str()],
            nb,
            nb + Duration::days(days),
            source,
        );
        let target = Target::Domain(name.parse().unwrap());
        store
            .install(&target, &bundle, &Condition::none())
            .await
            .unwrap();
    }
}

fn renewer(store: &Arc<Counted>, issuer: &Arc<NothingDue>) -> Renewer {
    Renewer::new(
        store.clone(),
        issuer.clone(),
        Arc::new(MemoryNotifier::default()),
        Arc::new(ManualClock::new(T0)),
        RenewerConfig {
            holder: "counted".into(),
            warn_to: Some("admin@example.test".into()),
            ..RenewerConfig::default()
        },
    )
}

#[tokio::test]
async fn a_pass_with_nothing_due_costs_the_same_store_calls_at_10_100_and_1000_targets() {
    let dir = tempfile::tempdir().unwrap();
    let options = DirStoreOptions {
        fs: Arc::new(NoSyncFs),
        ..DirStoreOptions::default()
    };
    let store = Arc::new(FaultyStore::new(
        DirStore::open_with(dir.path().join("store"), options).unwrap(),
    ));
    let mut steady = Vec::new();
    let mut done = 0;
    let acme_in = |n: usize| (0..n).filter(|i| i % 4 != 3).count() as u32;
    for n in [10usize, 100, 1000] {
        populate(store.as_ref(), done, n).await;
        let acme_targets = acme_in(n);
        // Planned times already recorded by the renewers of the smaller sizes stand.
        let new_acme = acme_targets - acme_in(done);
        done = n;

        // A renewer that never saw these targets: its first pass records each new ACME
        // certificate's planned time (one compare-and-swap write each, its only actions).
        let issuer = Arc::new(NothingDue {
            ari: false,
            asked: AtomicU32::new(0),
        });
        let r = renewer(&store, &issuer);
        let before = counts(&store);
        let report = r.run_once().await.unwrap();
        assert!(report.renewed.is_empty() && report.failed.is_empty() && report.warned.is_empty());
        assert!(report.next_wake.is_some_and(|w| w > T0));
        let first = since(&store, &before);
        // Each new certificate's planned time is written; an older one's again only when
        // the rate-limit plan moved its slot (more certificates now share the window).
        let puts = calls(&first, Op::Put);
        assert!(
            (new_acme..=acme_targets).contains(&puts),
            "first pass at {n} targets: {first:?}"
        );
        assert_eq!(
            first.iter().map(|(_, c)| c).sum::<u32>(),
            puts + 2,
            "first pass at {n} targets: {first:?}"
        );
        assert_eq!(calls(&first, Op::ListMeta) + calls(&first, Op::Records), 2);

        // Every later pass with nothing due: the snapshot only, two calls.
        let before = counts(&store);
        let report = r.run_once().await.unwrap();
        assert!(report.renewed.is_empty() && report.failed.is_empty() && report.warned.is_empty());
        let pass = since(&store, &before);
        assert_eq!(
            calls(&pass, Op::Current) + calls(&pass, Op::List) + calls(&pass, Op::History),
            0,
            "no bundle is read when nothing is renewed ({n} targets): {pass:?}"
        );
        steady.push((n, pass));

        // `bmcert status` (the free function) reads the same snapshot.
        let before = counts(&store);
        let rows = status(store.as_ref()).await.unwrap();
        assert_eq!(rows.len(), n);
        assert_eq!(
            since(&store, &before),
            [(Op::ListMeta, 1), (Op::Records, 1)],
            "status at {n} targets"
        );

        // With an issuer that offers renewal windows (ARI), asking names the certificate:
        // the first pass of a renewer reads each ACME bundle once, later passes (windows
        // cached for ARI_REFRESH) are the snapshot again.
        let issuer = Arc::new(NothingDue {
            ari: true,
            asked: AtomicU32::new(0),
        });
        let r = renewer(&store, &issuer);
        let before = counts(&store);
        r.run_once().await.unwrap();
        let first = since(&store, &before);
        assert_eq!(calls(&first, Op::Current), acme_targets, "{first:?}");
        assert_eq!(issuer.asked.load(Ordering::SeqCst), acme_targets);
        let before = counts(&store);
        r.run_once().await.unwrap();
        assert_eq!(
            since(&store, &before),
            [(Op::ListMeta, 1), (Op::Records, 1)],
            "pass with cached windows at {n} targets"
        );
        assert_eq!(issuer.asked.load(Ordering::SeqCst), acme_targets);
    }
    let expected = [(Op::ListMeta, 1), (Op::Records, 1)];
    for (n, pass) in &steady {
        assert_eq!(pass, &expected, "a pass with nothing due at {n} targets");
    }
}

#[tokio::test]
async fn keys_are_read_only_for_the_target_being_renewed() {
    let dir = tempfile::tempdir().unwrap();
    let options = DirStoreOptions {
        fs: Arc::new(NoSyncFs),
        ..DirStoreOptions::default()
    };
    let store = Arc::new(FaultyStore::new(
        DirStore::open_with(dir.path().join("store"), options).unwrap(),
    ));
    let fresh_nb = T0 - Duration::days(10);
    let fresh = bmcert_test::renewal::self_signed_bundle(
        &["mail.example.test"],
        fresh_nb,
        fresh_nb + Duration::days(90),
        Source::Acme,
    );
    for i in 0..50 {
        let target = Target::Domain(format!("d{i}.example.test").parse().unwrap());
        store
            .install(&target, &fresh, &Condition::none())
            .await
            .unwrap();
    }
    // One certificate is due (issued 80 days ago).
    let due_nb = T0 - Duration::days(80);
    let due = bmcert_test::renewal::self_signed_bundle(
        &["mail.example.test"],
        due_nb,
        due_nb + Duration::days(90),
        Source::Acme,
    );
    store
        .install(&Target::System, &due, &Condition::none())
        .await
        .unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    #[derive(Debug)]
    struct Installs {
        store: Arc<Counted>,
        clock: Arc<ManualClock>,
        ordered: std::sync::Mutex<Vec<Target>>,
    }
    impl Issuer for Installs {
        fn issue<'a>(
            &'a self,
            target: &'a Target,
            _names: &'a [String],
            _replaces: Option<&'a str>,
            fence: &'a Fence,
        ) -> BoxFuture<'a, Result<(), IssueError>> {
            Box::pin(async move {
                self.ordered.lock().unwrap().push(target.clone());
                let now = self.clock.now();
                let b = bmcert_test::renewal::self_signed_bundle(
                    &["mail.example.test"],
                    now,
                    now + Duration::days(90),
                    Source::Acme,
                );
                let condition = Condition {
                    fence: Some(fence.clone()),
                    ..Condition::none()
                };
                self.store.install(target, &b, &condition).await.unwrap();
                Ok(())
            })
        }
        fn offers_renewal_window(&self) -> bool {
            false
        }
    }
    let issuer = Arc::new(Installs {
        store: store.clone(),
        clock: clock.clone(),
        ordered: std::sync::Mutex::new(Vec::new()),
    });
    let r = Renewer::new(
        store.clone(),
        issuer.clone(),
        Arc::new(MemoryNotifier::default()),
        clock,
        RenewerConfig::default(),
    );
    let before = counts(&store);
    let report = r.run_once().await.unwrap();
    assert_eq!(report.renewed, [Target::System]);
    assert_eq!(*issuer.ordered.lock().unwrap(), [Target::System]);
    let pass = since(&store, &before);
    // Four reads of the one target renewed (the pass's before the lock, the attempt's
    // under it, the attempt's of the new certificate, the pass's after it), none of the
    // 50 others.
    assert_eq!(calls(&pass, Op::Current), 4, "{pass:?}");
    assert_eq!(calls(&pass, Op::List), 0, "{pass:?}");
    assert_eq!(calls(&pass, Op::ListMeta), 1, "{pass:?}");
}
