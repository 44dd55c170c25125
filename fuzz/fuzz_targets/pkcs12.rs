//! Any bytes as a PKCS#12 file: must not panic, with the right or a wrong password, and the
//! refusal is plain text (no control character of the input repeated).
#![no_main]

use bmcert_bundle::{parse_pkcs12, BundleCheck};
use libfuzzer_sys::fuzz_target;
use rustls_pki_types::UnixTime;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = parse_pkcs12(data, "") {
        let message = e.to_string();
        assert!(
            !message.chars().any(bmcert_topology::is_unsafe_char),
            "{message:?}"
        );
    }
    let at = UnixTime::since_unix_epoch(core::time::Duration::from_secs(1_900_000_000));
    let _ = BundleCheck::pkcs12(data, "pw").check(at).to_string();
});
