//! Certificate resolution by service and SNI for rustls, following the store live.
//!
//! One installation serves many domains, each possibly with its own login URL and
//! certificate. This crate decides, on every TLS handshake, which certificate to present:
//!
//! | service | name asked for (SNI) | certificate | [`Reason`] |
//! |---|---|---|---|
//! | HTTPS | a domain site's URL host or extra name, domain has a certificate | the domain's | `Dedicated` |
//! | HTTPS | a domain site's URL host or extra name, no certificate | system | `FallbackToSystem` |
//! | HTTPS | the system URL host or an extra system name | system | `SystemName` |
//! | HTTPS | any other name | system | `UnknownName` |
//! | HTTPS | none | system | `NoSni` |
//! | IMAP, SMTP, POP3, ManageSieve | anything | system | `MailAlwaysSystem` |
//!
//! A domain's extra names belong to the domain (they are on its certificate). A domain with
//! extra names but no URL of its own borrows the system URL: its extra names are its own,
//! the system host stays the system's. A domain with neither has no names here and is
//! served by the system certificate.
//!
//! Names compare as lower-case A-labels with the trailing dot ignored. When two sites claim
//! the same name, the system keeps it, then the first domain in topology order
//! ([`CertIndex::conflicts`] lists the losers).
//!
//! The pieces, from the inside out:
//! - [`CertIndex`]: a sans-I/O, immutable snapshot built from a
//!   [`Topology`](bmcert_topology::Topology): name → target map plus each target's
//!   certificate. Lookups lower-case into a stack buffer: no heap allocation, no lock.
//!   Changing one certificate makes a new snapshot that shares the name map and all but one
//!   256-slot chunk of certificates with the old one.
//! - [`LiveIndex`]: the current snapshot behind an `arc-swap` pointer, with serialized
//!   writers and a per-thread cache of the last snapshot used, so a lookup while nothing
//!   changes is one atomic load plus the hash lookup. A certificate that fails to load keeps
//!   the previous one in service and is listed by [`LiveIndex::failures`]. A certificate is
//!   served for a target only when it names the target's URL host in the current topology
//!   (checked when it is placed, and again when [`LiveIndex::set_topology`] changes that
//!   host): after a domain's URL changed, the certificate checked for the old host is kept
//!   aside ([`LoadError::NotForHost`]) and the system certificate answers until one for the
//!   new host is installed.
//! - [`ResolvesServerCertUsingSniWithFallback`] (HTTPS) and [`ResolvesSystemCert`] (mail):
//!   the [`rustls::server::ResolvesServerCert`] implementations, logging at `trace` only.
//! - [`certified_key`]: chain + key to a rustls `CertifiedKey` with the aws-lc-rs provider.
//! - [`load_all`], [`follow`] and [`FollowerThread`]: keep a `LiveIndex` in step with a
//!   [`Store`](bmcert_store::Store): every current bundle at start, then each change of the
//!   store's watch feed (install, renewal, rollback, disable) on the next handshake.
//!
//! This crate does not parse uploads (`bmcert-bundle`), check chains (`bmcert-verify`) or
//! store anything (`bmcert-store`): certificates reach it already checked.
//!
//! ```
//! use std::sync::Arc;
//! use bmcert_resolve::{LiveIndex, Reason, Service};
//! use bmcert_topology::{Target, Topology};
//!
//! let topology = Topology::from_toml_str(r#"
//!     [system]
//!     url = "https://mail.example.test"
//!     [[domain]]
//!     name = "acme.test"
//!     url = "https://webmail.acme.test"
//! "#).unwrap();
//! let index = Arc::new(LiveIndex::new(&topology));
//! // No certificate for acme.test yet: its URL falls back to the system certificate.
//! let why = index.explain(Service::Https, Some("WebMail.Acme.Test."));
//! assert_eq!((why.target, why.reason), (Target::System, Reason::FallbackToSystem));
//! assert_eq!(index.explain(Service::Imap, Some("webmail.acme.test")).reason,
//!            Reason::MailAlwaysSystem);
//! ```
#![deny(missing_docs)]
#![warn(unreachable_pub)]

mod follow;
mod hash;
mod index;
mod key;
mod live;
mod resolver;
mod service;

pub use follow::{apply_target, fall_back, follow, load_all, retry_failed, FollowerThread};
pub use index::{CertIndex, CertificateChange, Explanation, NameConflict, Reason};
pub use key::{certified_key, LoadError};
pub use live::{LiveIndex, LoadFailure};
pub use resolver::{ResolvesServerCertUsingSniWithFallback, ResolvesSystemCert};
pub use service::{Service, UnknownService};
