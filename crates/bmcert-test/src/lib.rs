//! Unpublished test helpers: fixtures and real peer processes.
#![deny(missing_docs)]
#![warn(unreachable_pub)]

pub mod chains;
pub mod fixtures;
