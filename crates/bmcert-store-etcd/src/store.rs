//! [`EtcdStore`]: the `Store` trait over etcd transactions, watches and leases.

use core::fmt;
use core::future::Future;
use core::time::Duration;
use std::sync::Arc;

use bmcert_store::{
    Bundle, Change, ChangeKey, ChangeKind, Condition, Damage, Damaged, Expect, Fence, Installed,
    Lease, Listed, Part, Record, RecordKey, Revision, Store, StoreError, StoreFuture, Unavailable,
    UnavailableCause, Watch, WatchSender, HISTORY_DEPTH,
};
use bmcert_topology::Target;
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, DeleteOptions, EventType, GetOptions, GetResponse,
    KeyValue, PutOptions, Txn, TxnOp, TxnOpResponse, TxnResponse, WatchOptions,
};
use time::OffsetDateTime;
use zeroize::Zeroizing;

use crate::codec::{self, HistoryEntry, LockValue, StoredBundle, StoredHistory};

/// How to reach the etcd cluster and where the store lives in it.
#[derive(Clone)]
pub struct EtcdOptions {
    /// The cluster's client endpoints, `host:port` (or `http://host:port`).
    pub endpoints: Vec<String>,
    /// The key prefix everything is kept under (default `/bmcert/`); a trailing `/` is
    /// added when missing.
    pub prefix: String,
    /// User name and password for etcd authentication.
    pub user: Option<(String, Zeroizing<String>)>,
    /// TLS to the cluster (endpoints then use `https`).
    pub tls: Option<EtcdTls>,
    /// The longest a single operation may take before it fails with
    /// [`StoreError::Unavailable`] (default 5 s).
    pub request_timeout: Duration,
    /// The longest a connection attempt to one endpoint may take (default 2 s).
    pub connect_timeout: Duration,
}

impl EtcdOptions {
    /// Plain-HTTP options for `endpoints` with the default prefix and timeouts.
    pub fn new(endpoints: Vec<String>) -> Self {
        Self {
            endpoints,
            prefix: "/bmcert/".into(),
            user: None,
            tls: None,
            request_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(2),
        }
    }
}

impl fmt::Debug for EtcdOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdOptions")
            .field("endpoints", &self.endpoints)
            .field("prefix", &self.prefix)
            .field("user", &self.user.as_ref().map(|(u, _)| u))
            .field("tls", &self.tls)
            .field("request_timeout", &self.request_timeout)
            .finish()
    }
}

/// TLS settings for the connection to etcd.
#[derive(Clone)]
pub struct EtcdTls {
    /// PEM of the CA that signed the etcd servers' certificates.
    pub ca_pem: Vec<u8>,
    /// Client certificate chain and private key (PEM), when etcd requires client
    /// certificates (`--client-cert-auth`).
    pub identity: Option<(Vec<u8>, Zeroizing<Vec<u8>>)>,
    /// The name to check in the servers' certificates, when it is not the endpoint's host.
    pub domain_name: Option<String>,
}

impl fmt::Debug for EtcdTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdTls")
            .field("client_certificate", &self.identity.is_some())
            .field("domain_name", &self.domain_name)
            .finish_non_exhaustive()
    }
}

/// The etcd keys of a store under a prefix.
#[derive(Clone, Debug)]
pub struct KeyLayout {
    prefix: String,
}

impl KeyLayout {
    fn new(prefix: &str) -> Self {
        let mut prefix = prefix.to_owned();
        if !prefix.ends_with('/') {
            prefix.push('/');
        }
        Self { prefix }
    }
    /// The keys under `prefix`.
    pub fn for_prefix(prefix: &str) -> Self {
        Self::new(prefix)
    }
    /// What an etcd key means for the change feed (`None`: internal or foreign keys).
    pub fn change_key_of(&self, key: &[u8]) -> Option<ChangeKey> {
        self.change_key(key)
    }
    /// Everything under the prefix.
    pub fn all(&self) -> &str {
        &self.prefix
    }
    pub(crate) fn bundle(&self, target: &Target) -> String {
        format!("{}bundle/{target}", self.prefix)
    }
    fn bundles(&self) -> String {
        format!("{}bundle/", self.prefix)
    }
    pub(crate) fn history(&self, target: &Target) -> String {
        format!("{}history/{target}", self.prefix)
    }
    fn record(&self, key: &RecordKey) -> String {
        format!("{}record/{key}", self.prefix)
    }
    fn records(&self) -> String {
        format!("{}record/", self.prefix)
    }
    fn lock(&self, name: &RecordKey) -> String {
        format!("{}lock/{name}", self.prefix)
    }
    fn marker(&self) -> String {
        format!("{}rev", self.prefix)
    }

    /// What an etcd key under the prefix means for the change feed (`None`: internal keys).
    fn change_key(&self, key: &[u8]) -> Option<ChangeKey> {
        let key = core::str::from_utf8(key).ok()?.strip_prefix(&self.prefix)?;
        if let Some(t) = key.strip_prefix("bundle/") {
            return t.parse().ok().map(ChangeKey::Bundle);
        }
        if let Some(r) = key.strip_prefix("record/") {
            return RecordKey::new(r).ok().map(ChangeKey::Record);
        }
        if let Some(l) = key.strip_prefix("lock/") {
            return RecordKey::new(l).ok().map(ChangeKey::Lock);
        }
        None
    }
}

/// What the tasks share: the client, the key layout and the options.
pub(crate) struct Shared {
    pub(crate) client: Client,
    pub(crate) keys: KeyLayout,
    endpoints: String,
    timeout: Duration,
}

/// Shuts the store's runtime down when the last [`EtcdStore`] clone goes (without blocking,
/// so a store may be dropped inside another runtime).
struct Runtime(Option<tokio::runtime::Runtime>);

impl Drop for Runtime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// The [`Store`] on an etcd cluster. Cheap to clone (clones share the connection).
#[derive(Clone)]
pub struct EtcdStore {
    shared: Arc<Shared>,
    handle: tokio::runtime::Handle,
    _runtime: Arc<Runtime>,
}

