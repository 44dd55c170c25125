//! Any bytes as a key file, with and without a password: must not panic, and a parsed key
//! must be usable by the key check and never show its bytes in Debug.
#![no_main]

use bmcert_bundle::{key_matches, parse_private_key};
use libfuzzer_sys::fuzz_target;
use rustls_pki_types::CertificateDer;

const CERT: &[u8] = include_bytes!("../../samples/cert.der");

fuzz_target!(|data: &[u8]| {
    for password in [None, Some(&b"pw"[..])] {
        if let Ok(key) = parse_private_key(data, password) {
            let _ = key_matches(&key, &CertificateDer::from(CERT));
            let debug = format!("{key:?}");
            assert!(debug.len() < 200);
            let _ = key.to_secret_pem();
        }
    }
});
