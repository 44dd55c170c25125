//! The outgoing proxy: every request to the CA through an HTTP `CONNECT` tunnel when a proxy
//! applies (an explicit URL, or `HTTPS_PROXY`/`https_proxy`, `ALL_PROXY`/`all_proxy`), except
//! for the hosts `NO_PROXY`/`no_proxy` exempts.
//!
//! Not written here: hyper-util's `client::legacy::connect::proxy::Tunnel` sends the
//! `CONNECT` and reads the proxy's answer, and its `client::proxy::matcher::Matcher` applies
//! curl's `NO_PROXY` rules (domains and their subdomains, IP addresses and networks, `*`),
//! decodes the URL's userinfo into a `Proxy-Authorization: Basic` header marked sensitive and
//! keeps it out of its `Debug`. Both are maintained with the hyper client this crate already
//! uses, so TLS to the CA (hyper-rustls) runs unchanged inside the tunnel. This module adds
//! what they leave out: the URL is checked first (the matcher silently ignores a malformed
//! one, which would send the requests directly), only `http://` proxies are taken (the
//! tunnel speaks plain HTTP to the proxy), the password never reaches a message, and a
//! failure names the proxy ([`ProxyError`]).

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::Uri;
use hyper_util::client::legacy::connect::proxy::Tunnel;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::proxy::matcher::Matcher;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tower_service::Service;
use zeroize::Zeroizing;

/// How requests to the CA reach it ([`AcmeConfig::proxy`](crate::AcmeConfig::proxy)).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProxySetting {
    /// The process environment, as curl reads it: `HTTPS_PROXY` (else `https_proxy`, else
    /// `ALL_PROXY`, `all_proxy`) and `NO_PROXY` (else `no_proxy`). Directly when none is set.
    #[default]
    Environment,
    /// Always directly, whatever the environment says.
    Direct,
    /// This proxy; `NO_PROXY`/`no_proxy` of the environment still exempts hosts.
    Url(ProxyUrl),
}

/// A proxy URL, checked: `http://[USER[:PASSWORD]@]HOST[:PORT]` (port 80 when absent; a
/// path is ignored). The password is kept zeroized and never shown: `Display` and `Debug`
/// give `http://USER:***@HOST:PORT`.
#[derive(Clone, PartialEq, Eq)]
pub struct ProxyUrl {
    raw: Zeroizing<String>,
    shown: String,
}

/// Why a proxy URL is not usable.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum ProxyUrlError {
    /// Not a URL (the text is not repeated: it may hold a password).
    #[error("the proxy URL from {origin} is not a URL ({source}); expected http://[user:password@]host:port")]
    Malformed {
        /// Where it came from (`--proxy`, `HTTPS_PROXY`, ...).
        origin: String,
        /// The parser's error.
        source: http::uri::InvalidUri,
    },
    /// A scheme the tunnel cannot speak (`https://` to the proxy, `socks5://`, ...).
    #[error("the proxy {shown} from {origin} is not an http:// proxy: bmcert tunnels to the CA with HTTP CONNECT over a plain connection to the proxy")]
    Scheme {
        /// The URL, password hidden.
        shown: String,
        /// Where it came from.
        origin: String,
    },
    /// No host.
    #[error(
        "the proxy URL from {origin} names no host; expected http://[user:password@]host:port"
    )]
    NoHost {
        /// Where it came from.
        origin: String,
    },
}

impl ProxyUrl {
    /// Checks `text`; `origin` names where it came from in errors (`--proxy`,
    /// `HTTPS_PROXY`, `acme.proxy in FILE`).
    pub fn parse(text: &str, origin: &str) -> Result<Self, ProxyUrlError> {
        let text = text.trim();
        // Like curl and the matcher: no scheme means http://.
        let raw = Zeroizing::new(if text.contains("://") {
            text.to_owned()
        } else {
            format!("http://{text}")
        });
        let uri: Uri = raw.parse().map_err(|source| ProxyUrlError::Malformed {
            origin: origin.to_owned(),
            source,
        })?;
        let authority = uri.authority().ok_or_else(|| ProxyUrlError::NoHost {
            origin: origin.to_owned(),
        })?;
        let (userinfo, host_port) = match authority.as_str().rsplit_once('@') {
            Some((userinfo, host_port)) => (Some(userinfo), host_port),
            None => (None, authority.as_str()),
        };
        let host = host_port
            .rsplit_once(':')
            .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
            .map_or(host_port, |(host, _)| host);
        if host.is_empty() {
            return Err(ProxyUrlError::NoHost {
                origin: origin.to_owned(),
            });
        }
        let port = authority.port_u16().unwrap_or(80);
        let user = userinfo.map(|u| match u.split_once(':') {
            Some((user, _)) => format!("{user}:***@"),
            None => format!("{u}@"),
        });
        let shown = format!(
            "{}://{}{host}:{port}",
            uri.scheme_str().unwrap_or("http"),
            user.unwrap_or_default()
        );
        if uri.scheme_str() != Some("http") {
            return Err(ProxyUrlError::Scheme {
                shown,
                origin: origin.to_owned(),
            });
        }
        Ok(Self { raw, shown })
    }

