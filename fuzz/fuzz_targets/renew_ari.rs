//! Any bytes as a CA's renewal-information response (RFC 9773) and as a certificate to name
//! for it: typed errors, never a panic; an accepted window is non-empty and its due time
//! lies inside it.
#![no_main]

use bmcert_renew::policy::{ari_cert_id, AriWindow};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(window) = AriWindow::from_json(data) {
        assert!(window.start < window.end);
        let due = window.due_at("renewal/system");
        assert!(due >= window.start && due <= window.end);
    }
    if let Ok(id) = ari_cert_id(data) {
        assert!(id.contains('.'));
    }
});
