//! Against the real peers started by `scripts/test-all`: pebble (ACME), aiosmtpd (SMTP) and,
//! when present, the etcd cluster. Without their variables each test prints why it is skipped.
//!
//! The schedule is driven by an injected clock; the renewals are real orders against pebble
//! and the warnings real e-mails read back from aiosmtpd's directory.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration as StdDuration;

use bmcert_acme::{AcmeClient, AcmeConfig, ChallengeBoard, Directory, Http01Listener, RetryBudget};
use bmcert_renew::*;
use bmcert_store::{DirStore, Source, Store};
use bmcert_test::pebble::{bind_http01, store_client_counting_orders, PortWait};
use bmcert_test::peers::{etcd_endpoints, free_port, unique_name as unique, Pebble, Smtp};
use bmcert_test::renewal::topology;
use bmcert_topology::Target;
use common::*;
use time::{Duration, OffsetDateTime};

static PORTS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

struct Peers {
    pebble: Pebble,
    smtp: Smtp,
}

fn peers() -> Option<Peers> {
    Some(Peers {
        pebble: Pebble::from_env()?,
        smtp: Smtp::from_env()?,
    })
}

/// Pebble's configuration with the ACME directory `directory` (pebble's, or a dead one).
async fn config(p: &Peers, directory: &str) -> AcmeConfig {
    // A dead directory fails fast.
    let mut config = p
        .pebble
        .acme_config(Some(RetryBudget {
            first_delay: StdDuration::from_millis(50),
            max_delay: StdDuration::from_millis(200),
            total: StdDuration::from_millis(600),
        }))
        .await;
    config.directory = Directory::Url(directory.to_owned());
    config
}

/// An ACME client over `store` publishing on `board`, counting orders placed.
fn acme(
    config: AcmeConfig,
    store: &Arc<dyn Store>,
    topo: &bmcert_topology::Topology,
    board: &ChallengeBoard,
    orders: &Arc<AtomicU32>,
) -> Arc<AcmeClient> {
    store_client_counting_orders(config, store, topo, board.clone(), orders)
}

/// Pebble's HTTP-01 port, retried every 100 ms for 10 s while a previous listener lets go.
async fn http01(port: u16, board: &ChallengeBoard) -> Http01Listener {
    let wait = PortWait::new(StdDuration::from_millis(100), StdDuration::from_secs(10));
    bind_http01(port, board, wait).await
}

fn smtp(p: &Peers) -> Arc<SmtpNotifier> {
    let mut c = SmtpConfig::new(
        "127.0.0.1",
        p.smtp.port,
        SmtpSecurity::Plain,
        "bmcert@example.test",
    );
    c.timeout = StdDuration::from_secs(10);
    Arc::new(SmtpNotifier::new(c).unwrap())
}

/// The messages aiosmtpd delivered to `to`.
fn mails_to(p: &Peers, to: &str) -> Vec<String> {
    p.smtp.mails_to(to)
}

fn renewer(
    store: &Arc<dyn Store>,
    issuer: Arc<dyn Issuer>,
    notifier: Arc<dyn Notifier>,
    clock: &Arc<ManualClock>,
    holder: &str,
    to: &str,
) -> Renewer {
    let config = RenewerConfig {
        holder: holder.into(),
        warn_to: Some(to.into()),
        ..RenewerConfig::default()
    };
    Renewer::new(store.clone(), issuer, notifier, clock.clone(), config)
}

async fn accept_terms(client: &AcmeClient) {
    client.accept_terms().await.unwrap();
}

