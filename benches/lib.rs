//! Benchmarks live beside this file; run them with `cargo bench -p bmcert-benches`.
//!
//! What several benchmarks share lives here.

use bmcert_store::{Bundle, BundleMeta, Fingerprint, KeyFormat, SecretKey, Source};
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
        BundleMeta {
            source: Source::Files,
            names: vec!["mail.example.test".into()],
            not_after: OffsetDateTime::from_unix_timestamp(2_000_000_000).unwrap(),
            installed_at: OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap(),
            fingerprint: Fingerprint::of(&der),
        },
    )
    .unwrap()
}
