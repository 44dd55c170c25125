//! Issue 7: "Every attempt and outcome is a `tracing` event with the target, names, expiry and
//! error". The renewer's events are captured (every field of every event, and the text a
//! `fmt` subscriber writes) for a failed attempt (a directory that refuses connections) and
//! a successful one (a real order against pebble), and their fields are checked one by one.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration as StdDuration;

use bmcert_acme::{AcmeClient, AcmeConfig, ChallengeBoard, Directory, RetryBudget};
use bmcert_renew::*;
use bmcert_store::{Bundle, DirStore, Source, Store};
use bmcert_test::renewal::topology;
use bmcert_topology::{Target, Topology};
use support::*;
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap()
}

/// Now, on a whole second. The renewer rounds due times up to whole seconds, so a pass at a
/// sub-second `now` finds an overdue certificate "due in under a second" and does not attempt
/// it (see `tests/system_clock.rs`); these tests are about the events, not that.
fn whole_second_now() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(OffsetDateTime::now_utc().unix_timestamp()).unwrap()
}

fn renewer(
    store: &Arc<dyn Store>,
    client: Arc<AcmeClient>,
    topology: &Topology,
    notifier: Arc<dyn Notifier>,
    now: OffsetDateTime,
) -> Renewer {
    Renewer::new(
        store.clone(),
        Arc::new(AcmeIssuer::new(client, topology.clone())),
        notifier,
        Arc::new(ManualClock::new(now)),
        RenewerConfig {
            holder: "events".into(),
            warn_to: Some("admin@example.test".into()),
            ..RenewerConfig::default()
        },
    )
}

