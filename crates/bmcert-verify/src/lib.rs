//! Chain building with rustls-webpki plus diagnosis, and RFC 9525 host-name matching.
//!
//! Sans-I/O: certificates, a time and a reference host go in; a [`Verdict`] comes out. The
//! caller (the report of `bmcert-bundle`, a service) reads files and the platform store.
//! This crate does not parse PEM, keys or PKCS#12 (`bmcert-bundle` hands it DER and carries
//! its findings into the administrator's report), does not check that the key matches
//! (`bmcert-bundle` does) and does not decide what gets installed (`bmcert::CertManager`).
//!
//! * [`verify`] takes an upload as administrators give it: the leaf, the other certificates of
//!   the certificate file, the CA file (which must lead to its self-signed root: that root is
//!   the trust anchor) and optionally the platform roots, used only to complete a chain whose
//!   root is missing from the CA file.
//! * [`verify_path`] takes trust anchors and an untrusted pool separately, as TLS clients and
//!   the x509-limbo suite do.
//!
//! Path building, signatures, validity, basic constraints, path length, name constraints and
//! key usages are rustls-webpki's (`EndEntityCert::verify_for_usage` with the aws-lc-rs
//! algorithms and `KeyUsage::server_auth()`), so a verdict agrees with rustls clients. On top
//! of that this crate:
//!
//! * checks the RFC 5280 certificate profile webpki leaves out (trust anchor validity and
//!   extensions, criticality rules, key identifiers, ...), on every candidate path through
//!   webpki's `verify_path` hook, so an alternative good path is still found;
//! * selects, before webpki runs, the certificates that can be on a valid path: candidates
//!   indexed by subject name and narrowed by key identifiers, signatures checked only to
//!   choose between several candidates, at most once per (certificate, issuer key) pair and
//!   under a budget of 1,024 checks, so a CA file of
//!   thousands of look-alike authorities costs milliseconds and its valid chain is still
//!   found (refused with [`ChainCode::LookAlikes`] when the budget runs out); webpki validates
//!   the path over that selection;
//! * explains a refusal link by link ([`ChainCode`]), with the most useful finding first;
//! * matches the host name per RFC 9525 ([`names`]), with the CN fallback the issue asks for.
//!
//! The certificate fields webpki does not expose are read through a borrowing view derived
//! with the `der` crate (RustCrypto, the parser p12-keystore already pulls in): names stay raw
//! DER and extensions are borrowed, and each extension value is decoded with x509-cert's
//! types only when checked. Parsing x509-cert's owned `Certificate` instead cost more than
//! webpki's whole verification of an RSA chain.
//!
//! ```
//! use bmcert_verify::{verify, ChainInput};
//! use rustls_pki_types::{CertificateDer, UnixTime};
//!
//! let leaf = CertificateDer::from(vec![0x30, 0x00]);
//! let verdict = verify(&ChainInput {
//!     leaf: &leaf,
//!     cert_file_extras: &[],
//!     ca_file: &[],
//!     platform_roots: &[],
//!     reference: None,
//!     time: UnixTime::since_unix_epoch(core::time::Duration::from_secs(1_700_000_000)),
//! });
//! assert!(!verdict.is_valid());
//! assert_eq!(verdict.findings[0].code.as_str(), "malformed");
//! ```
#![deny(missing_docs)]
#![warn(unreachable_pub)]

mod issuers;
mod light;
pub mod names;
mod profile;

use core::cell::RefCell;
use core::fmt;
use std::collections::HashMap;

use crate::issuers::{Issuers, Signatures};
use crate::light::CertRef as Certificate;
use bmcert_topology::Host;
use der::Decode;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, TrustAnchor, UnixTime};
use webpki::{EndEntityCert, KeyUsage, VerifiedPath};

use crate::names::{MatchedBy, NameVerdict};
use crate::profile::{Level, Violation};

/// An upload to check, as administrators give it.
#[derive(Clone, Copy, Debug)]
pub struct ChainInput<'a> {
    /// The server certificate.
    pub leaf: &'a CertificateDer<'a>,
    /// The other certificates found in the certificate file, in file order.
    pub cert_file_extras: &'a [CertificateDer<'a>],
    /// The CA file, in file order. Its self-signed certificates are the trust anchors.
    pub ca_file: &'a [CertificateDer<'a>],
    /// Roots of the platform store (the caller loads them, e.g. with rustls-native-certs).
    /// Used only to complete a chain whose root is missing from the CA file. May be empty.
    pub platform_roots: &'a [CertificateDer<'a>],
    /// The host of the external URL, when it is known.
    pub reference: Option<&'a Host>,
    /// The time at which the bundle must be valid.
    pub time: UnixTime,
}

/// Trust anchors and an untrusted pool given separately (TLS clients, x509-limbo).
#[derive(Clone, Copy, Debug)]
pub struct PathInput<'a> {
    /// The end-entity certificate.
    pub leaf: &'a CertificateDer<'a>,
    /// The trusted roots.
    pub anchors: &'a [CertificateDer<'a>],
    /// Untrusted certificates usable as intermediates, in any order.
    pub intermediates: &'a [CertificateDer<'a>],
    /// Certificate revocation lists to honour (checked over the whole chain; a certificate
    /// whose issuer published no CRL here is not refused).
    pub crls: &'a [CertificateRevocationListDer<'a>],
    /// The reference host, when the name must be checked.
    pub reference: Option<&'a Host>,
    /// The validation time.
    pub time: UnixTime,
}

/// How strictly the certificate profile is enforced.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Strictness {
    /// RFC 5280 MUSTs that clients enforce are problems; CA/Browser Forum profile rules that
    /// most clients ignore (EKU present, key identifiers, key sizes, CN in SAN) are warnings.
    #[default]
    Standard,
    /// Every profile rule is a problem, as in the x509-limbo suite.
    Pedantic,
}

