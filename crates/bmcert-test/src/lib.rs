//! Unpublished test helpers: fixtures and real peer processes.
//!
//! [`fixtures`] generates certificate chains at test time (rcgen: root, optional
//! intermediate, leaf; any key type and validity) and runs the `openssl` CLI for real-world
//! encodings (PKCS#12, encrypted keys); [`chains`] builds chains certificate by certificate,
//! each one's fields changeable before signing (validity, CA flag, EKU, names, keys);
//! [`peers`] finds the real peers `scripts/test-all` starts (pebble, etcd, aiosmtpd) from
//! their `BMCERT_*` variables, with one skip policy for all of them; [`etcd`] starts a
//! one-member TLS etcd of a test's own, with its test CA; with the `pebble`
//! feature, `pebble` builds the `AcmeConfig` and store-backed ACME clients the pebble tests
//! share; with the `store` feature, `renewal` makes the self-signed store bundles and the
//! one-site topology the renewal tests share. Nothing here is a library API: only tests, doc tests and benchmarks depend on
//! this crate, and the helpers panic on failure as tests want.
//!
//! # Features
//!
//! - `pebble` (off by default): the `pebble` module. It links `bmcert-acme` and
//!   `bmcert-store`, so the crates those depend on can use the fixtures without it; the
//!   crates whose tests talk ACME to pebble enable it in their `[dev-dependencies]`.
//! - `store` (off by default, implied by `pebble`): the `renewal` module. It links
//!   `bmcert-store` and `bmcert-topology`.
#![deny(missing_docs)]
#![warn(unreachable_pub)]

pub mod bins;
pub mod chains;
pub mod etcd;
pub mod fixtures;
pub mod openssl_files;
#[cfg(feature = "pebble")]
pub mod pebble;
pub mod peers;
#[cfg(feature = "store")]
pub mod renewal;
pub mod tinyproxy;
pub mod verdicts;
