//! Parse plus key check of an RSA-2048 and a P-256 bundle (`BundleCheck::check` on PEM
//! bytes: certificate, key, two-certificate CA file), each next to its reference measured in
//! the same run: the signature operations alone (sign the test message with an already
//! loaded key, verify with an already parsed certificate).
//!
//! The ratio `check / sign_verify` says how much the parsing, summaries and date checks add
//! on top of the cryptography the key check cannot avoid.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use bmcert_bundle::{BundleCheck, TEST_MESSAGE};
use bmcert_test::fixtures::{ChainSpec, KeyType};
use criterion::{criterion_group, criterion_main, Criterion};
use rustls::crypto::aws_lc_rs::sign::any_supported_type;
use rustls::SignatureScheme;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, UnixTime};

fn bench_bundle(c: &mut Criterion) {
    let now = UnixTime::now();
    for (name, kt, scheme, alg) in [
        (
            "rsa2048",
            KeyType::Rsa2048,
            SignatureScheme::RSA_PKCS1_SHA256,
            webpki::aws_lc_rs::RSA_PKCS1_2048_8192_SHA256,
        ),
        (
            "p256",
            KeyType::EcdsaP256,
            SignatureScheme::ECDSA_NISTP256_SHA256,
            webpki::aws_lc_rs::ECDSA_P256_SHA256,
        ),
    ] {
        let chain = ChainSpec::new(&["mail.example.test"])
            .leaf_key(kt)
            .ca_key(kt)
            .build();
        let (cert, key, ca) = (
            chain.leaf.cert_pem.as_bytes(),
            chain.leaf.key_pem.as_bytes(),
            chain.ca_pem(),
        );
        let report = BundleCheck::files(cert, key, Some(ca.as_bytes())).check(now);
        assert!(report.is_valid(), "{:?}", report.problems);

        let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(chain.leaf.key_der.clone()));
        let signing_key = any_supported_type(&key_der).unwrap();
        let cert_der = CertificateDer::from(chain.leaf.cert_der.clone());
        let ee = webpki::EndEntityCert::try_from(&cert_der).unwrap();

        let mut group = c.benchmark_group(format!("bundle/{name}"));
        group.bench_function("check", |b| {
            b.iter(|| {
                let r = BundleCheck::files(black_box(cert), black_box(key), Some(ca.as_bytes()))
                    .check(now);
                black_box(r.is_valid())
            })
        });
        group.bench_function("sign_verify", |b| {
            b.iter(|| {
                let signer = signing_key.choose_scheme(&[scheme]).unwrap();
                let sig = signer.sign(black_box(TEST_MESSAGE)).unwrap();
                ee.verify_signature(alg, TEST_MESSAGE, &sig).unwrap();
                black_box(sig.len())
            })
        });
        group.finish();
    }
}

criterion_group!(benches, bench_bundle);
criterion_main!(benches);
