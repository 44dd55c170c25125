//! [`IssueError`]: why an issuer could not renew, by what the renewer does next.

use bmcert_acme::{AcmeError, GateError};
use bmcert_store::StoreError;
use bmcert_topology::TopologyError;
use time::Duration;

/// Why an [`Issuer`](crate::Issuer) could not renew a certificate, sorted by what the
/// renewer does next (the current certificate stays in every case):
///
/// | variant | next attempt |
/// |---|---|
/// | [`Transient`](Self::Transient), [`StoreUnavailable`](Self::StoreUnavailable), [`TimedOut`](Self::TimedOut) | after the back-off (5 min doubling by three up to 6 h), never before the CA's `Retry-After` |
/// | [`RateLimited`](Self::RateLimited) | not before the CA's `Retry-After`, nor the back-off |
/// | [`Permanent`](Self::Permanent) | none until the topology (the names ordered) or the target's certificate changes |
/// | [`LeaseLost`](Self::LeaseLost) | by the server that holds the renewal lock now |
///
/// The warning e-mail names the error and [`fix`](Self::fix).
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    /// A passing failure: the CA or the network could not be reached, timed out, or the CA
    /// had an internal error.
    #[error("{source}")]
    Transient {
        /// The CA's `Retry-After`, when it gave one.
        retry_after: Option<Duration>,
        /// The ACME error.
        source: AcmeError,
    },
    /// The CA's rate limit was hit.
    #[error("{source}")]
    RateLimited {
        /// The CA's `Retry-After`, when it gave one.
        retry_after: Option<Duration>,
        /// The ACME error (its problem document: type, detail, subproblems).
        source: AcmeError,
    },
    /// A refusal that repeating the same order cannot change: the CA refused a name (CAA,
    /// rejectedIdentifier, unauthorized, a challenge answered by another server), or the
    /// installation's configuration forbids the order (a domain without its own URL, terms
    /// not accepted, no contact address).
    #[error("{source}")]
    Permanent {
        /// The ACME error (with the CA's problem type and subproblems when the CA refused).
        source: AcmeError,
    },
    /// The renewal lock was lost during the attempt (the store refused a fenced write).
    #[error("the renewal lock `{lock}` is no longer held with token {token}; the server holding it now renews")]
    LeaseLost {
        /// The lock's name.
        lock: String,
        /// The stale token.
        token: u64,
    },
    /// The store could not be used (unreachable, timed out, refused).
    #[error("{source}")]
    StoreUnavailable {
        /// The ACME flow's error about the store.
        source: AcmeError,
    },
    /// The attempt did not finish within `RenewerConfig::attempt_timeout` and was abandoned.
    #[error("the renewal attempt did not finish within {seconds} s and was abandoned (the ACME CA or the store is too slow)")]
    TimedOut {
        /// The limit.
        seconds: u64,
    },
}

/// A `Retry-After` as the renewer's `time::Duration` (saturating: the CA's value is capped at
/// a day by the parser anyway).
fn to_time(d: std::time::Duration) -> Duration {
    Duration::try_from(d).unwrap_or(Duration::MAX)
}

impl IssueError {
    /// Sorts an ACME error by what the renewer does next.
    pub fn from_acme(error: AcmeError) -> Self {
        match &error {
            AcmeError::Fenced { lock, token, .. } => Self::LeaseLost {
                lock: lock.clone(),
                token: *token,
            },
            AcmeError::Gate {
                source: GateError::Store(StoreError::Fenced { lock, token }),
                ..
            } => Self::LeaseLost {
                lock: lock.clone(),
                token: *token,
            },
            AcmeError::Store { .. }
            | AcmeError::Gate {
                source: GateError::Store(_),
                ..
            } => Self::StoreUnavailable { source: error },
            AcmeError::Refused { problem, .. } => match problem.short_kind() {
                Some("rateLimited") => Self::RateLimited {
                    retry_after: error.retry_after().map(to_time),
                    source: error,
                },
                Some("serverInternal" | "badNonce") => Self::Transient {
                    retry_after: error.retry_after().map(to_time),
                    source: error,
                },
                _ => Self::Permanent { source: error },
            },
            AcmeError::Unreachable { .. }
            | AcmeError::Timeout { .. }
            | AcmeError::Protocol { .. }
            | AcmeError::Listen { .. } => Self::Transient {
                retry_after: error.retry_after().map(to_time),
                source: error,
            },
            _ => Self::Permanent { source: error },
        }
    }

    /// A stable name of the kind: `transient`, `rate_limited`, `permanent`, `lease_lost`,
    /// `store_unavailable`, `timed_out`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Transient { .. } => "transient",
            Self::RateLimited { .. } => "rate_limited",
            Self::Permanent { .. } => "permanent",
            Self::LeaseLost { .. } => "lease_lost",
            Self::StoreUnavailable { .. } => "store_unavailable",
            Self::TimedOut { .. } => "timed_out",
        }
    }

    /// The CA's `Retry-After`, when it gave one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Transient { retry_after, .. } | Self::RateLimited { retry_after, .. } => {
                *retry_after
            }
            _ => None,
        }
    }

    /// What the administrator should do, for the warning e-mail.
    pub fn fix(&self) -> &'static str {
        match self {
            Self::Permanent {
                source: AcmeError::Topology(TopologyError::DomainWithoutUrl(_)),
            } => "set the domain's external URL in the topology (domain_without_url), or disable its certificate",
            Self::Permanent {
                source: AcmeError::TermsNotAccepted { .. },
            } => "accept the CA's terms of service (bmcert acme accept)",
            Self::Permanent { source } | Self::RateLimited { source, .. } => {
                match source.problem() {
                    Some(problem) => problem.hint(),
                    None => "correct the configuration named in the error, then renew by hand (bmcert renew)",
                }
            }
            Self::Transient { .. } | Self::TimedOut { .. } => "check that this server reaches the CA's directory (outgoing HTTPS, proxy) and the CA's status page; the renewer tries again by itself",
            Self::StoreUnavailable { .. } => "check that the certificate store (the directory, or the etcd cluster) is reachable and writable",
            Self::LeaseLost { .. } => "nothing: the server holding the renewal lock renews",
        }
    }

    /// Whether the renewer retries by itself (not a permanent refusal).
    pub fn is_retried(&self) -> bool {
        !matches!(self, Self::Permanent { .. })
    }
}