/// Tunables of [`verify_path`] and [`verify_with`].
#[non_exhaustive]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Options {
    /// How strictly the certificate profile is enforced.
    pub strictness: Strictness,
    /// The most intermediates (not counting self-issued ones) a path may hold.
    pub max_chain_depth: Option<usize>,
}

impl Options {
    /// Default options with the given strictness.
    pub fn with_strictness(strictness: Strictness) -> Self {
        Self {
            strictness,
            ..Self::default()
        }
    }
}

/// How bad a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// The bundle must not be installed.
    Problem,
    /// Accepted, but worth fixing.
    Warning,
}

impl Severity {
    /// `problem` or `warning`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Problem => "problem",
            Self::Warning => "warning",
        }
    }
}

/// The file a finding is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// The certificate file (leaf and the certificates after it).
    Cert,
    /// The CA file (or, for [`verify_path`], the anchors and the pool).
    Ca,
}

impl Role {
    /// `cert` or `ca`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cert => "cert",
            Self::Ca => "ca",
        }
    }
}

/// What a finding is about; [`ChainCode::as_str`] is the stable code of the report.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ChainCode {
    /// A certificate cannot be parsed.
    Malformed,
    /// The leaf is outside its validity period.
    LeafExpired,
    /// The certificate does not cover the reference host.
    NameMismatch,
    /// No path to the authority: an issuer is missing (named by subject).
    ChainIncomplete,
    /// The chain reaches an intermediate whose root is not in the CA file.
    RootMissing,
    /// A signature of the chain does not verify.
    ChainSignatureInvalid,
    /// The issuer search gave up: the files hold too many look-alike certificates (same
    /// name, other keys) to check them all.
    LookAlikes,
    /// An intermediate or the root is outside its validity period.
    CaExpired,
    /// A certificate below the root is signed with SHA-1 or MD5.
    WeakSignature,
    /// The leaf is a certificate authority.
    LeafIsCa,
    /// The leaf's extended key usage does not allow TLS server authentication.
    NotServerAuth,
    /// A certificate breaks the RFC 5280 / CA/Browser Forum profile.
    NonConformant,
    /// The leaf is revoked by a supplied CRL.
    Revoked,
    /// The chain is refused for another reason (webpki's error is quoted).
    ChainInvalid,
    /// Warning: the chain was accepted after reordering the CA file.
    ChainReordered,
    /// Warning: certificates unrelated to the chain were dropped.
    ExtraCertificates,
    /// Warning: chain certificates were found in the certificate file.
    ChainInCertFile,
    /// Warning: the certificate has no DNS or IP SAN; its common name was used.
    CnOnly,
    /// Warning: the root is missing from the CA file but was found in the platform store.
    RootFromPlatform,
}

impl ChainCode {
    /// Every code, problems first, in ranking order.
    pub const ALL: &'static [Self] = &[
        Self::Malformed,
        Self::LeafExpired,
        Self::Revoked,
        Self::LeafIsCa,
        Self::NameMismatch,
        Self::ChainIncomplete,
        Self::RootMissing,
        Self::ChainSignatureInvalid,
        Self::LookAlikes,
        Self::CaExpired,
        Self::WeakSignature,
        Self::NotServerAuth,
        Self::NonConformant,
        Self::ChainInvalid,
        Self::RootFromPlatform,
        Self::CnOnly,
        Self::ChainReordered,
        Self::ChainInCertFile,
        Self::ExtraCertificates,
    ];

    /// The stable snake_case code used in text and JSON reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::LeafExpired => "leaf_expired",
            Self::NameMismatch => "name_mismatch",
            Self::ChainIncomplete => "chain_incomplete",
            Self::RootMissing => "root_missing",
            Self::ChainSignatureInvalid => "chain_signature_invalid",
            Self::LookAlikes => "look_alikes",
            Self::CaExpired => "ca_expired",
            Self::WeakSignature => "weak_signature",
            Self::LeafIsCa => "leaf_is_ca",
            Self::NotServerAuth => "not_server_auth",
            Self::NonConformant => "non_conformant",
            Self::Revoked => "revoked",
            Self::ChainInvalid => "chain_invalid",
            Self::ChainReordered => "chain_reordered",
            Self::ExtraCertificates => "extra_certificates",
            Self::ChainInCertFile => "chain_in_cert_file",
            Self::CnOnly => "cn_only",
            Self::RootFromPlatform => "root_from_platform",
        }
    }

    /// Lower ranks lead: the finding an administrator should fix first.
    fn rank(self) -> u8 {
        match self {
            Self::Malformed => 0,
            Self::LeafExpired => 1,
            Self::Revoked => 2,
            Self::LeafIsCa => 3,
            Self::NameMismatch => 4,
            Self::ChainIncomplete => 5,
            Self::RootMissing => 6,
            Self::ChainSignatureInvalid => 7,
            Self::LookAlikes => 8,
            Self::CaExpired => 9,
            Self::WeakSignature => 10,
            Self::NotServerAuth => 11,
            Self::NonConformant => 12,
            Self::ChainInvalid => 13,
            Self::RootFromPlatform => 14,
            Self::CnOnly => 15,
            Self::ChainReordered => 16,
            Self::ChainInCertFile => 17,
            Self::ExtraCertificates => 18,
        }
    }
}

impl fmt::Display for ChainCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One thing the report says about the chain or the name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainFinding {
    /// What it is about.
    pub code: ChainCode,
    /// Problem or warning.
    pub severity: Severity,
    /// The file to fix.
    pub file: Role,
    /// Plain words: what is wrong and how to fix it.
    pub message: String,
}

impl fmt::Display for ChainFinding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} [{}] ({} file): {}",
            self.severity.as_str(),
            self.code,
            self.file.as_str(),
            self.message
        )
    }
}

/// The outcome of a validation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// The issuer chain, ordered: intermediates first, the root last. Empty when no path
    /// was found.
    pub chain: Vec<CertificateDer<'static>>,
    /// Problems first, the most useful one leading; then warnings.
    pub findings: Vec<ChainFinding>,
    /// The name check, when a reference host was given and the leaf could be read.
    pub names: Option<NameVerdict>,
}

