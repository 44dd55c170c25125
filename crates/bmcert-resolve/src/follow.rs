//! Following a [`Store`]: load every current bundle, then apply the change feed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bmcert_store::{block_on, ChangeKey, Revision, Store, StoreError};
use bmcert_topology::Target;
use rustls::sign::CertifiedKey;

use crate::key::{certified_key, LoadError};
use crate::live::LiveIndex;

/// Reads the current bundle of `target` from `store` and applies it to `index`: installs or
/// replaces the certificate, or removes it when the target has no current bundle (disabled).
///
/// A bundle that cannot be read or used keeps the previous certificate in service; the
/// failure is logged and listed by [`LiveIndex::failures`]. Returns whether the target now
/// matches the store.
///
/// A target the store reports damaged ([`LoadError::Damaged`]) keeps the certificate it
/// was served with; if it had none (a start with the damage already there), the newest
/// version the store still keeps that passes the store's proof is served instead, with an
/// error in the log ([`fall_back`]).
pub async fn apply_target(store: &dyn Store, index: &LiveIndex, target: &Target) -> bool {
    match read_target(store, target).await {
        Ok(certificate) => {
            index.set_certificate(target, certificate);
            true
        }
        Err(LoadError::Damaged(damaged)) => {
            fall_back(store, index, *damaged).await;
            false
        }
        Err(error) => {
            index.record_failure(target, error);
            false
        }
    }
}

/// The target of `damaged` cannot be served its current version: keeps what the index
/// serves for it, or, when it serves nothing for it, serves the newest version the store
/// still keeps that passes the proof ([`Store::history`]), said loudly; then records the
/// failure ([`LiveIndex::failures`]) either way.
pub async fn fall_back(store: &dyn Store, index: &LiveIndex, damaged: bmcert_store::Damaged) {
    let target = damaged.target.clone();
    if index.certificate(&target).is_none() {
        match store.history(&target).await {
            Ok(history) => {
                let usable = history.iter().find_map(|installed| {
                    let bundle = &installed.bundle;
                    let key = bundle.secret_key().secret_private_key_der();
                    certified_key(bundle.chain().to_vec(), &key)
                        .ok()
                        .map(|cert| (installed.version, cert))
                });
                match usable {
                    Some((version, cert)) => {
                        index.set_certificate(&target, Some(cert));
                        tracing::error!(%target, version, %damaged, "the current certificate in the store is damaged: serving the previous good version the store keeps until it is repaired");
                    }
                    None => {
                        tracing::error!(%target, %damaged, "the current certificate in the store is damaged and no older version is usable: nothing is served for it until it is repaired");
                    }
                }
            }
            Err(error) => {
                tracing::error!(%target, %error, "the current certificate in the store is damaged and its older versions cannot be read");
            }
        }
    } else {
        tracing::error!(%target, %damaged, "the current certificate in the store is damaged: the certificate loaded before stays in service until it is repaired");
    }
    index.record_failure(&target, LoadError::Damaged(Box::new(damaged)));
}

/// The certificate `target` should serve according to the store (`None`: no current
/// bundle), or why it cannot be used.
async fn read_target(
    store: &dyn Store,
    target: &Target,
) -> Result<Option<Arc<CertifiedKey>>, LoadError> {
    match store.current(target).await {
        Ok(Some(installed)) => {
            let bundle = &installed.bundle;
            let key = bundle.secret_key().secret_private_key_der();
            let cert = certified_key(bundle.chain().to_vec(), &key)?;
            tracing::info!(
                %target,
                version = installed.version,
                revision = %installed.revision,
                fingerprint = %bundle.meta().fingerprint,
                not_after = %bundle.meta().not_after,
                "certificate loaded"
            );
            Ok(Some(cert))
        }
        Ok(None) => {
            tracing::info!(%target, "no current certificate (disabled or never installed)");
            Ok(None)
        }
        Err(StoreError::Damaged(damaged)) => Err(LoadError::Damaged(damaged)),
        Err(error) => Err(LoadError::Store(error)),
    }
}

