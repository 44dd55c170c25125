//! The background renewer: one pass over the store at a time, sleeping until the next thing
//! to do, with renewal and warning state kept in store records.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

use bmcert_acme::{AcmeClient, IssueRequest, RenewalWindow};
use bmcert_store::{
    keys, ChangeKey, Condition, Fence, Installed, Lease, Listed, RecordKey, Source, Store,
    StoreError,
};
use bmcert_topology::{SharedTopology, Target, Topology};
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};
use tokio::sync::Notify;

use crate::issue_error::IssueError;
use crate::notify::{BoxFuture, Notifier, Warning};
use crate::pass::{self, PlanContext, Snapshot, TargetPlan};
use crate::policy;

pub use bmcert_store::{Clock, SystemClock};

/// A clock the caller sets (tests, simulations). Call [`Renewer::wake`] after moving it.
#[derive(Debug)]
pub struct ManualClock(Mutex<OffsetDateTime>);

impl ManualClock {
    /// A clock showing `now`.
    pub fn new(now: OffsetDateTime) -> Self {
        Self(Mutex::new(now))
    }

    /// Sets the time.
    pub fn set(&self, now: OffsetDateTime) {
        if let Ok(mut t) = self.0.lock() {
            *t = now;
        }
    }

    /// Moves the time forward.
    pub fn advance(&self, by: Duration) {
        if let Ok(mut t) = self.0.lock() {
            *t += by;
        }
    }
}

impl Clock for ManualClock {
    fn now(&self) -> OffsetDateTime {
        self.0
            .lock()
            .map(|t| *t)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }
}

/// Obtains a new certificate for a target and installs it (the ACME flow).
pub trait Issuer: fmt::Debug + Send + Sync {
    /// Orders a certificate for `target`, installs it, and returns nothing or why not,
    /// sorted by what the renewer does next ([`IssueError`]). `names` are the names the current certificate covers; an issuer orders
    /// what the installation gives now ([`AcmeIssuer`]: the topology's URL host and
    /// additional names), so a name removed from the topology is not renewed. `replaces` is the ARI identifier
    /// ([`bmcert_acme::ari_certificate_id`]) of the certificate being replaced, when the CA offers
    /// renewal information; the order names it (RFC 9773 section 5).
    ///
    /// `fence` is the renewal lock the attempt runs under: every store write the issuer
    /// makes (the install above all, and its ACME records) must carry it (a
    /// [`Condition`]'s `fence`), so the store refuses them once the lock was lost. The
    /// renewer keeps the lock alive meanwhile and drops this future when the lock is lost
    /// or the attempt outlives [`RenewerConfig::attempt_timeout`]: an issuer must leave
    /// nothing half-done when dropped at an `await`.
    fn issue<'a>(
        &'a self,
        target: &'a Target,
        names: &'a [String],
        replaces: Option<&'a str>,
        fence: &'a Fence,
    ) -> BoxFuture<'a, Result<(), IssueError>>;

    /// What the issuer would order for `target` now (its names, or why it cannot order),
    /// so that after a [permanent refusal](IssueError::Permanent) the renewer tries again
    /// only once this changes (or the target's certificate does). `None`: the renewer
    /// cannot tell, and waits for the certificate to change.
    fn order_key(&self, _target: &Target) -> Option<String> {
        None
    }

    /// The CA's suggested renewal window for the certificate `leaf_der` (ARI, RFC 9773), or
    /// `None` when the CA offers no renewal information (the lifetime rule applies). The
    /// renewer asks again after the window's [`RenewalWindow::retry_after`](bmcert_acme::RenewalWindow::retry_after), else after
    /// [`ARI_REFRESH`].
    fn renewal_window<'a>(
        &'a self,
        _target: &'a Target,
        _leaf_der: &'a [u8],
    ) -> BoxFuture<'a, Option<RenewalWindow>> {
        Box::pin(async { None })
    }

    /// Whether [`renewal_window`](Self::renewal_window) may answer a window at all. Asking
    /// needs the certificate, which the renewal pass otherwise does not read (its snapshot
    /// is the metadata): an issuer that never offers windows says `false` and the pass
    /// reads no bundle for it. Default `true`.
    fn offers_renewal_window(&self) -> bool {
        true
    }
}

/// How often the renewer asks the CA again for a certificate's renewal window when the CA
/// said nothing (no window, or no `Retry-After`).
pub const ARI_REFRESH: Duration = Duration::hours(6);

/// The [`Issuer`] over an [`AcmeClient`] and the installation's topology.
pub struct AcmeIssuer {
    client: Arc<AcmeClient>,
    topology: SharedTopology,
}

impl fmt::Debug for AcmeIssuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AcmeIssuer")
            .field("client", &self.client)
            .finish_non_exhaustive()
    }
}

impl AcmeIssuer {
    /// Renews through `client` with the names of `topology`.
    pub fn new(client: Arc<AcmeClient>, topology: Topology) -> Self {
        Self::with_shared_topology(client, SharedTopology::new(topology))
    }

    /// Renews through `client` with the names of the installation's shared topology, read
    /// at each order (`bmcert::Installation` owns it).
    pub fn with_shared_topology(client: Arc<AcmeClient>, topology: SharedTopology) -> Self {
        Self { client, topology }
    }

    /// Replaces the topology (after the administrator changed a URL or a name), for every
    /// holder of the shared topology.
    pub fn set_topology(&self, topology: Topology) {
        self.topology.set(topology);
    }

    /// The client.
    pub fn client(&self) -> &Arc<AcmeClient> {
        &self.client
    }
}

impl Issuer for AcmeIssuer {
    /// Orders through `AcmeClient::issue_fenced` the names the topology gives now (the
    /// target's URL host and additional names; not the old certificate's `_names`): the
    /// account registration, the HTTP-01 tokens and the install carry `fence`.
    fn issue<'a>(
        &'a self,
        target: &'a Target,
        _names: &'a [String],
        replaces: Option<&'a str>,
        fence: &'a Fence,
    ) -> BoxFuture<'a, Result<(), IssueError>> {
        Box::pin(async move {
            let topology = self.topology.get();
            let mut request = IssueRequest::new(target.clone());
            // The order names the certificate it replaces (RFC 9773 section 5); bmcert-acme
            // orders once more without it when the CA refuses it.
            request.replaces = replaces.map(str::to_owned);
            self.client
                .issue_fenced(&topology, &request, Some(fence))
                .await
                .map(|_| ())
                .map_err(IssueError::from_acme)
        })
    }

    fn order_key(&self, target: &Target) -> Option<String> {
        Some(
            match bmcert_acme::order_names(&self.topology.get(), target, &[]) {
                Ok(names) => names
                    .iter()
                    .map(|n| n.as_str())
                    .collect::<Vec<_>>()
                    .join(","),
                Err(e) => e.to_string(),
            },
        )
    }

    fn renewal_window<'a>(
        &'a self,
        target: &'a Target,
        leaf_der: &'a [u8],
    ) -> BoxFuture<'a, Option<RenewalWindow>> {
        Box::pin(async move {
            match self.client.renewal_window(leaf_der).await {
                // bmcert-acme keeps its retry_after within a minute and a day.
                Ok(window) => window,
                // No window: the lifetime rule applies, and the renewer asks again later.
                Err(e) => {
                    tracing::warn!(target = %target, error = %e, "renewal information (ARI) unavailable; the lifetime rule applies");
                    None
                }
            }
        })
    }
}

/// What the renewer keeps per target in the store (`renewal/...`), shared by every server.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenewalRecord {
    /// The fingerprint (hex) of the certificate this record is about; a new certificate
    /// starts a fresh record.
    pub fingerprint: String,
    /// The last attempt, seconds since the epoch.
    pub last_attempt: Option<i64>,
    /// The last successful renewal.
    pub last_success: Option<i64>,
    /// Failed attempts in a row on this certificate.
    pub failures: u32,
    /// The last error, in plain words.
    pub last_error: Option<String>,
    /// Not before this time (retry back-off).
    pub next_attempt: Option<i64>,
    /// When the renewer plans to renew this certificate, seconds since the epoch: the CA's
    /// renewal window (ARI) when offered, else the lifetime rule moved earlier by the
    /// rate-limit [`plan`](crate::plan()). Written by the renewer's passes when it changes;
    /// [`status`] reports it (with the back-off of [`next_attempt`](Self::next_attempt)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub planned: Option<i64>,
    /// After a permanent refusal: what the issuer would have ordered then
    /// ([`Issuer::order_key`]); no attempt until that changes (or the certificate does).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused_for: Option<String>,
    /// What the administrator should do about the last error (for the warning e-mail).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

/// What was sent for a target (`warning/...`): the UTC day of the last warning.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WarningRecord {
    /// `YYYY-MM-DD` of the last warning claimed or sent.
    pub day: String,
    /// Whether it was sent (else it is claimed by `by` since `claimed_at`, or released).
    pub sent: bool,
    /// When the claim was taken, seconds since the epoch; `None` once released.
    pub claimed_at: Option<i64>,
    /// The server that claimed it.
    pub by: String,
}

