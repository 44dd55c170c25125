//! The renewer over the directory store with a scripted issuer and an in-memory notifier:
//! no network. The same scenarios against pebble and aiosmtpd are in `peers.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::time::Duration as StdDuration;

use bmcert_renew::*;
use bmcert_store::{Bundle, DirStore, Source, Store};
use bmcert_topology::Target;
use common::*;
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

fn setup(
    dir: &std::path::Path,
) -> (
    Arc<dyn Store>,
    Arc<ManualClock>,
    Arc<ScriptedIssuer>,
    Arc<MemoryNotifier>,
) {
    let store: Arc<dyn Store> = Arc::new(DirStore::open(dir.join("store")).unwrap());
    let clock = Arc::new(ManualClock::new(datetime!(2026-01-01 00:00 UTC)));
    let issuer = Arc::new(ScriptedIssuer::new(store.clone(), clock.clone()));
    (store, clock, issuer, Arc::new(MemoryNotifier::default()))
}

fn renewer(
    store: &Arc<dyn Store>,
    issuer: &Arc<ScriptedIssuer>,
    notifier: &Arc<MemoryNotifier>,
    clock: &Arc<ManualClock>,
    holder: &str,
) -> Renewer {
    renewer_with(store, issuer, notifier, clock, config(holder))
}

/// The configuration of [`renewer`]: `holder`, warnings to admin@example.test.
fn config(holder: &str) -> RenewerConfig {
    RenewerConfig {
        holder: holder.to_owned(),
        warn_to: Some("admin@example.test".into()),
        ..RenewerConfig::default()
    }
}

fn renewer_with(
    store: &Arc<dyn Store>,
    issuer: &Arc<ScriptedIssuer>,
    notifier: &Arc<MemoryNotifier>,
    clock: &Arc<ManualClock>,
    config: RenewerConfig,
) -> Renewer {
    Renewer::new(
        store.clone(),
        issuer.clone(),
        notifier.clone(),
        clock.clone(),
        config,
    )
}

/// Installs for `target` a bundle of `names` from `source`, valid for `days` days from
/// `not_before`, and returns it.
async fn install_new(
    store: &dyn Store,
    target: &Target,
    names: &[&str],
    not_before: OffsetDateTime,
    days: i64,
    source: Source,
) -> Bundle {
    let b = bundle(names, not_before, not_before + Duration::days(days), source);
    install(store, target, &b).await;
    b
}

/// [`install_new`] of an ACME certificate for `name` on the system target, valid for 90
/// days from `issued`.
async fn acme_on_system(store: &dyn Store, name: &str, issued: OffsetDateTime) -> Bundle {
    install_new(store, &Target::System, &[name], issued, 90, Source::Acme).await
}

#[tokio::test]
async fn renews_when_due_and_not_before() {
    let dir = tempfile::tempdir().unwrap();
    let (store, clock, issuer, notifier) = setup(dir.path());
    let issued = datetime!(2026-01-01 00:00 UTC);
    let old = acme_on_system(store.as_ref(), "mail.example.test", issued).await;
    let r = renewer(&store, &issuer, &notifier, &clock, "a");

    clock.set(issued + Duration::days(50));
    let pass = r.run_once().await.unwrap();
    assert_eq!(issuer.calls(), 0, "not due at day 50");
    let due = pass.next_wake.unwrap();
    assert!(
        due <= issued + Duration::days(60) && due >= issued + Duration::days(55),
        "{due}"
    );
    let status = r.status().await.unwrap();
    assert_eq!(status[0].source, "acme");
    assert_eq!(
        status[0].next_renewal.as_deref(),
        Some(
            &*due
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap()
        )
    );

    clock.set(due);
    let pass = r.run_once().await.unwrap();
    assert_eq!(pass.renewed, [Target::System]);
    assert_eq!(issuer.calls(), 1);
    let now = store.current(&Target::System).await.unwrap().unwrap();
    assert_ne!(now.bundle.meta().fingerprint, old.meta().fingerprint);
    assert_eq!(now.bundle.meta().names, ["mail.example.test"]);
    // The new certificate is not due: nothing more.
    r.run_once().await.unwrap();
    assert_eq!(issuer.calls(), 1);
    assert!(notifier.sent().is_empty());
}

