//! Fixture generation with rcgen: root / intermediate / leaf chains with chosen names,
//! key types and validity, plus a helper to run the real `openssl` command.
//!
//! Everything is generated at test time; nothing here is meant for production.
// Test helpers fail loudly: a fixture that cannot be built is a broken test setup.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::path::Path;
use std::process::Command;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, RsaKeySize,
};
use time::{Duration, OffsetDateTime};

/// The key algorithms fixtures can generate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyType {
    /// RSA 2048 bits, signing with PKCS#1 v1.5 SHA-256.
    Rsa2048,
    /// RSA 3072 bits.
    Rsa3072,
    /// ECDSA P-256 with SHA-256.
    EcdsaP256,
    /// ECDSA P-384 with SHA-384.
    EcdsaP384,
    /// Ed25519.
    Ed25519,
}

impl KeyType {
    /// Every key type.
    pub const ALL: [Self; 5] = [
        Self::Rsa2048,
        Self::Rsa3072,
        Self::EcdsaP256,
        Self::EcdsaP384,
        Self::Ed25519,
    ];

    /// Generates a fresh key pair of this type.
    pub fn generate(self) -> KeyPair {
        match self {
            Self::Rsa2048 => KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, RsaKeySize::_2048),
            Self::Rsa3072 => KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, RsaKeySize::_3072),
            Self::EcdsaP256 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256),
            Self::EcdsaP384 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384),
            Self::Ed25519 => KeyPair::generate_for(&rcgen::PKCS_ED25519),
        }
        .expect("key generation")
    }
}

/// One generated certificate and its key, in DER and PEM.
#[derive(Clone, Debug)]
pub struct Generated {
    /// The certificate, DER.
    pub cert_der: Vec<u8>,
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The private key, PKCS#8 DER.
    pub key_der: Vec<u8>,
    /// The private key, PKCS#8 PEM.
    pub key_pem: String,
}

/// How to build a chain; see [`ChainSpec::build`].
#[derive(Clone, Debug)]
pub struct ChainSpec {
    /// Leaf subject alternative names (DNS names or IP addresses); the first is also the CN.
    pub names: Vec<String>,
    /// Leaf key type.
    pub leaf_key: KeyType,
    /// Intermediate and root key type.
    pub ca_key: KeyType,
    /// Leaf validity start.
    pub not_before: OffsetDateTime,
    /// Leaf validity end.
    pub not_after: OffsetDateTime,
    /// Whether to put an intermediate between root and leaf.
    pub intermediate: bool,
    /// Common name prefix of the authorities (`<prefix> Root CA`, `<prefix> Intermediate CA`).
    pub ca_name: String,
}

impl ChainSpec {
    /// A P-256 chain root -> intermediate -> leaf for `names`, valid from a year ago
    /// for ten years.
    pub fn new(names: &[&str]) -> Self {
        let now = OffsetDateTime::now_utc();
        Self {
            names: names.iter().map(|n| (*n).to_owned()).collect(),
            leaf_key: KeyType::EcdsaP256,
            ca_key: KeyType::EcdsaP256,
            not_before: now - Duration::days(365),
            not_after: now + Duration::days(3650),
            intermediate: true,
            ca_name: "bmcert Test".to_owned(),
        }
    }

    /// Sets the leaf key type.
    pub fn leaf_key(mut self, key: KeyType) -> Self {
        self.leaf_key = key;
        self
    }

    /// Sets the authorities' key type.
    pub fn ca_key(mut self, key: KeyType) -> Self {
        self.ca_key = key;
        self
    }

    /// Sets the leaf validity.
    pub fn validity(mut self, not_before: OffsetDateTime, not_after: OffsetDateTime) -> Self {
        self.not_before = not_before;
        self.not_after = not_after;
        self
    }

    /// Leaves out the intermediate: the root signs the leaf.
    pub fn without_intermediate(mut self) -> Self {
        self.intermediate = false;
        self
    }

    /// Sets the authorities' name prefix.
    pub fn ca_name(mut self, name: &str) -> Self {
        self.ca_name = name.to_owned();
        self
    }

