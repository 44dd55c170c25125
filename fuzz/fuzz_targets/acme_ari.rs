//! Any bytes as a CA's renewal-information response (RFC 9773) with any `Retry-After`, and
//! as a certificate to name for it (bmcert-acme's ARI): typed errors, never a panic; an
//! accepted window is non-empty and its retry delay stays within a minute and a day.
#![no_main]

use std::time::Duration;

use bmcert_acme::{
    ari_certificate_id, parse_renewal_info, MAX_ARI_RETRY, MIN_ARI_RETRY,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (secs, body) = match data.split_first() {
        Some((first, rest)) => (Some(Duration::from_secs(u64::from(*first) * 1_000)), rest),
        None => (None, data),
    };
    if let Ok(window) = parse_renewal_info(body, secs) {
        assert!(window.start < window.end);
        assert!(window.retry_after >= MIN_ARI_RETRY && window.retry_after <= MAX_ARI_RETRY);
    }
    if let Ok(id) = ari_certificate_id(data) {
        let (aki, serial) = id.split_once('.').expect("one dot");
        assert!(!aki.is_empty() && !serial.is_empty() && !serial.contains('.'));
    }
});