impl Verdict {
    /// True when no finding is a problem.
    pub fn is_valid(&self) -> bool {
        !self
            .findings
            .iter()
            .any(|f| f.severity == Severity::Problem)
    }

    /// The leading problem, if any.
    pub fn first_problem(&self) -> Option<&ChainFinding> {
        self.findings
            .iter()
            .find(|f| f.severity == Severity::Problem)
    }

    /// Whether a finding with this code is present.
    pub fn has(&self, code: ChainCode) -> bool {
        self.findings.iter().any(|f| f.code == code)
    }

    fn sort(&mut self) {
        self.findings.sort_by_key(|f| (f.severity, f.code.rank()));
    }
}

/// Checks an upload with the default [`Options`].
pub fn verify(input: &ChainInput<'_>) -> Verdict {
    verify_with(input, &Options::default())
}

/// Checks an upload: see [`ChainInput`].
pub fn verify_with<'a>(input: &ChainInput<'a>, options: &Options) -> Verdict {
    let leaf = match Certificate::parse(input.leaf.as_ref()) {
        Ok(c) => c,
        Err(e) => return malformed_leaf(&e),
    };
    // The CA file's self-issued certificates are the anchors; the rest is the pool.
    let mut anchors: Vec<&'a CertificateDer<'a>> = Vec::new();
    let mut pool: Vec<&'a CertificateDer<'a>> = Vec::new();
    let cache = Cache::new(&[input.ca_file, input.cert_file_extras, input.platform_roots]);
    for der in input.ca_file {
        match cache.get(der.as_ref()) {
            Some(c) if is_self_issued(c) => anchors.push(der),
            _ => pool.push(der),
        }
    }
    pool.extend(input.cert_file_extras.iter());
    let engine = Engine::new(cache, input.leaf, leaf, input.time, options, &[]);
    let mut result = engine.attempt(&anchors, &pool);
    let mut from_platform = false;
    if result.is_err() && !input.platform_roots.is_empty() {
        // The root may be missing from the CA file: try the platform store, keeping the
        // CA file's own self-signed certificates usable as cross-signed intermediates.
        let platform: Vec<&'a CertificateDer<'a>> = input.platform_roots.iter().collect();
        let mut pool2 = pool.clone();
        pool2.extend(anchors.iter().copied());
        if let Ok(ok) = engine.attempt(&platform, &pool2) {
            from_platform = true;
            result = Ok(ok);
        }
    }
    let mut verdict = Verdict {
        chain: Vec::new(),
        findings: Vec::new(),
        names: None,
    };
    match result {
        Ok(success) => {
            success_findings(&mut verdict, &success, input, &engine.cache, from_platform);
            verdict.chain = success.chain;
        }
        Err(failure) => {
            let mut known: Vec<Known<'_>> = Vec::new();
            for (i, der) in input.ca_file.iter().enumerate() {
                let anchor = engine.cache.get(der.as_ref()).is_some_and(is_self_issued);
                known.push(Known::new(der, Origin::Ca(i), anchor));
            }
            for (i, der) in input.cert_file_extras.iter().enumerate() {
                known.push(Known::new(der, Origin::CertFile(i), false));
            }
            for (i, der) in input.platform_roots.iter().enumerate() {
                known.push(Known::new(der, Origin::Platform(i), true));
            }
            engine.diagnose(&failure, &known, &mut verdict.findings);
        }
    }
    name_findings(&mut verdict, &engine, input.reference);
    verdict.sort();
    verdict
}

/// Validates `leaf` against separately given anchors and pool; see [`PathInput`].
pub fn verify_path<'a>(input: &PathInput<'a>, options: &Options) -> Verdict {
    let leaf = match Certificate::parse(input.leaf.as_ref()) {
        Ok(c) => c,
        Err(e) => return malformed_leaf(&e),
    };
    let cache = Cache::new(&[input.anchors, input.intermediates]);
    let engine = Engine::new(cache, input.leaf, leaf, input.time, options, input.crls);
    let mut verdict = Verdict {
        chain: Vec::new(),
        findings: Vec::new(),
        names: None,
    };
    let anchors: Vec<&'a CertificateDer<'a>> = input.anchors.iter().collect();
    let pool: Vec<&'a CertificateDer<'a>> = input.intermediates.iter().collect();
    match engine.attempt(&anchors, &pool) {
        Ok(success) => {
            for v in &success.warnings {
                verdict.findings.push(violation_finding(
                    v,
                    Severity::Warning,
                    &success.path_subjects,
                ));
            }
            verdict.chain = success.chain;
        }
        Err(failure) => {
            let mut known: Vec<Known<'_>> = Vec::new();
            for (i, der) in input.anchors.iter().enumerate() {
                known.push(Known::new(der, Origin::Ca(i), true));
            }
            for (i, der) in input.intermediates.iter().enumerate() {
                known.push(Known::new(der, Origin::Ca(i), false));
            }
            engine.diagnose(&failure, &known, &mut verdict.findings);
        }
    }
    name_findings(&mut verdict, &engine, input.reference);
    verdict.sort();
    verdict
}

fn malformed_leaf(e: &der::Error) -> Verdict {
    Verdict {
        chain: Vec::new(),
        findings: vec![ChainFinding {
            code: ChainCode::Malformed,
            severity: Severity::Problem,
            file: Role::Cert,
            message: format!(
                "the server certificate is not a valid X.509 certificate ({e}); export it again from your authority's download as PEM"
            ),
        }],
        names: None,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Origin {
    Ca(usize),
    CertFile(usize),
    Platform(usize),
}

impl Origin {
    fn role(self) -> Role {
        match self {
            Self::CertFile(_) => Role::Cert,
            Self::Ca(_) | Self::Platform(_) => Role::Ca,
        }
    }
}

/// A certificate known to the diagnosis, with where it came from.
struct Known<'a> {
    der: &'a CertificateDer<'a>,
    cert: Option<Certificate<'a>>,
    origin: Origin,
    anchor: bool,
}

impl<'a> Known<'a> {
    fn new(der: &'a CertificateDer<'a>, origin: Origin, anchor: bool) -> Self {
        Self {
            der,
            cert: Certificate::parse(der.as_ref()).ok(),
            origin,
            anchor,
        }
    }
}

/// Every input certificate parsed once, looked up by its DER bytes.
pub(crate) struct Cache<'a> {
    items: HashMap<&'a [u8], Option<Certificate<'a>>>,
}

