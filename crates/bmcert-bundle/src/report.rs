//! The administrator's report: problems, warnings, certificate summaries and the parsed bundle.

use core::fmt;

use bmcert_topology::Host;
use rustls_pki_types::CertificateDer;
use serde::{Serialize, Serializer};

use crate::cert::CertSummary;
use crate::key::PrivateKey;

/// A stable identifier of a finding, written in `snake_case` in reports and JSON.
///
/// Scripts match on these strings; they never change meaning. New checks add variants
/// (for instance the chain and name checks of `bmcert-verify`), hence `#[non_exhaustive]`.
/// Every code is documented, with its fix, in `docs/problem-codes.md`.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Code {
    /// The certificate file holds no readable certificate.
    CertUnreadable,
    /// The key file holds no readable private key.
    KeyUnreadable,
    /// The private key is password protected and could not be decrypted.
    KeyEncrypted,
    /// The private key does not belong to the certificate.
    KeyMismatch,
    /// The CA file holds no readable certificate.
    CaUnreadable,
    /// The PKCS#12 file cannot be read.
    P12Unreadable,
    /// The PKCS#12 password is wrong.
    P12BadPassword,
    /// A certificate's validity ended before the check time.
    Expired,
    /// A certificate's validity starts after the check time.
    NotYetValid,
    /// An RSA key shorter than 2048 bits.
    WeakKey,
    /// A certificate expires within 30 days (warning).
    ExpiresSoon,
    /// The certificate file also holds other certificates, moved to the chain (warning).
    ChainInCertFile,
    /// A chain or name finding of `bmcert-verify` (`chain_incomplete`, `root_missing`,
    /// `name_mismatch`, `ca_expired`, `chain_reordered`, ...), carried with its own stable code.
    Chain(bmcert_verify::ChainCode),
}

impl Code {
    /// Every code this crate defines, in documentation order ([`Code::Chain`] aside: see
    /// `bmcert_verify::ChainCode::ALL`).
    pub const ALL: &'static [Self] = &[
        Self::CertUnreadable,
        Self::KeyUnreadable,
        Self::KeyEncrypted,
        Self::KeyMismatch,
        Self::CaUnreadable,
        Self::P12Unreadable,
        Self::P12BadPassword,
        Self::Expired,
        Self::NotYetValid,
        Self::WeakKey,
        Self::ExpiresSoon,
        Self::ChainInCertFile,
    ];

    /// The stable `snake_case` name of the code.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CertUnreadable => "cert_unreadable",
            Self::KeyUnreadable => "key_unreadable",
            Self::KeyEncrypted => "key_encrypted",
            Self::KeyMismatch => "key_mismatch",
            Self::CaUnreadable => "ca_unreadable",
            Self::P12Unreadable => "p12_unreadable",
            Self::P12BadPassword => "p12_bad_password",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::WeakKey => "weak_key",
            Self::ExpiresSoon => "expires_soon",
            Self::ChainInCertFile => "chain_in_cert_file",
            Self::Chain(code) => code.as_str(),
        }
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Code {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// The uploaded file a finding concerns.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FileKind {
    /// The certificate file (`--cert`).
    Cert,
    /// The private key file (`--key`).
    Key,
    /// The CA file (`--ca`).
    Ca,
    /// The PKCS#12 file (`--p12`).
    P12,
}

impl FileKind {
    /// The stable name used in reports: `cert`, `key`, `ca` or `p12`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cert => "cert",
            Self::Key => "key",
            Self::Ca => "ca",
            Self::P12 => "p12",
        }
    }
}

impl fmt::Display for FileKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for FileKind {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// One problem or warning: what, in which file, and how to fix it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The stable code.
    pub code: Code,
    /// The file concerned.
    pub file: FileKind,
    /// A sentence for an administrator, naming the fix. Never contains key material.
    pub message: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({} file): {}", self.code, self.file, self.message)
    }
}

/// The certificates and key of an accepted (or at least parsed) bundle, ready to install.
///
/// `Debug` shows the certificates' count, never the key.
pub struct ParsedBundle {
    /// The end-entity certificate: the one matching the key.
    pub leaf: CertificateDer<'static>,
    /// The other certificates, in the order found (extra certificates of the certificate
    /// file first, then the CA file).
    pub chain: Vec<CertificateDer<'static>>,
    /// The private key.
    pub key: PrivateKey,
}

impl fmt::Debug for ParsedBundle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ParsedBundle")
            .field("leaf_len", &self.leaf.len())
            .field("chain_len", &self.chain.len())
            .field("key", &self.key)
            .finish()
    }
}

/// The outcome of checking a bundle.
///
/// The bundle is accepted when [`Report::problems`] is empty; [`Report::warnings`] never
/// refuse it. Other checks (chain building, name matching) add their findings with
/// [`Report::push_problem`] and [`Report::push_warning`].
///
/// Serializes (for `--json`) as
/// `{"valid", "problems", "warnings", "host", "checked_at", "leaf", "chain"}`; the private
/// key is never serialized.
#[derive(Debug, Default)]
pub struct Report {
    /// Findings that refuse the bundle.
    pub problems: Vec<Finding>,
    /// Findings worth knowing that do not refuse the bundle.
    pub warnings: Vec<Finding>,
    /// A summary of the leaf certificate, when one was read.
    pub leaf: Option<CertSummary>,
    /// Summaries of the chain certificates, in [`ParsedBundle::chain`] order.
    pub chain: Vec<CertSummary>,
    /// The reference host the bundle is meant for (`--url`), when given.
    pub host: Option<Host>,
    /// The time the bundle was checked at, RFC 3339.
    pub checked_at: String,
    /// The parsed certificates and key, when the certificate and key could be read.
    pub bundle: Option<ParsedBundle>,
}

