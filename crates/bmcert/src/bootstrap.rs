//! The bootstrap certificate: a self-signed system certificate made at installation, so the
//! HTTPS, IMAP and SMTP servers answer from their first start ("the certificates generated
//! during the installation", in the administrator manual).

use bmcert_bundle::{BundleCheck, CheckedBundle, Report};
use bmcert_topology::{Host, Topology};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls_pki_types::UnixTime;
use time::OffsetDateTime;

/// How long a bootstrap certificate is valid: long enough to get a real one in place, short
/// enough not to linger.
pub(crate) const BOOTSTRAP_DAYS: i64 = 365;

/// Why no bootstrap certificate could be made (a bug or an exhausted random source, never
/// the administrator's input).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootstrapError(Failure);

#[derive(Clone, Debug, PartialEq, Eq)]
enum Failure {
    /// rcgen failed (no key material in its messages).
    Generate(rcgen::Error),
    /// The generated bundle did not pass the check: the problem codes.
    Refused(Vec<&'static str>),
}

impl core::fmt::Display for BootstrapError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match &self.0 {
            Failure::Generate(e) => write!(f, "generating the key or certificate failed: {e}"),
            Failure::Refused(codes) => write!(
                f,
                "the generated certificate did not pass the check ({})",
                codes.join(", ")
            ),
        }
    }
}

impl std::error::Error for BootstrapError {}

/// A local authority (its key dropped at once) and a certificate it issues for the system
/// URL's host and additional names, passed through the same check as an upload, with the
/// authority as the CA file. The result goes to the gate like any other bundle.
pub(crate) fn bootstrap_bundle(
    topology: &Topology,
    now: UnixTime,
) -> Result<CheckedBundle, BootstrapError> {
    let start = i64::try_from(now.as_secs())
        .ok()
        .and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok())
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let site = &topology.system;
    let gen = |e| BootstrapError(Failure::Generate(e));

    let mut authority = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(
        DnType::CommonName,
        "bmcert bootstrap authority (self-signed, not trusted by browsers)",
    );
    authority.distinguished_name = dn;
    authority.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    authority.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    authority.not_before = start - time::Duration::hours(1);
    authority.not_after = start + time::Duration::days(BOOTSTRAP_DAYS);
    let authority_key = KeyPair::generate().map_err(gen)?;
    let root = authority.self_signed(&authority_key).map_err(gen)?;
    let issuer = Issuer::new(authority, authority_key);

    let mut leaf = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, site.host.to_string());
    leaf.distinguished_name = dn;
    leaf.subject_alt_names = match &site.host {
        Host::Ip(ip) => vec![SanType::IpAddress(*ip)],
        Host::Dns(_) => Vec::new(),
    };
    for name in site.dns_names() {
        leaf.subject_alt_names
            .push(SanType::DnsName(name.as_str().try_into().map_err(gen)?));
    }
    leaf.is_ca = IsCa::ExplicitNoCa;
    leaf.use_authority_key_identifier_extension = true;
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf.not_before = start - time::Duration::hours(1);
    leaf.not_after = start + time::Duration::days(BOOTSTRAP_DAYS);
    let key = KeyPair::generate().map_err(gen)?;
    let cert = leaf.signed_by(&key, &issuer).map_err(gen)?;

    let key_pem = zeroize::Zeroizing::new(key.serialize_pem());
    let root_pem = root.pem();
    BundleCheck::files(
        cert.pem().as_bytes(),
        key_pem.as_bytes(),
        Some(root_pem.as_bytes()),
    )
    .check_for(site.host.clone(), now)
    .map_err(|report: Box<Report>| {
        BootstrapError(Failure::Refused(
            report.problems.iter().map(|p| p.code.as_str()).collect(),
        ))
    })
}