impl<'a> Cache<'a> {
    pub(crate) fn new<'b: 'a>(lists: &[&'a [CertificateDer<'b>]]) -> Self {
        let mut items = HashMap::new();
        for d in lists.iter().flat_map(|l| l.iter()) {
            items
                .entry(d.as_ref())
                .or_insert_with(|| Certificate::parse(d.as_ref()).ok());
        }
        Self { items }
    }

    pub(crate) fn get(&self, der: &[u8]) -> Option<&Certificate<'a>> {
        self.items.get(der).and_then(Option::as_ref)
    }

    fn subject(&self, der: &[u8]) -> String {
        self.get(der)
            .map(|c| c.subject_text())
            .unwrap_or_else(|| "an unreadable certificate".to_owned())
    }
}

struct Success {
    chain: Vec<CertificateDer<'static>>,
    /// Profile warnings of the accepted path (pedantic rules in standard mode).
    warnings: Vec<Violation>,
    /// Subjects of the accepted path, leaf first.
    path_subjects: Vec<String>,
}

struct Failure {
    error: webpki::Error,
    /// Profile problems of the rejected candidate paths, with the path's subjects.
    violations: Vec<(Vec<String>, Vec<Violation>)>,
    /// The issuer search ran out of signature checks: the name whose candidates were being
    /// checked (raw DER contents) and how many certificates carry it.
    stopped_at: Option<(Vec<u8>, usize)>,
    /// The search had ruled candidates out by key identifier before it stopped: those the
    /// key identifiers point to led nowhere.
    after_key_identifiers: bool,
}

struct Engine<'a> {
    cache: Cache<'a>,
    leaf_der: &'a CertificateDer<'a>,
    leaf: Certificate<'a>,
    time: UnixTime,
    options: Options,
    crls: Vec<webpki::CertRevocationList<'a>>,
    crl_problems: Vec<String>,
    /// Signature checks of the issuer search and the diagnosis, memoized and budgeted.
    sigs: Signatures<'a>,
}

