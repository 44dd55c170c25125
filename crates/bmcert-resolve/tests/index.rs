//! The index's decisions, one behaviour per test, through the public API.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use std::sync::Arc;

use bmcert_resolve::{certified_key, LiveIndex, LoadError, Reason, Service};
use bmcert_topology::{DomainName, Target, Topology};
use common::Pki;

const TOPOLOGY: &str = r#"
[system]
url = "https://mail.example.test"
names = ["autodiscover.example.test"]
[[domain]]
name = "acme.test"
url = "https://webmail.acme.test"
names = ["mail.acme.test"]
[[domain]]
name = "beta.test"
url = "https://webmail.beta.test"
[[domain]]
name = "nourl.test"
[[domain]]
name = "greedy.test"
url = "https://webmail.greedy.test"
names = ["mail.example.test", "webmail.acme.test"]
"#;

fn domain(name: &str) -> Target {
    Target::Domain(DomainName::new(name).unwrap())
}

struct Fixture {
    index: LiveIndex,
    system: Arc<rustls::sign::CertifiedKey>,
    acme: Arc<rustls::sign::CertifiedKey>,
    pki: Pki,
}

fn fixture() -> Fixture {
    let pki = Pki::new();
    let topology = Topology::from_toml_str(TOPOLOGY).unwrap();
    let index = LiveIndex::new(&topology);
    let system = pki
        .leaf(&["mail.example.test", "autodiscover.example.test"])
        .certified();
    let acme = pki
        .leaf(&["webmail.acme.test", "mail.acme.test"])
        .certified();
    index.set_certificate(&Target::System, Some(system.clone()));
    index.set_certificate(&domain("acme.test"), Some(acme.clone()));
    Fixture {
        index,
        system,
        acme,
        pki,
    }
}

fn served(f: &Fixture, service: Service, name: Option<&str>) -> Arc<rustls::sign::CertifiedKey> {
    f.index.resolve(service, name).expect("a certificate")
}

#[test]
fn dedicated_domain_gets_its_certificate() {
    let f = fixture();
    assert!(Arc::ptr_eq(
        &served(&f, Service::Https, Some("webmail.acme.test")),
        &f.acme
    ));
    let why = f.index.explain(Service::Https, Some("webmail.acme.test"));
    assert_eq!(why.target, domain("acme.test"));
    assert_eq!(why.reason, Reason::Dedicated);
    assert!(why.available);
    assert_eq!(
        why.to_string(),
        "target=domain:acme.test reason=dedicated service=https name-of=domain:acme.test"
    );
}

#[test]
fn domain_extra_names_map_to_the_domain_certificate() {
    let f = fixture();
    assert!(Arc::ptr_eq(
        &served(&f, Service::Https, Some("mail.acme.test")),
        &f.acme
    ));
    assert_eq!(
        f.index
            .explain(Service::Https, Some("mail.acme.test"))
            .reason,
        Reason::Dedicated
    );
}

#[test]
fn names_compare_case_insensitively_without_trailing_dot() {
    let f = fixture();
    for name in [
        "WEBMAIL.ACME.TEST",
        "webmail.acme.test.",
        "WebMail.Acme.Test.",
    ] {
        assert!(
            Arc::ptr_eq(&served(&f, Service::Https, Some(name)), &f.acme),
            "{name}"
        );
    }
    // Only one trailing dot is ignored.
    assert_eq!(
        f.index
            .explain(Service::Https, Some("webmail.acme.test.."))
            .reason,
        Reason::UnknownName
    );
}

#[test]
fn domain_with_url_but_no_certificate_falls_back_to_system() {
    let f = fixture();
    assert!(Arc::ptr_eq(
        &served(&f, Service::Https, Some("webmail.beta.test")),
        &f.system
    ));
    let why = f.index.explain(Service::Https, Some("webmail.beta.test"));
    assert_eq!(why.target, Target::System);
    assert_eq!(why.reason, Reason::FallbackToSystem);
    assert_eq!(why.name_of, Some(DomainName::new("beta.test").unwrap()));
}

#[test]
fn system_names_get_the_system_certificate() {
    let f = fixture();
    for name in ["mail.example.test", "autodiscover.example.test"] {
        assert!(Arc::ptr_eq(
            &served(&f, Service::Https, Some(name)),
            &f.system
        ));
        assert_eq!(
            f.index.explain(Service::Https, Some(name)).reason,
            Reason::SystemName
        );
    }
}

#[test]
fn unknown_names_and_no_sni_get_the_system_certificate() {
    let f = fixture();
    for name in [
        "nowhere.test",
        "acme.test",
        "",
        ".",
        "bücher.test",
        &"a".repeat(400),
    ] {
        assert!(Arc::ptr_eq(
            &served(&f, Service::Https, Some(name)),
            &f.system
        ));
        assert_eq!(
            f.index.explain(Service::Https, Some(name)).reason,
            Reason::UnknownName
        );
    }
    assert!(Arc::ptr_eq(&served(&f, Service::Https, None), &f.system));
    assert_eq!(f.index.explain(Service::Https, None).reason, Reason::NoSni);
}