/// What the renewer does and how.
#[derive(Clone, Debug)]
pub struct RenewerConfig {
    /// This server's name in locks and records.
    pub holder: String,
    /// The installation's administrator address. Warnings for an ACME certificate go to
    /// the address given when Let's Encrypt was activated for its target, else to the ACME
    /// account's contact, else here; warnings for uploaded (and bootstrap) certificates go
    /// here, and only when it is set.
    pub warn_to: Option<String>,
    /// The lease of the renewal lock: an attempt renews it every third of this (keep-alive),
    /// and a holder that stops (killed, paused, cut off from the store) loses the lock this
    /// long after its last renewal, so another server can take over.
    pub lock_ttl: StdDuration,
    /// The longest one renewal attempt may take, lock held, from the lock to the install;
    /// past it the attempt is abandoned and counted as a failure (back-off and warnings as
    /// for any failure). Longer than an order takes (`PollSchedule::total`, 5 minutes by
    /// default, plus the account and the checks).
    pub attempt_timeout: StdDuration,
    /// How soon a pass that failed on the store (unreachable, e.g. etcd down) is tried
    /// again. Nothing is ordered meanwhile: renewals wait for the store.
    pub pass_retry: StdDuration,
    /// The longest sleep between two passes (guards against clock jumps).
    pub max_sleep: StdDuration,
    /// The CA's limit on new orders: renewals are spread by [`plan`](crate::plan()) so that
    /// no window holds more (Let's Encrypt's 300 per 3 hours by default).
    pub rate_limit: crate::plan::RateLimit,
}

impl Default for RenewerConfig {
    fn default() -> Self {
        Self {
            holder: format!("renewer-{}", std::process::id()),
            warn_to: None,
            lock_ttl: StdDuration::from_secs(60),
            attempt_timeout: StdDuration::from_secs(900),
            pass_retry: StdDuration::from_secs(30),
            max_sleep: StdDuration::from_secs(3600),
            rate_limit: crate::plan::RateLimit::LETS_ENCRYPT,
        }
    }
}

/// A renewer failure (the store); renewal and mail failures are recorded, not returned.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RenewError {
    /// The store failed.
    #[error("renewal: the store failed while {during}: {source}")]
    Store {
        /// What was being done.
        during: &'static str,
        /// The store's error.
        source: StoreError,
    },
    /// A record's key cannot be formed (a bug-class failure: the names come from this crate
    /// and the target).
    #[error("renewal: internal error while naming the {what}: {source}")]
    RecordKey {
        /// The record (`renewal lock`, `renewal record`, `warning record`).
        what: &'static str,
        /// The key's error.
        source: bmcert_store::RecordKeyError,
    },
    /// A record cannot be encoded as JSON (a bug-class failure).
    #[error("renewal: internal error while encoding the {what}: {source}")]
    Encode {
        /// The record.
        what: &'static str,
        /// serde_json's error.
        source: serde_json::Error,
    },
    /// The target has no certificate.
    #[error("{0} has no certificate installed; issue one first (bmcert acme issue)")]
    NotInstalled(Target),
    /// Another server holds the renewal lock.
    #[error("another server ({holder}) is renewing right now; try again in a few minutes")]
    Busy {
        /// Who holds it.
        holder: String,
        /// When its lease runs out unless the holder keeps it alive (the store's view);
        /// `None` when the store's time could not be read.
        expires_at: Option<OffsetDateTime>,
    },
    /// The renewal lock was lost during the attempt (its lease could not be renewed, or
    /// another server holds it now): the attempt was abandoned before installing, and the
    /// store would refuse its writes anyway (they carry the lock's fencing token).
    #[error("renewing {target} was abandoned, the current certificate stays in place: {reason}; the server holding the renewal lock now takes over")]
    LeaseLost {
        /// The target.
        target: Target,
        /// Why the lock is lost.
        reason: String,
    },
    /// The renewal failed (the current certificate stays); the cause says when it is tried
    /// again.
    #[error("renewing {target} failed, the current certificate stays in place: {cause}; {fix}", fix = cause.fix())]
    Failed {
        /// The target.
        target: Target,
        /// Why, by what the renewer does next (boxed: it is large).
        cause: Box<IssueError>,
    },
    /// A pass found the target still waiting after a failure (its back-off, the CA's
    /// `Retry-After`, or a permanent refusal that nothing changed since): nothing ordered.
    #[error("renewing {target} waits after the last failure: {last_error}")]
    Waiting {
        /// The target.
        target: Target,
        /// The recorded error of the last attempt.
        last_error: String,
    },
    /// The target's current certificate was not obtained through ACME (it was uploaded, or
    /// is the bootstrap certificate): renewing it would silently turn the target into an
    /// ACME one, so nothing is ordered and nothing changes.
    #[error("not_acme: the current certificate of {target} was not obtained from Let's Encrypt (source `{from}`), so it is not renewed; upload its replacement (bmcert install), or switch the target to Let's Encrypt explicitly (bmcert acme issue)")]
    NotAcme {
        /// The target.
        target: Target,
        /// The current certificate's source.
        from: Source,
    },
}

impl RenewError {
    /// The stable problem code of a refusal (`not_acme`, `nothing_installed`), `None` for a
    /// failure. The CLI exits with 1 for refusals and failed renewals.
    pub fn code(&self) -> Option<&'static str> {
        match self {
            Self::NotAcme { .. } => Some("not_acme"),
            Self::NotInstalled(_) => Some("nothing_installed"),
            _ => None,
        }
    }
}

/// [`RenewError::NotAcme`] unless `installed` came from ACME.
fn not_acme(installed: &Installed) -> Result<(), RenewError> {
    match installed.bundle.meta().source {
        Source::Acme => Ok(()),
        from => Err(RenewError::NotAcme {
            target: installed.target.clone(),
            from,
        }),
    }
}

fn store_err(during: &'static str) -> impl FnOnce(StoreError) -> RenewError {
    move |source| RenewError::Store { during, source }
}

/// The state of one target, for `bmcert status` and admin consoles.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RenewalStatus {
    /// `system` or `domain:NAME`.
    pub target: String,
    /// `acme`, `uploaded` or `bootstrap`.
    pub source: String,
    /// The names covered.
    pub names: Vec<String>,
    /// End of validity (RFC 3339).
    pub not_after: String,
    /// The next renewal attempt (RFC 3339), `None` for an uploaded certificate.
    pub next_renewal: Option<String>,
    /// The last attempt (RFC 3339).
    pub last_attempt: Option<String>,
    /// The last error.
    pub last_error: Option<String>,
    /// What the administrator must know about the certificate (the bootstrap certificate
    /// is not trusted by browsers), if anything.
    pub warning: Option<&'static str>,
}

/// What a renewal attempt ended in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A new certificate is installed.
    Renewed,
    /// Someone else renewed it meanwhile; nothing was ordered.
    AlreadyRenewed,
}

/// One pass's result.
#[derive(Clone, Debug, Default)]
pub struct PassReport {
    /// Targets renewed.
    pub renewed: Vec<Target>,
    /// Targets whose attempt failed.
    pub failed: Vec<Target>,
    /// Warnings sent.
    pub warned: Vec<Target>,
    /// When the next pass is needed.
    pub next_wake: Option<OffsetDateTime>,
}

struct Inner {
    store: Arc<dyn Store>,
    issuer: Arc<dyn Issuer>,
    notifier: Arc<dyn Notifier>,
    clock: Arc<dyn Clock>,
    config: RenewerConfig,
    wake: Notify,
    pass: tokio::sync::Mutex<()>,
    /// Renewal windows from the CA per certificate fingerprint, with when they were asked.
    ari: Mutex<std::collections::HashMap<String, (Option<RenewalWindow>, OffsetDateTime)>>,
    /// The last status read from the store, shown (with the store's error) while it is
    /// unreachable.
    last_status: Mutex<Vec<RenewalStatus>>,
}

/// The renewer of an installation: cheap to clone, one per server.
#[derive(Clone)]
pub struct Renewer {
    inner: Arc<Inner>,
}

impl fmt::Debug for Renewer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Renewer")
            .field("holder", &self.inner.config.holder)
            .field("store", &self.inner.store)
            .finish_non_exhaustive()
    }
}

pub(crate) fn unix(t: OffsetDateTime) -> i64 {
    t.unix_timestamp()
}

/// `t` to the whole second, rounded down (never later than `t`: an overdue certificate,
/// whose planned slot is "now", is acted on now).
pub(crate) fn whole_second(t: OffsetDateTime) -> OffsetDateTime {
    from_unix(t.unix_timestamp())
}