#[tokio::test]
async fn renewed_when_due_against_pebble_and_served_by_the_resolver() {
    let Some(p) = peers() else { return };
    let _ports = PORTS.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(DirStore::open(dir.path().join("store")).unwrap());
    let host = unique("renew");
    let topo = topology(&host);
    let now = OffsetDateTime::now_utc();
    let old = bundle(
        &[&host],
        now - Duration::days(60),
        now + Duration::days(30),
        Source::Acme,
    );
    install(store.as_ref(), &Target::System, &old).await;

    let index = Arc::new(bmcert_resolve::LiveIndex::new(&topo));
    let follower = bmcert_resolve::FollowerThread::start(store.clone(), index.clone()).unwrap();
    let served = || {
        index
            .certificate(&Target::System)
            .map(|ck| ck.cert[0].to_vec())
    };
    assert_eq!(served().as_deref(), Some(old.leaf().as_ref()));

    let board = ChallengeBoard::new();
    let orders = Arc::new(AtomicU32::new(0));
    let client = acme(
        config(&p, &p.pebble.directory).await,
        &store,
        &topo,
        &board,
        &orders,
    );
    accept_terms(&client).await;
    let _http = http01(p.pebble.http01, &board).await;
    let clock = Arc::new(ManualClock::new(now - Duration::days(10)));
    let issuer = Arc::new(AcmeIssuer::new(client.clone(), topo.clone()));
    let r = renewer(
        &store,
        issuer,
        Arc::new(MemoryNotifier::default()),
        &clock,
        "a",
        "admin@example.test",
    );

    let pass = r.run_once().await.unwrap();
    assert_eq!(orders.load(Ordering::SeqCst), 0, "not due 10 days earlier");
    assert!(pass.next_wake.unwrap() > clock.now());

    clock.set(now);
    let pass = r.run_once().await.unwrap();
    assert_eq!(
        pass.renewed,
        [Target::System],
        "{pass:?} {:?}",
        r.status().await.unwrap()
    );
    assert_eq!(orders.load(Ordering::SeqCst), 1);
    let new = store.current(&Target::System).await.unwrap().unwrap();
    assert_eq!(new.bundle.meta().source, Source::Acme);
    assert_ne!(new.bundle.leaf(), old.leaf());
    // The resolver follows the store: the new certificate is served (bounded wait).
    let mut waited = 0;
    while served().as_deref() != Some(new.bundle.leaf().as_ref()) && waited < 50 {
        tokio::time::sleep(StdDuration::from_millis(100)).await;
        waited += 1;
    }
    assert_eq!(
        served().as_deref(),
        Some(new.bundle.leaf().as_ref()),
        "the resolver serves the renewed certificate"
    );
    follower.stop();
    // Pebble's 5-year certificate is not due: the next pass orders nothing.
    r.run_once().await.unwrap();
    assert_eq!(orders.load(Ordering::SeqCst), 1);
}

