//! Automatic renewal and expiry warnings: the entry points services and the CLI use.
//!
//! The API of `bmcert-renew` is re-exported here (its test doubles `ManualClock` and
//! `MemoryNotifier` only with the feature `testing`). [`renewer_for_store`] builds the
//! installation's renewer over its store: renewals through the ACME client of
//! [`acme::client_for_manager`](crate::acme::client_for_manager) (the same account, terms and
//! HTTP-01 tokens, installs through the gate), warnings through the given [`Notifier`] (usually an [`SmtpNotifier`]).
//! The service starts it with [`Renewer::start`] and stops it with [`Running::stop`].

use std::sync::Arc;

pub use bmcert_renew::{
    plan, policy, status, target_arg, AcmeIssuer, BoxFuture, Clock, Issuer, NoNotifier, Notifier,
    NotifyError, Outcome, PassReport, Plan, PlanInput, Planned, RateLimit, RenewError,
    RenewalRecord, RenewalStatus, Renewer, RenewerConfig, Running, SmtpConfig, SmtpNotifier,
    SmtpSecurity, SystemClock, Warning, WarningRecord, ARI_REFRESH,
};
/// Test doubles (feature `testing`): a clock the caller sets and a notifier that keeps the
/// warnings in memory.
#[cfg(feature = "testing")]
pub use bmcert_renew::{ManualClock, MemoryNotifier};

use crate::acme::{AcmeClient, AcmeConfig, AcmeError};

/// The installation's renewer over `store`: ACME renewals with `acme` for the names of
/// `topology`, warnings through `notifier`, the system clock.
///
/// Returns the renewer and the ACME client it renews with (share its
/// [`board`](AcmeClient::board) with the HTTP-01 handler and the TLS resolver).
pub fn renewer_for_store(
    store: Arc<dyn bmcert_store::Store>,
    acme: AcmeConfig,
    topology: crate::topology::Topology,
    notifier: Arc<dyn Notifier>,
    config: RenewerConfig,
) -> Result<(Renewer, Arc<AcmeClient>), AcmeError> {
    let manager = crate::CertManager::new(store.clone(), topology.clone());
    let client = Arc::new(crate::acme::client_for_manager(&manager, acme)?);
    let issuer = Arc::new(AcmeIssuer::new(client.clone(), topology));
    let renewer = Renewer::new(store, issuer, notifier, Arc::new(SystemClock), config);
    Ok((renewer, client))
}