#[test]
fn mail_services_always_get_the_system_certificate() {
    let f = fixture();
    for service in [
        Service::Imap,
        Service::Smtp,
        Service::Pop3,
        Service::ManageSieve,
    ] {
        for name in [Some("webmail.acme.test"), Some("mail.example.test"), None] {
            assert!(Arc::ptr_eq(&served(&f, service, name), &f.system));
            let why = f.index.explain(service, name);
            assert_eq!(
                (why.target, why.reason),
                (Target::System, Reason::MailAlwaysSystem)
            );
        }
    }
}

#[test]
fn domain_without_own_site_is_served_by_the_system_certificate() {
    let f = fixture();
    let nourl = f.pki.leaf(&["mail.example.test"]).certified();
    f.index
        .set_certificate(&domain("nourl.test"), Some(nourl.clone()));
    assert!(Arc::ptr_eq(
        &served(&f, Service::Https, Some("mail.example.test")),
        &f.system
    ));
    // The certificate is kept (parked) and reported for the target.
    assert!(Arc::ptr_eq(
        &f.index.certificate(&domain("nourl.test")).unwrap(),
        &nourl
    ));
}

#[test]
fn first_claim_of_a_name_wins_and_conflicts_are_listed() {
    let f = fixture();
    let greedy = f.pki.leaf(&["webmail.greedy.test"]).certified();
    f.index
        .set_certificate(&domain("greedy.test"), Some(greedy.clone()));
    assert!(Arc::ptr_eq(
        &served(&f, Service::Https, Some("mail.example.test")),
        &f.system
    ));
    assert!(Arc::ptr_eq(
        &served(&f, Service::Https, Some("webmail.acme.test")),
        &f.acme
    ));
    assert!(Arc::ptr_eq(
        &served(&f, Service::Https, Some("webmail.greedy.test")),
        &greedy
    ));
    let conflicts = f.index.snapshot().conflicts().to_vec();
    let pairs: Vec<_> = conflicts
        .iter()
        .map(|c| {
            (
                c.name.to_string(),
                c.kept.to_string(),
                c.ignored.to_string(),
            )
        })
        .collect();
    assert_eq!(
        pairs,
        [
            (
                "mail.example.test".into(),
                "system".into(),
                "domain:greedy.test".into()
            ),
            (
                "webmail.acme.test".into(),
                "domain:acme.test".into(),
                "domain:greedy.test".into()
            ),
        ]
    );
    assert!(conflicts[0]
        .to_string()
        .contains("remove it from one of the two sites"));
}

#[test]
fn disabling_a_domain_certificate_falls_back_on_the_next_lookup() {
    let f = fixture();
    f.index.set_certificate(&domain("acme.test"), None);
    assert!(Arc::ptr_eq(
        &served(&f, Service::Https, Some("webmail.acme.test")),
        &f.system
    ));
    assert_eq!(
        f.index
            .explain(Service::Https, Some("webmail.acme.test"))
            .reason,
        Reason::FallbackToSystem
    );
}

#[test]
fn without_system_certificate_only_dedicated_names_resolve() {
    let f = fixture();
    f.index.set_certificate(&Target::System, None);
    assert!(f
        .index
        .resolve(Service::Https, Some("nowhere.test"))
        .is_none());
    assert!(f.index.resolve(Service::Imap, None).is_none());
    assert!(!f.index.explain(Service::Https, None).available);
    assert!(f
        .index
        .explain(Service::Https, None)
        .to_string()
        .ends_with("certificate=missing"));
    assert!(Arc::ptr_eq(
        &served(&f, Service::Https, Some("webmail.acme.test")),
        &f.acme
    ));
}

#[test]
fn load_failure_keeps_the_previous_certificate_and_is_reported() {
    let f = fixture();
    f.index.record_failure(
        &domain("acme.test"),
        LoadError::Store(bmcert_store::StoreError::NotFound("cert.pem".into())),
    );
    assert!(Arc::ptr_eq(
        &served(&f, Service::Https, Some("webmail.acme.test")),
        &f.acme
    ));
    let failures = f.index.failures();
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].target, domain("acme.test"));
    assert!(failures[0].kept_previous);
    assert!(failures[0]
        .to_string()
        .contains("previous certificate is still served"));
    // A later successful load clears the failure.
    f.index
        .set_certificate(&domain("acme.test"), Some(f.acme.clone()));
    assert!(f.index.failures().is_empty());
}

