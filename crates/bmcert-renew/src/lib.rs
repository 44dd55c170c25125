//! Automatic renewal of ACME certificates and daily expiry warnings by e-mail.
//!
//! - [`policy`] (sans-I/O, the time passed in): an ACME certificate is due when a third of
//!   its lifetime remains (half when it lives less than 10 days), brought forward by a
//!   small spread derived from the target so certificates issued together do not renew
//!   together; the CA's renewal-information window (ARI, RFC 9773) wins when offered
//!   ([`policy::ari_due_at`] over bmcert-acme's `RenewalWindow`; [`AcmeIssuer`] asks the CA through
//!   `AcmeClient::renewal_window` and its orders name the certificate they replace);
//!   retries back off from 5 minutes to 6 hours. Uploaded certificates are never renewed automatically.
//! - [`IssueError`]: why an issuer could not renew, by what happens next (transient and
//!   store failures back off, a rate limit waits for the CA's `Retry-After`, a permanent
//!   refusal waits until the names ordered or the certificate change, a lost lease leaves
//!   the work to the lock's holder); the warning e-mail names the error and its fix.
//! - [`plan()`](plan()) (sans-I/O): renewal times for many certificates under the CA's limit of
//!   new orders (Let's Encrypt: 300 per account per 3 hours), each one before its last sixth.
//! - [`Renewer`]: the background task a service starts ([`Renewer::start`]) and stops
//!   ([`Running::stop`] waits for it). It sleeps until the next due time or retry, wakes
//!   early on store changes, renews under the store's renewal lock (two servers place one
//!   order, not two; the lease is kept alive during an attempt, every write of the attempt
//!   is fenced by it, and the attempt is abandoned when it is lost or past
//!   [`RenewerConfig::attempt_timeout`]), keeps its state in store records
//!   (`renewal/...`, `warning/...`), and reports every attempt and outcome as a `tracing`
//!   event. [`Renewer::renew_now`] renews one target at any time; [`Renewer::status`] lists
//!   source, names, expiry, next renewal (when the renewer will really act: the CA's window
//!   or the rate-limit plan, and the back-off), last attempt and last error per target.
//! - Warnings: when an attempt failed and the certificate expires within 5 days, one e-mail
//!   per UTC day per target, claimed in the store by compare-and-swap first, so a restart or
//!   another server never sends a second one the same day. [`Notifier`] is the trait,
//!   [`SmtpNotifier`] sends with lettre (plain, STARTTLS or TLS, optional authentication).
//!
//! lettre is the SMTP client of the rustls ecosystem (it runs on tokio with rustls and lets
//! the crypto provider be aws-lc-rs); it is built without native-tls and without its
//! connection pool (a few e-mails a day do not need one).
//!
//! This crate does not talk ACME itself (`bmcert-acme` places the orders, through the
//! [`Issuer`] trait and its [`AcmeIssuer`]), does not check or serve certificates
//! (`bmcert-bundle`, `bmcert-resolve`) and never renews an uploaded certificate (it warns).
//! `bmcert::Installation::renewer` builds the installation's renewer; the lifecycle is in
//! `docs/embedding.md`, the details in `docs/renewal.md`.
//!
//! ```
//! use bmcert_renew::policy;
//! use time::macros::datetime;
//!
//! // A 90-day certificate is due when a third remains (day 60, 2 March), brought forward
//! // by at most a twentieth of its lifetime (4.5 days), the same on every server.
//! let (from, to) = (datetime!(2027-01-01 0:00 UTC), datetime!(2027-04-01 0:00 UTC));
//! let due = policy::due_at(from, to, "system");
//! assert!(due <= datetime!(2027-03-02 0:00 UTC) && due >= datetime!(2027-02-25 12:00 UTC));
//! assert_eq!(due, policy::due_at(from, to, "system"));
//! assert!(due < policy::deadline(from, to)); // always before the last sixth
//! // A failed attempt is retried after 5 minutes, then 15, 45, ... up to 6 hours.
//! assert_eq!(policy::retry_delay(2), time::Duration::minutes(15));
//! ```
#![deny(missing_docs)]
#![warn(unreachable_pub)]

mod issue_error;
mod notify;
mod pass;
pub mod plan;
pub mod policy;
mod renewer;

pub use issue_error::IssueError;
pub use notify::{
    target_arg, BoxFuture, MemoryNotifier, NoNotifier, Notifier, NotifyError, SmtpConfig,
    SmtpNotifier, SmtpSecurity, Warning,
};
pub use plan::{plan, Plan, PlanInput, Planned, RateLimit};
pub use renewer::{
    status, AcmeIssuer, Clock, Issuer, ManualClock, Outcome, PassReport, RenewError, RenewalRecord,
    RenewalStatus, Renewer, RenewerConfig, Running, SystemClock, WarningRecord, ARI_REFRESH,
    BUSY_RETRY_MAX, BUSY_RETRY_MIN,
};
