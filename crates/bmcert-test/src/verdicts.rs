//! One generated upload per chain and name code of `bmcert-verify` that the existing
//! fixtures do not already make, as the files an administrator hands `bmcert check`: the
//! certificate file, its key and the CA file, for [`URL`], checked at [`Upload::at`].
//! The `openssl` steps behind its SHA-1 upload ([`openssl_sha1_leaf`], built from
//! [`write_issuer`], [`openssl_p256_csr`] and [`openssl_sign`]) are public too: the
//! differential test of `bmcert-verify` makes its SHA-1 chains with them.
//!
//! ```
//! use bmcert_test::verdicts::{upload, Code};
//! let u = upload(Code::CnOnly);
//! assert!(!u.problem);
//! assert!(u.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
//! ```

// Test helper: a failed key generation, signature or openssl run is a broken test environment.
#![allow(clippy::expect_used)]

use std::path::Path;

use rcgen::{DnType, ExtendedKeyUsagePurpose};

use crate::chains::{ca_params, leaf_params, Alg, Chain3, Node};
use crate::fixtures::openssl;

/// The external URL every upload is made for (its leaf names `mail.example.test`).
pub const URL: &str = "https://mail.example.test/";

/// [`crate::chains::TEST_TIME`] in RFC 3339, for `bmcert check --at`.
pub const TEST_TIME_RFC3339: &str = "2026-06-01T00:00:00Z";

/// The codes [`upload`] makes an upload for (the stable strings of `bmcert_verify::ChainCode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    /// `chain_signature_invalid`: the CA file holds an intermediate with the right name and
    /// another key.
    ChainSignatureInvalid,
    /// `ca_expired`: the intermediate ended in 2025.
    CaExpired,
    /// `leaf_is_ca`: the certificate file holds the intermediate (with its key).
    LeafIsCa,
    /// `not_server_auth`: the leaf's EKU is clientAuth only.
    NotServerAuth,
    /// `weak_signature`: the leaf is signed with SHA-1 (by `openssl x509 -req -sha1`).
    WeakSignature,
    /// `extra_certificates` (warning): the CA file also holds another authority's root.
    ExtraCertificates,
    /// `chain_in_cert_file` (warning): the intermediate follows the leaf in the certificate
    /// file; the CA file holds the root.
    ChainInCertFile,
    /// `cn_only` (warning): the leaf has no SAN; its CN is `mail.example.test`.
    CnOnly,
}

impl Code {
    /// Every code, problems first.
    pub const ALL: [Self; 8] = [
        Self::ChainSignatureInvalid,
        Self::CaExpired,
        Self::LeafIsCa,
        Self::NotServerAuth,
        Self::WeakSignature,
        Self::ExtraCertificates,
        Self::ChainInCertFile,
        Self::CnOnly,
    ];

    /// The code as the report writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ChainSignatureInvalid => "chain_signature_invalid",
            Self::CaExpired => "ca_expired",
            Self::LeafIsCa => "leaf_is_ca",
            Self::NotServerAuth => "not_server_auth",
            Self::WeakSignature => "weak_signature",
            Self::ExtraCertificates => "extra_certificates",
            Self::ChainInCertFile => "chain_in_cert_file",
            Self::CnOnly => "cn_only",
        }
    }

    /// True for problems (exit status 1), false for warnings (the bundle is accepted).
    pub fn is_problem(self) -> bool {
        !matches!(
            self,
            Self::ExtraCertificates | Self::ChainInCertFile | Self::CnOnly
        )
    }
}

/// The files of one upload, PEM.
pub struct Upload {
    /// The code the upload must produce.
    pub code: Code,
    /// True when the code is a problem: `bmcert check` must exit with status 1.
    pub problem: bool,
    /// The certificate file: the leaf, then any other certificates of the file.
    pub cert_pem: String,
    /// The leaf's private key (PKCS#8).
    pub key_pem: String,
    /// The CA file.
    pub ca_pem: String,
    /// When to check, RFC 3339: [`TEST_TIME_RFC3339`], or the current time for the
    /// certificates `openssl` signs (it stamps notBefore with the current time).
    pub at: String,
}

impl Upload {
    /// Writes `cert.pem`, `key.pem` and `ca.pem` into `dir`.
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::write(dir.join("cert.pem"), &self.cert_pem)?;
        std::fs::write(dir.join("key.pem"), &self.key_pem)?;
        std::fs::write(dir.join("ca.pem"), &self.ca_pem)
    }
}

fn pems(nodes: &[&Node]) -> String {
    nodes.iter().map(|n| n.pem.as_str()).collect()
}

