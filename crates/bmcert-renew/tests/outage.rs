//! Issue 7, "pebble stopped from 6 days before expiry", with ONE running renewer: the renewer
//! is started once ([`Renewer::start`]) and talks to pebble through a loopback TCP proxy that
//! this test switches off (connections refused) and on again. While it is off every attempt
//! fails, the certificate stays, and the real aiosmtpd receives one warning e-mail per UTC
//! day on each of the last 5 days (none on day 6); when it is back the same task renews by
//! itself (a real order against the same pebble, whose root did not change), a real
//! `openssl s_client` is served the renewed certificate through `bmcert-resolve`, and the
//! e-mails stop.
//!
//! The schedule is driven by a [`ManualClock`] as in `tests/renewer.rs`: the test moves it and
//! calls [`Renewer::wake`]. Each step waits (bounded) until the renewer recorded an attempt
//! at the new time: passes run one at a time, so every earlier pass, and the warning it may
//! have sent, is complete when the test counts the e-mails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration as StdDuration;

use bmcert_acme::ChallengeBoard;
use bmcert_renew::*;
use bmcert_store::{DirStore, Source, Store};
use bmcert_topology::{Site, Target, Topology};
use support::*;
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap()
}

/// The system target's status (one target installed).
async fn status_of(r: &Renewer) -> RenewalStatus {
    let mut all = r.status().await.unwrap();
    assert_eq!(all.len(), 1, "{all:?}");
    all.remove(0)
}

/// When the renewer allows its next attempt (its retry back-off).
async fn next_attempt(r: &Renewer) -> OffsetDateTime {
    let s = status_of(r).await;
    OffsetDateTime::parse(s.next_renewal.as_deref().unwrap(), &Rfc3339).unwrap()
}

/// Moves the clock to `t`, wakes the running task, and waits until it recorded an attempt at
/// `t` (bounded: an attempt against the closed proxy fails within a second).
async fn attempt_at(r: &Renewer, clock: &ManualClock, t: OffsetDateTime) -> RenewalStatus {
    clock.set(t);
    r.wake();
    recorded_attempt(r, t).await
}

/// Waits (at most 30 s) until the renewer recorded an attempt at `t`.
async fn recorded_attempt(r: &Renewer, t: OffsetDateTime) -> RenewalStatus {
    let want = rfc3339(t);
    for _ in 0..600 {
        let s = status_of(r).await;
        if s.last_attempt.as_deref() == Some(want.as_str()) {
            return s;
        }
        tokio::time::sleep(StdDuration::from_millis(50)).await;
    }
    panic!(
        "the running renewer made no attempt at {want} within 30 s: {:?}",
        r.status().await
    );
}

