//! Certificate profiles (issue 16, item 1) against the local HTTPS ACME server scripted for
//! them (pebble 2.4 advertises none): what the directory advertises, the profile in the
//! newOrder JWS payload, the fallback of a preferred profile the CA does not offer, the
//! refusal of a required one before anything is ordered, and the profile kept for a target
//! ordered again by a renewal (an order without a choice). The scripted CA fails every order
//! after recording it: the tests are about what the client sent. Loopback only.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers

#[path = "support/scripted_ca.rs"]
mod support;

use std::sync::{Arc, Mutex};

use bmcert_acme::{
    AcmeClient, AcmeError, AcmeState, IssueRequest, MemoryState, ProfileChoice, Progress,
};
use bmcert_topology::{Site, Target, Topology};
use support::*;

const PROFILES: &[(&str, &str)] = &[
    ("shortlived", "6-day certificates"),
    ("classic", "90-day certificates"),
];

fn topology() -> Topology {
    Topology::new(Site::new("https://mail.example.test", &[]).unwrap())
}

fn request(profile: Option<ProfileChoice>) -> IssueRequest {
    let mut r = IssueRequest::new(Target::System);
    r.email = Some("admin@example.test".to_owned());
    r.profile = profile;
    r
}

async fn ca_with_profiles() -> Ca {
    scripted_ca(Script {
        ari: false,
        profiles: PROFILES,
        ..Script::default()
    })
    .await
}

/// A client of `ca` over `state` that accepted the terms, reporting its progress to the
/// returned list.
async fn registered(ca: &Ca, state: Arc<MemoryState>) -> (AcmeClient, Arc<Mutex<Vec<Progress>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    let acme =
        client_with_state(ca, state).with_progress(move |p| seen2.lock().unwrap().push(p.clone()));
    acme.accept_terms().await.unwrap();
    (acme, seen)
}

fn new_orders(ca: &Ca) -> Vec<serde_json::Value> {
    ca.seen.lock().unwrap().new_orders.clone()
}

#[tokio::test]
async fn the_directory_s_profiles_are_listed() {
    let ca = ca_with_profiles().await;
    let profiles = client(&ca).profiles().await.unwrap();
    assert_eq!(
        profiles.into_iter().collect::<Vec<_>>(),
        [
            ("classic".to_owned(), "90-day certificates".to_owned()),
            ("shortlived".to_owned(), "6-day certificates".to_owned())
        ]
    );
    let none = scripted_ca(Script::default()).await;
    assert!(client(&none).profiles().await.unwrap().is_empty());
}

#[tokio::test]
async fn an_offered_profile_is_sent_in_the_new_order() {
    let ca = ca_with_profiles().await;
    let (acme, progress) = registered(&ca, MemoryState::new()).await;
    let choice = ProfileChoice::Preferred("shortlived".into());
    // The scripted CA fails the order after recording it.
    let err = acme
        .issue(&topology(), &request(Some(choice)))
        .await
        .unwrap_err();
    assert!(matches!(err, AcmeError::Refused { .. }), "{err}");
    let orders = new_orders(&ca);
    assert_eq!(orders.len(), 1, "{orders:?}");
    assert_eq!(orders[0]["profile"], "shortlived", "{}", orders[0]);
    assert!(!progress
        .lock()
        .unwrap()
        .iter()
        .any(|p| matches!(p, Progress::ProfileFallback { .. })));

    // Required and offered: sent the same way.
    let choice = ProfileChoice::Required("classic".into());
    acme.issue(&topology(), &request(Some(choice)))
        .await
        .unwrap_err();
    assert_eq!(new_orders(&ca)[1]["profile"], "classic");
}

#[tokio::test]
async fn a_preferred_profile_the_ca_does_not_offer_falls_back_with_a_warning() {
    let ca = ca_with_profiles().await;
    let (acme, progress) = registered(&ca, MemoryState::new()).await;
    let choice = ProfileChoice::Preferred("tlsserver".into());
    acme.issue(&topology(), &request(Some(choice)))
        .await
        .unwrap_err();
    let orders = new_orders(&ca);
    assert_eq!(orders.len(), 1, "{orders:?}");
    assert!(orders[0].get("profile").is_none(), "{}", orders[0]);
    let progress = progress.lock().unwrap();
    let fallback = progress
        .iter()
        .find(|p| matches!(p, Progress::ProfileFallback { .. }))
        .expect("a fallback warning");
    assert_eq!(
        fallback,
        &Progress::ProfileFallback {
            wanted: "tlsserver".into(),
            offered: vec!["classic".into(), "shortlived".into()],
        }
    );
    assert_eq!(
        fallback.to_string(),
        "warning: the CA does not offer the profile `tlsserver` (it offers: classic, shortlived); ordering its default profile"
    );
}

#[tokio::test]
async fn a_required_profile_the_ca_does_not_offer_is_refused_before_anything_is_ordered() {
    let ca = ca_with_profiles().await;
    let (acme, _) = registered(&ca, MemoryState::new()).await;
    let choice = ProfileChoice::Required("tlsserver".into());
    let err = acme
        .issue(&topology(), &request(Some(choice)))
        .await
        .unwrap_err();
    let AcmeError::ProfileNotOffered {
        ref profile,
        ref offered,
    } = err
    else {
        panic!("{err:?}");
    };
    assert_eq!(profile, "tlsserver");
    assert_eq!(offered, &["classic", "shortlived"]);
    assert!(err.is_refusal());
    assert!(
        err.to_string().contains("it offers: classic, shortlived"),
        "{err}"
    );
    // Not even the account: only the directory was read.
    let seen = ca.seen.lock().unwrap();
    assert!(seen.new_orders.is_empty());
    assert!(
        seen.requests.iter().all(|(m, _)| m == "GET"),
        "{:?}",
        seen.requests
    );
}

#[tokio::test]
async fn a_renewal_orders_the_profile_kept_for_the_target() {
    let ca = ca_with_profiles().await;
    let state = MemoryState::new();
    // What a successful `issue --profile shortlived` keeps (bmcert-acme writes it after the
    // install; the scripted CA issues nothing, so the record is written here).
    state
        .put(
            "profile/system",
            br#"{"profile":"shortlived","required":false}"#.to_vec(),
            false,
        )
        .await
        .unwrap();
    let (acme, _) = registered(&ca, state.clone()).await;
    assert_eq!(
        acme.kept_profile(&Target::System).await.unwrap(),
        Some(ProfileChoice::Preferred("shortlived".into()))
    );
    // The renewer's request names no profile: the kept one is ordered.
    acme.issue(&topology(), &request(None)).await.unwrap_err();
    assert_eq!(new_orders(&ca)[0]["profile"], "shortlived");
    // A domain without a kept profile: none sent.
    assert_eq!(
        acme.kept_profile(&"domain:other.test".parse().unwrap())
            .await
            .unwrap(),
        None
    );
}
