//! The agent: everything one server of an installation runs, as one object a service (or
//! `bmcert agent`) starts and stops (feature `agent`).
//!
//! [`Agent::start`] composes what the [`Installation`] already hands out; it implements
//! nothing of its own but the deploy loop and its two small HTTP endpoints:
//!
//! - the store follower keeping the installation's live index (what its resolvers serve)
//!   in step with the store ([`bmcert_resolve::load_all`], [`bmcert_resolve::follow`]);
//! - the renewer ([`Installation::renewer`]'s, one renewal at a time across the
//!   installation through the store's renewal lock), with warning e-mails through the
//!   given [`Notifier`] ([`AgentConfig::renewal`]);
//! - the HTTP-01 answers of every server's orders ([`Installation::http01_listener`]) on
//!   [`AgentConfig::http01_listen`], for nginx to proxy `/.well-known/acme-challenge/` to;
//! - the deploy loop: each [`DeployTarget`] is synced at start and whenever the store
//!   says its bundle changed (and every [`AgentConfig::resync_every`] as a safety net),
//!   changes are gathered for [`AgentConfig::debounce`], and the [reload
//!   command](AgentConfig::reload) runs once per batch that changed files; a failing
//!   reload is retried with a doubling back-off and shown by the metrics and the health
//!   check;
//! - `/metrics` (Prometheus text, `prometheus-client`) and `/healthz` on
//!   [`AgentConfig::metrics_listen`].
//!
//! [`Agent::shutdown`] stops it cleanly: no set of files is left half-written (a deploy is
//! never interrupted), a renewal attempt in progress finishes, the listeners are closed.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bmcert_acme::{AcmeConfig, AcmeError, BoxFuture, Http01Listener};
use bmcert_renew::{
    AcmeIssuer, IssueError, Issuer, Notifier, Renewer, RenewerConfig, Running, SystemClock,
};
use bmcert_store::{ChangeKey, Fence, Fingerprint, Store, Watch};
use bmcert_topology::Target;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::deploy::DeployTarget;
use crate::Installation;

/// Renewals by the agent: the ACME CA, where warnings go, and the renewer's settings.
pub struct Renewal {
    /// The ACME CA and the roots the issued chains must lead to.
    pub acme: AcmeConfig,
    /// Where expiry warnings go (an `SmtpNotifier`, or `NoNotifier`).
    pub notifier: Arc<dyn Notifier>,
    /// The renewer's settings (its holder name, the administrator's address, the lease).
    pub config: RenewerConfig,
}

impl fmt::Debug for Renewal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Renewal")
            .field("acme", &self.acme)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// What the agent runs.
#[derive(Debug)]
pub struct AgentConfig {
    /// The directories certificates are deployed to (`--deploy TARGET=DIR`).
    pub deploy: Vec<DeployTarget>,
    /// The command run (by `/bin/sh -c`) after a batch of changed files (`--reload`).
    pub reload: Option<String>,
    /// How long changes are gathered into one batch before the files are written and the
    /// reload runs.
    pub debounce: Duration,
    /// The longest a reload command may run; it is killed then, and counts as failed.
    pub reload_timeout: Duration,
    /// The first pause before a failed reload is tried again (doubled each time, at most
    /// [`RELOAD_RETRY_MAX`]).
    pub reload_retry: Duration,
    /// Where to answer HTTP-01 (`--http01-listen`).
    pub http01_listen: Option<SocketAddr>,
    /// Where to serve `/metrics` and `/healthz` (`--metrics-listen`).
    pub metrics_listen: Option<SocketAddr>,
    /// Renewals (`None`: this agent only deploys and answers; another renews).
    pub renewal: Option<Renewal>,
    /// How often every deploy target is synced and the metrics refreshed even without a
    /// change from the store (and the store's reachability checked).
    pub resync_every: Duration,
    /// `/healthz` answers 503 when the store was last reached longer ago than this.
    pub store_grace: Duration,
}

/// The longest pause between two tries of a failing reload command.
pub const RELOAD_RETRY_MAX: Duration = Duration::from_secs(300);

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            deploy: Vec::new(),
            reload: None,
            debounce: Duration::from_millis(500),
            reload_timeout: Duration::from_secs(120),
            reload_retry: Duration::from_secs(5),
            http01_listen: None,
            metrics_listen: None,
            renewal: None,
            resync_every: Duration::from_secs(30),
            store_grace: Duration::from_secs(120),
        }
    }
}