#[tokio::test]
async fn uploaded_certificates_are_never_renewed_and_warn_the_administrator_address() {
    let dir = tempfile::tempdir().unwrap();
    let (store, clock, issuer, notifier) = setup(dir.path());
    let issued = datetime!(2026-01-01 00:00 UTC);
    install_new(
        store.as_ref(),
        &Target::System,
        &["up.example.test"],
        issued,
        30,
        Source::Files,
    )
    .await;
    // No administrator address: nobody to warn (an ACME account contact is not used for an
    // uploaded certificate).
    let config = RenewerConfig {
        holder: "a".into(),
        warn_to: None,
        ..RenewerConfig::default()
    };
    let r = renewer_with(&store, &issuer, &notifier, &clock, config);
    clock.set(issued + Duration::days(29));
    let pass = r.run_once().await.unwrap();
    assert_eq!(issuer.calls(), 0);
    assert!(
        pass.warned.is_empty(),
        "no administrator address: no warning"
    );
    assert_eq!(r.status().await.unwrap()[0].next_renewal, None);

    // The default recipient of uploaded certificates: the administrator address.
    let r = renewer(&store, &issuer, &notifier, &clock, "b");
    let pass = r.run_once().await.unwrap();
    assert_eq!(pass.warned, [Target::System]);
    r.run_once().await.unwrap();
    assert_eq!(issuer.calls(), 0);
    let sent = notifier.sent();
    assert_eq!(sent.len(), 1, "once a day");
    assert_eq!(sent[0].to, "admin@example.test");
    assert!(sent[0].uploaded && sent[0].body().contains("not renewed automatically"));
}

#[tokio::test]
async fn failures_back_off_keep_the_certificate_and_warn_once_a_day_for_five_days() {
    let dir = tempfile::tempdir().unwrap();
    let (store, clock, issuer, notifier) = setup(dir.path());
    // Expires at 12:00 UTC, so each simulated day below is its own UTC day.
    let not_after = datetime!(2026-04-01 12:00 UTC);
    let old = install_new(
        store.as_ref(),
        &Target::System,
        &["mail.example.test", "autoconfig.example.test"],
        not_after - Duration::days(90),
        90,
        Source::Acme,
    )
    .await;
    issuer.fail.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut r = renewer(&store, &issuer, &notifier, &clock, "a");

    // Six days before expiry: the attempt fails, no e-mail yet.
    clock.set(not_after - Duration::days(6));
    let pass = r.run_once().await.unwrap();
    assert_eq!(pass.failed, [Target::System]);
    assert!(notifier.sent().is_empty(), "no e-mail 6 days before");
    // Back-off: a pass one minute later does not try again; the next wake is 5 minutes on.
    clock.advance(Duration::minutes(1));
    let pass = r.run_once().await.unwrap();
    assert_eq!(issuer.calls(), 1);
    assert_eq!(
        pass.next_wake,
        Some(not_after - Duration::days(6) + Duration::minutes(5))
    );
    let status = r.status().await.unwrap();
    assert_eq!(status[0].last_error, Some(failure().to_string()));

    for day in 1..=5 {
        let base = not_after - Duration::days(6) + Duration::days(day) + Duration::hours(1);
        for hour in [0, 3, 5] {
            clock.set(base + Duration::hours(hour));
            r.run_once().await.unwrap();
        }
        if day == 3 {
            // A restart in the middle of the day: a new renewer over the same store.
            r = renewer(&store, &issuer, &notifier, &clock, "a-restarted");
            r.run_once().await.unwrap();
        }
        assert_eq!(notifier.sent().len(), day as usize, "day {day}");
        assert_eq!(
            store
                .current(&Target::System)
                .await
                .unwrap()
                .unwrap()
                .bundle
                .meta()
                .fingerprint,
            old.meta().fingerprint,
            "the current certificate stays"
        );
    }
    let sent = notifier.sent();
    let days: std::collections::BTreeSet<_> = sent.iter().map(|w| w.day.clone()).collect();
    assert_eq!(days.len(), 5);
    let w = &sent[0];
    assert_eq!(w.to, "admin@example.test");
    assert_eq!(w.names, ["mail.example.test", "autoconfig.example.test"]);
    assert!(
        w.body().contains(&failure().to_string()) && w.body().contains("2026-04-01T12:00:00Z"),
        "{}",
        w.body()
    );
    assert!(w.body().contains("bmcert renew --target system"));

    // The CA is back: the next attempt (after the back-off) renews, and the warnings stop.
    issuer
        .fail
        .store(false, std::sync::atomic::Ordering::SeqCst);
    clock.advance(Duration::hours(7));
    let pass = r.run_once().await.unwrap();
    assert_eq!(pass.renewed, [Target::System]);
    clock.advance(Duration::hours(20));
    r.run_once().await.unwrap();
    assert_eq!(notifier.sent().len(), 5, "no e-mail after the renewal");
    assert_eq!(r.status().await.unwrap()[0].last_error, None);
}

