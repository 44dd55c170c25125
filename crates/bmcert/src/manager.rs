//! [`CertManager`]: check, install, disable, list, roll back and export certificates.

use std::sync::Arc;

use bmcert_bundle::{BundleCheck, CheckedBundle, Report};
use bmcert_store::{
    keys, BundleMeta, Condition, Damaged, DirStore, Fence, Installed, Revision, SecretKey, Source,
    Store, StoreError,
};
use bmcert_topology::{DomainName, Host, SharedTopology, Target, Topology, TopologyError};
use rustls_pki_types::{CertificateDer, UnixTime};
use time::OffsetDateTime;
use zeroize::Zeroizing;

/// Why a certificate operation could not be carried out.
///
/// A bundle refused by its report is *not* an error: [`CertManager::install_files`] returns
/// the report with [`InstallOutcome::installed`] empty.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ManagerError {
    /// The store failed.
    #[error("certificate store: {0}")]
    Store(#[from] StoreError),
    /// The target is not in the topology (or its URL is unusable).
    #[error("{0}")]
    Topology(#[from] TopologyError),
    /// `disable` on the system certificate.
    #[error("the system certificate cannot be disabled: the main URL, IMAP and SMTP always need one; install a replacement instead (bmcert install --target system ...)")]
    SystemCannotBeDisabled,
    /// The target has no installed certificate.
    #[error("{0} has no installed certificate")]
    NothingInstalled(Target),
    /// The report accepted the bundle but carries no parsed bundle (a bug in the report).
    #[error("the bundle report accepted the upload but returned no certificate and key")]
    NoBundleInReport,
    /// The private key could not be taken over into the store.
    #[error("the private key format is not supported by the store")]
    UnsupportedKey,
    /// The gate refused a bundle checked for another host than the target's URL host in
    /// the current topology (the URL changed since the check): check it again.
    #[error("the certificate for {target} was checked for {checked}, but {target}'s external URL host is now {current}; check and install it again for {current}")]
    CheckedForAnotherHost {
        /// The target.
        target: Target,
        /// The host it was checked for.
        checked: Host,
        /// The target's URL host now.
        current: Host,
    },
    /// The bootstrap certificate could not be made.
    #[error("the bootstrap certificate could not be made: {0}")]
    Bootstrap(#[from] crate::bootstrap::BootstrapError),
    /// `disable`, `rollback` or `export` of a domain the topology does not list and the store
    /// holds nothing for: most likely a misspelt name.
    #[error("{0} is not in the topology and the store holds no certificate for it; check the name (`bmcert list` shows the targets that have one)")]
    UnknownTarget(Target),
    /// A target's record key could not be formed (a bug: every domain name fits).
    #[error("the store has no record key for this target")]
    NoRecordKey,
}

impl ManagerError {
    /// The stable problem code of a refusal the administrator can act on
    /// (`domain_without_url`, `system_cannot_be_disabled`, `nothing_installed`,
    /// `no_previous_version`, `store_damaged`), `None` for a failure (store, bug). The CLI exits with 1 for
    /// the refusals and prints the code.
    pub fn code(&self) -> Option<&'static str> {
        match self {
            Self::Topology(t) => t.code(),
            Self::SystemCannotBeDisabled => Some("system_cannot_be_disabled"),
            Self::NothingInstalled(_) => Some("nothing_installed"),
            Self::UnknownTarget(_) => Some("unknown_target"),
            Self::Store(StoreError::NoPreviousVersion { .. }) => Some("no_previous_version"),
            Self::Store(StoreError::Damaged(_)) => Some("store_damaged"),
            Self::CheckedForAnotherHost { .. } => Some("checked_for_another_host"),
            _ => None,
        }
    }
}

/// The per-target records a disable deletes with the certificate.
const TARGET_RECORDS: [&str; 4] = [
    keys::RENEWAL_PREFIX,
    keys::WARNING_PREFIX,
    keys::CONTACT_PREFIX,
    keys::PROFILE_PREFIX,
];

/// What an install attempt did: the report, always, and the installed version when the
/// report had no problem.
#[derive(Debug)]
pub struct InstallOutcome {
    /// The full bundle report (problems, warnings, certificate summaries), as
    /// `bmcert check` prints it. Its `bundle` (with the key) has been taken out.
    pub report: Report,
    /// The installed version; `None` when the report refused the bundle (nothing changed).
    pub installed: Option<InstalledVersion>,
}

impl InstallOutcome {
    /// Whether the bundle was installed.
    pub fn is_installed(&self) -> bool {
        self.installed.is_some()
    }
}

/// The version an install created.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstalledVersion {
    /// The target.
    pub target: Target,
    /// The per-target version number.
    pub version: u64,
    /// The store revision of the install.
    pub revision: Revision,
    /// The stored metadata.
    pub meta: BundleMeta,
}