/// Why the agent could not start.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The ACME client could not be built, or the HTTP-01 listener could not bind.
    #[error("agent: {0}")]
    Acme(#[from] AcmeError),
    /// The metrics listener could not bind.
    #[error("agent: cannot listen for metrics on {addr}: {source}; choose a free address (--metrics-listen)")]
    MetricsListen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// Two deploy targets share a directory.
    #[error("agent: {dir} is the deploy directory of both {first} and {second}; give each target its own directory")]
    SharedDirectory {
        /// The directory.
        dir: std::path::PathBuf,
        /// One target.
        first: Target,
        /// The other.
        second: Target,
    },
}

/// What `/healthz` reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Health {
    /// Whether the store answered within [`AgentConfig::store_grace`].
    pub store_reachable: bool,
    /// Deploy targets whose files are not the store's certificate (or could not be
    /// written), with why.
    pub stale: Vec<(Target, String)>,
    /// The last reload's error, while it is failing.
    pub reload_failing: Option<String>,
}

impl Health {
    /// Everything is fine: `/healthz` answers 200.
    pub fn is_ok(&self) -> bool {
        self.store_reachable && self.stale.is_empty() && self.reload_failing.is_none()
    }
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_ok() {
            return f.write_str("ok\n");
        }
        if !self.store_reachable {
            f.write_str("store: not reached recently\n")?;
        }
        for (target, why) in &self.stale {
            writeln!(f, "deploy {target}: {why}")?;
        }
        if let Some(e) = &self.reload_failing {
            writeln!(f, "reload: failing: {e}")?;
        }
        Ok(())
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TargetLabel {
    target: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FailureLabels {
    target: String,
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: String,
}

/// The agent's metrics.
#[derive(Debug)]
struct Metrics {
    registry: Registry,
    not_after: Family<TargetLabel, Gauge>,
    renewal_due: Family<TargetLabel, Gauge>,
    renewal_failures: Family<FailureLabels, Counter>,
    renewal_in_progress: Family<TargetLabel, Gauge>,
    deploy_failures: Family<TargetLabel, Counter>,
    store_up: Gauge,
    reloads: Family<ResultLabel, Counter>,
    reload_failing: Gauge,
}

impl Metrics {
    fn new() -> Self {
        let mut m = Self {
            registry: Registry::default(),
            not_after: Family::default(),
            renewal_due: Family::default(),
            renewal_failures: Family::default(),
            renewal_in_progress: Family::default(),
            deploy_failures: Family::default(),
            store_up: Gauge::default(),
            reloads: Family::default(),
            reload_failing: Gauge::default(),
        };
        let r = &mut m.registry;
        r.register(
            "bmcert_certificate_not_after_seconds",
            "The current certificate's notAfter (Unix time), per target",
            m.not_after.clone(),
        );
        r.register(
            "bmcert_certificate_renewal_due_seconds",
            "When the renewer acts on the target's ACME certificate (Unix time)",
            m.renewal_due.clone(),
        );
        r.register(
            "bmcert_renewal_failures",
            "Failed renewal attempts of this agent, per target and kind of failure",
            m.renewal_failures.clone(),
        );
        r.register(
            "bmcert_renewal_in_progress",
            "1 while this agent renews the target (it holds the installation's renewal lock), else 0",
            m.renewal_in_progress.clone(),
        );
        r.register(
            "bmcert_deploy_failures",
            "Failures to write or remove a target's deployed files",
            m.deploy_failures.clone(),
        );
        r.register(
            "bmcert_store_up",
            "1 when the store answered the agent's last request, else 0",
            m.store_up.clone(),
        );
        r.register(
            "bmcert_reloads",
            "Reload command runs, by result (ok, failed)",
            m.reloads.clone(),
        );
        r.register(
            "bmcert_reload_failing",
            "1 while the reload command fails and is being retried, else 0",
            m.reload_failing.clone(),
        );
        m
    }

    fn text(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            tracing::error!("agent: the metrics could not be encoded");
        }
        out
    }
}

fn label(target: &Target) -> TargetLabel {
    TargetLabel {
        target: target.to_string(),
    }
}

/// What the loop knows, shared with `/healthz`.
#[derive(Debug, Default)]
struct View {
    /// When the store last answered.
    store_ok_at: Option<Instant>,
    /// Per deploy target: the store's leaf when last read (`None`: no certificate).
    expected: BTreeMap<Target, Option<Fingerprint>>,
    /// Per deploy target: the last deploy error, until a sync succeeds.
    deploy_errors: BTreeMap<Target, String>,
    /// The last reload error, while failing.
    reload_error: Option<String>,
}

struct Shared {
    installation: Installation,
    deploy: Vec<DeployTarget>,
    metrics: Metrics,
    view: Mutex<View>,
    /// The targets the certificate gauges have a series for.
    labelled: Mutex<BTreeSet<String>>,
    store_grace: Duration,
}

impl Shared {
    fn view(&self) -> std::sync::MutexGuard<'_, View> {
        self.view.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn store_ok(&self) {
        self.view().store_ok_at = Some(Instant::now());
        self.metrics.store_up.set(1);
    }

