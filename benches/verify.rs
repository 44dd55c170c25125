//! Chain validation: bmcert-verify's full verdict (path building, profile checks, name
//! matching, diagnosis) next to rustls-webpki's bare `verify_for_usage` on the same chains,
//! in the same run.
//!
//!     cargo bench -p bmcert-benches --bench verify
//!
//! Results are recorded in docs/benchmarks.md ("Chain validation").

use bmcert_test::chains::{Alg, Chain3, TEST_TIME};
use bmcert_topology::Host;
use bmcert_verify::{verify, ChainInput};
use criterion::{criterion_group, criterion_main, Criterion};
use rustls_pki_types::{CertificateDer, UnixTime};
use webpki::{EndEntityCert, KeyUsage};

fn bench(c: &mut Criterion) {
    let time = UnixTime::since_unix_epoch(core::time::Duration::from_secs(TEST_TIME));
    let host = Host::parse("https://mail.example.test/").expect("host");
    for (label, alg) in [("rsa2048", Alg::Rsa2048), ("p256", Alg::P256)] {
        let chain = Chain3::new(alg, &["mail.example.test"]);
        let leaf = CertificateDer::from(chain.leaf.der.clone());
        let inter = CertificateDer::from(chain.intermediate.der.clone());
        let root = CertificateDer::from(chain.root.der.clone());
        let ca_file = vec![inter.clone(), root.clone()];
        let input = ChainInput {
            leaf: &leaf,
            cert_file_extras: &[],
            ca_file: &ca_file,
            platform_roots: &[],
            reference: Some(&host),
            time,
        };
        assert!(verify(&input).is_valid(), "the bench chain must be valid");

        let mut group = c.benchmark_group(format!("chain_validation/{label}"));
        group.bench_function("bmcert_verify", |b| {
            b.iter(|| std::hint::black_box(verify(std::hint::black_box(&input))))
        });
        // The reference: what a rustls client does, anchors parsed once up front.
        let anchors = vec![webpki::anchor_from_trusted_cert(&root)
            .expect("anchor")
            .to_owned()];
        let intermediates = vec![inter.clone()];
        group.bench_function("webpki_verify_for_usage", |b| {
            b.iter(|| {
                let ee = EndEntityCert::try_from(&leaf).expect("leaf");
                let path = ee
                    .verify_for_usage(
                        webpki::ALL_VERIFICATION_ALGS,
                        &anchors,
                        &intermediates,
                        time,
                        KeyUsage::server_auth(),
                        None,
                        None,
                    )
                    .map(|_| ());
                std::hint::black_box(path).expect("valid");
            })
        });
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
