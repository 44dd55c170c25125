//! Any bytes as a CA's renewal-information response (RFC 9773), parsed by bmcert-acme and
//! placed by the renewal policy: typed errors, never a panic; an accepted window is non-empty
//! and the target's due time lies inside it.
#![no_main]

use bmcert_renew::policy::ari_due_at;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(window) = bmcert_acme::parse_renewal_info(data, None) {
        assert!(window.start < window.end);
        let due = ari_due_at(&window, "renewal/system");
        assert!(due >= window.start && due <= window.end);
    }
});