/// The warning scenario over `stores` (one per server): pebble unreachable from 6 days before
/// expiry, one e-mail a day on each of the last 5 days, a restart in the middle, then pebble
/// back: renewed, and the e-mails stop.
async fn warnings_scenario(p: &Peers, stores: Vec<Arc<dyn Store>>) {
    let _ports = PORTS.lock().await;
    let host = unique("warn");
    let to = format!("admin-{}@example.test", host.split('.').next().unwrap());
    let topo = topology(&host);
    let real_now = OffsetDateTime::now_utc();
    // Expires at 12:00 UTC some 30 days ahead, so the simulated days below are UTC days.
    let not_after = (real_now + Duration::days(30))
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
    install(stores[0].as_ref(), &Target::System, &old).await;
    let board = ChallengeBoard::new();
    let orders = Arc::new(AtomicU32::new(0));
    let dead = config(p, "https://127.0.0.1:1/dir").await;
    let clock = Arc::new(ManualClock::new(not_after - Duration::days(6)));
    let notifier = smtp(p);
    let make = |i: usize, gen: &str| {
        let client = acme(dead.clone(), &stores[i], &topo, &board, &orders);
        renewer(
            &stores[i],
            Arc::new(AcmeIssuer::new(client, topo.clone())),
            notifier.clone(),
            &clock,
            &format!("server{i}-{gen}"),
            &to,
        )
    };
    let mut servers: Vec<Renewer> = (0..stores.len()).map(|i| make(i, "first")).collect();

    // Day 6 before expiry: the attempt fails, no e-mail.
    for s in &servers {
        s.run_once().await.unwrap();
    }
    assert!(
        mails_to(p, &to).is_empty(),
        "no e-mail 6 days before expiry"
    );
    let status = servers[0].status().await.unwrap();
    let error = status[0]
        .last_error
        .clone()
        .expect("the failure is recorded");
    assert!(error.contains("127.0.0.1:1"), "{error}");

    for day in 1..=5i64 {
        let base = not_after - Duration::days(6 - day) + Duration::hours(1);
        for hour in [0, 3, 6] {
            clock.set(base + Duration::hours(hour));
            let passes = servers.iter().map(|s| s.run_once());
            for r in futures_join(passes).await {
                r.unwrap();
            }
        }
        if day == 3 {
            // Every server restarts in the middle of the day: no duplicate.
            servers = (0..stores.len()).map(|i| make(i, "restarted")).collect();
            for s in &servers {
                s.run_once().await.unwrap();
            }
        }
        let mails = mails_to(p, &to);
        assert_eq!(
            mails.len(),
            day as usize,
            "day {day}: exactly one e-mail a day"
        );
        assert_eq!(
            stores[0]
                .current(&Target::System)
                .await
                .unwrap()
                .unwrap()
                .bundle
                .leaf(),
            old.leaf(),
            "the certificate stays"
        );
    }
    let mails = mails_to(p, &to);
    for m in &mails {
        assert!(m.contains(&host), "names the certificate's names");
        assert!(
            m.contains("Last error:") && m.contains("127.0.0.1:1"),
            "carries the error: {m}"
        );
        assert!(m.contains(
            &not_after
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap()
        ));
    }
    assert_eq!(orders.load(Ordering::SeqCst), 0);

    // Pebble comes back (the servers now reach a live directory): the next attempt renews.
    let live = config(p, &p.pebble.directory).await;
    let client = acme(live, &stores[0], &topo, &board, &orders);
    accept_terms(&client).await;
    let _http = http01(p.pebble.http01, &board).await;
    let back: Vec<Renewer> = (0..stores.len())
        .map(|i| {
            let client = if i == 0 {
                client.clone()
            } else {
                acme(client.config().clone(), &stores[i], &topo, &board, &orders)
            };
            renewer(
                &stores[i],
                Arc::new(AcmeIssuer::new(client, topo.clone())),
                notifier.clone(),
                &clock,
                &format!("server{i}-back"),
                &to,
            )
        })
        .collect();
    clock.advance(Duration::hours(7));
    for r in futures_join(back.iter().map(|s| s.run_once())).await {
        r.unwrap();
    }
    assert_eq!(
        orders.load(Ordering::SeqCst),
        1,
        "one order for all servers"
    );
    assert_ne!(
        stores[0]
            .current(&Target::System)
            .await
            .unwrap()
            .unwrap()
            .bundle
            .leaf(),
        old.leaf()
    );
    clock.advance(Duration::hours(20));
    for s in &back {
        s.run_once().await.unwrap();
    }
    assert_eq!(
        mails_to(p, &to).len(),
        5,
        "the e-mails stop after the renewal"
    );
    assert_eq!(back[0].status().await.unwrap()[0].last_error, None);
}