#[tokio::test]
async fn a_failed_send_is_retried_at_the_next_wake_up() {
    let dir = tempfile::tempdir().unwrap();
    let (store, clock, issuer, notifier) = setup(dir.path());
    let not_after = datetime!(2026-04-01 12:00 UTC);
    acme_on_system(
        store.as_ref(),
        "m.example.test",
        not_after - Duration::days(90),
    )
    .await;
    issuer.fail.store(true, std::sync::atomic::Ordering::SeqCst);
    notifier.set_failing(true);
    let r = renewer(&store, &issuer, &notifier, &clock, "a");
    clock.set(not_after - Duration::days(2));
    let pass = r.run_once().await.unwrap();
    assert!(pass.warned.is_empty());
    notifier.set_failing(false);
    clock.advance(Duration::minutes(5));
    let pass = r.run_once().await.unwrap();
    assert_eq!(pass.warned, [Target::System]);
    assert_eq!(notifier.sent().len(), 1);
}

#[tokio::test]
async fn two_renewers_on_one_store_place_one_order() {
    let dir = tempfile::tempdir().unwrap();
    let (store, clock, mut issuer_, notifier) = setup(dir.path());
    Arc::get_mut(&mut issuer_).unwrap().delay = StdDuration::from_millis(300);
    let issuer = issuer_;
    let issued = datetime!(2026-01-01 00:00 UTC);
    acme_on_system(store.as_ref(), "m.example.test", issued).await;
    // A second handle on the same directory: another process or server.
    let store2: Arc<dyn Store> = Arc::new(DirStore::open(dir.path().join("store")).unwrap());
    let a = renewer(&store, &issuer, &notifier, &clock, "a");
    let b = renewer(&store2, &issuer, &notifier, &clock, "b");
    clock.set(issued + Duration::days(70));
    let (ra, rb) = tokio::join!(a.run_once(), b.run_once());
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    assert_eq!(issuer.calls(), 1, "one order");
    assert_eq!(ra.renewed.len() + rb.renewed.len(), 1);
    // Both agree afterwards that nothing is due.
    a.run_once().await.unwrap();
    b.run_once().await.unwrap();
    assert_eq!(issuer.calls(), 1);
}

#[tokio::test]
async fn manual_renewal_and_the_background_task() {
    let dir = tempfile::tempdir().unwrap();
    let (store, clock, issuer, notifier) = setup(dir.path());
    let issued = datetime!(2026-01-01 00:00 UTC);
    let target = Target::Domain("example.test".parse().unwrap());
    install_new(
        store.as_ref(),
        &target,
        &["webmail.example.test"],
        issued,
        90,
        Source::Acme,
    )
    .await;
    let r = renewer(&store, &issuer, &notifier, &clock, "a");
    clock.set(issued + Duration::days(1));
    assert_eq!(
        r.renew_now(&target).await.unwrap(),
        Outcome::Renewed,
        "manual renewal when not due"
    );
    assert_eq!(issuer.calls(), 1);
    assert!(matches!(
        r.renew_now(&Target::System).await,
        Err(RenewError::NotInstalled(_))
    ));

    let running = r.start();
    tokio::time::sleep(StdDuration::from_millis(200)).await;
    assert_eq!(issuer.calls(), 1, "the task sleeps while nothing is due");
    clock.set(issued + Duration::days(80));
    r.wake();
    let mut waited = 0;
    while issuer.calls() < 2 && waited < 100 {
        tokio::time::sleep(StdDuration::from_millis(50)).await;
        waited += 1;
    }
    assert_eq!(issuer.calls(), 2, "woken, it renews");
    running.stop().await;
    clock.set(issued + Duration::days(300));
    r.wake();
    tokio::time::sleep(StdDuration::from_millis(200)).await;
    assert_eq!(issuer.calls(), 2, "stopped: nothing more");
}

