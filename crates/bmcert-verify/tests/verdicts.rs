//! The upload verdict on generated chains: each problem and warning code, and its message.

// Test code: a failed fixture step should stop the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use bmcert_test::chains::{ca_params, leaf_params, Alg, Chain3, Node, TEST_TIME};
use bmcert_topology::Host;
use bmcert_verify::{verify, ChainCode, ChainFinding, ChainInput, Role, Severity, Verdict};
use rcgen::{CertificateParams, ExtendedKeyUsagePurpose, IsCa};
use rustls_pki_types::{CertificateDer, UnixTime};

fn der(n: &Node) -> CertificateDer<'static> {
    CertificateDer::from(n.der.clone())
}

fn at(secs: u64) -> UnixTime {
    UnixTime::since_unix_epoch(core::time::Duration::from_secs(secs))
}

fn check(
    leaf: &Node,
    extras: &[&Node],
    ca: &[&Node],
    platform: &[&Node],
    host: Option<&str>,
) -> Verdict {
    let leaf = der(leaf);
    let extras: Vec<_> = extras.iter().map(|n| der(n)).collect();
    let ca: Vec<_> = ca.iter().map(|n| der(n)).collect();
    let platform: Vec<_> = platform.iter().map(|n| der(n)).collect();
    let host = host.map(|h| Host::parse(h).unwrap());
    verify(&ChainInput {
        leaf: &leaf,
        cert_file_extras: &extras,
        ca_file: &ca,
        platform_roots: &platform,
        reference: host.as_ref(),
        time: at(TEST_TIME),
    })
}

fn codes(v: &Verdict) -> Vec<&'static str> {
    v.findings.iter().map(|f| f.code.as_str()).collect()
}

/// [`check`] of `leaf` with `c`'s intermediate and root in order in the CA file.
fn check_in_chain(leaf: &Node, c: &Chain3, host: Option<&str>) -> Verdict {
    check(leaf, &[], &[&c.intermediate, &c.root], &[], host)
}

/// The first problem of `v`, which must have `code`.
fn first_problem(v: &Verdict, code: ChainCode) -> &ChainFinding {
    let f = v.first_problem().unwrap();
    assert_eq!(f.code, code, "{:?}", v.findings);
    f
}

/// A P-256 leaf for `names` from `c`'s intermediate, its parameters changed by `edit`.
fn issue_leaf(c: &Chain3, names: &[&str], edit: impl FnOnce(&mut CertificateParams)) -> Node {
    let mut p = leaf_params(names);
    edit(&mut p);
    c.intermediate.issue(p, Alg::P256.key())
}

/// The verdict on a leaf whose only authority, a root, expired on 2025-01-01.
fn expired_root_verdict() -> Verdict {
    let mut p = ca_params("bmcert Old Root");
    p.not_after = rcgen::date_time_ymd(2025, 1, 1);
    let root = Node::self_signed(p, Alg::P256.key());
    let leaf = root.issue(leaf_params(&["mail.example.test"]), Alg::P256.key());
    check(&leaf, &[], &[&root], &[], None)
}

#[test]
fn good_chain_is_valid_and_ordered() {
    let c = Chain3::new(Alg::P256, &["mail.example.test"]);
    let v = check_in_chain(&c.leaf, &c, Some("https://mail.example.test/"));
    assert!(v.is_valid(), "{:?}", v.findings);
    assert!(v.findings.is_empty(), "{:?}", v.findings);
    assert_eq!(v.chain, vec![der(&c.intermediate), der(&c.root)]);
    assert!(v.names.as_ref().unwrap().is_match());
}

#[test]
fn reordered_ca_file_is_accepted_with_a_warning() {
    let c = Chain3::new(Alg::P256, &["mail.example.test"]);
    let v = check(&c.leaf, &[], &[&c.root, &c.intermediate], &[], None);
    assert!(v.is_valid());
    assert_eq!(codes(&v), ["chain_reordered"]);
    assert_eq!(v.chain, vec![der(&c.intermediate), der(&c.root)]);
}

#[test]
fn unrelated_certificates_are_dropped_with_a_warning() {
    let c = Chain3::new(Alg::P256, &["mail.example.test"]);
    let other = Chain3::new(Alg::P256, &["other.test"]);
    let v = check(
        &c.leaf,
        &[],
        &[&c.intermediate, &other.intermediate, &c.root],
        &[],
        None,
    );
    assert!(v.is_valid());
    assert_eq!(codes(&v), ["extra_certificates"]);
    assert!(v.findings[0].message.contains("bmcert Test Intermediate"));
}

#[test]
fn chain_in_cert_file_is_used_with_a_warning() {
    let c = Chain3::new(Alg::P256, &["mail.example.test"]);
    let v = check(&c.leaf, &[&c.intermediate], &[&c.root], &[], None);
    assert!(v.is_valid(), "{:?}", v.findings);
    assert_eq!(codes(&v), ["chain_in_cert_file"]);
    assert_eq!(v.findings[0].file, Role::Cert);
}

