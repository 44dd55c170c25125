//! The checks an issued chain passes before it is installed. Sans-I/O: bytes and a time in.
//!
//! This is the ACME flow's own gate (chain to a trusted root, every ordered name covered, key
//! matching the leaf, currently valid); the installing store runs the full bundle report on
//! top of it.

use std::sync::Arc;

use bmcert_topology::DomainName;
use der::Decode;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};

/// Checks an issued chain (PEM, leaf first) against the ordered `names`, the locally generated
/// key (PKCS#8 DER) and the trust `anchors`, at time `now`. Returns the leaf's `notAfter`
/// (seconds since the Unix epoch), or what is wrong.
pub fn check_issued(
    chain_pem: &str,
    key_pkcs8_der: &[u8],
    names: &[DomainName],
    anchors: &[CertificateDer<'_>],
    now: UnixTime,
) -> Result<i64, String> {
    let blocks = pem::parse_many(chain_pem).map_err(|e| format!("the chain is not PEM: {e}"))?;
    let chain: Vec<CertificateDer<'static>> = blocks
        .into_iter()
        .filter(|b| b.tag() == "CERTIFICATE")
        .map(|b| CertificateDer::from(b.into_contents()))
        .collect();
    let Some(leaf) = chain.first() else {
        return Err("the CA sent no certificate".into());
    };
    let ee = webpki::EndEntityCert::try_from(leaf)
        .map_err(|e| format!("the leaf certificate does not parse: {e}"))?;
    let trust: Vec<_> = anchors
        .iter()
        .map(|a| {
            webpki::anchor_from_trusted_cert(a)
                .map(|t| t.to_owned())
                .map_err(|e| format!("a trusted root does not parse: {e}"))
        })
        .collect::<Result<_, _>>()?;
    if trust.is_empty() {
        return Err("no trusted root to check the chain against".into());
    }
    let algs = rustls::crypto::aws_lc_rs::default_provider().signature_verification_algorithms;
    ee.verify_for_usage(
        algs.all,
        &trust,
        &chain[1..],
        now,
        webpki::KeyUsage::server_auth(),
        None,
        None,
    )
    .map_err(|e| format!("the chain does not lead to a trusted root: {e}"))?;
    for name in names {
        let server_name = ServerName::try_from(name.as_str())
            .map_err(|e| format!("`{name}` is not a server name: {e}"))?;
        ee.verify_is_valid_for_subject_name(&server_name)
            .map_err(|_| format!("the certificate does not cover `{name}`"))?;
    }
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_pkcs8_der.to_vec()));
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    rustls::sign::CertifiedKey::from_der(chain.clone(), key, &provider)
        .map_err(|e| format!("the certificate does not match the generated key: {e}"))?;
    let cert = x509_cert::Certificate::from_der(leaf)
        .map_err(|e| format!("the leaf certificate does not parse: {e}"))?;
    let not_after = cert
        .tbs_certificate()
        .validity()
        .not_after
        .to_unix_duration()
        .as_secs();
    i64::try_from(not_after).map_err(|_| "notAfter out of range".to_owned())
}