    fn store_down(&self, error: &dyn fmt::Display) {
        tracing::warn!(error = %error, "agent: the store did not answer");
        self.metrics.store_up.set(0);
    }

    fn health(&self) -> Health {
        let view = self.view();
        let store_reachable = view
            .store_ok_at
            .is_some_and(|at| at.elapsed() <= self.store_grace);
        let mut stale = Vec::new();
        for t in &self.deploy {
            if let Some(e) = view.deploy_errors.get(t.target()) {
                stale.push((t.target().clone(), e.clone()));
                continue;
            }
            match view.expected.get(t.target()) {
                None => stale.push((t.target().clone(), "not synced with the store yet".into())),
                Some(expected) if !t.is_current(expected.as_ref()) => stale.push((
                    t.target().clone(),
                    format!(
                        "the files in {} are not the store's certificate",
                        t.dir().display()
                    ),
                )),
                Some(_) => {}
            }
        }
        Health {
            store_reachable,
            stale,
            reload_failing: view.reload_error.clone(),
        }
    }

    /// Reads every certificate's notAfter and renewal time into the metrics.
    async fn refresh_metrics(&self) {
        let store = self.installation.store();
        match bmcert_renew::status(store.as_ref()).await {
            Ok(rows) => {
                self.store_ok();
                let mut seen = BTreeSet::new();
                for row in rows {
                    let l = TargetLabel {
                        target: row.target.clone(),
                    };
                    if let Some(t) = rfc3339(&row.not_after) {
                        self.metrics.not_after.get_or_create(&l).set(t);
                    }
                    match row.next_renewal.as_deref().and_then(rfc3339) {
                        Some(t) => {
                            self.metrics.renewal_due.get_or_create(&l).set(t);
                        }
                        None => {
                            self.metrics.renewal_due.remove(&l);
                        }
                    }
                    seen.insert(row.target);
                }
                // Targets disabled since: their series go.
                let mut labelled = self.labelled.lock().unwrap_or_else(|e| e.into_inner());
                for gone in labelled.difference(&seen) {
                    let l = TargetLabel {
                        target: gone.clone(),
                    };
                    self.metrics.not_after.remove(&l);
                    self.metrics.renewal_due.remove(&l);
                }
                *labelled = seen;
            }
            Err(e) => self.store_down(&e),
        }
    }
}

fn rfc3339(text: &str) -> Option<i64> {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|t| t.unix_timestamp())
}

/// The renewer's issuer, counting this agent's failed attempts by kind for the metrics.
#[derive(Debug)]
struct CountingIssuer {
    inner: AcmeIssuer,
    shared: Arc<Shared>,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("deploy", &self.deploy)
            .finish_non_exhaustive()
    }
}

/// Shows the attempt in `bmcert_renewal_in_progress` while it runs, and counts an attempt
/// that was dropped before it ended (its lease lost, or past the renewer's attempt timeout):
/// the renewer records why; the metric says `abandoned`.
struct Unfinished<'a> {
    shared: &'a Shared,
    target: &'a Target,
    done: bool,
}