impl fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdStore")
            .field("endpoints", &self.shared.endpoints)
            .field("prefix", &self.shared.keys.prefix)
            .finish()
    }
}

fn unavailable(endpoints: &str, e: &etcd_client::Error) -> StoreError {
    StoreError::Unavailable(Unavailable::new(
        cause_of(e),
        format!(
            "etcd at {endpoints}: {e}; check that the cluster is up and reachable (the store retries by itself)"
        ),
    ))
}

/// What an etcd-client failure means for the administrator. The gRPC status code decides
/// where etcd sets one; a failure below gRPC (TLS, connection) is recognised here, once,
/// from the error chain (tonic and rustls give no typed access through etcd-client), so
/// that callers branch on [`UnavailableCause`] rather than on text.
pub(crate) fn cause_of(e: &etcd_client::Error) -> UnavailableCause {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    let has = |needle: &str| text.contains(needle);
    if let etcd_client::Error::GRpcStatus(status) = e {
        match status.code() {
            tonic::Code::Unauthenticated => return UnavailableCause::CredentialsRefused,
            tonic::Code::PermissionDenied => return UnavailableCause::PermissionDenied,
            tonic::Code::DeadlineExceeded => return UnavailableCause::Timeout,
            // etcd answers a wrong password and a missing user as invalid arguments.
            tonic::Code::InvalidArgument if has("authentication failed") => {
                return UnavailableCause::CredentialsRefused
            }
            tonic::Code::InvalidArgument if has("user name is empty") => {
                return UnavailableCause::PermissionDenied
            }
            _ => {}
        }
    }
    if has("NotValidForName") || has("not valid for name") {
        UnavailableCause::TlsNameMismatch
    } else if has("invalid peer certificate") || has("UnknownIssuer") {
        UnavailableCause::TlsUntrusted
    } else if has("authentication failed") {
        UnavailableCause::CredentialsRefused
    } else if has("permission denied") {
        UnavailableCause::PermissionDenied
    } else if has("timed out") || has("deadline") {
        UnavailableCause::Timeout
    } else if has("connection closed") || has("Canceled") || has("handshake") {
        // The server cut the connection during or right after the handshake: with TLS, the
        // usual reason is a client certificate it requires (or refuses).
        UnavailableCause::TlsHandshake
    } else {
        UnavailableCause::Unreachable
    }
}

impl EtcdStore {
    /// Connects to the cluster (blocking for at most `connect_timeout` per endpoint). The
    /// connection is established lazily: an unreachable cluster shows up as
    /// [`StoreError::Unavailable`] from the operations, not here, except with authentication,
    /// which needs a token first.
    pub fn connect(options: EtcdOptions) -> Result<Self, StoreError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("bmcert-etcd")
            .enable_all()
            .build()
            .map_err(|e| {
                StoreError::Unavailable(format!("cannot start the etcd runtime: {e}").into())
            })?;
        let handle = runtime.handle().clone();
        let runtime = Arc::new(Runtime(Some(runtime)));
        let endpoints_text = options.endpoints.join(",");
        let scheme = if options.tls.is_some() {
            "https"
        } else {
            "http"
        };
        let endpoints: Vec<String> = options
            .endpoints
            .iter()
            .map(|e| {
                if e.contains("://") {
                    e.clone()
                } else {
                    format!("{scheme}://{e}")
                }
            })
            .collect();
        let mut connect = ConnectOptions::new()
            .with_connect_timeout(options.connect_timeout)
            .with_keep_alive(Duration::from_secs(2), Duration::from_secs(2))
            .with_keep_alive_while_idle(true);
        if let Some((user, password)) = &options.user {
            connect = connect.with_user(user.clone(), password.as_str());
        }
        #[cfg(feature = "tls")]
        if let Some(tls) = &options.tls {
            let mut config = etcd_client::TlsOptions::new()
                .ca_certificate(etcd_client::Certificate::from_pem(&tls.ca_pem));
            if let Some((cert, key)) = &tls.identity {
                config = config.identity(etcd_client::Identity::from_pem(cert, key.as_slice()));
            }
            if let Some(name) = &tls.domain_name {
                config = config.domain_name(name.clone());
            }
            connect = connect.with_tls(config);
        }
        #[cfg(not(feature = "tls"))]
        if options.tls.is_some() {
            return Err(StoreError::Unavailable(
                "TLS to etcd needs bmcert-store-etcd's `tls` feature".into(),
            ));
        }
        let (tx, rx) = std::sync::mpsc::channel();
        let timeout = options.connect_timeout + options.request_timeout;
        handle.spawn(async move {
            let result =
                tokio::time::timeout(timeout, Client::connect(endpoints, Some(connect))).await;
            let _ = tx.send(result);
        });
        let client = match rx.recv_timeout(timeout + Duration::from_secs(1)) {
            Ok(Ok(Ok(client))) => client,
            Ok(Ok(Err(e))) => return Err(unavailable(&endpoints_text, &e)),
            _ => {
                return Err(StoreError::Unavailable(Unavailable::new(
                    UnavailableCause::Timeout,
                    format!("etcd at {endpoints_text} did not answer within {timeout:?}"),
                )))
            }
        };
        Ok(Self {
            shared: Arc::new(Shared {
                client,
                keys: KeyLayout::new(&options.prefix),
                endpoints: endpoints_text,
                timeout: options.request_timeout,
            }),
            handle,
            _runtime: runtime,
        })
    }

    /// The etcd keys this store uses.
    pub fn layout(&self) -> &KeyLayout {
        &self.shared.keys
    }

    /// Runs `op` on the store's runtime, bounded by the request timeout.
    pub(crate) fn run<T, F, Fut>(&self, op: F) -> StoreFuture<'static, T>
    where
        T: Send + 'static,
        F: FnOnce(Arc<Shared>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, StoreError>> + Send + 'static,
    {
        let shared = self.shared.clone();
        let timeout = shared.timeout;
        let endpoints = shared.endpoints.clone();
        let task = self
            .handle
            .spawn(async move { tokio::time::timeout(timeout, op(shared)).await });
        Box::pin(async move {
            match task.await {
                Ok(Ok(result)) => result,
                Ok(Err(_)) => Err(StoreError::Unavailable(Unavailable::new(
                    UnavailableCause::Timeout,
                    format!("etcd at {endpoints} did not answer within {timeout:?}; the cluster may be down or without a leader"),
                ))),
                Err(e) => Err(StoreError::Unavailable(
                    format!("the etcd task failed: {e}").into(),
                )),
            }
        })
    }
}

