//! Name matching over arbitrary presented names, reference hosts and certificates.
#![no_main]

use bmcert_topology::{DomainName, Host};
use bmcert_verify::names::{covers, dns_name_matches};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let text: &str = &text;
    let (presented, reference) = text.split_once('\n').unwrap_or((text, "mail.example.test"));
    if let Ok(reference) = DomainName::new(reference) {
        // A name always matches itself.
        if dns_name_matches(presented, &reference) && !presented.starts_with('*') {
            assert!(presented.eq_ignore_ascii_case(reference.as_str()));
        }
    }
    if let Ok(host) = Host::parse(reference) {
        let _ = covers(data, &host);
    }
});