#[test]
fn missing_intermediate_names_the_issuer() {
    let c = Chain3::new(Alg::P256, &["mail.example.test"]);
    let v = check(&c.leaf, &[], &[&c.root], &[], None);
    assert!(!v.is_valid());
    let f = first_problem(&v, ChainCode::ChainIncomplete);
    assert_eq!(f.file, Role::Ca);
    assert!(
        f.message.contains("CN=bmcert Test Intermediate"),
        "{}",
        f.message
    );
}

#[test]
fn missing_root_says_which_root_to_append() {
    let c = Chain3::new(Alg::Rsa2048, &["mail.example.test"]);
    let v = check(&c.leaf, &[], &[&c.intermediate], &[], None);
    let f = first_problem(&v, ChainCode::RootMissing);
    assert!(
        f.message.contains("append the root certificate \"")
            && f.message.contains("CN=bmcert Test Root"),
        "{}",
        f.message
    );
}

#[test]
fn root_from_the_platform_store_completes_the_chain() {
    let c = Chain3::new(Alg::P256, &["mail.example.test"]);
    let v = check(&c.leaf, &[], &[&c.intermediate], &[&c.root], None);
    assert!(v.is_valid(), "{:?}", v.findings);
    assert_eq!(codes(&v), ["root_from_platform"]);
    assert_eq!(v.findings[0].severity, Severity::Warning);
    assert_eq!(v.chain.last(), Some(&der(&c.root)));
}

#[test]
fn wrong_authority_with_the_same_name_is_a_signature_problem() {
    let c = Chain3::new(Alg::P256, &["mail.example.test"]);
    // Same subject as the real intermediate, another key.
    let impostor = c
        .root
        .issue(ca_params("bmcert Test Intermediate"), Alg::P256.key());
    let v = check(&c.leaf, &[], &[&impostor, &c.root], &[], None);
    first_problem(&v, ChainCode::ChainSignatureInvalid);
}

#[test]
fn expired_intermediate_is_ca_expired() {
    let root = Node::self_signed(ca_params("bmcert Test Root"), Alg::P256.key());
    let mut p = ca_params("bmcert Old Intermediate");
    p.not_after = rcgen::date_time_ymd(2025, 1, 1);
    let inter = root.issue(p, Alg::P256.key());
    let leaf = inter.issue(leaf_params(&["mail.example.test"]), Alg::P256.key());
    let v = check(&leaf, &[], &[&inter, &root], &[], None);
    let f = first_problem(&v, ChainCode::CaExpired);
    assert!(f.message.contains("bmcert Old Intermediate"));
}

#[test]
fn expired_root_is_ca_expired() {
    let v = expired_root_verdict();
    assert!(!v.is_valid());
    assert!(v.has(ChainCode::CaExpired), "{:?}", v.findings);
}

#[test]
fn expired_leaf_leads() {
    let c = Chain3::new(Alg::P256, &["mail.example.test"]);
    let leaf = issue_leaf(&c, &["mail.example.test"], |p| {
        p.not_after = rcgen::date_time_ymd(2024, 1, 1);
    });
    let v = check_in_chain(&leaf, &c, Some("mail.example.test"));
    first_problem(&v, ChainCode::LeafExpired);
}

#[test]
fn authority_as_leaf_is_leaf_is_ca() {
    let c = Chain3::new(Alg::P256, &["mail.example.test"]);
    let v = check(&c.intermediate, &[], &[&c.root], &[], None);
    first_problem(&v, ChainCode::LeafIsCa);
}

#[test]
fn client_only_eku_is_not_server_auth() {
    let c = Chain3::new(Alg::P256, &["mail.example.test"]);
    let leaf = issue_leaf(&c, &["mail.example.test"], |p| {
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    });
    let v = check_in_chain(&leaf, &c, None);
    first_problem(&v, ChainCode::NotServerAuth);
}

#[test]
fn name_mismatch_lists_the_covered_names() {
    let c = Chain3::new(Alg::P256, &["mail.example.test", "*.example.test"]);
    let v = check_in_chain(&c.leaf, &c, Some("https://a.b.example.test"));
    let f = first_problem(&v, ChainCode::NameMismatch);
    assert!(
        f.message.contains("mail.example.test, *.example.test"),
        "{}",
        f.message
    );
    let v = check_in_chain(&c.leaf, &c, Some("https://Webmail.Example.TEST:443/"));
    assert!(v.is_valid(), "{:?}", v.findings);
}

#[test]
fn ip_reference_matches_only_ip_sans() {
    let c = Chain3::new(Alg::P256, &["127.0.0.1", "::1"]);
    for host in ["https://127.0.0.1/", "[0:0::1]"] {
        let v = check_in_chain(&c.leaf, &c, Some(host));
        assert!(v.is_valid(), "{host}: {:?}", v.findings);
    }
    let v = check_in_chain(&c.leaf, &c, Some("127.0.0.2"));
    assert!(v.has(ChainCode::NameMismatch));
}

