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
//! The crate is sans-I/O: it takes bytes and a time, reads no file and no clock.
//!
//! ```no_run
//! use bmcert_bundle::BundleCheck;
//! use rustls_pki_types::UnixTime;
//! # let (cert, key, ca) = (Vec::<u8>::new(), Vec::<u8>::new(), Vec::<u8>::new());
//! let report = BundleCheck::files(&cert, &key, Some(&ca)).check(UnixTime::now());
//! for problem in &report.problems {
//!     eprintln!("{problem}");
//! }
//! if let Some(bundle) = report.bundle.filter(|_| report.problems.is_empty()) {
//!     // install bundle.leaf, bundle.chain and bundle.key
//! #   let _ = bundle;
//! }
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
mod key;
mod keycheck;
mod pkcs12;
mod report;
mod text;

pub use cert::{parse_certificates, sha256_fingerprint, CertError, CertSummary, KeyAlgorithm};
pub use check::{BundleCheck, EXPIRES_SOON, MIN_RSA_BITS};
pub use key::{parse_private_key, KeyError, KeyFormat, PrivateKey};
pub use keycheck::TEST_MESSAGE;
pub use pkcs12::{parse_pkcs12, Pkcs12Contents, Pkcs12Error};
pub use report::{Bundle, Code, FileKind, Finding, Report};
pub use text::{pem_encode, TextError};

/// Whether `key` signs a message that verifies with `cert`'s public key; `false` when the
/// provider cannot load the key or webpki cannot read the certificate.
pub fn key_matches(key: &PrivateKey, cert: &rustls_pki_types::CertificateDer<'_>) -> bool {
    keycheck::load(key)
        .map(|k| keycheck::check(k.as_ref(), cert) == keycheck::KeyCheck::Match)
        .unwrap_or(false)
}
