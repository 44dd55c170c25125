//! Expiry warnings: what they say ([`Warning`]), how they are sent ([`Notifier`]), and the
//! SMTP implementation ([`SmtpNotifier`], lettre over rustls with aws-lc-rs).

use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

use bmcert_topology::Target;
use lettre::message::{header::ContentType, Mailbox};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use zeroize::Zeroizing;

/// A boxed `Send` future (the one of `bmcert-acme`, as in instant-acme's `HttpClient`).
pub use bmcert_acme::BoxFuture;

/// One expiry warning for one target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Warning {
    /// The recipient.
    pub to: String,
    /// The target.
    pub target: Target,
    /// The names the certificate covers.
    pub names: Vec<String>,
    /// When it expires.
    pub not_after: OffsetDateTime,
    /// The last renewal error, in plain words (`None` for an uploaded certificate).
    pub last_error: Option<String>,
    /// What to do about it (`IssueError::fix`), when known.
    pub fix: Option<String>,
    /// Whether the certificate was uploaded (not renewed automatically).
    pub uploaded: bool,
    /// The UTC day this warning is for, `YYYY-MM-DD`.
    pub day: String,
}

/// `"{what} 1 day"`, `"{what} 3 days"`.
fn plural(what: &str, n: i64, unit: &str) -> String {
    let s = if n == 1 { "" } else { "s" };
    format!("{what} {n} {unit}{s}")
}

impl Warning {
    /// The subject line.
    pub fn subject(&self, now: OffsetDateTime) -> String {
        let left = self.not_after - now;
        let when = if left.is_negative() {
            "has EXPIRED".to_owned()
        } else if left.whole_days() >= 1 {
            plural("expires in", left.whole_days(), "day")
        } else {
            plural("expires in", left.whole_hours().max(0), "hour")
        };
        format!("[bmcert] The TLS certificate of {} {when}", self.target)
    }

    /// The plain-text body: target, names, expiry instant, last error, what to check.
    pub fn body(&self) -> String {
        let expiry = self
            .not_after
            .format(&Rfc3339)
            .unwrap_or_else(|_| self.not_after.to_string());
        let mut b = format!(
            "The TLS certificate of {target} expires at {expiry} (UTC).\n\nNames: {names}\n\n",
            target = self.target,
            names = self.names.join(", "),
        );
        if self.uploaded {
            b.push_str(
                "This certificate was uploaded by an administrator and is not renewed \
                 automatically.\n\nWhat to do: obtain a new certificate from your CA and \
                 upload it (bmcert install), or switch this target to Let's Encrypt \
                 (bmcert acme issue).\n",
            );
        } else {
            b.push_str("Automatic renewal through Let's Encrypt (ACME) keeps failing.\n\n");
            if let Some(e) = &self.last_error {
                b.push_str(&format!("Last error: {e}\n\n"));
            }
            if let Some(fix) = &self.fix {
                b.push_str(&format!("What to do: {fix}.\n\n"));
            }
            b.push_str(
                "What to check:\n\
                 - the DNS records of these names point to this installation;\n\
                 - port 80 (HTTP-01) or 443 (TLS-ALPN-01) is reachable from the Internet, \
                 no firewall or proxy in the way;\n\
                 - this server can reach the CA's directory (outgoing HTTPS, proxy settings);\n\
                 - the CA's rate limits and status page.\n\
                 Then renew by hand with: bmcert renew --target ",
            );
            b.push_str(&target_arg(&self.target));
            b.push('\n');
        }
        b.push_str(
            "\nYou receive this e-mail once a day while the problem lasts; it stops when the \
             certificate is renewed.\n",
        );
        b
    }
}

/// The `--target` argument for `target`: `system` or `domain:NAME`.
pub fn target_arg(target: &Target) -> String {
    match target {
        Target::System => "system".to_owned(),
        Target::Domain(d) => format!("domain:{d}"),
    }
}

