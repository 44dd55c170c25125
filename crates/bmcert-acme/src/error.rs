//! Errors of the ACME flow, each with what to check.

use core::fmt;
use std::time::Duration;

use bmcert_topology::{Target, TopologyError};

/// An ACME problem document (RFC 8555 section 6.7, RFC 7807), kept as the CA sent it.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Problem {
    /// The problem type URN, e.g. `urn:ietf:params:acme:error:connection`.
    pub kind: Option<String>,
    /// The CA's human-readable explanation.
    pub detail: Option<String>,
    /// The HTTP status code the CA answered with.
    pub status: Option<u16>,
    /// One problem per identifier, for orders covering several names.
    pub subproblems: Vec<Subproblem>,
    /// The CA's `Retry-After` on the response that carried the problem (a rate limit's
    /// `429`, a `503`), when it gave one: the earliest time the same request may succeed.
    pub retry_after: Option<Duration>,
}

/// The part of a [`Problem`] about one identifier.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Subproblem {
    /// The identifier (DNS name) the problem is about.
    pub identifier: Option<String>,
    /// The problem type URN.
    pub kind: Option<String>,
    /// The CA's explanation.
    pub detail: Option<String>,
}

impl Problem {
    /// The short type (`badNonce`, `connection`, ...) without the `urn:ietf:params:acme:error:`
    /// prefix.
    pub fn short_kind(&self) -> Option<&str> {
        self.kind
            .as_deref()
            .map(|k| k.strip_prefix(ACME_URN).unwrap_or(k))
    }

    /// Whether the CA rejected the request's nonce (the request can be sent again).
    pub fn is_bad_nonce(&self) -> bool {
        self.short_kind() == Some("badNonce")
    }

    /// Whether the CA does not know the account (it must be registered again).
    pub fn is_unknown_account(&self) -> bool {
        self.short_kind() == Some("accountDoesNotExist")
    }

    /// What the administrator should check, derived from the problem type.
    pub fn hint(&self) -> &'static str {
        let kinds = core::iter::once(self.short_kind())
            .chain(self.subproblems.iter().map(|s| {
                s.kind
                    .as_deref()
                    .map(|k| k.strip_prefix(ACME_URN).unwrap_or(k))
            }))
            .flatten();
        for kind in kinds {
            let hint = match kind {
                "connection" => "check that each name's DNS A/AAAA record points to this installation and that port 80 (HTTP-01) or 443 (TLS-ALPN-01) is reachable from the internet through any firewall",
                "dns" => "check that each name has a public DNS record (A or AAAA) pointing to this installation",
                "unauthorized" | "incorrectResponse" => "the CA reached a server that did not give the expected answer: check that the name's DNS record points to this installation and that no other proxy answers /.well-known/acme-challenge/",
                "tls" => "check that port 443 answers TLS for this name and supports the acme-tls/1 protocol (TLS-ALPN-01)",
                "caa" => "a DNS CAA record forbids this CA: add the CA (letsencrypt.org) to the CAA record",
                "rateLimited" => "the CA's rate limit was hit: wait until the time it gives before trying again",
                "rejectedIdentifier" | "malformed" => "the CA refuses one of the names: check that it is a public DNS name spelled correctly",
                "badNonce" => "the CA kept rejecting nonces: try again later",
                "serverInternal" => "the CA had an internal error: try again later",
                _ => continue,
            };
            return hint;
        }
        "check the CA's detail above"
    }
}

const ACME_URN: &str = "urn:ietf:params:acme:error:";

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.detail, self.short_kind()) {
            (Some(d), Some(k)) => write!(f, "{d} ({k})")?,
            (Some(d), None) => f.write_str(d)?,
            (None, Some(k)) => f.write_str(k)?,
            (None, None) => f.write_str("no detail given")?,
        }
        for sub in &self.subproblems {
            write!(
                f,
                "; {}: {}",
                sub.identifier.as_deref().unwrap_or("?"),
                sub.detail.as_deref().unwrap_or("no detail")
            )?;
            if let Some(k) = &sub.kind {
                write!(f, " ({})", k.strip_prefix(ACME_URN).unwrap_or(k))?;
            }
        }
        Ok(())
    }
}

