//! Chain validation: bmcert-verify's full verdict (path building, profile checks, name
//! matching, diagnosis) next to rustls-webpki's bare `verify_for_usage` on the same chains,
//! in the same run.
//!
//!     cargo bench -p bmcert-benches --bench verify
//!
//! Results are recorded in docs/benchmarks.md ("Chain validation" and "Look-alike
//! authorities").

use bmcert_test::chains::{look_alikes, Alg, Chain3, TEST_TIME};
use bmcert_topology::Host;
use bmcert_verify::{verify, ChainInput};
use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion};
use rustls_pki_types::{CertificateDer, UnixTime};
use webpki::{EndEntityCert, KeyUsage};

/// The reference: what a rustls client does on `chain` (leaf, one intermediate, anchor
/// parsed once up front), rustls-webpki's `verify_for_usage` alone.
fn webpki_reference(
    group: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    chain: &Chain3,
    time: UnixTime,
) {
    let leaf = CertificateDer::from(chain.leaf.der.clone());
    let root = CertificateDer::from(chain.root.der.clone());
    let anchors = vec![webpki::anchor_from_trusted_cert(&root)
        .expect("anchor")
        .to_owned()];
    let intermediates = vec![CertificateDer::from(chain.intermediate.der.clone())];
    group.bench_function(name, |b| {
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
}

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
        webpki_reference(&mut group, "webpki_verify_for_usage", &chain, time);
        group.finish();
    }
}

/// Issue 13: a CA file of `n` look-alikes of the intermediate (its name, other keys), listed
/// before the real intermediate and root, for n = 100, 1,000 and 10,000. The reference in the
/// same run is rustls-webpki's bare `verify_for_usage` on the clean chain (anchor parsed once,
/// one intermediate): the floor any verification of this leaf pays.
fn bench_look_alikes(c: &mut Criterion) {
    let time = UnixTime::since_unix_epoch(core::time::Duration::from_secs(TEST_TIME));
    let chain = Chain3::new(Alg::P256, &["mail.example.test"]);
    let leaf = CertificateDer::from(chain.leaf.der.clone());
    let inter = CertificateDer::from(chain.intermediate.der.clone());
    let root = CertificateDer::from(chain.root.der.clone());
    let fakes: Vec<CertificateDer<'static>> = look_alikes(&chain.intermediate, &chain.root, 10_000)
        .into_iter()
        .map(CertificateDer::from)
        .collect();

    let mut group = c.benchmark_group("look_alikes");
    group.sample_size(20);
    webpki_reference(&mut group, "webpki_clean_chain", &chain, time);
    for n in [0, 100, 1_000, 10_000] {
        let mut ca_file: Vec<CertificateDer<'static>> = fakes[..n].to_vec();
        ca_file.push(inter.clone());
        ca_file.push(root.clone());
        let input = ChainInput {
            leaf: &leaf,
            cert_file_extras: &[],
            ca_file: &ca_file,
            platform_roots: &[],
            reference: None,
            time,
        };
        let v = verify(&input);
        assert!(v.is_valid(), "{:?}", v.first_problem());
        group.bench_function(format!("bmcert_verify/{n}"), |b| {
            b.iter(|| std::hint::black_box(verify(std::hint::black_box(&input))))
        });
    }
    group.finish();
}

criterion_group!(benches, bench, bench_look_alikes);
criterion_main!(benches);
