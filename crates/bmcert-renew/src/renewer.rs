//! The background renewer: one pass over the store at a time, sleeping until the next thing
//! to do, with renewal and warning state kept in store records.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

use bmcert_acme::{AcmeClient, IssueRequest};
use bmcert_store::{
    keys, ChangeKey, Condition, Installed, Lease, RecordKey, Source, Store, StoreError,
};
use bmcert_topology::{Target, Topology};
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};
use tokio::sync::Notify;

use crate::notify::{BoxFuture, Notifier, Warning};
use crate::policy;

/// The time source. Validation and planning never read the system clock themselves.
pub trait Clock: fmt::Debug + Send + Sync {
    /// Now.
    fn now(&self) -> OffsetDateTime;
}

/// The system clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

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
    /// Orders a certificate for `target` covering at least `names`, installs it, and returns
    /// nothing or the error in plain words. `replaces` is the ARI identifier
    /// ([`policy::ari_cert_id`]) of the certificate being replaced, when the CA offers
    /// renewal information; the order names it (RFC 9773 section 5).
    fn issue<'a>(
        &'a self,
        target: &'a Target,
        names: &'a [String],
        replaces: Option<&'a str>,
    ) -> BoxFuture<'a, Result<(), String>>;

    /// The CA's suggested renewal window for the certificate `leaf_der` (ARI, RFC 9773), or
    /// `None` when the CA offers no renewal information (the lifetime rule applies). The
    /// renewer asks again after the window's [`policy::AriWindow::retry_after`], else after
    /// [`ARI_REFRESH`].
    fn renewal_window<'a>(
        &'a self,
        _target: &'a Target,
        _leaf_der: &'a [u8],
    ) -> BoxFuture<'a, Option<policy::AriWindow>> {
        Box::pin(async { None })
    }
}

/// How often the renewer asks the CA again for a certificate's renewal window when the CA
/// said nothing (no window, or no `Retry-After`).
pub const ARI_REFRESH: Duration = Duration::hours(6);

/// The [`Issuer`] over an [`AcmeClient`] and the installation's topology.
pub struct AcmeIssuer {
    client: Arc<AcmeClient>,
    topology: Arc<Mutex<Topology>>,
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
        Self {
            client,
            topology: Arc::new(Mutex::new(topology)),
        }
    }

    /// Replaces the topology (after the administrator changed a URL or a name).
    pub fn set_topology(&self, topology: Topology) {
        if let Ok(mut t) = self.topology.lock() {
            *t = topology;
        }
    }

    /// The client.
    pub fn client(&self) -> &Arc<AcmeClient> {
        &self.client
    }
}

