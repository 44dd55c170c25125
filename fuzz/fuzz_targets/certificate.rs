//! Any bytes as a certificate file: parsing, summaries and the whole check must not panic.
#![no_main]

use bmcert_bundle::{parse_certificates, BundleCheck, CertSummary};
use libfuzzer_sys::fuzz_target;
use rustls_pki_types::UnixTime;

const KEY: &[u8] = include_bytes!("../../samples/key.pem");

fuzz_target!(|data: &[u8]| {
    if let Ok(certs) = parse_certificates(data) {
        assert!(!certs.is_empty());
        for c in &certs {
            // parse_certificates promises decodable certificates.
            assert!(CertSummary::from_der(c).is_some());
        }
    }
    let report = BundleCheck::files(data, KEY, None).check(UnixTime::since_unix_epoch(
        core::time::Duration::from_secs(1_900_000_000),
    ));
    let _ = report.to_string();
});
