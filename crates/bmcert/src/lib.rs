//! Facade: the CertManager that services link to check, install and serve certificates.
#![deny(missing_docs)]
#![warn(unreachable_pub)]

pub use bmcert_topology as topology;
pub mod acme;