/// The largest answer to one range read (`list`, `list_meta`, `keys`, `records`): 1 GiB,
/// about 400,000 bundles.
const MAX_RANGE_BYTES: usize = 1 << 30;

/// The most attempts an optimistic read-modify-write makes before giving up.
const MAX_ATTEMPTS: usize = 64;

impl Shared {
    pub(crate) fn err(&self, e: etcd_client::Error) -> StoreError {
        unavailable(&self.endpoints, &e)
    }

    /// Runs `call`, retrying (with back-off, for at most three quarters of the request
    /// timeout) while the failure shows the request did not reach a working member: a member
    /// that just died stays in the client's endpoint set until its connection is retried.
    /// Reads (`idempotent`) are also retried after a connection broke mid-request; writes
    /// are not, since etcd may have applied them.
    async fn retry<T, F, Fut>(&self, idempotent: bool, call: F) -> Result<T, StoreError>
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let deadline = tokio::time::Instant::now() + self.timeout * 3 / 4;
        let mut backoff = Duration::from_millis(10);
        loop {
            match call(self.client.clone()).await {
                Ok(v) => return Ok(v),
                Err(e)
                    if retryable(&e, idempotent)
                        && tokio::time::Instant::now() + backoff < deadline =>
                {
                    tracing::debug!(error = %e, "etcd request retried");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_millis(250));
                }
                Err(e) => return Err(self.err(e)),
            }
        }
    }

    pub(crate) async fn get_one(&self, key: &str) -> Result<(Option<KeyValue>, i64), StoreError> {
        let mut resp = self
            .retry(true, |mut c| async move { c.get(key, None).await })
            .await?;
        let rev = resp.header().map_or(0, |h| h.revision());
        Ok((resp.take_kvs().into_iter().next(), rev))
    }

    /// One range read of everything under `prefix`. The answer may be larger than
    /// tonic's default limit of 4 MiB per message (10,000 bundles are about 25 MB), so the
    /// limit is raised to [`MAX_RANGE_BYTES`] for it.
    async fn get_prefix(&self, prefix: &str, keys_only: bool) -> Result<GetResponse, StoreError> {
        self.retry(true, |c| async move {
            let mut options = GetOptions::new().with_prefix();
            if keys_only {
                options = options.with_keys_only();
            }
            c.kv_client()
                .max_decoding_message_size(MAX_RANGE_BYTES)
                .get(prefix, Some(options))
                .await
        })
        .await
    }

    /// A transaction that writes (retried only when it certainly did not reach etcd).
    async fn txn(&self, txn: Txn) -> Result<TxnResponse, StoreError> {
        self.retry(false, |mut c| {
            let txn = txn.clone();
            async move { c.txn(txn).await }
        })
        .await
    }

    /// A transaction that only reads.
    async fn read_txn(&self, txn: Txn) -> Result<TxnResponse, StoreError> {
        self.retry(true, |mut c| {
            let txn = txn.clone();
            async move { c.txn(txn).await }
        })
        .await
    }

    fn fence_compare(&self, fence: Option<&Fence>) -> Vec<Compare> {
        fence
            .map(|f| {
                Compare::create_revision(self.keys.lock(&f.lock), CompareOp::Equal, to_i64(f.token))
            })
            .into_iter()
            .collect()
    }

    /// After a failed transaction: `Fenced` if the fence no longer holds.
    async fn check_fence(&self, fence: Option<&Fence>) -> Result<(), StoreError> {
        if let Some(f) = fence {
            let (kv, _) = self.get_one(&self.keys.lock(&f.lock)).await?;
            if kv.map(|kv| kv.create_revision()) != Some(to_i64(f.token)) {
                return Err(StoreError::Fenced {
                    lock: f.lock.to_string(),
                    token: f.token,
                });
            }
        }
        Ok(())
    }

    fn marker_put(&self) -> TxnOp {
        TxnOp::put(self.keys.marker(), Vec::new(), None)
    }

    /// A target's bundle and history values as a writer needs them: each with its mod
    /// revision (0: absent), the bundle decoded when it can be (a damaged one is replaced
    /// by the write), and the history decoded or, when damaged, rebuilt (no kept version;
    /// the version counter at least the current version and the history key's etcd
    /// version, its count of writes, so no version number is reused).
    async fn read_target(
        &self,
        target: &Target,
    ) -> Result<(Option<(i64, Option<StoredBundle>)>, (i64, StoredHistory)), StoreError> {
        let bkey = self.keys.bundle(target);
        let hkey = self.keys.history(target);
        let resp = self
            .read_txn(Txn::new().and_then(vec![
                TxnOp::get(bkey.clone(), None),
                TxnOp::get(hkey.clone(), None),
            ]))
            .await?;
        let mut current = None;
        let mut history = (0, StoredHistory::default());
        for (i, op) in resp.op_responses().into_iter().enumerate() {
            if let TxnOpResponse::Get(get) = op {
                if let Some(kv) = get.kvs().first() {
                    if i == 0 {
                        let decoded = match codec::decode::<StoredBundle>(&bkey, kv.value()) {
                            Ok(stored) => Some(stored),
                            Err(e) => {
                                tracing::warn!(error = %e, "the current bundle is damaged; the write replaces it");
                                None
                            }
                        };
                        current = Some((kv.mod_revision(), decoded));
                    } else {
                        let decoded = match codec::decode::<StoredHistory>(&hkey, kv.value()) {
                            Ok(h) => h,
                            Err(e) => {
                                tracing::warn!(error = %e, "the target's history is damaged: rebuilt without its kept versions");
                                StoredHistory {
                                    last_version: to_u64(kv.version()),
                                    entries: Vec::new(),
                                }
                            }
                        };
                        history = (kv.mod_revision(), decoded);
                    }
                }
            }
        }
        if let Some((_, Some(cur))) = &current {
            history.1.last_version = history.1.last_version.max(cur.version);
        }
        Ok((current, history))
    }

    /// The optimistic read-modify-write of a target's bundle and history.
    async fn mutate_target(
        &self,
        target: &Target,
        condition: &Condition,
        plan: impl Fn(Option<(i64, &StoredBundle)>, &mut StoredHistory) -> Result<Plan, StoreError>,
    ) -> Result<Option<(i64, Plan)>, StoreError> {
        let bkey = self.keys.bundle(target);
        let hkey = self.keys.history(target);
        for _ in 0..MAX_ATTEMPTS {
            let (current, (hrev, mut history)) = self.read_target(target).await?;
            let cur_rev = current.as_ref().map(|(r, _)| *r);
            check_expect(&bkey, condition.expect, cur_rev.map(to_u64))?;
            let readable = current
                .as_ref()
                .and_then(|(r, b)| b.as_ref().map(|b| (*r, b)));
            let planned = plan(readable, &mut history)?;
            // A damaged current bundle is there to be replaced or deleted.
            let planned = match (planned, &current) {
                (Plan::Nothing, Some(_)) => Plan::Delete,
                (planned, _) => planned,
            };
            let mut ops = Vec::new();
            match &planned {
                Plan::Nothing => return Ok(None),
                Plan::Put(bundle) => {
                    ops.push(TxnOp::put(
                        bkey.clone(),
                        codec::encode(bundle)?.to_vec(),
                        None,
                    ));
                }
                Plan::Delete => ops.push(TxnOp::delete(bkey.clone(), None)),
            }
            ops.push(TxnOp::put(
                hkey.clone(),
                codec::encode(&history)?.to_vec(),
                None,
            ));
            ops.push(self.marker_put());
            let mut compares = vec![
                Compare::mod_revision(bkey.clone(), CompareOp::Equal, cur_rev.unwrap_or(0)),
                Compare::mod_revision(hkey.clone(), CompareOp::Equal, hrev),
            ];
            compares.extend(self.fence_compare(condition.fence.as_ref()));
            let resp = self.txn(Txn::new().when(compares).and_then(ops)).await?;
            if resp.succeeded() {
                let rev = resp.header().map_or(0, |h| h.revision());
                return Ok(Some((rev, planned)));
            }
            self.check_fence(condition.fence.as_ref()).await?;
            // Someone else changed the target meanwhile: re-read (the expectation is
            // re-checked against what is there now).
        }
        Err(contention(&bkey))
    }
    /// [`Shared::mutate_target`] for a plan that always writes a bundle (install, rollback):
    /// the bundle now current.
    async fn put_target(
        &self,
        target: &Target,
        condition: &Condition,
        plan: impl Fn(Option<(i64, &StoredBundle)>, &mut StoredHistory) -> Result<Plan, StoreError>,
    ) -> Result<Installed, StoreError> {
        let key = self.keys.bundle(target);
        match self.mutate_target(target, condition, plan).await? {
            Some((rev, Plan::Put(stored))) => installed(target, stored.version, rev, &stored, &key),
            _ => Err(contention(&key)),
        }
    }
}

