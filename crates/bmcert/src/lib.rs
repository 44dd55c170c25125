//! The entry point services link: one [`Installation`] per process, built from a store and
//! a topology, and everything a service needs from it.
//!
//! [`Installation`] owns the only copy of the topology and hands out the rustls resolvers
//! (HTTPS by SNI, mail always the system certificate), the store follower, the ACME client
//! and the renewer, the HTTP-01 answer and the TLS-ALPN-01 wrapper, and the admin
//! operations of its [`CertManager`]: check, install, disable, list, roll back, export,
//! bootstrap. Every certificate reaches the [`Store`] through one gate,
//! [`CertManager::install_checked`], which takes only a [`CheckedBundle`] (made by the
//! bundle check for a host) and re-checks that host against the target's URL in the
//! current [`Topology`]. [`acme`] and [`renew`] re-export the ACME and renewal APIs.
//!
//! The facade alone is what a service depends on: the inner crates stay reachable as
//! [`topology`], [`store`], [`resolve`] and [`bundle`] (and `store_etcd` with the feature
//! `etcd`); their test doubles are re-exported only with the feature `testing`. This crate
//! does not parse or verify anything itself (`bmcert-bundle` and `bmcert-verify` do) and
//! reads no clock in its checks: time is passed in. The guides are in `docs/`:
//! `embedding.md` for services, `admin-guide.md` for the `bmcert` command built on this
//! crate.
//!
//! ```
//! use bmcert::topology::{Target, Topology};
//! use bmcert::{block_on, CertManager, ManagerError};
//! use rustls_pki_types::UnixTime;
//!
//! let topology = Topology::from_toml_str(r#"
//!     [system]
//!     url = "https://mail.example.test"
//!     [[domain]]
//!     name = "acme.test"
//!     url = "https://webmail.acme.test"
//! "#).unwrap();
//! let dir = tempfile::tempdir().unwrap();
//! let manager = CertManager::open_dir(&dir.path().join("store"), topology).unwrap();
//! // Root -> intermediate -> leaf for mail.example.test, as an authority delivers them.
//! let chain = bmcert_test::fixtures::ChainSpec::new(&["mail.example.test"]).build();
//! let (cert, key, ca) = (chain.leaf.cert_pem.as_bytes(), chain.leaf.key_pem.as_bytes(), chain.ca_pem());
//! let now = UnixTime::now();
//!
//! let outcome = block_on(manager.install_files(&Target::System, cert, key, Some(ca.as_bytes()), now)).unwrap();
//! assert_eq!(outcome.installed.unwrap().version, 1);
//!
//! // The same bundle for the domain's URL is refused with its report; nothing changes.
//! let domain: Target = "domain:acme.test".parse().unwrap();
//! let refused = block_on(manager.install_files(&domain, cert, key, Some(ca.as_bytes()), now)).unwrap();
//! assert!(!refused.is_installed());
//! assert_eq!(refused.report.problems[0].code.as_str(), "name_mismatch");
//! assert_eq!(block_on(manager.list(now)).unwrap().len(), 1);
//! assert_eq!(block_on(manager.disable(&Target::System)), Err(ManagerError::SystemCannotBeDisabled));
//! ```
#![deny(missing_docs)]
#![warn(unreachable_pub)]

pub mod acme;
#[cfg(feature = "agent")]
pub mod agent;
mod bootstrap;
pub mod deploy;
mod installation;
mod manager;
mod open;
pub mod renew;

pub use bmcert_bundle as bundle;
pub use bmcert_resolve as resolve;
pub use bmcert_store as store;
pub use bmcert_store::block_on;
/// The etcd store (feature `etcd`).
#[cfg(feature = "etcd")]
pub use bmcert_store_etcd as store_etcd;
pub use bmcert_topology as topology;
pub use bootstrap::BootstrapError;
pub use installation::Installation;

// What services name most, at the top: explicit re-exports (the whole crates stay reachable
// as `bmcert::topology`, `bmcert::store`, `bmcert::resolve`, `bmcert::bundle`).
pub use bmcert_bundle::{BundleCheck, CheckedBundle, Code, Finding, Report};
pub use bmcert_resolve::{
    certified_key, Explanation, FollowerThread, LiveIndex, LoadError, LoadFailure, Reason,
    ResolvesServerCertUsingSniWithFallback, ResolvesSystemCert, Service,
};
pub use bmcert_store::{
    Damage, Damaged, DirStore, Fingerprint, Source, Store, StoreConfig, StoreConfigError,
    StoreError, StoreSettings,
};
pub use bmcert_topology::{DomainName, Host, SharedTopology, Target, Topology, TopologyError};
pub use manager::{
    CertManager, Exported, InstallOutcome, InstalledVersion, ManagerError, TargetStatus,
};
pub use open::open_store;