impl<'a> Engine<'a> {
    fn new(
        cache: Cache<'a>,
        leaf_der: &'a CertificateDer<'a>,
        leaf: Certificate<'a>,
        time: UnixTime,
        options: &Options,
        crls: &'a [CertificateRevocationListDer<'a>],
    ) -> Self {
        let mut parsed = Vec::new();
        let mut crl_problems = Vec::new();
        for crl in crls {
            match webpki::BorrowedCertRevocationList::from_der(crl.as_ref()) {
                Ok(c) => parsed.push(webpki::CertRevocationList::from(c)),
                Err(e) => crl_problems.push(format!("a CRL cannot be read ({e:?})")),
            }
        }
        for crl in crls {
            crl_problems.extend(crl_profile(crl.as_ref()));
        }
        Self {
            cache,
            leaf_der,
            leaf,
            time,
            options: *options,
            crls: parsed,
            crl_problems,
            sigs: Signatures::default(),
        }
    }

    /// Builds a path from the leaf to one of `anchors` through `pool`: the issuer index
    /// ([`issuers`]) selects the certificates that can be on a valid path, webpki validates
    /// over those.
    fn attempt(
        &self,
        anchors: &[&'a CertificateDer<'a>],
        pool: &[&'a CertificateDer<'a>],
    ) -> Result<Success, Failure> {
        let issuers = Issuers::new(
            (self.leaf_der.as_ref(), &self.leaf),
            anchors,
            pool,
            &self.cache,
        );
        let mut selection = issuers.select(&self.sigs, true);
        let pick = |sel: &issuers::Selection| {
            let a: Vec<&'a CertificateDer<'a>> = sel.anchors.iter().map(|&i| anchors[i]).collect();
            let p: Vec<CertificateDer<'a>> = sel
                .pool
                .iter()
                .map(|&i| CertificateDer::from(pool[i].as_ref()))
                .collect();
            (a, p)
        };
        let (a, p) = pick(&selection);
        let mut result = self.validate(&a, &p);
        let set_aside = selection.set_aside;
        if result.is_err() && set_aside && selection.stopped_at.is_none() {
            // No valid path among the candidates the key identifiers point to: try the
            // ones they rule out too (webpki itself ignores key identifiers).
            selection = issuers.select(&self.sigs, false);
            let (a, p) = pick(&selection);
            result = self.validate(&a, &p);
        }
        result.map_err(|mut f| {
            f.after_key_identifiers = set_aside && selection.stopped_at.is_some();
            f.stopped_at = selection.stopped_at;
            f
        })
    }

    /// webpki's verification of the leaf over these anchors and intermediates, with the
    /// profile checks on every candidate path.
    fn validate(
        &self,
        anchors: &[&'a CertificateDer<'a>],
        pool: &[CertificateDer<'a>],
    ) -> Result<Success, Failure> {
        let ee = EndEntityCert::try_from(self.leaf_der).map_err(|error| Failure {
            error,
            violations: Vec::new(),
            stopped_at: None,
            after_key_identifiers: false,
        })?;
        let mut tas: Vec<TrustAnchor<'_>> = Vec::new();
        let mut ta_certs: Vec<(usize, &Certificate<'_>)> = Vec::new();
        for (i, der) in anchors.iter().enumerate() {
            if let (Ok(ta), Some(cert)) = (
                webpki::anchor_from_trusted_cert(der),
                self.cache.get(der.as_ref()),
            ) {
                tas.push(ta);
                ta_certs.push((i, cert));
            }
        }
        let rejected: RefCell<Vec<(Vec<String>, Vec<Violation>)>> = RefCell::new(Vec::new());
        let accepted: RefCell<Option<Success>> = RefCell::new(None);
        let now = self.time.as_secs();
        let check = |path: &VerifiedPath<'_>| -> Result<(), webpki::Error> {
            let mut certs: Vec<&Certificate<'_>> = vec![&self.leaf];
            let mut ders: Vec<CertificateDer<'static>> = Vec::new();
            for c in path.intermediate_certificates() {
                let der = c.der();
                match self.cache.get(der.as_ref()) {
                    Some(p) => certs.push(p),
                    None => return Err(webpki::Error::BadDer),
                }
                ders.push(der.into_owned());
            }
            let anchor = path.anchor();
            let Some(ta_index) = tas.iter().position(|t| {
                t.subject.as_ref() == anchor.subject.as_ref()
                    && t.subject_public_key_info.as_ref() == anchor.subject_public_key_info.as_ref()
            }) else {
                return Err(webpki::Error::UnknownIssuer);
            };
            let (anchor_index, anchor_cert) = &ta_certs[ta_index];
            certs.push(anchor_cert);
            ders.push(anchors[*anchor_index].clone().into_owned());
            let mut violations = profile::check_path(&certs, now);
            if let Some(max) = self.options.max_chain_depth {
                let depth = certs[1..certs.len() - 1]
                    .iter()
                    .filter(|c| !is_self_issued(c))
                    .count();
                if depth > max {
                    violations.push(Violation {
                        position: 1,
                        level: Level::Rfc5280,
                        message: format!(
                            "the path has {depth} intermediates; at most {max} are allowed"
                        ),
                    });
                }
            }
            if !self.crl_problems.is_empty() {
                for p in &self.crl_problems {
                    violations.push(Violation {
                        position: certs.len() - 1,
                        level: Level::Rfc5280,
                        message: p.clone(),
                    });
                }
            }
            violations.extend(crl_issuer_problems(&certs, &self.crls));
            // Subjects are only needed to word findings.
            let subjects: Vec<String> = if violations.is_empty() {
                Vec::new()
            } else {
                certs.iter().map(|c| c.subject_text()).collect()
            };
            let pedantic = self.options.strictness == Strictness::Pedantic;
            let (problems, warnings): (Vec<_>, Vec<_>) = violations.into_iter().partition(|v| {
                v.level == Level::Rfc5280 || (pedantic && v.level == Level::Pedantic)
            });
            if problems.is_empty() {
                *accepted.borrow_mut() = Some(Success {
                    chain: ders,
                    warnings,
                    path_subjects: subjects,
                });
                Ok(())
            } else {
                rejected.borrow_mut().push((subjects, problems));
                Err(webpki::Error::ExtensionValueInvalid)
            }
        };
        let crl_refs = self.crl_refs();
        let revocation = webpki::RevocationOptionsBuilder::new(&crl_refs)
            .ok()
            .map(|b| {
                b.with_depth(webpki::RevocationCheckDepth::Chain)
                    .with_status_policy(webpki::UnknownStatusPolicy::Allow)
                    .with_expiration_policy(webpki::ExpirationPolicy::Ignore)
                    .build()
            });
        let result = ee.verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            &tas,
            pool,
            self.time,
            KeyUsage::server_auth(),
            revocation,
            Some(&check),
        );
        match result {
            Ok(_) => match accepted.into_inner() {
                Some(success) => Ok(success),
                None => Err(Failure {
                    error: webpki::Error::UnknownIssuer,
                    violations: rejected.into_inner(),
                    stopped_at: None,
                    after_key_identifiers: false,
                }),
            },
            Err(error) => Err(Failure {
                error,
                violations: rejected.into_inner(),
                stopped_at: None,
                after_key_identifiers: false,
            }),
        }
    }

    fn crl_refs(&self) -> Vec<&webpki::CertRevocationList<'a>> {
        self.crls.iter().collect()
    }

    /// Explains a refusal: the first broken link, or webpki's reason.
    fn diagnose(&self, failure: &Failure, known: &[Known<'a>], out: &mut Vec<ChainFinding>) {
        use webpki::Error as E;
        let problem = |code, file, message: String| ChainFinding {
            code,
            severity: Severity::Problem,
            file,
            message,
        };
        let leaf_subject = self.leaf.subject_text();
        let now = self.time.as_secs();
        if !within_validity(&self.leaf, now) {
            out.push(problem(
                ChainCode::LeafExpired,
                Role::Cert,
                format!("the server certificate ({leaf_subject}) is outside its validity period ({}); renew it", validity_text(&self.leaf)),
            ));
        }
        match &failure.error {
            E::CaUsedAsEndEntity => out.push(problem(
                ChainCode::LeafIsCa,
                Role::Cert,
                format!("the server certificate ({leaf_subject}) is a certificate authority (basicConstraints cA=TRUE); the certificate file must start with the server's own certificate"),
            )),
            E::RequiredEkuNotFoundContext(_) => out.push(problem(
                ChainCode::NotServerAuth,
                Role::Cert,
                format!("the server certificate ({leaf_subject}) has an extended key usage without TLS server authentication; ask your authority for a certificate with serverAuth"),
            )),
            E::TrailingData(_) if self.leaf_der.len() > TLS_CERTIFICATE_MAX => {
                let names = match self.leaf.get::<x509_cert::ext::pkix::SubjectAltName>() {
                    Some(Ok((_, san))) => format!(" (it lists {} names)", san.0.len()),
                    _ => String::new(),
                };
                out.push(problem(
                    ChainCode::Malformed,
                    Role::Cert,
                    format!("the server certificate is {} bytes{names}, more than the 65,535 bytes TLS libraries accept; ask your authority for several smaller certificates, each with fewer names", self.leaf_der.len()),
                ));
            }
            E::CertRevoked => out.push(problem(
                ChainCode::Revoked,
                Role::Cert,
                "a certificate of the chain is revoked by its authority's CRL; get a new certificate".to_owned(),
            )),
            _ => {}
        }
        if let Some(finding) = look_alikes(failure, known) {
            // The search stopped early: a walk over the same candidates would too.
            out.push(finding);
            return;
        }
        let profile_failure = !failure.violations.is_empty()
            && matches!(failure.error, E::ExtensionValueInvalid | E::UnknownIssuer);
        if profile_failure {
            // A path was built, but it breaks the profile: report that path's problems.
            if let Some((subjects, violations)) = failure.violations.last() {
                for v in violations {
                    out.push(violation_finding(v, Severity::Problem, subjects));
                }
            }
        }
        // Walk the issuer links ourselves to name the broken one.
        let before = out.len();
        self.walk(known, out);
        if out[..before].iter().any(|f| f.code == ChainCode::CaExpired) {
            // The expired root was already reported from the profile check.
            let mut seen = false;
            out.retain(|f| f.code != ChainCode::CaExpired || !std::mem::replace(&mut seen, true));
        }
        let walk_found = out.len() > before;
        if out.is_empty() && !walk_found {
            out.push(problem(
                ChainCode::ChainInvalid,
                Role::Ca,
                format!("the chain is refused by rustls-webpki ({}); check that the CA file holds the intermediates and root of your authority", webpki_words(&failure.error)),
            ));
        }
    }

    fn walk(&self, known: &[Known<'a>], out: &mut Vec<ChainFinding>) {
        let now = self.time.as_secs();
        let mut current: (&Certificate<'_>, &'a [u8], Role) =
            (&self.leaf, self.leaf_der.as_ref(), Role::Cert);
        let mut visited: Vec<usize> = Vec::new();
        for depth in 0..8 {
            let (cert, der, role) = current;
            let subject = cert.subject_text();
            let issuer_raw = cert.tbs.issuer;
            let issuer = cert.issuer_text();
            let sig_oid = cert.signature_algorithm.oid.to_string();
            if let Some((_, alg)) = profile::WEAK_SIGNATURES.iter().find(|(o, _)| *o == sig_oid) {
                if depth == 0 || !is_self_issued(cert) {
                    out.push(ChainFinding {
                        code: ChainCode::WeakSignature,
                        severity: Severity::Problem,
                        file: role,
                        message: format!("{subject} is signed with {alg}, which clients refuse; ask the authority to reissue it with SHA-256"),
                    });
                    return;
                }
            }
            let candidates: Vec<usize> = known
                .iter()
                .enumerate()
                .filter(|(i, k)| {
                    !visited.contains(i)
                        && k.cert.as_ref().is_some_and(|c| c.tbs.subject == issuer_raw)
                })
                .map(|(i, _)| i)
                .collect();
            if candidates.is_empty() {
                if depth > 0 && is_self_issued(cert) {
                    return;
                }
                let (code, message) = if depth == 0 && is_self_issued(cert) {
                    (
                        ChainCode::ChainIncomplete,
                        "the server certificate is self-signed and no CA file holds it, so no client will trust it; get a certificate from an authority (or, for tests only, put the same certificate in the CA file)".to_owned(),
                    )
                } else if depth == 0 {
                    (
                        ChainCode::ChainIncomplete,
                        format!("no certificate of the issuer \"{issuer}\" of the server certificate was supplied; add that intermediate certificate (and its own issuers up to the root) to the CA file"),
                    )
                } else {
                    (
                        ChainCode::RootMissing,
                        format!("the CA file stops at \"{subject}\"; append the root certificate \"{issuer}\" of your authority to the CA file"),
                    )
                };
                out.push(ChainFinding {
                    code,
                    severity: Severity::Problem,
                    file: Role::Ca,
                    message,
                });
                return;
            }
            let Some((signed, _)) = issuers::parts(der) else {
                return;
            };
            let mut next = None;
            for &i in &candidates {
                let Some((_, key)) = issuers::parts(known[i].der.as_ref()) else {
                    continue;
                };
                match self.sigs.verifies(&signed, &key) {
                    Some(true) => {
                        next = Some(i);
                        break;
                    }
                    Some(false) => {}
                    // Out of budget: say nothing rather than something wrong.
                    None => return,
                }
            }
            let Some(next) = next else {
                out.push(ChainFinding {
                    code: ChainCode::ChainSignatureInvalid,
                    severity: Severity::Problem,
                    file: Role::Ca,
                    message: format!("the signature on \"{subject}\" does not verify with the key of the supplied \"{issuer}\"; the CA file holds a different certificate of that name: download the matching one from your authority"),
                });
                return;
            };
            visited.push(next);
            let k = &known[next];
            let Some(kc) = k.cert.as_ref() else { return };
            if !within_validity(kc, now) {
                out.push(ChainFinding {
                    code: ChainCode::CaExpired,
                    severity: Severity::Problem,
                    file: k.origin.role(),
                    message: format!("the authority certificate \"{issuer}\" is outside its validity period ({}); replace it with the current one from your authority", validity_text(kc)),
                });
                return;
            }
            if k.anchor {
                return;
            }
            current = (kc, k.der.as_ref(), k.origin.role());
        }
    }
}

/// The refusal when the issuer search gave up (our budget, or webpki's own): the files
/// hold too many certificates that look like an issuer of the chain.
fn look_alikes(failure: &Failure, known: &[Known<'_>]) -> Option<ChainFinding> {
    use webpki::Error as E;
    let (name, count) = match &failure.stopped_at {
        Some((name, count)) => (Some(name.as_slice()), *count),
        None if matches!(
            failure.error,
            E::MaximumSignatureChecksExceeded | E::MaximumPathBuildCallsExceeded
        ) =>
        {
            (None, known.len())
        }
        None => return None,
    };
    // Attribute them to the file most of them came from.
    let same_name = |k: &&Known<'_>| match (name, k.cert.as_ref()) {
        (Some(n), Some(c)) => c.tbs.subject.value() == n,
        (None, _) => true,
        _ => false,
    };
    let in_cert_file = known
        .iter()
        .filter(same_name)
        .filter(|k| k.origin.role() == Role::Cert)
        .count();
    let in_total = known.iter().filter(same_name).count().max(1);
    let file = if in_cert_file * 2 > in_total {
        Role::Cert
    } else {
        Role::Ca
    };
    let which = match name {
        Some(n) => format!("{count} certificates named \"{}\"", light::name_text(n)),
        None => format!("{count} certificates that could issue one another"),
    };
    let hint = if failure.after_key_identifiers {
        // The certificates the key identifiers point to (if any) led nowhere.
        "; none of them with the key identifier the certificate names for its issuer gives a valid chain, so the issuing intermediate is probably missing: add it (your authority's chain download) and remove the look-alikes"
    } else {
        ". Keep only the intermediate certificates of your authority and its root in the CA file"
    };
    Some(ChainFinding {
        code: ChainCode::LookAlikes,
        severity: Severity::Problem,
        file,
        message: format!(
            "the {} file holds too many look-alike certificates ({which}, with different keys) to check them all: the search for the chain stopped after {} signature checks{hint}",
            file.as_str(),
            issuers::SIGNATURE_BUDGET
        ),
    })
}

/// The largest certificate rustls-webpki reads: its outer SEQUENCE has a length of at most
/// two bytes, so 65,535 bytes of contents (webpki refuses more with `TrailingData`).
const TLS_CERTIFICATE_MAX: usize = 65_535 + 4;

/// webpki's error in words where its name says little, else its name.
fn webpki_words(e: &webpki::Error) -> String {
    use webpki::Error as E;
    match e {
        E::TrailingData(_) | E::BadDer => {
            "a certificate is not valid DER, or larger than the 64 KiB TLS libraries accept".into()
        }
        E::UnsupportedCertVersion => "a certificate is not an X.509 version 3 certificate".into(),
        E::MaximumPathDepthExceeded => "the chain is longer than TLS clients accept".into(),
        other => format!("{other:?}"),
    }
}

fn violation_finding(v: &Violation, severity: Severity, subjects: &[String]) -> ChainFinding {
    let who = subjects
        .get(v.position)
        .map(String::as_str)
        .unwrap_or("a certificate of the chain");
    let what = if v.position == 0 {
        "the server certificate"
    } else if v.position + 1 == subjects.len() {
        "the root certificate"
    } else {
        "the intermediate certificate"
    };
    ChainFinding {
        code: if v.message.starts_with(profile::ROOT_EXPIRED) {
            ChainCode::CaExpired
        } else {
            ChainCode::NonConformant
        },
        severity,
        file: if v.position == 0 {
            Role::Cert
        } else {
            Role::Ca
        },
        message: format!(
            "{what} \"{who}\": {}; the authority must reissue it",
            v.message
        ),
    }
}

fn success_findings(
    verdict: &mut Verdict,
    success: &Success,
    input: &ChainInput<'_>,
    cache: &Cache<'_>,
    from_platform: bool,
) {
    let warn = |code, file, message: String| ChainFinding {
        code,
        severity: Severity::Warning,
        file,
        message,
    };
    for v in &success.warnings {
        verdict.findings.push(violation_finding(
            v,
            Severity::Warning,
            &success.path_subjects,
        ));
    }
    if from_platform {
        let root = success
            .chain
            .last()
            .map(|c| cache.subject(c.as_ref()))
            .unwrap_or_default();
        verdict.findings.push(warn(
            ChainCode::RootFromPlatform,
            Role::Ca,
            format!("the root \"{root}\" is not in the CA file; it was taken from the system trust store. Append it to the CA file so every client can build the chain"),
        ));
    }
    // Where each chain certificate came from.
    let ca_pos: Vec<Option<usize>> = success
        .chain
        .iter()
        .map(|c| input.ca_file.iter().position(|d| d.as_ref() == c.as_ref()))
        .collect();
    let in_ca: Vec<usize> = ca_pos.iter().flatten().copied().collect();
    if in_ca.windows(2).any(|w| w[0] > w[1]) {
        verdict.findings.push(warn(
            ChainCode::ChainReordered,
            Role::Ca,
            "the CA file is not in chain order; it was accepted and reordered. Write the intermediates first (the one that signed the server certificate at the top) and the root last".to_owned(),
        ));
    }
    let in_cert: Vec<String> = success
        .chain
        .iter()
        .filter(|c| {
            input
                .cert_file_extras
                .iter()
                .any(|d| d.as_ref() == c.as_ref())
        })
        .map(|c| format!("\"{}\"", cache.subject(c.as_ref())))
        .collect();
    if !in_cert.is_empty() {
        verdict.findings.push(warn(
            ChainCode::ChainInCertFile,
            Role::Cert,
            format!("the certificate file also holds the chain certificate(s) {}; they were used, but belong in the CA file", in_cert.join(", ")),
        ));
    }
    // Each file's unused certificates, attributed to that file, listed in short.
    for (file, list) in [
        (Role::Ca, input.ca_file),
        (Role::Cert, input.cert_file_extras),
    ] {
        let unused: Vec<&[u8]> = list
            .iter()
            .map(AsRef::as_ref)
            .filter(|d| {
                !success.chain.iter().any(|c| c.as_ref() == *d) && *d != input.leaf.as_ref()
            })
            .collect();
        if unused.is_empty() {
            continue;
        }
        // Grouped by subject (look-alikes share one), in first-seen order.
        let mut groups: Vec<(&[u8], usize)> = Vec::new();
        let mut by_subject: HashMap<&[u8], usize> = HashMap::new();
        for d in &unused {
            let key = cache.get(d).map_or(*d, |c| c.tbs.subject.value());
            match by_subject.get(key) {
                Some(&g) => groups[g].1 += 1,
                None => {
                    by_subject.insert(key, groups.len());
                    groups.push((d, 1));
                }
            }
        }
        let names = in_short(
            groups.iter().map(|(d, n)| match n {
                1 => format!("\"{}\"", cache.subject(d)),
                n => format!("{n} named \"{}\"", cache.subject(d)),
            }),
            groups.len(),
        );
        let what = if unused.len() == 1 {
            format!("one certificate of the {} file is", file.as_str())
        } else {
            format!(
                "{} certificates of the {} file are",
                unused.len(),
                file.as_str()
            )
        };
        verdict.findings.push(warn(
            ChainCode::ExtraCertificates,
            file,
            format!("{what} unrelated to this chain and dropped: {names}"),
        ));
    }
}

/// How many items of a list a message shows before it says how many more there are.
pub(crate) const LIST_SHOWN: usize = 3;

/// The first [`LIST_SHOWN`] of `total` items, comma separated, then "and N more".
pub(crate) fn in_short(items: impl Iterator<Item = String>, total: usize) -> String {
    let shown: Vec<String> = items.take(LIST_SHOWN).collect();
    let mut out = shown.join(", ");
    if total > shown.len() {
        out.push_str(&format!(" and {} more", total - shown.len()));
    }
    out
}

fn name_findings(verdict: &mut Verdict, engine: &Engine<'_>, reference: Option<&Host>) {
    let Some(reference) = reference else { return };
    match names::covers_parsed(&engine.leaf, reference) {
        Ok(mut nv) => {
            // webpki applies name constraints to SANs only; a CN standing in for a SAN would
            // slip past a constrained CA, so the fallback is off below one.
            if matches!(nv.matched, Some(MatchedBy::CommonName(_)))
                && chain_has_name_constraints(&verdict.chain, &engine.cache)
            {
                nv.matched = None;
            }
            if nv.matched.is_none() {
                verdict.findings.push(ChainFinding {
                    code: ChainCode::NameMismatch,
                    severity: Severity::Problem,
                    file: Role::Cert,
                    message: format!("{nv}; get a certificate that includes {reference} or correct the external URL"),
                });
            } else if matches!(nv.matched, Some(MatchedBy::CommonName(_))) {
                verdict.findings.push(ChainFinding {
                    code: ChainCode::CnOnly,
                    severity: Severity::Warning,
                    file: Role::Cert,
                    message: format!("the certificate has no subjectAltName; its common name was used for {reference}. Browsers and rustls ignore the common name: get a certificate with a DNS subjectAltName"),
                });
            }
            verdict.names = Some(nv);
        }
        Err(e) => verdict.findings.push(ChainFinding {
            code: ChainCode::Malformed,
            severity: Severity::Problem,
            file: Role::Cert,
            message: e.to_string(),
        }),
    }
}

fn chain_has_name_constraints(chain: &[CertificateDer<'_>], cache: &Cache<'_>) -> bool {
    chain.iter().any(|der| {
        cache.get(der.as_ref()).is_some_and(|c| {
            c.extension(der::oid::ObjectIdentifier::new_unwrap("2.5.29.30"))
                .is_some()
        })
    })
}

fn is_self_issued(c: &Certificate<'_>) -> bool {
    c.is_self_issued()
}

fn within_validity(c: &Certificate<'_>, now: u64) -> bool {
    let v = &c.tbs.validity;
    let nb = v.not_before.to_unix_duration().as_secs();
    let na = v.not_after.to_unix_duration().as_secs();
    nb <= now && now <= na
}

fn validity_text(c: &Certificate<'_>) -> String {
    let v = &c.tbs.validity;
    format!("{} to {}", v.not_before, v.not_after)
}

/// Profile rules for CRLs (RFC 5280 5.2.3): a CRL number, not critical.
fn crl_profile(der: &[u8]) -> Vec<String> {
    const CRL_NUMBER: der::oid::ObjectIdentifier =
        der::oid::ObjectIdentifier::new_unwrap("2.5.29.20");
    let Ok(crl) = x509_cert::crl::CertificateList::<x509_cert::certificate::Rfc5280>::from_der(der)
    else {
        return vec!["a CRL is not valid DER".to_owned()];
    };
    let exts = crl.tbs_cert_list.crl_extensions.as_deref().unwrap_or(&[]);
    match exts.iter().find(|e| e.extn_id == CRL_NUMBER) {
        None => vec!["a CRL has no CRLNumber extension (RFC 5280 5.2.3)".to_owned()],
        Some(e) if e.critical => {
            vec!["a CRL's CRLNumber extension is critical (RFC 5280 5.2.3)".to_owned()]
        }
        Some(_) => Vec::new(),
    }
}

/// A CRL issued by a path certificate whose keyUsage lacks cRLSign (RFC 5280 4.2.1.3).
fn crl_issuer_problems(
    certs: &[&Certificate<'_>],
    crls: &[webpki::CertRevocationList<'_>],
) -> Vec<Violation> {
    let mut out = Vec::new();
    for (i, c) in certs.iter().enumerate().skip(1) {
        let Some(subject) = c.subject_der() else {
            continue;
        };
        // webpki's issuer() is the Name's contents without the SEQUENCE header.
        let issues_a_crl = crls
            .iter()
            .any(|crl| subject.ends_with(crl.issuer()) && !crl.issuer().is_empty());
        if !issues_a_crl {
            continue;
        }
        if let Some(Ok((_, ku))) = c.get::<x509_cert::ext::pkix::KeyUsage>() {
            if !ku.crl_sign() {
                out.push(Violation {
                    position: i,
                    level: Level::Rfc5280,
                    message: "it publishes a CRL but its keyUsage lacks cRLSign (RFC 5280 4.2.1.3)"
                        .to_owned(),
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_ranked_in_all_order() {
        let mut names: Vec<&str> = ChainCode::ALL.iter().map(|c| c.as_str()).collect();
        for (i, code) in ChainCode::ALL.iter().enumerate() {
            assert_eq!(usize::from(code.rank()), i, "{code}");
        }
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ChainCode::ALL.len());
    }
}