/// A directory store under `dir` whose system certificate (self-signed, for `host`) is
/// valid from `not_before` to `not_after`; and that certificate.
async fn store_holding(
    dir: &std::path::Path,
    host: &str,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> (Arc<dyn Store>, Bundle) {
    let store: Arc<dyn Store> = Arc::new(DirStore::open(dir.join("store")).unwrap());
    let old = bundle(&[host], not_before, not_after, Source::Acme);
    install(store.as_ref(), &Target::System, &old).await;
    (store, old)
}

/// One pass of `r`, with the events it logged.
async fn pass_with_events(r: &Renewer) -> (PassReport, Events) {
    let events = Events::default();
    let pass = {
        let _capture = events.capture();
        r.run_once().await.unwrap()
    };
    (pass, events)
}

/// The one event with `message`, with the fields every attempt event carries.
fn the_event(events: &Events, message: &str, host: &str, not_after: &str) -> Event {
    let found = events.with_message(message);
    assert_eq!(
        found.len(),
        1,
        "one {message:?} event in {:#?}",
        events.all()
    );
    let e = found.into_iter().next().unwrap();
    assert_eq!(e.field("target"), Some("system"), "{e:?}");
    assert_eq!(
        e.field("names"),
        Some(format!("[{host:?}]").as_str()),
        "{e:?}"
    );
    assert_eq!(e.field("not_after"), Some(not_after), "{e:?}");
    e
}

#[tokio::test]
async fn a_failed_attempt_is_an_event_with_target_names_expiry_and_error() {
    let dir = tempfile::tempdir().unwrap();
    let host = unique("events-fail");
    let topo = topology(&host);
    let now = whole_second_now();
    // Due (past two thirds of its life) and expiring within 5 days: attempt, then warning.
    let not_after = now + Duration::days(3);
    let (store, _) = store_holding(dir.path(), &host, now - Duration::days(87), not_after).await;
    let port = refused_port();
    let mut config = AcmeConfig::new(Directory::Url(format!("https://127.0.0.1:{port}/dir")));
    config.retry = RetryBudget {
        first_delay: StdDuration::from_millis(50),
        max_delay: StdDuration::from_millis(200),
        total: StdDuration::from_millis(600),
    };
    let client = counting_client(
        config,
        &store,
        &topo,
        ChallengeBoard::new(),
        &Default::default(),
    );
    let notifier = Arc::new(MemoryNotifier::default());
    let r = renewer(&store, client, &topo, notifier.clone(), now);

    let (pass, events) = pass_with_events(&r).await;
    assert_eq!(pass.failed, [Target::System], "{:#?}", events.all());
    let expiry = rfc3339(not_after);
    let status = r.status().await.unwrap();
    let recorded = status[0].last_error.clone().expect("the error is recorded");
    assert!(
        recorded.contains(&format!("127.0.0.1:{port}")),
        "{recorded}"
    );

    let attempt = the_event(&events, "renewal: attempt", &host, &expiry);
    assert_eq!(attempt.level, tracing::Level::INFO);
    let failed = the_event(
        &events,
        "renewal: failed; the current certificate stays",
        &host,
        &expiry,
    );
    assert_eq!(failed.level, tracing::Level::WARN);
    assert_eq!(failed.field("error"), Some(recorded.as_str()), "{failed:?}");
    assert_eq!(failed.field("failures"), Some("1"));
    // The next attempt after the first failure: the clock's now plus the first back-off.
    assert_eq!(
        failed.field("next_attempt"),
        Some(rfc3339(now + policy::retry_delay(1)).as_str()),
        "{failed:?}"
    );
    assert!(events.with_message("renewal: renewed").is_empty());

    // The warning that follows is an event too, with the address and the error.
    let warned = the_event(&events, "renewal: expiry warning sent", &host, &expiry);
    assert_eq!(warned.field("to"), Some("admin@example.test"));
    assert_eq!(
        warned.field("error"),
        Some(format!("Some({recorded:?})").as_str())
    );
    assert_eq!(notifier.sent().len(), 1);

    // The text an administrator's log shows carries the same fields.
    let text = events.text();
    let line = text
        .lines()
        .find(|l| l.contains("renewal: failed; the current certificate stays"))
        .unwrap_or_else(|| panic!("no failure line in:\n{text}"));
    for needle in [
        "WARN",
        "target=system",
        &format!("names=[{host:?}]"),
        &format!("not_after={expiry}"),
        &format!("error={recorded}"),
    ] {
        assert!(line.contains(needle), "{needle} missing in {line}");
    }
}

#[tokio::test]
async fn a_successful_renewal_against_pebble_is_an_event_with_the_new_expiry() {
    let Some(pebble) = Pebble::from_env() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let host = unique("events-ok");
    let topo = topology(&host);
    let now = whole_second_now();
    let not_after = now + Duration::days(10);
    let (store, old) = store_holding(dir.path(), &host, now - Duration::days(80), not_after).await;
    let board = ChallengeBoard::new();
    let orders = Arc::new(AtomicU32::new(0));
    let client = counting_client(
        acme_config(&pebble, &pebble.directory).await,
        &store,
        &topo,
        board.clone(),
        &orders,
    );
    client.accept_terms().await.unwrap();
    let _http01 = http01(pebble.http01, &board).await;
    let notifier = Arc::new(MemoryNotifier::default());
    let r = renewer(&store, client, &topo, notifier.clone(), now);

    let (pass, events) = pass_with_events(&r).await;
    assert_eq!(pass.renewed, [Target::System], "{:#?}", events.all());
    assert_eq!(orders.load(Ordering::SeqCst), 1);
    let new = store.current(&Target::System).await.unwrap().unwrap();
    assert_ne!(new.bundle.leaf(), old.leaf());
    let new_expiry = rfc3339(new.bundle.meta().not_after);
    assert_ne!(new_expiry, rfc3339(not_after));

    let attempt = the_event(&events, "renewal: attempt", &host, &rfc3339(not_after));
    assert_eq!(attempt.level, tracing::Level::INFO);
    let renewed = the_event(&events, "renewal: renewed", &host, &new_expiry);
    assert_eq!(renewed.level, tracing::Level::INFO);
    assert_eq!(renewed.field("error"), None, "a success carries no error");
    assert!(events
        .with_message("renewal: failed; the current certificate stays")
        .is_empty());
    assert!(notifier.sent().is_empty());
    let text = events.text();
    assert!(
        text.lines().any(|l| l.contains("renewal: renewed")
            && l.contains("target=system")
            && l.contains(&format!("not_after={new_expiry}"))),
        "{text}"
    );
}