/// A failed send.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NotifyError {
    /// An address could not be parsed.
    #[error("the e-mail address {address:?} is not valid: {source}; fix the warning address or the SMTP from address")]
    Address {
        /// The address.
        address: String,
        /// lettre's reason.
        #[source]
        source: lettre::address::AddressError,
    },
    /// The SMTP exchange failed.
    #[error("sending the warning e-mail through {server} failed: {source}; check the SMTP server, port, security mode and credentials")]
    Smtp {
        /// `host:port`.
        server: String,
        /// lettre's error.
        #[source]
        source: lettre::transport::smtp::Error,
    },
    /// The TLS parameters (an extra root certificate, the rustls configuration) could not
    /// be built.
    #[error("preparing TLS to the SMTP server failed: {0}; check the SMTP CA certificates")]
    Tls(#[source] lettre::transport::smtp::Error),
    /// The message could not be built.
    #[error("preparing the warning e-mail failed: {0}")]
    Message(#[source] lettre::error::Error),
    /// The error of a [`Notifier`] of the service's own (or of a test double), kept as it is.
    #[error("sending the warning failed: {0}")]
    Other(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Sends warnings. Implemented by [`SmtpNotifier`]; services may send through their own mail
/// system.
pub trait Notifier: fmt::Debug + Send + Sync {
    /// Sends `warning` (rendered for `now`).
    fn send<'a>(
        &'a self,
        warning: &'a Warning,
        now: OffsetDateTime,
    ) -> BoxFuture<'a, Result<(), NotifyError>>;
}

/// How the SMTP connection is secured.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum SmtpSecurity {
    /// No TLS (a local relay on loopback).
    Plain,
    /// `STARTTLS` after connecting (port 587), required.
    #[default]
    StartTls,
    /// TLS from the first byte (port 465).
    Tls,
}

/// Where and how to send warnings.
#[derive(Clone)]
pub struct SmtpConfig {
    /// The SMTP server's host name (also the name its certificate must carry).
    pub host: String,
    /// Its port.
    pub port: u16,
    /// Plain, STARTTLS or TLS.
    pub security: SmtpSecurity,
    /// The sender address.
    pub from: String,
    /// User name and password, when the server requires authentication.
    pub credentials: Option<(String, Zeroizing<String>)>,
    /// Extra trusted roots (PEM) for the server's certificate, next to the system's.
    pub extra_roots_pem: Vec<Vec<u8>>,
    /// The time limit of one exchange.
    pub timeout: Duration,
}

impl fmt::Debug for SmtpConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("security", &self.security)
            .field("from", &self.from)
            .field(
                "credentials",
                &self
                    .credentials
                    .as_ref()
                    .map(|(u, _)| (u, "[secret elided]")),
            )
            .finish_non_exhaustive()
    }
}

impl SmtpConfig {
    /// A configuration for `host:port` with `security`, sending from `from`.
    pub fn new(host: &str, port: u16, security: SmtpSecurity, from: &str) -> Self {
        Self {
            host: host.to_owned(),
            port,
            security,
            from: from.to_owned(),
            credentials: None,
            extra_roots_pem: Vec::new(),
            timeout: Duration::from_secs(30),
        }
    }
}

/// Sends warnings through an SMTP server with lettre.
pub struct SmtpNotifier {
    config: SmtpConfig,
    from: Mailbox,
    transport: AsyncSmtpTransport<Tokio1Executor>,
}

impl fmt::Debug for SmtpNotifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpNotifier")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl SmtpNotifier {
    /// A notifier for `config`. Nothing is sent or connected yet.
    pub fn new(config: SmtpConfig) -> Result<Self, NotifyError> {
        let from: Mailbox = config.from.parse().map_err(|source| NotifyError::Address {
            address: config.from.clone(),
            source,
        })?;
        let tls = || -> Result<TlsParameters, NotifyError> {
            let mut b = TlsParameters::builder(config.host.clone());
            for pem in &config.extra_roots_pem {
                let cert = Certificate::from_pem(pem).map_err(NotifyError::Tls)?;
                b = b.add_root_certificate(cert);
            }
            b.build_rustls().map_err(NotifyError::Tls)
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&config.host)
            .port(config.port)
            .timeout(Some(config.timeout));
        builder = match config.security {
            SmtpSecurity::Plain => builder.tls(Tls::None),
            SmtpSecurity::StartTls => builder.tls(Tls::Required(tls()?)),
            SmtpSecurity::Tls => builder.tls(Tls::Wrapper(tls()?)),
        };
        if let Some((user, password)) = &config.credentials {
            builder = builder.credentials(Credentials::new(user.clone(), password.to_string()));
        }
        Ok(Self {
            transport: builder.build(),
            from,
            config,
        })
    }

    fn server(&self) -> String {
        format!("{}:{}", self.config.host, self.config.port)
    }
}