async fn futures_join<F: std::future::Future>(futures: impl Iterator<Item = F>) -> Vec<F::Output> {
    let handles: Vec<_> = futures.collect();
    let mut out = Vec::new();
    // Run them concurrently on this task.
    let mut pinned: Vec<_> = handles.into_iter().map(Box::pin).collect();
    let mut results: Vec<Option<F::Output>> = (0..pinned.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in pinned.iter_mut().enumerate() {
            if results[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => results[i] = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    for r in results {
        out.push(r.unwrap());
    }
    out
}

#[tokio::test]
async fn daily_warnings_while_pebble_is_unreachable_over_the_directory_store() {
    let Some(p) = peers() else { return };
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(DirStore::open(dir.path().join("store")).unwrap());
    warnings_scenario(&p, vec![store]).await;
}

#[tokio::test]
async fn two_renewers_on_one_directory_store_place_one_order() {
    let Some(p) = peers() else { return };
    let dir = tempfile::tempdir().unwrap();
    let stores: Vec<Arc<dyn Store>> = (0..2)
        .map(|_| Arc::new(DirStore::open(dir.path().join("store")).unwrap()) as Arc<dyn Store>)
        .collect();
    race(&p, stores).await;
}

/// Renewers on `stores` (one per server) race on one due certificate: pebble sees one order.
async fn race(p: &Peers, stores: Vec<Arc<dyn Store>>) {
    let _ports = PORTS.lock().await;
    let host = unique("race");
    let topo = topology(&host);
    let now = OffsetDateTime::now_utc();
    let old = bundle(
        &[&host],
        now - Duration::days(80),
        now + Duration::days(10),
        Source::Acme,
    );
    install(stores[0].as_ref(), &Target::System, &old).await;
    let board = ChallengeBoard::new();
    let orders = Arc::new(AtomicU32::new(0));
    let config = config(p, &p.pebble.directory).await;
    let clock = Arc::new(ManualClock::new(now));
    let _http = http01(p.pebble.http01, &board).await;
    let mut renewers = Vec::new();
    for (i, s) in stores.iter().enumerate() {
        let client = acme(config.clone(), s, &topo, &board, &orders);
        accept_terms(&client).await;
        renewers.push(renewer(
            s,
            Arc::new(AcmeIssuer::new(client, topo.clone())),
            Arc::new(MemoryNotifier::default()),
            &clock,
            &format!("server{i}"),
            "admin@example.test",
        ));
    }
    let reports = futures_join(renewers.iter().map(|r| r.run_once())).await;
    let renewed: usize = reports.into_iter().map(|r| r.unwrap().renewed.len()).sum();
    assert_eq!(
        orders.load(Ordering::SeqCst),
        1,
        "pebble saw one order: {:?}",
        renewers[0].status().await.unwrap()
    );
    assert_eq!(renewed, 1);
    for s in &stores {
        assert_ne!(
            s.current(&Target::System)
                .await
                .unwrap()
                .unwrap()
                .bundle
                .leaf(),
            old.leaf()
        );
    }
    // Afterwards nobody orders again.
    for r in &renewers {
        r.run_once().await.unwrap();
    }
    assert_eq!(orders.load(Ordering::SeqCst), 1);
}

async fn etcd_stores(endpoints: Vec<String>, n: usize) -> Vec<Arc<dyn Store>> {
    let prefix = format!("/renew-{}/", unique("p"));
    tokio::task::spawn_blocking(move || {
        (0..n)
            .map(|_| {
                let mut o = bmcert_store_etcd::EtcdOptions::new(endpoints.clone());
                o.prefix = prefix.clone();
                Arc::new(bmcert_store_etcd::EtcdStore::connect(o).unwrap()) as Arc<dyn Store>
            })
            .collect()
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_renewers_on_etcd_place_one_order() {
    let Some(p) = peers() else { return };
    let Some(endpoints) = etcd_endpoints() else {
        return;
    };
    race(&p, etcd_stores(endpoints, 3).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_email_per_day_with_three_servers_on_etcd() {
    let Some(p) = peers() else { return };
    let Some(endpoints) = etcd_endpoints() else {
        return;
    };
    warnings_scenario(&p, etcd_stores(endpoints, 3).await).await;
}

/// A child process killed (by its handle) when dropped.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts aiosmtpd on loopback with `tls_args`, writing messages to `dir`.
fn aiosmtpd(dir: &std::path::Path, tls_args: &[&str]) -> (Child, u16) {
    let port = free_port();
    let peers_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/peers");
    let child = std::process::Command::new("/usr/bin/python3")
        .env("PYTHONPATH", peers_dir)
        .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}")])
        .args(tls_args)
        .args(["-c", "bmcert_mailbox.Mailbox", dir.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut child = Child(child);
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return (child, port);
        }
        assert!(
            child.0.try_wait().unwrap().is_none(),
            "aiosmtpd exited at start"
        );
        std::thread::sleep(StdDuration::from_millis(100));
    }
    panic!("aiosmtpd did not listen on {port}");
}

#[tokio::test]
async fn smtp_over_starttls_and_implicit_tls_to_a_real_aiosmtpd() {
    if Smtp::from_env().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // A small CA and a server certificate for 127.0.0.1.
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "bmcert smtp test CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let mut leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
    leaf.distinguished_name
        .push(rcgen::DnType::CommonName, "127.0.0.1");
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer).unwrap();
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    std::fs::write(&cert_path, leaf_cert.pem()).unwrap();
    std::fs::write(&key_path, leaf_key.serialize_pem()).unwrap();
    let (cert, key) = (cert_path.to_str().unwrap(), key_path.to_str().unwrap());

    let warning = Warning {
        to: "admin@example.test".into(),
        target: Target::System,
        names: vec!["mail.example.test".into()],
        not_after: OffsetDateTime::now_utc() + Duration::days(3),
        last_error: Some("the CA could not be reached".into()),
        fix: None,
        uploaded: false,
        day: "2026-01-01".into(),
    };
    for (security, args) in [
        (SmtpSecurity::StartTls, ["--tlscert", cert, "--tlskey", key]),
        (SmtpSecurity::Tls, ["--smtpscert", cert, "--smtpskey", key]),
    ] {
        let maildir = dir.path().join(format!("{security:?}"));
        let (_server, port) = aiosmtpd(&maildir, &args);
        let mut config = SmtpConfig::new("127.0.0.1", port, security, "bmcert@example.test");
        config.timeout = StdDuration::from_secs(10);
        // Without the test CA the server is not trusted: a typed error, not a send.
        let untrusted = SmtpNotifier::new(config.clone()).unwrap();
        let e = untrusted
            .send(&warning, OffsetDateTime::now_utc())
            .await
            .unwrap_err();
        assert!(matches!(e, NotifyError::Smtp { .. }), "{security:?}: {e}");
        config.extra_roots_pem = vec![ca_cert.pem().into_bytes()];
        let notifier = SmtpNotifier::new(config).unwrap();
        notifier
            .send(&warning, OffsetDateTime::now_utc())
            .await
            .unwrap();
        let delivered: Vec<_> = std::fs::read_dir(&maildir)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".eml"))
            .collect();
        assert_eq!(delivered.len(), 1, "{security:?}");
        let text = std::fs::read_to_string(delivered[0].path()).unwrap();
        assert!(text.contains("the CA could not be reached"), "{text}");
    }
}

/// The address given when Let's Encrypt is activated for a target is kept per target, and
/// that target's warnings go there: two domains with two addresses get their own e-mails,
/// through the real SMTP peer. The system target's address becomes the ACME account's
/// contact (the account was registered with the first domain's).
#[tokio::test]
async fn each_target_is_warned_at_the_address_given_at_activation() {
    let Some(p) = peers() else { return };
    let _ports = PORTS.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(DirStore::open(dir.path().join("store")).unwrap());
    let (sys, a, b) = (
        unique("contact-s"),
        unique("contact-a"),
        unique("contact-b"),
    );
    let mut topo = topology(&sys);
    for host in [&a, &b] {
        topo.domains.push(bmcert_topology::DomainSite {
            name: host.parse().unwrap(),
            site: Some(bmcert_topology::Site::new(&format!("https://{host}"), &[]).unwrap()),
        });
    }
    let addr =
        |who: &str, host: &str| format!("{who}-{}@example.test", host.split('.').next().unwrap());
    let (to_sys, to_a, to_b, admin) = (
        addr("sys", &sys),
        addr("a", &a),
        addr("b", &b),
        addr("admin", &sys),
    );

    // Activation: one order per target, each with its administrator's address.
    let board = ChallengeBoard::new();
    let orders = Arc::new(AtomicU32::new(0));
    let live = acme(
        config(&p, &p.pebble.directory).await,
        &store,
        &topo,
        &board,
        &orders,
    );
    accept_terms(&live).await;
    {
        let _http = http01(p.pebble.http01, &board).await;
        for (host, to) in [(&a, &to_a), (&sys, &to_sys), (&b, &to_b)] {
            let target = if *host == sys {
                Target::System
            } else {
                Target::Domain(host.parse().unwrap())
            };
            let mut request = bmcert_acme::IssueRequest::new(target);
            request.email = Some(to.clone());
            live.issue(&topo, &request).await.unwrap();
        }
    }
    let account = store
        .get(&bmcert_store::RecordKey::new("acme/account").unwrap())
        .await
        .unwrap()
        .unwrap();
    let account: serde_json::Value = serde_json::from_slice(account.secret_value()).unwrap();
    assert_eq!(
        account["contact"], to_sys,
        "the system target's address is the account's contact now"
    );

    // Four days before expiry the CA is unreachable: every renewal fails, each target's
    // warning goes to its own address, none to the administrator address.
    let current: Vec<_> = store
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(current.len(), 3);
    let expiry = current.iter().map(|l| l.meta.not_after).min().unwrap();
    let clock = Arc::new(ManualClock::new(expiry - Duration::days(4)));
    let dead = acme(
        config(&p, "https://127.0.0.1:1/dir").await,
        &store,
        &topo,
        &board,
        &orders,
    );
    let r = renewer(
        &store,
        Arc::new(AcmeIssuer::new(dead, topo.clone())),
        smtp(&p),
        &clock,
        "contact-server",
        &admin,
    );
    // The rate-limit plan spreads the three renewals over a few minutes: pass until each
    // has failed and warned (ten minutes at most).
    let mut warned = std::collections::BTreeSet::new();
    for _ in 0..10 {
        let pass = r.run_once().await.unwrap();
        warned.extend(pass.warned);
        if warned.len() == 3 {
            break;
        }
        clock.advance(Duration::minutes(1));
    }
    assert_eq!(warned.len(), 3, "{warned:?}");
    for (to, host) in [(&to_sys, &sys), (&to_a, &a), (&to_b, &b)] {
        let mails = mails_to(&p, to);
        assert_eq!(mails.len(), 1, "one warning for {host} to {to}");
        assert!(mails[0].contains(host.as_str()), "{}", mails[0]);
        for other in [&sys, &a, &b].into_iter().filter(|o| *o != host) {
            assert!(
                !mails[0].contains(other.as_str()),
                "{to} got {other}'s warning"
            );
        }
    }
    assert!(
        mails_to(&p, &admin).is_empty(),
        "the administrator address is the last fallback"
    );
}

/// A renewal orders the names the topology gives now: a name removed from the topology is
/// not renewed, a name added is.
#[tokio::test]
async fn a_renewal_orders_the_topologys_current_names() {
    let Some(p) = peers() else { return };
    let _ports = PORTS.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(DirStore::open(dir.path().join("store")).unwrap());
    let (host, old_name, new_name) = (unique("names"), unique("names-old"), unique("names-new"));
    let with = |extra: &str| {
        let mut t = topology(&host);
        t.system = bmcert_topology::Site::new(&format!("https://{host}"), &[extra]).unwrap();
        t
    };
    let board = ChallengeBoard::new();
    let orders = Arc::new(AtomicU32::new(0));
    let client = acme(
        config(&p, &p.pebble.directory).await,
        &store,
        &with(&old_name),
        &board,
        &orders,
    );
    accept_terms(&client).await;
    let _http = http01(p.pebble.http01, &board).await;
    client
        .issue(
            &with(&old_name),
            &bmcert_acme::IssueRequest::new(Target::System),
        )
        .await
        .unwrap();
    let names = |i: &bmcert_store::Installed| i.bundle.meta().names.clone();
    let first = store.current(&Target::System).await.unwrap().unwrap();
    assert!(names(&first).contains(&old_name), "{:?}", names(&first));

    // The administrator replaced the additional name in the topology.
    let clock = Arc::new(ManualClock::new(OffsetDateTime::now_utc()));
    let r = renewer(
        &store,
        Arc::new(AcmeIssuer::new(client.clone(), with(&new_name))),
        smtp(&p),
        &clock,
        "names-server",
        "admin@example.test",
    );
    assert_eq!(
        r.renew_now(&Target::System).await.unwrap(),
        Outcome::Renewed
    );
    let renewed = store.current(&Target::System).await.unwrap().unwrap();
    assert_eq!(names(&renewed), [host.clone(), new_name.clone()]);
}
