//! The live index: the current [`CertIndex`] behind an `ArcSwap`, plus writer-side state.

use core::fmt;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use arc_swap::ArcSwap;
use bmcert_topology::{Target, Topology};
use rustls::sign::CertifiedKey;

use crate::index::{CertIndex, Explanation};
use crate::key::LoadError;
use crate::service::Service;

/// A target whose latest certificate could not be loaded.
#[derive(Clone, Debug, PartialEq, Eq)]
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
    /// topology, or without its own site); they move into the index when the topology gives
    /// them a slot.
    parked: HashMap<Target, Arc<CertifiedKey>>,
    failures: BTreeMap<Target, LoadFailure>,
}

/// The index every listener reads: handshakes [`LiveIndex::resolve`] against the current
/// [`CertIndex`] without locking, while updates replace one certificate slot or, on a
/// topology change, the whole index.
///
/// Writers are serialized by a mutex that readers never touch. Applying one certificate is
/// one atomic pointer store into its slot (no map rebuild), whatever the number of domains;
/// a topology change builds a new name map and swaps it in, carrying the certificates over.
pub struct LiveIndex {
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
            current: ArcSwap::from_pointee(index),
            writer: Mutex::new(Writer::default()),
        }
    }

    /// The certificate for a handshake; see [`CertIndex::resolve`]. Never blocks, never
    /// allocates.
    pub fn resolve(
        &self,
        service: Service,
        server_name: Option<&str>,
    ) -> Option<Arc<CertifiedKey>> {
        self.current.load().resolve(service, server_name)
    }

    /// Whose certificate a handshake gets, and why; see [`CertIndex::explain`].
    pub fn explain(&self, service: Service, server_name: Option<&str>) -> Explanation {
        self.current.load().explain(service, server_name)
    }

    /// The current index (a cheap reference-counted handle).
    pub fn snapshot(&self) -> Arc<CertIndex> {
        self.current.load_full()
    }

    /// The certificate currently served for `target` when asked for by name.
    pub fn certificate(&self, target: &Target) -> Option<Arc<CertifiedKey>> {
        let writer = self.lock();
        self.current
            .load()
            .get(target)
            .or_else(|| writer.parked.get(target).cloned())
    }

    /// Installs (`Some`) or removes (`None`) the certificate of `target`, and clears any load
    /// failure recorded for it. Takes effect on the next handshake.
    pub fn set_certificate(&self, target: &Target, certificate: Option<Arc<CertifiedKey>>) {
        let mut writer = self.lock();
        writer.failures.remove(target);
        let index = self.current.load();
        if index.has_slot(target) {
            index.set(target, certificate);
        } else {
            match certificate {
                Some(cert) => writer.parked.insert(target.clone(), cert),
                None => writer.parked.remove(target),
            };
        }
        tracing::debug!(%target, "certificate applied");
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
        let new = CertIndex::new(topology);
        for conflict in new.conflicts() {
            tracing::warn!(%conflict, "name conflict in the topology");
        }
        for target in old.targets() {
            if let Some(cert) = old.get(target) {
                if !new.set(target, Some(cert.clone())) {
                    writer.parked.insert(target.clone(), cert);
                }
            }
        }
        let parked = core::mem::take(&mut writer.parked);
        for (target, cert) in parked {
            if !new.set(&target, Some(cert.clone())) {
                writer.parked.insert(target, cert);
            }
        }
        self.current.store(Arc::new(new));
        tracing::info!(names = self.current.load().name_count(), "topology applied");
    }

    fn lock(&self) -> MutexGuard<'_, Writer> {
        // A writer that panicked left consistent data (every step is a whole insert or
        // store), so a poisoned lock is still usable.
        self.writer.lock().unwrap_or_else(|e| e.into_inner())
    }
}
