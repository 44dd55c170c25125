//! The certificate [`Store`](bmcert_store::Store) on etcd: one store shared by every server of an installation.
//!
//! [`EtcdStore`] implements `bmcert_store::Store` over an etcd v3 cluster (tested against
//! Debian's etcd 3.4) with the [etcd-client] crate, the tonic/gRPC client the Rust etcd
//! ecosystem uses; TLS goes through tonic's rustls with the aws-lc-rs provider (feature
//! `tls`, on by default), like the rest of the workspace.
//!
//! # Mapping
//!
//! Everything lives under a key prefix (default `/bmcert/`), so several installations can
//! share a cluster:
//!
//! | etcd key | value |
//! |---|---|
//! | `PREFIX/bundle/TARGET` | the current bundle: chain, key and metadata in **one** value |
//! | `PREFIX/history/TARGET` | the version counter and the last 3 previous versions |
//! | `PREFIX/record/KEY` | a record of the key-value area, raw bytes |
//! | `PREFIX/lock/NAME` | a lock: holder and expiry, attached to an etcd lease |
//! | `PREFIX/rev` | touched by every write: its mod revision is [`Store::revision`](bmcert_store::Store::revision) |
//!
//! - **Revisions** are etcd's mod revisions (cluster-wide, increasing).
//! - **Conditional writes** are etcd transactions: the compare holds the expected mod
//!   revision of the key written (absent = 0) and, for fenced writes, the lock key's create
//!   revision; the bundle, its history and the revision marker are written in the same
//!   transaction, so a reader never sees a chain without its key.
//! - **Watch** is an etcd watch of the prefix from `after + 1`. When the connection breaks
//!   the watch is re-created from the last revision seen, so no change is missed; if etcd
//!   compacted that revision away and something under the prefix changed meanwhile, the feed
//!   yields [`StoreError::Compacted`](bmcert_store::StoreError::Compacted).
//! - **Locks** are keys attached to etcd leases (TTL rounded up to whole seconds; renewed
//!   with etcd's keep-alive). The fencing token is the lock key's create revision: every
//!   grant creates the key anew, so a later grant has a larger token, and a holder whose
//!   lease expired (etcd deleted the key) or whose lock was taken over fails the compare.
//!   The expiry in [`Lease::expires_at`](bmcert_store::Lease::expires_at) is also written in the key, so a lock whose
//!   holder stopped renewing can be taken over at that time even before etcd's
//!   whole-second lease ends.
//!
//! # Runtime and degraded mode
//!
//! The store owns a small tokio runtime (two worker threads): its futures can be awaited from
//! any executor, including `bmcert_store::block_on` and the resolver's follower thread.
//! Operations are bounded by [`EtcdOptions::request_timeout`](crate::EtcdOptions::request_timeout) and return
//! [`StoreError::Unavailable`](bmcert_store::StoreError::Unavailable) when the cluster cannot be reached; a watch keeps retrying
//! (with back-off, up to 2 s between attempts) and resumes by itself when etcd is back, so
//! readers keep serving what they last loaded in the meantime.
//!
//! # Secrets
//!
//! Private keys and record values travel to etcd inside gRPC messages: protect the cluster
//! with TLS ([`EtcdTls`]) and authentication ([`EtcdOptions::user`]). Buffers this crate
//! builds are zeroized; the gRPC stack's own copies are not under its control.
//!
//! # What it does not do
//!
//! It adds no certificate logic: checking is `bmcert-bundle`'s, install policy is
//! `bmcert::CertManager`'s, serving is `bmcert-resolve`'s (its follower reads this store's
//! watch feed like the directory one's). It does not run or configure etcd: the cluster is
//! the installation's (`docs/etcd.md`). Contract, conformance tests and crash behaviour of
//! the trait itself are in `bmcert-store`.
//!
//! ```
//! use bmcert_store::StoreConfigError;
//! use bmcert_store_etcd::parse_store_url;
//!
//! // What `bmcert --store etcd://...` and the services' configuration accept.
//! let options = parse_store_url("etcd://10.0.0.1:2379,10.0.0.2:2379/tenant-a/").unwrap();
//! assert_eq!(options.endpoints, ["10.0.0.1:2379", "10.0.0.2:2379"]);
//! assert_eq!(options.prefix, "/tenant-a/");
//! assert_eq!(parse_store_url("etcd://10.0.0.1:2379").unwrap().prefix, "/bmcert/");
//! assert!(matches!(parse_store_url("etcd://10.0.0.1"), Err(StoreConfigError::BadEndpoint(_))));
//! // Connecting is `EtcdStore::connect(options)`; add `options.tls` and `options.user`
//! // for a protected cluster. `EtcdStore::open(&config)` does it from a validated
//! // `bmcert_store::StoreConfig` (reading its TLS files), as the `bmcert` command does.
//! ```
//!
//! [etcd-client]: https://docs.rs/etcd-client
#![deny(missing_docs)]
#![warn(unreachable_pub)]

mod codec;
mod open;
#[cfg(feature = "testing")]
mod raw;
mod store;
mod url;

pub use store::{EtcdOptions, EtcdStore, EtcdTls};
pub use url::parse_store_url;

#[doc(hidden)]
pub use store::KeyLayout;

/// Entry points for the fuzz targets (`fuzz/fuzz_targets/store_etcd_values.rs`) and the
/// property tests: everything this crate parses from etcd or from the command line.
#[doc(hidden)]
pub mod fuzzing {
    use crate::codec::{decode, LockValue, StoredBundle, StoredHistory};

    /// Decodes `bytes` as every kind of value the store reads from etcd (bundle, history,
    /// lock) and turns decoded bundles into `Bundle`s; never panics.
    pub fn decode_values(bytes: &[u8]) {
        if let Ok(b) = decode::<StoredBundle>("fuzz", bytes) {
            let _ = b.to_bundle();
        }
        if let Ok(h) = decode::<StoredHistory>("fuzz", bytes) {
            for e in &h.entries {
                let _ = e.bundle.to_bundle();
            }
        }
        let _ = decode::<LockValue>("fuzz", bytes);
    }

    /// What an etcd key under `/p/` means for the change feed.
    pub fn change_key(key: &[u8]) -> Option<bmcert_store::ChangeKey> {
        crate::store::KeyLayout::for_prefix("/p/").change_key_of(key)
    }
}