/// One row of [`CertManager::list`].
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct TargetStatus {
    /// `system` or `domain:NAME`.
    #[serde(serialize_with = "display")]
    pub target: Target,
    /// `files`, `acme` or `bootstrap`.
    pub source: Source,
    /// The names the certificate covers.
    pub names: Vec<String>,
    /// Its notAfter.
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
    /// Whole days from the time passed to `list` until `not_after` (negative once expired).
    pub days_left: i64,
    /// The installed version.
    pub version: u64,
    /// When it was installed.
    #[serde(with = "time::serde::rfc3339")]
    pub installed_at: OffsetDateTime,
    /// SHA-256 of the leaf certificate.
    pub fingerprint: String,
    /// What the administrator must know (the bootstrap certificate is not trusted by
    /// browsers), if anything.
    pub warning: Option<&'static str>,
}

fn display<T: core::fmt::Display, S: serde::Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

/// The current certificate of a target as files for services that read PEM files.
pub struct Exported {
    /// The leaf certificate, PEM.
    pub cert_pem: String,
    /// The private key, PEM (zeroized on drop; write it with mode 0600).
    pub secret_key_pem: Zeroizing<String>,
    /// The intermediates (the rest of the chain), PEM; empty when there are none.
    pub ca_pem: String,
    /// The version exported.
    pub version: u64,
}

impl core::fmt::Debug for Exported {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Exported")
            .field("version", &self.version)
            .field("secret_key_pem", &"[secret key elided]")
            .finish_non_exhaustive()
    }
}

/// The entry point services link: the installation's certificates over a [`Store`] and
/// the [`Topology`] that says which URL each target serves.
///
/// Every install goes through the bundle report of `bmcert-bundle` (what `bmcert check`
/// prints), checked against the target's external URL, and reaches the store only when
/// the report has no problem. Time is passed in (`now`), never read here.
///
/// ```
/// use std::sync::Arc;
/// use bmcert::{block_on, CertManager};
/// use bmcert::store::DirStore;
/// use bmcert::topology::{Target, Topology};
///
/// let dir = tempfile::tempdir().unwrap();
/// let topology = Topology::from_toml_str(
///     "default_domain = \"example.test\"\n[system]\nurl = \"https://mail.example.test\"\n",
/// ).unwrap();
/// let manager = CertManager::new(Arc::new(DirStore::open(dir.path()).unwrap()), topology);
/// let now = rustls_pki_types::UnixTime::now();
/// let outcome = block_on(manager.install_files(&Target::System, b"garbage", b"", None, now)).unwrap();
/// assert!(!outcome.is_installed());
/// assert_eq!(outcome.report.problems[0].code.as_str(), "cert_unreadable");
/// assert!(block_on(manager.list(now)).unwrap().is_empty());
/// ```
#[derive(Clone, Debug)]
pub struct CertManager {
    store: Arc<dyn Store>,
    topology: SharedTopology,
    platform_roots: Arc<Vec<CertificateDer<'static>>>,
}

impl CertManager {
    /// A manager over `store` for the installation described by `topology`.
    pub fn new(store: Arc<dyn Store>, topology: Topology) -> Self {
        Self::with_shared_topology(store, SharedTopology::new(topology))
    }

