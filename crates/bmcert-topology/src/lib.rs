//! Shared vocabulary of the bmcert crates: validated domain names, the host an external URL
//! points at, certificate *targets* (the system certificate or one domain's), and the
//! installation [`Topology`] that says which URL and names each target serves.
//!
//! URLs are parsed with the `url` crate, the WHATWG URL standard browsers implement, so that
//! the host bmcert checks a certificate against is the host a browser connects to (see
//! [`Host`]); a hand-written split read `https://evil.test\@mail.example.test` as
//! `mail.example.test` where browsers go to `evil.test`. Text from input that error messages
//! repeat goes through [`Escaped`]: control characters are shown as escapes, long input cut.
//!
//! This crate does no I/O and holds no certificates. Parsing and checking uploads is
//! `bmcert-bundle`'s job, chain and name verdicts are `bmcert-verify`'s, and storage is
//! `bmcert-store`'s.
//!
//! ```
//! use bmcert_topology::{Host, Target, Topology};
//!
//! let topology = Topology::from_toml_str(r#"
//!     default_domain = "example.test"
//!     [system]
//!     url = "https://mail.example.test"
//!     [[domain]]
//!     name = "acme.test"
//!     url = "https://webmail.acme.test"
//! "#).unwrap();
//! let target: Target = "domain:acme.test".parse().unwrap();
//! assert_eq!(topology.host_for(&target).unwrap().to_string(), "webmail.acme.test");
//! assert_eq!(Host::parse("HTTPS://Mail.Example.test:8443/login").unwrap().to_string(),
//!            "mail.example.test");
//! ```
#![deny(missing_docs)]
#![warn(unreachable_pub)]

mod host;
mod key_format;
mod name;
mod plain;
mod shared;
mod target;
mod topology;

pub use host::{Host, HostError};
pub use key_format::KeyFormat;
pub use name::{DomainName, NameError};
pub use plain::{is_unsafe_char, Escaped, ECHO_LIMIT};
pub use shared::SharedTopology;
pub use target::{Target, TargetError};
pub use topology::{DomainSite, Site, Topology, TopologyError};
