//! Putting it together: parse an upload, pick the leaf, run the key check, date checks.

use bmcert_topology::Host;
use rustls_pki_types::{CertificateDer, UnixTime};
use time::OffsetDateTime;

use bmcert_verify::{ChainCode as VerifyCode, ChainInput, Role, Severity, Verdict};

use crate::cert::{parse_certificates_up_to, CertSummary, KeyAlgorithm};
use crate::key::{parse_private_key, KeyError};
use crate::keycheck::{self, KeyCheck};
use crate::pkcs12::{parse_pkcs12, Pkcs12Error};
use crate::report::{Code, FileKind, Finding, ParsedBundle, Report};

/// Certificates shorter than this many RSA bits are `weak_key`.
pub const MIN_RSA_BITS: u32 = 2048;

/// A certificate ending sooner than this after the check time is `expires_soon`.
pub const EXPIRES_SOON: core::time::Duration = core::time::Duration::from_secs(30 * 24 * 3600);

enum Source<'a> {
    Files {
        cert: &'a [u8],
        key: &'a [u8],
        ca: Option<&'a [u8]>,
    },
    Pkcs12 {
        p12: &'a [u8],
        password: &'a str,
    },
}

/// A bundle check to run: the uploaded bytes, options, then [`BundleCheck::check`].
///
/// Sans-I/O: the caller reads the files and passes the time.
///
/// ```
/// # use bmcert_bundle::BundleCheck;
/// # use rustls_pki_types::UnixTime;
/// let report = BundleCheck::files(b"not a certificate", b"", None).check(UnixTime::now());
/// assert!(!report.is_valid());
/// assert_eq!(report.problems[0].code.as_str(), "cert_unreadable");
/// ```
pub struct BundleCheck<'a> {
    source: Source<'a>,
    key_password: Option<&'a [u8]>,
    host: Option<Host>,
    platform_roots: &'a [CertificateDer<'a>],
}

impl<'a> BundleCheck<'a> {
    /// A bundle of separate files: certificate, private key and (optional) CA file.
    pub fn files(cert: &'a [u8], key: &'a [u8], ca: Option<&'a [u8]>) -> Self {
        Self {
            source: Source::Files { cert, key, ca },
            key_password: None,
            host: None,
            platform_roots: &[],
        }
    }

    /// A PKCS#12 file and its password (empty for none).
    pub fn pkcs12(p12: &'a [u8], password: &'a str) -> Self {
        Self {
            source: Source::Pkcs12 { p12, password },
            key_password: None,
            host: None,
            platform_roots: &[],
        }
    }

    /// The password of an encrypted PKCS#8 key file.
    pub fn key_password(mut self, password: &'a [u8]) -> Self {
        self.key_password = Some(password);
        self
    }

    /// The host the bundle is meant for: the certificate's CN or a SAN must cover it.
    pub fn host(mut self, host: Host) -> Self {
        self.host = Some(host);
        self
    }

