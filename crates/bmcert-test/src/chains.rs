//! Certificate chains for path-building and name-matching tests and benchmarks, where each
//! certificate's fields can be changed before signing (validity, CA flag, EKU, names, keys).
//!
//! ```
//! use bmcert_test::chains::{Alg, Chain3};
//! let chain = Chain3::new(Alg::P256, &["mail.example.test"]);
//! assert_ne!(chain.leaf.der, chain.root.der);
//! ```

// Test helper: a failed key generation or signature is a broken test environment.
#![allow(clippy::expect_used)]

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use time::OffsetDateTime;

/// The key algorithm of a generated certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Alg {
    /// ECDSA P-256 with SHA-256.
    P256,
    /// RSA 2048 with PKCS#1 v1.5 SHA-256.
    Rsa2048,
}

impl Alg {
    /// A fresh key pair.
    pub fn key(self) -> KeyPair {
        match self {
            Self::P256 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("P-256 key"),
            Self::Rsa2048 => {
                KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
                    .expect("RSA key")
            }
        }
    }
}

/// The default validity of generated certificates: 2020-01-01 to 2040-01-01.
pub fn default_validity() -> (OffsetDateTime, OffsetDateTime) {
    (
        rcgen::date_time_ymd(2020, 1, 1),
        rcgen::date_time_ymd(2040, 1, 1),
    )
}

/// A moment inside [`default_validity`]: 2026-06-01, as Unix seconds.
pub const TEST_TIME: u64 = 1_780_272_000;

/// One generated certificate with its key and the parameters it was made from.
pub struct Node {
    /// The DER certificate.
    pub der: Vec<u8>,
    /// The PEM certificate.
    pub pem: String,
    /// Its key pair.
    pub key: KeyPair,
    /// The parameters it was signed from (needed to issue from it).
    pub params: CertificateParams,
}

impl Node {
    /// Signs `params` with this node as the issuer.
    pub fn issue(&self, params: CertificateParams, key: KeyPair) -> Node {
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer).expect("sign");
        Node {
            der: cert.der().to_vec(),
            pem: cert.pem(),
            key,
            params,
        }
    }

    /// A self-signed certificate.
    pub fn self_signed(params: CertificateParams, key: KeyPair) -> Node {
        let cert = params.self_signed(&key).expect("self-sign");
        Node {
            der: cert.der().to_vec(),
            pem: cert.pem(),
            key,
            params,
        }
    }
}

/// Parameters of an authority named `cn`: critical basicConstraints cA=TRUE, keyCertSign and
/// cRLSign, key identifiers, [`default_validity`].
pub fn ca_params(cn: &str) -> CertificateParams {
    let mut p = CertificateParams::default();
    p.distinguished_name.push(DnType::CommonName, cn);
    p.distinguished_name
        .push(DnType::OrganizationName, "bmcert test authority");
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p.use_authority_key_identifier_extension = true;
    (p.not_before, p.not_after) = default_validity();
    p
}

/// Parameters of a TLS server certificate for `names` (DNS names, or IP addresses when they
/// parse as one): serverAuth, digitalSignature, CN = the first name, [`default_validity`].
pub fn leaf_params(names: &[&str]) -> CertificateParams {
    let mut p = CertificateParams::default();
    if let Some(first) = names.first() {
        p.distinguished_name.push(DnType::CommonName, *first);
    }
    p.subject_alt_names = names
        .iter()
        .map(|n| match n.parse() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName((*n).try_into().expect("SAN")),
        })
        .collect();
    p.is_ca = IsCa::ExplicitNoCa;
    p.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    p.use_authority_key_identifier_extension = true;
    (p.not_before, p.not_after) = default_validity();
    p
}

/// root -> intermediate -> leaf, all with the same key algorithm.
pub struct Chain3 {
    /// The self-signed root.
    pub root: Node,
    /// The intermediate authority.
    pub intermediate: Node,
    /// The server certificate.
    pub leaf: Node,
}

impl Chain3 {
    /// A valid chain for `names`.
    pub fn new(alg: Alg, names: &[&str]) -> Self {
        let root = Node::self_signed(ca_params("bmcert Test Root"), alg.key());
        let intermediate = root.issue(ca_params("bmcert Test Intermediate"), alg.key());
        let leaf = intermediate.issue(leaf_params(names), alg.key());
        Self {
            root,
            intermediate,
            leaf,
        }
    }
}

/// `n` hostile look-alikes of `of`: authorities with `of`'s subject (and so `of`'s name as
/// issuer of everything `of` signed), each with its own key and key identifier, signed by
/// `issuer`. A CA file that lists them before the real intermediate makes a naive path
/// builder try each of them for every certificate `of` issued (issue 13).
///
/// ```
/// use bmcert_test::chains::{look_alikes, Alg, Chain3};
/// let chain = Chain3::new(Alg::P256, &["mail.example.test"]);
/// let fakes = look_alikes(&chain.intermediate, &chain.root, 3);
/// assert_eq!(fakes.len(), 3);
/// assert!(fakes.iter().all(|der| *der != chain.intermediate.der));
/// ```
pub fn look_alikes(of: &Node, issuer: &Node, n: usize) -> Vec<Vec<u8>> {
    let signer = Issuer::from_params(&issuer.params, &issuer.key);
    (0..n)
        .map(|i| {
            let mut params = of.params.clone();
            params.serial_number = Some(rcgen::SerialNumber::from((i as u64 + 1) << 8));
            let key = Alg::P256.key();
            params
                .signed_by(&key, &signer)
                .expect("sign a look-alike")
                .der()
                .to_vec()
        })
        .collect()
}