impl Drop for Unfinished<'_> {
    fn drop(&mut self) {
        self.shared
            .metrics
            .renewal_in_progress
            .get_or_create(&label(self.target))
            .set(0);
        if !self.done {
            self.shared
                .metrics
                .renewal_failures
                .get_or_create(&FailureLabels {
                    target: self.target.to_string(),
                    kind: "abandoned".into(),
                })
                .inc();
        }
    }
}

impl Issuer for CountingIssuer {
    fn issue<'a>(
        &'a self,
        target: &'a Target,
        names: &'a [String],
        replaces: Option<&'a str>,
        fence: &'a Fence,
    ) -> BoxFuture<'a, Result<(), IssueError>> {
        Box::pin(async move {
            let mut guard = Unfinished {
                shared: &self.shared,
                target,
                done: false,
            };
            self.shared
                .metrics
                .renewal_in_progress
                .get_or_create(&label(target))
                .set(1);
            let result = self.inner.issue(target, names, replaces, fence).await;
            guard.done = true;
            if let Err(e) = &result {
                self.shared
                    .metrics
                    .renewal_failures
                    .get_or_create(&FailureLabels {
                        target: target.to_string(),
                        kind: e.kind().into(),
                    })
                    .inc();
            }
            result
        })
    }

    fn order_key(&self, target: &Target) -> Option<String> {
        self.inner.order_key(target)
    }

    fn renewal_window<'a>(
        &'a self,
        target: &'a Target,
        leaf_der: &'a [u8],
    ) -> BoxFuture<'a, Option<bmcert_acme::RenewalWindow>> {
        self.inner.renewal_window(target, leaf_der)
    }
}

/// A running agent; stop it with [`Agent::shutdown`].
#[derive(Debug)]
pub struct Agent {
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    deploy_task: tokio::task::JoinHandle<()>,
    follow_task: tokio::task::JoinHandle<()>,
    metrics_task: Option<tokio::task::JoinHandle<()>>,
    metrics_addr: Option<SocketAddr>,
    http01: Option<Http01Listener>,
    renewer: Option<(Renewer, Running)>,
    /// The renewer's ACME client: its challenge records are swept at shutdown.
    acme: Option<Arc<bmcert_acme::AcmeClient>>,
}

impl Agent {
    /// Starts everything `config` asks for on the current tokio runtime, over
    /// `installation` (its store, topology and challenge board). Returns once the
    /// listeners are bound; the first sync of the deploy targets runs at once in the
    /// background ([`Agent::health`] says when it is done).
    pub async fn start(
        installation: &Installation,
        config: AgentConfig,
    ) -> Result<Self, AgentError> {
        let mut dirs: BTreeMap<std::path::PathBuf, Target> = BTreeMap::new();
        for t in &config.deploy {
            if let Some(first) = dirs.insert(t.dir().to_owned(), t.target().clone()) {
                return Err(AgentError::SharedDirectory {
                    dir: t.dir().to_owned(),
                    first,
                    second: t.target().clone(),
                });
            }
        }
        let shared = Arc::new(Shared {
            installation: installation.clone(),
            deploy: config.deploy,
            metrics: Metrics::new(),
            view: Mutex::new(View::default()),
            labelled: Mutex::new(BTreeSet::new()),
            store_grace: config.store_grace,
        });
        let http01 = match config.http01_listen {
            Some(addr) => Some(installation.http01_listener(addr).await?),
            None => None,
        };
        let (metrics_task, metrics_addr) = match config.metrics_listen {
            Some(addr) => {
                let listener = TcpListener::bind(addr)
                    .await
                    .map_err(|source| AgentError::MetricsListen { addr, source })?;
                let bound = listener.local_addr().unwrap_or(addr);
                let task = tokio::spawn(serve_metrics(listener, shared.clone()));
                (Some(task), Some(bound))
            }
            None => (None, None),
        };
        let mut acme = None;
        let renewer = match config.renewal {
            Some(renewal) => {
                let client = Arc::new(installation.acme_client(renewal.acme)?);
                acme = Some(client.clone());
                let issuer = CountingIssuer {
                    inner: AcmeIssuer::with_shared_topology(
                        client,
                        installation.shared_topology().clone(),
                    ),
                    shared: shared.clone(),
                };
                let renewer = Renewer::new(
                    installation.store().clone(),
                    Arc::new(issuer),
                    renewal.notifier,
                    Arc::new(SystemClock),
                    renewal.config,
                );
                let running = renewer.start();
                Some((renewer, running))
            }
            None => None,
        };
        let follow_task = tokio::spawn(follow_store(installation.clone()));
        let (stop, stop_rx) = watch::channel(false);
        let deploy_task = tokio::spawn(deploy_loop(
            shared.clone(),
            Settings {
                reload: config.reload,
                debounce: config.debounce,
                reload_timeout: config.reload_timeout,
                reload_retry: config.reload_retry,
                resync_every: config.resync_every,
            },
            stop_rx,
        ));
        tracing::info!(
            http01 = ?http01.as_ref().map(Http01Listener::local_addr),
            metrics = ?metrics_addr,
            deploy = shared.deploy.len(),
            renewing = renewer.is_some(),
            "agent: started"
        );
        Ok(Self {
            shared,
            stop,
            deploy_task,
            follow_task,
            metrics_task,
            metrics_addr,
            http01,
            renewer,
            acme,
        })
    }