pub(crate) fn from_unix(s: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(s).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

fn utc_day(t: OffsetDateTime) -> String {
    let d = t.to_offset(time::UtcOffset::UTC).date();
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

/// The validity of the installed leaf (start from the certificate, end from the metadata).
pub(crate) fn validity(installed: &Installed) -> (OffsetDateTime, OffsetDateTime) {
    let meta = installed.bundle.meta();
    let not_before = bmcert_bundle::CertSummary::from_der(installed.bundle.leaf())
        .map(|s| from_unix(s.not_before_unix))
        .unwrap_or(meta.installed_at);
    (not_before, meta.not_after)
}

impl Renewer {
    /// A renewer over `store`, renewing through `issuer`, warning through `notifier`.
    pub fn new(
        store: Arc<dyn Store>,
        issuer: Arc<dyn Issuer>,
        notifier: Arc<dyn Notifier>,
        clock: Arc<dyn Clock>,
        config: RenewerConfig,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                issuer,
                notifier,
                clock,
                config,
                wake: Notify::new(),
                pass: tokio::sync::Mutex::new(()),
                ari: Mutex::new(std::collections::HashMap::new()),
                last_status: Mutex::new(Vec::new()),
            }),
        }
    }

    /// Makes the background task run a pass now (after moving a [`ManualClock`], or after a
    /// configuration change).
    pub fn wake(&self) {
        self.inner.wake.notify_one();
    }

    async fn record(
        &self,
        target: &Target,
    ) -> Result<(RecordKey, Option<(bmcert_store::Revision, RenewalRecord)>), RenewError> {
        record(self.inner.store.as_ref(), target).await
    }

    async fn record_for(&self, installed: &Installed) -> Result<RenewalRecord, RenewError> {
        record_for(self.inner.store.as_ref(), installed).await
    }

    /// The status of every installed target, with the time this renewer will really act on
    /// each: its renewal window from the CA (ARI) or the rate-limit plan, and the back-off
    /// after a failure (computed as a pass does, so it is exact even before a pass ran).
    ///
    /// While the store is unreachable (etcd down) renewals wait: the rows last read are
    /// returned with the store's error as each row's `last_error`; before any successful
    /// read the store's error is returned.
    pub async fn status(&self) -> Result<Vec<RenewalStatus>, RenewError> {
        match self.status_live().await {
            Ok(rows) => {
                if let Ok(mut last) = self.inner.last_status.lock() {
                    last.clone_from(&rows);
                }
                Ok(rows)
            }
            Err(e @ RenewError::Store { .. }) => {
                let last = self
                    .inner
                    .last_status
                    .lock()
                    .map(|l| l.clone())
                    .unwrap_or_default();
                if last.is_empty() {
                    return Err(e);
                }
                let error = format!("renewals wait until the store answers again: {e}");
                Ok(last
                    .into_iter()
                    .map(|row| RenewalStatus {
                        last_error: Some(error.clone()),
                        ..row
                    })
                    .collect())
            }
            Err(e) => Err(e),
        }
    }

    async fn status_live(&self) -> Result<Vec<RenewalStatus>, RenewError> {
        let store = self.inner.store.as_ref();
        let snapshot = Snapshot::read(store).await?;
        let plan = self.plan(&snapshot).await;
        Ok(snapshot
            .rows
            .iter()
            .zip(plan)
            .map(|(row, plan)| match plan {
                TargetPlan::Acme(a) => status_row(row, &a.record, Some(acts_at(a.due, &a.record))),
                TargetPlan::Uploaded { .. } => status_row(row, &snapshot.record_for(row), None),
            })
            .collect())
    }

    /// The renewal windows the CA offers (ARI) for the ACME certificates of `snapshot`, by
    /// fingerprint: from the cache, or asked again (after the CA's `Retry-After`, else
    /// [`ARI_REFRESH`]), which reads that certificate (the question names it).
    async fn windows(
        &self,
        snapshot: &Snapshot,
    ) -> std::collections::HashMap<String, Option<RenewalWindow>> {
        let mut out = std::collections::HashMap::new();
        if !self.inner.issuer.offers_renewal_window() {
            return out;
        }
        for row in &snapshot.rows {
            if row.meta.source != Source::Acme {
                continue;
            }
            let fp = hex(&row.meta.fingerprint.0);
            let now = self.inner.clock.now();
            let window = match self.cached_window(&fp, now) {
                Some(w) => w,
                None => match self.inner.store.current(&row.target).await {
                    Ok(Some(installed))
                        if installed.bundle.meta().fingerprint == row.meta.fingerprint =>
                    {
                        self.ask_window(&installed, now).await
                    }
                    // Changed since the snapshot, gone, damaged or unreachable: no window
                    // this pass (a damaged one is logged where it is acted on).
                    Ok(_) | Err(_) => None,
                },
            };
            out.insert(fp, window);
        }
        out
    }

    /// Plans a pass over `snapshot` ([`pass::plan_pass`]), with the CA's windows.
    async fn plan(&self, snapshot: &Snapshot) -> Vec<TargetPlan> {
        let windows = self.windows(snapshot).await;
        let cx = PlanContext {
            now: self.inner.clock.now(),
            rate_limit: self.inner.config.rate_limit,
            warn_uploaded: self.inner.config.warn_to.is_some(),
            windows: &windows,
        };
        pass::plan_pass(snapshot, &cx, &|target, rec| {
            self.still_refused(target, rec)
        })
    }

    /// Writes `at`, the time the renewer will act on the certificate `fingerprint` of
    /// `target`, into its renewal record (`stored`: the record as read, with its revision),
    /// so that [`status`] (another process: `bmcert status`) reports it. A compare-and-swap
    /// on the record: a concurrent attempt's write wins, and the next pass writes it again.
    /// A failure is only logged (the time is for display).
    async fn note_planned(
        &self,
        target: &Target,
        fingerprint: &bmcert_store::Fingerprint,
        stored: Option<(bmcert_store::Revision, RenewalRecord)>,
        at: OffsetDateTime,
    ) {
        let result: Result<(), RenewError> = async {
            let fp = hex(&fingerprint.0);
            let key = keys::target_key(keys::RENEWAL_PREFIX, target).map_err(|source| {
                RenewError::RecordKey {
                    what: "renewal record",
                    source,
                }
            })?;
            let (condition, mut rec) = match stored {
                Some((rev, r)) if r.fingerprint == fp => (Condition::at(rev), r),
                Some((rev, _)) => (
                    Condition::at(rev),
                    RenewalRecord {
                        fingerprint: fp,
                        ..RenewalRecord::default()
                    },
                ),
                None => (
                    Condition::absent(),
                    RenewalRecord {
                        fingerprint: fp,
                        ..RenewalRecord::default()
                    },
                ),
            };
            // The planned time, without the back-off (status adds it).
            rec.planned = Some(unix(at));
            let bytes = serde_json::to_vec(&rec).map_err(|source| RenewError::Encode {
                what: "renewal record",
                source,
            })?;
            match self.inner.store.put(&key, &bytes, &condition).await {
                Ok(_) | Err(StoreError::Conflict { .. }) => Ok(()),
                Err(e) => Err(store_err("writing the planned renewal time")(e)),
            }
        }
        .await;
        if let Err(e) = result {
            tracing::debug!(target = %target, error = %e, "renewal: the planned time was not recorded");
        }
    }

    /// Renews `target` now, whether due or not (`bmcert renew`), under the renewal lock.
    /// Only an ACME certificate is renewed: any other is [`RenewError::NotAcme`], and
    /// nothing is ordered or changed.
    pub async fn renew_now(&self, target: &Target) -> Result<Outcome, RenewError> {
        let installed = self
            .inner
            .store
            .current(target)
            .await
            .map_err(store_err("reading the certificate"))?
            .ok_or_else(|| RenewError::NotInstalled(target.clone()))?;
        not_acme(&installed)?;
        let now = self.inner.clock.now();
        self.attempt(&installed, true, now).await
    }

    /// When `installed` is due, and whether that comes from the CA's renewal window (ARI,
    /// asked again after the CA's `Retry-After`, else [`ARI_REFRESH`]) rather than the
    /// lifetime rule.
    async fn due(&self, installed: &Installed) -> (OffsetDateTime, bool) {
        let (nb, na) = validity(installed);
        let key = key_str(&installed.target);
        let fp = hex(&installed.bundle.meta().fingerprint.0);
        let now = self.inner.clock.now();
        let window = match self.cached_window(&fp, now) {
            Some(w) => w,
            None => self.ask_window(installed, now).await,
        };
        (
            policy::next_renewal(nb, na, &key, window.as_ref()),
            window.is_some(),
        )
    }

    /// The cached window of the certificate `fp` (hex), unless it is time to ask again.
    fn cached_window(&self, fp: &str, now: OffsetDateTime) -> Option<Option<RenewalWindow>> {
        if !self.inner.issuer.offers_renewal_window() {
            return Some(None);
        }
        self.inner
            .ari
            .lock()
            .ok()
            .and_then(|m| m.get(fp).cloned())
            .filter(|(w, at)| {
                let refresh = w
                    .as_ref()
                    .and_then(|w| Duration::try_from(w.retry_after).ok())
                    .unwrap_or(ARI_REFRESH);
                now - *at < refresh
            })
            .map(|(w, _)| w)
    }

    /// Asks the CA for `installed`'s window and caches the answer.
    async fn ask_window(
        &self,
        installed: &Installed,
        now: OffsetDateTime,
    ) -> Option<RenewalWindow> {
        let fp = hex(&installed.bundle.meta().fingerprint.0);
        let w = self
            .inner
            .issuer
            .renewal_window(&installed.target, installed.bundle.leaf())
            .await;
        if let Ok(mut m) = self.inner.ari.lock() {
            m.insert(fp, (w.clone(), now));
        }
        w
    }

    /// One renewal attempt under the store's renewal lock. Without `force`, nothing is
    /// ordered when the certificate changed or another server's attempt is recent.
    ///
    /// While the attempt runs its lease is kept alive ([`keep_alive`]); when the lease is
    /// lost the attempt is dropped where it stands ([`RenewError::LeaseLost`]), and past
    /// [`RenewerConfig::attempt_timeout`] it is dropped and recorded as a failure. Every
    /// store write of the attempt carries the lease's fence, so even a holder that stalled
    /// without noticing cannot install.
    ///
    /// The keep-alive runs in the attempt's own task, not beside it: the lease lives only
    /// while the attempt makes progress, so a holder whose attempt is stuck (its thread
    /// blocked, its process paused) stops renewing too, and a live server takes over after
    /// `lock_ttl`.
    async fn attempt(
        &self,
        installed: &Installed,
        force: bool,
        due: OffsetDateTime,
    ) -> Result<Outcome, RenewError> {
        let store = &self.inner.store;
        let config = &self.inner.config;
        let lock = RecordKey::new(keys::RENEWAL_LOCK).map_err(|source| RenewError::RecordKey {
            what: "renewal lock",
            source,
        })?;
        // The lease runs from before the request: the local view of its expiry is early,
        // never late.
        let asked = tokio::time::Instant::now();
        let lease = match store.lock(&lock, &config.holder, config.lock_ttl).await {
            Ok(lease) => lease,
            Err(StoreError::LockHeld {
                holder, expires_at, ..
            }) => {
                let expires_at = OffsetDateTime::parse(
                    &expires_at,
                    &time::format_description::well_known::Rfc3339,
                )
                .ok();
                return Err(RenewError::Busy { holder, expires_at });
            }
            Err(e) => return Err(store_err("taking the renewal lock")(e)),
        };
        let target = &installed.target;
        let result = tokio::select! {
            r = self.attempt_locked(installed, force, due, &lease) => r,
            reason = keep_alive(store.as_ref(), &lease, config.lock_ttl, asked + config.lock_ttl) => {
                tracing::warn!(target = %target, reason = %reason, "renewal: the renewal lock was lost; attempt abandoned before installing");
                Err(RenewError::LeaseLost { target: target.clone(), reason })
            }
            _ = tokio::time::sleep(config.attempt_timeout) => {
                let error = IssueError::TimedOut { seconds: config.attempt_timeout.as_secs() };
                self.record_failure(installed, error, &lease).await
            }
        };
        if let Err(e) = store.unlock(&lease).await {
            tracing::warn!(error = %e, "releasing the renewal lock");
        }
        result
    }

    /// Records a failed attempt on `seen`'s certificate (back-off, last error), fenced by
    /// `lease`, and returns it as [`RenewError::Failed`].
    async fn record_failure(
        &self,
        seen: &Installed,
        error: IssueError,
        lease: &Lease,
    ) -> Result<Outcome, RenewError> {
        let target = &seen.target;
        if let IssueError::LeaseLost { lock, token } = &error {
            return Err(RenewError::LeaseLost {
                target: target.clone(),
                reason: format!("the lock `{lock}` is no longer held with token {token}"),
            });
        }
        let mut rec = self.record_for(seen).await?;
        let done = self.inner.clock.now();
        rec.last_attempt = Some(unix(done));
        rec.failures = rec.failures.saturating_add(1);
        // Back-off, and never before the CA's Retry-After.
        let mut next = done + policy::retry_delay(rec.failures);
        if let Some(after) = error.retry_after() {
            next = next.max(done + after);
        }
        rec.next_attempt = Some(unix(next));
        rec.refused_for = match error.is_retried() {
            true => None,
            // No retry until what would be ordered changes (or the certificate does).
            false => Some(self.inner.issuer.order_key(target).unwrap_or_default()),
        };
        rec.last_error = Some(error.to_string());
        rec.fix = Some(error.fix().to_owned());
        let meta = seen.bundle.meta();
        tracing::warn!(target = %target, names = ?meta.names, not_after = %rfc3339(meta.not_after), error = %error,
            kind = error.kind(), failures = rec.failures, next_attempt = %rfc3339(next), "renewal: failed; the current certificate stays");
        self.write_record(target, &rec, lease).await?;
        Err(RenewError::Failed {
            target: target.clone(),
            cause: Box::new(error),
        })
    }

    /// Whether a permanent refusal recorded in `rec` still holds: the issuer would order
    /// the same thing as when it was refused.
    fn still_refused(&self, target: &Target, rec: &RenewalRecord) -> bool {
        rec.refused_for
            .as_ref()
            .is_some_and(|key| Some(key) == self.inner.issuer.order_key(target).as_ref())
    }

    /// Writes the renewal record of `target`, fenced by `lease`.
    async fn write_record(
        &self,
        target: &Target,
        rec: &RenewalRecord,
        lease: &Lease,
    ) -> Result<(), RenewError> {
        let (key, _) = self.record(target).await?;
        let bytes = serde_json::to_vec(rec).map_err(|source| RenewError::Encode {
            what: "renewal record",
            source,
        })?;
        match self
            .inner
            .store
            .put(&key, &bytes, &Condition::none().fenced_by(lease))
            .await
        {
            Ok(_) => Ok(()),
            Err(StoreError::Fenced { lock, token }) => Err(RenewError::LeaseLost {
                target: target.clone(),
                reason: format!("the lock `{lock}` is no longer held with token {token}"),
            }),
            Err(e) => Err(store_err("writing the renewal record")(e)),
        }
    }

    async fn attempt_locked(
        &self,
        seen: &Installed,
        force: bool,
        due: OffsetDateTime,
        lease: &Lease,
    ) -> Result<Outcome, RenewError> {
        let store = &self.inner.store;
        let target = &seen.target;
        // Under the lock: is it still the certificate we decided to renew?
        let Some(installed) = store
            .current(target)
            .await
            .map_err(store_err("reading the certificate"))?
        else {
            return Err(RenewError::NotInstalled(target.clone()));
        };
        // Replaced by an upload since it was seen: never order over it.
        not_acme(&installed)?;
        let now = self.inner.clock.now();
        let rec = self.record_for(&installed).await?;
        if !force {
            if installed.bundle.meta().fingerprint != seen.bundle.meta().fingerprint {
                return Ok(Outcome::AlreadyRenewed);
            }
            if now < due {
                return Ok(Outcome::AlreadyRenewed);
            }
            if rec.next_attempt.is_some_and(|n| from_unix(n) > now)
                || self.still_refused(target, &rec)
            {
                return Err(RenewError::Waiting {
                    target: target.clone(),
                    last_error: rec.last_error.clone().unwrap_or_default(),
                });
            }
        }
        let meta = installed.bundle.meta();
        let names = meta.names.clone();
        tracing::info!(target = %target, names = ?names, not_after = %rfc3339(meta.not_after), token = lease.token, "renewal: attempt");
        let replaces = match self.due(&installed).await.1 {
            true => bmcert_acme::ari_certificate_id(installed.bundle.leaf()).ok(),
            false => None,
        };
        let fence = lease.fence();
        let result = self
            .inner
            .issuer
            .issue(target, &names, replaces.as_deref(), &fence)
            .await;
        let done = self.inner.clock.now();
        match result {
            Ok(()) => {
                let new = store
                    .current(target)
                    .await
                    .map_err(store_err("reading the new certificate"))?;
                let new_na = new
                    .as_ref()
                    .map(|n| rfc3339(n.bundle.meta().not_after))
                    .unwrap_or_default();
                tracing::info!(target = %target, names = ?names, not_after = %new_na, "renewal: renewed");
                let rec = RenewalRecord {
                    fingerprint: new
                        .map(|n| hex(&n.bundle.meta().fingerprint.0))
                        .unwrap_or_default(),
                    last_attempt: Some(unix(done)),
                    last_success: Some(unix(done)),
                    ..RenewalRecord::default()
                };
                self.write_record(target, &rec, lease).await?;
                Ok(Outcome::Renewed)
            }
            Err(error) => self.record_failure(&installed, error, lease).await,
        }
    }

    /// Where the warning for `target` goes: for an ACME certificate the address given when
    /// Let's Encrypt was activated for the target (`contact/<target>`), else the ACME
    /// account's contact, else the administrator address ([`RenewerConfig::warn_to`]); for
    /// an uploaded one the administrator address.
    async fn recipient(&self, target: &Target, uploaded: bool) -> Option<String> {
        #[derive(Deserialize)]
        struct Contact {
            contact: String,
        }
        let admin = self.inner.config.warn_to.clone();
        if uploaded {
            return admin;
        }
        let read = |key: Option<RecordKey>| async move {
            let record = self.inner.store.get(&key?).await.ok()??;
            let value = zeroize::Zeroizing::new(record.secret_value().to_vec());
            serde_json::from_slice::<Contact>(&value)
                .ok()
                .map(|c| c.contact)
        };
        if let Some(to) = read(keys::target_key(keys::CONTACT_PREFIX, target).ok()).await {
            return Some(to);
        }
        if let Some(to) = read(RecordKey::new(keys::ACME_ACCOUNT).ok()).await {
            return Some(to);
        }
        admin
    }

    /// Sends today's warning for `installed` unless this or another server already did.
    /// Returns whether one was sent, and when to look again.
    async fn warn(
        &self,
        target: &Target,
        meta: &bmcert_store::BundleMeta,
        last_error: Option<&str>,
        fix: Option<&str>,
        uploaded: bool,
    ) -> Result<(bool, OffsetDateTime), RenewError> {
        let now = self.inner.clock.now();
        let tomorrow = policy::next_utc_day(now);
        let Some(to) = self.recipient(target, uploaded).await else {
            tracing::warn!(target = %target, uploaded, "renewal: a warning is due but there is no address: none given at activation, no ACME account contact, no administrator address (RenewerConfig::warn_to)");
            return Ok((false, tomorrow));
        };
        let store = &self.inner.store;
        let key = keys::target_key(keys::WARNING_PREFIX, target).map_err(|source| {
            RenewError::RecordKey {
                what: "warning record",
                source,
            }
        })?;
        let day = utc_day(now);
        let current = store
            .get(&key)
            .await
            .map_err(store_err("reading the warning record"))?;
        let (condition, previous) = match &current {
            Some(r) => (
                Condition::at(r.revision),
                serde_json::from_slice::<WarningRecord>(r.secret_value()).ok(),
            ),
            None => (Condition::absent(), None),
        };
        if let Some(p) = &previous {
            let claimed_recently = p
                .claimed_at
                .is_some_and(|c| now - from_unix(c) < Duration::minutes(10));
            if p.day == day && (p.sent || claimed_recently) {
                return Ok((
                    false,
                    if p.sent {
                        tomorrow
                    } else {
                        now + Duration::minutes(10)
                    },
                ));
            }
        }
        let mut claim = WarningRecord {
            day: day.clone(),
            sent: false,
            claimed_at: Some(unix(now)),
            by: self.inner.config.holder.clone(),
        };
        let encode = |r: &WarningRecord| serde_json::to_vec(r).unwrap_or_default();
        let rev = match store.put(&key, &encode(&claim), &condition).await {
            Ok(rev) => rev,
            Err(StoreError::Conflict { .. }) => return Ok((false, now + Duration::minutes(10))),
            Err(e) => return Err(store_err("claiming the warning")(e)),
        };
        let warning = Warning {
            to,
            target: target.clone(),
            names: meta.names.clone(),
            not_after: meta.not_after,
            last_error: last_error.map(str::to_owned),
            fix: fix.map(str::to_owned),
            uploaded,
            day,
        };
        match self.inner.notifier.send(&warning, now).await {
            Ok(()) => {
                claim.sent = true;
                tracing::warn!(target = %target, names = ?warning.names, not_after = %rfc3339(meta.not_after),
                    to = %warning.to, error = ?last_error, "renewal: expiry warning sent");
                store
                    .put(&key, &encode(&claim), &Condition::at(rev))
                    .await
                    .map_err(store_err("recording the warning"))?;
                Ok((true, tomorrow))
            }
            Err(e) => {
                tracing::warn!(target = %target, error = %e, "renewal: the expiry warning could not be sent; retrying at the next wake-up");
                claim.claimed_at = None;
                claim.day = previous.map(|p| p.day).unwrap_or_default();
                store
                    .put(&key, &encode(&claim), &Condition::at(rev))
                    .await
                    .map_err(store_err("releasing the warning"))?;
                Ok((false, now + Duration::minutes(5)))
            }
        }
    }

    /// One pass: renews what is due, sends what warnings are due, and says when the next pass
    /// is needed. The background task calls it; tests with a [`ManualClock`] call it directly.
    ///
    /// The pass reads one snapshot ([`Store::list_meta`] and [`Store::records`] of
    /// `renewal/`: two store calls whatever the number of targets), plans over it without
    /// I/O, then reads and writes only for its actions: the bundle of a target it renews
    /// (proven whole, key included), a planned time that changed, a warning.
    pub async fn run_once(&self) -> Result<PassReport, RenewError> {
        let _one = self.inner.pass.lock().await;
        let store = &self.inner.store;
        let mut report = PassReport::default();
        let wake = |t: OffsetDateTime, r: &mut PassReport| {
            r.next_wake = Some(r.next_wake.map_or(t, |w: OffsetDateTime| w.min(t)));
        };
        let snapshot = Snapshot::read(store.as_ref()).await?;
        let plan = self.plan(&snapshot).await;
        for (row, plan) in snapshot.rows.iter().zip(plan) {
            let target = &row.target;
            let acme = match plan {
                TargetPlan::Uploaded { warn, wake: next } => {
                    if warn {
                        let (sent, next) = self.warn(target, &row.meta, None, None, true).await?;
                        if sent {
                            report.warned.push(target.clone());
                        }
                        wake(next, &mut report);
                    } else if let Some(next) = next {
                        wake(next, &mut report);
                    }
                    continue;
                }
                TargetPlan::Acme(acme) => acme,
            };
            if acme.note {
                let stored = snapshot.stored(target).cloned();
                self.note_planned(target, &row.meta.fingerprint, stored, acme.due)
                    .await;
            }
            let mut rec = acme.record;
            let mut follow = acme.follow_up;
            if acme.attempt {
                // The bundle to renew, proven whole: the only key this pass reads.
                let installed = match store.current(target).await {
                    Ok(Some(installed)) => installed,
                    Ok(None) => continue,
                    Err(StoreError::Damaged(damaged)) => {
                        tracing::error!(%damaged, "renewal: skipping a damaged certificate");
                        continue;
                    }
                    Err(e) => return Err(store_err("reading a certificate")(e)),
                };
                if installed.bundle.meta().fingerprint != row.meta.fingerprint {
                    // Replaced since the snapshot: plan the new one in a pass right away.
                    wake(self.inner.clock.now(), &mut report);
                    continue;
                }
                let now = self.inner.clock.now();
                match self.attempt(&installed, false, acme.due).await {
                    Ok(Outcome::Renewed) => report.renewed.push(target.clone()),
                    Ok(Outcome::AlreadyRenewed) => {}
                    Err(RenewError::Failed { .. }) => report.failed.push(target.clone()),
                    Err(RenewError::Waiting { .. }) => {}
                    Err(RenewError::Busy { holder, expires_at }) => {
                        let again = busy_wake(now, expires_at);
                        tracing::info!(target = %target, holder = %holder, look_again = %rfc3339(again), "renewal: another server holds the renewal lock");
                        wake(again, &mut report);
                        // Its outcome decides about warnings: look again in a minute.
                        continue;
                    }
                    Err(RenewError::LeaseLost { reason, .. }) => {
                        tracing::info!(target = %target, reason = %reason, "renewal: the renewal lock was lost during the attempt");
                        // Whoever holds the lock now renews; look again in a minute.
                        wake(now + Duration::minutes(1), &mut report);
                        continue;
                    }
                    Err(e) => return Err(e),
                }
                // Re-read: the attempt changed the record (or the certificate).
                let Some(after) = store
                    .current(target)
                    .await
                    .map_err(store_err("reading a certificate"))?
                else {
                    continue;
                };
                if after.bundle.meta().fingerprint != installed.bundle.meta().fingerprint {
                    let next = whole_second(self.due(&after).await.0);
                    let (_, stored) = self.record(target).await?;
                    self.note_planned(target, &after.bundle.meta().fingerprint, stored, next)
                        .await;
                    wake(next, &mut report);
                    continue;
                }
                rec = self.record_for(&after).await?;
                follow = pass::follow_up(acme.due, &rec, pass::validity(row), now);
            }
            if let Some(next) = follow.wake {
                wake(next, &mut report);
            }
            if follow.warn {
                let (sent, next) = self
                    .warn(
                        target,
                        &row.meta,
                        rec.last_error.as_deref(),
                        rec.fix.as_deref(),
                        false,
                    )
                    .await?;
                if sent {
                    report.warned.push(target.clone());
                }
                wake(next, &mut report);
            }
        }
        Ok(report)
    }

    /// Starts the background task on the current tokio runtime.
    pub fn start(&self) -> Running {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let this = self.clone();
        let task = tokio::spawn(async move { this.run(stop_rx).await });
        Running {
            stop: stop_tx,
            task,
        }
    }

    async fn run(&self, mut stop: tokio::sync::watch::Receiver<bool>) {
        let store = self.inner.store.clone();
        let mut watch = None;
        loop {
            // (Re)open the change feed when there is none (at start, or after the store was
            // unreachable): changes made meanwhile are seen by the pass that follows.
            if watch.is_none() {
                watch = match store.revision().await {
                    Ok(rev) => store.watch(rev).await.ok(),
                    Err(_) => None,
                };
            }
            let next = match self.run_once().await {
                Ok(r) => r.next_wake,
                Err(e) => {
                    // Nothing was ordered (e.g. the store is unreachable): renewals wait.
                    let retry = self.inner.config.pass_retry;
                    tracing::warn!(error = %e, retry_in_ms = retry.as_millis() as u64, "renewal: pass failed; renewals wait and the pass is tried again");
                    Some(
                        self.inner.clock.now()
                            + Duration::try_from(retry).unwrap_or(Duration::minutes(1)),
                    )
                }
            };
            let max = self.inner.config.max_sleep;
            let sleep = next
                .map(|n| {
                    let d = n - self.inner.clock.now();
                    StdDuration::try_from(d.max(Duration::ZERO))
                        .unwrap_or(max)
                        .min(max)
                })
                .unwrap_or(max);
            let sleeper = tokio::time::sleep(sleep);
            tokio::pin!(sleeper);
            loop {
                tokio::select! {
                    _ = stop.changed() => return,
                    _ = self.inner.wake.notified() => break,
                    _ = &mut sleeper => break,
                    change = async {
                        match watch.as_mut() {
                            Some(w) => w.recv().await,
                            None => std::future::pending().await,
                        }
                    } => match change {
                        // A certificate changed (installed, renewed elsewhere, disabled).
                        Some(Ok(c)) if matches!(c.key, ChangeKey::Bundle(_)) => break,
                        Some(Ok(_)) => continue,
                        Some(Err(_)) | None => {
                            watch = None;
                            break;
                        }
                    },
                }
            }
        }
    }
}