impl From<&instant_acme::Problem> for Problem {
    fn from(p: &instant_acme::Problem) -> Self {
        Self {
            kind: p.r#type.clone(),
            detail: p.detail.clone(),
            status: p.status,
            subproblems: p
                .subproblems
                .iter()
                .map(|s| Subproblem {
                    identifier: s.identifier.as_ref().map(identifier_string),
                    kind: s.r#type.clone(),
                    detail: s.detail.clone(),
                })
                .collect(),
            retry_after: None,
        }
    }
}

pub(crate) fn identifier_string(id: &instant_acme::Identifier) -> String {
    match id {
        instant_acme::Identifier::Dns(d) => d.clone(),
        instant_acme::Identifier::Ip(ip) => ip.to_string(),
        other => format!("{other:?}"),
    }
}

/// Why obtaining or installing a certificate through ACME failed.
///
/// No variant carries key material.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum AcmeError {
    /// The CA's terms of service were not accepted yet; nothing was sent to the CA.
    #[error("the terms of service of the ACME CA ({terms_url}) have not been accepted: read them and accept them (`bmcert acme accept`) before an account is created")]
    TermsNotAccepted {
        /// The terms URL from the CA's directory (`None` when the directory gives none).
        terms_url: String,
    },
    /// No contact address was given and the topology has no default domain.
    #[error("no contact e-mail address for the ACME account: give an address (--email) or set `default_domain` in the topology so no-reply@<default domain> is used")]
    NoContact,
    /// The contact address given is not usable.
    #[error("the contact e-mail address `{0}` is not usable: expected local@domain.name")]
    BadContact(String),
    /// The target is not in the topology.
    #[error(transparent)]
    Topology(#[from] TopologyError),
    /// A name of the order cannot be validated by HTTP-01 or TLS-ALPN-01.
    #[error("cannot order a certificate for `{name}` ({target}): {reason}")]
    BadName {
        /// The target ordered.
        target: Target,
        /// The name as given.
        name: String,
        /// What is wrong and what to do.
        reason: &'static str,
    },
    /// The CA refused a request or failed a challenge; the problem document is kept.
    #[error("the ACME CA refused {during}: {problem}; {hint}", hint = problem.hint())]
    Refused {
        /// What was being done (`creating the account`, `validating the challenges`, ...).
        during: &'static str,
        /// The CA's problem document.
        problem: Problem,
    },
    /// The CA could not be reached, or kept failing, within the time allowed.
    #[error("the ACME CA at {url} could not be reached while {during}: {}; check the network, proxy and firewall towards the CA, and the directory URL", .cause.chain())]
    Unreachable {
        /// The URL requested.
        url: String,
        /// What was being done.
        during: &'static str,
        /// The last transport error or status.
        #[source]
        cause: Transport,
    },
    /// The order did not complete in the time allowed.
    #[error("the ACME order did not complete within {seconds} s while {during}; the CA may be overloaded: try again later")]
    Timeout {
        /// What was being waited for.
        during: &'static str,
        /// The limit.
        seconds: u64,
    },
    /// The CA answered something this client does not understand.
    #[error("the ACME CA gave an unexpected answer while {during}: {cause}")]
    Protocol {
        /// What was being done.
        during: &'static str,
        /// What was wrong.
        #[source]
        cause: ProtocolError,
    },
    /// The certificate the CA issued did not pass the checks an upload gets; nothing was
    /// installed.
    #[error("the certificate issued for {target} was not installed: {}", .report.problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Check {
        /// The target ordered.
        target: Target,
        /// The check's report (its problems say what failed).
        report: Box<bmcert_bundle::Report>,
    },
    /// The certificate the CA issued does not cover a name that was ordered; nothing was
    /// installed.
    #[error("the certificate issued for {target} was not installed: it does not cover `{name}`, which was ordered")]
    NotCovered {
        /// The target ordered.
        target: Target,
        /// The name ordered and missing from the certificate.
        name: String,
    },
    /// The installation's gate refused the checked certificate; nothing was installed.
    #[error("the certificate issued for {target} was not installed: {source}")]
    Gate {
        /// The target ordered.
        target: Target,
        /// The gate's refusal.
        source: crate::GateError,
    },
    /// The profile required for the order (`--require-profile`) is not advertised by the
    /// CA's directory; nothing was ordered.
    #[error("the ACME CA does not offer the certificate profile `{profile}` ({}); nothing was ordered: choose one it offers (`bmcert acme profiles`), or prefer the profile (--profile) to fall back to the CA's default", crate::client::offered_list(.offered))]
    ProfileNotOffered {
        /// The profile required.
        profile: String,
        /// The profiles the CA advertises (sorted; empty when it advertises none).
        offered: Vec<String>,
    },
    /// The CA's directory says new accounts need External Account Binding and none was
    /// configured; nothing was sent.
    #[error("the ACME CA at {directory} requires External Account Binding for a new account: give the key id and HMAC key it issued you (--eab-kid and --eab-hmac-key-file, or [acme] eab_kid / eab_hmac_key_file)")]
    ExternalAccountRequired {
        /// The directory URL.
        directory: String,
    },
    /// The client has no install gate (`AcmeClient::with_gate`); nothing was ordered.
    #[error("this ACME client has no install gate, so it cannot install a certificate; build it with bmcert::Installation::acme_client (or AcmeClient::with_gate)")]
    NoGate,
    /// The extra trusted root given for the directory is not usable.
    #[error("the trusted root for the ACME directory is not usable: {0}; give a PEM file with a CA certificate")]
    BadRoot(#[source] BadRoot),
    /// The proxy URL (`--proxy`, `[acme] proxy`, `HTTPS_PROXY`, ...) is not usable; nothing
    /// was sent.
    #[error(transparent)]
    ProxyUrl(crate::ProxyUrlError),
    /// Generating the certificate key or the CSR failed.
    #[error("generating the certificate key or request failed: {0}")]
    Key(#[source] KeyGenError),
    /// Reading or writing the store failed.
    #[error("the certificate store failed while {during}: {source}")]
    Store {
        /// What was being done.
        during: &'static str,
        /// The state's (the store's) typed error.
        source: crate::StateError,
    },
    /// A record of the ACME flow in the store cannot be read or written as JSON (damaged,
    /// or written by an incompatible version).
    #[error("the ACME record `{key}` could not be {during} (JSON, line {line}, column {column}); remove it (it is written again) or restore it from a backup")]
    Record {
        /// `read` or `written`.
        during: &'static str,
        /// The record's key.
        key: &'static str,
        /// Where the JSON is damaged.
        line: usize,
        /// Where the JSON is damaged.
        column: usize,
    },
    /// A write of a fenced order (`AcmeClient::issue_fenced`) was refused because the lock it
    /// ran under is no longer held with its token: another server may have taken over the
    /// renewal. Nothing was written by that step; the installed certificate is unchanged
    /// when the refused step is the install.
    #[error("the certificate store refused {during}: the lock `{lock}` is no longer held with token {token} (the lease expired or another server took over the renewal); nothing was changed by this step, and the renewal is left to the lock's current holder")]
    Fenced {
        /// What was being done.
        during: &'static str,
        /// The lock's name.
        lock: String,
        /// The stale token.
        token: u64,
    },
    /// A certificate cannot be named to the CA for renewal information (RFC 9773), or an
    /// identifier given for an order's `replaces` is malformed.
    #[error("cannot name the certificate for ACME renewal information (RFC 9773): {0}")]
    AriIdentifier(#[source] AriIdError),
    /// Binding a challenge listener failed.
    #[error("cannot listen on {addr} for ACME challenges: {source}; check that the port is free and that this process may bind it")]
    Listen {
        /// The address.
        addr: std::net::SocketAddr,
        /// The OS error (or, for TLS-ALPN-01, the TLS configuration's).
        source: ListenError,
    },
}

/// Why a request to the CA got no usable answer ([`AcmeError::Unreachable`]).
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Transport {
    /// The CA answered with an HTTP status that is not a problem document (a proxy's or
    /// load balancer's error page, a `5xx` after the retry budget).
    #[error("HTTP status {status}")]
    Status {
        /// The status code.
        status: u16,
        /// Its `Retry-After`, when given.
        retry_after: Option<Duration>,
    },
    /// No answer came within the request's time budget (retries included).
    #[error("no answer within {seconds} s")]
    NoAnswer {
        /// The budget.
        seconds: u64,
    },
    /// The connection failed (DNS, TCP, TLS): hyper's client error, with its causes.
    #[error(transparent)]
    Connect(hyper_util::client::legacy::Error),
    /// The connection through the outgoing proxy failed: the proxy (password hidden), the
    /// tunnel's destination and what failed.
    #[error(transparent)]
    Proxy(crate::ProxyError),
    /// The request could not be built (a malformed URL).
    #[error(transparent)]
    Request(http::Error),
    /// The answer's body could not be read.
    #[error("reading the answer failed: {0}")]
    Body(Box<dyn std::error::Error + Send + Sync>),
    /// instant-acme's transport error, as it reported it (boxed: it is large).
    #[error(transparent)]
    Acme(Box<instant_acme::Error>),
}

impl Transport {
    /// The error and its causes on one line (`a: b: c`), for messages.
    pub fn chain(&self) -> String {
        let mut text = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(inner) = source {
            let next = inner.to_string();
            if !text.ends_with(&next) {
                text.push_str(": ");
                text.push_str(&next);
            }
            source = inner.source();
        }
        text
    }

    /// The CA's `Retry-After` on the last answer, when it gave one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// What the CA sent that this client does not understand ([`AcmeError::Protocol`]).
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// The directory is not ACME JSON (RFC 8555 section 7.1.1).
    #[error("the directory is not ACME JSON: {0}")]
    Directory(#[source] serde_json::Error),
    /// The renewal information is not the JSON of RFC 9773 section 4.2.
    #[error("not the JSON of RFC 9773 section 4.2 (a suggestedWindow with start and end): {0}")]
    RenewalInfo(#[source] serde_json::Error),
    /// A time of the renewal information is not RFC 3339.
    #[error("the time {value:?} is not RFC 3339: {source}")]
    RenewalInfoTime {
        /// The value as sent.
        value: String,
        /// The parser's error.
        source: time::error::Parse,
    },
    /// The suggested renewal window ends before it starts.
    #[error("the suggested window ends ({end}) before it starts ({start})")]
    RenewalInfoWindow {
        /// Its start.
        start: time::OffsetDateTime,
        /// Its end.
        end: time::OffsetDateTime,
    },
    /// The CA offers no challenge of the configured kind for a name.
    #[error("the CA offers no {kind} challenge for {name}")]
    NoChallenge {
        /// `http-01` or `tls-alpn-01`.
        kind: &'static str,
        /// The name.
        name: String,
    },
    /// instant-acme could not make sense of an answer (JSON, missing data, unsupported);
    /// boxed: it is large.
    #[error(transparent)]
    Acme(Box<instant_acme::Error>),
}

/// Why the extra trusted root for the directory is not usable ([`AcmeError::BadRoot`]).
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum BadRoot {
    /// The file is not PEM.
    #[error("{what} is not PEM: {source}")]
    NotPem {
        /// The file, as named by the caller.
        what: String,
        /// The PEM parser's error.
        source: pem::PemError,
    },
    /// The file holds no `CERTIFICATE` block.
    #[error("{what} holds no CERTIFICATE block")]
    NoCertificate {
        /// The file, as named by the caller.
        what: String,
    },
    /// rustls refused the certificate as a trust anchor, or the TLS configuration.
    #[error(transparent)]
    Rustls(rustls::Error),
}

/// Why generating a key, a CSR or a TLS-ALPN-01 certificate failed ([`AcmeError::Key`]).
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum KeyGenError {
    /// rcgen failed (key generation, CSR, self-signed certificate).
    #[error(transparent)]
    Rcgen(rcgen::Error),
    /// rustls refused the generated key.
    #[error(transparent)]
    Rustls(rustls::Error),
}

/// Why a certificate cannot be named for renewal information ([`AcmeError::AriIdentifier`]).
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum AriIdError {
    /// The certificate is not DER X.509.
    #[error("the certificate is not DER X.509: {0}")]
    NotX509(#[source] der::Error),
    /// The certificate has no authority key identifier with a key identifier.
    #[error("the certificate has no authority key identifier (RFC 9773 section 4.1 needs its keyIdentifier)")]
    NoAuthorityKeyId,
    /// The authority key identifier extension cannot be read.
    #[error("its authority key identifier cannot be read: {0}")]
    AuthorityKeyIdUnreadable(#[source] der::Error),
    /// The key identifier or the serial number is empty.
    #[error("its authority key identifier or serial number is empty")]
    Empty,
    /// An identifier given for `replaces` is malformed.
    #[error("`{0}` is not a certificate identifier (base64url key identifier \".\" base64url serial); compute it with ari_certificate_id")]
    Malformed(String),
}

/// Why a challenge listener could not start ([`AcmeError::Listen`]).
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    /// Binding the socket failed.
    #[error(transparent)]
    Bind(std::io::Error),
    /// The TLS configuration of the TLS-ALPN-01 listener was refused.
    #[error(transparent)]
    Tls(rustls::Error),
}

impl AcmeError {
    /// The CA's `Retry-After`, when the failing answer carried one (a rate limit, a busy CA).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Refused { problem, .. } => problem.retry_after,
            Self::Unreachable { cause, .. } => cause.retry_after(),
            _ => None,
        }
    }

    /// The CA's problem document, when the CA refused something.
    pub fn problem(&self) -> Option<&Problem> {
        match self {
            Self::Refused { problem, .. } => Some(problem),
            _ => None,
        }
    }

    /// Whether the CA (or the certificate checks) refused the request, as opposed to a usage,
    /// network or store error. The CLI exits with 1 for these and 2 for the others.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            Self::Refused { .. }
                | Self::ProfileNotOffered { .. }
                | Self::Check { .. }
                | Self::NotCovered { .. }
                | Self::BadName { .. }
                | Self::Topology(TopologyError::DomainWithoutUrl(_))
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problem_display_lists_subproblems_and_hint() {
        let p = Problem {
            kind: Some("urn:ietf:params:acme:error:rejectedIdentifier".into()),
            detail: Some("some names refused".into()),
            status: Some(400),
            subproblems: vec![Subproblem {
                identifier: Some("a.example".into()),
                kind: Some("urn:ietf:params:acme:error:connection".into()),
                detail: Some("refused".into()),
            }],
            retry_after: None,
        };
        let e = AcmeError::Refused {
            during: "validating the challenges",
            problem: p,
        };
        let text = e.to_string();
        assert!(text.contains("a.example: refused (connection)"), "{text}");
        assert!(text.contains("rejectedIdentifier"), "{text}");
        assert!(text.contains("public DNS name"), "{text}");
        assert!(e.is_refusal());
    }

    #[test]
    fn bad_nonce_is_recognised() {
        let p = Problem {
            kind: Some("urn:ietf:params:acme:error:badNonce".into()),
            ..Problem::default()
        };
        assert!(p.is_bad_nonce());
        assert!(!p.is_unknown_account());
    }
}
