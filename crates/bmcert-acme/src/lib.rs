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
//!    checked by the same `bmcert-bundle` check an upload gets (a `CheckedBundle` for the
//!    target's URL host), then handed to the installation's [`InstallGate`] (the `bmcert`
//!    facade's `CertManager`: the one way into the store). This crate installs nothing
//!    itself.
//!
//! Under a lock of the store (the renewer's), [`AcmeClient::issue_fenced`] makes every store
//! write of the order (account registration, HTTP-01 tokens) carry the lock's fence and
//! hands it to the gate with the certificate, so a holder that lost its lock is refused with
//! [`AcmeError::Fenced`] and installs nothing ([`AcmeState`]'s `*_fenced` methods;
//! [`StoreState`] checks them in the store).
//!
//! Renewal information (ARI, RFC 9773): [`AcmeClient::renewal_window`] asks the CA when to
//! renew an installed certificate (`None` when its directory offers no `renewalInfo`), named
//! by [`ari_certificate_id`]; [`IssueRequest::replacing`] makes the order name the
//! certificate it replaces, and a CA that refuses that gets the order once more without it.
//! [`parse_renewal_info`] is the sans-I/O parser of the CA's answer.
//!
//! Outgoing proxy ([`AcmeConfig::proxy`], [`ProxySetting`]): every request to the CA goes
//! through an HTTP `CONNECT` tunnel when a proxy applies (a given [`ProxyUrl`], else
//! `HTTPS_PROXY`/`https_proxy`/`ALL_PROXY`), except for the hosts `NO_PROXY` exempts. The
//! tunnel and the `NO_PROXY` rules are hyper-util's (`client::legacy::connect::proxy::Tunnel`,
//! `client::proxy::matcher::Matcher`) rather than this crate's own: they are maintained with
//! the hyper client the requests already use (the TLS to the CA runs unchanged inside the
//! tunnel), follow curl's rules, and keep the proxy credentials in a header marked
//! sensitive. This crate checks the URL first (the matcher would silently ignore a
//! malformed one), hides the password in every message ([`ProxyUrl`]'s `Display`/`Debug`),
//! and names the proxy in failures ([`ProxyError`], in [`Transport::Proxy`]); a proxy that
//! answers no is not retried.
//!
//! Every server answers the challenges: [`http01_response`] for a request path on port 80
//! (any HTTP server can call it), [`ResolvesServerCertWithAcme`] around the HTTPS resolver
//! for TLS-ALPN-01 on port 443. The account, terms and HTTP-01 tokens are store records, so
//! the server that did not place the order can still answer ([`StoreState`]).
//!
//! This crate does not decide *when* to renew (`bmcert-renew` does), does not serve the
//! installed certificates (`bmcert-resolve`), does not install them (the gate does; why the
//! [`InstallGate`] trait is declared here: see its documentation) and checks the issued
//! chain with the same `bmcert-bundle` check an upload gets. Administrators use it through `bmcert acme`
//! (`docs/acme.md`, `docs/admin-guide.md`).
//!
//! ```
//! use bmcert_acme::{http01_response, order_names, ChallengeBoard};
//! use bmcert_topology::{Target, Topology};
//!
//! let topology = Topology::from_toml_str(r#"
//!     [system]
//!     url = "https://Mail.Example.test:8443/webmail"
//!     [[domain]]
//!     name = "acme.test"
//!     url = "https://webmail.acme.test"
//! "#).unwrap();
//! // The names of an order: the URL's host, then the additional names (sans-I/O).
//! let domain: Target = "domain:acme.test".parse().unwrap();
//! let names = order_names(&topology, &domain, &["acme.test".to_owned()]).unwrap();
//! assert_eq!(names.iter().map(|n| n.as_str()).collect::<Vec<_>>(), ["webmail.acme.test", "acme.test"]);
//! assert!(order_names(&topology, &domain, &["*.acme.test".to_owned()]).is_err()); // needs DNS-01
//!
//! // HTTP-01: the body for a pending token, nothing (404) for any other path.
//! let board = ChallengeBoard::new();
//! board.add_http01("tok3n", "tok3n.thumbprint");
//! assert_eq!(http01_response("/.well-known/acme-challenge/tok3n", &board).as_deref(), Some("tok3n.thumbprint"));
//! assert_eq!(http01_response("/.well-known/acme-challenge/other", &board), None);
//! assert_eq!(http01_response("/index.html", &board), None);
//! ```
#![deny(missing_docs)]
#![warn(unreachable_pub)]

mod ari;
mod challenge;
mod client;
mod eab;
mod error;
mod gate;
mod http;
mod names;
mod proxy;
mod state;
mod store_state;

pub use ari::{
    ari_certificate_id, parse_renewal_info, RenewalWindow, DEFAULT_ARI_RETRY, MAX_ARI_RETRY,
    MIN_ARI_RETRY,
};
pub use challenge::{
    accept_loop, http01_response, http01_response_from_state, parse_request_line, ChallengeBoard,
    Http01Listener, Http01Source, NoCertificate, ResolvesServerCertWithAcme, TlsAlpn01Listener,
    TokenLookup, ACME_TLS_ALPN, HTTP01_PATH_PREFIX,
};
pub use client::{
    AcmeClient, AcmeConfig, ChallengeKind, Directory, IssueRequest, KeyKind, PollSchedule,
    ProfileChoice, Progress, RevokeReason, UnknownRevokeReason,
};
pub use eab::{BadBinding, ExternalAccountBinding};
pub use error::{
    AcmeError, AriIdError, BadRoot, KeyGenError, ListenError, Problem, ProtocolError, Subproblem,
    Transport,
};
pub use gate::{GateError, InstallGate};
pub use http::{parse_retry_after, RequestCounts, RetryBudget};
pub use names::order_names;
pub use proxy::{
    ProxyError, ProxyFailure, ProxySetting, ProxyUrl, ProxyUrlError, NO_PROXY_VARIABLES,
    PROXY_VARIABLES,
};
pub use state::{keys, AcmeState, BoxFuture, Issued, MemoryState, StateError};
pub use store_state::StoreState;