#[test]
fn plan_for_100000_certificates_issued_the_same_day() {
    let issued = datetime!(2026-03-01 00:00 UTC);
    let inputs: Vec<PlanInput> = (0..100_000)
        .map(|i| {
            let nb = issued + Duration::seconds(i % 86_400);
            PlanInput {
                key: format!("renewal/domain/d{i}.example.test"),
                not_before: nb,
                not_after: nb + Duration::days(90),
            }
        })
        .collect();
    let started = std::time::Instant::now();
    let p = plan(&inputs, issued, RateLimit::LETS_ENCRYPT);
    let took = started.elapsed();
    println!("planning 100,000 renewals took {took:?}");
    assert_eq!(p.renewals.len(), 100_000);
    let mut seen = vec![false; inputs.len()];
    for r in &p.renewals {
        assert!(!seen[r.index], "planned twice");
        seen[r.index] = true;
        let c = &inputs[r.index];
        let lifetime = c.not_after - c.not_before;
        assert!(
            r.at < c.not_after - lifetime / 6,
            "{} renewed in its last sixth",
            c.key
        );
        assert!(r.at <= r.due, "never later than due");
        assert!(r.at >= issued);
    }
    // Independent check of the limit: any 301 consecutive orders span at least 3 hours.
    let times: Vec<_> = p.renewals.iter().map(|r| r.at).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]));
    for i in 0..times.len() - 300 {
        assert!(
            times[i + 300] - times[i] >= Duration::hours(3),
            "301 orders within 3 hours at {}",
            times[i]
        );
    }
    assert_eq!(p.max_in_window(Duration::hours(3)), 300);
    assert_eq!(p.late().count(), 0);
    println!(
        "plan: first order {}, last {}, {} orders at their due time",
        times[0],
        times[times.len() - 1],
        p.renewals.iter().filter(|r| r.at == r.due).count()
    );
}

#[tokio::test]
async fn the_ca_renewal_window_wins_and_the_order_names_the_replaced_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (store, clock, issuer, notifier) = setup(dir.path());
    let issued = datetime!(2026-01-01 00:00 UTC);
    let old = acme_on_system(store.as_ref(), "ari.example.test", issued).await;
    // The CA (e.g. during a mass revocation) suggests renewing on day 10-11, well before
    // the lifetime rule's day ~56-60.
    let window = bmcert_acme::parse_renewal_info(
        br#"{"suggestedWindow":{"start":"2026-01-11T00:00:00Z","end":"2026-01-12T00:00:00Z"}}"#,
        None,
    )
    .unwrap();
    *issuer.window.lock().unwrap() = Some(window.clone());
    let r = renewer(&store, &issuer, &notifier, &clock, "a");
    clock.set(issued + Duration::days(5));
    let pass = r.run_once().await.unwrap();
    let due = pass.next_wake.unwrap();
    assert!(due >= window.start && due < window.end, "{due}");
    assert_eq!(issuer.calls(), 0);
    clock.set(window.end);
    let pass = r.run_once().await.unwrap();
    assert_eq!(pass.renewed, [Target::System]);
    // The order named the certificate it replaces, by its ARI identifier.
    let id = bmcert_acme::ari_certificate_id(old.leaf()).unwrap();
    assert_eq!(issuer.replaced.lock().unwrap().as_slice(), [Some(id)]);

    // Without a window the lifetime rule applies.
    *issuer.window.lock().unwrap() = None;
    let r = renewer(&store, &issuer, &notifier, &clock, "b");
    let pass = r.run_once().await.unwrap();
    assert!(pass.next_wake.unwrap() > window.end + Duration::days(50));
}

#[tokio::test]
async fn the_task_wakes_on_a_store_change() {
    let dir = tempfile::tempdir().unwrap();
    let (store, clock, issuer, notifier) = setup(dir.path());
    let issued = datetime!(2026-01-01 00:00 UTC);
    clock.set(issued + Duration::days(80));
    let r = renewer(&store, &issuer, &notifier, &clock, "a");
    let running = r.start();
    tokio::time::sleep(StdDuration::from_millis(200)).await;
    assert_eq!(issuer.calls(), 0, "nothing installed, nothing to do");
    // Another server installs a certificate that is already due: the task's watch sees it,
    // without `wake()` and long before its (1 hour) sleep ends.
    let other: Arc<dyn Store> = Arc::new(DirStore::open(dir.path().join("store")).unwrap());
    acme_on_system(other.as_ref(), "late.example.test", issued).await;
    let mut waited = 0;
    while issuer.calls() == 0 && waited < 100 {
        tokio::time::sleep(StdDuration::from_millis(50)).await;
        waited += 1;
    }
    assert_eq!(issuer.calls(), 1, "renewed after the store change");
    running.stop().await;
}