    /// Where HTTP-01 is answered.
    pub fn http01_addr(&self) -> Option<SocketAddr> {
        self.http01.as_ref().map(Http01Listener::local_addr)
    }

    /// Where `/metrics` and `/healthz` are served.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// What `/healthz` reports now.
    pub fn health(&self) -> Health {
        self.shared.health()
    }

    /// What `/metrics` serves now (Prometheus text format).
    pub fn metrics_text(&self) -> String {
        self.shared.metrics.text()
    }

    /// The renewer, when the agent renews (to [`wake`](Renewer::wake) it after a topology
    /// change, or for its [`status`](Renewer::status)).
    pub fn renewer(&self) -> Option<&Renewer> {
        self.renewer.as_ref().map(|(r, _)| r)
    }

    /// Reloads the topology (`SIGHUP`): resolution, the install gate and the next orders
    /// use `topology` from now on, and the renewer looks at its targets again.
    pub fn set_topology(&self, topology: bmcert_topology::Topology) {
        self.shared.installation.set_topology(topology);
        if let Some(renewer) = self.renewer() {
            renewer.wake();
        }
        tracing::info!("agent: topology reloaded");
    }

    /// Stops cleanly: the deploy loop finishes what it is writing (and a reload it is
    /// running), a renewal attempt in progress finishes, the listeners are closed.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        let _ = (&mut self.deploy_task).await;
        if let Some((_, running)) = self.renewer.take() {
            running.stop().await;
        }
        // The attempt in progress removed its own records when it ended; this also removes
        // the records of an attempt that was abandoned, and stale ones of other servers.
        if let Some(client) = self.acme.take() {
            if let Err(e) = client.sweep_challenges().await {
                tracing::warn!(error = %e, "agent: could not sweep the HTTP-01 records at shutdown");
            }
        }
        if let Some(http01) = self.http01.take() {
            http01.stop().await;
        }
        if let Some(task) = self.metrics_task.take() {
            task.abort();
            let _ = task.await;
        }
        self.follow_task.abort();
        let _ = (&mut self.follow_task).await;
        tracing::info!("agent: stopped");
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        self.follow_task.abort();
        if let Some(task) = &self.metrics_task {
            task.abort();
        }
    }
}

/// Keeps the installation's live index in step with the store, as a task of the runtime
/// (any backend), reloading after a failure with a growing pause.
async fn follow_store(installation: Installation) {
    let store = installation.store().clone();
    let index = installation.index().clone();
    let mut pause = Duration::from_secs(1);
    loop {
        match bmcert_resolve::load_all(store.as_ref(), &index).await {
            Ok(from) => {
                pause = Duration::from_secs(1);
                if let Err(e) = bmcert_resolve::follow(store.as_ref(), &index, from).await {
                    tracing::warn!(error = %e, "agent: following the store stopped; loading again");
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?pause, "agent: cannot load the certificates from the store")
            }
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(60));
    }
}

