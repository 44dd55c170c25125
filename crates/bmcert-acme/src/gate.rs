//! [`InstallGate`]: where an issued certificate goes once the CA delivered it.

use core::fmt;

use bmcert_bundle::CheckedBundle;
use bmcert_store::{Fence, StoreError};
use bmcert_topology::{Host, Target, TopologyError};

use crate::state::BoxFuture;

/// The installation's gate, the one way into the store: `bmcert::CertManager` implements it
/// (and nothing else does outside tests). [`AcmeClient`](crate::AcmeClient) obtains a
/// certificate, checks it like an upload ([`CheckedBundle`]: only the check makes one) and
/// hands it here with source `acme`; the gate re-checks the host it was checked for against
/// the target's URL host in the installation's current topology and writes it with `fence`
/// (the renewal lock's, under a renewal) checked atomically by the store.
///
/// # Why the trait lives here
///
/// The gate's implementation needs the store and the topology together, which only the
/// `bmcert` facade holds; `bmcert-acme` (and `bmcert-renew`, which orders through it) sit
/// below the facade and cannot name it. So the trait is declared in the lowest crate that
/// must hand a certificate over, next to its only caller, and the facade implements it:
/// the dependency graph stays `bmcert-bundle <- bmcert-acme <- bmcert-renew <- bmcert`,
/// with no cycle, and this crate has no install code of its own.
pub trait InstallGate: fmt::Debug + Send + Sync {
    /// Installs `checked` as the ACME certificate of `target`, only while `fence` (when
    /// given) still holds.
    fn install_acme<'a>(
        &'a self,
        target: &'a Target,
        checked: CheckedBundle,
        fence: Option<&'a Fence>,
    ) -> BoxFuture<'a, Result<(), GateError>>;
}

/// Why the gate refused a certificate; nothing was installed.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GateError {
    /// The target has no URL host of its own in the current topology (`domain_without_url`,
    /// or a domain the topology no longer lists).
    #[error(transparent)]
    Topology(#[from] TopologyError),
    /// The certificate was checked for another host than the target's URL host now (the
    /// topology changed during the order).
    #[error("the certificate was checked for {checked}, but the target's external URL host is now {current}; order it again")]
    CheckedForAnotherHost {
        /// The host it was checked for.
        checked: Host,
        /// The target's URL host now.
        current: Host,
    },
    /// The store refused or failed the write ([`StoreError::Fenced`] when the lock was lost).
    #[error("the certificate store refused the install: {0}")]
    Store(#[from] StoreError),
    /// The certificate's key cannot be kept by the store.
    #[error("the certificate's private key format is not supported by the store")]
    UnsupportedKey,
}
