//! Benchmarks live beside this file; run them with `cargo bench -p bmcert-benches`.
//!
//! What several benchmarks share lives here.

use bmcert_store::{Bundle, BundleMeta, KeyFormat, SecretKey, Source};
use rustls_pki_types::CertificateDer;
use time::OffsetDateTime;

/// The bundle the store benchmarks (`store`, `store_etcd`) install and read: a self-signed
/// P-256 leaf for `mail.example.test` twice (leaf and chain) and its PKCS#8 key, so both
/// backends move the same bytes.
///
/// # Panics
/// Only if rcgen cannot make a certificate, which would make every benchmark meaningless.
#[allow(clippy::unwrap_used)] // bench set-up
pub fn store_bundle() -> Bundle {
    let ck = rcgen::generate_simple_self_signed(vec!["mail.example.test".to_owned()]).unwrap();
    let der = ck.cert.der().to_vec();
    Bundle::new(
        vec![
            CertificateDer::from(der.clone()),
            CertificateDer::from(der.clone()),
        ],
        SecretKey::new(KeyFormat::Pkcs8, ck.signing_key.serialize_der()),
        // The store proves what it holds: the metadata is the certificate's.
        BundleMeta::for_leaf(
            Source::Files,
            OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap(),
            &CertificateDer::from(der.clone()),
        )
        .unwrap(),
    )
    .unwrap()
}

/// The SNI workload `resolve` and `lookup` share: `n` domains `d{i}.test` whose URL host is
/// `w{i}.bench.test`, all served by one wildcard certificate (the lookup is what is measured).
#[allow(clippy::unwrap_used)] // bench set-up
pub mod sni {
    use std::sync::Arc;

    use bmcert_resolve::LiveIndex;
    use bmcert_topology::{DomainName, DomainSite, Site, Target, Topology};
    use rustls::sign::CertifiedKey;

    /// The URL host of domain `i`.
    pub fn host(i: usize) -> String {
        format!("w{i}.bench.test")
    }

    /// The target of domain `i`.
    pub fn target(i: usize) -> Target {
        Target::Domain(DomainName::new(&format!("d{i}.test")).unwrap())
    }

    /// The system URL `mail.example.test` and `n` domains with a URL each.
    pub fn topology(n: usize) -> Topology {
        let mut t = Topology::new(Site::new("https://mail.example.test", &[]).unwrap());
        t.domains = (0..n)
            .map(|i| DomainSite {
                name: DomainName::new(&format!("d{i}.test")).unwrap(),
                site: Some(Site::new(&format!("https://{}/", host(i)), &[]).unwrap()),
            })
            .collect();
        t
    }

    /// The index of [`topology`]`(n)` with `cert` for the system and every domain.
    pub fn live_index(n: usize, cert: &Arc<CertifiedKey>) -> LiveIndex {
        let index = LiveIndex::new(&topology(n));
        index.set_certificates(
            std::iter::once(Target::System)
                .chain((0..n).map(target))
                .map(|t| (t, Some(cert.clone()))),
        );
        index
    }

    /// The hot set: `batch` names spread evenly over `n` domains (about 900 distinct ones for
    /// 1,000), plus unknown names (one in ten).
    pub fn hot_names(n: usize, batch: usize) -> Vec<String> {
        (0..batch)
            .map(|k| {
                if k % 10 == 9 {
                    format!("unknown{k}.bench.test")
                } else {
                    host(k * 7919 % n)
                }
            })
            .collect()
    }
}
