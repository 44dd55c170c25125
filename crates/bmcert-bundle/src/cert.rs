//! Certificates: reading them from certificate and CA files, and summarizing them.

use core::fmt;
use core::time::Duration;

use bmcert_topology::Escaped;
use der::asn1::ObjectIdentifier;
use der::{Decode, Reader as _};
use rustls_pki_types::CertificateDer;
use serde::Serialize;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::SubjectAltName;
use x509_cert::spki::SubjectPublicKeyInfoRef;
use x509_cert::Certificate;

use crate::text::{self, Contents, TextError};

pub(crate) const OID_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
pub(crate) const OID_RSA_PSS: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.10");
pub(crate) const OID_EC: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
pub(crate) const OID_P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
pub(crate) const OID_P384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
pub(crate) const OID_P521: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.35");
pub(crate) const OID_ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");

/// Why a certificate or CA file holds no usable certificate.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CertError {
    /// Not PEM, not DER, empty, or a damaged PEM block.
    #[error("{0}")]
    Text(#[from] TextError),
    /// PEM blocks, but none is a certificate.
    #[error("the file holds no CERTIFICATE block (found: {found})")]
    NoCertificate {
        /// The labels found, comma separated: each once, escaped, the first five.
        found: String,
    },
    /// The file holds a private key where a certificate was expected.
    #[error("the file holds a private key, not a certificate; check that the certificate and key files were not swapped")]
    PrivateKeyInstead,
    /// A certificate block whose contents are not a valid X.509 certificate.
    #[error("certificate number {index} (counting from 1{}) is not a valid X.509 certificate: {reason}", line.map(|l| format!(", its BEGIN line is line {l}")).unwrap_or_default())]
    BadCertificate {
        /// 1-based position in the file.
        index: usize,
        /// The 1-based line of its BEGIN line, for PEM.
        line: Option<usize>,
        /// The decoder's explanation.
        reason: String,
    },
}

/// Reads every certificate of a certificate or CA file: PEM with one or more `CERTIFICATE`
/// blocks (other blocks and text ignored), or a single DER certificate.
///
/// Each certificate is checked to be well-formed X.509 (RFC 5280 profile, as `x509-cert`
/// decodes it), so later steps can summarize it.
///
/// Inputs over [`limits::CERTIFICATE_FILE`](crate::limits::CERTIFICATE_FILE) bytes are
/// refused with [`TextError::TooLarge`] before any decoding.
pub fn parse_certificates(input: &[u8]) -> Result<Vec<CertificateDer<'static>>, CertError> {
    parse_certificates_up_to(input, crate::limits::CERTIFICATE_FILE, "a certificate file")
}

/// [`parse_certificates`] with the limit of one file kind.
pub(crate) fn parse_certificates_up_to(
    input: &[u8],
    limit: usize,
    what: &'static str,
) -> Result<Vec<CertificateDer<'static>>, CertError> {
    let ders: Vec<(Vec<u8>, Option<usize>)> = match text::read(input, limit, what)? {
        Contents::Der(der) => {
            if Certificate::from_der(&der).is_err() && crate::key::looks_like_key_der(&der) {
                return Err(CertError::PrivateKeyInstead);
            }
            vec![(der.to_vec(), None)]
        }
        Contents::Pem(blocks) => {
            let certs: Vec<(Vec<u8>, Option<usize>)> = blocks
                .iter()
                .filter(|b| b.label == "CERTIFICATE" || b.label == "X509 CERTIFICATE")
                .map(|b| (b.der.to_vec(), Some(b.line)))
                .collect();
            if certs.is_empty() {
                if blocks.iter().any(|b| b.label.ends_with("PRIVATE KEY")) {
                    return Err(CertError::PrivateKeyInstead);
                }
                let found = text::labels_in_short(&blocks);
                return Err(CertError::NoCertificate { found });
            }
            certs
        }
    };
    ders.into_iter()
        .enumerate()
        .map(|(i, (der, line))| match Certificate::from_der(&der) {
            Ok(_) => Ok(CertificateDer::from(der)),
            Err(e) => Err(CertError::BadCertificate {
                index: i + 1,
                line,
                reason: e.to_string(),
            }),
        })
        .collect()
}

/// The kind of a public or private key.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyAlgorithm {
    /// RSA (PKCS#1 v1.5 or PSS).
    Rsa,
    /// ECDSA on NIST P-256.
    EcdsaP256,
    /// ECDSA on NIST P-384.
    EcdsaP384,
    /// ECDSA on NIST P-521.
    EcdsaP521,
    /// Ed25519.
    Ed25519,
    /// Anything else (an unknown curve or algorithm).
    Other,
}

