//! Parses and checks TLS certificate bundles (PEM, DER, PKCS#12) for installation.
#![deny(missing_docs)]
#![warn(unreachable_pub)]
