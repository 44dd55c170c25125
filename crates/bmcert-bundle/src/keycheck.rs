//! The key check: sign a message with the private key, verify it with the certificate.
//!
//! Comparing public halves alone would miss a corrupted private part; a real signature
//! through the rustls crypto provider (aws-lc-rs) and a real verification through
//! rustls-webpki prove the pair works as a TLS server will use it.

use rustls::crypto::aws_lc_rs::sign::any_supported_type;
use rustls::sign::SigningKey;
use rustls::SignatureScheme;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, SignatureVerificationAlgorithm};
use std::sync::Arc;

use crate::key::PrivateKey;

/// The message signed by the key check.
pub const TEST_MESSAGE: &[u8] = b"bmcert key check: this key belongs to this certificate";

/// The schemes offered to the signing key, most preferred first.
const SCHEMES: &[SignatureScheme] = &[
    SignatureScheme::ED25519,
    SignatureScheme::ECDSA_NISTP256_SHA256,
    SignatureScheme::ECDSA_NISTP384_SHA384,
    SignatureScheme::ECDSA_NISTP521_SHA512,
    SignatureScheme::RSA_PSS_SHA256,
    SignatureScheme::RSA_PKCS1_SHA256,
];

/// The webpki verification algorithm for a TLS signature scheme.
pub(crate) fn verification_algorithm(
    scheme: SignatureScheme,
) -> Option<&'static dyn SignatureVerificationAlgorithm> {
    Some(match scheme {
        SignatureScheme::ED25519 => webpki::aws_lc_rs::ED25519,
        SignatureScheme::ECDSA_NISTP256_SHA256 => webpki::aws_lc_rs::ECDSA_P256_SHA256,
        SignatureScheme::ECDSA_NISTP384_SHA384 => webpki::aws_lc_rs::ECDSA_P384_SHA384,
        SignatureScheme::ECDSA_NISTP521_SHA512 => webpki::aws_lc_rs::ECDSA_P521_SHA512,
        SignatureScheme::RSA_PSS_SHA256 => webpki::aws_lc_rs::RSA_PSS_2048_8192_SHA256_LEGACY_KEY,
        SignatureScheme::RSA_PKCS1_SHA256 => webpki::aws_lc_rs::RSA_PKCS1_2048_8192_SHA256,
        _ => return None,
    })
}

/// Why the key check could not run or failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum KeyCheck {
    /// The signature verified: the key belongs to the certificate.
    Match,
    /// The signature did not verify with the certificate's public key.
    Mismatch,
    /// The crypto provider refused to load the key (unsupported or weak).
    Unloadable(String),
    /// The certificate could not be prepared for verification.
    BadCertificate(String),
}

/// webpki's refusal of a server certificate, in words.
fn certificate_error_words(e: &webpki::Error, cert: &CertificateDer<'_>) -> String {
    match e {
        // The outer SEQUENCE's length must fit in two bytes: 64 KiB at most.
        webpki::Error::TrailingData(_) if cert.len() > 65_535 => {
            let names = crate::cert::CertSummary::from_der(cert)
                .map(|s| format!(" and lists {} names", s.sans.len()))
                .unwrap_or_default();
            format!("it is {} bytes{names}, more than the 65,535 bytes TLS libraries accept; ask for several smaller certificates, each with fewer names", cert.len())
        }
        webpki::Error::UnsupportedCertVersion => {
            "it is not an X.509 version 3 certificate".to_owned()
        }
        other => format!("{other:?}"),
    }
}

/// Loads the key into the provider once.
pub(crate) fn load(key: &PrivateKey) -> Result<Arc<dyn SigningKey>, String> {
    load_der(&key.secret_der())
}

fn load_der(key: &PrivateKeyDer<'_>) -> Result<Arc<dyn SigningKey>, String> {
    any_supported_type(key).map_err(|e| e.to_string())
}

/// Why [`prove_key`] found that a private key does not sign for a certificate.
///
/// None of the messages contains key material.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyProofError {
    /// A signature made with the key does not verify with the certificate's public key:
    /// the key belongs to another certificate, or its bytes are damaged.
    #[error("the private key does not sign for the certificate (a signature made with it does not verify with the certificate's public key)")]
    Mismatch,
    /// The crypto provider cannot load or use the key (damaged, unsupported or weak).
    #[error("the private key cannot be used: {0}")]
    Unloadable(String),
    /// The certificate cannot be read as a server certificate.
    #[error("the certificate cannot be read as a server certificate: {0}")]
    BadCertificate(String),
}

/// The upload's key proof, for keys that are already DER (a stored bundle): signs
/// [`TEST_MESSAGE`] with `key` through the rustls aws-lc-rs provider and verifies the
/// signature with `cert`'s public key through rustls-webpki, exactly as
/// [`BundleCheck`](crate::BundleCheck) does for an upload.
///
/// ```
/// use bmcert_bundle::{prove_key, KeyProofError};
/// use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
///
/// let a = rcgen::generate_simple_self_signed(vec!["a.test".into()]).unwrap();
/// let b = rcgen::generate_simple_self_signed(vec!["b.test".into()]).unwrap();
/// let key_of = |ck: &rcgen::CertifiedKey<rcgen::KeyPair>| {
///     PrivateKeyDer::from(PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()))
/// };
/// let cert_a = CertificateDer::from(a.cert.der().to_vec());
/// assert_eq!(prove_key(&key_of(&a), &cert_a), Ok(()));
/// assert_eq!(prove_key(&key_of(&b), &cert_a), Err(KeyProofError::Mismatch));
/// ```
pub fn prove_key(key: &PrivateKeyDer<'_>, cert: &CertificateDer<'_>) -> Result<(), KeyProofError> {
    let signing_key = load_der(key).map_err(KeyProofError::Unloadable)?;
    match check(signing_key.as_ref(), cert) {
        KeyCheck::Match => Ok(()),
        KeyCheck::Mismatch => Err(KeyProofError::Mismatch),
        KeyCheck::Unloadable(why) => Err(KeyProofError::Unloadable(why)),
        KeyCheck::BadCertificate(why) => Err(KeyProofError::BadCertificate(why)),
    }
}

/// Signs [`TEST_MESSAGE`] with `signing_key` and verifies it against `cert`.
pub(crate) fn check(signing_key: &dyn SigningKey, cert: &CertificateDer<'_>) -> KeyCheck {
    let ee = match webpki::EndEntityCert::try_from(cert) {
        Ok(ee) => ee,
        Err(e) => return KeyCheck::BadCertificate(certificate_error_words(&e, cert)),
    };
    let Some(signer) = signing_key.choose_scheme(SCHEMES) else {
        return KeyCheck::Unloadable("the key supports none of the TLS signature schemes".into());
    };
    let Some(alg) = verification_algorithm(signer.scheme()) else {
        return KeyCheck::Unloadable(format!("unexpected scheme {:?}", signer.scheme()));
    };
    let Ok(signature) = signer.sign(TEST_MESSAGE) else {
        return KeyCheck::Unloadable("the crypto provider failed to sign".into());
    };
    match ee.verify_signature(alg, TEST_MESSAGE, &signature) {
        Ok(()) => KeyCheck::Match,
        Err(_) => KeyCheck::Mismatch,
    }
}
