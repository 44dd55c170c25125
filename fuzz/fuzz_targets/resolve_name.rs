//! Any bytes as an SNI name: `resolve` and `explain` must not panic, must agree with each
//! other, and must find exactly the names of the topology, compared as lower case without
//! one trailing dot (checked against a plain reference). Known names with their case
//! flipped by the input are tried too, so the case-folding path is reached.
#![no_main]

use std::sync::OnceLock;

use bmcert_resolve::{CertIndex, Reason, Service};
use bmcert_topology::{Target, Topology};
use libfuzzer_sys::fuzz_target;

const SYSTEM: [&str; 2] = ["mail.example.test", "autodiscover.example.test"];
const DOMAIN: [&str; 2] = ["webmail.acme.test", "mail.acme.test"];

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

/// The reason a name should get, by a plain reading of the topology.
fn expected(name: &str) -> Reason {
    let name = name.strip_suffix('.').unwrap_or(name);
    if !name.is_ascii() {
        return Reason::UnknownName;
    }
    let lower = name.to_ascii_lowercase();
    if SYSTEM.contains(&lower.as_str()) {
        Reason::SystemName
    } else if DOMAIN.contains(&lower.as_str()) {
        Reason::FallbackToSystem // the index holds no certificate
    } else {
        Reason::UnknownName
    }
}

fn check(name: &str) {
    for service in Service::ALL {
        let resolved = index().resolve(service, Some(name));
        let why = index().explain(service, Some(name));
        assert_eq!(resolved.is_some(), why.available);
        assert_eq!(why.target, Target::System);
        if service == Service::Https {
            assert_eq!(why.reason, expected(name), "{name:?}");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(name) = std::str::from_utf8(data) {
        check(name);
    }
    if let Some((&pick, flips)) = data.split_first() {
        let known = [SYSTEM, DOMAIN].concat()[usize::from(pick % 4)];
        let mut name: String = known
            .chars()
            .zip(flips.iter().chain(std::iter::repeat(&0)))
            .map(|(c, f)| if f & 1 == 1 { c.to_ascii_uppercase() } else { c })
            .collect();
        if pick & 0x80 != 0 {
            name.push('.');
        }
        check(&name);
    }
});