/// When a pass that found the renewal lock held looks again: just after the holder's lease
/// runs out (a holder that died, was paused or cut off from the store loses the lock then, and
/// this server takes over), at least [`BUSY_RETRY_MIN`] and at most [`BUSY_RETRY_MAX`] from
/// `now` (a live holder keeps extending its lease; its outcome also wakes the renewer through
/// the store's change feed).
fn busy_wake(now: OffsetDateTime, expires_at: Option<OffsetDateTime>) -> OffsetDateTime {
    let (min, max) = (now + BUSY_RETRY_MIN, now + BUSY_RETRY_MAX);
    match expires_at {
        Some(at) => (at + Duration::milliseconds(200)).clamp(min, max),
        None => max,
    }
}

/// The shortest wait after a pass found the renewal lock held.
pub const BUSY_RETRY_MIN: Duration = Duration::seconds(1);
/// The longest wait after a pass found the renewal lock held.
pub const BUSY_RETRY_MAX: Duration = Duration::minutes(1);

/// The status of every target installed in `store`: source, names, expiry, next renewal,
/// last attempt and last error (from the renewal records every server shares).
///
/// The next renewal is the time the installation's renewer will act: the time its last pass
/// planned (the CA's renewal window, or the rate-limit plan, recorded in the renewal
/// record), or the back-off after a failure when later. Before a renewer pass ran on the
/// current certificate, it is the lifetime rule's due time. [`Renewer::status`] computes the
/// same without waiting for a pass.
pub async fn status(store: &dyn Store) -> Result<Vec<RenewalStatus>, RenewError> {
    let snapshot = Snapshot::read(store).await?;
    Ok(snapshot
        .rows
        .iter()
        .map(|row| {
            let rec = snapshot.record_for(row);
            let next = (row.meta.source == Source::Acme).then(|| {
                let due = match rec.planned {
                    Some(p) => from_unix(p),
                    None => {
                        let (not_before, not_after) = pass::validity(row);
                        whole_second(policy::due_at(not_before, not_after, &key_str(&row.target)))
                    }
                };
                acts_at(due, &rec)
            });
            status_row(row, &rec, next)
        })
        .collect())
}

