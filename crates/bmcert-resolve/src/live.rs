//! The live index: the current [`CertIndex`] behind an `ArcSwap`, plus writer-side state.

use core::fmt;
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use arc_swap::ArcSwap;
use bmcert_topology::{Host, Target, Topology};
use rustls::sign::CertifiedKey;

use crate::index::{CertIndex, CertificateChange, Explanation};
use crate::key::{names_host, LoadError};
use crate::service::Service;

/// A target whose latest certificate could not be loaded.
#[derive(Clone, Debug, PartialEq)]
pub struct LoadFailure {
    /// The target.
    pub target: Target,
    /// What went wrong.
    pub error: LoadError,
    /// Whether a previous certificate is still served for the target.
    pub kept_previous: bool,
}

impl fmt::Display for LoadFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.target, self.error)?;
        if self.kept_previous {
            f.write_str(" (the previous certificate is still served)")
        } else if self.target.is_system() {
            f.write_str(" (no system certificate: HTTPS fallbacks and mail handshakes fail)")
        } else {
            f.write_str(" (the system certificate is served instead)")
        }
    }
}

#[derive(Default)]
struct Writer {
    /// Certificates of targets that have no slot in the current index (a domain not in the
    /// topology, or without its own site), or whose certificate does not name the target's
    /// URL host; they move into the index when the topology gives them a slot they name.
    parked: HashMap<Target, Arc<CertifiedKey>>,
    failures: BTreeMap<Target, LoadFailure>,
    /// The URL host of every target with a site of its own in the current topology.
    hosts: HashMap<Target, Host>,
}

/// The URL host of every target the topology gives a site of its own.
fn hosts_of(topology: &Topology) -> HashMap<Target, Host> {
    let mut hosts = HashMap::with_capacity(1 + topology.domains.len());
    hosts.insert(Target::System, topology.system.host.clone());
    for domain in &topology.domains {
        let target = Target::Domain(domain.name.clone());
        if let Ok(site) = topology.site_for(&target) {
            hosts.insert(target, site.host.clone());
        }
    }
    hosts
}

impl Writer {
    /// Splits `changes` into those that may be placed and certificates that do not name
    /// their target's URL host (parked, with a failure recorded: never served for a host
    /// they were not checked for, for instance after the target's URL changed).
    /// `unchanged(target, host)` says which need no new check (served for that host before).
    fn admit(
        &mut self,
        changes: Vec<CertificateChange>,
        unchanged: impl Fn(&Target, &Host) -> bool,
    ) -> Vec<CertificateChange> {
        let mut admitted = Vec::with_capacity(changes.len());
        for (target, certificate) in changes {
            let refused = match (&certificate, self.hosts.get(&target)) {
                (Some(cert), Some(host))
                    if !unchanged(&target, host) && !names_host(cert, host) =>
                {
                    Some(host.to_string())
                }
                _ => None,
            };
            match (refused, certificate) {
                (Some(host), Some(cert)) => {
                    let failure = LoadFailure {
                        target: target.clone(),
                        error: LoadError::NotForHost { host },
                        kept_previous: false,
                    };
                    tracing::error!(%failure, "certificate not served: it does not name the target's URL host");
                    self.failures.insert(target.clone(), failure);
                    self.parked.insert(target.clone(), cert);
                    admitted.push((target, None));
                }
                (_, certificate) => admitted.push((target, certificate)),
            }
        }
        admitted
    }
}

/// The snapshot a thread used last, so that a lookup costs no atomic read-modify-write
/// while nothing changes.
struct Cached {
    owner: u64,
    generation: u64,
    index: Arc<CertIndex>,
}

thread_local! {
    static LAST: RefCell<Option<Cached>> = const { RefCell::new(None) };
}

/// Distinguishes `LiveIndex` instances in the per-thread cache (addresses can be reused).
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// The index every listener reads: handshakes [`LiveIndex::resolve`] against the current
/// [`CertIndex`] snapshot without locking, while updates publish new snapshots.
///
/// Writers are serialized by a mutex that readers never touch. Applying one certificate
/// builds a snapshot that shares the name map and all but one chunk of certificate slots
/// with the current one (microseconds at 100,000 domains), then publishes it with one
/// atomic pointer swap; a topology change builds a new name map and carries the
/// certificates over.
///
/// Readers keep, per thread, the snapshot they used last and a generation number; a lookup
/// reads the generation (one plain atomic load) and, when nothing was published since, uses
/// its snapshot directly. So a thread that stops resolving keeps its last snapshot (and the
/// certificates in it) alive until it resolves again or exits.
pub struct LiveIndex {
    id: u64,
    generation: AtomicU64,
    current: ArcSwap<CertIndex>,
    writer: Mutex<Writer>,
}

impl fmt::Debug for LiveIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LiveIndex")
            .field("current", &*self.current.load())
            .finish_non_exhaustive()
    }
}

impl LiveIndex {
    /// A live index over `topology`, with no certificates yet.
    pub fn new(topology: &Topology) -> Self {
        let index = CertIndex::new(topology);
        for conflict in index.conflicts() {
            tracing::warn!(%conflict, "name conflict in the topology");
        }
        Self {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            generation: AtomicU64::new(0),
            current: ArcSwap::from_pointee(index),
            writer: Mutex::new(Writer {
                hosts: hosts_of(topology),
                ..Writer::default()
            }),
        }
    }

