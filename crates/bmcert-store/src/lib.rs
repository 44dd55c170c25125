//! The certificate store: what a certificate installation keeps, how it is changed safely,
//! and how every process learns about changes.
//!
//! - [`Store`] is the trait: per [`Target`](bmcert_topology::Target) the current
//!   [`Bundle`] (chain + [`SecretKey`] + [`BundleMeta`]), the last 3 previous versions,
//!   rollback and disable; a small key-value area ([`RecordKey`], [`Record`]) for the ACME
//!   account, terms acceptance, HTTP-01 tokens and renewal/warning state; store-wide
//!   [`Revision`]s with compare-and-swap ([`Condition`]); a change feed ([`Watch`]); and
//!   locks with expiry and fencing tokens ([`Lease`], [`Fence`]). It is designed for a
//!   distributed backend (etcd) as much as for the directory one.
//! - [`DirStore`] is the embedded default: one directory, crash-safe installs, advisory
//!   file locking between processes, inotify-based watch.
//!
//! Every bundle it writes or hands out is proven whole first ([`Bundle::verified`]: the
//! certificates parse, the key signs for the leaf, the metadata is the leaf's); a target
//! that fails is reported [`Damaged`], alone, and every other target keeps working. Whether
//! a certificate is trusted and right for a host is `bmcert-bundle`'s report, run before an
//! install. This crate does not serve certificates (`bmcert-resolve` does, from a [`Store`]) and has no
//! install policy such as "the system certificate cannot be disabled" (the `bmcert`
//! facade's `CertManager` has).
//!
//! # Example
//!
//! ```
//! use bmcert_store::{block_on, Condition, DirStore, RecordKey, Store};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let store = DirStore::open(dir.path().join("store")).unwrap();
//! let key = RecordKey::new("acme/terms").unwrap();
//! let rev = block_on(store.put(&key, b"accepted", &Condition::absent())).unwrap();
//! let record = block_on(store.get(&key)).unwrap().unwrap();
//! assert_eq!((record.revision, record.secret_value()), (rev, &b"accepted"[..]));
//! // A second create loses the compare-and-swap.
//! assert!(block_on(store.put(&key, b"again", &Condition::absent())).is_err());
//! ```
//!
//! # Conformance
//!
//! With the `conformance` feature, `conformance::run_all` checks any [`Store`] against
//! the trait's contract; every backend's tests call it. With the `testing` feature,
//! `testing::FaultyStore` wraps a store for tests of code built on one: switchable failures
//! per operation, call counts and an observer of lock grants.
#![deny(missing_docs)]
#![warn(unreachable_pub)]

mod block_on;
mod clock;
mod config;
#[cfg(feature = "conformance")]
pub mod conformance;
mod dir;
mod error;
pub mod fs_ops;
pub mod keys;
mod store;
#[cfg(feature = "testing")]
pub mod testing;
mod types;
mod verify;
mod watch;

pub use block_on::block_on;
pub use clock::{Clock, SystemClock};
pub use config::{
    EtcdConfig, EtcdFileSettings, EtcdSetting, EtcdTlsConfig, EtcdUser, StoreConfig,
    StoreConfigError, StoreSettings, DEFAULT_ETCD_PREFIX,
};
pub use dir::{DirStore, DirStoreOptions};
pub use error::{StoreError, Unavailable, UnavailableCause};
pub use store::{Store, StoreFuture};
pub use types::{
    Bundle, BundleMeta, Change, ChangeKey, ChangeKind, Condition, Expect, Fence, Fingerprint,
    Installed, KeyFormat, Lease, Listed, Record, RecordKey, RecordKeyError, Revision, SecretKey,
    Source,
};
pub use verify::{Damage, Damaged, Part};
pub use watch::{Watch, WatchSender};

/// How many versions older than the current one a store keeps per target.
pub const HISTORY_DEPTH: usize = 3;