    /// The URL with the password hidden.
    pub fn shown(&self) -> &str {
        &self.shown
    }
}

impl fmt::Display for ProxyUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown)
    }
}

impl fmt::Debug for ProxyUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ProxyUrl").field(&self.shown).finish()
    }
}

/// The variables read for [`ProxySetting::Environment`], in order.
pub const PROXY_VARIABLES: [&str; 4] = ["HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"];
/// The variables read for the hosts exempted from the proxy, in order.
pub const NO_PROXY_VARIABLES: [&str; 2] = ["NO_PROXY", "no_proxy"];

fn first_env(names: &[&'static str]) -> Option<(&'static str, String)> {
    names.iter().find_map(|name| {
        std::env::var(name)
            .ok()
            .filter(|v| !v.trim().is_empty())
            .map(|v| (*name, v))
    })
}

impl ProxySetting {
    /// The proxy that applies (from the environment for [`Self::Environment`]) and the
    /// `NO_PROXY` rules, or `None` for direct connections. A malformed URL is an error, not
    /// a silent direct connection.
    pub(crate) fn route(&self) -> Result<Option<Arc<Route>>, ProxyUrlError> {
        let proxy = match self {
            Self::Direct => return Ok(None),
            Self::Url(url) => url.clone(),
            Self::Environment => match first_env(&PROXY_VARIABLES) {
                None => return Ok(None),
                Some((name, value)) => ProxyUrl::parse(&value, name)?,
            },
        };
        let no_proxy = first_env(&NO_PROXY_VARIABLES)
            .map(|(_, v)| v)
            .unwrap_or_default();
        let matcher = Matcher::builder()
            .https(proxy.raw.as_str())
            .no(no_proxy)
            .build();
        Ok(Some(Arc::new(Route { matcher, proxy })))
    }
}

/// The proxy of a client and the hosts it exempts.
pub(crate) struct Route {
    matcher: Matcher,
    proxy: ProxyUrl,
}

impl fmt::Debug for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The matcher's Debug shows no credentials either; the proxy's hides the password.
        f.debug_struct("Route")
            .field("proxy", &self.proxy)
            .field("matcher", &self.matcher)
            .finish()
    }
}

/// A request to the CA that failed at or through the proxy: carried through hyper's client
/// error and instant-acme's, and turned into [`Transport::Proxy`](crate::Transport::Proxy).
#[derive(Clone, Debug, thiserror::Error)]
#[error("through the proxy {proxy} (CONNECT {target}): {failure}")]
pub struct ProxyError {
    /// The proxy, password hidden.
    pub proxy: String,
    /// The `host:port` the tunnel was for.
    pub target: String,
    /// What failed.
    #[source]
    pub failure: ProxyFailure,
}

