//! `Retry-After` values from the CA (seconds or HTTP dates): never a panic, never over a day.
#![no_main]

use std::time::{Duration, SystemTime};

use bmcert_acme::parse_retry_after;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Some(wait) = parse_retry_after(
            text,
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
        ) {
            assert!(wait <= Duration::from_secs(86_400));
        }
    }
});