impl KeyAlgorithm {
    /// A short name: `RSA`, `ECDSA P-256`, `ECDSA P-384`, `ECDSA P-521`, `Ed25519`, `other`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rsa => "RSA",
            Self::EcdsaP256 => "ECDSA P-256",
            Self::EcdsaP384 => "ECDSA P-384",
            Self::EcdsaP521 => "ECDSA P-521",
            Self::Ed25519 => "Ed25519",
            Self::Other => "other",
        }
    }

    pub(crate) fn from_oids(alg: ObjectIdentifier, curve: Option<ObjectIdentifier>) -> Self {
        match alg {
            OID_RSA | OID_RSA_PSS => Self::Rsa,
            OID_ED25519 => Self::Ed25519,
            OID_EC => Self::from_curve(curve),
            _ => Self::Other,
        }
    }

    pub(crate) fn from_curve(curve: Option<ObjectIdentifier>) -> Self {
        match curve {
            Some(OID_P256) => Self::EcdsaP256,
            Some(OID_P384) => Self::EcdsaP384,
            Some(OID_P521) => Self::EcdsaP521,
            _ => Self::Other,
        }
    }

    /// The key size in bits for fixed-size algorithms (RSA sizes vary: `None`).
    pub(crate) fn fixed_bits(self) -> Option<u32> {
        match self {
            Self::EcdsaP256 | Self::Ed25519 => Some(256),
            Self::EcdsaP384 => Some(384),
            Self::EcdsaP521 => Some(521),
            Self::Rsa | Self::Other => None,
        }
    }
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for KeyAlgorithm {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// The size in bits of a big-endian unsigned integer (leading zero bytes ignored).
pub(crate) fn bit_len(be: &[u8]) -> u32 {
    let be = match be.iter().position(|&b| b != 0) {
        Some(i) => &be[i..],
        None => return 0,
    };
    let lead = be.first().map_or(0, |b| b.leading_zeros());
    u32::try_from(be.len()).unwrap_or(u32::MAX / 8) * 8 - lead
}

/// The modulus size of a DER `RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }`.
pub(crate) fn rsa_public_modulus_bits(der: &[u8]) -> Option<u32> {
    let mut reader = der::SliceReader::new(der).ok()?;
    let bits = reader
        .sequence(|r| {
            let n = der::asn1::UintRef::decode(r)?;
            let _e = der::asn1::UintRef::decode(r)?;
            Ok::<_, der::Error>(bit_len(n.as_bytes()))
        })
        .ok()?;
    Some(bits)
}

/// Algorithm and size of a `SubjectPublicKeyInfo`.
pub(crate) fn spki_key(spki: &SubjectPublicKeyInfoRef<'_>) -> (KeyAlgorithm, Option<u32>) {
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.decode_as::<ObjectIdentifier>().ok());
    let alg = KeyAlgorithm::from_oids(spki.algorithm.oid, curve);
    let bits = match alg {
        KeyAlgorithm::Rsa => spki
            .subject_public_key
            .as_bytes()
            .and_then(rsa_public_modulus_bits),
        other => other.fixed_bits(),
    };
    (alg, bits)
}

/// How many names of a certificate the text report lists before it counts the rest.
const NAMES_SHOWN: usize = 20;

/// What an administrator wants to know about one certificate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CertSummary {
    /// The subject distinguished name, RFC 4514 form.
    pub subject: String,
    /// The issuer distinguished name, RFC 4514 form.
    pub issuer: String,
    /// Subject alternative names: `DNS:name`, `IP:address`, `email:...`, `URI:...`.
    pub sans: Vec<String>,
    /// Start of validity, RFC 3339.
    pub not_before: String,
    /// End of validity, RFC 3339.
    pub not_after: String,
    /// The public key algorithm.
    pub key_algorithm: KeyAlgorithm,
    /// The public key size in bits, when known.
    pub key_bits: Option<u32>,
    /// SHA-256 of the DER encoding, upper-case hex pairs separated by colons (openssl style).
    pub sha256_fingerprint: String,
    /// Whether subject and issuer are the same name.
    pub self_issued: bool,
    /// Start of validity, seconds since the Unix epoch.
    #[serde(skip)]
    pub not_before_unix: i64,
    /// End of validity, seconds since the Unix epoch.
    #[serde(skip)]
    pub not_after_unix: i64,
}

fn rfc3339(unix: i64) -> String {
    OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("@{unix}"))
}

