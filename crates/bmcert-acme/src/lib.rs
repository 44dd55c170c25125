//! Let's Encrypt through ACME: terms, account, orders, HTTP-01 and TLS-ALPN-01 on every server.
//!
//! Built on [instant-acme](https://docs.rs/instant-acme) (the rustls ecosystem's ACME client)
//! with aws-lc-rs as the only crypto provider. Its HTTP client is this crate's own
//! hyper-rustls client, so a test CA's root (pebble) can be trusted next to the system roots,
//! and connection errors, `5xx` and `429` are retried with back-off inside a bounded time.
//!
//! The flow ([`AcmeClient::issue`]):
//! 1. the names: the target's external URL host plus its additional DNS names
//!    ([`order_names`], sans-I/O);
//! 2. the terms must have been accepted ([`AcmeClient::accept_terms`]); otherwise
//!    [`AcmeError::TermsNotAccepted`] and nothing is sent to the CA beyond reading its
//!    directory;
//! 3. the installation's one account, from the store or registered once;
//! 4. the order, its challenges published on the [`ChallengeBoard`] and in the store
//!    (HTTP-01) and removed when the order ends;
//! 5. a key generated locally (ECDSA P-256 by default), the CSR built with rcgen, the chain
//!    checked, then installed through [`AcmeState::install`].
#![deny(missing_docs)]
#![warn(unreachable_pub)]

mod challenge;
mod check;
mod client;
mod error;
mod http;
mod names;
mod state;
mod store_state;

pub use challenge::{
    http01_response, http01_response_from_state, parse_request_line, ChallengeBoard,
    Http01Listener, NoCertificate, ResolvesServerCertWithAcme, TlsAlpn01Listener, TokenLookup,
    ACME_TLS_ALPN, HTTP01_PATH_PREFIX,
};
pub use check::check_issued;
pub use client::{
    AcmeClient, AcmeConfig, ChallengeKind, Directory, IssueRequest, KeyKind, PollSchedule, Progress,
};
pub use error::{AcmeError, Problem, Subproblem};
pub use http::{parse_retry_after, RequestCounts, RetryBudget};
pub use names::order_names;
pub use state::{keys, AcmeState, BoxFuture, Issued, MemoryState, StateError};
pub use store_state::StoreState;
