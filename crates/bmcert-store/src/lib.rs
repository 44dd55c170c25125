//! Certificate store: trait, directory backend, crash-safe installs, history, watch and locks.
#![deny(missing_docs)]
#![warn(unreachable_pub)]