#[tokio::test]
async fn one_running_renewer_warns_daily_while_pebble_is_unreachable_and_renews_when_it_is_back() {
    let (Some(pebble), Some(smtp)) = (Pebble::from_env(), Smtp::from_env()) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(DirStore::open(dir.path().join("store")).unwrap());
    let host = unique("outage");
    let to = format!("admin-{}@example.test", host.split('.').next().unwrap());
    let mut topology = Topology::new(Site::new(&format!("https://{host}"), &[]).unwrap());
    topology.default_domain = Some("example.test".parse().unwrap());

    // An ACME certificate expiring at 12:00 UTC some 30 days ahead, so the simulated days
    // below are whole UTC days.
    let not_after = (OffsetDateTime::now_utc() + Duration::days(30))
        .date()
        .midnight()
        .assume_utc()
        + Duration::hours(12);
    let old = bundle(
        &[&host],
        not_after - Duration::days(90),
        not_after,
        Source::Acme,
    );
    install(store.as_ref(), &Target::System, &old).await;
    let old_sha = sha256_hex(old.leaf());

    // The serving side: the resolver follows the store; the real openssl is served the
    // installed certificate.
    let index = Arc::new(bmcert_resolve::LiveIndex::new(&topology));
    let follower = bmcert_resolve::FollowerThread::start(store.clone(), index.clone()).unwrap();
    let server = TlsServer::start(index.clone()).await;
    assert_eq!(
        s_client(server.port, &host, None).await.leaf_sha256,
        old_sha
    );

    // Pebble through the proxy: the account is registered through it, and pebble names the
    // proxy in every URL it hands out (it builds them from the Host header), so every request
    // of the client goes through the proxy.
    let mut proxy = Proxy::start(pebble_addr(&pebble)).await;
    let directory = format!("https://{}/dir", proxy.addr());
    let config = acme_config(&pebble, &directory).await;
    let board = ChallengeBoard::new();
    let orders = Arc::new(AtomicU32::new(0));
    let client = counting_client(config.clone(), &store, &topology, board.clone(), &orders);
    let dir_doc = String::from_utf8(client.fetch(&directory).await.unwrap()).unwrap();
    assert!(
        dir_doc.contains(&format!("{}/", proxy.addr())) && !dir_doc.contains(&pebble.directory),
        "pebble's directory through the proxy names the proxy: {dir_doc}"
    );
    client.accept_terms().await.unwrap();
    let through_proxy = proxy.accepted();
    assert!(through_proxy > 0);
    let _http01 = http01(pebble.http01, &board).await;

    let mut notifier = SmtpConfig::new(
        "127.0.0.1",
        smtp.port,
        SmtpSecurity::Plain,
        "bmcert@example.test",
    );
    notifier.timeout = StdDuration::from_secs(10);
    let clock = Arc::new(ManualClock::new(
        not_after - Duration::days(6) + Duration::hours(1),
    ));
    let renewer = Renewer::new(
        store.clone(),
        Arc::new(AcmeIssuer::new(client.clone(), topology.clone())),
        Arc::new(SmtpNotifier::new(notifier).unwrap()),
        clock.clone(),
        RenewerConfig {
            holder: "outage".into(),
            warn_to: Some(to.clone()),
            ..RenewerConfig::default()
        },
    );

    // Pebble becomes unreachable, then the renewer starts, 6 days before expiry (13:00 UTC).
    proxy.off().await;
    let running = renewer.start();
    let first = clock.now();
    let s = recorded_attempt(&renewer, first).await;
    let proxy_addr = proxy.addr().to_string();
    let error = s.last_error.clone().expect("the failure is recorded");
    assert!(
        error.contains(&proxy_addr),
        "the error names the directory: {error}"
    );

    // Day 6: a second attempt the same day (after the back-off) proves the first pass is over;
    // no e-mail yet.
    let t = next_attempt(&renewer).await;
    assert_eq!(t.date(), first.date());
    attempt_at(&renewer, &clock, t).await;
    assert!(
        smtp.mails_to(&to).is_empty(),
        "no e-mail 6 days before expiry"
    );

    for day in 1..=5usize {
        let date = (not_after - Duration::days(6 - day as i64)).date();
        let day_start = date.with_hms(13, 0, 0).unwrap().assume_utc();
        // The first attempt of the day: at 13:00, or later if the back-off says so (it is at
        // most 6 hours, and the previous day's last attempt was before 19:00).
        let t = next_attempt(&renewer).await.max(day_start);
        assert_eq!(t.date(), date, "day {day}: the back-off left the day");
        attempt_at(&renewer, &clock, t).await;
        println!("day {day}: attempt at {t} failed");
        assert!(
            eventually(StdDuration::from_secs(20), || smtp.mails_to(&to).len()
                >= day)
            .await,
            "day {day}: the warning e-mail arrives"
        );
        // The rest of the day: every further attempt (after the back-off) fails again and
        // sends nothing more. Each recorded attempt means the pass before it is complete.
        let mut later_attempts = 0;
        loop {
            let t = next_attempt(&renewer).await;
            if t.date() != date {
                break;
            }
            attempt_at(&renewer, &clock, t).await;
            println!(
                "day {day}: attempt at {t} failed; e-mails so far: {}",
                smtp.mails_to(&to).len()
            );
            later_attempts += 1;
            assert_eq!(
                smtp.mails_to(&to).len(),
                day,
                "day {day}, attempt at {t}: exactly one e-mail a day"
            );
        }
        assert!(
            later_attempts >= 1,
            "day {day}: the day was checked after its e-mail"
        );
        let current = store.current(&Target::System).await.unwrap().unwrap();
        assert_eq!(
            current.bundle.leaf(),
            old.leaf(),
            "day {day}: the certificate stays"
        );
    }
    assert_eq!(orders.load(Ordering::SeqCst), 0, "no order reached pebble");
    assert_eq!(
        proxy.accepted(),
        through_proxy,
        "nothing went through while off"
    );
    let mails = smtp.mails_to(&to);
    assert_eq!(mails.len(), 5);
    // One per day: the subjects count down ("expires in 4 days" ... "in 23 hours").
    let mut subjects: Vec<&str> = mails
        .iter()
        .filter_map(|m| m.lines().find(|l| l.starts_with("Subject: ")))
        .collect();
    subjects.sort_unstable();
    subjects.dedup();
    assert_eq!(subjects.len(), 5, "{subjects:?}");
    println!("warnings received: {subjects:?}");
    for m in &mails {
        assert!(m.contains(&host), "names the certificate's names: {m}");
        assert!(m.contains(&rfc3339(not_after)), "names the expiry: {m}");
        assert!(
            m.contains("Last error:") && m.contains(&proxy_addr),
            "carries the error: {m}"
        );
    }
    // The warnings went to the real server; the certificate served is still the old one.
    assert_eq!(
        s_client(server.port, &host, None).await.leaf_sha256,
        old_sha
    );

    // Pebble is reachable again: the same running task renews at its next attempt.
    proxy.on().await;
    let t = next_attempt(&renewer).await;
    assert!(t < not_after, "the retry comes before expiry: {t}");
    clock.set(t);
    renewer.wake();
    let mut renewed = None;
    for _ in 0..1800 {
        let current = store.current(&Target::System).await.unwrap().unwrap();
        if current.bundle.leaf() != old.leaf() {
            renewed = Some(current);
            break;
        }
        tokio::time::sleep(StdDuration::from_millis(50)).await;
    }
    let renewed = renewed.expect("renewed within 90 s of pebble coming back");
    println!(
        "pebble back: renewed by the running task at {t} (clock), {} connections through the proxy",
        proxy.accepted() - through_proxy
    );
    assert_eq!(renewed.bundle.meta().source, Source::Acme);
    assert!(renewed.bundle.meta().names.contains(&host));
    assert!(
        proxy.accepted() > through_proxy,
        "the order went through the proxy"
    );
    assert!(
        eventually(StdDuration::from_secs(10), || orders.load(Ordering::SeqCst)
            == 1)
        .await,
        "one order"
    );

    // Served through a real TLS handshake: openssl gets the renewed leaf, and its chain
    // verifies against pebble's root (the same pebble, same root, as before the outage).
    let root = dir.path().join("pebble-root.pem");
    std::fs::write(&root, pebble.root_pem(&config).await).unwrap();
    let new_sha = sha256_hex(renewed.bundle.leaf());
    let mut served = s_client(server.port, &host, Some(&root)).await;
    for _ in 0..100 {
        if served.leaf_sha256 == new_sha {
            break;
        }
        tokio::time::sleep(StdDuration::from_millis(100)).await;
        served = s_client(server.port, &host, Some(&root)).await;
    }
    assert_eq!(served.leaf_sha256, new_sha, "{}", served.output);
    assert!(
        served.verified,
        "openssl verifies the chain: {}",
        served.output
    );

    // The e-mails stop: the record is clean, and the task, woken on the following days (past
    // the old expiry), sends nothing.
    let s = status_of(&renewer).await;
    assert_eq!(s.last_error, None, "{s:?}");
    for days in [1, 2] {
        clock.set(not_after + Duration::days(days));
        renewer.wake();
        tokio::time::sleep(StdDuration::from_secs(1)).await;
    }
    // `stop()` waits for the task, which checks for it only between passes: every pass the
    // wake-ups above caused is complete before the count.
    running.stop().await;
    assert_eq!(
        smtp.mails_to(&to).len(),
        5,
        "the e-mails stop after the renewal"
    );
    assert_eq!(
        orders.load(Ordering::SeqCst),
        1,
        "pebble's 5-year certificate is not due"
    );
    follower.stop();
}