/// A fresh upload producing `code` (and, for warnings, no problem) for [`URL`].
pub fn upload(code: Code) -> Upload {
    let c = Chain3::new(Alg::P256, &["mail.example.test"]);
    let make = |leaf: &Node, cert_extra: &[&Node], ca: &[&Node]| Upload {
        code,
        problem: code.is_problem(),
        cert_pem: pems(&[&[leaf], cert_extra].concat()),
        key_pem: leaf.key.serialize_pem(),
        ca_pem: pems(ca),
        at: TEST_TIME_RFC3339.to_owned(),
    };
    match code {
        Code::ChainSignatureInvalid => {
            let impostor = c
                .root
                .issue(ca_params("bmcert Test Intermediate"), Alg::P256.key());
            make(&c.leaf, &[], &[&impostor, &c.root])
        }
        Code::CaExpired => {
            let mut p = ca_params("bmcert Old Intermediate");
            p.not_after = rcgen::date_time_ymd(2025, 1, 1);
            let old = c.root.issue(p, Alg::P256.key());
            let leaf = old.issue(leaf_params(&["mail.example.test"]), Alg::P256.key());
            make(&leaf, &[], &[&old, &c.root])
        }
        Code::LeafIsCa => make(&c.intermediate, &[], &[&c.root]),
        Code::NotServerAuth => {
            let mut p = leaf_params(&["mail.example.test"]);
            p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
            let leaf = c.intermediate.issue(p, Alg::P256.key());
            make(&leaf, &[], &[&c.intermediate, &c.root])
        }
        Code::WeakSignature => sha1_leaf(&c.root),
        Code::ExtraCertificates => {
            let other = Chain3::new(Alg::P256, &["other.test"]);
            make(&c.leaf, &[], &[&c.intermediate, &other.root, &c.root])
        }
        Code::ChainInCertFile => make(&c.leaf, &[&c.intermediate], &[&c.root]),
        Code::CnOnly => {
            let mut p = leaf_params(&[]);
            p.distinguished_name
                .push(DnType::CommonName, "mail.example.test");
            let leaf = c.intermediate.issue(p, Alg::P256.key());
            make(&leaf, &[], &[&c.intermediate, &c.root])
        }
    }
}

/// A leaf SHA-1 signed by `root` with the `openssl` CLI (rcgen cannot sign with SHA-1),
/// valid for a year from now.
fn sha1_leaf(root: &Node) -> Upload {
    let dir = tempfile::tempdir().expect("temporary directory");
    let d = dir.path();
    openssl_sha1_leaf(d, root, 365);
    let read = |name: &str| std::fs::read_to_string(d.join(name)).expect("read openssl output");
    let now = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .expect("format the current time");
    Upload {
        code: Code::WeakSignature,
        problem: true,
        cert_pem: read("leaf.pem"),
        key_pem: read("leaf.key"),
        ca_pem: root.pem.clone(),
        at: now,
    }
}

/// The extensions `openssl x509 -req -extfile` gives a TLS server leaf for
/// `mail.example.test`: not a CA, digitalSignature, serverAuth, the name as its SAN, and key
/// identifiers.
pub const LEAF_EXTENSIONS: &str = "basicConstraints=critical,CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:mail.example.test\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n";

/// Writes `node`'s certificate to `dir/<stem>.pem` and its key to `dir/<stem>.key`, where
/// [`openssl_sign`] finds an issuer.
pub fn write_issuer(dir: &Path, stem: &str, node: &Node) {
    std::fs::write(dir.join(format!("{stem}.pem")), &node.pem).expect("write the certificate");
    std::fs::write(dir.join(format!("{stem}.key")), node.key.serialize_pem())
        .expect("write the key");
}

/// `openssl req -new` in `dir`: a new unencrypted P-256 key `<name>.key` and a certificate
/// request `<name>.csr` for `subject` (as `/CN=mail.example.test`).
pub fn openssl_p256_csr(dir: &Path, name: &str, subject: &str) {
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-subj",
            subject,
            "-out",
            &format!("{name}.csr"),
        ],
    );
}

/// `openssl x509 -req` in `dir`: signs `<name>.csr` with `<issuer>.pem` and `<issuer>.key`
/// using `digest` (`sha1`, `sha256`), valid for `days` days from now, with `serial` and the
/// extensions of the file `ext`, into `<name>.pem`.
pub fn openssl_sign(
    dir: &Path,
    name: &str,
    issuer: &str,
    digest: &str,
    ext: &str,
    days: u32,
    serial: &str,
) {
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            &format!("{issuer}.pem"),
            "-CAkey",
            &format!("{issuer}.key"),
            &format!("-{digest}"),
            "-days",
            &days.to_string(),
            "-set_serial",
            serial,
            "-extfile",
            ext,
            "-out",
            &format!("{name}.pem"),
        ],
    );
}

/// Makes, in `dir`, `leaf.pem`, a leaf for `mail.example.test` ([`LEAF_EXTENSIONS`]) signed
/// with SHA-1 by `root` (serial 2, valid for `days` days from now: openssl stamps notBefore
/// with the current time) and its key `leaf.key`, with the `openssl` CLI since rcgen cannot
/// sign with SHA-1. Also leaves `root.pem`, `root.key`, `ext.cnf` and `leaf.csr` there.
pub fn openssl_sha1_leaf(dir: &Path, root: &Node, days: u32) {
    write_issuer(dir, "root", root);
    std::fs::write(dir.join("ext.cnf"), LEAF_EXTENSIONS).expect("write extensions");
    openssl_p256_csr(dir, "leaf", "/CN=mail.example.test");
    openssl_sign(dir, "leaf", "root", "sha1", "ext.cnf", days, "2");
}
