//! Any text as a store record key: must not panic, and an accepted key can never name a
//! path outside the store (no empty, `.` or `..` segment, no leading dot).
#![no_main]

use bmcert_store::RecordKey;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(key) = RecordKey::new(text) {
        assert!(!key
            .as_str()
            .split('/')
            .any(|segment| segment.is_empty() || segment.starts_with('.')));
        assert!(key.is_under(""));
    }
});
