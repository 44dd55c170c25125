//! [`CheckedBundle`]: a bundle that passed the check for a host, the only thing the
//! installation's gate accepts.

use core::fmt;

use bmcert_topology::Host;
use rustls_pki_types::{CertificateDer, UnixTime};

use crate::check::BundleCheck;
use crate::key::PrivateKey;
use crate::report::{ParsedBundle, Report};

/// A bundle that passed every check of [`BundleCheck`] for one host, with the report.
///
/// Only [`BundleCheck::check_for`] makes one (the fields are private and there is no other
/// constructor), so holding a `CheckedBundle` proves the certificate, its key and its chain
/// were checked, for [`host`](Self::host), at [`checked_at`](Self::checked_at). The
/// installation's gate (`bmcert::CertManager::install_checked`) takes nothing else, and
/// re-checks that this host is still the target's URL host. A [`Report`] (its fields are
/// public) cannot be turned into one:
///
/// ```compile_fail
/// use bmcert_bundle::{CheckedBundle, Report};
/// let forged = CheckedBundle::from(Report::default());
/// ```
///
/// `Debug` never shows the key.
pub struct CheckedBundle {
    bundle: ParsedBundle,
    report: Report,
    host: Host,
    checked_at: UnixTime,
}

impl BundleCheck<'_> {
    /// Runs every check at time `now` for `host` (the target's external URL host): the
    /// checked bundle when the report has no problem, else the report (boxed: it is large).
    ///
    /// ```
    /// # use bmcert_bundle::BundleCheck;
    /// # use bmcert_topology::Host;
    /// # use rustls_pki_types::UnixTime;
    /// let chain = bmcert_test::fixtures::ChainSpec::new(&["mail.example.test"]).build();
    /// let (cert, key, ca) = (chain.leaf.cert_pem.as_bytes(), chain.leaf.key_pem.as_bytes(), chain.ca_pem());
    /// let host = Host::parse("https://mail.example.test").unwrap();
    /// let checked = BundleCheck::files(cert, key, Some(ca.as_bytes())).check_for(host.clone(), UnixTime::now()).unwrap();
    /// assert_eq!(checked.host(), &host);
    /// let other = Host::parse("https://webmail.acme.test").unwrap();
    /// let refused = BundleCheck::files(cert, key, Some(ca.as_bytes())).check_for(other, UnixTime::now()).unwrap_err();
    /// assert_eq!(refused.problems[0].code.as_str(), "name_mismatch");
    /// assert!(refused.bundle.is_none(), "a refused report keeps no key");
    /// ```
    pub fn check_for(self, host: Host, now: UnixTime) -> Result<CheckedBundle, Box<Report>> {
        let mut report = self.host(host.clone()).check(now);
        let bundle = report.bundle.take();
        match bundle {
            Some(bundle) if report.is_valid() => Ok(CheckedBundle {
                bundle,
                report,
                host,
                checked_at: now,
            }),
            _ => Err(Box::new(report)),
        }
    }
}

impl CheckedBundle {
    /// The host it was checked for (the target's URL host at the time of the check).
    pub fn host(&self) -> &Host {
        &self.host
    }

    /// When it was checked.
    pub fn checked_at(&self) -> UnixTime {
        self.checked_at
    }

    /// The report of the check (no problem; its warnings, the certificate summaries).
    pub fn report(&self) -> &Report {
        &self.report
    }

    /// The server certificate.
    pub fn leaf(&self) -> &CertificateDer<'static> {
        &self.bundle.leaf
    }

    /// The rest of the chain, as checked.
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.bundle.chain
    }

    /// The private key. Secret.
    pub fn secret_key(&self) -> &PrivateKey {
        &self.bundle.key
    }

    /// The DNS names and IP addresses the server certificate covers (its SANs).
    pub fn names(&self) -> Vec<String> {
        self.report
            .leaf
            .as_ref()
            .map(crate::CertSummary::names)
            .unwrap_or_default()
    }

    /// The server certificate's notAfter, seconds since the Unix epoch.
    pub fn not_after_unix(&self) -> i64 {
        self.report.leaf.as_ref().map_or(0, |l| l.not_after_unix)
    }

    /// The bundle (to be stored) and the report.
    pub fn into_parts(self) -> (ParsedBundle, Report) {
        (self.bundle, self.report)
    }
}

impl fmt::Debug for CheckedBundle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CheckedBundle")
            .field("host", &self.host)
            .field("checked_at", &self.checked_at.as_secs())
            .field("bundle", &self.bundle)
            .finish_non_exhaustive()
    }
}