/// When the renewer acts on a certificate due at `due`: then, or after the back-off of a
/// failed attempt when that is later.
fn acts_at(due: OffsetDateTime, rec: &RenewalRecord) -> OffsetDateTime {
    match rec.next_attempt {
        Some(n) if from_unix(n) > due => from_unix(n),
        _ => due,
    }
}

fn status_row(row: &Listed, rec: &RenewalRecord, next: Option<OffsetDateTime>) -> RenewalStatus {
    let meta = &row.meta;
    RenewalStatus {
        target: crate::notify::target_arg(&row.target),
        source: match meta.source {
            Source::Acme => "acme".into(),
            Source::Bootstrap => "bootstrap".into(),
            _ => "uploaded".into(),
        },
        warning: meta.source.warning(),
        names: meta.names.clone(),
        not_after: rfc3339(meta.not_after),
        next_renewal: next.map(rfc3339),
        last_attempt: rec.last_attempt.map(|t| rfc3339(from_unix(t))),
        last_error: rec.last_error.clone(),
    }
}

/// Keeps `lease` alive until it is lost, and says why.
///
/// Renews it every third of `ttl`. A renewal refused as fenced (the lock expired or another
/// server holds it) ends it at once; other failures (the store unreachable) are retried
/// every second until `valid_until`, the local view of the lease's expiry (counted from
/// before the request that last granted or renewed it, so never late). Never returns while
/// the lease is held.
pub(crate) async fn keep_alive(
    store: &dyn Store,
    lease: &Lease,
    ttl: StdDuration,
    mut valid_until: tokio::time::Instant,
) -> String {
    let every = (ttl / 3).max(StdDuration::from_millis(10));
    let mut next = tokio::time::Instant::now() + every;
    loop {
        tokio::time::sleep_until(next.min(valid_until)).await;
        let now = tokio::time::Instant::now();
        if now >= valid_until {
            return format!(
                "its lease (token {}) expired before it could be renewed",
                lease.token
            );
        }
        let asked = now;
        match tokio::time::timeout(valid_until - now, store.renew(lease, ttl)).await {
            Ok(Ok(_)) => {
                valid_until = asked + ttl;
                next = asked + every;
                tracing::trace!(lock = %lease.lock, token = lease.token, "renewal: lease renewed");
            }
            Ok(Err(StoreError::Fenced { lock, token })) => {
                return format!("the lock `{lock}` is no longer held with token {token}");
            }
            Ok(Err(e)) => {
                tracing::warn!(lock = %lease.lock, error = %e, "renewal: the lease could not be renewed; retrying until it expires");
                next = tokio::time::Instant::now() + StdDuration::from_secs(1).min(every);
            }
            Err(_) => {
                return format!(
                    "its lease (token {}) expired while its renewal went unanswered",
                    lease.token
                );
            }
        }
    }
}