impl Issuer for AcmeIssuer {
    fn issue<'a>(
        &'a self,
        target: &'a Target,
        names: &'a [String],
        replaces: Option<&'a str>,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let topology = self
                .topology
                .lock()
                .map(|t| t.clone())
                .map_err(|_| "the topology lock was poisoned".to_owned())?;
            let mut request = IssueRequest::new(target.clone());
            // Keep every name the current certificate covers (order_names de-duplicates).
            request.extra_names = names.to_vec();
            // The order names the certificate it replaces (RFC 9773 section 5); bmcert-acme
            // orders once more without it when the CA refuses it.
            request.replaces = replaces.map(str::to_owned);
            self.client
                .issue(&topology, &request)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
    }

    fn renewal_window<'a>(
        &'a self,
        target: &'a Target,
        leaf_der: &'a [u8],
    ) -> BoxFuture<'a, Option<policy::AriWindow>> {
        Box::pin(async move {
            match self.client.renewal_window(leaf_der).await {
                Ok(window) => window.map(|w| policy::AriWindow {
                    start: w.start,
                    end: w.end,
                    // bmcert-acme keeps it within a minute and a day.
                    retry_after: Duration::try_from(w.retry_after).ok(),
                }),
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
    /// Where warnings go; when `None`, the ACME account's contact address.
    pub warn_to: Option<String>,
    /// Also warn about uploaded certificates about to expire (needs `warn_to`).
    pub warn_uploaded: bool,
    /// How long the renewal lock is held at most (longer than an order takes).
    pub lock_ttl: StdDuration,
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
            warn_uploaded: false,
            lock_ttl: StdDuration::from_secs(600),
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
    /// A bug-class failure (a record key or record that cannot be encoded).
    #[error("renewal: internal error while {0}")]
    Internal(String),
    /// The target has no certificate.
    #[error("{0} has no certificate installed; issue one first (bmcert acme issue)")]
    NotInstalled(Target),
    /// Another server holds the renewal lock.
    #[error("another server ({holder}) is renewing right now; try again in a few minutes")]
    Busy {
        /// Who holds it.
        holder: String,
    },
    /// The renewal failed (the current certificate stays).
    #[error("renewing {target} failed, the current certificate stays in place: {error}")]
    Failed {
        /// The target.
        target: Target,
        /// The error in plain words.
        error: String,
    },
}

fn store_err(during: &'static str) -> impl FnOnce(StoreError) -> RenewError {
    move |source| RenewError::Store { during, source }
}

/// The state of one target, for `bmcert status` and admin consoles.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TargetStatus {
    /// `system` or `domain:NAME`.
    pub target: String,
    /// `acme` or `uploaded`.
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
    ari: Mutex<std::collections::HashMap<String, (Option<policy::AriWindow>, OffsetDateTime)>>,
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

fn unix(t: OffsetDateTime) -> i64 {
    t.unix_timestamp()
}

fn from_unix(s: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(s).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn utc_day(t: OffsetDateTime) -> String {
    let d = t.to_offset(time::UtcOffset::UTC).date();
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

/// The validity of the installed leaf (start from the certificate, end from the metadata).
fn validity(installed: &Installed) -> (OffsetDateTime, OffsetDateTime) {
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

    /// The status of every installed target.
    pub async fn status(&self) -> Result<Vec<TargetStatus>, RenewError> {
        status(self.inner.store.as_ref()).await
    }

    /// Renews `target` now, whether due or not (`bmcert renew`), under the renewal lock.
    pub async fn renew_now(&self, target: &Target) -> Result<Outcome, RenewError> {
        let installed = self
            .inner
            .store
            .current(target)
            .await
            .map_err(store_err("reading the certificate"))?
            .ok_or_else(|| RenewError::NotInstalled(target.clone()))?;
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
        let cached = self
            .inner
            .ari
            .lock()
            .ok()
            .and_then(|m| m.get(&fp).copied())
            .filter(|(w, at)| {
                let refresh = w.and_then(|w| w.retry_after).unwrap_or(ARI_REFRESH);
                now - *at < refresh
            });
        let window = match cached {
            Some((w, _)) => w,
            None => {
                let w = self
                    .inner
                    .issuer
                    .renewal_window(&installed.target, installed.bundle.leaf())
                    .await;
                if let Ok(mut m) = self.inner.ari.lock() {
                    m.insert(fp, (w, now));
                }
                w
            }
        };
        (
            policy::next_renewal(nb, na, &key, window.as_ref()),
            window.is_some(),
        )
    }

    /// One renewal attempt under the store's renewal lock. Without `force`, nothing is
    /// ordered when the certificate changed or another server's attempt is recent.
    async fn attempt(
        &self,
        installed: &Installed,
        force: bool,
        due: OffsetDateTime,
    ) -> Result<Outcome, RenewError> {
        let store = &self.inner.store;
        let lock = RecordKey::new(keys::RENEWAL_LOCK)
            .map_err(|e| RenewError::Internal(format!("{}: {e}", "naming the renewal lock")))?;
        let lease = match store
            .lock(&lock, &self.inner.config.holder, self.inner.config.lock_ttl)
            .await
        {
            Ok(lease) => lease,
            Err(StoreError::LockHeld { holder, .. }) => return Err(RenewError::Busy { holder }),
            Err(e) => return Err(store_err("taking the renewal lock")(e)),
        };
        let result = self.attempt_locked(installed, force, due, &lease).await;
        if let Err(e) = store.unlock(&lease).await {
            tracing::warn!(error = %e, "releasing the renewal lock");
        }
        result
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
        let now = self.inner.clock.now();
        let mut rec = self.record_for(&installed).await?;
        if !force {
            if installed.bundle.meta().fingerprint != seen.bundle.meta().fingerprint {
                return Ok(Outcome::AlreadyRenewed);
            }
            if now < due {
                return Ok(Outcome::AlreadyRenewed);
            }
            if rec.next_attempt.is_some_and(|n| from_unix(n) > now) {
                return Err(RenewError::Failed {
                    target: target.clone(),
                    error: rec.last_error.clone().unwrap_or_default(),
                });
            }
        }
        let meta = installed.bundle.meta();
        let names = meta.names.clone();
        let not_after = rfc3339(meta.not_after);
        tracing::info!(target = %target, names = ?names, not_after = %not_after, "renewal: attempt");
        let replaces = match self.due(&installed).await.1 {
            true => policy::ari_cert_id(installed.bundle.leaf()).ok(),
            false => None,
        };
        let result = self
            .inner
            .issuer
            .issue(target, &names, replaces.as_deref())
            .await;
        let done = self.inner.clock.now();
        rec.last_attempt = Some(unix(done));
        let outcome = match result {
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
                rec = RenewalRecord {
                    fingerprint: new
                        .map(|n| hex(&n.bundle.meta().fingerprint.0))
                        .unwrap_or_default(),
                    last_attempt: Some(unix(done)),
                    last_success: Some(unix(done)),
                    ..RenewalRecord::default()
                };
                Ok(Outcome::Renewed)
            }
            Err(error) => {
                rec.failures = rec.failures.saturating_add(1);
                let next = done + policy::retry_delay(rec.failures);
                rec.next_attempt = Some(unix(next));
                rec.last_error = Some(error.clone());
                tracing::warn!(target = %target, names = ?names, not_after = %not_after, error = %error,
                    failures = rec.failures, next_attempt = %rfc3339(next), "renewal: failed; the current certificate stays");
                Err(RenewError::Failed {
                    target: target.clone(),
                    error,
                })
            }
        };
        let (key, _) = self.record(target).await?;
        let bytes = serde_json::to_vec(&rec)
            .map_err(|e| RenewError::Internal(format!("encoding the renewal record: {e}")))?;
        store
            .put(&key, &bytes, &Condition::none().fenced_by(lease))
            .await
            .map_err(store_err("writing the renewal record"))?;
        outcome
    }

    /// The warning address: configured, else the ACME account's contact.
    async fn warn_to(&self) -> Option<String> {
        if let Some(to) = &self.inner.config.warn_to {
            return Some(to.clone());
        }
        #[derive(Deserialize)]
        struct Contact {
            contact: String,
        }
        let key = RecordKey::new(keys::ACME_ACCOUNT).ok()?;
        let record = self.inner.store.get(&key).await.ok()??;
        let value = zeroize::Zeroizing::new(record.secret_value().to_vec());
        serde_json::from_slice::<Contact>(&value)
            .ok()
            .map(|c| c.contact)
    }

    /// Sends today's warning for `installed` unless this or another server already did.
    /// Returns whether one was sent, and when to look again.
    async fn warn(
        &self,
        installed: &Installed,
        last_error: Option<&str>,
        uploaded: bool,
    ) -> Result<(bool, OffsetDateTime), RenewError> {
        let now = self.inner.clock.now();
        let target = &installed.target;
        let tomorrow = policy::next_utc_day(now);
        let Some(to) = self.warn_to().await else {
            tracing::warn!(target = %target, "renewal: a warning is due but no address is configured and the ACME account has no contact");
            return Ok((false, tomorrow));
        };
        let store = &self.inner.store;
        let key = keys::target_key(keys::WARNING_PREFIX, target)
            .map_err(|e| RenewError::Internal(format!("{}: {e}", "naming the warning record")))?;
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
        let meta = installed.bundle.meta();
        let warning = Warning {
            to,
            target: target.clone(),
            names: meta.names.clone(),
            not_after: meta.not_after,
            last_error: last_error.map(str::to_owned),
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
    pub async fn run_once(&self) -> Result<PassReport, RenewError> {
        let _one = self.inner.pass.lock().await;
        let store = &self.inner.store;
        let mut report = PassReport::default();
        let listed = store
            .list()
            .await
            .map_err(store_err("listing the targets"))?;
        let wake = |t: OffsetDateTime, r: &mut PassReport| {
            r.next_wake = Some(r.next_wake.map_or(t, |w: OffsetDateTime| w.min(t)));
        };
        let mut current = Vec::with_capacity(listed.len());
        for l in listed {
            if let Some(installed) = store
                .current(&l.target)
                .await
                .map_err(store_err("reading a certificate"))?
            {
                current.push(installed);
            }
        }
        let planned = self.plan_times(&current).await?;
        for installed in current {
            let now = self.inner.clock.now();
            let (_, na) = validity(&installed);
            let target = installed.target.clone();
            if installed.bundle.meta().source != Source::Acme {
                if self.inner.config.warn_uploaded && self.inner.config.warn_to.is_some() {
                    if policy::warning_due(now, na, true) {
                        let (sent, next) = self.warn(&installed, None, true).await?;
                        if sent {
                            report.warned.push(target.clone());
                        }
                        wake(next, &mut report);
                    } else {
                        wake(na - policy::WARNING_WINDOW, &mut report);
                    }
                }
                continue;
            }
            let due = match self.due(&installed).await {
                (ari_due, true) => ari_due,
                (lifetime_due, false) => planned
                    .get(&installed.target)
                    .copied()
                    .unwrap_or(lifetime_due),
            };
            let mut rec = self.record_for(&installed).await?;
            if now >= due && rec.next_attempt.is_none_or(|n| from_unix(n) <= now) {
                match self.attempt(&installed, false, due).await {
                    Ok(Outcome::Renewed) => report.renewed.push(target.clone()),
                    Ok(Outcome::AlreadyRenewed) => {}
                    Err(RenewError::Failed { .. }) => report.failed.push(target.clone()),
                    Err(RenewError::Busy { holder }) => {
                        tracing::info!(target = %target, holder = %holder, "renewal: another server holds the renewal lock");
                        wake(now + Duration::minutes(1), &mut report);
                        // Its outcome decides about warnings: look again in a minute.
                        continue;
                    }
                    Err(e) => return Err(e),
                }
                // Re-read: the attempt changed the record (or the certificate).
                let Some(after) = store
                    .current(&target)
                    .await
                    .map_err(store_err("reading a certificate"))?
                else {
                    continue;
                };
                if after.bundle.meta().fingerprint != installed.bundle.meta().fingerprint {
                    wake(self.due(&after).await.0, &mut report);
                    continue;
                }
                rec = self.record_for(&after).await?;
            }
            if now < due {
                wake(due, &mut report);
            } else if let Some(n) = rec.next_attempt {
                wake(from_unix(n), &mut report);
            }
            if let Some(error) = rec.last_error.as_deref() {
                let now = self.inner.clock.now();
                if policy::warning_due(now, na, true) {
                    let (sent, next) = self.warn(&installed, Some(error), false).await?;
                    if sent {
                        report.warned.push(target.clone());
                    }
                    wake(next, &mut report);
                } else {
                    wake(na - policy::WARNING_WINDOW, &mut report);
                }
            }
        }
        Ok(report)
    }

    /// The renewal time of every ACME certificate under the rate limit ([`plan`](crate::plan())),
    /// leaving out those waiting for a retry (their back-off decides) and those the CA gave
    /// a renewal window for.
    async fn plan_times(
        &self,
        current: &[Installed],
    ) -> Result<std::collections::HashMap<Target, OffsetDateTime>, RenewError> {
        let now = self.inner.clock.now();
        let mut targets = Vec::new();
        let mut inputs = Vec::new();
        for installed in current {
            if installed.bundle.meta().source != Source::Acme {
                continue;
            }
            let rec = self.record_for(installed).await?;
            if rec.next_attempt.is_some_and(|n| from_unix(n) > now) || self.due(installed).await.1 {
                continue;
            }
            let (not_before, not_after) = validity(installed);
            targets.push(installed.target.clone());
            inputs.push(crate::plan::PlanInput {
                key: key_str(&installed.target),
                not_before,
                not_after,
            });
        }
        let plan = crate::plan::plan(&inputs, now, self.inner.config.rate_limit);
        Ok(plan
            .renewals
            .into_iter()
            .map(|p| (targets[p.index].clone(), p.at))
            .collect())
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
                    tracing::warn!(error = %e, "renewal: pass failed; trying again in a minute");
                    Some(self.inner.clock.now() + Duration::minutes(1))
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

/// The status of every target installed in `store`: source, names, expiry, next renewal,
/// last attempt and last error (from the renewal records every server shares).
pub async fn status(store: &dyn Store) -> Result<Vec<TargetStatus>, RenewError> {
    let listed = store
        .list()
        .await
        .map_err(store_err("listing the targets"))?;
    let mut out = Vec::with_capacity(listed.len());
    for l in listed {
        let Some(installed) = store
            .current(&l.target)
            .await
            .map_err(store_err("reading a certificate"))?
        else {
            continue;
        };
        let (not_before, not_after) = validity(&installed);
        let rec = record_for(store, &installed).await?;
        let acme = installed.bundle.meta().source == Source::Acme;
        let next = acme.then(|| {
            let due = policy::due_at(not_before, not_after, &key_str(&l.target));
            match rec.next_attempt {
                Some(n) if from_unix(n) > due => from_unix(n),
                _ => due,
            }
        });
        out.push(TargetStatus {
            target: crate::notify::target_arg(&l.target),
            source: if acme {
                "acme".into()
            } else {
                "uploaded".into()
            },
            names: installed.bundle.meta().names.clone(),
            not_after: rfc3339(not_after),
            next_renewal: next.map(rfc3339),
            last_attempt: rec.last_attempt.map(|t| rfc3339(from_unix(t))),
            last_error: rec.last_error.clone(),
        });
    }
    Ok(out)
}

async fn record(
    store: &dyn Store,
    target: &Target,
) -> Result<(RecordKey, Option<(bmcert_store::Revision, RenewalRecord)>), RenewError> {
    let key = keys::target_key(keys::RENEWAL_PREFIX, target)
        .map_err(|e| RenewError::Internal(format!("naming the renewal record: {e}")))?;
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

fn key_str(target: &Target) -> String {
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