#[test]
fn cn_only_certificate_matches_with_a_warning() {
    let c = Chain3::new(Alg::P256, &["mail.example.test"]);
    let leaf = issue_leaf(&c, &[], |p| {
        p.distinguished_name
            .push(rcgen::DnType::CommonName, "mail.example.test");
    });
    let v = check_in_chain(&leaf, &c, Some("mail.example.test"));
    assert!(v.is_valid(), "{:?}", v.findings);
    assert_eq!(codes(&v), ["cn_only"]);
    let v = check_in_chain(&leaf, &c, Some("127.0.0.1"));
    assert!(v.has(ChainCode::NameMismatch), "an IP never matches a CN");
}

#[test]
fn ca_without_basic_constraints_is_non_conformant() {
    let mut p = ca_params("bmcert Sloppy Root");
    p.is_ca = IsCa::NoCa;
    p.key_usages.clear();
    let root = Node::self_signed(p, Alg::P256.key());
    let leaf = root.issue(leaf_params(&["mail.example.test"]), Alg::P256.key());
    let v = check(&leaf, &[], &[&root], &[], None);
    let f = first_problem(&v, ChainCode::NonConformant);
    assert!(f.message.contains("basicConstraints"), "{}", f.message);
}

#[test]
fn findings_never_contain_a_private_key() {
    let c = Chain3::new(Alg::P256, &["mail.example.test"]);
    let v = check(&c.leaf, &[], &[&c.root], &[], Some("other.test"));
    let secret = c.leaf.key.serialize_pem();
    let body: String = secret.lines().nth(1).unwrap().to_owned();
    for f in &v.findings {
        assert!(!f.message.contains(&body));
    }
    assert!(v.findings.len() >= 2);
}

#[test]
fn garbage_is_a_typed_finding_not_a_panic() {
    let leaf = CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01, 0x00]);
    let junk = CertificateDer::from(b"not a certificate".to_vec());
    let v = verify(&ChainInput {
        leaf: &leaf,
        cert_file_extras: std::slice::from_ref(&junk),
        ca_file: std::slice::from_ref(&junk),
        platform_roots: &[],
        reference: None,
        time: at(TEST_TIME),
    });
    assert_eq!(v.first_problem().unwrap().code, ChainCode::Malformed);
    let c = Chain3::new(Alg::P256, &["mail.example.test"]);
    let junk = CertificateDer::from(b"junk".to_vec());
    let v = verify(&ChainInput {
        leaf: &der(&c.leaf),
        cert_file_extras: &[],
        ca_file: &[junk, der(&c.intermediate), der(&c.root)],
        platform_roots: &[],
        reference: None,
        time: at(TEST_TIME),
    });
    assert!(v.is_valid(), "{:?}", v.findings);
    assert!(v.has(ChainCode::ExtraCertificates));
}

#[test]
fn self_signed_leaf_says_so() {
    let leaf = Node::self_signed(leaf_params(&["mail.example.test"]), Alg::P256.key());
    let v = check(&leaf, &[], &[], &[], Some("mail.example.test"));
    let f = first_problem(&v, ChainCode::ChainIncomplete);
    assert!(f.message.contains("self-signed"), "{}", f.message);
}

#[test]
fn expired_root_is_reported_once() {
    let v = expired_root_verdict();
    assert_eq!(
        v.findings
            .iter()
            .filter(|f| f.code == ChainCode::CaExpired)
            .count(),
        1,
        "{:?}",
        v.findings
    );
    first_problem(&v, ChainCode::CaExpired);
}

#[test]
fn profile_rules_are_warnings_by_default_and_problems_when_pedantic() {
    use bmcert_verify::{verify_with, Options, Strictness};
    let c = Chain3::new(Alg::P256, &["mail.example.test"]);
    let leaf = issue_leaf(&c, &["mail.example.test"], |p| {
        p.use_authority_key_identifier_extension = false;
    });
    let leaf = der(&leaf);
    let ca = [der(&c.intermediate), der(&c.root)];
    let input = ChainInput {
        leaf: &leaf,
        cert_file_extras: &[],
        ca_file: &ca,
        platform_roots: &[],
        reference: None,
        time: at(TEST_TIME),
    };
    let standard = verify(&input);
    assert!(standard.is_valid(), "{:?}", standard.findings);
    assert_eq!(codes(&standard), ["non_conformant"]);
    assert_eq!(standard.findings[0].severity, Severity::Warning);
    assert!(standard.findings[0]
        .message
        .contains("authorityKeyIdentifier"));
    let pedantic = verify_with(&input, &Options::with_strictness(Strictness::Pedantic));
    assert!(!pedantic.is_valid());
    assert_eq!(
        pedantic.first_problem().unwrap().code,
        ChainCode::NonConformant
    );
}
