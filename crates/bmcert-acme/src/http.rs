//! The HTTP client instant-acme talks through: hyper-rustls on aws-lc-rs, trusting the system
//! roots plus an optional extra root (test CAs such as pebble's), with bounded retries.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::TokioExecutor;
use instant_acme::{BodyWrapper, BytesResponse, HttpClient};
use rustls_pki_types::CertificateDer;

use crate::proxy::{ProxyConnector, Route};
use crate::{AcmeError, BadRoot, Transport};

tokio::task_local! {
    /// The `Retry-After` of the last answer that ended a request with a `429` or `5xx` (the
    /// retry budget spent), for the ACME flow running in this task: instant-acme turns that
    /// answer into a problem document and drops its headers, and
    /// [`AcmeClient`](crate::AcmeClient) scopes this around its operations to carry the CA's
    /// instruction out in [`Problem::retry_after`](crate::Problem::retry_after).
    pub(crate) static FINAL_RETRY_AFTER: std::cell::Cell<Option<Duration>>;
}

/// No answer within the retry budget: carried through instant-acme's `Error::Other` and
/// turned back into [`Transport::NoAnswer`] by [`Transport::from_acme`].
#[derive(Debug, thiserror::Error)]
#[error("no answer within {seconds} s")]
pub(crate) struct NoAnswer {
    pub(crate) seconds: u64,
}

impl Transport {
    /// Sorts a transport error of instant-acme: this crate's client reports connection
    /// failures as hyper's client error and a spent budget as [`NoAnswer`], both boxed in
    /// `Error::Other`.
    pub(crate) fn from_acme(e: instant_acme::Error) -> Self {
        match e {
            instant_acme::Error::Other(inner) => {
                let inner = match inner.downcast::<NoAnswer>() {
                    Ok(no_answer) => {
                        return Self::NoAnswer {
                            seconds: no_answer.seconds,
                        }
                    }
                    Err(inner) => inner,
                };
                match inner.downcast::<hyper_util::client::legacy::Error>() {
                    Ok(connect) => match crate::proxy::find_proxy_error(&*connect) {
                        Some(proxy) => Self::Proxy(proxy.clone()),
                        None => Self::Connect(*connect),
                    },
                    Err(inner) => Self::Acme(Box::new(instant_acme::Error::Other(inner))),
                }
            }
            other => Self::Acme(Box::new(other)),
        }
    }
}

/// How the HTTP layer retries: connection errors, `5xx` and `429` are retried with exponential
/// back-off (honouring `Retry-After` when the CA sends it) until `total` has passed.
#[derive(Clone, Copy, Debug)]
pub struct RetryBudget {
    /// The first delay after a failure.
    pub first_delay: Duration,
    /// The longest delay between two attempts.
    pub max_delay: Duration,
    /// The total time one request may take, retries included.
    pub total: Duration,
}

impl Default for RetryBudget {
    fn default() -> Self {
        Self {
            first_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(10),
            total: Duration::from_secs(60),
        }
    }
}

/// Counts of what was sent, for tests and progress output.
#[derive(Debug, Default)]
pub struct RequestCounts {
    /// Requests that change state on the CA (`POST`: account, order, challenge, finalize).
    pub post: AtomicU64,
    /// Read-only requests (`GET`, `HEAD`).
    pub get: AtomicU64,
    /// Attempts sent again after a connection error, `5xx` or `429`.
    pub retried: AtomicU64,
}

pub(crate) type Hyper =
    HyperClient<hyper_rustls::HttpsConnector<ProxyConnector>, BodyWrapper<Bytes>>;

/// The instant-acme [`HttpClient`] of this crate.
pub(crate) struct RetryingClient {
    inner: Hyper,
    budget: RetryBudget,
    counts: Arc<RequestCounts>,
}

