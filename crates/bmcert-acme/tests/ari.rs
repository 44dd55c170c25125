//! ACME Renewal Information (RFC 9773) against a local HTTPS ACME server scripted for it
//! (pebble 2.4 has no ARI): the renewal-information request names the certificate by its
//! RFC 9773 identifier and its window comes back parsed; the newOrder JWS payload carries
//! `replaces`; a CA refusing `replaces` gets the order once more without it. Loopback only.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers

#[path = "support/scripted_ca.rs"]
mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bmcert_acme::{ari_certificate_id, AcmeClient, AcmeError, IssueRequest};
use bmcert_topology::{Site, Target, Topology};
use serde_json::json;
use support::*;

/// Captures the `tracing` output of a test.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Logs {
    type Writer = Logs;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

fn topology() -> Topology {
    Topology::new(Site::new("https://mail.example.test", &[]).unwrap())
}

fn request() -> IssueRequest {
    let mut r = IssueRequest::new(Target::System);
    r.email = Some("admin@example.test".to_owned());
    r
}

/// A client of `ca` that has accepted its terms.
async fn registered(ca: &Ca) -> AcmeClient {
    let acme = client(ca);
    acme.accept_terms().await.unwrap();
    acme
}

/// Orders the system certificate, replacing `replaces`: every order fails (the scripted CA
/// fails them after recording them, or the client refuses first), so this is the error.
async fn order_replacing(acme: &AcmeClient, replaces: &str) -> AcmeError {
    acme.issue(&topology(), &request().replacing(replaces))
        .await
        .unwrap_err()
}

/// The CA saw two orders: the first with `replaces` (the RFC example), the second without.
fn assert_ordered_again_without_replaces(ca: &Ca) {
    let seen = ca.seen.lock().unwrap();
    assert_eq!(seen.new_orders.len(), 2, "{:?}", seen.new_orders);
    assert_eq!(seen.new_orders[0]["replaces"], RFC_ID);
    assert!(
        seen.new_orders[1].get("replaces").is_none(),
        "{}",
        seen.new_orders[1]
    );
}

#[tokio::test]
async fn the_window_is_asked_by_certificate_identifier_and_comes_back_parsed() {
    let ca = scripted_ca(Script::default()).await;
    let acme = client(&ca);
    let leaf = rfc_example_leaf();
    assert_eq!(ari_certificate_id(&leaf).unwrap(), RFC_ID);

    let window = acme.renewal_window(&leaf).await.unwrap().expect("a window");
    assert_eq!(window.start, time::macros::datetime!(2030-01-02 04:00 UTC));
    assert_eq!(window.end, time::macros::datetime!(2030-01-03 04:00 UTC));
    assert_eq!(window.retry_after, Duration::from_secs(3600));
    assert_eq!(
        window.explanation_url.as_deref(),
        Some("https://ca.example/why")
    );
    let seen = ca.seen.lock().unwrap();
    assert!(
        seen.requests
            .contains(&("GET".to_owned(), format!("/ari/{RFC_ID}"))),
        "{:?}",
        seen.requests
    );
    // Unauthenticated (RFC 9773 section 4.2): no account, no POST.
    assert_eq!(acme.posts_sent(), 0);
    assert!(
        seen.requests.iter().all(|(m, _)| m == "GET"),
        "{:?}",
        seen.requests
    );
}

#[tokio::test]
async fn a_window_that_is_not_rfc_9773_json_is_a_typed_error() {
    let ca = scripted_ca(Script {
        ari_body: r#"{"suggestedWindow":{"start":"2030-01-03T04:00:00Z","end":"2030-01-02T04:00:00Z"}}"#,
        ..Script::default()
    })
    .await;
    let e = client(&ca)
        .renewal_window(&rfc_example_leaf())
        .await
        .unwrap_err();
    assert!(matches!(e, AcmeError::Protocol { .. }), "{e}");
    assert!(e.to_string().contains("before it starts"), "{e}");
}