    /// Roots of the platform trust store (the caller loads them, for example with
    /// rustls-native-certs). They only complete a chain whose root is missing from the CA
    /// file, with the warning `root_from_platform`; without them such a chain is refused
    /// with `root_missing`.
    pub fn platform_roots(mut self, roots: &'a [CertificateDer<'a>]) -> Self {
        self.platform_roots = roots;
        self
    }

    /// Runs every check at time `now` and returns the report.
    pub fn check(self, now: UnixTime) -> Report {
        let mut report = self.check_all(now);
        cap_repeated(&mut report.problems);
        cap_repeated(&mut report.warnings);
        report
    }

    fn check_all(self, now: UnixTime) -> Report {
        let now_secs = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
        let mut report = Report {
            host: self.host,
            checked_at: OffsetDateTime::from_unix_timestamp(now_secs)
                .ok()
                .and_then(|t| {
                    t.format(&time::format_description::well_known::Rfc3339)
                        .ok()
                })
                .unwrap_or_default(),
            ..Report::default()
        };

        let (certs, key, ca, files) = match self.source {
            Source::Files { cert, key, ca } => {
                let certs = match parse_certificates_up_to(
                    cert,
                    crate::limits::CERTIFICATE_FILE,
                    "a certificate file",
                ) {
                    Ok(c) => Some(c),
                    Err(e) => {
                        report.push_problem(
                            Code::CertUnreadable,
                            FileKind::Cert,
                            format!("The certificate file cannot be read: {e}. Upload the server certificate as PEM (-----BEGIN CERTIFICATE-----) or DER."),
                        );
                        None
                    }
                };
                let key = match parse_private_key(key, self.key_password) {
                    Ok(k) => Some(k),
                    Err(e) => {
                        let code = match e {
                            KeyError::Encrypted
                            | KeyError::LegacyEncrypted
                            | KeyError::BadPassword => Code::KeyEncrypted,
                            _ => Code::KeyUnreadable,
                        };
                        let fix = if code == Code::KeyUnreadable {
                            " Upload the private key that was generated with the certificate request, as PEM (-----BEGIN PRIVATE KEY-----) or DER."
                        } else {
                            ""
                        };
                        report.push_problem(
                            code,
                            FileKind::Key,
                            format!("The key file cannot be used: {e}.{fix}"),
                        );
                        None
                    }
                };
                let ca = match ca {
                    None => Vec::new(),
                    Some(bytes) => match parse_certificates_up_to(
                        bytes,
                        crate::limits::CERTIFICATE_FILE,
                        "a CA file",
                    ) {
                        Ok(c) => c,
                        Err(e) => {
                            report.push_problem(
                                Code::CaUnreadable,
                                FileKind::Ca,
                                format!("The CA file cannot be read: {e}. Upload the certificate of the issuing authority (and its root), as PEM or DER."),
                            );
                            Vec::new()
                        }
                    },
                };
                (
                    certs,
                    key,
                    ca,
                    [FileKind::Cert, FileKind::Key, FileKind::Ca],
                )
            }
            Source::Pkcs12 { p12, password } => {
                let files = [FileKind::P12; 3];
                match parse_pkcs12(p12, password) {
                    Ok(contents) => (Some(contents.certs), Some(contents.key), Vec::new(), files),
                    Err(e) => {
                        let code = if e == Pkcs12Error::BadPassword {
                            Code::P12BadPassword
                        } else {
                            Code::P12Unreadable
                        };
                        report.push_problem(
                            code,
                            FileKind::P12,
                            format!("The PKCS#12 file cannot be opened: {e}."),
                        );
                        (None, None, Vec::new(), files)
                    }
                }
            }
        };
        let [cert_file, key_file, ca_file] = files;
        let pkcs12 = cert_file == FileKind::P12;
        let ca_unreadable = report.has(Code::CaUnreadable);

        let key_weak = key.as_ref().is_some_and(|k| {
            k.algorithm() == KeyAlgorithm::Rsa && k.bits().is_some_and(|b| b < MIN_RSA_BITS)
        });
        if let (true, Some(k)) = (key_weak, &key) {
            report.push_problem(
                Code::WeakKey,
                key_file,
                format!(
                    "The private key is RSA {} bits; at least {MIN_RSA_BITS} bits are required. Generate a new key (`openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048` or an ECDSA P-256 key) and have the certificate reissued for it.",
                    k.bits().unwrap_or(0)
                ),
            );
        }

        let Some(mut certs) = certs.filter(|c| !c.is_empty()) else {
            summarize_chain(&mut report, &ca, ca_file, now_secs);
            return report;
        };

        let summaries: Vec<Option<CertSummary>> =
            certs.iter().map(|c| CertSummary::from_der(c)).collect();
        let cert_weak = |i: usize| {
            summaries[i].as_ref().is_some_and(|s| {
                s.key_algorithm == KeyAlgorithm::Rsa && s.key_bits.is_some_and(|b| b < MIN_RSA_BITS)
            })
        };

        let mut leaf_index = 0;
        if let Some(k) = &key {
            match keycheck::load(k) {
                Ok(signing_key) => {
                    let mut outcome = KeyCheck::Mismatch;
                    for (i, c) in certs.iter().enumerate() {
                        let r = keycheck::check(signing_key.as_ref(), c);
                        if r == KeyCheck::Match {
                            leaf_index = i;
                            outcome = r;
                            break;
                        }
                        if i == 0 {
                            outcome = r;
                        }
                    }
                    match outcome {
                        KeyCheck::Match => {}
                        KeyCheck::Mismatch if cert_weak(0) => {}
                        KeyCheck::Mismatch => report.push_problem(
                            Code::KeyMismatch,
                            key_file,
                            if pkcs12 {
                                "The private key in the PKCS#12 file does not belong to its certificate (a test signature made with the key does not verify with the certificate's public key). Export the PKCS#12 file again from the matching certificate and key.".to_owned()
                            } else {
                                "The private key does not belong to the certificate (a test signature made with the key does not verify with the certificate's public key). Upload the key generated together with this certificate's request, or the certificate issued for this key.".to_owned()
                            },
                        ),
                        KeyCheck::BadCertificate(why) => report.push_problem(
                            Code::CertUnreadable,
                            cert_file,
                            format!("The certificate cannot be used for TLS ({why}). Ask the certificate authority for a standard X.509 v3 server certificate."),
                        ),
                        KeyCheck::Unloadable(why) => report.push_problem(
                            Code::KeyUnreadable,
                            key_file,
                            format!("The private key cannot be used for TLS: {why}. Use an RSA (2048 bits or more), ECDSA P-256/P-384 or Ed25519 key."),
                        ),
                    }
                }
                Err(_) if key_weak => {}
                Err(why) => report.push_problem(
                    Code::KeyUnreadable,
                    key_file,
                    format!("The private key cannot be loaded by the TLS library ({why}). Use an RSA (2048 bits or more), ECDSA P-256/P-384 or Ed25519 key."),
                ),
            }
        }

        let leaf = certs.remove(leaf_index);
        let mut leaf_summaries = summaries;
        let leaf_summary = leaf_summaries.remove(leaf_index);
        if !certs.is_empty() && !pkcs12 {
            report.push_warning(
                Code::ChainInCertFile,
                cert_file,
                format!(
                    "The certificate file holds {} certificates; the one matching the key is used as the server certificate and the {} other(s) are treated as part of the chain. Prefer uploading the server certificate alone and the authority's certificates in the CA file.",
                    certs.len() + 1,
                    certs.len()
                ),
            );
        }
        if let Some(s) = &leaf_summary {
            check_cert(&mut report, s, cert_file, "certificate", now_secs);
        }
        report.leaf = leaf_summary;
        for s in leaf_summaries.iter().flatten() {
            check_cert(&mut report, s, cert_file, "chain certificate", now_secs);
            report.chain.push(s.clone());
        }
        summarize_chain(&mut report, &ca, ca_file, now_secs);

        // Chain and name verdicts. A PKCS#12 file carries its authorities itself, so its
        // extra certificates play the CA file's part. An unreadable CA file was reported
        // already; a chain verdict over nothing would only repeat it.
        let mut chain = if ca_unreadable {
            certs.iter().chain(&ca).cloned().collect()
        } else {
            let (extras, authorities): (&[CertificateDer<'static>], &[CertificateDer<'static>]) =
                if pkcs12 { (&[], &certs) } else { (&certs, &ca) };
            let verdict = bmcert_verify::verify(&ChainInput {
                leaf: &leaf,
                cert_file_extras: extras,
                ca_file: authorities,
                platform_roots: self.platform_roots,
                reference: report.host.as_ref(),
                time: now,
            });
            merge_verdict(&mut report, &verdict, cert_file, ca_file);
            if verdict.chain.is_empty() {
                certs.iter().chain(&ca).cloned().collect()
            } else {
                verdict.chain
            }
        };
        chain.retain(|c| c.as_ref() != leaf.as_ref());
        if let Some(key) = key {
            report.bundle = Some(ParsedBundle { leaf, chain, key });
        }
        report
    }
}

