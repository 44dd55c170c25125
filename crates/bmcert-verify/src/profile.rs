//! The checks rustls-webpki leaves out, run on every path webpki accepts.
//!
//! webpki checks signatures, validity of the leaf and intermediates, basic constraints, path
//! length, name constraints and EKU. It deliberately does not look inside trust anchors and
//! does not enforce the RFC 5280 / CA/Browser Forum certificate *profile*. A bundle that
//! breaks the profile is usually a home-made CA or a mis-exported chain, and some TLS
//! clients (browsers, OpenSSL with `-x509_strict`, Go) will refuse it; so the report says so.
//!
//! Each check is marked [`Level::Rfc5280`] (a MUST of RFC 5280 that clients enforce: a problem)
//! or [`Level::Pedantic`] (a CA/Browser Forum profile rule most clients do not enforce: a
//! warning, or a problem under [`crate::Strictness::Pedantic`]).

use bmcert_topology::Escaped;
use der::asn1::UintRef;
use der::oid::ObjectIdentifier as Oid;
use der::Decode;
use x509_cert::ext::pkix::constraints::name::GeneralSubtrees;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{
    AuthorityInfoAccessSyntax, AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage,
    KeyUsage, NameConstraints, SubjectAltName, SubjectKeyIdentifier,
};

use crate::light::CertRef as Certificate;

const BC: Oid = Oid::new_unwrap("2.5.29.19");
const KU: Oid = Oid::new_unwrap("2.5.29.15");
const EKU: Oid = Oid::new_unwrap("2.5.29.37");
const SAN: Oid = Oid::new_unwrap("2.5.29.17");
const NC: Oid = Oid::new_unwrap("2.5.29.30");
const PC: Oid = Oid::new_unwrap("2.5.29.36");
const AKI: Oid = Oid::new_unwrap("2.5.29.35");
const SKI: Oid = Oid::new_unwrap("2.5.29.14");
const AIA: Oid = Oid::new_unwrap("1.3.6.1.5.5.7.1.1");
/// Extensions a path validator is expected to understand when critical.
const KNOWN_CRITICAL: &[Oid] = &[
    BC,
    KU,
    EKU,
    SAN,
    NC,
    PC,
    Oid::new_unwrap("2.5.29.32"),
    Oid::new_unwrap("2.5.29.33"),
    Oid::new_unwrap("2.5.29.54"),
    Oid::new_unwrap("2.5.29.18"),
    Oid::new_unwrap("2.5.29.9"),
];
const ANY_EKU: Oid = Oid::new_unwrap("2.5.29.37.0");
const RSA: Oid = Oid::new_unwrap("1.2.840.113549.1.1.1");
const EC: Oid = Oid::new_unwrap("1.2.840.10045.2.1");
const ED25519: Oid = Oid::new_unwrap("1.3.101.112");
const P256: Oid = Oid::new_unwrap("1.2.840.10045.3.1.7");
const P384: Oid = Oid::new_unwrap("1.3.132.0.34");
const P521: Oid = Oid::new_unwrap("1.3.132.0.35");

/// Signature algorithms that no longer protect anything: MD2, MD5 and SHA-1 based.
pub(crate) const WEAK_SIGNATURES: &[(&str, &str)] = &[
    ("1.2.840.113549.1.1.2", "MD2 with RSA"),
    ("1.2.840.113549.1.1.4", "MD5 with RSA"),
    ("1.2.840.113549.1.1.5", "SHA-1 with RSA"),
    ("1.2.840.10045.4.1", "ECDSA with SHA-1"),
    ("1.2.840.10040.4.3", "DSA with SHA-1"),
    ("1.3.14.3.2.29", "SHA-1 with RSA (OIW)"),
];

/// The message of an anchor outside its validity (reported as `ca_expired`).
pub(crate) const ROOT_EXPIRED: &str = "the root certificate is outside its validity period; replace it with the current root of your authority";