/// The deploy loop's own settings.
struct Settings {
    reload: Option<String>,
    debounce: Duration,
    reload_timeout: Duration,
    reload_retry: Duration,
    resync_every: Duration,
}

/// The next change of the feed, or never when there is no feed.
async fn next_change(
    watch: &mut Option<Watch>,
) -> Option<Result<bmcert_store::Change, bmcert_store::StoreError>> {
    match watch.as_mut() {
        Some(w) => w.recv().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

async fn deploy_loop(shared: Arc<Shared>, settings: Settings, mut stop: watch::Receiver<bool>) {
    let store = shared.installation.store().clone();
    let all: BTreeSet<Target> = shared.deploy.iter().map(|t| t.target().clone()).collect();
    let mut watch: Option<Watch> = None;
    // Targets to sync, and when (the batch's end).
    let mut dirty: BTreeSet<Target> = all.clone();
    let mut sync_at = Some(Instant::now());
    let mut resync_at = Instant::now() + settings.resync_every;
    // A reload owed (files changed) and when to try it.
    let mut reload_at: Option<Instant> = None;
    let mut reload_pause = settings.reload_retry;
    loop {
        if watch.is_none() {
            match store.revision().await {
                Ok(revision) => match store.watch(revision).await {
                    Ok(w) => {
                        shared.store_ok();
                        watch = Some(w);
                        // Changes may have been missed while there was no feed.
                        dirty.extend(all.iter().cloned());
                        sync_at.get_or_insert_with(Instant::now);
                    }
                    Err(e) => shared.store_down(&e),
                },
                Err(e) => shared.store_down(&e),
            }
        }
        let retry_watch = watch
            .is_none()
            .then(|| Instant::now() + Duration::from_secs(2));
        tokio::select! {
            biased;
            _ = stop.changed() => break,
            change = next_change(&mut watch) => match change {
                Some(Ok(change)) => {
                    shared.store_ok();
                    if let ChangeKey::Bundle(target) = change.key {
                        if all.contains(&target) {
                            dirty.insert(target);
                            sync_at.get_or_insert_with(|| Instant::now() + settings.debounce);
                        }
                    }
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "agent: the store's change feed ended; watching again");
                    watch = None;
                }
                None => watch = None,
            },
            _ = sleep_until(sync_at) => {
                sync_at = None;
                let changed = sync(&shared, &store, &mut dirty).await;
                if !dirty.is_empty() {
                    // What failed is tried again at the next resync.
                    tracing::debug!(pending = dirty.len(), "agent: some targets wait for the next resync");
                }
                if changed {
                    reload_at = Some(Instant::now());
                    reload_pause = settings.reload_retry;
                }
                shared.refresh_metrics().await;
            }
            _ = sleep_until(reload_at) => {
                match &settings.reload {
                    Some(command) => match run_reload(command, settings.reload_timeout).await {
                        Ok(()) => {
                            reload_at = None;
                            shared.metrics.reloads.get_or_create(&ResultLabel { result: "ok".into() }).inc();
                            shared.metrics.reload_failing.set(0);
                            shared.view().reload_error = None;
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, retry_in = ?reload_pause, "agent: the reload command failed; retrying");
                            shared.metrics.reloads.get_or_create(&ResultLabel { result: "failed".into() }).inc();
                            shared.metrics.reload_failing.set(1);
                            shared.view().reload_error = Some(e);
                            reload_at = Some(Instant::now() + reload_pause);
                            reload_pause = (reload_pause * 2).min(RELOAD_RETRY_MAX);
                        }
                    },
                    None => reload_at = None,
                }
            }
            _ = tokio::time::sleep_until(resync_at) => {
                resync_at = Instant::now() + settings.resync_every;
                match store.revision().await {
                    Ok(_) => shared.store_ok(),
                    Err(e) => shared.store_down(&e),
                }
                dirty.extend(all.iter().cloned());
                sync_at.get_or_insert_with(Instant::now);
            }
            _ = sleep_until(retry_watch) => {}
        }
    }
}

