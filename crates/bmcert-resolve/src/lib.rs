//! Certificate resolution by service and SNI for rustls, following the store live.
#![deny(missing_docs)]
#![warn(unreachable_pub)]