/// How serious a profile breach is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Level {
    /// An RFC 5280 MUST that clients enforce.
    Rfc5280,
    /// A CA/Browser Forum rule, enforced only in pedantic mode.
    Pedantic,
    /// Good practice whose absence some test suites treat as fatal and others as valid
    /// (x509-limbo has conflicting cases): always a warning.
    Advice,
}

/// One profile breach of one certificate of the path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Violation {
    /// Index in the path: 0 is the leaf, the last one the root.
    pub(crate) position: usize,
    pub(crate) level: Level,
    pub(crate) message: String,
}

/// Checks the whole path `certs` (leaf first, root last) at `now` (Unix seconds).
pub(crate) fn check_path(certs: &[&Certificate<'_>], now: u64) -> Vec<Violation> {
    let mut out = Vec::new();
    let last = certs.len().saturating_sub(1);
    for (i, cert) in certs.iter().enumerate() {
        let mut push = |level, message: String| {
            out.push(Violation {
                position: i,
                level,
                message,
            })
        };
        check_cert(cert, i == 0, i == last && i != 0, now, &mut push);
    }
    out
}

fn check_cert(
    cert: &Certificate<'_>,
    leaf: bool,
    root: bool,
    now: u64,
    push: &mut dyn FnMut(Level, String),
) {
    use Level::*;
    let tbs = &cert.tbs;
    let exts = cert.extensions();
    let find = |oid: Oid| cert.extension(oid);
    let ca = !leaf;
    let self_issued = cert.is_self_issued();

    // Validity: webpki checks the leaf and intermediates but not the trust anchor.
    if root {
        let nb = tbs.validity.not_before.to_unix_duration().as_secs();
        let na = tbs.validity.not_after.to_unix_duration().as_secs();
        if now < nb || now > na {
            push(Rfc5280, ROOT_EXPIRED.to_owned());
        }
    }

    // Serial number: positive, at most 20 octets (RFC 5280 4.1.2.2). Long-lived roots
    // predate the rule (Starfield's has serial 0), so trust anchors are exempt.
    let serial: &[u8] = if root {
        &[1]
    } else {
        tbs.serial_number.value()
    };
    if serial.len() > 21 || (serial.len() == 21 && serial[0] != 0) {
        push(
            Pedantic,
            "the serial number is longer than 20 octets (RFC 5280 4.1.2.2)".to_owned(),
        );
    }
    if serial.iter().all(|b| *b == 0) {
        push(
            Pedantic,
            "the serial number is zero (RFC 5280 4.1.2.2)".to_owned(),
        );
    }
    if serial.first().is_some_and(|b| b & 0x80 != 0) {
        push(
            Pedantic,
            "the serial number is negative (RFC 5280 4.1.2.2)".to_owned(),
        );
    }

    for e in exts {
        // webpki already refuses unknown critical extensions below the anchor.
        if root && e.critical && !KNOWN_CRITICAL.contains(&e.extn_id) {
            push(
                Rfc5280,
                format!(
                    "the root has an unknown critical extension {} (RFC 5280 4.2)",
                    e.extn_id
                ),
            );
        }
    }

    // Basic constraints: present and critical in every CA certificate (RFC 5280 4.2.1.9).
    let bc = match find(BC) {
        Some(e) => match BasicConstraints::from_der(e.extn_value.as_bytes()) {
            Ok(bc) => Some((e.critical, bc)),
            Err(err) => {
                push(
                    Rfc5280,
                    format!("the basicConstraints extension is malformed ({err})"),
                );
                None
            }
        },
        None => None,
    };
    if ca {
        match &bc {
            None => push(
                Rfc5280,
                "this CA certificate has no basicConstraints extension (RFC 5280 4.2.1.9)".to_owned(),
            ),
            Some((false, _)) => push(
                Rfc5280,
                "this CA certificate's basicConstraints extension is not critical (RFC 5280 4.2.1.9)"
                    .to_owned(),
            ),
            Some((true, bc)) if !bc.ca => push(
                Rfc5280,
                "this certificate is used as a CA but its basicConstraints say cA=FALSE".to_owned(),
            ),
            _ => {}
        }
        if cert.subject_is_empty() {
            push(
                Rfc5280,
                "this CA certificate has an empty subject (RFC 5280 4.1.2.6)".to_owned(),
            );
        }
    }
    let is_ca_cert = bc.as_ref().is_some_and(|(_, bc)| bc.ca);

    // Key usage: keyCertSign iff cA (RFC 5280 4.2.1.3 and 4.2.1.9).
    if let Some(e) = find(KU) {
        match KeyUsage::from_der(e.extn_value.as_bytes()) {
            Ok(ku) => {
                if ca && !ku.key_cert_sign() {
                    push(
                        Rfc5280,
                        "this CA certificate's keyUsage lacks keyCertSign (RFC 5280 4.2.1.3)"
                            .to_owned(),
                    );
                }
                if !is_ca_cert && ku.key_cert_sign() {
                    push(
                        Rfc5280,
                        "keyUsage has keyCertSign but basicConstraints does not say cA=TRUE (RFC 5280 4.2.1.9)"
                            .to_owned(),
                    );
                }
            }
            Err(err) => push(
                Rfc5280,
                format!("the keyUsage extension is malformed ({err})"),
            ),
        }
    }

    // Key identifiers (RFC 5280 4.2.1.1 and 4.2.1.2).
    let ski = find(SKI);
    let ski_value = ski.and_then(|e| SubjectKeyIdentifier::from_der(e.extn_value.as_bytes()).ok());
    if let Some(e) = ski {
        if e.critical {
            push(
                Rfc5280,
                "the subjectKeyIdentifier extension is critical (RFC 5280 4.2.1.2)".to_owned(),
            );
        }
    } else if ca {
        push(
            Pedantic,
            "this CA certificate has no subjectKeyIdentifier (RFC 5280 4.2.1.2)".to_owned(),
        );
    }
    match find(AKI) {
        Some(e) => {
            if e.critical {
                push(
                    Rfc5280,
                    "the authorityKeyIdentifier extension is critical (RFC 5280 4.2.1.1)"
                        .to_owned(),
                );
            }
            match AuthorityKeyIdentifier::from_der(e.extn_value.as_bytes()) {
                Ok(aki) if root && self_issued => {
                    if aki.key_identifier.is_none() {
                        push(Pedantic, "the root's authorityKeyIdentifier has no keyIdentifier (CA/B BR 7.1.2.1.3)".to_owned());
                    }
                    if aki.authority_cert_issuer.is_some()
                        || aki.authority_cert_serial_number.is_some()
                    {
                        push(Pedantic, "the root's authorityKeyIdentifier names an issuer or serial (CA/B BR 7.1.2.1.3)".to_owned());
                    }
                    if let (Some(kid), Some(ski)) = (&aki.key_identifier, &ski_value) {
                        if kid.as_bytes() != ski.0.as_bytes() {
                            push(Pedantic, "the root's authorityKeyIdentifier differs from its subjectKeyIdentifier (CA/B BR 7.1.2.1.3)".to_owned());
                        }
                    }
                }
                Ok(aki) => {
                    if aki.key_identifier.is_none() {
                        push(
                            Pedantic,
                            "the authorityKeyIdentifier has no keyIdentifier (RFC 5280 4.2.1.1)"
                                .to_owned(),
                        );
                    }
                }
                Err(err) => push(
                    Rfc5280,
                    format!("the authorityKeyIdentifier extension is malformed ({err})"),
                ),
            }
        }
        None if !root => push(
            Pedantic,
            "the certificate has no authorityKeyIdentifier (RFC 5280 4.2.1.1)".to_owned(),
        ),
        None => {}
    }

    // Name constraints: only in CA certificates, critical, not empty, well-formed.
    if let Some(e) = find(NC) {
        if leaf {
            push(Rfc5280, "the leaf certificate carries nameConstraints, which only CA certificates may (RFC 5280 4.2.1.10)".to_owned());
        }
        if !e.critical {
            // RFC 5280 says MUST; webpki and the CA/B Forum accept it (limbo conflicts).
            push(
                Advice,
                "the nameConstraints extension is not critical (RFC 5280 4.2.1.10)".to_owned(),
            );
        }
        match NameConstraints::from_der(e.extn_value.as_bytes()) {
            Ok(nc) => {
                let empty = |s: &Option<GeneralSubtrees>| s.as_ref().is_none_or(|v| v.is_empty());
                if empty(&nc.permitted_subtrees) && empty(&nc.excluded_subtrees) {
                    push(Rfc5280, "the nameConstraints extension has neither permitted nor excluded subtrees (RFC 5280 4.2.1.10)".to_owned());
                }
                for sub in nc
                    .permitted_subtrees
                    .iter()
                    .chain(nc.excluded_subtrees.iter())
                    .flatten()
                {
                    if let GeneralName::DnsName(n) = &sub.base {
                        if n.as_str().starts_with('.') {
                            push(Rfc5280, format!("the nameConstraints dNSName `{n}` starts with a period (RFC 5280 4.2.1.10)"));
                        }
                    }
                }
            }
            Err(err) => push(
                Rfc5280,
                format!("the nameConstraints extension is malformed ({err})"),
            ),
        }
    }

    // Policy constraints must be critical (RFC 5280 4.2.1.11).
    if find(PC).is_some_and(|e| !e.critical) {
        push(
            Rfc5280,
            "the policyConstraints extension is not critical (RFC 5280 4.2.1.11)".to_owned(),
        );
    }

    // AIA: one or more access descriptions.
    if let Some(e) = find(AIA) {
        match AuthorityInfoAccessSyntax::from_der(e.extn_value.as_bytes()) {
            Ok(aia) if aia.0.is_empty() => push(
                Rfc5280,
                "the authorityInfoAccess extension is empty (RFC 5280 4.2.2.1)".to_owned(),
            ),
            Ok(_) => {}
            Err(err) => push(
                Rfc5280,
                format!("the authorityInfoAccess extension is malformed ({err})"),
            ),
        }
    }

    // Subject alternative name (RFC 5280 4.2.1.6).
    let subject_empty = cert.subject_is_empty();
    let mut san_dns: Vec<String> = Vec::new();
    let mut san_ips: Vec<String> = Vec::new();
    if let Some(e) = find(SAN) {
        if subject_empty && !e.critical {
            push(
                Rfc5280,
                "the subject is empty but subjectAltName is not critical (RFC 5280 4.2.1.6)"
                    .to_owned(),
            );
        }
        if !subject_empty && e.critical && leaf {
            push(
                Rfc5280,
                "subjectAltName is critical although the subject is not empty (CA/B BR 7.1.2.7.12)"
                    .to_owned(),
            );
        }
        match SubjectAltName::from_der(e.extn_value.as_bytes()) {
            Ok(SubjectAltName(names)) => {
                for n in &names {
                    match n {
                        GeneralName::DnsName(d) => {
                            if leaf && d.as_str().contains('_') {
                                push(Rfc5280, format!("the subjectAltName `{d}` contains an underscore, which host names may not (RFC 5280 4.2.1.6)"));
                            }
                            san_dns.push(d.to_string());
                        }
                        GeneralName::IpAddress(o) => {
                            let b = o.as_bytes();
                            if let Ok(a) = <[u8; 4]>::try_from(b) {
                                san_ips.push(std::net::IpAddr::from(a).to_string());
                            } else if let Ok(a) = <[u8; 16]>::try_from(b) {
                                san_ips.push(std::net::IpAddr::from(a).to_string());
                            }
                        }
                        _ => {}
                    }
                }
            }
            Err(err) => push(
                Rfc5280,
                format!("the subjectAltName extension is malformed ({err})"),
            ),
        }
        // CA/B BR 7.1.4.3: a CN must repeat one SAN entry exactly. x509-limbo has valid cases
        // whose CN is simply absent from the SANs, so only a *distorted copy* of a SAN value
        // (other case, U-labels, a non-canonical IP form) is refused.
        if leaf {
            let cns = cert.common_names();
            for cn in cns {
                if !san_dns.contains(&cn)
                    && !san_ips.contains(&cn)
                    && is_distorted_copy(&cn, &san_dns, &san_ips)
                {
                    push(Pedantic, format!("the common name `{}` is a differently written copy of a subjectAltName entry; it must repeat it byte for byte (CA/B BR 7.1.4.3)", Escaped(&cn)));
                }
            }
        }
    }

    // Extended key usage.
    if let Some(e) = find(EKU) {
        if root {
            push(
                Pedantic,
                "the root certificate carries extKeyUsage (CA/B BR 7.1.2.1.2)".to_owned(),
            );
        }
        if leaf {
            if e.critical {
                push(
                    Pedantic,
                    "the leaf's extKeyUsage is critical (CA/B BR 7.1.2.7.6)".to_owned(),
                );
            }
            if let Ok(eku) = ExtendedKeyUsage::from_der(e.extn_value.as_bytes()) {
                if eku.0.contains(&ANY_EKU) {
                    push(
                        Pedantic,
                        "the leaf's extKeyUsage contains anyExtendedKeyUsage (CA/B BR 7.1.2.7.10)"
                            .to_owned(),
                    );
                }
            }
        }
    } else if leaf {
        push(
            Advice,
            "the leaf has no extKeyUsage; add serverAuth (CA/B BR 7.1.2.7.6)".to_owned(),
        );
    }

    // Public keys (CA/B BR 6.1.5): RSA of at least 2048 bits, a multiple of 8; P-256/384/521.
    let spki = &tbs.subject_public_key_info;
    let level = if leaf { Pedantic } else { Rfc5280 };
    if spki.algorithm.oid == RSA {
        match rsa_modulus_bits(spki.subject_public_key.raw_bytes()) {
            Some(bits) if bits < 2048 => push(
                Pedantic,
                format!("the RSA key has {bits} bits; at least 2048 are required (CA/B BR 6.1.5)"),
            ),
            Some(bits) if bits % 8 != 0 => push(
                level,
                format!("the RSA key size {bits} is not a multiple of 8 (CA/B BR 6.1.5)"),
            ),
            Some(_) => {}
            None => push(Rfc5280, "the RSA public key is malformed".to_owned()),
        }
    } else if spki.algorithm.oid == EC {
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.decode_as::<Oid>().ok());
        if !matches!(curve, Some(c) if c == P256 || c == P384 || c == P521) {
            push(
                Pedantic,
                "the EC key is not on P-256, P-384 or P-521 (CA/B BR 6.1.5)".to_owned(),
            );
        }
    } else if spki.algorithm.oid != ED25519 {
        push(
            Pedantic,
            format!(
                "the public key algorithm {} is not allowed (CA/B BR 6.1.5); use RSA or ECDSA",
                spki.algorithm.oid
            ),
        );
    }
}

