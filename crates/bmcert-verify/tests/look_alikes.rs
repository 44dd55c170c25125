//! Issue 13: a CA file of thousands of certificates that share the intermediate's name
//! ("look-alikes", each with its own key), listed before the real intermediate and root.
//! The valid chain inside it is found, unused certificates are reported in short and
//! attributed to their file, and when key identifiers cannot narrow the search the refusal
//! says what is wrong. Cost is measured in benches/verify.rs (`look_alikes`), not here; the
//! bound on work is asserted by counting signature checks (`issuers` unit tests).

// Test code: a failed fixture step should stop the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use bmcert_test::chains::{leaf_params, look_alikes, Alg, Chain3, TEST_TIME};
use bmcert_verify::{verify, ChainCode, ChainInput, Role, Severity};
use rustls_pki_types::{CertificateDer, UnixTime};

fn time() -> UnixTime {
    UnixTime::since_unix_epoch(core::time::Duration::from_secs(TEST_TIME))
}

fn ders(list: Vec<Vec<u8>>) -> Vec<CertificateDer<'static>> {
    list.into_iter().map(CertificateDer::from).collect()
}

/// The CA file of the issue: `n` look-alikes, then the real intermediate and the root.
fn hostile_ca_file(chain: &Chain3, n: usize) -> Vec<CertificateDer<'static>> {
    let mut ca = ders(look_alikes(&chain.intermediate, &chain.root, n));
    ca.push(chain.intermediate.der.clone().into());
    ca.push(chain.root.der.clone().into());
    ca
}

/// A server certificate from `chain`'s intermediate without authorityKeyIdentifier: every
/// look-alike is then a candidate issuer.
fn leaf_without_aki(chain: &Chain3) -> CertificateDer<'static> {
    let mut params = leaf_params(&["mail.example.test"]);
    params.use_authority_key_identifier_extension = false;
    CertificateDer::from(chain.intermediate.issue(params, Alg::P256.key()).der)
}

