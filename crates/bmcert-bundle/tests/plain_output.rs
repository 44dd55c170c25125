//! Issue 13, "plain, bounded output": what the report says about hostile or huge uploads is
//! short, attributed to the right file, free of control characters and in plain words.

// Test code: a failed fixture step should stop the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use bmcert_bundle::{pem_encode, BundleCheck, Code, FileKind, Report};
use bmcert_test::chains::{ca_params, leaf_params, look_alikes, Alg, Chain3, Node, TEST_TIME};
use bmcert_test::openssl_files::export_p12;
use bmcert_verify::ChainCode as VerifyCode;
use rcgen::{DnType, DnValue};
use rustls_pki_types::UnixTime;

fn at() -> UnixTime {
    UnixTime::since_unix_epoch(core::time::Duration::from_secs(TEST_TIME))
}

fn no_control_characters(text: &str) {
    let bad: Vec<char> = text
        .chars()
        .filter(|c| c.is_control() && *c != '\n')
        .collect();
    assert!(bad.is_empty(), "control characters {bad:?} in {text}");
}

fn text_and_json(report: &Report) -> (String, String) {
    (report.to_string(), serde_json::to_string(report).unwrap())
}

#[test]
fn ten_thousand_extra_certificates_in_the_certificate_file_are_one_short_warning_about_it() {
    let chain = Chain3::new(Alg::P256, &["mail.example.test"]);
    let mut cert_file = chain.leaf.pem.clone();
    for der in look_alikes(&chain.intermediate, &chain.root, 10_000) {
        cert_file.push_str(&pem_encode("CERTIFICATE", &der));
    }
    let ca = format!("{}{}", chain.intermediate.pem, chain.root.pem);
    let key = chain.leaf.key.serialize_pem();
    let report =
        BundleCheck::files(cert_file.as_bytes(), key.as_bytes(), Some(ca.as_bytes())).check(at());
    assert!(report.is_valid(), "{:?}", report.problems);
    let extra: Vec<_> = report
        .warnings
        .iter()
        .filter(|w| w.code == Code::Chain(VerifyCode::ExtraCertificates))
        .collect();
    assert_eq!(extra.len(), 1, "{extra:?}");
    assert_eq!(extra[0].file, FileKind::Cert, "{}", extra[0].message);
    assert!(extra[0].message.len() < 400, "{}", extra[0].message);
    assert!(
        extra[0]
            .message
            .contains("10000 certificates of the cert file")
            && extra[0].message.ends_with(
                "dropped: 10000 named \"O=bmcert test authority,CN=bmcert Test Intermediate\"",
            ),
        "{}",
        extra[0].message
    );
    // The text report describes the first chain certificates and counts the rest.
    let (text, _) = text_and_json(&report);
    assert!(text.len() < 20_000, "{} bytes of text", text.len());
    assert!(
        text.contains("... and 9992 more chain certificates"),
        "{}",
        &text[text.len().saturating_sub(300)..]
    );
}

#[test]
fn a_certificate_too_large_for_tls_is_explained_not_quoted() {
    let names: Vec<String> = (0..10_000).map(|i| format!("h{i}.example.test")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let root = Node::self_signed(ca_params("bmcert Test Root"), Alg::P256.key());
    let leaf = root.issue(leaf_params(&names), Alg::P256.key());
    assert!(leaf.der.len() > 65_535);
    let key = leaf.key.serialize_pem();
    let report = BundleCheck::files(
        leaf.pem.as_bytes(),
        key.as_bytes(),
        Some(root.pem.as_bytes()),
    )
    .check(at());
    let (text, json) = text_and_json(&report);
    assert!(!report.is_valid());
    assert!(
        !text.contains("TrailingData") && !json.contains("TrailingData"),
        "{text}"
    );
    let problem = report
        .problems
        .iter()
        .find(|p| p.message.contains("65,535 bytes"))
        .unwrap_or_else(|| panic!("{:?}", report.problems));
    assert!(
        problem.message.contains("10000 names"),
        "{}",
        problem.message
    );
    // Ten thousand names are listed in short in the text report.
    assert!(text.len() < 20_000, "{} bytes of text", text.len());
}

#[test]
fn pkcs12_iterations_over_the_limit_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let chain = Chain3::new(Alg::P256, &["mail.example.test"]);
    std::fs::write(d.join("cert.pem"), &chain.leaf.pem).unwrap();
    std::fs::write(d.join("key.pem"), chain.leaf.key.serialize_pem()).unwrap();
    std::fs::write(
        d.join("ca.pem"),
        format!("{}{}", chain.intermediate.pem, chain.root.pem),
    )
    .unwrap();
    // -iter sets the MAC's count too in OpenSSL 3.
    export_p12(d, "costly.p12", "pass:pw", &["-iter", "1000001"]);
    let p12 = std::fs::read(d.join("costly.p12")).unwrap();
    let report = BundleCheck::pkcs12(&p12, "pw").check(at());
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    let p = &report.problems[0];
    assert_eq!(p.code, Code::P12Unreadable);
    assert!(
        p.message.contains("1000001 password-hashing iterations")
            && !p.message.contains("Invalid parameters"),
        "{}",
        p.message
    );
}