/// Whether `cn` names the same thing as a SAN value once normalized (case, IDNA, IP forms).
fn is_distorted_copy(cn: &str, san_dns: &[String], san_ips: &[String]) -> bool {
    // A dNSName is IA5 text, so a CN with U-labels can never be its byte-for-byte copy; and
    // an A-label CN absent from the SANs is what homograph spoofing looks like to users.
    if !cn.is_ascii()
        || cn
            .split('.')
            .any(|l| l.len() > 4 && l[..4].eq_ignore_ascii_case("xn--"))
    {
        return true;
    }
    // UTS 46 mapping (case folding, U-labels to A-labels), without the host-name syntax
    // checks of `DomainName`, so odd but mappable names are still compared.
    if let Ok(ascii) = idna::domain_to_ascii(cn) {
        if san_dns.iter().any(|d| d.eq_ignore_ascii_case(&ascii)) {
            return true;
        }
    }
    match loose_ip(cn) {
        Some(ip) => san_ips.contains(&ip.to_string()),
        None => false,
    }
}

/// Reads an IP address the lenient way resolvers do: IPv6 in any case or compression,
/// IPv4 with hexadecimal (`0x`), octal (leading `0`) or fewer than four parts.
fn loose_ip(s: &str) -> Option<std::net::IpAddr> {
    if s.contains(':') {
        return s.parse::<std::net::Ipv6Addr>().ok().map(Into::into);
    }
    let parts: Vec<&str> = s.split('.').collect();
    if parts.is_empty() || parts.len() > 4 {
        return None;
    }
    let mut nums = Vec::new();
    for p in &parts {
        let n = if let Some(h) = p.strip_prefix("0x").or_else(|| p.strip_prefix("0X")) {
            u32::from_str_radix(h, 16).ok()?
        } else if p.len() > 1 && p.starts_with('0') {
            u32::from_str_radix(&p[1..], 8)
                .or_else(|_| p.parse::<u32>())
                .ok()?
        } else {
            p.parse::<u32>().ok()?
        };
        nums.push(n);
    }
    let (last, head) = nums.split_last()?;
    let mut value: u32 = 0;
    for (i, n) in head.iter().enumerate() {
        if *n > 255 {
            return None;
        }
        value |= n << (24 - 8 * i);
    }
    let room = 32 - 8 * head.len() as u32;
    if room < 32 && *last >= (1u32 << room) {
        return None;
    }
    value |= *last;
    Some(std::net::Ipv4Addr::from(value).into())
}