#[tokio::test]
async fn a_certificate_without_authority_key_identifier_cannot_be_asked_about() {
    let ca = scripted_ca(Script::default()).await;
    let acme = client(&ca);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["a.example.test".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let e = acme.renewal_window(cert.der()).await.unwrap_err();
    assert!(matches!(e, AcmeError::AriIdentifier(_)), "{e}");
    assert!(ca.seen.lock().unwrap().requests.is_empty(), "nothing sent");
}

#[tokio::test]
async fn the_order_names_the_certificate_it_replaces() {
    let ca = scripted_ca(Script::default()).await;
    let e = order_replacing(&registered(&ca).await, RFC_ID).await;
    // The scripted CA fails every order after recording it.
    assert!(e.to_string().contains("scripted CA"), "{e}");
    let seen = ca.seen.lock().unwrap();
    assert_eq!(seen.new_orders.len(), 1, "{:?}", seen.new_orders);
    let order = &seen.new_orders[0];
    assert_eq!(order["replaces"], RFC_ID, "{order}");
    assert_eq!(
        order["identifiers"],
        json!([{"type": "dns", "value": "mail.example.test"}])
    );
}

#[tokio::test]
async fn a_refused_replaces_does_not_block_the_renewal() {
    let ca = scripted_ca(Script {
        refuse_replaces: true,
        ..Script::default()
    })
    .await;
    let acme = registered(&ca).await;
    let logs = Logs::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(logs.clone())
        .with_ansi(false)
        .finish();
    let guard = tracing::subscriber::set_default(subscriber);
    let e = order_replacing(&acme, RFC_ID).await;
    drop(guard);
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(
        text.contains("WARN")
            && text.contains("ordering once more without `replaces`")
            && text.contains("alreadyReplaced"),
        "{text}"
    );
    // The order went on past the refusal: the error is the order's, not alreadyReplaced.
    assert!(e.to_string().contains("scripted CA"), "{e}");
    assert!(!e.to_string().contains("alreadyReplaced"), "{e}");
    assert_ordered_again_without_replaces(&ca);
}

#[tokio::test]
async fn a_ca_ignoring_replaces_gets_the_order_again_without_it() {
    let ca = scripted_ca(Script {
        ignore_replaces: true,
        ..Script::default()
    })
    .await;
    let e = order_replacing(&registered(&ca).await, RFC_ID).await;
    assert!(e.to_string().contains("scripted CA"), "{e}");
    assert_ordered_again_without_replaces(&ca);
}

#[tokio::test]
async fn without_renewal_information_there_is_no_window_and_no_replaces() {
    let ca = scripted_ca(Script {
        ari: false,
        ..Script::default()
    })
    .await;
    let acme = client(&ca);
    assert_eq!(
        acme.renewal_window(&rfc_example_leaf()).await.unwrap(),
        None
    );
    acme.accept_terms().await.unwrap();
    let e = order_replacing(&acme, RFC_ID).await;
    assert!(e.to_string().contains("scripted CA"), "{e}");
    let seen = ca.seen.lock().unwrap();
    assert!(
        !seen.requests.iter().any(|(_, p)| p.starts_with("/ari")),
        "{:?}",
        seen.requests
    );
    // instant-acme does not send `replaces` to a CA without ARI; one order, without it.
    assert_eq!(seen.new_orders.len(), 1, "{:?}", seen.new_orders);
    assert!(seen.new_orders[0].get("replaces").is_none());
}

#[tokio::test]
async fn a_malformed_replaces_is_a_typed_error_before_any_order() {
    let ca = scripted_ca(Script::default()).await;
    let e = order_replacing(&registered(&ca).await, "not an identifier").await;
    assert!(matches!(e, AcmeError::AriIdentifier(_)), "{e}");
    assert!(ca.seen.lock().unwrap().new_orders.is_empty());
}
