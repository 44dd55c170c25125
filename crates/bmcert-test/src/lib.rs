//! Unpublished test helpers: fixtures and real peer processes.
//!
//! [`fixtures`] generates certificate chains at test time (rcgen: root, optional
//! intermediate, leaf; any key type and validity) and runs the `openssl` CLI for real-world
//! encodings (PKCS#12, encrypted keys); [`chains`] builds chains certificate by certificate,
//! each one's fields changeable before signing (validity, CA flag, EKU, names, keys). Nothing here is a library API: only tests, doc tests and benchmarks depend on
//! this crate, and the helpers panic on failure as tests want.
#![deny(missing_docs)]
#![warn(unreachable_pub)]

pub mod chains;
pub mod fixtures;
