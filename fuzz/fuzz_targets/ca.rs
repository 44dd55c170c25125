//! Any bytes as the CA file next to a valid certificate and key: must not panic, and a
//! refused bundle must say so on the CA file only.
#![no_main]

use bmcert_bundle::{BundleCheck, FileKind};
use libfuzzer_sys::fuzz_target;
use rustls_pki_types::UnixTime;

const CERT: &[u8] = include_bytes!("../../samples/cert.pem");
const KEY: &[u8] = include_bytes!("../../samples/key.pem");

fuzz_target!(|data: &[u8]| {
    let at = UnixTime::since_unix_epoch(core::time::Duration::from_secs(1_900_000_000));
    let report = BundleCheck::files(CERT, KEY, Some(data)).check(at);
    for p in &report.problems {
        // The certificate and key are fine; only CA certificates can be at fault.
        assert_eq!(p.file, FileKind::Ca, "{p}");
    }
    assert!(report.bundle.is_some());
});