    /// Generates the chain.
    pub fn build(&self) -> Chain {
        let now = OffsetDateTime::now_utc();
        let ca_params = |cn: String| {
            let mut p = CertificateParams::default();
            let mut dn = DistinguishedName::new();
            dn.push(DnType::OrganizationName, "bmcert tests");
            dn.push(DnType::CommonName, cn);
            p.distinguished_name = dn;
            p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            // RFC 5280 4.2.1.1: every certificate but a self-signed root carries the
            // authority key identifier (rcgen leaves it out of the root itself).
            p.use_authority_key_identifier_extension = true;
            p.key_usages = vec![
                KeyUsagePurpose::KeyCertSign,
                KeyUsagePurpose::CrlSign,
                KeyUsagePurpose::DigitalSignature,
            ];
            p.not_before = now - Duration::days(3650);
            p.not_after = now + Duration::days(3650 * 3);
            p
        };
        let root_key = self.ca_key.generate();
        let root_params = ca_params(format!("{} Root CA", self.ca_name));
        let root_cert = root_params.self_signed(&root_key).expect("root");
        let root = Generated::new(root_cert.der().to_vec(), &root_key);
        let root_issuer = Issuer::new(root_params, root_key);

        let (intermediate, inter_issuer) = if self.intermediate {
            let key = self.ca_key.generate();
            let params = ca_params(format!("{} Intermediate CA", self.ca_name));
            let cert = params.signed_by(&key, &root_issuer).expect("intermediate");
            (
                Some(Generated::new(cert.der().to_vec(), &key)),
                Some(Issuer::new(params, key)),
            )
        } else {
            (None, None)
        };

        let leaf_key = self.leaf_key.generate();
        let mut params = CertificateParams::new(self.names.clone()).expect("leaf names");
        let mut dn = DistinguishedName::new();
        if let Some(first) = self.names.first() {
            dn.push(DnType::CommonName, first.clone());
        }
        params.distinguished_name = dn;
        params.is_ca = IsCa::ExplicitNoCa;
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.not_before = self.not_before;
        params.not_after = self.not_after;
        let leaf_cert = match &inter_issuer {
            Some(issuer) => params.signed_by(&leaf_key, issuer),
            None => params.signed_by(&leaf_key, &root_issuer),
        }
        .expect("leaf");
        let leaf = Generated::new(leaf_cert.der().to_vec(), &leaf_key);
        Chain {
            root,
            intermediate,
            leaf,
        }
    }
}

impl Generated {
    fn new(cert_der: Vec<u8>, key: &KeyPair) -> Self {
        Self {
            cert_pem: pem_block("CERTIFICATE", &cert_der),
            cert_der,
            key_der: key.serialize_der(),
            key_pem: key.serialize_pem(),
        }
    }
}

/// A generated root, optional intermediate and leaf.
#[derive(Clone, Debug)]
pub struct Chain {
    /// The self-signed root.
    pub root: Generated,
    /// The intermediate, when the spec asked for one.
    pub intermediate: Option<Generated>,
    /// The end-entity certificate.
    pub leaf: Generated,
}

impl Chain {
    /// The CA file administrators upload: the intermediate (if any) then the root, PEM.
    pub fn ca_pem(&self) -> String {
        let mut out = String::new();
        if let Some(i) = &self.intermediate {
            out.push_str(&i.cert_pem);
        }
        out.push_str(&self.root.cert_pem);
        out
    }

    /// The CA certificates in DER, intermediate first.
    pub fn ca_ders(&self) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        if let Some(i) = &self.intermediate {
            out.push(i.cert_der.clone());
        }
        out.push(self.root.cert_der.clone());
        out
    }
}

/// Encodes DER as one PEM block (64 columns, `\n`).
pub fn pem_block(label: &str, der: &[u8]) -> String {
    // rcgen's PEM support brings the `pem` crate; go through a self-contained encoder so
    // this helper does not depend on its version.
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut b64 = String::new();
    for chunk in der.chunks(3) {
        let n = match chunk.len() {
            3 => u32::from(chunk[0]) << 16 | u32::from(chunk[1]) << 8 | u32::from(chunk[2]),
            2 => u32::from(chunk[0]) << 16 | u32::from(chunk[1]) << 8,
            _ => u32::from(chunk[0]) << 16,
        };
        for i in 0..4 {
            if i <= chunk.len() {
                b64.push(char::from(TABLE[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                b64.push('=');
            }
        }
    }
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// Runs the real `openssl` command in `dir` and returns its standard output; panics with
/// its standard error when it fails.
pub fn openssl(dir: &Path, args: &[&str]) -> Vec<u8> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the `openssl` command is installed (scripts/test-all installs it)");
    if !out.status.success() {
        panic!(
            "openssl {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out.stdout
}