/// What a target mutation writes.
enum Plan {
    Nothing,
    Put(Box<StoredBundle>),
    Delete,
}

fn contention(key: &str) -> StoreError {
    StoreError::Unavailable(
        format!("{key} kept changing concurrently ({MAX_ATTEMPTS} attempts); retry later").into(),
    )
}

fn target_of(row: &Result<Listed, Damaged>) -> &Target {
    match row {
        Ok(l) => &l.target,
        Err(d) => &d.target,
    }
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn check_expect(key: &str, expect: Expect, actual: Option<u64>) -> Result<(), StoreError> {
    let ok = match expect {
        Expect::Any => true,
        Expect::Absent => actual.is_none(),
        Expect::Revision(r) => actual == Some(r.0),
    };
    if ok {
        Ok(())
    } else {
        Err(StoreError::Conflict {
            key: key.to_owned(),
            expected: expect,
            actual: actual.map(Revision),
        })
    }
}

fn expect_compare(key: &str, expect: Expect) -> Option<Compare> {
    match expect {
        Expect::Any => None,
        Expect::Absent => Some(Compare::version(key, CompareOp::Equal, 0)),
        Expect::Revision(r) => Some(Compare::mod_revision(key, CompareOp::Equal, to_i64(r.0))),
    }
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

fn from_ns(ns: i128) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(ns).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

fn installed(
    target: &Target,
    version: u64,
    revision: i64,
    stored: &StoredBundle,
    what: &str,
) -> Result<Installed, StoreError> {
    Ok(Installed {
        target: target.clone(),
        version,
        revision: Revision(to_u64(revision)),
        bundle: stored
            .to_bundle()
            .map_err(|damage| damaged(target, Some(version), what, damage))?,
    })
}

fn damaged(target: &Target, version: Option<u64>, key: &str, damage: Damage) -> StoreError {
    StoreError::damaged(Damaged {
        target: target.clone(),
        version,
        location: format!("etcd key {key}"),
        damage,
    })
}

/// Decodes a target's bundle value, as damage when it cannot be (the decoder's position
/// only: never content).
fn decode_bundle(target: &Target, key: &str, bytes: &[u8]) -> Result<StoredBundle, StoreError> {
    codec::decode::<StoredBundle>(key, bytes).map_err(|e| match e {
        StoreError::Corrupt { reason, .. } => damaged(
            target,
            None,
            key,
            Damage::Unreadable {
                part: Part::Whole,
                reason,
            },
        ),
        other => other,
    })
}

/// Whole seconds for an etcd lease TTL (at least 1).
fn lease_secs(ttl: Duration) -> i64 {
    let secs = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
    to_i64(secs.max(1))
}

impl Store for EtcdStore {
    fn revision(&self) -> StoreFuture<'_, Revision> {
        self.run(|s| async move {
            let (marker, header) = s.get_one(&s.keys.marker()).await?;
            // Nothing written under the prefix yet: the cluster's revision is as good a
            // starting point as any (and is not compacted).
            Ok(Revision(to_u64(
                marker.map_or(header, |kv| kv.mod_revision()),
            )))
        })
    }

    fn current<'a>(&'a self, target: &'a Target) -> StoreFuture<'a, Option<Installed>> {
        let target = target.clone();
        self.run(|s| async move {
            let key = s.keys.bundle(&target);
            let (kv, _) = s.get_one(&key).await?;
            let Some(kv) = kv else { return Ok(None) };
            let stored = decode_bundle(&target, &key, kv.value())?;
            installed(&target, stored.version, kv.mod_revision(), &stored, &key).map(Some)
        })
    }

    fn history<'a>(&'a self, target: &'a Target) -> StoreFuture<'a, Vec<Installed>> {
        let target = target.clone();
        self.run(|s| async move {
            let key = s.keys.history(&target);
            let (kv, _) = s.get_one(&key).await?;
            let Some(kv) = kv else {
                return Ok(Vec::new());
            };
            let history: StoredHistory = codec::decode(&key, kv.value()).map_err(|e| {
                let reason = match e {
                    StoreError::Corrupt { reason, .. } => reason,
                    other => other.to_string(),
                };
                damaged(
                    &target,
                    None,
                    &key,
                    Damage::Unreadable {
                        part: Part::State,
                        reason,
                    },
                )
            })?;
            let mut out = Vec::with_capacity(history.entries.len());
            for e in &history.entries {
                match installed(
                    &target,
                    e.bundle.version,
                    to_i64(e.revision),
                    &e.bundle,
                    &key,
                ) {
                    Ok(i) => out.push(i),
                    Err(StoreError::Damaged(d)) => {
                        tracing::warn!(damage = %d, "a kept older version is damaged; it is left out of the history");
                    }
                    Err(e) => return Err(e),
                }
            }
            Ok(out)
        })
    }

    fn list(&self) -> StoreFuture<'_, Vec<Result<Listed, Damaged>>> {
        self.run(|s| async move {
            let prefix = s.keys.bundles();
            let resp = s.get_prefix(&prefix, false).await?;
            let mut out = Vec::new();
            for kv in resp.kvs() {
                let key = String::from_utf8_lossy(kv.key()).into_owned();
                let Some(target) = key
                    .strip_prefix(&prefix)
                    .and_then(|t| t.parse::<Target>().ok())
                    .filter(|t| key.strip_prefix(&prefix) == Some(t.to_string().as_str()))
                else {
                    tracing::warn!(%key, "ignoring a key under the store's bundle prefix that names no target");
                    continue;
                };
                let row = decode_bundle(&target, &key, kv.value()).and_then(|stored| {
                    installed(&target, stored.version, kv.mod_revision(), &stored, &key)
                });
                match row {
                    Ok(i) => out.push(Ok(Listed {
                        meta: i.bundle.meta().clone(),
                        target: i.target,
                        version: i.version,
                        revision: i.revision,
                    })),
                    Err(StoreError::Damaged(d)) => out.push(Err(*d)),
                    Err(e) => return Err(e),
                }
            }
            out.sort_by(|a, b| target_of(a).cmp(target_of(b)));
            Ok(out)
        })
    }

    fn list_meta(&self) -> StoreFuture<'_, Vec<Result<Listed, Damaged>>> {
        self.run(|s| async move {
            // One range read of the bundle prefix. etcd cannot leave the key out of a value,
            // so the keys travel, but only the version and metadata are decoded.
            let prefix = s.keys.bundles();
            let resp = s.get_prefix(&prefix, false).await?;
            let mut out = Vec::with_capacity(resp.kvs().len());
            for kv in resp.kvs() {
                let key = String::from_utf8_lossy(kv.key()).into_owned();
                let Some(target) = key
                    .strip_prefix(&prefix)
                    .and_then(|t| t.parse::<Target>().ok())
                    .filter(|t| key.strip_prefix(&prefix) == Some(t.to_string().as_str()))
                else {
                    tracing::warn!(%key, "ignoring a key under the store's bundle prefix that names no target");
                    continue;
                };
                match serde_json::from_slice::<codec::StoredMetaOnly>(kv.value()) {
                    Ok(stored) => out.push(Ok(Listed {
                        target,
                        version: stored.version,
                        revision: Revision(to_u64(kv.mod_revision())),
                        meta: stored.meta,
                    })),
                    Err(e) => {
                        let damage = Damage::Unreadable {
                            part: Part::Whole,
                            // The decoder's position only: never content.
                            reason: format!("not a bundle value (line {}, column {})", e.line(), e.column()),
                        };
                        match damaged(&target, None, &key, damage) {
                            StoreError::Damaged(d) => out.push(Err(*d)),
                            other => return Err(other),
                        }
                    }
                }
            }
            out.sort_by(|a, b| target_of(a).cmp(target_of(b)));
            Ok(out)
        })
    }

    fn install<'a>(
        &'a self,
        target: &'a Target,
        bundle: &'a Bundle,
        condition: &'a Condition,
    ) -> StoreFuture<'a, Installed> {
        let target = target.clone();
        let condition = condition.clone();
        let new = StoredBundle::from_bundle(0, bundle);
        self.run(move |s| async move {
            s.put_target(&target, &condition, |current, history| {
                // A damaged current version is not kept: it could never be served again.
                if let Some((rev, cur)) = current.filter(|(_, cur)| cur.to_bundle().is_ok()) {
                    history.entries.insert(
                        0,
                        HistoryEntry {
                            revision: to_u64(rev),
                            bundle: cur.with_version(cur.version),
                        },
                    );
                    history.entries.truncate(HISTORY_DEPTH);
                }
                history.last_version += 1;
                Ok(Plan::Put(Box::new(new.with_version(history.last_version))))
            })
            .await
        })
    }

    fn rollback<'a>(
        &'a self,
        target: &'a Target,
        condition: &'a Condition,
    ) -> StoreFuture<'a, Installed> {
        let target = target.clone();
        let condition = condition.clone();
        self.run(move |s| async move {
            let name = target.to_string();
            let hkey = s.keys.history(&target);
            s.put_target(&target, &condition, |_, history| {
                if history.entries.is_empty() {
                    return Err(StoreError::NoPreviousVersion {
                        target: name.clone(),
                    });
                }
                let back = history.entries.remove(0);
                // Never switch to a version that cannot be served.
                back.bundle
                    .to_bundle()
                    .map_err(|damage| damaged(&target, Some(back.bundle.version), &hkey, damage))?;
                Ok(Plan::Put(Box::new(
                    back.bundle.with_version(back.bundle.version),
                )))
            })
            .await
        })
    }

    fn disable<'a>(
        &'a self,
        target: &'a Target,
        condition: &'a Condition,
    ) -> StoreFuture<'a, Option<Revision>> {
        let target = target.clone();
        let condition = condition.clone();
        self.run(move |s| async move {
            let done = s
                .mutate_target(&target, &condition, |current, history| {
                    // The bundle and every kept version go (the keys with them); the version
                    // counter stays, so a later install gets a new number.
                    if current.is_none() && history.entries.is_empty() {
                        return Ok(Plan::Nothing);
                    }
                    history.entries.clear();
                    Ok(Plan::Delete)
                })
                .await?;
            Ok(done.map(|(rev, _)| Revision(to_u64(rev))))
        })
    }

    fn get<'a>(&'a self, key: &'a RecordKey) -> StoreFuture<'a, Option<Record>> {
        let key = key.clone();
        self.run(|s| async move {
            let (kv, _) = s.get_one(&s.keys.record(&key)).await?;
            Ok(kv.map(|kv| {
                let revision = Revision(to_u64(kv.mod_revision()));
                let (_, value) = kv.into_key_value();
                Record::new(revision, value)
            }))
        })
    }

    fn put<'a>(
        &'a self,
        key: &'a RecordKey,
        value: &'a [u8],
        condition: &'a Condition,
    ) -> StoreFuture<'a, Revision> {
        let key = key.clone();
        let value = Zeroizing::new(value.to_vec());
        let condition = condition.clone();
        self.run(move |s| async move {
            let ekey = s.keys.record(&key);
            let mut compares: Vec<Compare> = expect_compare(&ekey, condition.expect)
                .into_iter()
                .collect();
            compares.extend(s.fence_compare(condition.fence.as_ref()));
            let txn = Txn::new()
                .when(compares)
                .and_then(vec![
                    TxnOp::put(ekey.clone(), value.to_vec(), None),
                    s.marker_put(),
                ])
                .or_else(vec![TxnOp::get(ekey.clone(), None)]);
            let resp = s.txn(txn).await?;
            if resp.succeeded() {
                return Ok(Revision(to_u64(resp.header().map_or(0, |h| h.revision()))));
            }
            s.check_fence(condition.fence.as_ref()).await?;
            Err(StoreError::Conflict {
                key: ekey,
                expected: condition.expect,
                actual: first_get_revision(&resp),
            })
        })
    }

    fn delete<'a>(
        &'a self,
        key: &'a RecordKey,
        condition: &'a Condition,
    ) -> StoreFuture<'a, Option<Revision>> {
        let key = key.clone();
        let condition = condition.clone();
        self.run(move |s| async move {
            let ekey = s.keys.record(&key);
            let mut compares = vec![Compare::version(ekey.as_str(), CompareOp::Greater, 0)];
            compares.extend(expect_compare(&ekey, condition.expect));
            compares.extend(s.fence_compare(condition.fence.as_ref()));
            let txn = Txn::new()
                .when(compares)
                .and_then(vec![TxnOp::delete(ekey.clone(), None), s.marker_put()])
                .or_else(vec![TxnOp::get(ekey.clone(), None)]);
            let resp = s.txn(txn).await?;
            if resp.succeeded() {
                return Ok(Some(Revision(to_u64(
                    resp.header().map_or(0, |h| h.revision()),
                ))));
            }
            s.check_fence(condition.fence.as_ref()).await?;
            let actual = first_get_revision(&resp);
            match (actual, condition.expect) {
                (None, Expect::Any | Expect::Absent) => Ok(None),
                _ => Err(StoreError::Conflict {
                    key: ekey,
                    expected: condition.expect,
                    actual,
                }),
            }
        })
    }

    fn keys<'a>(&'a self, prefix: &'a str) -> StoreFuture<'a, Vec<RecordKey>> {
        let prefix = prefix.to_owned();
        self.run(move |s| async move {
            let base = s.keys.records();
            let trimmed = prefix.trim_end_matches('/');
            let range = format!("{base}{trimmed}");
            let resp = s.get_prefix(&range, true).await?;
            let mut out: Vec<RecordKey> = resp
                .kvs()
                .iter()
                .filter_map(|kv| {
                    let k = core::str::from_utf8(kv.key()).ok()?.strip_prefix(&base)?;
                    RecordKey::new(k).ok()
                })
                .filter(|k| k.is_under(&prefix))
                .collect();
            out.sort();
            Ok(out)
        })
    }

    fn records<'a>(&'a self, prefix: &'a str) -> StoreFuture<'a, Vec<(RecordKey, Record)>> {
        let prefix = prefix.to_owned();
        self.run(move |s| async move {
            let base = s.keys.records();
            let trimmed = prefix.trim_end_matches('/');
            let range = format!("{base}{trimmed}");
            let mut resp = s.get_prefix(&range, false).await?;
            let mut out: Vec<(RecordKey, Record)> = resp
                .take_kvs()
                .into_iter()
                .filter_map(|kv| {
                    let k = core::str::from_utf8(kv.key()).ok()?.strip_prefix(&base)?;
                    let key = RecordKey::new(k).ok().filter(|k| k.is_under(&prefix))?;
                    let revision = Revision(to_u64(kv.mod_revision()));
                    let (_, value) = kv.into_key_value();
                    Some((key, Record::new(revision, value)))
                })
                .collect();
            out.sort_by(|a, b| a.0.cmp(&b.0));
            Ok(out)
        })
    }

    fn watch(&self, after: Revision) -> StoreFuture<'_, Watch> {
        let (sender, watch) = Watch::channel(None);
        let shared = self.shared.clone();
        self.handle.spawn(watch_task(shared, after, sender));
        Box::pin(async move { Ok(watch) })
    }

    fn lock<'a>(
        &'a self,
        name: &'a RecordKey,
        holder: &'a str,
        ttl: Duration,
    ) -> StoreFuture<'a, Lease> {
        let name = name.clone();
        let holder = holder.to_owned();
        self.run(move |s| async move {
            let lkey = s.keys.lock(&name);
            for _ in 0..MAX_ATTEMPTS {
                let (kv, _) = s.get_one(&lkey).await?;
                if let Some(kv) = kv {
                    let value: LockValue = codec::decode(&lkey, kv.value())?;
                    let expires_at = from_ns(value.expires_at_ns);
                    if expires_at > now() {
                        return Err(StoreError::LockHeld {
                            lock: name.to_string(),
                            holder: value.holder,
                            expires_at: expires_at
                                .format(&time::format_description::well_known::Rfc3339)
                                .unwrap_or_default(),
                        });
                    }
                    // Expired by its holder's own deadline: take it over (deleting the key
                    // makes the next grant's create revision, the token, larger).
                    let txn = Txn::new()
                        .when(vec![Compare::mod_revision(
                            lkey.as_str(),
                            CompareOp::Equal,
                            kv.mod_revision(),
                        )])
                        .and_then(vec![TxnOp::delete(lkey.as_str(), None), s.marker_put()]);
                    if s.txn(txn).await?.succeeded() {
                        revoke(&s, value.lease).await;
                    }
                    continue;
                }
                let secs = lease_secs(ttl);
                let grant = s
                    .retry(
                        false,
                        |mut c| async move { c.lease_grant(secs, None).await },
                    )
                    .await?;
                let expires_at = now() + ttl;
                let value = LockValue {
                    holder: holder.clone(),
                    expires_at_ns: expires_at.unix_timestamp_nanos(),
                    lease: grant.id(),
                    lease_ttl: secs,
                };
                let txn = Txn::new()
                    .when(vec![Compare::version(lkey.as_str(), CompareOp::Equal, 0)])
                    .and_then(vec![
                        TxnOp::put(
                            lkey.as_str(),
                            codec::encode(&value)?.to_vec(),
                            Some(PutOptions::new().with_lease(grant.id())),
                        ),
                        s.marker_put(),
                    ]);
                let resp = s.txn(txn).await?;
                if resp.succeeded() {
                    return Ok(Lease {
                        lock: name.clone(),
                        holder: holder.clone(),
                        token: to_u64(resp.header().map_or(0, |h| h.revision())),
                        expires_at,
                    });
                }
                revoke(&s, grant.id()).await;
            }
            Err(contention(&lkey))
        })
    }

    fn renew<'a>(&'a self, lease: &'a Lease, ttl: Duration) -> StoreFuture<'a, Lease> {
        let lease = lease.clone();
        self.run(move |s| async move {
            let lkey = s.keys.lock(&lease.lock);
            let fenced = || StoreError::Fenced {
                lock: lease.lock.to_string(),
                token: lease.token,
            };
            let (kv, _) = s.get_one(&lkey).await?;
            let Some(kv) = kv.filter(|kv| kv.create_revision() == to_i64(lease.token)) else {
                return Err(fenced());
            };
            let mut value: LockValue = codec::decode(&lkey, kv.value())?;
            let secs = lease_secs(ttl);
            let mut leases = s.client.lease_client();
            let old_lease = value.lease;
            if secs <= value.lease_ttl {
                // etcd's keep-alive resets the lease to its full TTL.
                let (mut keeper, mut stream) =
                    leases.keep_alive(value.lease).await.map_err(|e| s.err(e))?;
                keeper.keep_alive().await.map_err(|e| s.err(e))?;
                match stream.message().await.map_err(|e| s.err(e))? {
                    Some(resp) if resp.ttl() > 0 => {}
                    _ => return Err(fenced()),
                }
            } else {
                let grant = s
                    .retry(
                        false,
                        |mut c| async move { c.lease_grant(secs, None).await },
                    )
                    .await?;
                value.lease = grant.id();
                value.lease_ttl = secs;
            }
            let expires_at = now() + ttl;
            value.expires_at_ns = expires_at.unix_timestamp_nanos();
            let txn = Txn::new()
                .when(vec![Compare::create_revision(
                    lkey.as_str(),
                    CompareOp::Equal,
                    to_i64(lease.token),
                )])
                .and_then(vec![
                    TxnOp::put(
                        lkey.as_str(),
                        codec::encode(&value)?.to_vec(),
                        Some(PutOptions::new().with_lease(value.lease)),
                    ),
                    s.marker_put(),
                ]);
            if !s.txn(txn).await?.succeeded() {
                if value.lease != old_lease {
                    revoke(&s, value.lease).await;
                }
                return Err(fenced());
            }
            if value.lease != old_lease {
                revoke(&s, old_lease).await;
            }
            Ok(Lease {
                expires_at,
                ..lease.clone()
            })
        })
    }

    fn unlock<'a>(&'a self, lease: &'a Lease) -> StoreFuture<'a, ()> {
        let lease = lease.clone();
        self.run(move |s| async move {
            let lkey = s.keys.lock(&lease.lock);
            let txn = Txn::new()
                .when(vec![Compare::create_revision(
                    lkey.as_str(),
                    CompareOp::Equal,
                    to_i64(lease.token),
                )])
                .and_then(vec![
                    TxnOp::delete(lkey.as_str(), Some(DeleteOptions::new().with_prev_key())),
                    s.marker_put(),
                ]);
            let resp = s.txn(txn).await?;
            if resp.succeeded() {
                for op in resp.op_responses() {
                    if let TxnOpResponse::Delete(d) = op {
                        for kv in d.prev_kvs() {
                            revoke(&s, kv.lease()).await;
                        }
                    }
                }
            }
            Ok(())
        })
    }
}