impl Notifier for SmtpNotifier {
    fn send<'a>(
        &'a self,
        warning: &'a Warning,
        now: OffsetDateTime,
    ) -> BoxFuture<'a, Result<(), NotifyError>> {
        Box::pin(async move {
            let to: Mailbox = warning.to.parse().map_err(|source| NotifyError::Address {
                address: warning.to.clone(),
                source,
            })?;
            let message = Message::builder()
                .from(self.from.clone())
                .to(to)
                .subject(warning.subject(now))
                .header(ContentType::TEXT_PLAIN)
                .body(warning.body())
                .map_err(NotifyError::Message)?;
            self.transport
                .send(message)
                .await
                .map_err(|source| NotifyError::Smtp {
                    server: self.server(),
                    source,
                })?;
            Ok(())
        })
    }
}

/// A notifier that keeps what it was asked to send (for tests and dry runs); it can be told
/// to fail.
#[derive(Debug, Default)]
pub struct MemoryNotifier {
    sent: Mutex<Vec<Warning>>,
    fail: Mutex<bool>,
}

impl MemoryNotifier {
    /// The warnings sent so far.
    pub fn sent(&self) -> Vec<Warning> {
        self.sent.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Makes the next sends fail (`true`) or succeed.
    pub fn set_failing(&self, fail: bool) {
        if let Ok(mut f) = self.fail.lock() {
            *f = fail;
        }
    }
}

/// A notifier that sends nothing: for renewals by hand (`bmcert renew`), whose outcome the
/// administrator sees at once. A warning it is given is logged at `debug` and dropped.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoNotifier;

impl Notifier for NoNotifier {
    fn send<'a>(
        &'a self,
        warning: &'a Warning,
        _now: OffsetDateTime,
    ) -> BoxFuture<'a, Result<(), NotifyError>> {
        tracing::debug!(target = %warning.target, "expiry warning not sent (no notifier)");
        Box::pin(async { Ok(()) })
    }
}

impl Notifier for MemoryNotifier {
    fn send<'a>(
        &'a self,
        warning: &'a Warning,
        _now: OffsetDateTime,
    ) -> BoxFuture<'a, Result<(), NotifyError>> {
        Box::pin(async move {
            if self.fail.lock().map(|f| *f).unwrap_or(false) {
                return Err(NotifyError::Other(Box::new(std::io::Error::other(
                    "the memory notifier was told to fail",
                ))));
            }
            if let Ok(mut s) = self.sent.lock() {
                s.push(warning.clone());
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn the_password_never_shows_in_debug() {
        let mut c = SmtpConfig::new("smtp.example.test", 587, SmtpSecurity::StartTls, "a@b.test");
        c.credentials = Some(("user".into(), Zeroizing::new("hunter2-secret".into())));
        let n = SmtpNotifier::new(c.clone()).unwrap();
        for text in [format!("{c:?}"), format!("{n:?}")] {
            assert!(!text.contains("hunter2") && text.contains("user"), "{text}");
        }
    }

    #[test]
    fn a_bad_from_address_is_a_typed_error() {
        let c = SmtpConfig::new("127.0.0.1", 25, SmtpSecurity::Plain, "not an address");
        let e = SmtpNotifier::new(c).unwrap_err();
        assert!(matches!(e, NotifyError::Address { .. }), "{e}");
        assert!(e.to_string().contains("not an address"), "{e}");
    }

    #[test]
    fn the_message_says_what_expires_when_and_what_to_check() {
        let w = Warning {
            to: "admin@example.test".into(),
            target: Target::Domain("acme.test".parse().unwrap()),
            names: vec!["webmail.acme.test".into(), "autoconfig.acme.test".into()],
            not_after: datetime!(2026-04-01 12:00 UTC),
            last_error: Some(
                "the challenge for webmail.acme.test failed: connection refused".into(),
            ),
            fix: Some("check that port 80 is reachable".into()),
            uploaded: false,
            day: "2026-03-29".into(),
        };
        let subject = w.subject(datetime!(2026-03-29 10:00 UTC));
        assert!(subject.contains("expires in 3 days"), "{subject}");
        assert_eq!(plural("expires in", 1, "day"), "expires in 1 day");
        assert_eq!(plural("expires in", 1, "hour"), "expires in 1 hour");
        assert_eq!(plural("expires in", 0, "hour"), "expires in 0 hours");
        let body = w.body();
        for needle in [
            "2026-04-01T12:00:00Z",
            "webmail.acme.test, autoconfig.acme.test",
            "Last error: the challenge for webmail.acme.test failed",
            "port 80",
            "bmcert renew --target domain:acme.test",
        ] {
            assert!(body.contains(needle), "{needle} missing in:\n{body}");
        }
        assert!(w
            .subject(datetime!(2026-04-02 00:00 UTC))
            .contains("EXPIRED"));
    }
}