/// What failed at the proxy ([`ProxyError::failure`]). hyper-util's tunnel error is kept as
/// the cause (its type is not exported, so it is sorted by whether it has a cause of its own:
/// a failed connection or I/O has one, an answer of the proxy has none).
#[non_exhaustive]
#[derive(Clone, Debug, thiserror::Error)]
pub enum ProxyFailure {
    /// No connection to the proxy (refused, unreachable, DNS), or it broke while the tunnel
    /// was set up.
    #[error("cannot reach the proxy: {}", chain(&**.0))]
    Connect(Arc<dyn StdError + Send + Sync>),
    /// The proxy answered but did not open the tunnel: it requires credentials (`407`),
    /// refused the `CONNECT`, or closed the connection.
    #[error("the proxy did not open the tunnel ({0}): check the user and password of the proxy URL (http://user:password@host:port) and that the proxy allows CONNECT to the CA's host and port")]
    Refused(#[source] Arc<dyn StdError + Send + Sync>),
}

fn chain(e: &(dyn StdError + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

impl ProxyFailure {
    /// Whether sending again may help: a connection that failed, not a proxy that answered
    /// no (credentials or rules are configuration, not a passing fault).
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Connect(_))
    }

    fn from_tunnel(e: impl StdError + Send + Sync + 'static) -> Self {
        if e.source().is_some() {
            Self::Connect(Arc::new(e))
        } else {
            Self::Refused(Arc::new(e))
        }
    }
}

/// Finds a [`ProxyError`] in an error's chain of causes.
pub(crate) fn find_proxy_error<'a>(mut e: &'a (dyn StdError + 'static)) -> Option<&'a ProxyError> {
    loop {
        if let Some(p) = e.downcast_ref::<ProxyError>() {
            return Some(p);
        }
        e = e.source()?;
    }
}

type BoxError = Box<dyn StdError + Send + Sync>;

/// The TCP connector under hyper-rustls: directly, or through the route's tunnel when the
/// route's proxy applies to the destination.
#[derive(Clone)]
pub(crate) struct ProxyConnector {
    direct: HttpConnector,
    route: Option<Arc<Route>>,
}

impl ProxyConnector {
    pub(crate) fn new(route: Option<Arc<Route>>) -> Self {
        let mut direct = HttpConnector::new();
        // hyper-rustls hands it https:// URIs.
        direct.enforce_http(false);
        Self { direct, route }
    }
}

impl Service<Uri> for ProxyConnector {
    type Response = TokioIo<TcpStream>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.direct.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, dst: Uri) -> Self::Future {
        let intercept = self.route.as_ref().and_then(|r| {
            r.matcher
                .intercept(&dst)
                .map(|i| (i, r.proxy.shown.clone()))
        });
        match intercept {
            None => {
                let connecting = self.direct.call(dst);
                Box::pin(async move { connecting.await.map_err(Into::into) })
            }
            Some((intercept, proxy)) => {
                let mut tunnel = Tunnel::new(intercept.uri().clone(), self.direct.clone());
                if let Some(auth) = intercept.basic_auth() {
                    tunnel = tunnel.with_auth(auth.clone());
                }
                let target = format!(
                    "{}:{}",
                    dst.host().unwrap_or_default(),
                    dst.port_u16().unwrap_or(443)
                );
                tracing::debug!(%proxy, %target, "ACME: connecting through the proxy");
                Box::pin(async move {
                    let tunnelled = match std::future::poll_fn(|cx| tunnel.poll_ready(cx)).await {
                        Ok(()) => tunnel.call(dst).await,
                        Err(e) => Err(e),
                    };
                    tunnelled.map_err(|e| {
                        Box::new(ProxyError {
                            proxy,
                            target,
                            failure: ProxyFailure::from_tunnel(e),
                        }) as BoxError
                    })
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_and_shown_without_password() {
        let p = ProxyUrl::parse("http://user:s3cret@proxy.example:3128", "--proxy").unwrap();
        assert_eq!(p.shown(), "http://user:***@proxy.example:3128");
        assert!(!format!("{p:?} {p}").contains("s3cret"));
        let p = ProxyUrl::parse("proxy.example", "HTTPS_PROXY").unwrap();
        assert_eq!(p.to_string(), "http://proxy.example:80");
        let p = ProxyUrl::parse("http://[::1]:8080/", "x").unwrap();
        assert_eq!(p.to_string(), "http://[::1]:8080");
        let e = ProxyUrl::parse("socks5://u:pw@h:1080", "HTTPS_PROXY").unwrap_err();
        assert!(matches!(e, ProxyUrlError::Scheme { .. }), "{e}");
        let text = e.to_string();
        assert!(
            text.contains("HTTPS_PROXY") && !text.contains("pw@"),
            "{text}"
        );
        let e = ProxyUrl::parse("https://h:443", "--proxy").unwrap_err();
        assert!(matches!(e, ProxyUrlError::Scheme { .. }), "{e}");
        let e = ProxyUrl::parse("http://a b:pw@h", "--proxy").unwrap_err();
        assert!(matches!(e, ProxyUrlError::Malformed { .. }), "{e}");
        assert!(!e.to_string().contains("pw"), "{e}");
        let e = ProxyUrl::parse("http://u:pw@:3128", "--proxy").unwrap_err();
        assert!(matches!(e, ProxyUrlError::NoHost { .. }), "{e}");
    }

    #[test]
    fn the_route_follows_no_proxy_rules_of_the_matcher() {
        let proxy = ProxyUrl::parse("http://u:pw@127.0.0.1:3128", "--proxy").unwrap();
        let matcher = Matcher::builder()
            .https(proxy.raw.as_str())
            .no("localhost, 10.0.0.0/8, .internal.example")
            .build();
        let route = Route { matcher, proxy };
        let hit = |u: &str| route.matcher.intercept(&u.parse().unwrap()).is_some();
        assert!(hit("https://acme-v02.api.letsencrypt.org/directory"));
        assert!(!hit("https://10.1.2.3:14000/dir"));
        assert!(!hit("https://ca.internal.example/dir"));
        assert!(!hit("https://localhost/dir"));
        let shown = format!("{route:?}");
        assert!(!shown.contains(":pw@"), "{shown}");
        let auth = route
            .matcher
            .intercept(&"https://ca.example/".parse().unwrap())
            .and_then(|i| i.basic_auth().cloned())
            .unwrap();
        assert!(auth.is_sensitive());
    }
}