#[tokio::test]
async fn the_renewer_keeps_to_the_rate_limit() {
    let dir = tempfile::tempdir().unwrap();
    let (store, clock, issuer, notifier) = setup(dir.path());
    let issued = datetime!(2026-01-01 00:00 UTC);
    // Ten certificates issued together, all overdue; the CA allows 3 orders per 3 hours.
    for i in 0..10 {
        let target = Target::Domain(format!("d{i}.example.test").parse().unwrap());
        let name = format!("webmail.d{i}.example.test");
        install_new(store.as_ref(), &target, &[&name], issued, 90, Source::Acme).await;
    }
    let config = RenewerConfig {
        rate_limit: RateLimit {
            orders: 3,
            window: Duration::hours(3),
        },
        ..config("a")
    };
    let r = renewer_with(&store, &issuer, &notifier, &clock, config);
    let start = issued + Duration::days(70);
    clock.set(start);
    let mut orders = Vec::new();
    // Follow the renewer's own schedule, as its task would.
    for _ in 0..40 {
        let before = issuer.calls();
        let pass = r.run_once().await.unwrap();
        for _ in before..issuer.calls() {
            orders.push(clock.now());
        }
        let Some(next) = pass.next_wake else { break };
        if issuer.calls() == 10 {
            break;
        }
        clock.set(next.max(clock.now()));
    }
    assert_eq!(orders.len(), 10, "all renewed: {orders:?}");
    for w in orders.windows(4) {
        assert!(
            w[3] - w[0] >= Duration::hours(3),
            "4 orders within 3 hours: {orders:?}"
        );
    }
    // One every hour: the tenth 9 hours after the first.
    assert_eq!(orders[9] - orders[0], Duration::hours(9));
}

#[tokio::test]
async fn after_a_permanent_refusal_no_retry_until_what_would_be_ordered_changes() {
    let dir = tempfile::tempdir().unwrap();
    let (store, clock, issuer, notifier) = setup(dir.path());
    let not_after = datetime!(2026-04-01 12:00 UTC);
    acme_on_system(
        store.as_ref(),
        "mail.example.test",
        not_after - Duration::days(90),
    )
    .await;
    issuer.fail.store(true, std::sync::atomic::Ordering::SeqCst);
    *issuer.failing_with.lock().unwrap() = Some(caa_refusal);
    *issuer.key.lock().unwrap() = Some("mail.example.test".into());
    let r = renewer(&store, &issuer, &notifier, &clock, "a");

    clock.set(not_after - Duration::days(4));
    let pass = r.run_once().await.unwrap();
    assert_eq!(pass.failed, [Target::System]);
    assert_eq!(issuer.calls(), 1);
    // The warning names the CA's refusal and its fix.
    let sent = notifier.sent();
    assert_eq!(sent.len(), 1);
    let body = sent[0].body();
    assert!(
        body.contains("CAA record for example.test")
            && body.contains("What to do: a DNS CAA record forbids this CA"),
        "{body}"
    );
    // Well past every back-off: still no new order, nothing changed.
    for hours in [1, 7, 30] {
        clock.set(not_after - Duration::days(4) + Duration::hours(hours));
        r.run_once().await.unwrap();
    }
    assert_eq!(issuer.calls(), 1, "no retry after a permanent refusal");
    // The administrator changes the topology (what would be ordered): tried again.
    *issuer.key.lock().unwrap() = Some("mail.example.test,autoconfig.example.test".into());
    r.run_once().await.unwrap();
    assert_eq!(issuer.calls(), 2);
}

#[tokio::test]
async fn a_rate_limit_is_not_retried_before_its_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let (store, clock, issuer, notifier) = setup(dir.path());
    let issued = datetime!(2026-01-01 00:00 UTC);
    acme_on_system(store.as_ref(), "mail.example.test", issued).await;
    issuer.fail.store(true, std::sync::atomic::Ordering::SeqCst);
    *issuer.failing_with.lock().unwrap() = Some(rate_limited);
    let r = renewer(&store, &issuer, &notifier, &clock, "a");
    let failed_at = issued + Duration::days(70);
    clock.set(failed_at);
    let pass = r.run_once().await.unwrap();
    assert_eq!(pass.failed, [Target::System]);
    assert_eq!(
        pass.next_wake,
        Some(failed_at + Duration::hours(2)),
        "{pass:?}"
    );
    // The back-off alone (5 minutes) would retry; the CA's Retry-After (2 hours) wins.
    clock.set(failed_at + Duration::minutes(90));
    r.run_once().await.unwrap();
    assert_eq!(issuer.calls(), 1);
    clock.set(failed_at + Duration::hours(2));
    r.run_once().await.unwrap();
    assert_eq!(issuer.calls(), 2);
}
