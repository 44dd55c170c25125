//! [`SharedTopology`]: the one copy of the topology every part of an installation reads.

use std::sync::{Arc, RwLock};

use crate::topology::Topology;

/// The installation's topology, held once and shared: the install gate and the ACME
/// issuer read it at each use, so replacing it ([`SharedTopology::set`]) changes what they
/// check and order at once. Clones share the same topology.
///
/// ```
/// use bmcert_topology::{SharedTopology, Topology};
/// let shared = SharedTopology::new(Topology::from_toml_str("[system]\nurl = \"https://a.test\"\n").unwrap());
/// let reader = shared.clone();
/// shared.set(Topology::from_toml_str("[system]\nurl = \"https://b.test\"\n").unwrap());
/// assert_eq!(reader.get().system.host.to_string(), "b.test");
/// ```
#[derive(Clone, Debug)]
pub struct SharedTopology(Arc<RwLock<Arc<Topology>>>);

impl SharedTopology {
    /// Shares `topology`.
    pub fn new(topology: Topology) -> Self {
        Self(Arc::new(RwLock::new(Arc::new(topology))))
    }

    /// The current topology (a cheap handle; later changes do not alter it).
    pub fn get(&self) -> Arc<Topology> {
        // A writer cannot panic while holding the lock (it only swaps an `Arc`), so a
        // poisoned lock still holds a whole topology.
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Replaces the topology for every holder.
    pub fn set(&self, topology: Topology) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(topology);
    }
}