/// How many certificates of one file a per-certificate finding names before the others are
/// counted: a file may hold thousands of certificates.
const REPEATS_SHOWN: usize = 3;

/// Keeps the per-certificate findings (`expires_soon`, `weak_key`) of the first
/// [`REPEATS_SHOWN`] certificates of each file and counts the others in one more finding.
fn cap_repeated(findings: &mut Vec<Finding>) {
    let mut counts: Vec<((Code, FileKind), usize)> = Vec::new();
    let mut kept = Vec::with_capacity(findings.len());
    for f in findings.drain(..) {
        if !matches!(f.code, Code::ExpiresSoon | Code::WeakKey) {
            kept.push(f);
            continue;
        }
        let key = (f.code, f.file);
        let i = match counts.iter().position(|(k, _)| *k == key) {
            Some(i) => i,
            None => {
                counts.push((key, 0));
                counts.len() - 1
            }
        };
        counts[i].1 += 1;
        if counts[i].1 <= REPEATS_SHOWN {
            kept.push(f);
        }
    }
    for ((code, file), n) in counts {
        if n > REPEATS_SHOWN {
            kept.push(Finding {
                code,
                file,
                message: format!(
                    "... and {} more certificates of the {file} file with the same finding.",
                    n - REPEATS_SHOWN
                ),
            });
        }
    }
    *findings = kept;
}