async fn record(
    store: &dyn Store,
    target: &Target,
) -> Result<(RecordKey, Option<(bmcert_store::Revision, RenewalRecord)>), RenewError> {
    let key =
        keys::target_key(keys::RENEWAL_PREFIX, target).map_err(|source| RenewError::RecordKey {
            what: "renewal record",
            source,
        })?;
    let rec = store
        .get(&key)
        .await
        .map_err(store_err("reading the renewal record"))?;
    let parsed = rec.and_then(|r| {
        serde_json::from_slice::<RenewalRecord>(r.secret_value())
            .ok()
            .map(|v| (r.revision, v))
    });
    Ok((key, parsed))
}

/// The record for the installed certificate (a fresh one when the record is about an older
/// certificate).
async fn record_for(store: &dyn Store, installed: &Installed) -> Result<RenewalRecord, RenewError> {
    let fp = hex(&installed.bundle.meta().fingerprint.0);
    let (_, rec) = record(store, &installed.target).await?;
    Ok(match rec {
        Some((_, r)) if r.fingerprint == fp => r,
        _ => RenewalRecord {
            fingerprint: fp,
            ..RenewalRecord::default()
        },
    })
}

pub(crate) fn key_str(target: &Target) -> String {
    keys::target_key(keys::RENEWAL_PREFIX, target)
        .map(|k| k.as_str().to_owned())
        .unwrap_or_else(|_| target.to_string())
}

/// The running background task of a [`Renewer`].
#[derive(Debug)]
pub struct Running {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Stops the task and waits for it (an attempt in progress is finished first).
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