impl Report {
    /// True when the bundle is accepted: no problems.
    pub fn is_valid(&self) -> bool {
        self.problems.is_empty()
    }

    /// Adds a finding that refuses the bundle.
    pub fn push_problem(&mut self, code: Code, file: FileKind, message: impl Into<String>) {
        self.problems.push(Finding {
            code,
            file,
            message: message.into(),
        });
    }

    /// Adds a finding that does not refuse the bundle.
    pub fn push_warning(&mut self, code: Code, file: FileKind, message: impl Into<String>) {
        self.warnings.push(Finding {
            code,
            file,
            message: message.into(),
        });
    }

    /// True when a problem or warning carries `code`.
    pub fn has(&self, code: Code) -> bool {
        self.problems
            .iter()
            .chain(&self.warnings)
            .any(|f| f.code == code)
    }

    /// The codes of all problems then all warnings, in order.
    pub fn codes(&self) -> Vec<Code> {
        self.problems
            .iter()
            .chain(&self.warnings)
            .map(|f| f.code)
            .collect()
    }
}

#[derive(Serialize)]
struct ReportJson<'a> {
    valid: bool,
    problems: &'a [Finding],
    warnings: &'a [Finding],
    host: Option<String>,
    checked_at: &'a str,
    leaf: Option<&'a CertSummary>,
    chain: &'a [CertSummary],
}

impl Serialize for Report {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        ReportJson {
            valid: self.is_valid(),
            problems: &self.problems,
            warnings: &self.warnings,
            host: self.host.as_ref().map(ToString::to_string),
            checked_at: &self.checked_at,
            leaf: self.leaf.as_ref(),
            chain: &self.chain,
        }
        .serialize(s)
    }
}

/// How many chain certificates the text report describes before it counts the rest.
const CHAIN_SHOWN: usize = 10;

impl fmt::Display for Report {
    /// The readable report the `bmcert check` command prints.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_valid() {
            writeln!(f, "Bundle accepted (checked at {}).", self.checked_at)?;
        } else {
            writeln!(
                f,
                "Bundle refused: {} problem(s) (checked at {}).",
                self.problems.len(),
                self.checked_at
            )?;
        }
        if let Some(host) = &self.host {
            writeln!(f, "Reference host: {host}")?;
        }
        if !self.problems.is_empty() {
            writeln!(f, "\nProblems:")?;
            for p in &self.problems {
                writeln!(f, "  - {p}")?;
            }
        }
        if !self.warnings.is_empty() {
            writeln!(f, "\nWarnings:")?;
            for w in &self.warnings {
                writeln!(f, "  - {w}")?;
            }
        }
        if let Some(leaf) = &self.leaf {
            writeln!(f, "\nCertificate:")?;
            leaf.fmt_indented(f, "  ")?;
        }
        // A file may hold thousands of certificates: the text shows the first ones and a
        // count (the JSON report lists them all).
        for (i, c) in self.chain.iter().enumerate().take(CHAIN_SHOWN) {
            writeln!(f, "\nChain certificate {}:", i + 1)?;
            c.fmt_indented(f, "  ")?;
        }
        if self.chain.len() > CHAIN_SHOWN {
            writeln!(
                f,
                "\n... and {} more chain certificates (the JSON report lists them all).",
                self.chain.len() - CHAIN_SHOWN
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct_and_round_trip_through_json() {
        let mut names: Vec<&str> = Code::ALL.iter().map(|c| c.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Code::ALL.len());
        for code in Code::ALL {
            let json = serde_json::to_string(code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
        }
    }

    #[test]
    fn findings_from_other_checks_slot_in() {
        let mut report = Report::default();
        assert!(report.is_valid());
        report.push_warning(
            Code::Chain(bmcert_verify::ChainCode::ChainReordered),
            FileKind::Ca,
            "reordered",
        );
        assert!(report.is_valid());
        report.push_problem(
            Code::Chain(bmcert_verify::ChainCode::RootMissing),
            FileKind::Ca,
            "add the root",
        );
        assert!(!report.is_valid());
        assert!(report.has(Code::Chain(bmcert_verify::ChainCode::RootMissing)));
        assert_eq!(
            report.codes(),
            vec![
                Code::Chain(bmcert_verify::ChainCode::RootMissing),
                Code::Chain(bmcert_verify::ChainCode::ChainReordered)
            ]
        );
        let v: serde_json::Value = serde_json::to_value(&report).unwrap();
        assert_eq!(v["valid"], false);
        assert_eq!(v["problems"][0]["code"], "root_missing");
        assert_eq!(v["problems"][0]["file"], "ca");
        assert_eq!(v["warnings"][0]["code"], "chain_reordered");
        assert!(report
            .to_string()
            .contains("root_missing (ca file): add the root"));
    }
}
