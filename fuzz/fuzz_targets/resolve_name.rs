//! Any bytes as an SNI name: `resolve` and `explain` must not panic and must agree.
#![no_main]

use std::sync::OnceLock;

use bmcert_resolve::{CertIndex, Service};
use bmcert_topology::Topology;
use libfuzzer_sys::fuzz_target;

fn index() -> &'static CertIndex {
    static INDEX: OnceLock<CertIndex> = OnceLock::new();
    INDEX.get_or_init(|| {
        let topology = Topology::from_toml_str(
            "[system]\nurl = 'https://mail.example.test'\nnames = ['autodiscover.example.test']\n\
             [[domain]]\nname = 'acme.test'\nurl = 'https://webmail.acme.test'\nnames = ['mail.acme.test']\n",
        )
        .expect("valid topology");
        CertIndex::new(&topology)
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok(name) = std::str::from_utf8(data) {
        for service in Service::ALL {
            let resolved = index().resolve(service, Some(name));
            let why = index().explain(service, Some(name));
            assert_eq!(resolved.is_some(), why.available);
        }
    }
});