    /// A manager over `store` reading the installation's shared topology (the one the
    /// [`Installation`](crate::Installation) owns): a change of it applies to the next
    /// check and install.
    pub fn with_shared_topology(store: Arc<dyn Store>, topology: SharedTopology) -> Self {
        Self {
            store,
            topology,
            platform_roots: Arc::new(Vec::new()),
        }
    }

    /// The platform's trust anchors (loaded by the caller, for example with
    /// rustls-native-certs, as `bmcert check` does). The report uses them only to complete
    /// a chain whose CA file lacks the root; without them such a bundle is refused
    /// (`root_missing`).
    pub fn with_platform_roots(mut self, roots: Vec<CertificateDer<'static>>) -> Self {
        self.platform_roots = Arc::new(roots);
        self
    }

    /// A manager over the directory store at `dir` (the embedded default).
    pub fn open_dir(dir: &std::path::Path, topology: Topology) -> Result<Self, ManagerError> {
        Ok(Self::new(Arc::new(DirStore::open(dir)?), topology))
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The current topology.
    pub fn topology(&self) -> Arc<Topology> {
        self.topology.get()
    }

    /// Checks a certificate, key and CA file against `target`'s external URL and installs
    /// them through the gate ([`install_checked`](Self::install_checked)) when the report
    /// has no problem (source `files`).
    pub async fn install_files(
        &self,
        target: &Target,
        cert: &[u8],
        key: &[u8],
        ca: Option<&[u8]>,
        now: UnixTime,
    ) -> Result<InstallOutcome, ManagerError> {
        let host = self.topology.get().host_for(target)?.clone();
        let checked = BundleCheck::files(cert, key, ca)
            .platform_roots(&self.platform_roots)
            .check_for(host, now);
        self.install_outcome(target, checked, Source::Files).await
    }

    /// Like [`install_files`](Self::install_files) for a PKCS#12 file and its password.
    pub async fn install_p12(
        &self,
        target: &Target,
        p12: &[u8],
        password: &str,
        now: UnixTime,
    ) -> Result<InstallOutcome, ManagerError> {
        let host = self.topology.get().host_for(target)?.clone();
        let checked = BundleCheck::pkcs12(p12, password)
            .platform_roots(&self.platform_roots)
            .check_for(host, now);
        self.install_outcome(target, checked, Source::Files).await
    }

    async fn install_outcome(
        &self,
        target: &Target,
        checked: Result<CheckedBundle, Box<Report>>,
        source: Source,
    ) -> Result<InstallOutcome, ManagerError> {
        match checked {
            Ok(checked) => self.install_checked(target, checked, source, None).await,
            Err(report) if report.is_valid() => Err(ManagerError::NoBundleInReport),
            Err(report) => {
                tracing::info!(target = %target, problems = report.problems.len(), "bundle refused by its report; nothing installed");
                Ok(InstallOutcome {
                    report: *report,
                    installed: None,
                })
            }
        }
    }

    /// The gate: the only way a certificate reaches the store. Uploads, PKCS#12 files,
    /// ACME issues and renewals, and the bootstrap certificate all pass here.
    ///
    /// It takes a [`CheckedBundle`], which only the check makes (`BundleCheck::check_for`),
    /// re-checks that the host it was checked for is `target`'s URL host in the current
    /// topology ([`ManagerError::CheckedForAnotherHost`] otherwise, and
    /// `domain_without_url` for a domain without its own URL), and writes it with `fence`
    /// (the renewal lock's, when a renewal installs) checked atomically by the store. A
    /// hand-made report cannot be installed:
    ///
    /// ```compile_fail
    /// # use bmcert::{CertManager, store::Source, topology::Target};
    /// # async fn f(manager: CertManager) {
    /// let forged = bmcert::bundle::Report::default();
    /// manager.install_checked(&Target::System, forged, Source::Files, None).await;
    /// # }
    /// ```
    pub async fn install_checked(
        &self,
        target: &Target,
        checked: CheckedBundle,
        source: Source,
        fence: Option<&Fence>,
    ) -> Result<InstallOutcome, ManagerError> {
        let condition = Condition {
            fence: fence.cloned(),
            ..Condition::none()
        };
        self.gate(target, checked, source, condition).await
    }

    async fn gate(
        &self,
        target: &Target,
        checked: CheckedBundle,
        source: Source,
        condition: Condition,
    ) -> Result<InstallOutcome, ManagerError> {
        let topology = self.topology.get();
        let host = topology.host_for(target)?;
        if host != checked.host() {
            return Err(ManagerError::CheckedForAnotherHost {
                target: target.clone(),
                checked: checked.host().clone(),
                current: host.clone(),
            });
        }
        // The store's own reading of the leaf (names, notAfter, fingerprint): what every
        // later read proves the stored bundle against.
        let meta = BundleMeta::for_leaf(source, to_datetime(checked.checked_at()), checked.leaf())
            .map_err(StoreError::InvalidBundle)?;
        let (parsed, report) = checked.into_parts();
        let key = SecretKey::from_private_key_der(&parsed.key.secret_der())
            .ok_or(ManagerError::UnsupportedKey)?;
        let mut chain = Vec::with_capacity(1 + parsed.chain.len());
        chain.push(parsed.leaf);
        chain.extend(parsed.chain);
        let bundle = bmcert_store::Bundle::new(chain, key, meta)?;
        let installed = self.store.install(target, &bundle, &condition).await?;
        Ok(InstallOutcome {
            report,
            installed: Some(summary(installed)),
        })
    }

    /// When the system target has no certificate, makes the bootstrap certificate: a
    /// self-signed one for the system URL's host and additional names (source `bootstrap`,
    /// valid a year), through the gate like any other, so the HTTPS, IMAP and SMTP servers
    /// answer from their first start. Browsers do not trust it: [`list`](Self::list) flags
    /// it, and the first upload or ACME certificate replaces it. Returns `None` (and changes
    /// nothing) when the system target already has a certificate, also when another process
    /// made one meanwhile.
    pub async fn bootstrap(&self, now: UnixTime) -> Result<Option<InstallOutcome>, ManagerError> {
        if self.store.current(&Target::System).await?.is_some() {
            return Ok(None);
        }
        let checked = crate::bootstrap::bootstrap_bundle(&self.topology.get(), now)?;
        match self
            .gate(
                &Target::System,
                checked,
                Source::Bootstrap,
                Condition::absent(),
            )
            .await
        {
            Ok(outcome) => Ok(Some(outcome)),
            Err(ManagerError::Store(StoreError::Conflict { .. })) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Deletes a domain's certificate: the domain falls back to the system certificate.
    ///
    /// As the administrator manual says ("this operation will remove the domain
    /// certificates from the servers"), the store keeps nothing of it: the certificate, its
    /// private key and its older versions are deleted (on every backend,
    /// [`Store::disable`]), and so are the domain's renewal and warning records, so
    /// [`rollback`](Self::rollback) and [`export`](Self::export) then answer
    /// [`ManagerError::NothingInstalled`]. Returns `None` when the domain had nothing to
    /// delete. The system certificate cannot be disabled
    /// ([`ManagerError::SystemCannotBeDisabled`]): replace it instead.
    pub async fn disable(&self, target: &Target) -> Result<Option<Revision>, ManagerError> {
        if target.is_system() {
            return Err(ManagerError::SystemCannotBeDisabled);
        }
        // A domain removed from the topology can still be cleaned up; a name that is neither
        // listed nor stored is refused rather than answered "nothing to do".
        if self.is_unlisted(target) && !self.has_certificate(target).await? {
            return Err(ManagerError::UnknownTarget(target.clone()));
        }
        let revision = self.store.disable(target, &Condition::none()).await?;
        for prefix in TARGET_RECORDS {
            let key = keys::target_key(prefix, target).map_err(|_| ManagerError::NoRecordKey)?;
            self.store.delete(&key, &Condition::none()).await?;
        }
        Ok(revision)
    }

    /// [`disable`](Self::disable) by domain name.
    pub async fn disable_domain(
        &self,
        domain: &DomainName,
    ) -> Result<Option<Revision>, ManagerError> {
        self.disable(&Target::Domain(domain.clone())).await
    }

    /// Every target with a certificate: source, names, expiry and days left at `now`, or,
    /// for a target whose stored certificate fails the store's proof, why it is
    /// [`Damaged`] (problem code `store_damaged`; the other targets are listed as usual).
    pub async fn list(
        &self,
        now: UnixTime,
    ) -> Result<Vec<Result<TargetStatus, Damaged>>, ManagerError> {
        let now = to_datetime(now);
        Ok(self
            .store
            .list()
            .await?
            .into_iter()
            .map(|row| {
                row.map(|l| TargetStatus {
                    days_left: (l.meta.not_after - now).whole_days(),
                    target: l.target,
                    source: l.meta.source,
                    names: l.meta.names,
                    not_after: l.meta.not_after,
                    version: l.version,
                    installed_at: l.meta.installed_at,
                    fingerprint: l.meta.fingerprint.to_string(),
                    warning: l.meta.source.warning(),
                })
            })
            .collect())
    }

    /// Makes the previous version of `target` current again. A target without a current
    /// certificate (never installed, or disabled) is [`ManagerError::NothingInstalled`].
    ///
    /// A damaged current version can be rolled back from: the store proves the version it
    /// returns to.
    pub async fn rollback(&self, target: &Target) -> Result<InstalledVersion, ManagerError> {
        if !self.has_certificate(target).await? {
            return Err(self.nothing_for(target));
        }
        let installed = self.store.rollback(target, &Condition::none()).await?;
        Ok(summary(installed))
    }

    /// The current bundle of `target` as PEM texts.
    pub async fn export(&self, target: &Target) -> Result<Exported, ManagerError> {
        let Some(installed) = self.store.current(target).await? else {
            return Err(self.nothing_for(target));
        };
        let bundle = &installed.bundle;
        let lf = pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF);
        let pem_of =
            |der: &[u8]| pem::encode_config(&pem::Pem::new("CERTIFICATE", der.to_vec()), lf);
        Ok(Exported {
            cert_pem: pem_of(bundle.leaf()),
            secret_key_pem: bundle.secret_key().secret_pem(),
            ca_pem: bundle.chain()[1..].iter().map(|c| pem_of(c)).collect(),
            version: installed.version,
        })
    }
}

impl CertManager {
    /// Whether the store holds a current certificate for `target`, whole or damaged.
    async fn has_certificate(&self, target: &Target) -> Result<bool, ManagerError> {
        match self.store.current(target).await {
            Ok(current) => Ok(current.is_some()),
            Err(StoreError::Damaged(_)) => Ok(true),
            Err(e) => Err(e.into()),
        }
    }

    /// A domain target the current topology does not list.
    fn is_unlisted(&self, target: &Target) -> bool {
        match target {
            Target::System => false,
            Target::Domain(name) => self.topology().domain(name).is_none(),
        }
    }

    /// The refusal for a target with no current certificate: `unknown_target` when the
    /// topology does not list it either, `nothing_installed` otherwise.
    fn nothing_for(&self, target: &Target) -> ManagerError {
        if self.is_unlisted(target) {
            ManagerError::UnknownTarget(target.clone())
        } else {
            ManagerError::NothingInstalled(target.clone())
        }
    }
}

fn summary(installed: Installed) -> InstalledVersion {
    InstalledVersion {
        meta: installed.bundle.meta().clone(),
        target: installed.target,
        version: installed.version,
        revision: installed.revision,
    }
}

fn to_datetime(t: UnixTime) -> OffsetDateTime {
    i64::try_from(t.as_secs())
        .ok()
        .and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok())
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}