#[test]
fn topology_change_carries_certificates_over() {
    let f = fixture();
    let beta = f.pki.leaf(&["webmail.beta.test"]).certified();
    // beta.test loses its site: its certificate is parked, then comes back with the site.
    let without_beta = Topology::from_toml_str(
        "[system]\nurl='https://mail.example.test'\n[[domain]]\nname='acme.test'\nurl='https://webmail.acme.test'\n",
    )
    .unwrap();
    f.index.set_topology(&without_beta);
    f.index
        .set_certificate(&domain("beta.test"), Some(beta.clone()));
    assert!(Arc::ptr_eq(
        &served(&f, Service::Https, Some("webmail.beta.test")),
        &f.system
    ));
    assert!(Arc::ptr_eq(
        &served(&f, Service::Https, Some("webmail.acme.test")),
        &f.acme
    ));
    f.index
        .set_topology(&Topology::from_toml_str(TOPOLOGY).unwrap());
    assert!(Arc::ptr_eq(
        &served(&f, Service::Https, Some("webmail.beta.test")),
        &beta
    ));
    assert!(Arc::ptr_eq(
        &served(&f, Service::Https, Some("webmail.acme.test")),
        &f.acme
    ));
    assert!(Arc::ptr_eq(&served(&f, Service::Https, None), &f.system));
}

#[test]
fn certified_key_refuses_bad_pairs() {
    let pki = Pki::new();
    let a = pki.leaf(&["a.test"]);
    let b = pki.leaf(&["b.test"]);
    assert_eq!(
        certified_key(vec![a.cert.clone()], &b.key()).err(),
        Some(LoadError::KeyMismatch)
    );
    assert_eq!(
        certified_key(vec![], &a.key()).err(),
        Some(LoadError::EmptyChain)
    );
    let garbage =
        rustls::pki_types::PrivateKeyDer::Pkcs8(vec![0x30, 0x03, 0x02, 0x01, 0x00].into());
    let err = certified_key(vec![a.cert.clone()], &garbage).unwrap_err();
    assert!(matches!(err, LoadError::UnsupportedKey(_)), "{err:?}");
    assert!(err.to_string().contains("use an RSA"));
}

proptest::proptest! {
    /// Any mix of case and an optional trailing dot reaches the same target.
    #[test]
    fn case_and_trailing_dot_never_change_the_target(
        which in 0usize..5,
        mask in proptest::collection::vec(proptest::bool::ANY, 32),
        dot in proptest::bool::ANY,
    ) {
        let f = fixture();
        let names = ["webmail.acme.test", "mail.acme.test", "mail.example.test",
                     "webmail.beta.test", "nowhere.test"];
        let name = names[which];
        let mut varied: String = name
            .chars()
            .zip(mask.iter().cycle())
            .map(|(c, up)| if *up { c.to_ascii_uppercase() } else { c })
            .collect();
        if dot {
            varied.push('.');
        }
        let a = f.index.resolve(Service::Https, Some(name)).unwrap();
        let b = f.index.resolve(Service::Https, Some(&varied)).unwrap();
        proptest::prop_assert!(Arc::ptr_eq(&a, &b));
        proptest::prop_assert_eq!(
            f.index.explain(Service::Https, Some(name)),
            f.index.explain(Service::Https, Some(&varied))
        );
    }

    /// `explain` names the target whose certificate `resolve` returns, for any input.
    #[test]
    fn explain_agrees_with_resolve(name in proptest::option::of("\\PC{0,40}|[a-zA-Z.]{0,30}")) {
        let f = fixture();
        for service in Service::ALL {
            let cert = f.index.resolve(service, name.as_deref()).unwrap();
            let why = f.index.explain(service, name.as_deref());
            let expected = match why.target {
                Target::System => &f.system,
                _ => &f.acme,
            };
            proptest::prop_assert!(Arc::ptr_eq(&cert, expected), "{}", why);
        }
    }
}