    use bmcert_store::testing::{Fault, FaultyStore, Op};
    use bmcert_store::{Bundle, DirStore, Fingerprint};
    use time::macros::datetime;

    const T0: OffsetDateTime = datetime!(2027-01-01 0:00 UTC);

    #[test]
    fn a_busy_pass_looks_again_when_the_holders_lease_runs_out() {
        // A lease running out in 5 s: just after it (a dead holder's lock is free then).
        assert_eq!(
            busy_wake(T0, Some(T0 + Duration::seconds(5))),
            T0 + Duration::milliseconds(5200)
        );
        // Already run out (the store's clock ahead of ours): soon, never at once.
        assert_eq!(
            busy_wake(T0, Some(T0 - Duration::seconds(5))),
            T0 + BUSY_RETRY_MIN
        );
        // A long lease, or no expiry known: at most a minute.
        assert_eq!(
            busy_wake(T0, Some(T0 + Duration::hours(1))),
            T0 + BUSY_RETRY_MAX
        );
        assert_eq!(busy_wake(T0, None), T0 + BUSY_RETRY_MAX);
    }

    fn bundle(name: &str, not_before: OffsetDateTime, not_after: OffsetDateTime) -> Bundle {
        bmcert_test::renewal::self_signed_bundle(&[name], not_before, not_after, Source::Acme)
    }

    /// A directory store whose calls (lease renewals, or all while it is down) can be made
    /// to fail.
    type Flaky = FaultyStore<DirStore>;

    /// How a renewal fails while the store is unreachable.
    fn etcd_down() -> Fault {
        Fault::Unavailable("etcd is down (test)".into())
    }

    /// Installs a fresh certificate (fenced) after `delay`; offers `window` as ARI.
    #[derive(Debug)]
    struct SlowIssuer {
        store: Arc<dyn Store>,
        clock: Arc<ManualClock>,
        delay: StdDuration,
        window: Option<RenewalWindow>,
        calls: AtomicU32,
        finished: AtomicBool,
    }

