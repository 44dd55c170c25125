//! Parses and checks TLS certificate bundles (PEM, DER, PKCS#12) for installation.
//!
//! An administrator uploads a certificate, its private key and the CA file, or one
//! PKCS#12 file. [`BundleCheck`] reads them the tolerant way real uploads need (byte order
//! mark, CRLF, `Bag Attributes` text around PEM blocks, DER, PKCS#1, SEC1, PKCS#8,
//! encrypted PKCS#8, legacy and modern PKCS#12), proves that the key belongs to the
//! certificate with a real signature, checks dates and key sizes, and returns a
//! [`Report`]: problems refuse the bundle, warnings do not, each with a stable [`Code`],
//! the [`FileKind`] it concerns and a message that names the fix.
//!
//! The crate is sans-I/O: it takes bytes and a time, reads no file and no clock. It does
//! not build or judge chains and host names itself (`bmcert-verify` does, and its findings
//! join the same report), does not store anything (`bmcert-store`, through
//! `bmcert::CertManager`, installs an accepted bundle) and does not serve certificates
//! (`bmcert-resolve`).
//!
//! ```
//! use bmcert_bundle::BundleCheck;
//! use bmcert_topology::Host;
//! use rustls_pki_types::UnixTime;
//!
//! // Root -> intermediate -> leaf for mail.example.test; the CA file holds both authorities.
//! let chain = bmcert_test::fixtures::ChainSpec::new(&["mail.example.test"]).build();
//! let (cert, key, ca) = (chain.leaf.cert_pem.as_bytes(), chain.leaf.key_pem.as_bytes(), chain.ca_pem());
//! let check = |url: &str| {
//!     BundleCheck::files(cert, key, Some(ca.as_bytes()))
//!         .host(Host::parse(url).unwrap())
//!         .check(UnixTime::now())
//! };
//!
//! let report = check("https://mail.example.test");
//! assert!(report.is_valid(), "{report}");
//! let bundle = report.bundle.unwrap(); // leaf, chain and key, ready to install
//! assert_eq!(bundle.leaf.as_ref(), &chain.leaf.cert_der[..]);
//!
//! let refused = check("https://webmail.acme.test");
//! assert!(!refused.is_valid());
//! assert_eq!(refused.problems[0].code.as_str(), "name_mismatch");
//! // The readable report names the host, the names covered and the fix.
//! assert!(refused.to_string().contains("webmail.acme.test is not covered"));
//! ```
//!
//! Crates: `pem` decodes the base64 of each block found; `x509-cert`/`der`/`pkcs8` (RustCrypto)
//! decode structures; `p12-keystore` opens PKCS#12; the key check signs with the rustls
//! aws-lc-rs provider and verifies with rustls-webpki; `zeroize` wipes key bytes.
//!
//! Codes, their files and fixes: `docs/problem-codes.md`. Fuzz targets `certificate`,
//! `key`, `ca` and `pkcs12` live in `fuzz/` (seed corpora rebuilt by `fuzz/make-corpus.sh`;
//! `tests/corpus.rs` replays the seeds on stable). The `bundle` criterion benchmark in
//! `benches/` compares [`BundleCheck::check`] with the bare sign + verify it performs.
#![deny(missing_docs)]
#![warn(unreachable_pub)]

mod cert;
mod check;
mod checked;
mod key;
mod keycheck;
pub mod limits;
mod pkcs12;
mod report;
mod text;

pub use cert::{parse_certificates, sha256_fingerprint, CertError, CertSummary, KeyAlgorithm};
pub use check::{BundleCheck, EXPIRES_SOON, MIN_RSA_BITS};
pub use checked::CheckedBundle;
pub use key::{parse_private_key, KeyError, KeyFormat, PrivateKey};
pub use keycheck::{prove_key, KeyProofError, TEST_MESSAGE};
pub use pkcs12::{parse_pkcs12, Pkcs12Contents, Pkcs12Error, PKCS12_MAX_ITERATIONS};
pub use report::{Code, FileKind, Finding, ParsedBundle, Report};
pub use text::{pem_encode, TextError};

/// Whether `key` signs a message that verifies with `cert`'s public key; `false` when the
/// provider cannot load the key or webpki cannot read the certificate.
pub fn key_matches(key: &PrivateKey, cert: &rustls_pki_types::CertificateDer<'_>) -> bool {
    prove_key(&key.secret_der(), cert).is_ok()
}