/// Reads again every target whose last load failed because the store could not be read
/// ([`LoadError::Store`]: unreachable, timed out), and returns how many now match the store.
///
/// A bundle that was read but cannot be used (a key that does not match, say) is not read
/// again: only a new install fixes it, and that arrives as a change. [`FollowerThread`] calls
/// this on its own, with a growing delay; a service that runs [`follow`] as a task calls it
/// from a timer (every few seconds) so that a change whose re-read failed while the store
/// was unreachable is not missed until the target's next change.
pub async fn retry_failed(store: &dyn Store, index: &LiveIndex) -> usize {
    let pending: Vec<Target> = index
        .failures()
        .into_iter()
        .filter(|f| matches!(f.error, LoadError::Store(_)))
        .map(|f| f.target)
        .collect();
    let mut fixed = 0;
    for target in &pending {
        if apply_target(store, index, target).await {
            tracing::info!(%target, "certificate read again after a store failure");
            fixed += 1;
        }
    }
    fixed
}

/// Loads every target the store has a current bundle for, plus every target the index has
/// a slot for (so targets disabled meanwhile are cleared), and returns the store revision
/// the state corresponds to: pass it to [`follow`] to miss no change.
///
/// A damaged target does not stop the load: it keeps what it served, or falls back to an
/// older good version ([`fall_back`]); only a store that cannot be listed at all fails it.
pub async fn load_all(store: &dyn Store, index: &LiveIndex) -> Result<Revision, StoreError> {
    let revision = store.revision().await?;
    let listed = store.list().await?;
    let mut targets: Vec<Target> = listed
        .into_iter()
        .map(|row| match row {
            Ok(l) => l.target,
            Err(d) => d.target,
        })
        .collect();
    targets.extend(index.snapshot().targets().iter().cloned());
    targets.sort();
    targets.dedup();
    let mut changes = Vec::with_capacity(targets.len());
    let mut damaged = Vec::new();
    for target in &targets {
        match read_target(store, target).await {
            Ok(certificate) => changes.push((target.clone(), certificate)),
            Err(LoadError::Damaged(d)) => damaged.push(d),
            Err(error) => index.record_failure(target, error),
        }
    }
    // One snapshot for everything, instead of one per target.
    index.set_certificates(changes);
    for d in damaged {
        fall_back(store, index, *d).await;
    }
    tracing::info!(%revision, targets = targets.len(), "certificates loaded from the store");
    Ok(revision)
}

/// Applies the store's changes after `from` to `index` until the feed ends.
///
/// Each bundle change (install, renewal, rollback, disable) re-reads that target only. When
/// the store has discarded changes after `from` ([`StoreError::Compacted`]), everything is
/// reloaded and following resumes. Returns the error that ended the feed, or `Ok` when the
/// backend closed it. Cancel by dropping the future.
pub async fn follow(
    store: &dyn Store,
    index: &LiveIndex,
    mut from: Revision,
) -> Result<(), StoreError> {
    loop {
        let mut watch = store.watch(from).await?;
        loop {
            match watch.recv().await {
                Some(Ok(change)) => {
                    if let ChangeKey::Bundle(target) = &change.key {
                        apply_target(store, index, target).await;
                    }
                }
                Some(Err(StoreError::Compacted { .. })) => {
                    tracing::warn!("store changes were compacted; reloading everything");
                    from = load_all(store, index).await?;
                    break;
                }
                Some(Err(error)) => return Err(error),
                None => return Ok(()),
            }
        }
    }
}

/// A thread that keeps a [`LiveIndex`] in step with a [`Store`] whose futures need no async
/// runtime (such as the directory store): it loads everything on start, then follows the
/// change feed until [`FollowerThread::stop`] or drop. A target whose re-read failed because
/// the store could not be read is read again ([`retry_failed`]) after 1 s, then with a
/// doubling delay up to a minute, until it succeeds.
///
/// For a backend that needs a runtime (etcd on tokio), run [`load_all`] and [`follow`] as a
/// task of that runtime instead.
#[derive(Debug)]
pub struct FollowerThread {
    stop: Arc<AtomicBool>,
    loaded: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// How long the thread waits for a change before checking whether it should stop.
const POLL: Duration = Duration::from_millis(200);
/// How long the thread waits before retrying after the store failed.
const RETRY: Duration = Duration::from_secs(1);
/// The longest wait between two re-reads of targets whose read failed.
const RETRY_MAX: Duration = Duration::from_secs(60);

/// When the thread next reads again the targets whose read failed: after 1 s, then twice as
/// long each time some still fail, up to a minute; back to 1 s once none fails.
struct Backoff {
    next: Instant,
    delay: Duration,
}

impl Backoff {
    fn new() -> Self {
        Self {
            next: Instant::now() + RETRY,
            delay: RETRY,
        }
    }