/// Adds `bmcert-verify`'s findings to the report, leaving out what this crate already said
/// about the same certificates (the leaf's dates, certificates in the certificate file, an
/// authority's dates), so nothing is listed twice.
fn merge_verdict(report: &mut Report, verdict: &Verdict, cert_file: FileKind, ca_file: FileKind) {
    for f in &verdict.findings {
        let duplicate = match f.code {
            VerifyCode::LeafExpired => report.has(Code::Expired) || report.has(Code::NotYetValid),
            VerifyCode::ChainInCertFile => report.has(Code::ChainInCertFile),
            VerifyCode::CaExpired => report.has(Code::Chain(VerifyCode::CaExpired)),
            _ => false,
        };
        if duplicate {
            continue;
        }
        let file = match f.file {
            Role::Cert => cert_file,
            Role::Ca => ca_file,
        };
        let mut message = f.message.clone();
        if file == FileKind::P12
            && matches!(
                f.code,
                VerifyCode::ChainIncomplete | VerifyCode::RootMissing
            )
        {
            // The verifier speaks of "the CA file"; a PKCS#12 file carries its chain inside.
            message.push_str(". In a PKCS#12 file the authorities travel inside it: export it again with them, for example `openssl pkcs12 -export -in cert.pem -inkey key.pem -certfile ca.pem -out bundle.p12`, where ca.pem holds the intermediate and root certificates");
        }
        match f.severity {
            Severity::Problem => report.push_problem(Code::Chain(f.code), file, message),
            Severity::Warning => report.push_warning(Code::Chain(f.code), file, message),
        }
    }
}

fn summarize_chain(report: &mut Report, ca: &[CertificateDer<'static>], file: FileKind, now: i64) {
    for s in ca.iter().filter_map(|c| CertSummary::from_der(c)) {
        check_cert(report, &s, file, "CA certificate", now);
        report.chain.push(s);
    }
}

fn check_cert(report: &mut Report, s: &CertSummary, file: FileKind, what: &str, now: i64) {
    let is_leaf = what == "certificate";
    if is_leaf && now < s.not_before_unix {
        report.push_problem(
            Code::NotYetValid,
            file,
            format!(
                "The {what} `{}` is not valid before {} (checked at {}). Check the server's clock, or wait until that date.",
                s.label(),
                s.not_before,
                report.checked_at
            ),
        );
    } else if is_leaf && now > s.not_after_unix {
        report.push_problem(
            Code::Expired,
            file,
            format!(
                "The {what} `{}` expired on {} (checked at {}). Renew the certificate with your certificate authority and upload the new one.",
                s.label(),
                s.not_after,
                report.checked_at
            ),
        );
    } else if (s.not_before_unix..=s.not_after_unix).contains(&now)
        && s.not_after_unix.saturating_sub(now) < EXPIRES_SOON.as_secs() as i64
    {
        // An authority's dates matter only when it is on the path to the root, which
        // bmcert-verify reports as `ca_expired`: an unrelated expired certificate in the CA
        // file (an old cross-signed root, say) must not refuse the bundle, as clients ignore
        // it too. A soon-ending one is still worth a warning.
        report.push_warning(
            Code::ExpiresSoon,
            file,
            format!(
                "The {what} `{}` expires on {}, in less than 30 days. Renew it soon.",
                s.label(),
                s.not_after
            ),
        );
    }
    if s.key_algorithm == KeyAlgorithm::Rsa && s.key_bits.is_some_and(|b| b < MIN_RSA_BITS) {
        report.push_problem(
            Code::WeakKey,
            file,
            format!(
                "The {what} `{}` has an RSA key of {} bits; at least {MIN_RSA_BITS} bits are required. Have it reissued with a stronger key.",
                s.label(),
                s.key_bits.unwrap_or(0)
            ),
        );
    }
}