/// The bit length of the modulus of a PKCS#1 RSAPublicKey.
fn rsa_modulus_bits(key: &[u8]) -> Option<usize> {
    let seq = der::asn1::AnyRef::from_der(key).ok()?;
    let mut r = der::SliceReader::new(seq.value()).ok()?;
    let n = UintRef::decode(&mut r).ok()?;
    let bytes = n.as_bytes();
    let first = *bytes.first()?;
    Some((bytes.len() - 1) * 8 + (8 - first.leading_zeros() as usize))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rsa_bits_are_read_from_the_modulus() {
        // SEQUENCE { INTEGER 0x00 0x80 0x01, INTEGER 3 }: a 16-bit modulus.
        let key = [0x30, 0x08, 0x02, 0x03, 0x00, 0x80, 0x01, 0x02, 0x01, 0x03];
        assert_eq!(rsa_modulus_bits(&key), Some(16));
        assert_eq!(rsa_modulus_bits(&[0x30, 0x00]), None);
    }

    #[test]
    fn loose_ip_forms_are_recognized() {
        let want: std::net::IpAddr = "192.168.1.1".parse().unwrap();
        assert_eq!(loose_ip("0xC0A80101"), Some(want));
        assert_eq!(loose_ip("192.168.001.001"), Some(want));
        assert_eq!(loose_ip("192.168.1.1"), Some(want));
        assert_eq!(loose_ip("127.1"), Some("127.0.0.1".parse().unwrap()));
        assert_eq!(loose_ip("example.com"), None);
        assert_eq!(
            loose_ip("2001:DB8::1"),
            Some("2001:db8::1".parse().unwrap())
        );
    }

    #[test]
    fn distorted_copies_are_caught() {
        let dns = vec!["example.com".to_owned()];
        let ips = vec!["192.168.1.1".to_owned()];
        assert!(is_distorted_copy("Example.COM", &dns, &ips));
        assert!(is_distorted_copy("0xC0A80101", &dns, &ips));
        assert!(!is_distorted_copy("other.example.com", &dns, &ips));
        let idn = vec!["xn--test--wg5h0h.com".to_owned()];
        assert!(is_distorted_copy("test-測試.com", &idn, &ips));
        assert!(is_distorted_copy("xn--nxasmq6b.com", &idn, &ips));
    }
}