    fn run(&mut self, store: &dyn Store, index: &LiveIndex) {
        let now = Instant::now();
        if now < self.next {
            return;
        }
        block_on(retry_failed(store, index));
        let still_failing = index
            .failures()
            .iter()
            .any(|f| matches!(f.error, LoadError::Store(_)));
        self.delay = if still_failing {
            (self.delay * 2).min(RETRY_MAX)
        } else {
            RETRY
        };
        self.next = Instant::now() + self.delay;
    }
}

impl FollowerThread {
    /// Loads every current bundle into `index` (returning the store's error if that fails),
    /// then starts the thread that follows the store's changes.
    pub fn start(store: Arc<dyn Store>, index: Arc<LiveIndex>) -> Result<Self, StoreError> {
        let from = block_on(load_all(&*store, &index))?;
        Self::launch(store, index, Some(from)).map_err(|e| {
            StoreError::Unavailable(format!("cannot start the follower thread: {e}").into())
        })
    }

    /// Starts the thread without waiting for the store: it loads every current bundle as soon
    /// as the store answers (retrying after 1 s, then with a doubling delay up to a minute),
    /// then follows the changes. For a server that must come up while the store (an etcd
    /// cluster) is unreachable: handshakes fail until the first load, then everything
    /// proceeds as with [`FollowerThread::start`]. [`FollowerThread::has_loaded`] tells when.
    pub fn spawn(store: Arc<dyn Store>, index: Arc<LiveIndex>) -> std::io::Result<Self> {
        Self::launch(store, index, None)
    }

    /// Whether the certificates were loaded from the store at least once (always `true`
    /// after [`FollowerThread::start`]).
    pub fn has_loaded(&self) -> bool {
        self.loaded.load(Ordering::Acquire)
    }

    fn launch(
        store: Arc<dyn Store>,
        index: Arc<LiveIndex>,
        from: Option<Revision>,
    ) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let loaded = Arc::new(AtomicBool::new(from.is_some()));
        let (flag, done) = (stop.clone(), loaded.clone());
        let thread = std::thread::Builder::new()
            .name("bmcert-follow".into())
            .spawn(move || {
                let Some(from) = from.or_else(|| first_load(&*store, &index, &flag)) else {
                    return; // stopped before the store answered
                };
                done.store(true, Ordering::Release);
                run(&*store, &index, from, &flag);
            })?;
        Ok(Self {
            stop,
            loaded,
            thread: Some(thread),
        })
    }

    /// Stops following and waits for the thread to end.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("the store follower thread panicked");
            }
        }
    }
}

impl Drop for FollowerThread {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Loads everything once the store answers; `None` when asked to stop first.
fn first_load(store: &dyn Store, index: &LiveIndex, stop: &AtomicBool) -> Option<Revision> {
    let mut delay = RETRY;
    let mut next = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        if Instant::now() >= next {
            match block_on(load_all(store, index)) {
                Ok(revision) => return Some(revision),
                Err(error) => {
                    tracing::error!(%error, retry_in = ?delay, "cannot load the certificates from the store");
                    next = Instant::now() + delay;
                    delay = (delay * 2).min(RETRY_MAX);
                }
            }
        }
        std::thread::sleep(POLL);
    }
    None
}

fn run(store: &dyn Store, index: &LiveIndex, mut from: Revision, stop: &AtomicBool) {
    let mut backoff = Backoff::new();
    while !stop.load(Ordering::Relaxed) {
        backoff.run(store, index);
        let mut watch = match block_on(store.watch(from)) {
            Ok(watch) => watch,
            Err(error) => {
                tracing::error!(%error, "cannot watch the store; retrying");
                std::thread::sleep(RETRY);
                continue;
            }
        };
        while !stop.load(Ordering::Relaxed) {
            backoff.run(store, index);
            match watch.recv_timeout(POLL) {
                Some(Ok(change)) => {
                    if let ChangeKey::Bundle(target) = &change.key {
                        block_on(apply_target(store, index, target));
                    }
                    from = change.revision;
                }
                Some(Err(error)) => {
                    tracing::warn!(%error, "store change feed ended; reloading everything");
                    match block_on(load_all(store, index)) {
                        Ok(revision) => from = revision,
                        Err(error) => {
                            tracing::error!(%error, "cannot reload the store; retrying");
                            std::thread::sleep(RETRY);
                        }
                    }
                    break;
                }
                None if watch.is_closed() => {
                    tracing::warn!("store change feed closed; watching again");
                    std::thread::sleep(POLL);
                    break;
                }
                None => {}
            }
        }
    }
}