impl RetryingClient {
    pub(crate) fn new(
        extra_roots: &[CertificateDer<'static>],
        budget: RetryBudget,
        counts: Arc<RequestCounts>,
        route: Option<Arc<Route>>,
    ) -> Result<Self, AcmeError> {
        let mut roots = rustls::RootCertStore::empty();
        if extra_roots.is_empty() {
            // Production CAs: the system's trusted roots. Unreadable entries are skipped,
            // as every rustls user of rustls-native-certs does.
            let native = rustls_native_certs::load_native_certs();
            for cert in native.certs {
                let _ = roots.add(cert);
            }
        }
        for root in extra_roots {
            roots
                .add(root.clone())
                .map_err(|e| AcmeError::BadRoot(BadRoot::Rustls(e)))?;
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| AcmeError::BadRoot(BadRoot::Rustls(e)))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only()
            .enable_http1()
            .enable_http2()
            .wrap_connector(ProxyConnector::new(route));
        let inner = HyperClient::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Ok(Self {
            inner,
            budget,
            counts,
        })
    }

    /// A plain GET through the same client (directory, pebble's management interface).
    pub(crate) async fn get_bytes(&self, url: &str) -> Result<(StatusCode, Bytes), Transport> {
        let (status, _, body) = self.get_full(url).await?;
        Ok((status, body))
    }

    /// A plain GET returning the headers too (renewal information needs `Retry-After`).
    pub(crate) async fn get_full(
        &self,
        url: &str,
    ) -> Result<(StatusCode, http::HeaderMap, Bytes), Transport> {
        let req = Request::builder()
            .method(Method::GET)
            .uri(url)
            .header(http::header::USER_AGENT, USER_AGENT)
            .body(BodyWrapper::default())
            .map_err(Transport::Request)?;
        let rsp = self.request(req).await.map_err(Transport::from_acme)?;
        let status = rsp.parts.status;
        let headers = rsp.parts.headers;
        let mut body = rsp.body;
        let bytes = body.into_bytes().await.map_err(Transport::Body)?;
        Ok((status, headers, bytes))
    }
}

const USER_AGENT: &str = concat!("bmcert-acme/", env!("CARGO_PKG_VERSION"));

impl HttpClient for RetryingClient {
    fn request(
        &self,
        req: Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let inner = self.inner.clone();
        let budget = self.budget;
        let counts = self.counts.clone();
        Box::pin(async move {
            // A new request: what an earlier one was told no longer applies.
            let _ = FINAL_RETRY_AFTER.try_with(|slot| slot.set(None));
            let (parts, body) = req.into_parts();
            let body = body
                .collect()
                .await
                .map(|c| c.to_bytes())
                .unwrap_or_default();
            match parts.method {
                Method::POST => counts.post.fetch_add(1, Ordering::Relaxed),
                _ => counts.get.fetch_add(1, Ordering::Relaxed),
            };
            let start = Instant::now();
            let mut delay = budget.first_delay;
            loop {
                let mut attempt = Request::builder()
                    .method(parts.method.clone())
                    .uri(parts.uri.clone())
                    .version(parts.version);
                for (k, v) in &parts.headers {
                    attempt = attempt.header(k, v);
                }
                let attempt = attempt.body(BodyWrapper::from(body.to_vec()))?;
                let elapsed = start.elapsed();
                let remaining = budget.total.saturating_sub(elapsed);
                let outcome = tokio::time::timeout(
                    remaining.max(Duration::from_millis(1)),
                    inner.request(attempt),
                )
                .await;
                let wait = match outcome {
                    Ok(Ok(rsp)) => {
                        let status = rsp.status();
                        if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
                            let wait =
                                retry_after(rsp.headers(), SystemTime::now()).unwrap_or(delay);
                            if start.elapsed() + wait > budget.total {
                                tracing::debug!(%status, "ACME request: retry budget spent");
                                let told = retry_after(rsp.headers(), SystemTime::now());
                                let _ = FINAL_RETRY_AFTER.try_with(|slot| slot.set(told));
                                return Ok(BytesResponse::from(rsp));
                            }
                            tracing::debug!(%status, ?wait, "ACME request: CA busy, retrying");
                            wait
                        } else {
                            return Ok(BytesResponse::from(rsp));
                        }
                    }
                    Ok(Err(e)) => {
                        // A proxy that answered no (credentials, its rules) is configuration:
                        // asking again cannot help.
                        let settled = crate::proxy::find_proxy_error(&e)
                            .is_some_and(|p| !p.failure.is_transient());
                        if settled || start.elapsed() + delay > budget.total {
                            return Err(instant_acme::Error::Other(Box::new(e)));
                        }
                        tracing::debug!(error = %e, ?delay, "ACME request: connection failed, retrying");
                        delay
                    }
                    Err(_) => {
                        return Err(instant_acme::Error::Other(Box::new(NoAnswer {
                            seconds: budget.total.as_secs(),
                        })))
                    }
                };
                counts.retried.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(wait).await;
                delay = (delay * 2).min(budget.max_delay);
            }
        })
    }
}

/// Parses `Retry-After` (delay-seconds or HTTP-date) relative to `now`. Sans-I/O.
pub(crate) fn retry_after(headers: &http::HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    parse_retry_after(value, now)
}

/// Parses a `Retry-After` value; a date in the past gives zero. Capped at one day.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    let wait = if let Ok(secs) = value.parse::<u64>() {
        Duration::from_secs(secs)
    } else {
        let at: SystemTime = httpdate::parse_http_date(value).ok()?;
        at.duration_since(now).unwrap_or(Duration::ZERO)
    };
    Some(wait.min(Duration::from_secs(86_400)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777);
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:47 GMT", now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(
            parse_retry_after("99999999", now),
            Some(Duration::from_secs(86_400))
        );
    }

    proptest! {
        #[test]
        fn retry_after_never_panics_and_is_capped(s in "\\PC{0,40}") {
            if let Some(d) = parse_retry_after(&s, SystemTime::now()) {
                prop_assert!(d <= Duration::from_secs(86_400));
            }
        }
    }
}