fn check(
    leaf: &CertificateDer<'_>,
    extras: &[CertificateDer<'_>],
    ca: &[CertificateDer<'_>],
) -> bmcert_verify::Verdict {
    verify(&ChainInput {
        leaf,
        cert_file_extras: extras,
        ca_file: ca,
        platform_roots: &[],
        reference: None,
        time: time(),
    })
}

#[test]
fn the_valid_chain_is_found_behind_ten_thousand_look_alikes() {
    let chain = Chain3::new(Alg::P256, &["mail.example.test"]);
    let ca = hostile_ca_file(&chain, 10_000);
    let leaf = CertificateDer::from(chain.leaf.der.clone());
    let v = check(&leaf, &[], &ca);
    assert!(v.is_valid(), "{:?}", v.first_problem());
    assert_eq!(
        v.chain,
        vec![
            CertificateDer::from(chain.intermediate.der.clone()),
            CertificateDer::from(chain.root.der.clone())
        ]
    );
    // The 10,000 unused certificates are one short warning, not a 3 MB line.
    let extra: Vec<_> = v
        .findings
        .iter()
        .filter(|f| f.code == ChainCode::ExtraCertificates)
        .collect();
    assert_eq!(extra.len(), 1, "{extra:?}");
    assert_eq!(extra[0].file, Role::Ca);
    assert!(
        extra[0]
            .message
            .starts_with("10000 certificates of the ca file are unrelated"),
        "{}",
        extra[0].message
    );
    assert!(
        extra[0].message.ends_with(
            "dropped: 10000 named \"O=bmcert test authority,CN=bmcert Test Intermediate\"",
        ),
        "{}",
        extra[0].message
    );
    assert!(extra[0].message.len() < 400, "{}", extra[0].message);
}

#[test]
fn look_alikes_in_the_certificate_file_are_attributed_to_it() {
    let chain = Chain3::new(Alg::P256, &["mail.example.test"]);
    let extras = ders(look_alikes(&chain.intermediate, &chain.root, 50));
    let ca = ders(vec![chain.intermediate.der.clone(), chain.root.der.clone()]);
    let leaf = CertificateDer::from(chain.leaf.der.clone());
    let v = check(&leaf, &extras, &ca);
    assert!(v.is_valid(), "{:?}", v.first_problem());
    let extra: Vec<_> = v
        .findings
        .iter()
        .filter(|f| f.code == ChainCode::ExtraCertificates)
        .collect();
    assert_eq!(extra.len(), 1, "{extra:?}");
    assert_eq!(extra[0].file, Role::Cert, "{}", extra[0].message);
    assert!(
        extra[0]
            .message
            .starts_with("50 certificates of the cert file"),
        "{}",
        extra[0].message
    );
}

#[test]
fn without_key_identifiers_too_many_look_alikes_are_refused_in_plain_words() {
    let chain = Chain3::new(Alg::P256, &["mail.example.test"]);
    let v = check(
        &leaf_without_aki(&chain),
        &[],
        &hostile_ca_file(&chain, 2_000),
    );
    let first = v.first_problem().expect("refused");
    assert_eq!(first.code, ChainCode::LookAlikes, "{}", first.message);
    assert_eq!(first.severity, Severity::Problem);
    assert_eq!(first.file, Role::Ca);
    assert!(
        first
            .message
            .contains("too many look-alike certificates (2001 certificates named \"O=bmcert test authority,CN=bmcert Test Intermediate\""),
        "{}",
        first.message
    );
}

#[test]
fn without_key_identifiers_a_few_look_alikes_are_searched_through() {
    let chain = Chain3::new(Alg::P256, &["mail.example.test"]);
    let v = check(
        &leaf_without_aki(&chain),
        &[],
        &hostile_ca_file(&chain, 200),
    );
    assert!(v.is_valid(), "{:?}", v.first_problem());
    assert_eq!(v.chain.len(), 2);
}

#[test]
fn a_missing_intermediate_behind_look_alikes_is_named_as_probably_missing() {
    let chain = Chain3::new(Alg::P256, &["mail.example.test"]);
    let mut ca = hostile_ca_file(&chain, 1_100);
    ca.remove(1_100); // the real intermediate
    let leaf = CertificateDer::from(chain.leaf.der.clone());
    let v = check(&leaf, &[], &ca);
    let first = v.first_problem().expect("refused");
    assert_eq!(first.code, ChainCode::LookAlikes, "{}", first.message);
    assert!(
        first
            .message
            .contains("the issuing intermediate is probably missing"),
        "{}",
        first.message
    );
}

/// One chain and its look-alikes, made once for the properties below.
struct Fixture {
    chain: Chain3,
    fakes: Vec<CertificateDer<'static>>,
    leaf_without_aki: CertificateDer<'static>,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: std::sync::OnceLock<Fixture> = std::sync::OnceLock::new();
    FIXTURE.get_or_init(|| {
        let chain = Chain3::new(Alg::P256, &["mail.example.test"]);
        let fakes = ders(look_alikes(&chain.intermediate, &chain.root, 40));
        let leaf_without_aki = leaf_without_aki(&chain);
        Fixture {
            chain,
            fakes,
            leaf_without_aki,
        }
    })
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]

    /// Wherever the real intermediate and root sit among look-alikes, in the CA file or
    /// (the intermediate) in the certificate file, with or without key identifiers to
    /// narrow the search, the valid chain is found.
    #[test]
    fn the_chain_is_found_in_any_order(
        order in proptest::strategy::Strategy::prop_shuffle(
            proptest::sample::subsequence((0..42usize).collect::<Vec<_>>(), 0..=42)
        ),
        with_aki in proptest::bool::ANY,
        intermediate_in_cert_file in proptest::bool::ANY,
    ) {
        let f = fixture();
        let inter = CertificateDer::from(f.chain.intermediate.der.clone());
        let root = CertificateDer::from(f.chain.root.der.clone());
        // 40 and 41 stand for the intermediate and the root; they are always present.
        let mut picks = order;
        for must in [40, 41] {
            if !picks.contains(&must) {
                picks.push(must);
            }
        }
        let mut ca = Vec::new();
        let mut extras = Vec::new();
        for i in picks {
            match i {
                40 if intermediate_in_cert_file => extras.push(inter.clone()),
                40 => ca.push(inter.clone()),
                41 => ca.push(root.clone()),
                i => ca.push(f.fakes[i].clone()),
            }
        }
        let leaf = if with_aki {
            CertificateDer::from(f.chain.leaf.der.clone())
        } else {
            f.leaf_without_aki.clone()
        };
        let v = check(&leaf, &extras, &ca);
        proptest::prop_assert!(v.is_valid(), "{:?}", v.first_problem());
        proptest::prop_assert_eq!(v.chain, vec![inter, root]);
    }
}