#[test]
fn control_characters_in_certificate_names_are_escaped_everywhere() {
    let evil = "evil\u{1b}]0;owned\u{7}\u{1b}[2J\u{0}";
    let mut root_params = ca_params("bmcert Test Root");
    root_params.distinguished_name.push(
        DnType::OrganizationalUnitName,
        DnValue::Utf8String(evil.into()),
    );
    let root = Node::self_signed(root_params, Alg::P256.key());
    let mut leaf_params = leaf_params(&["mail.example.test"]);
    leaf_params.subject_alt_names.push(rcgen::SanType::DnsName(
        "x\u{1b}[2J.example.test".try_into().unwrap(),
    ));
    leaf_params.distinguished_name.push(
        DnType::OrganizationalUnitName,
        DnValue::Utf8String(evil.into()),
    );
    let leaf = root.issue(leaf_params, Alg::P256.key());
    let key = leaf.key.serialize_pem();
    // Refused for another name, and the CA file is missing: every message names the
    // certificates.
    for (ca, host) in [
        (Some(root.pem.as_bytes()), "other.example.test"),
        (None, "mail.example.test"),
    ] {
        let report = BundleCheck::files(leaf.pem.as_bytes(), key.as_bytes(), ca)
            .host(bmcert_topology::Host::parse(host).unwrap())
            .check(at());
        let (text, _) = text_and_json(&report);
        // Subjects in RFC 4514 hex escapes, names from the SAN as \u{..} escapes.
        assert!(text.contains("OU=evil\\1b]0"), "{text}");
        assert!(text.contains("x\\u{1b}[2J.example.test"), "{text}");
        no_control_characters(&text);
    }
}

#[test]
fn pem_labels_from_the_file_are_escaped_and_listed_once_in_short() {
    let mut file = String::new();
    for i in 0..1_000 {
        file.push_str(&format!(
            "-----BEGIN THING\u{1b}[{i}m-----\nAAAA\n-----END THING\u{1b}[{i}m-----\n"
        ));
    }
    let report = BundleCheck::files(file.as_bytes(), file.as_bytes(), None).check(at());
    let (text, _) = text_and_json(&report);
    no_control_characters(&text);
    assert!(text.len() < 4_000, "{} bytes: {text}", text.len());
    let cert = report
        .problems
        .iter()
        .find(|p| p.code == Code::CertUnreadable)
        .unwrap();
    assert!(
        cert.message.contains("THING\\u{1b}[0m") && cert.message.contains("and other labels"),
        "{}",
        cert.message
    );
    // An unterminated block names its label escaped too.
    let report = BundleCheck::files(b"-----BEGIN A\x07B-----\nAAAA\n", b"", None).check(at());
    no_control_characters(&report.to_string());
}

#[test]
fn per_certificate_findings_are_counted_beyond_the_first_three_of_a_file() {
    let chain = Chain3::new(Alg::P256, &["mail.example.test"]);
    let mut ca = String::new();
    for der in look_alikes(&chain.intermediate, &chain.root, 20) {
        ca.push_str(&pem_encode("CERTIFICATE", &der));
    }
    ca.push_str(&chain.intermediate.pem);
    ca.push_str(&chain.root.pem);
    let key = chain.leaf.key.serialize_pem();
    // 2039-12-13: every certificate (valid until 2040-01-01) expires within 30 days.
    let late = UnixTime::since_unix_epoch(core::time::Duration::from_secs(2_207_347_200));
    let report = BundleCheck::files(
        chain.leaf.pem.as_bytes(),
        key.as_bytes(),
        Some(ca.as_bytes()),
    )
    .check(late);
    let soon: Vec<_> = report
        .warnings
        .iter()
        .filter(|w| w.code == Code::ExpiresSoon && w.file == FileKind::Ca)
        .collect();
    assert_eq!(soon.len(), 4, "{soon:?}");
    assert_eq!(
        soon[3].message,
        "... and 19 more certificates of the ca file with the same finding."
    );
    // The leaf's own warning is kept, attributed to the certificate file.
    assert!(report
        .warnings
        .iter()
        .any(|w| w.code == Code::ExpiresSoon && w.file == FileKind::Cert));
}
