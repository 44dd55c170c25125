//! ARI (RFC 9773) through the real `AcmeIssuer` and `AcmeClient`, against the local HTTPS
//! ACME server scripted for it in bmcert-acme's tests (pebble 2.4 has no ARI): the CA's
//! window wins over the lifetime rule, and the order names the certificate it replaces by
//! its RFC 9773 identifier. The scripted CA fails every order after recording it, so the
//! renewal attempt fails and the installed certificate stays. Loopback only.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../bmcert-acme/tests/support/scripted_ca.rs"]
mod ari_ca;
mod common;

use std::sync::Arc;

use ari_ca::{client, scripted_ca, Script};
use bmcert_renew::*;
use bmcert_store::{DirStore, Source, Store};
use bmcert_topology::{DomainName, Site, Target, Topology};
use common::*;
use time::macros::datetime;
use time::Duration;

const WINDOW: &str =
    r#"{"suggestedWindow":{"start":"2026-01-11T00:00:00Z","end":"2026-01-12T00:00:00Z"}}"#;

fn topology() -> Topology {
    let mut t = Topology::new(Site::new("https://mail.example.test", &[]).unwrap());
    t.default_domain = Some(DomainName::new("example.test").unwrap());
    t
}

/// A renewer over a directory store holding a 90-day ACME certificate issued on
/// 2026-01-01, renewing through an `AcmeIssuer` on the scripted CA.
async fn setup(
    dir: &std::path::Path,
    script: Script,
) -> (
    ari_ca::Ca,
    Renewer,
    Arc<ManualClock>,
    Arc<dyn Store>,
    String,
) {
    let ca = scripted_ca(script).await;
    let acme = client(&ca);
    acme.accept_terms().await.unwrap();
    let store: Arc<dyn Store> = Arc::new(DirStore::open(dir.join("store")).unwrap());
    let issued = datetime!(2026-01-01 00:00 UTC);
    let old = bundle(
        &["mail.example.test"],
        issued,
        issued + Duration::days(90),
        Source::Acme,
    );
    install(store.as_ref(), &Target::System, &old).await;
    let id = bmcert_acme::ari_certificate_id(old.leaf()).unwrap();
    let clock = Arc::new(ManualClock::new(issued + Duration::days(5)));
    let issuer = Arc::new(AcmeIssuer::new(Arc::new(acme), topology()));
    let renewer = Renewer::new(
        store.clone(),
        issuer,
        Arc::new(MemoryNotifier::default()),
        clock.clone(),
        RenewerConfig {
            holder: "a".to_owned(),
            ..RenewerConfig::default()
        },
    );
    (ca, renewer, clock, store, id)
}

#[tokio::test]
async fn the_ca_window_wins_and_the_order_names_the_replaced_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, renewer, clock, store, id) = setup(
        dir.path(),
        Script {
            ari_body: WINDOW,
            ..Script::default()
        },
    )
    .await;
    let before = store.current(&Target::System).await.unwrap().unwrap();

    // Day 5: not due by the lifetime rule (day ~56-60), due inside the CA's window.
    let pass = renewer.run_once().await.unwrap();
    let due = pass.next_wake.unwrap();
    assert!(
        due >= datetime!(2026-01-11 00:00 UTC) && due < datetime!(2026-01-12 00:00 UTC),
        "{due}"
    );
    assert!(pass.renewed.is_empty() && pass.failed.is_empty());
    {
        let seen = ca.seen.lock().unwrap();
        assert!(
            seen.requests
                .contains(&("GET".to_owned(), format!("/ari/{id}"))),
            "asked by the certificate's RFC 9773 identifier: {:?}",
            seen.requests
        );
        assert!(
            seen.new_orders.is_empty(),
            "nothing ordered before the window"
        );
    }

    // Inside the window: one order, naming the certificate it replaces.
    clock.set(due);
    let pass = renewer.run_once().await.unwrap();
    assert_eq!(
        pass.failed,
        [Target::System],
        "the scripted CA fails orders"
    );
    {
        let seen = ca.seen.lock().unwrap();
        assert_eq!(seen.new_orders.len(), 1, "{:?}", seen.new_orders);
        assert_eq!(seen.new_orders[0]["replaces"], id.as_str());
    }
    // A failed renewal keeps the installed certificate.
    let after = store.current(&Target::System).await.unwrap().unwrap();
    assert_eq!(
        after.bundle.meta().fingerprint,
        before.bundle.meta().fingerprint
    );
}

#[tokio::test]
async fn without_renewal_information_the_lifetime_rule_applies() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, renewer, _clock, _store, _id) = setup(
        dir.path(),
        Script {
            ari: false,
            ..Script::default()
        },
    )
    .await;
    let pass = renewer.run_once().await.unwrap();
    let due = pass.next_wake.unwrap();
    // A third of 90 days left: day 60, brought forward by at most a twentieth (4.5 days).
    assert!(
        due > datetime!(2026-02-25 00:00 UTC) && due <= datetime!(2026-03-02 00:00 UTC),
        "{due}"
    );
    let seen = ca.seen.lock().unwrap();
    assert!(
        !seen.requests.iter().any(|(_, p)| p.starts_with("/ari")),
        "{:?}",
        seen.requests
    );
}

#[tokio::test]
async fn the_window_is_asked_again_after_the_cas_retry_after() {
    // The scripted CA answers with `Retry-After: 3600`: asked again after an hour, not
    // after the renewer's own 6 hours.
    let dir = tempfile::tempdir().unwrap();
    let (ca, renewer, clock, _store, id) = setup(
        dir.path(),
        Script {
            ari_body: WINDOW,
            ..Script::default()
        },
    )
    .await;
    let asked = || {
        ca.seen
            .lock()
            .unwrap()
            .requests
            .iter()
            .filter(|(m, p)| m == "GET" && *p == format!("/ari/{id}"))
            .count()
    };
    renewer.run_once().await.unwrap();
    assert_eq!(asked(), 1);
    clock.advance(Duration::minutes(30));
    renewer.run_once().await.unwrap();
    assert_eq!(asked(), 1, "within the CA's Retry-After: not asked again");
    clock.advance(Duration::minutes(31));
    renewer.run_once().await.unwrap();
    assert_eq!(asked(), 2, "after the CA's Retry-After: asked again");
}
