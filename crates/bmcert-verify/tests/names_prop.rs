//! Properties of host-name matching.

// Test code: a failed fixture step should stop the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use bmcert_topology::DomainName;
use bmcert_verify::names::{covers, dns_name_matches};
use proptest::prelude::*;

fn label() -> impl Strategy<Value = String> {
    // No `--`: `xn--` prefixes must be valid Punycode, which random text is not.
    "[a-z0-9]{1,5}(-[a-z0-9]{1,4})?"
}

fn domain() -> impl Strategy<Value = String> {
    // At least two labels, the last one alphabetic (a numeric TLD looks like an address).
    (prop::collection::vec(label(), 1..4), "[a-z]{2,6}").prop_map(|(mut l, tld)| {
        l.push(tld);
        l.join(".")
    })
}

proptest! {
    #[test]
    fn matching_never_panics(presented in "\\PC{0,40}", reference in domain()) {
        let reference = DomainName::new(&reference).unwrap();
        let _ = dns_name_matches(&presented, &reference);
    }

    #[test]
    fn a_name_matches_itself_in_any_case(name in domain(), upper in any::<bool>()) {
        let reference = DomainName::new(&name).unwrap();
        let presented = if upper { name.to_ascii_uppercase() } else { name.clone() };
        prop_assert!(dns_name_matches(&presented, &reference));
        let dotted = DomainName::new(&format!("{name}.")).unwrap();
        prop_assert!(dns_name_matches(&name, &dotted));
    }

    #[test]
    fn a_wildcard_matches_exactly_one_label(parent in domain(), a in label(), b in label()) {
        let wildcard = format!("*.{parent}");
        let one = DomainName::new(&format!("{a}.{parent}")).unwrap();
        let two = DomainName::new(&format!("{a}.{b}.{parent}")).unwrap();
        prop_assert!(dns_name_matches(&wildcard, &one));
        prop_assert!(!dns_name_matches(&wildcard, &two));
        prop_assert!(!dns_name_matches(&wildcard, &DomainName::new(&parent).unwrap()));
    }

    #[test]
    fn an_ip_reference_never_matches_a_dns_san(ip in any::<std::net::IpAddr>(), other in domain()) {
        // dNSName SANs spelling the address (short, bracketed and, for IPv6, fully written
        // out) next to an ordinary name: an IP reference must match none of them.
        let mut names = vec![ip.to_string(), format!("[{ip}]"), other];
        if let std::net::IpAddr::V6(v6) = ip {
            let full: Vec<String> = v6.segments().iter().map(|s| format!("{s:x}")).collect();
            names.push(full.join(":"));
        }
        let mut p = rcgen::CertificateParams::default();
        for n in &names {
            p.subject_alt_names.push(rcgen::SanType::DnsName(n.as_str().try_into().unwrap()));
        }
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let der = p.self_signed(&key).unwrap().der().to_vec();
        let verdict = covers(&der, &bmcert_topology::Host::Ip(ip)).unwrap();
        prop_assert!(!verdict.is_match(), "{verdict}");
        prop_assert_eq!(verdict.dns_names, names);
    }

    #[test]
    fn covers_never_panics_on_garbage(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let host = bmcert_topology::Host::parse("mail.example.test").unwrap();
        let _ = covers(&bytes, &host);
    }
}
