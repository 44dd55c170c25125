//! Chain building with rustls-webpki plus diagnosis, and RFC 9525 host-name matching.
#![deny(missing_docs)]
#![warn(unreachable_pub)]
