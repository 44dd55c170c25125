use std::io;
use std::path::{Path, PathBuf};

use crate::types::{Expect, Revision};
use crate::verify::{Damage, Damaged};

/// Why a store operation failed.
///
/// Messages say which key or file was involved and what to do; they never contain key
/// material or record values.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// A conditional write found something other than it expected (compare-and-swap lost).
    #[error("{key} changed concurrently: expected {expected:?}, found {}; re-read and retry", match .actual { Some(r) => r.to_string(), None => "nothing".to_owned() })]
    Conflict {
        /// The key written.
        key: String,
        /// What the write expected.
        expected: Expect,
        /// The revision found (`None`: absent).
        actual: Option<Revision>,
    },
    /// A fenced write whose lock has expired or was taken by someone else.
    #[error("the lock `{lock}` is no longer held with token {token}: the write was refused (another server may have taken over the work)")]
    Fenced {
        /// The lock name.
        lock: String,
        /// The stale token.
        token: u64,
    },
    /// A lock is held by someone else.
    #[error("the lock `{lock}` is held by {holder} until {expires_at}")]
    LockHeld {
        /// The lock name.
        lock: String,
        /// Its holder.
        holder: String,
        /// Its expiry (RFC 3339).
        expires_at: String,
    },
    /// There is nothing to act on (no current bundle, no such lock...).
    #[error("{0}")]
    NotFound(String),
    /// A rollback without an older version to return to.
    #[error("{target} has no previous version to roll back to (the store keeps the last 3)")]
    NoPreviousVersion {
        /// The target.
        target: String,
    },
    /// A bundle refused before writing: it is not whole (see
    /// [`Bundle::verified`](crate::Bundle::verified)).
    #[error("invalid bundle: {0}")]
    InvalidBundle(Damage),
    /// A target's stored certificate failed the proof every read runs: the file or value,
    /// what is wrong, and (in the message) the advice that repairs it. Other targets are
    /// not affected.
    #[error("{0}")]
    Damaged(Box<Damaged>),
    /// A watch asked to resume from a revision whose changes are no longer kept.
    #[error("changes before {oldest} are no longer kept (asked from {requested}); reload everything and watch from the current revision")]
    Compacted {
        /// The revision asked for.
        requested: Revision,
        /// The oldest revision still available.
        oldest: Revision,
    },
    /// A file system operation failed.
    #[error("could not {action} {}: {message}", .path.display())]
    Io {
        /// What was being done (`write`, `fsync`, `rename`...).
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error kind.
        kind: io::ErrorKind,
        /// The OS error text.
        message: String,
    },
    /// A stored file is unreadable or inconsistent (a store-wide file that could not be
    /// rebuilt, a record, a lock; a target's certificate is [`StoreError::Damaged`]).
    #[error("the store file {} is damaged: {reason}; restore it from a backup", .path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The backend cannot be reached (distributed backends); [`Unavailable::cause`] says
    /// why, for callers that tell the administrator what to check.
    #[error("the store is unavailable: {0}")]
    Unavailable(Unavailable),
}

/// Why a distributed store could not be used: the cause, typed, and the backend's words.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{detail}")]
pub struct Unavailable {
    /// What went wrong, for branching (hints, retries).
    pub cause: UnavailableCause,
    /// The backend's message (endpoints, the server's reason); no secret.
    pub detail: String,
}

impl Unavailable {
    /// An unavailability of the given cause.
    pub fn new(cause: UnavailableCause, detail: impl Into<String>) -> Self {
        Self {
            cause,
            detail: detail.into(),
        }
    }
}

/// A message without a known cause is [`UnavailableCause::Other`].
impl From<String> for Unavailable {
    fn from(detail: String) -> Self {
        Self::new(UnavailableCause::Other, detail)
    }
}

impl From<&str> for Unavailable {
    fn from(detail: &str) -> Self {
        Self::new(UnavailableCause::Other, detail)
    }
}

/// The cause of an [`Unavailable`] store.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnavailableCause {
    /// No endpoint could be reached (refused, reset, no route), or the connection broke.
    Unreachable,
    /// The backend did not answer in time (down, or a cluster without a leader).
    Timeout,
    /// The backend refused the user name or password.
    CredentialsRefused,
    /// Authenticated (or anonymous) but not allowed to use the store's keys.
    PermissionDenied,
    /// The server's TLS certificate is not signed by a trusted CA.
    TlsUntrusted,
    /// The server's TLS certificate does not name the host connected to.
    TlsNameMismatch,
    /// The TLS handshake was cut by the server (typically: it requires a client
    /// certificate that was not given or not accepted).
    TlsHandshake,
    /// Anything else (the detail says what).
    Other,
}

impl StoreError {
    pub(crate) fn io(action: &'static str, path: &Path, err: &io::Error) -> Self {
        Self::Io {
            action,
            path: path.to_owned(),
            kind: err.kind(),
            message: err.to_string(),
        }
    }

    /// A target's damaged certificate.
    pub fn damaged(damaged: Damaged) -> Self {
        Self::Damaged(Box::new(damaged))
    }

    pub(crate) fn corrupt(path: &Path, reason: impl Into<String>) -> Self {
        Self::Corrupt {
            path: path.to_owned(),
            reason: reason.into(),
        }
    }
}