    impl Issuer for SlowIssuer {
        fn issue<'a>(
            &'a self,
            target: &'a Target,
            names: &'a [String],
            _replaces: Option<&'a str>,
            fence: &'a Fence,
        ) -> BoxFuture<'a, Result<(), IssueError>> {
            Box::pin(async move {
                self.calls.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(self.delay).await;
                let now = self.clock.now();
                let b = bundle(&names[0], now, now + Duration::days(90));
                let condition = Condition {
                    fence: Some(fence.clone()),
                    ..Condition::none()
                };
                self.store
                    .install(target, &b, &condition)
                    .await
                    .map_err(|e| IssueError::StoreUnavailable {
                        source: bmcert_acme::AcmeError::Store {
                            during: "installing the certificate",
                            source: bmcert_acme::StateError::Store(e),
                        },
                    })?;
                self.finished.store(true, Ordering::SeqCst);
                Ok(())
            })
        }

        fn renewal_window<'a>(
            &'a self,
            _target: &'a Target,
            _leaf_der: &'a [u8],
        ) -> BoxFuture<'a, Option<RenewalWindow>> {
            let w = self.window.clone();
            Box::pin(async move { w })
        }
    }

    struct Setup {
        _dir: tempfile::TempDir,
        store: Arc<Flaky>,
        issuer: Arc<SlowIssuer>,
        clock: Arc<ManualClock>,
        renewer: Renewer,
    }

    fn setup(delay: StdDuration, window: Option<RenewalWindow>, config: RenewerConfig) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Flaky::new(
            DirStore::open(dir.path().join("store")).unwrap(),
        ));
        let clock = Arc::new(ManualClock::new(T0));
        let issuer = Arc::new(SlowIssuer {
            store: store.clone(),
            clock: clock.clone(),
            delay,
            window,
            calls: AtomicU32::new(0),
            finished: AtomicBool::new(false),
        });
        let renewer = Renewer::new(
            store.clone(),
            issuer.clone(),
            Arc::new(crate::MemoryNotifier::default()),
            clock.clone(),
            config,
        );
        Setup {
            _dir: dir,
            store,
            issuer,
            clock,
            renewer,
        }
    }

    fn domain(name: &str) -> Target {
        Target::Domain(name.parse().unwrap())
    }

    async fn install(
        store: &dyn Store,
        target: &Target,
        from: OffsetDateTime,
        days: i64,
    ) -> Fingerprint {
        let b = bundle("mail.example.test", from, from + Duration::days(days));
        store
            .install(target, &b, &Condition::none())
            .await
            .unwrap()
            .bundle
            .meta()
            .fingerprint
    }

    /// Installs, as the system certificate, a 90-day one issued 80 days before [`T0`]:
    /// due for renewal.
    async fn install_due(s: &Setup) -> Fingerprint {
        install(
            s.store.as_ref(),
            &Target::System,
            T0 - Duration::days(80),
            90,
        )
        .await
    }

    fn lock_key() -> RecordKey {
        RecordKey::new(keys::RENEWAL_LOCK).unwrap()
    }

    #[tokio::test]
    async fn the_lease_is_kept_alive_through_an_attempt_longer_than_its_ttl() {
        let config = RenewerConfig {
            lock_ttl: StdDuration::from_millis(300),
            ..RenewerConfig::default()
        };
        let s = setup(StdDuration::from_millis(1200), None, config);
        let old = install_due(&s).await;
        let store = s.store.clone();
        // Another server tries to take the lock well after the first lease's ttl.
        let contender = tokio::spawn(async move {
            tokio::time::sleep(StdDuration::from_millis(800)).await;
            store
                .lock(&lock_key(), "other", StdDuration::from_secs(5))
                .await
        });
        let outcome = s.renewer.renew_now(&Target::System).await.unwrap();
        assert_eq!(outcome, Outcome::Renewed);
        match contender.await.unwrap() {
            Err(StoreError::LockHeld { holder, .. }) => {
                assert_eq!(holder, s.renewer.inner.config.holder)
            }
            other => panic!("the lease lapsed during the attempt: {other:?}"),
        }
        // 1.2 s at one renewal per 100 ms.
        assert!(s.store.calls(Op::Renew) >= 3);
        let now = s.store.current(&Target::System).await.unwrap().unwrap();
        assert_ne!(now.bundle.meta().fingerprint, old);
        // Released at the end.
        s.store
            .lock(&lock_key(), "other", StdDuration::from_secs(5))
            .await
            .unwrap();
    }

    async fn abandoned_when_renewals(fault: Fault) {
        let config = RenewerConfig {
            lock_ttl: StdDuration::from_millis(300),
            ..RenewerConfig::default()
        };
        let s = setup(StdDuration::from_secs(30), None, config);
        let old = install_due(&s).await;
        s.store.fail(Op::Renew, fault);
        let result = tokio::time::timeout(
            StdDuration::from_secs(10),
            s.renewer.renew_now(&Target::System),
        )
        .await
        .expect("the attempt is abandoned, not waited for");
        match result {
            Err(RenewError::LeaseLost { target, reason }) => {
                assert_eq!(target, Target::System);
                assert!(!reason.is_empty());
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(s.issuer.calls.load(Ordering::SeqCst), 1);
        assert!(!s.issuer.finished.load(Ordering::SeqCst));
        let now = s.store.current(&Target::System).await.unwrap().unwrap();
        assert_eq!(now.bundle.meta().fingerprint, old);
        assert_eq!(now.version, 1);
    }

    #[tokio::test]
    async fn a_lease_renewal_refused_as_fenced_abandons_the_attempt_before_installing() {
        abandoned_when_renewals(Fault::Fenced).await;
    }

    #[tokio::test]
    async fn a_lease_that_cannot_be_renewed_until_it_expires_abandons_the_attempt() {
        abandoned_when_renewals(etcd_down()).await;
    }

    #[tokio::test]
    async fn keep_alive_retries_a_failed_renewal_while_the_lease_is_valid() {
        let dir = tempfile::tempdir().unwrap();
        let store = Flaky::new(DirStore::open(dir.path().join("store")).unwrap());
        store.fail(Op::Renew, etcd_down());
        let ttl = StdDuration::from_millis(3000);
        let asked = tokio::time::Instant::now();
        let lease = store.lock(&lock_key(), "me", ttl).await.unwrap();
        // The store answers again after one failed renewal: the lease is kept.
        let keeper = keep_alive(&store, &lease, ttl, asked + ttl);
        tokio::pin!(keeper);
        let mut renewals_before_pass = 0;
        let kept = tokio::time::timeout(StdDuration::from_millis(4000), async {
            loop {
                tokio::select! {
                    why = &mut keeper => return why,
                    _ = tokio::time::sleep(StdDuration::from_millis(50)) => {
                        if store.fault(Op::Renew).is_some() && store.calls(Op::Renew) >= 1 {
                            renewals_before_pass = store.calls(Op::Renew);
                            store.heal(Op::Renew);
                        }
                    }
                }
            }
        })
        .await;
        assert!(kept.is_err(), "the lease was given up: {kept:?}");
        assert!(renewals_before_pass >= 1);
        assert!(store.calls(Op::Renew) > renewals_before_pass);
        // Still ours: the lock cannot be taken.
        assert!(matches!(
            store.lock(&lock_key(), "other", ttl).await,
            Err(StoreError::LockHeld { .. })
        ));
    }

    #[tokio::test]
    async fn an_attempt_past_its_timeout_is_abandoned_and_recorded_as_a_failure() {
        let config = RenewerConfig {
            attempt_timeout: StdDuration::from_millis(300),
            ..RenewerConfig::default()
        };
        let s = setup(StdDuration::from_secs(30), None, config);
        let old = install_due(&s).await;
        match s.renewer.renew_now(&Target::System).await {
            Err(RenewError::Failed { cause, .. }) => {
                assert_eq!(cause.kind(), "timed_out");
                assert!(
                    cause.to_string().contains("did not finish within 0 s"),
                    "{cause}"
                )
            }
            other => panic!("{other:?}"),
        }
        assert!(!s.issuer.finished.load(Ordering::SeqCst));
        let now = s.store.current(&Target::System).await.unwrap().unwrap();
        assert_eq!(now.bundle.meta().fingerprint, old);
        let rows = status(s.store.as_ref()).await.unwrap();
        assert!(rows[0].last_error.as_deref().unwrap().contains("abandoned"));
        // The first retry is 5 minutes after the failure.
        assert_eq!(
            rows[0].next_renewal.as_deref(),
            Some(rfc3339(T0 + Duration::minutes(5)).as_str())
        );
        // The lock was released.
        s.store
            .lock(&lock_key(), "other", StdDuration::from_secs(5))
            .await
            .unwrap();
    }

    proptest::proptest! {
        #[test]
        fn planned_times_are_never_later_than_due(
            ns in -10_000_000_000_000_000_000i128..100_000_000_000_000_000_000i128,
            next in proptest::option::of(-1_000_000_000i64..4_000_000_000i64),
        ) {
            let t = OffsetDateTime::from_unix_timestamp_nanos(ns).unwrap();
            let w = whole_second(t);
            proptest::prop_assert!(w <= t && t - w < Duration::SECOND);
            proptest::prop_assert_eq!(w.nanosecond(), 0);
            // The renewer acts at the later of the due time and the back-off.
            let rec = RenewalRecord { next_attempt: next, ..RenewalRecord::default() };
            let at = acts_at(w, &rec);
            proptest::prop_assert!(at >= w);
            proptest::prop_assert!(next.is_none_or(|n| at >= from_unix(n)));
            proptest::prop_assert!(at == w || Some(at) == next.map(from_unix));
        }
    }

    #[tokio::test]
    async fn an_overdue_certificate_is_renewed_at_a_clock_between_two_seconds() {
        let s = setup(StdDuration::ZERO, None, RenewerConfig::default());
        install_due(&s).await;
        // Planned times are whole seconds, the clock is not: the slot "now" is not later.
        s.clock.set(T0 + Duration::milliseconds(500));
        assert_eq!(
            s.renewer.run_once().await.unwrap().renewed,
            [Target::System]
        );
    }

    #[tokio::test]
    async fn status_reports_the_ari_window_the_renewer_acts_on() {
        let window = RenewalWindow::new(T0 + Duration::days(10), T0 + Duration::days(11)).unwrap();
        let s = setup(
            StdDuration::ZERO,
            Some(window.clone()),
            RenewerConfig::default(),
        );
        let (nb, na) = (T0 - Duration::days(5), T0 + Duration::days(85));
        install(s.store.as_ref(), &Target::System, nb, 90).await;
        let key = key_str(&Target::System);
        let ari_due = whole_second(policy::ari_due_at(&window, &key));
        let lifetime_due = policy::due_at(nb, na, &key);
        assert!(ari_due < lifetime_due);
        // Exact from the renewer at once; from the record after a pass.
        let live = s.renewer.status().await.unwrap();
        assert_eq!(live[0].next_renewal, Some(rfc3339(ari_due)));
        let report = s.renewer.run_once().await.unwrap();
        assert_eq!(report.next_wake, Some(ari_due));
        let stored = status(s.store.as_ref()).await.unwrap();
        assert_eq!(stored[0].next_renewal, Some(rfc3339(ari_due)));
        // And that is when it acts: not a second before.
        s.clock.set(ari_due - Duration::seconds(1));
        assert!(s.renewer.run_once().await.unwrap().renewed.is_empty());
        s.clock.set(ari_due);
        assert_eq!(
            s.renewer.run_once().await.unwrap().renewed,
            [Target::System]
        );
    }

    #[tokio::test]
    async fn status_reports_the_rate_limit_plan_the_renewer_acts_on() {
        let config = RenewerConfig {
            rate_limit: crate::plan::RateLimit {
                orders: 1,
                window: Duration::days(3),
            },
            ..RenewerConfig::default()
        };
        let s = setup(StdDuration::ZERO, None, config.clone());
        let targets = [
            Target::System,
            domain("a.example.test"),
            domain("b.example.test"),
        ];
        let nb = T0 - Duration::days(10);
        for t in &targets {
            install(s.store.as_ref(), t, nb, 90).await;
        }
        let inputs: Vec<_> = targets
            .iter()
            .map(|t| crate::plan::PlanInput {
                key: key_str(t),
                not_before: nb,
                not_after: nb + Duration::days(90),
            })
            .collect();
        let plan = crate::plan::plan(&inputs, T0, config.rate_limit);
        let planned = |t: &Target| {
            let i = targets.iter().position(|x| x == t).unwrap();
            whole_second(plan.renewals.iter().find(|p| p.index == i).unwrap().at)
        };
        // The limit moves some of them earlier than the lifetime rule.
        assert!(plan.renewals.iter().any(|p| p.at < p.due));
        s.renewer.run_once().await.unwrap();
        for (rows, from) in [
            (status(s.store.as_ref()).await.unwrap(), "the records"),
            (s.renewer.status().await.unwrap(), "the renewer"),
        ] {
            for row in rows {
                let t: Target = row.target.parse().unwrap();
                assert_eq!(row.next_renewal, Some(rfc3339(planned(&t))), "{from}: {t}");
            }
        }
        // The renewer acts at the first planned time, on that target only.
        let first = plan.renewals.iter().min_by_key(|p| p.at).unwrap();
        let at = whole_second(first.at);
        s.clock.set(at - Duration::seconds(1));
        assert!(s.renewer.run_once().await.unwrap().renewed.is_empty());
        s.clock.set(at);
        assert_eq!(
            s.renewer.run_once().await.unwrap().renewed,
            [targets[first.index].clone()]
        );
    }

    #[tokio::test]
    async fn status_shows_the_last_rows_with_the_error_while_the_store_is_unreachable() {
        let dir = tempfile::tempdir().unwrap();
        // A store that fails every call while it is down.
        let store = Arc::new(Flaky::new(
            DirStore::open(dir.path().join("store")).unwrap(),
        ));
        let down = || Fault::Unavailable("no etcd member answers (test)".into());
        let clock = Arc::new(ManualClock::new(T0));
        let issuer = Arc::new(SlowIssuer {
            store: store.clone(),
            clock: clock.clone(),
            delay: StdDuration::ZERO,
            window: None,
            calls: AtomicU32::new(0),
            finished: AtomicBool::new(false),
        });
        let renewer = Renewer::new(
            store.clone(),
            issuer.clone(),
            Arc::new(crate::MemoryNotifier::default()),
            clock.clone(),
            RenewerConfig::default(),
        );
        // Before any successful read, the store's error itself.
        store.fail_all(down());
        assert!(matches!(
            renewer.status().await,
            Err(RenewError::Store {
                source: StoreError::Unavailable(_),
                ..
            })
        ));
        store.heal_all();
        install(store.as_ref(), &Target::System, T0 - Duration::days(80), 90).await;
        let before = renewer.status().await.unwrap();
        assert_eq!(before[0].last_error, None);
        store.fail_all(down());
        // Due, but nothing is ordered while the store is down.
        assert!(matches!(
            renewer.run_once().await,
            Err(RenewError::Store { .. })
        ));
        assert_eq!(issuer.calls.load(Ordering::SeqCst), 0);
        let during = renewer.status().await.unwrap();
        assert_eq!(during[0].target, before[0].target);
        assert_eq!(during[0].next_renewal, before[0].next_renewal);
        let error = during[0].last_error.as_deref().unwrap();
        assert!(
            error.contains("renewals wait") && error.contains("no etcd member answers"),
            "{error}"
        );
        // Back: the next pass renews.
        store.heal_all();
        assert_eq!(renewer.run_once().await.unwrap().renewed, [Target::System]);
        assert_eq!(renewer.status().await.unwrap()[0].last_error, None);
    }
}
