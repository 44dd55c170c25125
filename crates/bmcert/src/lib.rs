//! The entry point services link: check, install and manage the installation's TLS
//! certificates.
//!
//! [`CertManager`] ties the crates together: it runs the bundle report of `bmcert-bundle`
//! against a target's external URL (from the [`Topology`](topology::Topology) the embedding
//! service supplies), installs accepted bundles into a [`Store`](store::Store) (the
//! crash-safe directory store by default, etcd later), and disables, lists, rolls back and
//! exports them. Serving them to rustls is `bmcert-resolve`'s job; obtaining them from
//! Let's Encrypt is [`acme`]'s.
#![deny(missing_docs)]
#![warn(unreachable_pub)]

pub mod acme;
mod manager;
pub mod renew;

pub use bmcert_bundle as bundle;
pub use bmcert_store as store;
pub use bmcert_store::block_on;
pub use bmcert_topology as topology;
pub use manager::{
    CertManager, Exported, InstallOutcome, InstalledVersion, ManagerError, TargetStatus,
};
