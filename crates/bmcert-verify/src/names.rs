//! Host-name matching per RFC 9525 (and RFC 6125 where RFC 9525 is silent).
//!
//! The rules, each one a row of the unit tests:
//!
//! * DNS names compare case-insensitively, as A-labels. The reference name comes in as a
//!   [`DomainName`], which is already lower-case, IDNA-mapped and without a trailing dot.
//! * A wildcard is only the whole left-most label (`*.example.test`) and matches exactly one
//!   label: never the bare parent (`example.test`) nor two labels (`a.b.example.test`). Partial
//!   wildcards (`w*.example.test`), wildcards in other positions and wildcards directly over a
//!   top-level label (`*.test`) match nothing.
//! * A presented name that is not a valid ASCII host name (U-labels, spaces, empty labels,
//!   a trailing dot) matches nothing.
//! * IP addresses match only IP address SANs, byte for byte; `127.1` is not `127.0.0.1`.
//! * The subject common name is consulted only when the certificate has no DNS or IP SAN at
//!   all, and only for DNS references (the [`NameVerdict::cn_only`] warning).

use core::fmt;
use std::net::IpAddr;

use bmcert_topology::{DomainName, Escaped, Host};
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::SubjectAltName;

use crate::light::CertRef;

/// Whether `presented` (a SAN dNSName or a CN used as one) covers `reference`.
///
/// ```
/// use bmcert_topology::DomainName;
/// use bmcert_verify::names::dns_name_matches;
///
/// let host = DomainName::new("Mail.Example.test.").unwrap();
/// assert!(dns_name_matches("*.example.test", &host));
/// assert!(!dns_name_matches("*.example.test", &DomainName::new("example.test").unwrap()));
/// ```
pub fn dns_name_matches(presented: &str, reference: &DomainName) -> bool {
    let reference = reference.as_str();
    if !is_presented_dns_name(presented) {
        return false;
    }
    match presented.strip_prefix("*.") {
        None => presented.eq_ignore_ascii_case(reference),
        Some(parent) => {
            // `*.test` would cover a whole top-level domain: refuse, as browsers do.
            if !parent.contains('.') || parent.contains('*') {
                return false;
            }
            match reference.split_once('.') {
                Some((first, rest)) => !first.is_empty() && rest.eq_ignore_ascii_case(parent),
                None => false,
            }
        }
    }
}

/// Whether a presented IP address SAN (4 or 16 bytes) is `reference`.
pub fn ip_matches(presented: &[u8], reference: IpAddr) -> bool {
    match reference {
        IpAddr::V4(ip) => presented == ip.octets(),
        IpAddr::V6(ip) => presented == ip.octets(),
    }
}

/// A syntactically acceptable presented DNS identifier: ASCII letters, digits, hyphens,
/// labels of 1 to 63 characters, optionally `*` as the whole first label.
fn is_presented_dns_name(name: &str) -> bool {
    if name.is_empty() || name.len() > 253 {
        return false;
    }
    let body = name.strip_prefix("*.").unwrap_or(name);
    body.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    })
}

/// Which identifier of the certificate matched the reference.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MatchedBy {
    /// A dNSName SAN (possibly a wildcard).
    DnsSan(String),
    /// An iPAddress SAN.
    IpSan(IpAddr),
    /// The subject common name, used because the certificate has no DNS or IP SAN.
    CommonName(String),
}

/// What a certificate says about names, and whether it covers one reference host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NameVerdict {
    /// The reference the certificate was checked against.
    pub reference: Host,
    /// The identifier that matched, if any.
    pub matched: Option<MatchedBy>,
    /// The dNSName SANs, in certificate order, as written in the certificate.
    pub dns_names: Vec<String>,
    /// The iPAddress SANs, in certificate order (entries of other lengths are left out).
    pub ip_addresses: Vec<IpAddr>,
    /// The subject common names, as text.
    pub common_names: Vec<String>,
    /// True when the certificate has no DNS or IP SAN, so its common name stands in.
    pub cn_only: bool,
}

impl NameVerdict {
    /// True when the certificate covers the reference host.
    pub fn is_match(&self) -> bool {
        self.matched.is_some()
    }

    /// The names the certificate covers, for messages: SANs, or the CN when there are none.
    pub fn covered(&self) -> Vec<String> {
        if self.cn_only {
            return self.common_names.clone();
        }
        let mut out = self.dns_names.clone();
        out.extend(self.ip_addresses.iter().map(|ip| ip.to_string()));
        out
    }
}

impl fmt::Display for NameVerdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let covered = self.covered();
        let list = if covered.is_empty() {
            "no host name at all".to_owned()
        } else {
            // Escaped (names come from the certificate) and in short: a certificate may
            // carry thousands of names.
            crate::in_short(
                covered.iter().map(|n| Escaped(n).to_string()),
                covered.len(),
            )
        };
        match &self.matched {
            Some(_) => write!(
                f,
                "{} is covered (the certificate covers {list})",
                self.reference
            ),
            None => write!(
                f,
                "{} is not covered; the certificate covers {list}",
                self.reference
            ),
        }
    }
}