    /// The certificate for a handshake; see [`CertIndex::resolve`]. Never blocks, never
    /// allocates (after the calling thread's first lookup).
    #[inline]
    pub fn resolve(
        &self,
        service: Service,
        server_name: Option<&str>,
    ) -> Option<Arc<CertifiedKey>> {
        let generation = self.generation.load(Ordering::Acquire);
        let cached = LAST.try_with(|last| {
            let mut last = last.try_borrow_mut().ok()?;
            match &*last {
                Some(c) if c.owner == self.id && c.generation == generation => {
                    Some(c.index.resolve(service, server_name))
                }
                _ => {
                    let index = self.current.load_full();
                    let found = index.resolve(service, server_name);
                    *last = Some(Cached {
                        owner: self.id,
                        generation,
                        index,
                    });
                    Some(found)
                }
            }
        });
        match cached {
            Ok(Some(found)) => found,
            // Thread teardown or re-entrance: read the current snapshot directly.
            _ => self.current.load().resolve(service, server_name),
        }
    }

    /// Whose certificate a handshake gets, and why; see [`CertIndex::explain`].
    pub fn explain(&self, service: Service, server_name: Option<&str>) -> Explanation {
        self.current.load().explain(service, server_name)
    }

    /// The current snapshot (a cheap reference-counted handle).
    pub fn snapshot(&self) -> Arc<CertIndex> {
        self.current.load_full()
    }

    /// The certificate currently held for `target` (also one the topology gives no name).
    pub fn certificate(&self, target: &Target) -> Option<Arc<CertifiedKey>> {
        let writer = self.lock();
        self.current
            .load()
            .get(target)
            .or_else(|| writer.parked.get(target).cloned())
    }

    /// Installs (`Some`) or removes (`None`) the certificate of `target`, and clears any load
    /// failure recorded for it. Takes effect on the next handshake.
    ///
    /// A certificate that does not name the target's URL host in the current topology is
    /// not served (the target gets the system certificate): it is kept aside with a
    /// [`LoadError::NotForHost`] failure until the topology gives the target a host it names.
    pub fn set_certificate(&self, target: &Target, certificate: Option<Arc<CertifiedKey>>) {
        self.set_certificates([(target.clone(), certificate)]);
        tracing::debug!(%target, "certificate applied");
    }

    /// Applies many certificate changes as one snapshot (each touched chunk copied once), for
    /// start-up loads and bulk changes; clears the load failures of the targets changed.
    pub fn set_certificates(&self, changes: impl IntoIterator<Item = CertificateChange>) {
        let mut writer = self.lock();
        let changes: Vec<CertificateChange> = changes.into_iter().collect();
        for (target, _) in &changes {
            writer.failures.remove(target);
            writer.parked.remove(target);
        }
        let changes = writer.admit(changes, |_, _| false);
        let count = changes.len();
        let (next, unplaced) = self.current.load().with_certificates(changes);
        for (target, certificate) in unplaced {
            match certificate {
                Some(cert) => writer.parked.insert(target, cert),
                None => writer.parked.remove(&target),
            };
        }
        self.publish(next);
        tracing::debug!(count, "certificates applied");
    }

    /// Records that the latest certificate of `target` could not be loaded. The previous
    /// certificate, if any, stays in service; the failure is logged and listed by
    /// [`LiveIndex::failures`] until a later load of the target succeeds.
    pub fn record_failure(&self, target: &Target, error: LoadError) {
        let mut writer = self.lock();
        let kept_previous =
            self.current.load().get(target).is_some() || writer.parked.contains_key(target);
        let failure = LoadFailure {
            target: target.clone(),
            error,
            kept_previous,
        };
        tracing::error!(%failure, "cannot load certificate");
        writer.failures.insert(target.clone(), failure);
    }

    /// Targets whose latest certificate failed to load, in target order.
    pub fn failures(&self) -> Vec<LoadFailure> {
        self.lock().failures.values().cloned().collect()
    }

    /// Replaces the topology: builds a new name map and carries every certificate over to it.
    ///
    /// Costs time in proportion to the number of domains; certificate changes do not need it.
    pub fn set_topology(&self, topology: &Topology) {
        let mut writer = self.lock();
        let old = self.current.load_full();
        let fresh = CertIndex::new(topology);
        for conflict in fresh.conflicts() {
            tracing::warn!(%conflict, "name conflict in the topology");
        }
        let parked = core::mem::take(&mut writer.parked);
        let carried: Vec<CertificateChange> = old
            .targets()
            .iter()
            .filter_map(|t| old.get(t).map(|c| (t.clone(), Some(c))))
            .chain(parked.iter().map(|(t, c)| (t.clone(), Some(c.clone()))))
            .collect();
        // A served certificate whose target kept its URL host is carried as it is; any
        // other (the host changed, the domain gained its URL, or it was kept aside) must
        // name the target's new host to be served.
        let old_hosts = core::mem::replace(&mut writer.hosts, hosts_of(topology));
        for target in parked.keys() {
            if matches!(writer.failures.get(target), Some(f) if matches!(f.error, LoadError::NotForHost { .. }))
            {
                writer.failures.remove(target);
            }
        }
        let carried = writer.admit(carried, |t, host| {
            !parked.contains_key(t) && old_hosts.get(t) == Some(host)
        });
        let carried: Vec<CertificateChange> =
            carried.into_iter().filter(|(_, c)| c.is_some()).collect();
        let (next, unplaced) = fresh.with_certificates(carried);
        for (target, cert) in unplaced {
            if let Some(cert) = cert {
                writer.parked.insert(target, cert);
            }
        }
        let names = next.name_count();
        self.publish(next);
        tracing::info!(names, "topology applied");
    }

    /// Publishes `next`: first the snapshot, then the generation readers check.
    fn publish(&self, next: CertIndex) {
        self.current.store(Arc::new(next));
        self.generation.fetch_add(1, Ordering::Release);
    }

    fn lock(&self) -> MutexGuard<'_, Writer> {
        // A writer that panicked left consistent data (every step is a whole insert or
        // store), so a poisoned lock is still usable.
        self.writer.lock().unwrap_or_else(|e| e.into_inner())
    }
}