/// Whether a failed request may be sent again (see [`Shared::retry`]).
fn retryable(e: &etcd_client::Error, idempotent: bool) -> bool {
    match e {
        // No connection could be made: nothing was sent.
        etcd_client::Error::TransportError(_) => true,
        etcd_client::Error::GRpcStatus(status) => match status.code() {
            // Connection refused, or etcd without a leader: not applied.
            tonic::Code::Unavailable => true,
            tonic::Code::Unknown | tonic::Code::Cancelled | tonic::Code::Internal => idempotent,
            _ => false,
        },
        etcd_client::Error::IoError(_) => idempotent,
        _ => false,
    }
}

fn first_get_revision(resp: &TxnResponse) -> Option<Revision> {
    resp.op_responses().into_iter().find_map(|op| match op {
        TxnOpResponse::Get(g) => g
            .kvs()
            .first()
            .map(|kv| Revision(to_u64(kv.mod_revision()))),
        _ => None,
    })
}

async fn revoke(s: &Shared, lease: i64) {
    if lease != 0 {
        let mut leases = s.client.lease_client();
        if let Err(e) = leases.revoke(lease).await {
            tracing::debug!(lease, error = %e, "could not revoke an etcd lease (it expires by itself)");
        }
    }
}

/// The longest pause between two attempts to re-create a broken watch.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Follows the prefix from `after + 1`, re-creating the etcd watch from the last revision
/// seen whenever the stream breaks, until the receiver is dropped.
async fn watch_task(s: Arc<Shared>, after: Revision, sender: WatchSender) {
    let prefix = s.keys.all().to_owned();
    let mut last = to_i64(after.0);
    let mut backoff = Duration::from_millis(50);
    let mut reported_down = false;
    while !sender.is_closed() {
        let mut client = s.client.watch_client();
        let options = WatchOptions::new()
            .with_prefix()
            .with_start_revision(last + 1)
            .with_progress_notify();
        let stream = client.watch(prefix.as_str(), Some(options)).await;
        let mut stream = match stream {
            Ok(stream) => stream,
            Err(e) => {
                if !reported_down {
                    tracing::warn!(endpoints = %s.endpoints, error = %e, "etcd watch lost; retrying (certificates keep being served)");
                    reported_down = true;
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        loop {
            // Wake up now and then to notice a dropped receiver.
            let message = match tokio::time::timeout(Duration::from_secs(1), stream.message()).await
            {
                Err(_) if sender.is_closed() => return,
                Err(_) => continue,
                Ok(m) => m,
            };
            let resp = match message {
                Ok(Some(resp)) => resp,
                Ok(None) => {
                    tracing::debug!("etcd closed the watch stream");
                    break;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "the etcd watch stream failed");
                    break;
                }
            };
            if reported_down {
                tracing::info!(endpoints = %s.endpoints, "etcd watch resumed");
                reported_down = false;
            }
            backoff = Duration::from_millis(50);
            if resp.canceled() {
                let compacted = resp.compact_revision();
                if compacted > 0 {
                    // Were changes under the prefix lost? The marker is touched by every write.
                    match s.get_one(&s.keys.marker()).await {
                        Ok((marker, header))
                            if marker.as_ref().is_none_or(|m| m.mod_revision() <= last) =>
                        {
                            last = header;
                            break;
                        }
                        Ok(_) => {
                            sender.send(Err(StoreError::Compacted {
                                requested: after,
                                oldest: Revision(to_u64(compacted)),
                            }));
                            return;
                        }
                        Err(_) => break,
                    }
                }
                break;
            }
            for event in resp.events() {
                let Some(kv) = event.kv() else { continue };
                last = last.max(kv.mod_revision());
                let Some(key) = s.keys.change_key(kv.key()) else {
                    continue;
                };
                let kind = match event.event_type() {
                    EventType::Put => ChangeKind::Put,
                    EventType::Delete => ChangeKind::Delete,
                };
                let change = Change {
                    revision: Revision(to_u64(kv.mod_revision())),
                    key,
                    kind,
                };
                if !sender.send(Ok(change)) {
                    return;
                }
            }
            if let Some(h) = resp.header() {
                // Progress notifications carry the revision everything before is delivered.
                if resp.events().is_empty() && !resp.created() {
                    last = last.max(h.revision());
                }
            }
        }
        if sender.is_closed() {
            return;
        }
        if !reported_down {
            tracing::warn!(endpoints = %s.endpoints, "etcd watch interrupted; resuming from {}", Revision(to_u64(last)));
            reported_down = true;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::panic)] // test code
    use super::*;

    fn status(code: tonic::Code, message: &str) -> etcd_client::Error {
        etcd_client::Error::GRpcStatus(tonic::Status::new(code, message))
    }

    #[test]
    fn grpc_codes_and_etcds_messages_give_the_cause() {
        let cases = [
            (
                status(
                    tonic::Code::InvalidArgument,
                    "etcdserver: authentication failed, invalid user ID or password",
                ),
                UnavailableCause::CredentialsRefused,
            ),
            (
                status(
                    tonic::Code::PermissionDenied,
                    "etcdserver: permission denied",
                ),
                UnavailableCause::PermissionDenied,
            ),
            (
                status(
                    tonic::Code::InvalidArgument,
                    "etcdserver: user name is empty",
                ),
                UnavailableCause::PermissionDenied,
            ),
            (
                status(tonic::Code::DeadlineExceeded, "context deadline exceeded"),
                UnavailableCause::Timeout,
            ),
            (
                status(
                    tonic::Code::Unknown,
                    "transport error: invalid peer certificate: UnknownIssuer",
                ),
                UnavailableCause::TlsUntrusted,
            ),
            (
                status(
                    tonic::Code::Unknown,
                    "invalid peer certificate: NotValidForName",
                ),
                UnavailableCause::TlsNameMismatch,
            ),
            (
                status(tonic::Code::Unavailable, "connection refused"),
                UnavailableCause::Unreachable,
            ),
            (
                status(tonic::Code::Unknown, "h2 protocol error: connection closed"),
                UnavailableCause::TlsHandshake,
            ),
        ];
        for (error, cause) in cases {
            assert_eq!(cause_of(&error), cause, "{error}");
            match unavailable("h:1", &error) {
                StoreError::Unavailable(u) => {
                    assert_eq!(u.cause, cause);
                    assert!(u.detail.contains("etcd at h:1"), "{u}");
                }
                other => panic!("{other:?}"),
            }
        }
    }
}