/// Why [`covers`] could not read a certificate.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NamesError {
    /// The bytes are not a DER X.509 certificate.
    #[error("the certificate is not valid DER X.509 ({0}); re-export it as PEM or DER")]
    Malformed(String),
    /// The subjectAltName extension cannot be decoded.
    #[error("the certificate's subjectAltName extension is malformed ({0}); the certificate must be reissued")]
    BadSan(String),
}

/// Checks whether the certificate `cert_der` covers `reference` and lists its names.
pub fn covers(cert_der: &[u8], reference: &Host) -> Result<NameVerdict, NamesError> {
    let cert = CertRef::parse(cert_der).map_err(|e| NamesError::Malformed(e.to_string()))?;
    covers_parsed(&cert, reference)
}

pub(crate) fn covers_parsed(
    cert: &CertRef<'_>,
    reference: &Host,
) -> Result<NameVerdict, NamesError> {
    let mut dns_names = Vec::new();
    let mut ip_addresses = Vec::new();
    let mut ip_raw: Vec<Vec<u8>> = Vec::new();
    let san = cert
        .get::<SubjectAltName>()
        .transpose()
        .map_err(|e| NamesError::BadSan(e.to_string()))?;
    if let Some((_, SubjectAltName(names))) = san {
        for name in names {
            match name {
                GeneralName::DnsName(s) => dns_names.push(s.to_string()),
                GeneralName::IpAddress(o) => {
                    let b = o.as_bytes();
                    if let Ok(a) = <[u8; 4]>::try_from(b) {
                        ip_addresses.push(IpAddr::from(a));
                    } else if let Ok(a) = <[u8; 16]>::try_from(b) {
                        ip_addresses.push(IpAddr::from(a));
                    }
                    ip_raw.push(b.to_vec());
                }
                _ => {}
            }
        }
    }
    let common_names = cert.common_names();
    let cn_only = dns_names.is_empty() && ip_raw.is_empty();
    let matched = match reference {
        Host::Dns(name) => {
            if cn_only {
                // Several common names are ambiguous: which one did the CA vet? Use none.
                match common_names.as_slice() {
                    [cn] if dns_name_matches(cn, name) => Some(MatchedBy::CommonName(cn.clone())),
                    _ => None,
                }
            } else {
                dns_names
                    .iter()
                    .find(|p| dns_name_matches(p, name))
                    .map(|p| MatchedBy::DnsSan(p.clone()))
            }
        }
        Host::Ip(ip) => ip_raw
            .iter()
            .any(|p| ip_matches(p, *ip))
            .then_some(MatchedBy::IpSan(*ip)),
    };
    Ok(NameVerdict {
        reference: reference.clone(),
        matched,
        dns_names,
        ip_addresses,
        common_names,
        cn_only,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dns(presented: &str, reference: &str) -> bool {
        dns_name_matches(presented, &DomainName::new(reference).unwrap())
    }

    /// (presented, reference, expected): one row per rule of RFC 9525 section 6.
    const ROWS: &[(&str, &str, bool)] = &[
        // exact, case-insensitive
        ("mail.example.test", "mail.example.test", true),
        ("MAIL.Example.TEST", "mail.example.test", true),
        ("mail.example.test", "MAIL.EXAMPLE.TEST", true),
        ("mail.example.test", "webmail.example.test", false),
        ("mail.example.test", "example.test", false),
        // trailing dot ignored on the reference, refused on the presented name
        ("mail.example.test", "mail.example.test.", true),
        ("mail.example.test.", "mail.example.test", false),
        // wildcard: whole left-most label, exactly one label
        ("*.example.test", "mail.example.test", true),
        ("*.EXAMPLE.test", "Mail.example.test", true),
        ("*.example.test", "example.test", false),
        ("*.example.test", "a.mail.example.test", false),
        ("*.example.test", "mail.other.test", false),
        ("w*.example.test", "www.example.test", false),
        ("*w.example.test", "www.example.test", false),
        ("mail.*.test", "mail.example.test", false),
        ("*.*.test", "a.example.test", false),
        ("*", "test", false),
        ("*.test", "example.test", false),
        ("**.example.test", "a.example.test", false),
        // IDNA: compared as A-labels; U-labels in the certificate are invalid
        ("xn--bcher-kva.example.test", "bücher.example.test", true),
        ("XN--BCHER-KVA.example.test", "bücher.example.test", true),
        ("*.example.test", "bücher.example.test", true),
        ("bücher.example.test", "bücher.example.test", false),
        ("xn--bcher-kva.example.test", "bucher.example.test", false),
        // malformed presented names
        ("", "example.test", false),
        ("mail..example.test", "mail.example.test", false),
        ("mail example.test", "mail.example.test", false),
        ("-mail.example.test", "mail.example.test", false),
        // `127.1` is not a domain reference for 127.0.0.1; a presented `127.0.0.1` dNSName
        // never matches a DNS reference that happens to look similar
        ("127.0.0.1", "127.0.0.1.example.test", false),
    ];

    #[test]
    fn matching_rules_table() {
        for (presented, reference, expected) in ROWS {
            assert_eq!(
                dns(presented, reference),
                *expected,
                "{presented} vs {reference}"
            );
        }
    }

    /// One identifier a generated certificate presents, for [`IP_ROWS`].
    #[derive(Clone, Copy, Debug)]
    enum Presented {
        /// A dNSName SAN, written as is (even when it looks like an address).
        Dns(&'static str),
        /// An iPAddress SAN, given in any textual form of the address.
        Ip(&'static str),
        /// No SAN at all; this subject common name only.
        Cn(&'static str),
    }

    /// (presented identifier, reference as `bmcert check --url` takes it, expected): the IP
    /// forms of RFC 9525 section 6.2 and RFC 6125 section 6.2.1. An IP reference matches an
    /// iPAddress SAN only, compared as bytes whatever the textual form; never a dNSName or a
    /// CN that spells the same address.
    const IP_ROWS: &[(Presented, &str, bool)] = &[
        // IPv4: only an IP SAN matches; a DNS SAN or CN spelling the address never does
        (Presented::Ip("127.0.0.1"), "127.0.0.1", true),
        (
            Presented::Ip("127.0.0.1"),
            "https://127.0.0.1:8443/webmail/",
            true,
        ),
        (Presented::Ip("127.0.0.1"), "127.0.0.2", false),
        (Presented::Dns("127.0.0.1"), "127.0.0.1", false),
        (Presented::Dns("127.0.0.1"), "https://127.0.0.1/", false),
        (Presented::Dns("127.1"), "127.0.0.1", false),
        (Presented::Dns("*.0.0.1"), "127.0.0.1", false),
        (Presented::Cn("127.0.0.1"), "127.0.0.1", false),
        // IPv4 and its IPv4-mapped IPv6 form are different references
        (Presented::Ip("::ffff:127.0.0.1"), "127.0.0.1", false),
        (Presented::Ip("127.0.0.1"), "::ffff:127.0.0.1", false),
        // IPv6: `::1`, `0:0::1` and the full form are one reference, matching an IP SAN ::1
        (Presented::Ip("::1"), "::1", true),
        (Presented::Ip("::1"), "0:0::1", true),
        (Presented::Ip("::1"), "[0:0::1]", true),
        (Presented::Ip("::1"), "https://[0:0:0:0:0:0:0:1]:443/", true),
        (Presented::Ip("0:0::1"), "::1", true),
        (Presented::Ip("::1"), "::2", false),
        // an IPv6 reference never matches a DNS SAN (nor a CN), whatever it spells
        (Presented::Dns("::1"), "::1", false),
        (Presented::Dns("0:0::1"), "::1", false),
        (Presented::Dns("0:0::1"), "0:0::1", false),
        (Presented::Dns("localhost"), "::1", false),
        (Presented::Dns("*.example.test"), "[::1]", false),
        (Presented::Cn("::1"), "::1", false),
    ];

    fn certificate_presenting(presented: Presented) -> Vec<u8> {
        let mut p = rcgen::CertificateParams::default();
        match presented {
            Presented::Dns(name) => p
                .subject_alt_names
                .push(rcgen::SanType::DnsName(name.try_into().unwrap())),
            Presented::Ip(ip) => p
                .subject_alt_names
                .push(rcgen::SanType::IpAddress(ip.parse().unwrap())),
            Presented::Cn(cn) => p.distinguished_name.push(rcgen::DnType::CommonName, cn),
        }
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        p.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn ip_forms_table() {
        for (presented, reference, expected) in IP_ROWS {
            let der = certificate_presenting(*presented);
            let host = Host::parse(reference).unwrap();
            assert!(
                matches!(host, Host::Ip(_)),
                "{reference} is an IP reference"
            );
            let verdict = covers(&der, &host).unwrap();
            assert_eq!(
                verdict.is_match(),
                *expected,
                "{presented:?} vs {reference}: {verdict}"
            );
            if *expected {
                assert!(matches!(verdict.matched, Some(MatchedBy::IpSan(_))));
            }
        }
    }

    #[test]
    fn ip_forms() {
        let v6 = Host::parse("0:0::1").unwrap();
        let Host::Ip(v6) = v6 else {
            panic!("not an IP")
        };
        assert!(ip_matches(&std::net::Ipv6Addr::LOCALHOST.octets(), v6));
        let Host::Ip(v4) = Host::parse("127.0.0.1").unwrap() else {
            panic!("not an IP")
        };
        assert!(ip_matches(&[127, 0, 0, 1], v4));
        assert!(!ip_matches(&[127, 0, 0, 2], v4));
        // an IPv4-mapped IPv6 SAN is not the IPv4 address
        let mapped = std::net::Ipv4Addr::LOCALHOST.to_ipv6_mapped().octets();
        assert!(!ip_matches(&mapped, v4));
        // `127.1` is not an IP reference at all, and as text it is no domain name either
        assert!(Host::parse("127.1").is_err());
    }
}