#[test]
fn no_key_material_in_debug_or_errors() {
    let f = fixture();
    let pki = Pki::new();
    let leaf = pki.leaf(&["a.test"]);
    f.index.record_failure(
        &domain("acme.test"),
        LoadError::UnsupportedKey(rustls::Error::General("x".into())),
    );
    let shown = format!(
        "{:?} {:?} {:?} {}",
        f.index,
        f.index.snapshot(),
        f.index.failures(),
        f.index.failures()[0]
    );
    let key_b64 = leaf.key_pem.lines().nth(1).unwrap();
    assert!(!shown.contains(key_b64));
    assert!(!shown.contains("PRIVATE KEY"));
    // Errors from rustls about a bad key do not echo its bytes either.
    let err = certified_key(
        vec![leaf.cert.clone()],
        &rustls::pki_types::PrivateKeyDer::Pkcs8(leaf.key_der[..40].to_vec().into()),
    )
    .unwrap_err()
    .to_string();
    assert!(!err.contains(&hex_of(&leaf.key_der[..40])), "{err}");
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn bulk_changes_apply_as_one_snapshot_and_park_unknown_targets() {
    let f = fixture();
    let beta = f.pki.leaf(&["webmail.beta.test"]).certified();
    let stray = f.pki.leaf(&["stray.test"]).certified();
    f.index
        .record_failure(&domain("beta.test"), LoadError::KeyMismatch);
    f.index.set_certificates([
        (domain("beta.test"), Some(beta.clone())),
        (domain("acme.test"), None),
        (domain("stray.test"), Some(stray.clone())),
    ]);
    assert!(Arc::ptr_eq(
        &served(&f, Service::Https, Some("webmail.beta.test")),
        &beta
    ));
    assert!(Arc::ptr_eq(
        &served(&f, Service::Https, Some("webmail.acme.test")),
        &f.system
    ));
    assert!(Arc::ptr_eq(
        &f.index.certificate(&domain("stray.test")).unwrap(),
        &stray
    ));
    assert!(f.index.failures().is_empty());
    assert_eq!(f.index.snapshot().certificate_count(), 2); // system and beta
}

#[test]
fn domain_with_names_but_no_url_keeps_its_names_without_a_conflict() {
    let topology = Topology::from_toml_str(
        "[system]\nurl='https://mail.example.test'\n[[domain]]\nname='gamma.test'\nnames=['autodiscover.gamma.test']\n",
    )
    .unwrap();
    let index = LiveIndex::new(&topology);
    let pki = Pki::new();
    let system = pki.leaf(&["mail.example.test"]).certified();
    let gamma = pki
        .leaf(&["mail.example.test", "autodiscover.gamma.test"])
        .certified();
    index.set_certificate(&Target::System, Some(system.clone()));
    index.set_certificate(&domain("gamma.test"), Some(gamma.clone()));
    assert!(index.snapshot().conflicts().is_empty());
    let got = index
        .resolve(Service::Https, Some("autodiscover.gamma.test"))
        .unwrap();
    assert!(Arc::ptr_eq(&got, &gamma));
    let got = index
        .resolve(Service::Https, Some("mail.example.test"))
        .unwrap();
    assert!(Arc::ptr_eq(&got, &system));
}

/// A certificate is served for a target only when it names the target's URL host in the
/// current topology: when a domain changes its URL (or gains one), the certificate checked
/// for the old host is kept aside, listed as a failure, and the system certificate is served
/// until one for the new host is installed; back on the old URL, it is served again.
#[test]
fn a_certificate_is_not_served_for_a_url_host_it_does_not_name() {
    let pki = Pki::new();
    let topology = |acme_url: &str| {
        Topology::from_toml_str(&format!(
            "[system]\nurl = \"https://mail.example.test\"\n[[domain]]\nname = \"acme.test\"\nurl = \"{acme_url}\"\n"
        ))
        .unwrap()
    };
    let index = LiveIndex::new(&topology("https://webmail.acme.test"));
    let system = pki.leaf(&["mail.example.test"]).certified();
    let acme = pki.leaf(&["webmail.acme.test"]).certified();
    index.set_certificate(&Target::System, Some(system.clone()));
    index.set_certificate(&domain("acme.test"), Some(acme.clone()));
    let https = |name: &str| index.resolve(Service::Https, Some(name)).unwrap();
    assert!(Arc::ptr_eq(&https("webmail.acme.test"), &acme));

    // The domain's URL changes: the old certificate does not name the new host.
    index.set_topology(&topology("https://portal.acme.test"));
    assert!(Arc::ptr_eq(&https("portal.acme.test"), &system));
    let failures = index.failures();
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(
        failures[0].error,
        LoadError::NotForHost {
            host: "portal.acme.test".into()
        }
    );
    assert!(failures[0]
        .to_string()
        .contains("install a certificate checked for it"));

    // An install for a host the certificate does not name is kept aside too.
    index.set_certificate(&domain("acme.test"), Some(acme.clone()));
    assert!(Arc::ptr_eq(&https("portal.acme.test"), &system));
    assert_eq!(index.failures().len(), 1);

    // One that names the new host is served, and clears the failure.
    let portal = pki.leaf(&["portal.acme.test"]).certified();
    index.set_certificate(&domain("acme.test"), Some(portal.clone()));
    assert!(Arc::ptr_eq(&https("portal.acme.test"), &portal));
    assert!(index.failures().is_empty());

    // Back to the old URL: the portal certificate does not name it.
    index.set_topology(&topology("https://webmail.acme.test"));
    assert!(Arc::ptr_eq(&https("webmail.acme.test"), &system));
    assert_eq!(index.failures().len(), 1);
}