fn unix(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

/// The colon-separated upper-case SHA-256 fingerprint of DER bytes.
pub fn sha256_fingerprint(der: &[u8]) -> String {
    let digest = Sha256::digest(der);
    let hex = hex::encode_upper(digest);
    let mut out = String::with_capacity(hex.len() * 3 / 2);
    for (i, pair) in hex.as_bytes().chunks(2).enumerate() {
        if i > 0 {
            out.push(':');
        }
        out.extend(pair.iter().map(|&b| char::from(b)));
    }
    out
}

impl CertSummary {
    /// Summarizes a DER certificate; `None` when it does not decode (which
    /// [`parse_certificates`] has already ruled out for its output).
    pub fn from_der(der: &[u8]) -> Option<Self> {
        let cert = Certificate::from_der(der).ok()?;
        let tbs = cert.tbs_certificate();
        let mut sans = Vec::new();
        if let Ok(Some((_, san))) = tbs.get_extension::<SubjectAltName>() {
            for name in san.0 {
                sans.push(match name {
                    GeneralName::DnsName(n) => format!("DNS:{}", n.as_str()),
                    GeneralName::IpAddress(ip) => match ip.as_bytes().len() {
                        4 => {
                            let b = ip.as_bytes();
                            format!("IP:{}", std::net::Ipv4Addr::new(b[0], b[1], b[2], b[3]))
                        }
                        16 => {
                            let mut a = [0u8; 16];
                            a.copy_from_slice(ip.as_bytes());
                            format!("IP:{}", std::net::Ipv6Addr::from(a))
                        }
                        _ => format!("IP:{}", hex::encode(ip.as_bytes())),
                    },
                    GeneralName::Rfc822Name(n) => format!("email:{}", n.as_str()),
                    GeneralName::UniformResourceIdentifier(n) => format!("URI:{}", n.as_str()),
                    GeneralName::DirectoryName(n) => format!("DirName:{n}"),
                    _ => "other".to_owned(),
                });
            }
        }
        let spki_der = der::Encode::to_der(tbs.subject_public_key_info()).ok()?;
        let spki = SubjectPublicKeyInfoRef::from_der(&spki_der).ok()?;
        let (key_algorithm, key_bits) = spki_key(&spki);
        let not_before_unix = unix(tbs.validity().not_before.to_unix_duration());
        let not_after_unix = unix(tbs.validity().not_after.to_unix_duration());
        Some(Self {
            subject: tbs.subject().to_string(),
            issuer: tbs.issuer().to_string(),
            sans,
            not_before: rfc3339(not_before_unix),
            not_after: rfc3339(not_after_unix),
            key_algorithm,
            key_bits,
            sha256_fingerprint: sha256_fingerprint(der),
            self_issued: tbs.subject() == tbs.issuer(),
            not_before_unix,
            not_after_unix,
        })
    }

    /// The DNS names and IP addresses the certificate covers, as installs record them
    /// (`bmcert list`'s names): its `DNS:` and `IP:` subject alternative names without the
    /// prefix, in certificate order.
    pub fn names(&self) -> Vec<String> {
        self.sans
            .iter()
            .filter_map(|san| {
                san.strip_prefix("DNS:")
                    .or_else(|| san.strip_prefix("IP:"))
                    .map(str::to_owned)
            })
            .collect()
    }

    /// A short label for messages: the subject, or the fingerprint when the subject is empty.
    /// Control characters of the subject are shown as escapes ([`Escaped`]).
    pub fn label(&self) -> String {
        if self.subject.is_empty() {
            self.sha256_fingerprint.clone()
        } else {
            Escaped(&self.subject).to_string()
        }
    }

    /// The text report's description. Names and subjects come from the certificate: they
    /// are escaped, and a long list of names is shown in short.
    pub(crate) fn fmt_indented(&self, f: &mut fmt::Formatter<'_>, indent: &str) -> fmt::Result {
        writeln!(f, "{indent}subject:     {}", Escaped(&self.subject))?;
        writeln!(f, "{indent}issuer:      {}", Escaped(&self.issuer))?;
        if !self.sans.is_empty() {
            let shown: Vec<String> = self
                .sans
                .iter()
                .take(NAMES_SHOWN)
                .map(|n| Escaped(n).to_string())
                .collect();
            write!(f, "{indent}names:       {}", shown.join(", "))?;
            if self.sans.len() > NAMES_SHOWN {
                write!(f, " and {} more", self.sans.len() - NAMES_SHOWN)?;
            }
            writeln!(f)?;
        }
        writeln!(
            f,
            "{indent}valid:       {} to {}",
            self.not_before, self.not_after
        )?;
        match self.key_bits {
            Some(bits) => writeln!(f, "{indent}key:         {} {bits} bits", self.key_algorithm)?,
            None => writeln!(f, "{indent}key:         {}", self.key_algorithm)?,
        }
        writeln!(f, "{indent}sha256:      {}", self.sha256_fingerprint)
    }
}