/// Syncs the `dirty` targets (those synced are taken out; a failure stays in); returns
/// whether any files changed.
async fn sync(shared: &Shared, store: &Arc<dyn Store>, dirty: &mut BTreeSet<Target>) -> bool {
    let mut changed = false;
    let due: Vec<&DeployTarget> = shared
        .deploy
        .iter()
        .filter(|t| dirty.contains(t.target()))
        .collect();
    for t in due {
        let target = t.target().clone();
        let installed = match store.current(&target).await {
            Ok(installed) => {
                shared.store_ok();
                installed
            }
            Err(e) => {
                shared.store_down(&e);
                continue;
            }
        };
        let expected = installed.as_ref().map(|i| i.bundle.meta().fingerprint);
        shared.view().expected.insert(target.clone(), expected);
        match t.sync(installed.as_ref()) {
            Ok(done) => {
                dirty.remove(&target);
                shared.view().deploy_errors.remove(&target);
                if done.changed() {
                    tracing::info!(target = %target, dir = %t.dir().display(), outcome = ?done, "agent: deployed");
                    changed = true;
                }
            }
            Err(e) => {
                shared
                    .metrics
                    .deploy_failures
                    .get_or_create(&label(&target))
                    .inc();
                tracing::error!(target = %target, error = %e, "agent: deploy failed");
                shared.view().deploy_errors.insert(target, e.to_string());
            }
        }
    }
    changed
}

/// The most of a reload command's output that is logged.
const RELOAD_OUTPUT_LOGGED: usize = 4096;

/// Runs the reload command once; its exit status and output are logged.
async fn run_reload(command: &str, timeout: Duration) -> Result<(), String> {
    tracing::info!(command = %bmcert_topology::Escaped(command), "agent: running the reload command");
    let child = tokio::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(command)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot run /bin/sh: {e}"))?;
    let output = match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(Ok(output)) => output,
        Ok(Err(e)) => return Err(format!("waiting for the reload command: {e}")),
        Err(_) => {
            return Err(format!(
                "the reload command did not finish within {} s and was killed",
                timeout.as_secs()
            ))
        }
    };
    let shown = |bytes: &[u8]| {
        let text = String::from_utf8_lossy(&bytes[..bytes.len().min(RELOAD_OUTPUT_LOGGED)]);
        bmcert_topology::Escaped(text.trim_end()).to_string()
    };
    let (stdout, stderr) = (shown(&output.stdout), shown(&output.stderr));
    if output.status.success() {
        tracing::info!(status = %output.status, stdout = %stdout, stderr = %stderr, "agent: the reload command succeeded");
        Ok(())
    } else {
        tracing::warn!(status = %output.status, stdout = %stdout, stderr = %stderr, "agent: the reload command failed");
        Err(format!("{} ({stderr})", output.status))
    }
}

/// `/metrics` and `/healthz` over hyper, on the challenge listeners' bounded accept loop.
async fn serve_metrics(listener: TcpListener, shared: Arc<Shared>) {
    bmcert_acme::accept_loop(listener, "metrics", move |stream| {
        let shared = shared.clone();
        async move {
            let service =
                hyper::service::service_fn(move |request: http::Request<hyper::body::Incoming>| {
                    let shared = shared.clone();
                    async move { Ok::<_, core::convert::Infallible>(answer(&request, &shared)) }
                });
            let _ = hyper::server::conn::http1::Builder::new()
                .keep_alive(false)
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .max_buf_size(8192)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        }
    })
    .await;
}

fn answer(
    request: &http::Request<hyper::body::Incoming>,
    shared: &Shared,
) -> http::Response<http_body_util::Full<bytes::Bytes>> {
    let (status, content_type, body) =
        if request.method() != http::Method::GET && request.method() != http::Method::HEAD {
            (
                http::StatusCode::METHOD_NOT_ALLOWED,
                "text/plain",
                String::new(),
            )
        } else {
            match request.uri().path() {
                "/metrics" => (
                    http::StatusCode::OK,
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    shared.metrics.text(),
                ),
                "/healthz" => {
                    let health = shared.health();
                    let status = match health.is_ok() {
                        true => http::StatusCode::OK,
                        false => http::StatusCode::SERVICE_UNAVAILABLE,
                    };
                    (status, "text/plain; charset=utf-8", health.to_string())
                }
                _ => (http::StatusCode::NOT_FOUND, "text/plain", String::new()),
            }
        };
    let mut response = http::Response::new(http_body_util::Full::new(bytes::Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    response
}
