//! Automatic renewal and expiry warnings: the entry points services and the CLI use.
//!
//! The API of `bmcert-renew` is re-exported here (its test doubles `ManualClock` and
//! `MemoryNotifier` only with the feature `testing`). [`Installation::renewer`](crate::Installation::renewer)
//! builds the installation's renewer over its store and its one topology: renewals through
//! the ACME client of [`Installation::acme_client`](crate::Installation::acme_client) (the
//! same account, terms and HTTP-01 tokens, installs through the gate), warnings through the
//! given [`Notifier`] (usually an [`SmtpNotifier`]).
//! The service starts it with [`Renewer::start`] and stops it with [`Running::stop`].

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
